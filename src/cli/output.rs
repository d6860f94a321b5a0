//! How results are printed: aligned columns for people, the API's JSON for scripts.

use std::io::Write;

use indicatif::{HumanBytes, HumanCount};
use serde_json::Value;

/// `--output`: `text` (columns and sentences) or `json` (the API's JSON; a list is one array of its items,
/// gathered over every page; `--watch` prints one JSON event per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is no error of ours.
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Prints one line of NDJSON on stdout and flushes it, so a reader sees each event as it happens.
pub fn print_json_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
    let _ = out.flush();
}

/// A column of a table: its heading and how a cell is taken from an item.
pub struct Column {
    pub heading: &'static str,
    pub cell: fn(&Value) -> String,
}

/// Prints items as columns aligned with spaces, headed by the column names; `empty` when there are none.
pub fn print_table(items: &[Value], columns: &[Column], empty: &str) {
    if items.is_empty() {
        println!("{empty}");
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| (c.cell)(item)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(std::iter::once(c.heading.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        line.trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(columns.iter().map(|c| c.heading).collect()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// A field as text: strings bare, null and absent as `-`, anything else as JSON.
pub fn field(item: &Value, pointer: &str) -> String {
    match item.pointer(pointer) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A count field with thousands separators (`12,345`), or `-`.
pub fn count(item: &Value, pointer: &str) -> String {
    item.pointer(pointer)
        .and_then(Value::as_u64)
        .map_or("-".into(), |n| HumanCount(n).to_string())
}

/// A size field in binary units (`3.40 MiB`), or `-`.
pub fn bytes(item: &Value, pointer: &str) -> String {
    item.pointer(pointer)
        .and_then(Value::as_u64)
        .map_or("-".into(), |n| HumanBytes(n).to_string())
}
