//! Applying entries read from the log to the state, in write transactions of bounded size,
//! each carrying its watermark: so a catch-up or rebuild interrupted at any point leaves a
//! state whose watermark matches its contents, and the next open resumes from there. The
//! bound is in entries and in bytes, so that the decoded entries, their rows and redb's dirty
//! pages that one transaction holds stay small whatever the size of a transaction: a store
//! that ran on a machine reopens on it.

use super::{Replay, ReplayError};
use crate::domain::entry::EntryBody;
use crate::domain::view::TransactionLookup;
use crate::log::Entry;
use crate::state::apply::{apply, set_watermark};
use crate::state::hot::{HotRows, StagedTables};
use crate::state::tables::{Watermark, WriteTables};
use crate::state::{State, StateError};

/// Most entries applied per write transaction.
pub const ENTRIES_PER_TRANSACTION_MAX: usize = 10_000;
/// Most bytes of entry bodies (as the log holds them) applied per write transaction; an entry
/// larger than this goes alone. Decoded, with its rows and redb's dirty pages, a body takes a
/// few times its size in memory: 4 MiB keeps a catch-up's peak near that of posting.
pub const BODY_BYTES_PER_TRANSACTION_MAX: usize = 4 << 20;

/// A [`Replay`] sink that applies entries to a state.
pub struct Applier<'a> {
    state: &'a State,
    /// Where a revert finds the transaction it reverts: the log the entries come from.
    log: &'a dyn TransactionLookup,
    buffered: Vec<(u64, [u8; 32], EntryBody)>,
    /// Body bytes of the buffered entries.
    buffered_body_bytes: usize,
    /// Volumes and posting sequences, written once per transaction.
    hot: HotRows,
    /// Make the final transaction durable (a checkpoint).
    checkpoint_at_end: bool,
}

impl<'a> Applier<'a> {
    pub fn new(state: &'a State, log: &'a dyn TransactionLookup) -> Applier<'a> {
        Applier {
            state,
            log,
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
                apply(&mut staged, self.log, *seq, body)?;
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
    type Error = ReplayError;

    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ReplayError> {
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

    fn finish(&mut self) -> Result<(), ReplayError> {
        self.flush(self.checkpoint_at_end)?;
        if self.checkpoint_at_end {
            self.state.checkpoint()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entry::{ConsumerAcked, StoreCreated, TransactionEntry};
    use crate::state::StateReads;

    fn entry(seq: u64, body_bytes: usize) -> Entry {
        Entry {
            version: crate::log::format::FORMAT_VERSION,
            seq,
            batch_first_seq: seq,
            previous_hash: [0; 32],
            block_hash: [seq as u8; 32],
            body: vec![0; body_bytes],
        }
    }

    fn body(seq: u64) -> EntryBody {
        if seq == 1 {
            return EntryBody::StoreCreated(StoreCreated {
                store_id: [7; 16],
                created_at: 0,
            });
        }
        EntryBody::ConsumerAcked(ConsumerAcked {
            consumer: "central".to_string(),
            seq: seq - 1,
            inserted_at: 0,
        })
    }

    /// A log of acks only: no entry is a transaction.
    struct NoTransactions;

    impl TransactionLookup for NoTransactions {
        fn transaction(
            &self,
            _: u64,
        ) -> Result<Option<TransactionEntry>, crate::domain::view::ViewError> {
            Ok(None)
        }
    }

    #[test]
    fn a_catch_up_commits_before_its_entries_pass_the_byte_bound() {
        let state = State::in_memory().unwrap();
        let mut applier = Applier::new(&state, &NoTransactions);
        let body_bytes = BODY_BYTES_PER_TRANSACTION_MAX / 4 + 1;
        for seq in 1..=9 {
            applier.entry(&entry(seq, body_bytes), &body(seq)).unwrap();
            // Never more than the bound buffered (far fewer than ENTRIES_PER_TRANSACTION_MAX).
            assert!(applier.buffered_body_bytes <= BODY_BYTES_PER_TRANSACTION_MAX);
        }
        // Three entries fit under the bound: 1..=3 and 4..=6 are committed, 7..=9 buffered.
        assert_eq!(state.read_tables().unwrap().watermark().unwrap().seq, 6);
        applier.finish().unwrap();
        assert_eq!(state.read_tables().unwrap().watermark().unwrap().seq, 9);
        // An entry over the bound on its own goes alone.
        applier
            .entry(&entry(10, BODY_BYTES_PER_TRANSACTION_MAX + 1), &body(10))
            .unwrap();
        applier.entry(&entry(11, 1), &body(11)).unwrap();
        assert_eq!(state.read_tables().unwrap().watermark().unwrap().seq, 10);
    }
}
