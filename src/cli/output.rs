//! How the CLI speaks: the one place that maps errors to exit codes and machine-readable codes,
//! and the helpers that print JSON or aligned tables.

use serde::Serialize;
use serde_json::json;

use crate::Error;

/// An error as the CLI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// 1 when the operation ran and was refused; 2 for usage, I/O and store errors.
    pub exit: u8,
    pub code: String,
    pub message: String,
}

impl CliError {
    /// The exit code of a library error: a rejection of the request is 1, anything that kept
    /// the operation from running is 2.
    pub fn of(error: &Error) -> CliError {
        let exit = if error.is_rejection() { 1 } else { 2 };
        CliError {
            exit,
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            exit: 2,
            code: "USAGE".to_string(),
            message: message.into(),
        }
    }

    pub fn io(message: impl Into<String>) -> CliError {
        CliError {
            exit: 2,
            code: "IO".to_string(),
            message: message.into(),
        }
    }

    pub fn missing_store() -> CliError {
        CliError::usage("no store given: pass --store DIR or set FOLIO_STORE")
    }

    /// One line on stderr; with `--json`, also `{"error":{...}}` on stdout.
    pub fn print(&self, json: bool) {
        eprintln!("folio: error: {} ({})", self.message, self.code);
        if json {
            println!("{}", error_json(&self.code, &self.message));
        }
    }
}

/// `{"error":{"code":...,"message":...}}`.
pub fn error_json(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message } })
}

/// Prints a value as one line of JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let line = serde_json::to_string(value).map_err(|error| CliError::io(error.to_string()))?;
    println!("{line}");
    Ok(())
}

/// Prints rows as a table with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    )
    .map(|style| style.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}
