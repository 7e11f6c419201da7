//! How the CLI speaks: the one place that maps errors to exit codes and machine-readable codes,
//! and the helpers that print JSON or aligned tables. Nothing here panics on a failed write:
//! stdout's errors are [`CliError`]s (a reader that went away ends the command quietly, a full
//! disk is `IO`), and stderr's are dropped, since there is nowhere left to report them.

use std::io::Write;

use serde::Serialize;
use serde_json::json;

use crate::Error;

/// An error as the CLI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// 1 when the operation ran and was refused; 2 for usage, I/O and store errors; 0 for a
    /// reader of stdout that went away ([`CliError::is_broken_pipe`], never printed).
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

    /// A failed write to stdout. A reader that went away (`folio history | head -1`) is
    /// [`CliError::is_broken_pipe`]: the command stops and exits quietly with the exit code of
    /// what it found so far; any other failure (a full disk, a closed descriptor) is `IO`.
    pub fn stdout(error: &std::io::Error) -> CliError {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError {
                exit: 0,
                code: BROKEN_PIPE.to_string(),
                message: "stdout was closed".to_string(),
            };
        }
        CliError::io(format!("writing to stdout: {error}"))
    }

    /// Whether this is stdout's reader going away: not reported, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        self.code == BROKEN_PIPE
    }

    /// A usage error found by clap while parsing the arguments, in the CLI's one error shape:
    /// clap's explanation on one line, then its usage line (`...; usage: folio balance ...`).
    pub fn from_clap(error: &clap::Error) -> CliError {
        let rendered = error.render().to_string();
        let (mut problem, mut usage) = (Vec::new(), None);
        for line in rendered.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("Usage: ") {
                usage = Some(rest);
            } else if let Some(tip) = line.strip_prefix("tip: ") {
                problem.push(format!("; {tip}"));
            } else if !line.is_empty() && !line.starts_with("For more information") {
                let line = line.strip_prefix("error: ").unwrap_or(line);
                problem.push(format!(" {line}"));
            }
        }
        let mut message = problem.concat().trim_start().to_string();
        if let Some(usage) = usage {
            message = format!("{message}; usage: {usage}");
        }
        CliError::usage(message)
    }

    pub fn missing_store() -> CliError {
        CliError::usage("no store given: pass --store DIR or set FOLIO_STORE")
    }

    /// One line on stderr; with `--json`, also `{"error":{...}}` on stdout. A broken pipe is
    /// not printed. Failed writes are dropped: this is the last thing the process says.
    pub fn print(&self, json: bool) {
        if self.is_broken_pipe() {
            return;
        }
        note(format_args!(
            "folio: error: {} ({})",
            self.message, self.code
        ));
        if json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", error_json(&self.code, &self.message));
        }
    }
}

/// The code of [`CliError::stdout`] for a closed pipe; never printed.
const BROKEN_PIPE: &str = "BROKEN_PIPE";

/// Writes one line to stdout, as `println!` does, but returns a failed write as a
/// [`CliError`] instead of panicking (exit 101).
pub fn write_line(line: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|error| CliError::stdout(&error))
}

/// `println!` that returns `Result<(), CliError>` (see [`write_line`]).
macro_rules! outln {
    () => {
        $crate::cli::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))
    };
}
pub(super) use outln;

/// Writes one line to stderr (progress, notes, errors); a failed write is dropped, never a
/// panic: stderr is where failures would be reported.
pub fn note(line: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(line).and_then(|()| err.write_all(b"\n"));
}

/// Ends a command whose verdict is `code` once its output is written: a reader that went away
/// does not change the verdict (and is not reported).
pub fn finished(written: Result<(), CliError>, code: u8) -> Result<u8, CliError> {
    match written {
        Err(error) if error.is_broken_pipe() => Ok(code),
        Err(error) => Err(error),
        Ok(()) => Ok(code),
    }
}

/// `{"error":{"code":...,"message":...}}`.
pub fn error_json(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message } })
}

/// Prints a value as one line of JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let line = serde_json::to_string(value).map_err(|error| CliError::io(error.to_string()))?;
    outln!("{line}")
}

/// Prints rows as a table with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> Result<(), CliError> {
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
        outln!("{}", padded.join("  ").trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
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
