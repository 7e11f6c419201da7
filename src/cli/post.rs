//! `folio post`: transaction requests as JSON Lines in, one result line per input line out, in
//! input order. Lines are posted in large groups (`post_batch`, so one fsync per group); a
//! rejected line does not stop the rest, and makes the exit code 1. A line is read as bytes, so
//! one that is not UTF-8 is a rejected line (`INVALID_JSON`) like any other malformed request.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::json;

use super::output::{CliError, error_json, outln, print_json, progress_bar};
use super::query::open;
use crate::{Error, PostRequest};

/// Lines posted per group.
const LINES_PER_GROUP: usize = 4096;

/// The outcome of one input line.
enum LineResult {
    Posted(Box<crate::Receipt>),
    Rejected { code: String, message: String },
}

/// What the lines posted so far came to.
#[derive(Default)]
struct Tally {
    /// Lines read (and posted or rejected, and printed unless stdout failed).
    lines: usize,
    rejected: usize,
    /// The first error that says something about the store rather than the line.
    fatal: Option<CliError>,
}

pub(super) fn post(store: &Path, file: Option<&Path>, json: bool) -> Result<u8, CliError> {
    let input: Box<dyn Read> = match file {
        None => Box::new(std::io::stdin()),
        Some(path) if path == Path::new("-") => Box::new(std::io::stdin()),
        Some(path) => {
            let opened = std::fs::File::open(path);
            Box::new(opened.map_err(|error| CliError::io(format!("{}: {error}", path.display())))?)
        }
    };
    let total = file
        .and_then(|path| std::fs::metadata(path).ok())
        .map_or(0, |meta| meta.len());
    let ledger = open(store)?;
    let bar = progress_bar(total, "posting");
    let mut tally = Tally::default();
    let posted = post_lines(&ledger, BufReader::new(input), &bar, json, &mut tally);
    bar.finish_and_clear();
    ledger.close()?;
    if let Some(error) = tally.fatal {
        return Err(error);
    }
    match posted {
        // The reader went away (`folio post | head -1`): stop after the group in progress.
        Err(error) if error.is_broken_pipe() => {}
        Err(mut error) => {
            error.message = format!(
                "{}; lines 1 to {} were posted or rejected, the rest were not read",
                error.message, tally.lines
            );
            return Err(error);
        }
        Ok(()) => {}
    }
    Ok(if tally.rejected > 0 { 1 } else { 0 })
}

/// Reads, posts and prints groups of lines until the input ends or a read or a write fails.
fn post_lines(
    ledger: &crate::Ledger,
    mut input: impl BufRead,
    bar: &indicatif::ProgressBar,
    json: bool,
    tally: &mut Tally,
) -> Result<(), CliError> {
    let mut bytes = Vec::new();
    loop {
        let mut group: Vec<(usize, Result<PostRequest, String>)> =
            Vec::with_capacity(LINES_PER_GROUP);
        let mut read_error = None;
        while group.len() < LINES_PER_GROUP {
            match read_line(&mut input, &mut bytes) {
                Ok(0) => break,
                Ok(consumed) => {
                    bar.inc(consumed as u64);
                    group.push((tally.lines + group.len() + 1, parse_line(&bytes)));
                }
                Err(error) => {
                    let after = tally.lines + group.len();
                    read_error = Some(CliError::io(format!(
                        "reading input after line {after}: {error}"
                    )));
                    break;
                }
            }
        }
        if group.is_empty() {
            return read_error.map_or(Ok(()), Err);
        }
        let results = post_group(ledger, group);
        tally.lines += results.len();
        for (number, result) in results {
            if let LineResult::Rejected { code, message } = &result {
                tally.rejected += 1;
                if tally.fatal.is_none() && !is_rejection_code(code) {
                    tally.fatal = Some(CliError {
                        exit: 2,
                        code: code.clone(),
                        message: message.clone(),
                    });
                }
            }
            print_line(number, &result, json)?;
        }
        if let Some(error) = read_error {
            return Err(error);
        }
    }
}

/// Reads one line into `bytes`, without its `\n` (or `\r\n`, as `BufRead::lines` strips);
/// returns the bytes consumed, 0 at the end of the input.
fn read_line(input: &mut impl BufRead, bytes: &mut Vec<u8>) -> std::io::Result<usize> {
    bytes.clear();
    let consumed = input.read_until(b'\n', bytes)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(consumed)
}

/// One line's request; JSON text is UTF-8, so other bytes are a malformed line.
fn parse_line(bytes: &[u8]) -> Result<PostRequest, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => PostRequest::from_json_line(text),
        Err(error) => Err(format!(
            "not UTF-8 (an invalid byte at offset {})",
            error.valid_up_to()
        )),
    }
}

/// Codes that reject a line without saying anything about the store.
fn is_rejection_code(code: &str) -> bool {
    !matches!(
        code,
        "OUTCOME_UNKNOWN" | "POISONED" | "NO_SPACE" | "STORAGE" | "CLOSED" | "IO" | "STATE" | "LOG"
    )
}

fn post_group(
    ledger: &crate::Ledger,
    group: Vec<(usize, Result<PostRequest, String>)>,
) -> Vec<(usize, LineResult)> {
    let mut numbers = Vec::new();
    let mut requests = Vec::new();
    let mut results: Vec<(usize, Option<LineResult>)> = Vec::with_capacity(group.len());
    for (number, parsed) in group {
        match parsed {
            Ok(request) => {
                numbers.push(results.len());
                requests.push(request);
                results.push((number, None));
            }
            Err(message) => {
                let code = "INVALID_JSON".to_string();
                results.push((
                    number,
                    Some(LineResult::Rejected {
                        code,
                        message: format!("line {number}: {message}"),
                    }),
                ));
            }
        }
    }
    for (index, outcome) in numbers.into_iter().zip(ledger.post_batch(requests)) {
        results[index].1 = Some(match outcome {
            Ok(receipt) => LineResult::Posted(Box::new(receipt)),
            Err(error) => rejection(&error),
        });
    }
    results
        .into_iter()
        .map(|(number, result)| {
            let result = result.unwrap_or(LineResult::Rejected {
                code: "CLOSED".into(),
                message: "not posted".into(),
            });
            (number, result)
        })
        .collect()
}

fn rejection(error: &Error) -> LineResult {
    LineResult::Rejected {
        code: error.code().to_string(),
        message: error.to_string(),
    }
}

fn print_line(number: usize, result: &LineResult, json: bool) -> Result<(), CliError> {
    match (result, json) {
        (LineResult::Posted(receipt), true) => print_json(receipt),
        (LineResult::Posted(receipt), false) => {
            let replayed = if receipt.replayed { " (replayed)" } else { "" };
            let reference = receipt.reference.as_deref().unwrap_or("-");
            let hash = crate::domain::request::hex(&receipt.block_hash);
            outln!(
                "line {number}: tx {} ref {reference}{replayed} block_hash {hash}",
                receipt.id
            )
        }
        (LineResult::Rejected { code, message }, true) => {
            let mut line = error_json(code, message);
            line["line"] = json!(number);
            print_json(&line)
        }
        (LineResult::Rejected { code, message }, false) => {
            outln!("line {number}: rejected ({code}): {message}")
        }
    }
}
