//! Parse errors worded as Prometheus words them: `<line>:<col>: parse error: <message>`.
//!
//! `promql-parser` reports a failure as a bare message with no position, and a syntax error
//! its grammar rejects only as "invalid promql query". So the position (and for syntax errors
//! the message) is worked out here from the query text:
//!
//! - lexer errors (unclosed parenthesis, unterminated string, a stray character...): the
//!   parser's message, placed where Prometheus' lexer places it: at the end of the query for
//!   errors found there, else at the offending character, found by lexing ever longer prefixes
//!   of the query until one fails with the same message (exact). Three messages are reworded
//!   as Prometheus': an unterminated string, an unclosed `[`, a stray `)`/`}`/`,` in brackets;
//!   others are the parser's, which mostly match Prometheus';
//! - syntax errors (checked first for any query the lexer accepts, as Prometheus' grammar
//!   fails before its checks of types and names): [`syntax_error`] walks the query's tokens and reports the first one that
//!   cannot continue an expression, as Prometheus' parser does (`unexpected <op:*>`,
//!   `unexpected end of input`, `unexpected identifier "bar"`, with Prometheus' context for
//!   grouping, label matching, ranges, `offset` and `@`). It knows the common shapes of
//!   PromQL, not the whole grammar: where it finds nothing wrong the error is the parser's
//!   own, at `1:1`;
//! - errors found once the expression parsed (argument types and counts, unknown functions,
//!   operand types): the parser's message reworded as Prometheus' (`"rate"` for `'rate'`,
//!   `range vector` for `matrix`), placed at the function's name (the first call of that name
//!   in the query), for a wrongly typed argument at the first argument of that call whose
//!   type is the one reported, and otherwise at the query's first token. Prometheus places
//!   these at the sub-expression concerned, so here they are approximate: exact when that
//!   sub-expression starts the query or is the first call of its name.
//!
//! Lines and columns count bytes from 1, as Prometheus does. Known difference: `promql-parser`
//! accepts a duration without unit (`x[5]`, as seconds), which Prometheus 2.42 rejects.

use promql_parser::parser::lexer;
use promql_parser::parser::value::ValueType;

/// The 1-based line and column of byte offset `pos` in `q`.
pub(crate) fn line_col(q: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(q.len());
    let before = &q.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    (line, col)
}

/// The Prometheus wording of the parser's `msg` about `q`, with its position.
pub(crate) fn format(q: &str, msg: &str) -> String {
    let (pos, msg) = locate(q, msg);
    let (line, col) = line_col(q, pos);
    format!("{line}:{col}: parse error: {msg}")
}

fn locate(q: &str, msg: &str) -> (usize, String) {
    if let Err(lex_msg) = lexer(q) {
        return lex_error(q, &lex_msg);
    }
    // Prometheus' grammar rejects a malformed query before checking types or names
    if let Some(found) = syntax_error(q) {
        return found;
    }
    if msg == "invalid promql query" {
        return (0, msg.to_string());
    }
    let msg = reword(msg);
    (semantic_pos(q, &msg), msg)
}

/// Where Prometheus' lexer reports the lexer error `msg`, in its words.
fn lex_error(q: &str, msg: &str) -> (usize, String) {
    let pos = lex_pos(q, msg);
    let msg = if msg.starts_with("unterminated quoted string") {
        "unterminated quoted string".to_string()
    } else if msg == "unexpected end of input inside brackets" {
        "unclosed left bracket".to_string()
    } else if let Some(c) = msg.strip_prefix("unexpected character inside brackets: ")
        && matches!(c, "')'" | "'}'" | "','" | "'{'" | "'('")
    {
        format!("unexpected \"{}\" in subquery or range, expected \":\" or \"]\"", &c[1..2])
    } else {
        msg.to_string()
    };
    (pos, msg)
}

fn lex_pos(q: &str, msg: &str) -> usize {
    const AT_END: [&str; 5] = [
        "unclosed left parenthesis",
        "unexpected end of input inside braces",
        "unexpected end of input inside brackets",
        "'!' can not be at the end",
        "escape sequence not terminated",
    ];
    if AT_END.contains(&msg) {
        return q.len();
    }
    if msg.starts_with("unterminated quoted string") {
        return unterminated_quote(q).unwrap_or(0);
    }
    // the shortest prefix failing the same way ends with the offending character
    for (i, c) in q.char_indices() {
        let end = i + c.len_utf8();
        if lexer(&q[..end]).err().as_deref() == Some(msg) {
            // Prometheus reports a stray ')' just after it, a bad character after '!' at the
            // '!', everything else at it
            return match c {
                ')' if msg.starts_with("unexpected right parenthesis") => end,
                _ if msg.contains("after '!'") => q[..i].rfind('!').unwrap_or(i),
                _ => i,
            };
        }
    }
    0
}

/// The opening quote of the string left open at the end of `q`.
fn unterminated_quote(q: &str) -> Option<usize> {
    let b = q.as_bytes();
    let mut open: Option<(usize, u8)> = None;
    let mut i = 0;
    while i < b.len() {
        match open {
            None if matches!(b[i], b'"' | b'\'' | b'`') => open = Some((i, b[i])),
            Some((_, qc)) if b[i] == b'\\' && qc != b'`' => i += 1,
            Some((_, qc)) if b[i] == qc => open = None,
            _ => {}
        }
        i += 1;
    }
    open.map(|(p, _)| p)
}

/// The parser's message in Prometheus' words.
fn reword(msg: &str) -> String {
    let mut m = msg.to_string();
    for (from, to) in [
        ("expected type matrix", "expected type range vector"),
        ("expected type vector", "expected type instant vector"),
        ("got matrix", "got range vector"),
        ("got vector", "got instant vector"),
        ("in aggregation expression", "in aggregation parameter"),
    ] {
        m = m.replace(from, to);
    }
    // 'name' -> "name" after the phrases that quote a name
    for p in
        ["in call to function '", "in call to '", "unknown function with name '", "set operator '"]
    {
        if let Some(s) = m.find(p) {
            let start = s + p.len();
            if let Some(len) = m[start..].find('\'') {
                m.replace_range(start + len..start + len + 1, "\"");
                m.replace_range(start - 1..start, "\"");
            }
        }
    }
    m
}

/// The quoted name in `msg` after `prefix`.
fn quoted_after<'m>(msg: &'m str, prefix: &str) -> Option<&'m str> {
    let s = msg.find(prefix)? + prefix.len();
    let len = msg[s..].find('"')?;
    Some(&msg[s..s + len])
}

/// Where a post-parse error is placed (see the module doc for how approximate it is).
fn semantic_pos(q: &str, msg: &str) -> usize {
    let toks = tokens(q);
    let first = toks.first().map_or(0, |t| t.pos);
    if msg.starts_with("unexpected end of input") {
        return q.len();
    }
    if msg == "missing unit character in duration"
        && let Some(k) = toks.windows(2).position(|w| {
            w[0].text == "["
                && (w[1].text == "]" || w[1].text.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
        })
    {
        return toks[k + 1].pos;
    }
    let call = |name: &str| {
        toks.windows(2)
            .position(|w| w[0].text == name && w[0].kind == Kind::Ident && w[1].text == "(")
    };
    if msg.starts_with("expected type ")
        && let Some(name) = quoted_after(msg, "in call to function \"")
        && let Some(k) = call(name)
    {
        let got = msg.rsplit("got ").next().unwrap_or("");
        let args = call_args(q, &toks, k + 1);
        let typed = args.iter().find(|(s, e)| {
            promql_parser::parser::parse(&q[*s..*e]).is_ok_and(|x| type_name(x.value_type()) == got)
        });
        return typed.or(args.first()).map_or(toks[k].pos, |a| a.0);
    }
    for p in ["in call to \"", "unknown function with name \""] {
        if let Some(name) = quoted_after(msg, p)
            && let Some(k) = call(name)
        {
            return toks[k].pos;
        }
    }
    if msg.starts_with("expected type string in aggregation parameter")
        && let Some(k) = toks.iter().position(|t| t.text == "count_values")
        && let Some(p) = toks[k..].iter().position(|t| t.text == "(")
        && let Some(arg) = toks.get(k + p + 1)
    {
        return arg.pos;
    }
    first
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

/// Byte ranges of the arguments of the call whose `(` is `toks[open]`.
fn call_args(q: &str, toks: &[Tok], open: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for t in &toks[open + 1..] {
        match t.text {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" if depth == 0 => {
                if let Some(s) = start {
                    out.push((s, t.pos));
                }
                return out;
            }
            ")" | "]" | "}" => depth -= 1,
            "," if depth == 0 => {
                if let Some(s) = start.take() {
                    out.push((s, t.pos));
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(t.pos);
    }
    if let Some(s) = start {
        out.push((s, q.len()));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Num,
    Str,
    Op,
    Punct,
    Eof,
}

#[derive(Clone, Copy, Debug)]
struct Tok<'q> {
    kind: Kind,
    text: &'q str,
    pos: usize,
}

/// A lenient tokenizer for a query `promql-parser`'s lexer accepted.
fn tokens(q: &str) -> Vec<Tok<'_>> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            Kind::Ident
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() {
                let d = b[i];
                let exp_sign = (d == b'+' || d == b'-')
                    && matches!(b[i - 1], b'e' | b'E')
                    && !q[start..i].starts_with("0x");
                if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            Kind::Num
        } else if matches!(c, b'"' | b'\'' | b'`') {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            Kind::Str
        } else if matches!(c, b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',' | b':' | b'@') {
            i += 1;
            Kind::Punct
        } else {
            let two = q.get(i..i + 2).unwrap_or("");
            i += if ["==", "!=", "<=", ">=", "=~", "!~"].contains(&two) { 2 } else { 1 };
            Kind::Op
        };
        // a char boundary: tokens start and end at ASCII bytes or the end
        while !q.is_char_boundary(i) {
            i += 1;
        }
        out.push(Tok { kind, text: &q[start..i], pos: start });
    }
    out.push(Tok { kind: Kind::Eof, text: "", pos: q.len() });
    out
}

const AGGREGATORS: [&str; 12] = [
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
];
const KEYWORDS: [&str; 9] =
    ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "atan2"];
const SET_OPS: [&str; 3] = ["and", "or", "unless"];

/// How Prometheus names a token in "unexpected ..." messages.
fn desc(t: &Tok) -> String {
    match t.kind {
        Kind::Eof => "end of input".into(),
        Kind::Ident if SET_OPS.contains(&t.text) || t.text == "atan2" => format!("<op:{}>", t.text),
        Kind::Ident if AGGREGATORS.contains(&t.text) => format!("<aggr:{}>", t.text),
        Kind::Ident if KEYWORDS.contains(&t.text) => format!("<{}>", t.text),
        Kind::Ident if t.text.contains(':') => format!("metric identifier {:?}", t.text),
        Kind::Ident => format!("identifier {:?}", t.text),
        Kind::Num => format!("number {:?}", t.text),
        Kind::Str => format!("string {:?}", t.text),
        Kind::Op if t.text == "=" => "\"=\"".into(),
        Kind::Op => format!("<op:{}>", t.text),
        Kind::Punct if t.text == "@" => "<op:@>".into(),
        Kind::Punct => format!("{:?}", t.text),
    }
}

fn is_binary_op(t: &Tok) -> bool {
    match t.kind {
        Kind::Op => {
            ["+", "-", "*", "/", "%", "^", "==", "!=", "<=", ">=", "<", ">"].contains(&t.text)
        }
        Kind::Ident => SET_OPS.contains(&t.text) || t.text == "atan2",
        _ => false,
    }
}

fn is_function(name: &str) -> bool {
    match promql_parser::parser::parse(&format!("{name}()")) {
        Ok(_) => true,
        Err(e) => e.contains("argument(s) in call to"),
    }
}

/// What an open parenthesis belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Paren,
    Call,
    /// An aggregation's arguments; `true` once its grouping clause was read.
    Agg(bool),
}

/// The first token of `q` that cannot continue a PromQL expression, with Prometheus' message.
pub(crate) fn syntax_error(q: &str) -> Option<(usize, String)> {
    let toks = tokens(q);
    let unexpected = |t: &Tok, ctx: &str| Some((t.pos, format!("unexpected {}{ctx}", desc(t))));
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0usize;
    let mut operand = true;
    // label lists of `by (...)`, `on (...)`: from the `(` at toks[i]
    let label_list = |i: &mut usize, ctx: &str| -> Option<(usize, String)> {
        if toks[*i].text != "(" {
            return unexpected(&toks[*i], &format!(" in {ctx}, expected \"(\""));
        }
        *i += 1;
        loop {
            let t = &toks[*i];
            match (t.kind, t.text) {
                (Kind::Punct, ")") => {
                    *i += 1;
                    return None;
                }
                (Kind::Ident, _) => {
                    *i += 1;
                    match toks[*i].text {
                        "," => *i += 1,
                        ")" => {}
                        _ => {
                            return unexpected(
                                &toks[*i],
                                &format!(" in {ctx}, expected \",\" or \")\""),
                            );
                        }
                    }
                }
                _ => return unexpected(t, &format!(" in {ctx}, expected label")),
            }
        }
    };
    loop {
        let t = toks[i];
        if operand {
            match (t.kind, t.text) {
                (Kind::Num | Kind::Str, _) => operand = false,
                (Kind::Op, "+" | "-") => {}
                (Kind::Punct, "(") => stack.push(Open::Paren),
                (Kind::Punct, ")")
                    if matches!(stack.last(), Some(Open::Call | Open::Agg(_)))
                        && toks[i - 1].text == "," =>
                {
                    let m = "trailing commas not allowed in function call args";
                    return Some((toks[i - 1].pos, m.to_string()));
                }
                (Kind::Punct, ")")
                    if stack.last() == Some(&Open::Call) && toks[i - 1].text == "(" =>
                {
                    stack.pop();
                    operand = false;
                }
                (Kind::Punct, "{") => {
                    if let Some(e) = matchers(&toks, &mut i) {
                        return Some(e);
                    }
                    operand = false;
                    continue;
                }
                (Kind::Ident, name)
                    if AGGREGATORS.contains(&name)
                        && toks[i + 1].kind != Kind::Op
                        && !matches!(toks[i + 1].text, "{" | "[" | ")" | "," | "]")
                        && toks[i + 1].kind != Kind::Eof =>
                {
                    i += 1;
                    let grouped = matches!(toks[i].text, "by" | "without");
                    if grouped {
                        i += 1;
                        if let Some(e) = label_list(&mut i, "grouping opts") {
                            return Some(e);
                        }
                    }
                    if toks[i].text != "(" {
                        return unexpected(&toks[i], " in aggregation");
                    }
                    stack.push(Open::Agg(grouped));
                }
                (Kind::Ident, _) if toks[i + 1].text == "{" => {
                    i += 1;
                    if let Some(e) = matchers(&toks, &mut i) {
                        return Some(e);
                    }
                    operand = false;
                    continue;
                }
                (Kind::Ident, name) => {
                    // Prometheus' grammar takes any identifier but a keyword before `(` for a
                    // call, and rejects an unknown name after parsing
                    let keyword = KEYWORDS.contains(&name) || SET_OPS.contains(&name);
                    if toks[i + 1].text == "(" && (!keyword || is_function(name)) {
                        i += 1;
                        stack.push(Open::Call);
                    } else {
                        operand = false;
                    }
                }
                _ => return unexpected(&t, ""),
            }
            i += 1;
            continue;
        }
        match (t.kind, t.text) {
            (Kind::Eof, _) => return None,
            _ if is_binary_op(&t) => {
                i += 1;
                if toks[i].text == "bool" {
                    i += 1;
                }
                if matches!(toks[i].text, "on" | "ignoring") {
                    i += 1;
                    if let Some(e) = label_list(&mut i, "grouping opts") {
                        return Some(e);
                    }
                    if matches!(toks[i].text, "group_left" | "group_right") {
                        i += 1;
                        if toks[i].text == "("
                            && let Some(e) = label_list(&mut i, "grouping opts")
                        {
                            return Some(e);
                        }
                    }
                }
                operand = true;
                continue;
            }
            (Kind::Punct, "[") => {
                i += 1;
                let ctx = " in subquery or range, expected \":\" or \"]\"";
                if toks[i].kind == Kind::Num {
                    i += 1;
                }
                if toks[i].text == ":" {
                    i += 1;
                    if toks[i].kind == Kind::Num {
                        i += 1;
                    }
                }
                if toks[i].text != "]" {
                    return unexpected(&toks[i], ctx);
                }
            }
            (Kind::Ident, "offset") => {
                i += 1;
                if toks[i].text == "-" {
                    i += 1;
                }
                if toks[i].kind != Kind::Num {
                    return unexpected(&toks[i], " in offset, expected duration");
                }
            }
            (Kind::Punct, "@") => {
                i += 1;
                if matches!(toks[i].text, "+" | "-") {
                    i += 1;
                }
                if matches!(toks[i].text, "start" | "end") {
                    for want in ["(", ")"] {
                        i += 1;
                        if toks[i].text != want {
                            return unexpected(&toks[i], " in @, expected timestamp");
                        }
                    }
                } else if toks[i].kind != Kind::Num {
                    return unexpected(&toks[i], " in @, expected timestamp");
                }
            }
            (Kind::Punct, ",") if matches!(stack.last(), Some(Open::Call | Open::Agg(_))) => {
                operand = true;
            }
            (Kind::Punct, ")") if !stack.is_empty() => {
                let open = stack.pop();
                if open == Some(Open::Agg(false)) && matches!(toks[i + 1].text, "by" | "without") {
                    i += 2;
                    if let Some(e) = label_list(&mut i, "grouping opts") {
                        return Some(e);
                    }
                    continue;
                }
            }
            _ => return unexpected(&t, ""),
        }
        i += 1;
    }
}

/// Label matchers from the `{` at `toks[*i]` to just past its `}`.
fn matchers(toks: &[Tok], i: &mut usize) -> Option<(usize, String)> {
    let unexpected = |t: &Tok, ctx: &str| {
        Some((t.pos, format!("unexpected {} in label matching{ctx}", desc(t))))
    };
    *i += 1;
    loop {
        let t = &toks[*i];
        match (t.kind, t.text) {
            (Kind::Punct, "}") => {
                *i += 1;
                return None;
            }
            (Kind::Ident, _) => {}
            _ => return unexpected(t, ", expected identifier or \"}\""),
        }
        *i += 1;
        if !matches!(toks[*i].text, "=" | "!=" | "=~" | "!~") {
            return unexpected(&toks[*i], ", expected label matching operator");
        }
        *i += 1;
        if toks[*i].kind != Kind::Str {
            return unexpected(&toks[*i], ", expected string");
        }
        *i += 1;
        match toks[*i].text {
            "," => *i += 1,
            "}" => {}
            _ => return unexpected(&toks[*i], ", expected \",\" or \"}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_bytes_from_one() {
        assert_eq!(line_col("x +", 3), (1, 4));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\n", 1), (1, 2));
        assert_eq!(line_col("a\n", 2), (2, 1));
    }
}
