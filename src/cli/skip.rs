//! `folio skip`: an outbox consumer passes over one entry it cannot receive, with a reason
//! recorded in the log (`Ledger::skip`, `docs/sync.md`, "Skipping an entry").

use std::path::Path;

use serde_json::json;

use super::output::{CliError, outln, print_json};
use super::query::open;
use crate::domain::request::hex;

pub(super) fn skip(
    store: &Path,
    consumer: &str,
    seq: u64,
    reason: &str,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = open(store)?;
    let committed = ledger.skip(consumer, seq, reason);
    ledger.close()?;
    let committed = committed?;
    if json {
        print_json(&json!({
            "consumer": consumer,
            "skipped": seq,
            "cursor": seq,
            "entry": committed,
        }))?;
    } else {
        outln!(
            "consumer {consumer} skipped entry {seq} (cursor {seq}); entry {} block_hash {}",
            committed.seq,
            hex(&committed.block_hash)
        )?;
    }
    Ok(0)
}
