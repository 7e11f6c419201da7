//! `folio post`: transaction requests as JSON Lines in, one result line per input line out, in
//! input order. Lines are posted in large groups (`post_batch`, so one fsync per group); a
//! rejected line does not stop the rest, and makes the exit code 1.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::json;

use super::output::{CliError, error_json, print_json, progress_bar};
use super::query::open;
use crate::{Error, PostRequest};

/// Lines posted per group.
const LINES_PER_GROUP: usize = 4096;

/// The outcome of one input line.
enum LineResult {
    Posted(Box<crate::Receipt>),
    Rejected { code: String, message: String },
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
    let mut lines = BufReader::new(input).lines();
    let (mut line_number, mut rejected, mut fatal) = (0usize, 0usize, None);
    loop {
        let mut group: Vec<(usize, Result<PostRequest, String>)> =
            Vec::with_capacity(LINES_PER_GROUP);
        for line in lines.by_ref().take(LINES_PER_GROUP) {
            let line = line.map_err(|error| CliError::io(format!("reading input: {error}")))?;
            line_number += 1;
            bar.inc(line.len() as u64 + 1);
            group.push((line_number, PostRequest::from_json_line(&line)));
        }
        if group.is_empty() {
            break;
        }
        for (number, result) in post_group(&ledger, group) {
            if let LineResult::Rejected { code, message } = &result {
                rejected += 1;
                if fatal.is_none() && !is_rejection_code(code) {
                    fatal = Some(CliError {
                        exit: 2,
                        code: code.clone(),
                        message: message.clone(),
                    });
                }
            }
            print_line(number, &result, json)?;
        }
    }
    bar.finish_and_clear();
    ledger.close()?;
    if let Some(error) = fatal {
        return Err(error);
    }
    Ok(if rejected > 0 { 1 } else { 0 })
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
            let hash = crate::ledger::request::hex(&receipt.block_hash);
            println!(
                "line {number}: tx {} ref {reference}{replayed} block_hash {hash}",
                receipt.id
            );
            Ok(())
        }
        (LineResult::Rejected { code, message }, true) => {
            let mut line = error_json(code, message);
            line["line"] = json!(number);
            print_json(&line)
        }
        (LineResult::Rejected { code, message }, false) => {
            println!("line {number}: rejected ({code}): {message}");
            Ok(())
        }
    }
}
