//! Applying entries read from the log to the state, in write transactions of bounded size,
//! each carrying its watermark: so a catch-up or rebuild interrupted at any point leaves a
//! state whose watermark matches its contents, and the next open resumes from there. The
//! bound is in entries and in bytes, so that the decoded entries, their rows and redb's dirty
//! pages that one transaction holds stay small whatever the size of a transaction: a store
//! that ran on a machine reopens on it.

use super::apply::{apply, set_watermark};
use super::hot::{HotRows, StagedTables};
use super::tables::{Watermark, WriteTables};
use super::{State, StateError};
use crate::Error;
use crate::ledger::entry::EntryBody;
use crate::log::Entry;
use crate::replay::Replay;

/// Most entries applied per write transaction.
pub const ENTRIES_PER_TRANSACTION_MAX: usize = 10_000;
/// Most bytes of entry bodies (as the log holds them) applied per write transaction; an entry
/// larger than this goes alone. Decoded, with its rows and redb's dirty pages, a body takes a
/// few times its size in memory: 4 MiB keeps a catch-up's peak near that of posting.
pub const BODY_BYTES_PER_TRANSACTION_MAX: usize = 4 << 20;

/// A [`Replay`] sink that applies entries to a state.
pub struct Applier<'a> {
    state: &'a State,
    buffered: Vec<(u64, [u8; 32], EntryBody)>,
    /// Body bytes of the buffered entries.
    buffered_body_bytes: usize,
    /// Volumes and posting sequences, written once per transaction.
    hot: HotRows,
    /// Make the final transaction durable (a checkpoint).
    checkpoint_at_end: bool,
}

impl<'a> Applier<'a> {
    pub fn new(state: &'a State) -> Applier<'a> {
        Applier {
            state,
            buffered: Vec::new(),
            buffered_body_bytes: 0,
            hot: HotRows::new(),
            checkpoint_at_end: true,
        }
    }

    fn flush(&mut self, durable: bool) -> Result<(), StateError> {
        let Some(&(seq, block_hash, _)) = self.buffered.last() else {
            return Ok(());
        };
        let txn = self.state.begin_write(durable)?;
        let applied = (|| {
            let mut tables = WriteTables::open(&txn)?;
            let mut staged = StagedTables {
                tables: &mut tables,
                hot: &mut self.hot,
            };
            for (seq, _, body) in &self.buffered {
                apply(&mut staged, *seq, body)?;
            }
            self.hot.flush(&mut tables)?;
            set_watermark(&mut tables, Watermark { seq, block_hash })
        })();
        if let Err(error) = applied {
            // The dropped transaction takes the dirty rows' writes with it.
            self.hot.clear();
            return Err(error);
        }
        self.state.commit(txn)?;
        self.buffered.clear();
        self.buffered_body_bytes = 0;
        Ok(())
    }
}

impl Replay for Applier<'_> {
    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), Error> {
        if self.buffered_body_bytes + entry.body.len() > BODY_BYTES_PER_TRANSACTION_MAX {
            self.flush(false)?;
        }
        self.buffered
            .push((entry.seq, entry.block_hash, body.clone()));
        self.buffered_body_bytes += entry.body.len();
        if self.buffered.len() >= ENTRIES_PER_TRANSACTION_MAX {
            self.flush(false)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.flush(self.checkpoint_at_end)?;
        if self.checkpoint_at_end {
            self.state.checkpoint()?;
        }
        Ok(())
    }
}
