//! Commands for auditors and operators: verify (read-only), replay (rebuild the state, or a
//! new store as of an entry), export (read-only: the log's entries as events).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::output::{CliError, finished, note, outln, print_json, progress_bar};
use crate::domain::request::parse_hex;
use crate::log::vfs::RealFs;

/// Parses `SEQ:HASH` in the grammar `head` prints: a seq in digits, `:`, and the block hash
/// as 64 lowercase hex digits.
fn parse_expect_head(text: &str) -> Result<(u64, crate::log::Hash), CliError> {
    let bad = || {
        CliError::usage(format!(
            "--expect-head {text:?} is not SEQ:HASH (a seq in digits, ':', and 64 lowercase hex \
             digits, as `folio head` prints it)"
        ))
    };
    let (seq, hash) = text.split_once(':').ok_or_else(bad)?;
    let seq = super::number(seq).map_err(|_| bad())?;
    let hash = parse_hex(hash).ok_or_else(bad)?;
    Ok((seq, hash))
}

pub(super) fn verify(store: &Path, expect_head: &[String], json: bool) -> Result<u8, CliError> {
    let expect: Vec<_> = expect_head
        .iter()
        .map(|text| parse_expect_head(text))
        .collect::<Result<_, _>>()?;
    let bar = progress_bar(0, "verifying");
    let mut progress = |seq: u64, head: u64| {
        bar.set_length(head);
        bar.set_position(seq);
    };
    let report = crate::verify::verify_store(Arc::new(RealFs), store, &expect, &mut progress)
        .map_err(crate::Error::from)?;
    bar.finish_and_clear();
    finished(print_report(&report, json), if report.ok { 0 } else { 1 })
}

fn print_report(report: &crate::verify::VerifyReport, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(report);
    }
    let verdict = if report.ok { "OK" } else { "FAILED" };
    outln!("verify: {verdict}")?;
    outln!(
        "entries {}  head {}:{}",
        report.entries,
        report.head.seq,
        report.head.block_hash
    )?;
    outln!("watermark {}  pending {}", report.watermark, report.pending)?;
    for torn in &report.torn {
        outln!(
            "torn tail (not a failure): {} at offset {}, {} bytes",
            torn.segment,
            torn.offset,
            torn.bytes
        )?;
    }
    if let Some(failure) = &report.first_failure {
        outln!("first failure: {} ({})", failure.kind, failure.detail)?;
    }
    Ok(())
}

pub(super) fn replay(
    store: &Path,
    to_seq: Option<u64>,
    out: Option<PathBuf>,
    json: bool,
) -> Result<u8, CliError> {
    let bar = progress_bar(0, "replaying");
    let mut progress = |seq: u64, head: u64| {
        bar.set_length(head);
        bar.set_position(seq);
    };
    let started = Instant::now();
    let applied = match (&out, to_seq) {
        (Some(out), to_seq) => {
            crate::replay::replay_into(Arc::new(RealFs), store, to_seq, out, &mut progress)
                .map_err(|error| replay_error(&error.into()))?
        }
        (None, Some(_)) => {
            return Err(CliError::usage(
                "--to-seq needs --out: the store's own state always follows its whole log",
            ));
        }
        (None, None) => crate::replay::rebuild_state(Arc::new(RealFs), store, &mut progress)
            .map_err(crate::Error::from)?,
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let per_second = if seconds > 0.0 {
        applied as f64 / seconds
    } else {
        0.0
    };
    let target = out.as_deref().unwrap_or(store).display().to_string();
    if json {
        print_json(
            &json!({ "store": target, "entries": applied, "seconds": seconds, "entries_per_second": per_second.round() }),
        )?;
    } else {
        outln!(
            "replayed {applied} entries into {target} in {seconds:.2}s ({per_second:.0} entries/s)"
        )?;
    }
    Ok(0)
}

/// Says which flag a replay error is about: a `--to-seq` outside 1 to the head, or an `--out`
/// that holds something (perhaps what an interrupted replay left).
fn replay_error(error: &crate::Error) -> CliError {
    let mut cli = CliError::of(error);
    match cli.code.as_str() {
        "SEQ_OUT_OF_RANGE" => {
            cli.message = format!(
                "--to-seq: {}; it must be 1 to the head (entry 1 holds the store id)",
                cli.message
            );
        }
        "STORE_EXISTS" => {
            cli.message = format!(
                "--out: {} (a DIR.replay-partial is what an interrupted replay --out left: \
                 remove it)",
                cli.message
            );
        }
        _ => {}
    }
    cli
}

/// Writes the events of the entries after `since` to stdout, through a buffer. A reader that
/// goes away (`folio export | head`) ends the export quietly, with exit 0.
pub(super) fn export(store: &Path, since: u64) -> Result<u8, CliError> {
    let bar = progress_bar(0, "exporting");
    let mut progress = |seq: u64, head: u64| {
        bar.set_length(head);
        bar.set_position(seq);
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let exported = crate::export::export_store(Arc::new(RealFs), store, since, out, &mut progress);
    bar.finish_and_clear();
    match exported {
        Ok(summary) => {
            if summary.torn_tail {
                note(format_args!(
                    "folio: note: the log ends in a torn write after entry {}; it was not \
                     exported (the next open cuts it)",
                    summary.head
                ));
            }
            Ok(0)
        }
        Err(error) if error.is_broken_pipe() => Ok(0),
        Err(error) => Err(CliError {
            exit: if error.is_rejection() { 1 } else { 2 },
            code: error.code().to_string(),
            message: error.to_string(),
        }),
    }
}
