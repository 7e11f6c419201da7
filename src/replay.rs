//! One scan of the log drives every consumer of entries in order: rebuilding or catching up the
//! state, verification, and export all implement [`Replay`]. [`drive`] reads each entry (crc,
//! seq, hash and chain checked by the log reader), decodes its body once, and hands both on.

use crate::Error;
use crate::ledger::entry::{self, EntryBody};
use crate::log::{Entry, Log};
use crate::state::StateError;

/// A consumer of log entries in seq order.
pub trait Replay {
    /// Takes the next entry.
    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), Error>;
    /// Called once after the last entry.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Decodes an entry's body.
pub fn decode_body(entry: &Entry) -> Result<EntryBody, Error> {
    entry::decode(&entry.body).map_err(|error| {
        StateError::BadEntry {
            seq: entry.seq,
            detail: error.to_string(),
        }
        .into()
    })
}

/// Feeds entries `seq_from..=seq_to` to `sink`, calling `progress` with each seq; returns how
/// many entries it fed.
pub fn drive(
    log: &Log,
    seq_from: u64,
    seq_to: u64,
    sink: &mut dyn Replay,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, Error> {
    let mut fed = 0;
    if seq_from <= seq_to {
        for entry in log.iter_from(seq_from) {
            let entry = entry?;
            if entry.seq > seq_to {
                break;
            }
            let body = decode_body(&entry)?;
            sink.entry(&entry, &body)?;
            progress(entry.seq);
            fed += 1;
        }
    }
    sink.finish()?;
    Ok(fed)
}
