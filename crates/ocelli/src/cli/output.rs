//! Rendering answers: `-o json` prints the data pretty-printed, `-o yaml` the same data as YAML,
//! `-o table` aligned columns under a header (or a field/value list for one object). Also the
//! small text helpers tables share: a label set as PromQL writes it, a JSON scalar as a cell.
//!
//! Output goes to stdout through [`print`], which treats a closed pipe (`| head`) as done.

use std::io::Write;

use serde_json::Value;

use super::{Failure, Format, Result};

/// Columns with a header.
#[derive(Debug, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The header and rows, each column as wide as its widest cell, two spaces apart; the last
    /// column is not padded.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths = vec![0usize; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
                line.push_str(c);
                if i + 1 < n {
                    line.extend(std::iter::repeat_n(' ', w - c.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints `data` as JSON or YAML, or the table `table` makes of it.
pub fn emit(format: Format, data: &Value, table: impl FnOnce(&Value) -> String) -> Result<()> {
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(data)
                .map_err(|e| Failure::Local(format!("writing JSON: {e}")))?;
            s.push('\n');
            s
        }
        Format::Yaml => serde_saphyr::to_string(data)
            .map_err(|e| Failure::Local(format!("writing YAML: {e}")))?,
        Format::Table => table(data),
    };
    print(&text);
    Ok(())
}

/// For verbs that change something: `message` (one line) as the table output, the data as JSON
/// or YAML.
pub fn done(format: Format, data: &Value, message: &str) -> Result<()> {
    emit(format, data, |_| format!("{message}\n"))
}

/// Writes to stdout; a reader that went away ends the output quietly.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// One object as a two-column FIELD / VALUE table, by field name.
pub fn fields(v: &Value) -> String {
    let mut t = Table::new(&["FIELD", "VALUE"]);
    if let Value::Object(m) = v {
        for (k, v) in m {
            t.row(vec![k.clone(), cell(v)]);
        }
    }
    t.render()
}

/// A JSON value as a table cell: strings bare, null as `-`, arrays joined with `,`, objects as
/// `k=v` pairs.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(m) => {
            m.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(",")
        }
        v => v.to_string(),
    }
}

/// `v[key]` as a cell.
pub fn field(v: &Value, key: &str) -> String {
    cell(v.get(key).unwrap_or(&Value::Null))
}

/// A label set as PromQL writes a series: `name{a="b",c="d"}`, `{}` for none.
pub fn series(metric: &Value) -> String {
    let Value::Object(m) = metric else { return "{}".into() };
    let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", Value::String(v.as_str().unwrap_or("").into())))
        .collect();
    if labels.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "VALUE"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long-name".into(), "22".into()]);
        assert_eq!(t.render(), "NAME       VALUE\na          1\nlong-name  22\n");
    }

    #[test]
    fn cells_and_series() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!({"a": 1})), "a=1");
        assert_eq!(cell(&json!(1.5)), "1.5");
        assert_eq!(series(&json!({"__name__": "up", "job": "x\"y"})), r#"up{job="x\"y"}"#);
        assert_eq!(series(&json!({"__name__": "up"})), "up");
        assert_eq!(series(&json!({})), "{}");
    }

    #[test]
    fn yaml_is_the_same_data() {
        let v = json!({"a": [1, "x"], "b": {"c": null}});
        let y = serde_saphyr::to_string(&v).unwrap();
        assert!(y.contains("a:") && y.contains("- 1") && y.contains("c: null"), "{y}");
    }
}
