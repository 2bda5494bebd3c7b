//! Alert label and annotation templates: the part of Go's `text/template` that Prometheus
//! rules use in practice, written here by hand (no Rust crate implements Go's template
//! language with Prometheus' functions, and this subset is a few hundred lines).
//!
//! Supported: text and `{{ }}` actions with `{{-` / `-}}` trimming and `{{/* comments */}}`;
//! the variables Prometheus defines (`$labels`, `$value`, `$externalLabels`, `$externalURL`,
//! and `$` for the data) and the data's fields (`.Labels`, `.Value`, `.ExternalLabels`,
//! `.ExternalURL`), with field chains into maps (`$labels.instance`, `.Labels.job`; a missing
//! key is the empty string, as Prometheus' `missingkey=zero`); string, raw-string, number and
//! boolean constants; parentheses; pipelines (`{{ $value | humanize }}`); `{{ if }}` /
//! `{{ else if }}` / `{{ else }}` / `{{ end }}`; Go's `printf`, `print`, `println`, `eq`, `ne`,
//! `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `len`, `index`; and Prometheus' `humanize`,
//! `humanize1024`, `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `toUpper`,
//! `toLower`, `title`, `match`, `reReplaceAll`, `stripPort`, `stripDomain`, `parseDuration`,
//! `graphLink`, `tableLink`, `externalURL` and `pathPrefix`.
//!
//! Deliberately absent: `range`, `with`, `define`/`template`/`block`, variable declarations,
//! and the functions that run queries (`query`, `first`, `value`, `label`, `sortByLabel`).
//! A template using them fails to parse, so the rule file is refused with that message rather
//! than accepted and expanded differently from Prometheus.

use super::gofmt::{Val, format_float, sprintf};
use crate::LabelMap;

/// What a template is expanded with (Prometheus' `AlertTemplateData`).
#[derive(Debug, Clone, Copy)]
pub struct Data<'a> {
    pub labels: &'a LabelMap,
    pub external_labels: &'a LabelMap,
    pub external_url: &'a str,
    pub value: f64,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If { branches: Vec<(Pipeline, Vec<Node>)>, otherwise: Vec<Node> },
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline(Vec<Command>);

/// One command of a pipeline: a function call with its arguments, or a single operand.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Call(String, Vec<Operand>),
    Operand(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// A variable (`$labels`, or `$` for the data) and the field chain after it.
    Var(String, Vec<String>),
    /// A field chain on the data: `.Labels.job`.
    Field(Vec<String>),
    Const(Val),
    Paren(Box<Pipeline>, Vec<String>),
}

/// The variables Prometheus defines before every alert template.
const VARIABLES: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

const FUNCTIONS: [&str; 32] = [
    "printf",
    "print",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "match",
    "reReplaceAll",
    "stripPort",
    "stripDomain",
    "parseDuration",
    "graphLink",
    "tableLink",
    "externalURL",
    "pathPrefix",
    "urlquery",
];

impl Template {
    /// Parses `text`; errors say the line and what was wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let items = split(text)?;
        let mut p = Parser { items, pos: 0 };
        let (nodes, end) = p.nodes()?;
        if let Some(end) = end {
            return Err(format!("line {}: unexpected {{{{{end}}}}}", p.line()));
        }
        Ok(Template { nodes })
    }

    /// Expands the template; an error says which call failed and why.
    pub fn expand(&self, data: &Data<'_>) -> Result<String, String> {
        let mut out = String::new();
        exec_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// Whether the template is plain text (no actions), so expansion cannot change it.
    pub fn is_plain(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n, Node::Text(_)))
    }
}

/// A piece of the source: text, or an action's inside with the line it starts on.
#[derive(Debug)]
enum Item {
    Text(String),
    Action(String, usize),
}

/// Splits the source into text and actions, applying `{{-` / `-}}` trimming and dropping
/// comments.
fn split(text: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let t = if trim_next { rest.trim_start() } else { rest };
            items.push(Item::Text(t.to_string()));
            break;
        };
        let mut t = &rest[..open];
        if trim_next {
            t = t.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_before = after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r");
        if trim_before {
            t = t.trim_end();
        }
        if !t.is_empty() {
            items.push(Item::Text(t.to_string()));
        }
        line += rest[..open].matches('\n').count();
        let inner_start = if trim_before { &after[1..] } else { after };
        // a comment may hold `}}`; otherwise the action ends at the first `}}` outside quotes
        let close = if inner_start.trim_start().starts_with("/*") {
            inner_start.find("*/").and_then(|c| inner_start[c..].find("}}").map(|e| c + e))
        } else {
            find_close(inner_start)
        };
        let Some(close) = close else {
            return Err(format!("line {line}: unclosed action"));
        };
        let mut inner = &inner_start[..close];
        trim_next = inner.ends_with(" -")
            || inner.ends_with("\t-")
            || inner.ends_with("\n-")
            || inner.ends_with("\r-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let trimmed = inner.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err(format!("line {line}: comment ends before closing delimiter"));
            }
        } else {
            items.push(Item::Action(inner.to_string(), line));
        }
        line += inner_start[..close].matches('\n').count();
        rest = &inner_start[close + 2..];
    }
    Ok(items)
}

/// The offset of the `}}` that closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Var(String),
    /// `.a.b` (empty for a lone `.`).
    Field(Vec<String>),
    Const(Val),
    Pipe,
    Open,
    Close,
    /// Fields right after `)`: `(...).x`.
    Fields(Vec<String>),
}

fn lex(s: &str, line: usize) -> Result<Vec<Tok>, String> {
    let err = |m: String| format!("line {line}: {m}");
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    let fields = |i: &mut usize| -> Result<Vec<String>, String> {
        let mut f = Vec::new();
        while *i < c.len() && c[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < c.len() && ident_char(c[*i]) {
                *i += 1;
            }
            if start == *i {
                if f.is_empty() && (*i >= c.len() || !ident_char(c[*i])) {
                    return Ok(f);
                }
                return Err(err("bad field name".into()));
            }
            f.push(c[start..*i].iter().collect());
        }
        Ok(f)
    };
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
                if i < c.len() && c[i] == '.' {
                    out.push(Tok::Fields(fields(&mut i)?));
                }
            }
            '$' => {
                let start = i;
                i += 1;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
                let name: String = c[start..i].iter().collect();
                let mut j = i;
                while j < c.len() && c[j].is_whitespace() {
                    j += 1;
                }
                if c.get(j) == Some(&':') || c.get(j) == Some(&'=') {
                    return Err(err(format!(
                        "declaring variables ({name} := ...) is not supported"
                    )));
                }
                if !VARIABLES.contains(&name.as_str()) {
                    return Err(err(format!("undefined variable \"{name}\"")));
                }
                out.push(Tok::Var(name));
                if i < c.len() && c[i] == '.' {
                    out.push(Tok::Fields(fields(&mut i)?));
                }
            }
            '.' if !c.get(i + 1).is_some_and(char::is_ascii_digit) => {
                out.push(Tok::Field(fields(&mut i)?));
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&x) = c.get(i) else {
                        return Err(err("unterminated quoted string".into()));
                    };
                    i += 1;
                    match x {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = c.get(i) else {
                                return Err(err("unterminated quoted string".into()));
                            };
                            i += 1;
                            v.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                _ => return Err(err(format!("unknown escape sequence \\{e}"))),
                            });
                        }
                        x => v.push(x),
                    }
                }
                out.push(Tok::Const(Val::Str(v)));
            }
            '`' => {
                let start = i + 1;
                let Some(len) = c[start..].iter().position(|&x| x == '`') else {
                    return Err(err("unterminated raw quoted string".into()));
                };
                out.push(Tok::Const(Val::Str(c[start..start + len].iter().collect())));
                i = start + len + 1;
            }
            '0'..='9' | '-' | '+' | '.' => {
                let start = i;
                i += 1;
                while i < c.len()
                    && (c[i].is_ascii_alphanumeric()
                        || c[i] == '.'
                        || ((c[i] == '-' || c[i] == '+') && matches!(c[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let t: String = c[start..i].iter().collect();
                let v = if let Ok(n) = t.parse::<i64>() {
                    Val::Int(n)
                } else if let Some(h) = t.strip_prefix("0x") {
                    Val::Int(
                        i64::from_str_radix(h, 16)
                            .map_err(|_| err(format!("bad number syntax: {t:?}")))?,
                    )
                } else {
                    match t.parse::<f64>() {
                        Ok(f) if f.is_finite() => Val::Float(f),
                        _ => return Err(err(format!("bad number syntax: {t:?}"))),
                    }
                };
                out.push(Tok::Const(v));
            }
            ch if ch.is_alphabetic() || ch == '_' => {
                let start = i;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
                let w: String = c[start..i].iter().collect();
                out.push(match w.as_str() {
                    "true" => Tok::Const(Val::Bool(true)),
                    "false" => Tok::Const(Val::Bool(false)),
                    _ => Tok::Ident(w),
                });
            }
            other => return Err(err(format!("unexpected {other:?} in command"))),
        }
    }
    Ok(out)
}

struct Parser {
    items: Vec<Item>,
    pos: usize,
}

impl Parser {
    fn line(&self) -> usize {
        match self.items.get(self.pos.saturating_sub(1)) {
            Some(Item::Action(_, l)) => *l,
            _ => 1,
        }
    }

    /// Nodes up to an `else`, `else if ...` or `end` (returned as the keyword and the rest of
    /// the action), or to the end of the source (`None`).
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<String>), String> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.get(self.pos) {
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t.clone())),
                Item::Action(a, line) => {
                    let (a, line) = (a.trim().to_string(), *line);
                    let word = a.split_whitespace().next().unwrap_or("");
                    match word {
                        "end" | "else" => return Ok((nodes, Some(a))),
                        "if" => nodes.push(self.if_node(&a[2..], line)?),
                        "range" | "with" | "define" | "template" | "block" | "break"
                        | "continue" => {
                            return Err(format!("line {line}: {{{{{word}}}}} is not supported"));
                        }
                        _ => nodes.push(Node::Action(pipeline(&a, line)?)),
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn if_node(&mut self, cond: &str, line: usize) -> Result<Node, String> {
        let mut branches = vec![(pipeline(cond, line)?, Vec::new())];
        loop {
            let (body, end) = self.nodes()?;
            if let Some(b) = branches.last_mut() {
                b.1 = body;
            }
            let Some(end) = end else {
                return Err(format!("line {line}: unexpected EOF: {{{{if}}}} without {{{{end}}}}"));
            };
            if end == "end" {
                return Ok(Node::If { branches, otherwise: Vec::new() });
            }
            let rest = end.strip_prefix("else").unwrap_or("").trim();
            if rest.is_empty() {
                let (otherwise, end) = self.nodes()?;
                if end.as_deref() != Some("end") {
                    return Err(format!("line {line}: expected {{{{end}}}} after {{{{else}}}}"));
                }
                return Ok(Node::If { branches, otherwise });
            }
            let Some(cond) = rest.strip_prefix("if") else {
                return Err(format!("line {}: unexpected {{{{{end}}}}}", self.line()));
            };
            branches.push((pipeline(cond, self.line())?, Vec::new()));
        }
    }
}

fn pipeline(src: &str, line: usize) -> Result<Pipeline, String> {
    let toks = lex(src, line)?;
    let mut pos = 0;
    let p = parse_pipeline(&toks, &mut pos, line)?;
    if pos < toks.len() {
        return Err(format!("line {line}: unexpected {:?} in operand", toks[pos]));
    }
    Ok(p)
}

fn parse_pipeline(toks: &[Tok], pos: &mut usize, line: usize) -> Result<Pipeline, String> {
    let err = |m: &str| format!("line {line}: {m}");
    let mut cmds = Vec::new();
    loop {
        let mut words = Vec::new();
        while let Some(t) = toks.get(*pos) {
            if matches!(t, Tok::Pipe | Tok::Close) {
                break;
            }
            words.push(word(toks, pos, line)?);
        }
        let mut words = words.into_iter();
        let cmd = match words.next() {
            None => return Err(err("missing value for command")),
            Some(Word::Ident(name)) => {
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(err(&format!("function \"{name}\" not defined")));
                }
                let args = words.map(|w| match w {
                    Word::Op(op) => Ok(op),
                    Word::Ident(n) => Err(err(&format!(
                        "function {n:?} used as an argument; wrap it in parentheses"
                    ))),
                });
                Command::Call(name, args.collect::<Result<_, _>>()?)
            }
            Some(Word::Op(op)) => {
                if words.next().is_some() {
                    return Err(err("can't give argument to non-function"));
                }
                Command::Operand(op)
            }
        };
        if !cmds.is_empty() && matches!(cmd, Command::Operand(_)) {
            return Err(err("non executable command in pipeline stage 2"));
        }
        cmds.push(cmd);
        if toks.get(*pos) == Some(&Tok::Pipe) {
            *pos += 1;
        } else {
            return Ok(Pipeline(cmds));
        }
    }
}

/// One word of a command: an operand, or an identifier (a function name).
enum Word {
    Op(Operand),
    Ident(String),
}

fn word(toks: &[Tok], pos: &mut usize, line: usize) -> Result<Word, String> {
    let t = toks[*pos].clone();
    *pos += 1;
    let fields = |pos: &mut usize| match toks.get(*pos) {
        Some(Tok::Fields(f)) => {
            *pos += 1;
            f.clone()
        }
        _ => Vec::new(),
    };
    Ok(Word::Op(match t {
        Tok::Ident(name) => return Ok(Word::Ident(name)),
        Tok::Var(v) => Operand::Var(v, fields(pos)),
        Tok::Field(f) if f.is_empty() => Operand::Var("$".into(), Vec::new()),
        Tok::Field(f) => Operand::Field(f),
        Tok::Const(v) => Operand::Const(v),
        Tok::Open => {
            let inner = parse_pipeline(toks, pos, line)?;
            if toks.get(*pos) != Some(&Tok::Close) {
                return Err(format!("line {line}: unclosed left paren"));
            }
            *pos += 1;
            Operand::Paren(Box::new(inner), fields(pos))
        }
        Tok::Pipe | Tok::Close | Tok::Fields(_) => {
            return Err(format!("line {line}: unexpected {t:?} in operand"));
        }
    }))
}

fn exec_nodes(nodes: &[Node], data: &Data<'_>, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipeline(p, data)?.print()),
            Node::If { branches, otherwise } => {
                let mut taken = false;
                for (cond, body) in branches {
                    if truth(&eval_pipeline(cond, data)?) {
                        exec_nodes(body, data, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    exec_nodes(otherwise, data, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, data: &Data<'_>) -> Result<Val, String> {
    let mut last: Option<Val> = None;
    for cmd in &p.0 {
        let v = match cmd {
            Command::Operand(op) => eval_operand(op, data)?,
            Command::Call(name, args) => {
                let mut vals =
                    args.iter().map(|a| eval_operand(a, data)).collect::<Result<Vec<_>, _>>()?;
                vals.extend(last.take());
                call(name, vals, data).map_err(|e| format!("error calling {name}: {e}"))?
            }
        };
        last = Some(v);
    }
    last.ok_or_else(|| "empty pipeline".to_string())
}

/// The data as `$` or `.`: a map of its fields, printed the way Go prints the struct.
fn root(data: &Data<'_>) -> Val {
    Val::Str(format!(
        "{{{} {} {} {}}}",
        Val::Map(data.labels.clone()).print(),
        Val::Map(data.external_labels.clone()).print(),
        data.external_url,
        Val::Float(data.value).print()
    ))
}

fn eval_operand(op: &Operand, data: &Data<'_>) -> Result<Val, String> {
    let (base, fields): (Val, &[String]) = match op {
        Operand::Const(v) => return Ok(v.clone()),
        Operand::Var(name, fields) => match name.as_str() {
            "$labels" => (Val::Map(data.labels.clone()), fields),
            "$externalLabels" => (Val::Map(data.external_labels.clone()), fields),
            "$externalURL" => (Val::Str(data.external_url.to_string()), fields),
            "$value" => (Val::Float(data.value), fields),
            _ => match fields.split_first() {
                None => return Ok(root(data)),
                Some((f, rest)) => (data_field(f, data)?, rest),
            },
        },
        Operand::Field(fields) => match fields.split_first() {
            None => return Ok(root(data)),
            Some((f, rest)) => (data_field(f, data)?, rest),
        },
        Operand::Paren(p, fields) => (eval_pipeline(p, data)?, fields),
    };
    let mut v = base;
    for f in fields {
        v = match v {
            Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
            other => {
                return Err(format!("can't evaluate field {f} in type {}", other.type_name()));
            }
        };
    }
    Ok(v)
}

fn data_field(f: &str, data: &Data<'_>) -> Result<Val, String> {
    Ok(match f {
        "Labels" => Val::Map(data.labels.clone()),
        "ExternalLabels" => Val::Map(data.external_labels.clone()),
        "ExternalURL" => Val::Str(data.external_url.to_string()),
        "Value" => Val::Float(data.value),
        _ => return Err(format!("can't evaluate field {f} in type struct")),
    })
}

/// Go's `truth`: the zero value of its type is false.
fn truth(v: &Val) -> bool {
    match v {
        Val::Str(s) => !s.is_empty(),
        Val::Float(f) => *f != 0.0,
        Val::Int(i) => *i != 0,
        Val::Bool(b) => *b,
        Val::Map(m) => !m.is_empty(),
    }
}

/// Prometheus' `convertToFloat`.
fn to_float(v: &Val) -> Result<f64, String> {
    match v {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => parse_go_float(s)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// Go's `strconv.ParseFloat`, which also takes `Inf`, `+Inf`, `-Inf`, `NaN` in any case.
fn parse_go_float(s: &str) -> Option<f64> {
    let l = s.to_ascii_lowercase();
    match l.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            Some(if l.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY })
        }
        "nan" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

fn want_str(v: &Val) -> Result<&str, String> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(format!("wrong type for value; expected string; got {}", other.type_name())),
    }
}

fn arity(args: &[Val], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args: want {n} got {}", args.len()))
    }
}

/// Scales `v` by 1000 until it is at least 1 (for values below 1), naming the prefix.
fn scale_down(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

fn g4(v: f64) -> String {
    format_float(v, 'g', Some(4), false)
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    if v.abs() >= 1.0 {
        let (mut v, mut prefix) = (v, "");
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", g4(v));
    }
    let (v, prefix) = scale_down(v);
    format!("{}{prefix}", g4(v))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let (mut v, mut prefix) = (v, "");
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", g4(v))
        };
    }
    let (v, prefix) = scale_down(v);
    format!("{}{prefix}s", g4(v))
}

/// Go's `time.Time.String()` of a Unix time in seconds, in UTC, to the millisecond (the
/// precision Prometheus keeps).
fn humanize_timestamp(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Ok(g4(v));
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            Val::Float(v).print()
        ));
    }
    let ms = (ns as i64).div_euclid(1_000_000);
    let (secs, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = ocelli_model::time::civil_from_days(days);
    let mut s =
        format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if frac != 0 {
        s.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    Ok(s)
}

/// Go's `strings.Title`: upper-cases the first letter of every word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's `net.SplitHostPort`, `None` where it fails.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        return Some((host, port.strip_prefix(':')?));
    }
    let (host, port) = s.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| {
        format!("regexp: Compile({pattern:?}): {}", e.to_string().lines().last().unwrap_or(""))
    })
}

/// Prometheus' link to an expression in its UI: the graph (`tab` 0) or the table (1).
pub fn expression_link(expr: &str, tab: u8) -> String {
    let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!("/graph?g0.expr={q}&g0.tab={tab}")
}

/// Go's comparison of two basic values: `Some(ordering)`, or an error for mixed kinds.
fn compare(a: &Val, b: &Val) -> Result<Option<std::cmp::Ordering>, String> {
    match (a, b) {
        (Val::Float(x), Val::Float(y)) => Ok(x.partial_cmp(y)),
        (Val::Int(x), Val::Int(y)) => Ok(Some(x.cmp(y))),
        (Val::Str(x), Val::Str(y)) => Ok(Some(x.cmp(y))),
        (Val::Bool(x), Val::Bool(y)) => Ok(Some(x.cmp(y))),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn call(name: &str, mut args: Vec<Val>, data: &Data<'_>) -> Result<Val, String> {
    use std::cmp::Ordering::*;
    let one = |args: &[Val]| -> Result<f64, String> {
        arity(args, 1)?;
        to_float(&args[0])
    };
    let s1 = |args: &[Val]| -> Result<String, String> {
        arity(args, 1)?;
        want_str(&args[0]).map(str::to_string)
    };
    Ok(match name {
        "humanize" => Val::Str(humanize(one(&args)?)),
        "humanize1024" => Val::Str(humanize1024(one(&args)?)),
        "humanizeDuration" => Val::Str(humanize_duration(one(&args)?)),
        "humanizePercentage" => Val::Str(format!("{}%", g4(one(&args)? * 100.0))),
        "humanizeTimestamp" => Val::Str(humanize_timestamp(one(&args)?)?),
        "printf" => {
            let Some(first) = args.first() else {
                return Err("wrong number of args: want at least 1 got 0".into());
            };
            let f = want_str(first)?.to_string();
            Val::Str(sprintf(&f, &args[1..]))
        }
        "print" | "println" => {
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                let both_non_str =
                    i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_));
                if name == "println" && i > 0 || both_non_str {
                    s.push(' ');
                }
                s.push_str(&a.print());
            }
            if name == "println" {
                s.push('\n');
            }
            Val::Str(s)
        }
        "toUpper" => Val::Str(s1(&args)?.to_uppercase()),
        "toLower" => Val::Str(s1(&args)?.to_lowercase()),
        "title" => Val::Str(title(&s1(&args)?)),
        "stripPort" => {
            let s = s1(&args)?;
            Val::Str(split_host_port(&s).map_or(s.clone(), |(h, _)| h.to_string()))
        }
        "stripDomain" => {
            let s = s1(&args)?;
            let (host, port) = split_host_port(&s).unwrap_or((&s, ""));
            if host.parse::<std::net::IpAddr>().is_ok() {
                Val::Str(s.clone())
            } else {
                let short = host.split('.').next().unwrap_or("");
                Val::Str(if port.is_empty() {
                    short.to_string()
                } else if short.contains(':') {
                    format!("[{short}]:{port}")
                } else {
                    format!("{short}:{port}")
                })
            }
        }
        "match" => {
            arity(&args, 2)?;
            Val::Bool(regex(want_str(&args[0])?)?.is_match(want_str(&args[1])?))
        }
        "reReplaceAll" => {
            arity(&args, 3)?;
            let re = regex(want_str(&args[0])?)?;
            Val::Str(re.replace_all(want_str(&args[2])?, want_str(&args[1])?).into_owned())
        }
        "parseDuration" => {
            let s = s1(&args)?;
            let ms = super::parse_duration(&s)?;
            Val::Float(ms.as_secs_f64())
        }
        "graphLink" => Val::Str(expression_link(&s1(&args)?, 0)),
        "tableLink" => Val::Str(expression_link(&s1(&args)?, 1)),
        "urlquery" => {
            let s: String = args.iter().map(Val::print).collect();
            Val::Str(form_urlencoded::byte_serialize(s.as_bytes()).collect())
        }
        "externalURL" => {
            arity(&args, 0)?;
            Val::Str(data.external_url.to_string())
        }
        "pathPrefix" => {
            arity(&args, 0)?;
            let rest = data.external_url.split_once("://").map_or("", |x| x.1);
            Val::Str(rest.find('/').map_or("", |i| &rest[i..]).to_string())
        }
        "eq" | "ne" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let first = args.remove(0);
            let mut any = false;
            for a in &args {
                any |= compare(&first, a)? == Some(Equal);
            }
            Val::Bool(if name == "eq" { any } else { !any })
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(&args, 2)?;
            if matches!(args[0], Val::Bool(_)) {
                return Err("invalid type for comparison".into());
            }
            let o = compare(&args[0], &args[1])?;
            Val::Bool(match name {
                "lt" => o == Some(Less),
                "le" => matches!(o, Some(Less | Equal)),
                "gt" => o == Some(Greater),
                _ => matches!(o, Some(Greater | Equal)),
            })
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err("wrong number of args: want at least 1 got 0".into());
            }
            let stop = |v: &Val| if name == "and" { !truth(v) } else { truth(v) };
            let n = args.len();
            let pick = args.iter().position(stop).unwrap_or(n - 1);
            args.swap_remove(pick)
        }
        "not" => {
            arity(&args, 1)?;
            Val::Bool(!truth(&args[0]))
        }
        "len" => {
            arity(&args, 1)?;
            match &args[0] {
                Val::Str(s) => Val::Int(s.len() as i64),
                Val::Map(m) => Val::Int(m.len() as i64),
                other => return Err(format!("len of type {}", other.type_name())),
            }
        }
        "index" => {
            arity(&args, 2)?;
            match (&args[0], &args[1]) {
                (Val::Map(m), Val::Str(k)) => Val::Str(m.get(k).cloned().unwrap_or_default()),
                (a, b) => {
                    return Err(format!(
                        "can't index item of type {} with {}",
                        a.type_name(),
                        b.type_name()
                    ));
                }
            }
        }
        _ => return Err(format!("function \"{name}\" not defined")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> LabelMap {
        [("instance", "web-1:9100"), ("job", "node"), ("__name__", "up")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand_with(text: &str, value: f64) -> Result<String, String> {
        let l = labels();
        let ext: LabelMap = [("cluster".to_string(), "eu".to_string())].into();
        let data =
            Data { labels: &l, external_labels: &ext, external_url: "http://o:9747/x", value };
        Template::parse(text)?.expand(&data)
    }

    fn expand(text: &str) -> String {
        expand_with(text, 0.8765).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn variables_fields_and_text() {
        assert_eq!(expand("plain text"), "plain text");
        assert_eq!(expand("{{ $labels.instance }} is down"), "web-1:9100 is down");
        assert_eq!(expand("{{$labels.job}}/{{ .Labels.instance }}"), "node/web-1:9100");
        assert_eq!(expand("v={{ $value }} V={{ .Value }}"), "v=0.8765 V=0.8765");
        assert_eq!(expand("[{{ $labels.missing }}]"), "[]");
        assert_eq!(
            expand("{{ $externalLabels.cluster }} {{ $externalURL }}"),
            "eu http://o:9747/x"
        );
        assert_eq!(expand("{{ index $labels \"job\" }}"), "node");
        assert_eq!(expand("a {{- \" b \" -}} c"), "a b c");
        assert_eq!(expand("a  {{- /* note */ -}}  b"), "ab");
        assert_eq!(expand("{{ `raw \\n` }}"), "raw \\n");
        assert_eq!(expand_with("{{ $value }}", 1234567.0).unwrap(), "1.234567e+06");
    }

    #[test]
    fn functions_and_pipelines() {
        assert_eq!(expand("{{ humanize $value }}"), "876.5m");
        assert_eq!(expand("{{ $value | humanizePercentage }}"), "87.65%");
        assert_eq!(expand("{{ printf \"%.2f\" $value }}"), "0.88");
        assert_eq!(expand("{{ $value | printf \"%.1f\" }}"), "0.9");
        assert_eq!(expand("{{ 1234567.0 | humanize }}"), "1.235M");
        assert_eq!(expand("{{ humanize 0 }}"), "0");
        assert_eq!(expand("{{ humanize1024 1048576.0 }}"), "1Mi");
        assert_eq!(expand("{{ humanizeDuration 3725.5 }}"), "1h 2m 5s");
        assert_eq!(expand("{{ humanizeDuration 90061 }}"), "1d 1h 1m 1s");
        assert_eq!(expand("{{ humanizeDuration 1.5 }}"), "1.5s");
        assert_eq!(expand("{{ humanizeDuration 0.25 }}"), "250ms");
        assert_eq!(
            expand("{{ humanizeTimestamp 1700000000.5 }}"),
            "2023-11-14 22:13:20.5 +0000 UTC"
        );
        assert_eq!(expand("{{ \"42.5\" | humanize }}"), "42.5");
        assert_eq!(
            expand("{{ $labels.job | toUpper }} {{ title \"hello world\" }}"),
            "NODE Hello World"
        );
        assert_eq!(expand("{{ $labels.instance | stripPort }}"), "web-1");
        assert_eq!(expand("{{ stripDomain \"a.example.com:80\" }}"), "a:80");
        assert_eq!(expand("{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}"), "web-1");
        assert_eq!(expand("{{ (humanize $value) }}"), "876.5m");
        assert_eq!(expand("{{ tableLink \"up == 0\" }}"), "/graph?g0.expr=up+%3D%3D+0&g0.tab=1");
        assert_eq!(expand("{{ pathPrefix }}"), "/x");
        assert_eq!(expand("{{ parseDuration \"1m30s\" }}"), "90");
    }

    #[test]
    fn conditions() {
        let t = "{{ if gt $value 0.5 }}high{{ else if gt $value 0.1 }}mid{{ else }}low{{ end }}";
        assert_eq!(expand_with(t, 0.9).unwrap(), "high");
        assert_eq!(expand_with(t, 0.2).unwrap(), "mid");
        assert_eq!(expand_with(t, 0.0).unwrap(), "low");
        assert_eq!(expand("{{ if eq $labels.job \"node\" }}yes{{ end }}"), "yes");
        assert_eq!(expand("{{ if and $labels.job (not $labels.x) }}ok{{ end }}"), "ok");
        assert_eq!(expand("{{ if match \"^web\" $labels.instance }}web{{ end }}"), "web");
    }

    #[test]
    fn parse_errors_say_where_and_what() {
        let cases = [
            ("{{ humanise $value }}", "line 1: function \"humanise\" not defined"),
            ("a\n{{ $foo }}", "line 2: undefined variable \"$foo\""),
            ("{{ $value ", "line 1: unclosed action"),
            ("{{ if $value }}x", "line 1: unexpected EOF: {{if}} without {{end}}"),
            ("x{{ end }}", "line 1: unexpected {{end}}"),
            ("{{ range $labels }}{{ end }}", "line 1: {{range}} is not supported"),
            ("{{ $x := 1 }}", "line 1: declaring variables ($x := ...) is not supported"),
            ("{{ $value humanize }}", "line 1: can't give argument to non-function"),
            ("{{ \"abc }}", "line 1: unclosed action"),
        ];
        for (text, want) in cases {
            assert_eq!(Template::parse(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn execution_errors_name_the_call() {
        assert_eq!(
            expand_with("{{ humanize \"abc\" }}", 1.0).unwrap_err(),
            "error calling humanize: strconv.ParseFloat: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            expand_with("{{ $value.x }}", 1.0).unwrap_err(),
            "can't evaluate field x in type float64"
        );
        assert_eq!(
            expand_with("{{ if gt $value 1 }}x{{ end }}", 1.0).unwrap_err(),
            "error calling gt: incompatible types for comparison"
        );
    }
}
