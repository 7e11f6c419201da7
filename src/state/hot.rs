//! The hot rows: the volumes and posting sequences that every transaction reads and rewrites,
//! kept in memory in front of a write transaction's tables and written to redb once per
//! transaction (write-behind). An account posted to a hundred times in one group or catch-up
//! batch costs a hundred hash-map updates and one B-tree insert, instead of a hundred B-tree
//! reads and a hundred inserts.
//!
//! What is in memory is either clean (equal to the row in the tables) or dirty (newer, not yet
//! written). [`HotRows::flush`] writes the dirty rows before the transaction commits (the group
//! commit does it for every group, so that readers see each group once its fsync returned); a
//! transaction that is dropped instead takes its dirty rows with it ([`HotRows::clear`]). Clean
//! rows stay across commits, up to [`HOT_ROWS_MAX`], so a store's busy accounts are read from
//! redb once.

use std::collections::{HashMap, HashSet};

use redb::ReadableTable;

use super::error::StateError;
use super::history::PendingRuns;
use super::tables::{
    ReferenceRow, StateReads, TransactionChanges, VolumesRow, Watermark, WriteTables, encode_row,
};
use super::timeline::PendingTimeline;
use crate::domain::model::{Metadata, Overdraft, Volumes};

/// Rows kept in memory at most; past it, a flush also forgets the clean ones.
pub const HOT_ROWS_MAX: usize = 1 << 17;

/// A row in memory, and whether the tables still hold an older value of it.
#[derive(Debug, Clone, Copy)]
struct Cached<T> {
    value: T,
    dirty: bool,
}

/// Volumes and posting sequences in front of the tables (see the module documentation).
#[derive(Debug)]
pub struct HotRows {
    /// Key: [`key`] of (ledger, account, asset).
    volumes: HashMap<Vec<u8>, Cached<VolumesRow>>,
    /// Key: [`key`] of (ledger, account); `None`: the account has no row.
    posting_seqs: HashMap<Vec<u8>, Cached<Option<u64>>>,
    /// Ledgers known to have their row in the tables (written at once: they are rare).
    ledgers: HashSet<String>,
    /// The keys of the dirty rows of `volumes` and of `posting_seqs`, each once.
    dirty_volumes: Vec<Vec<u8>>,
    dirty_posting_seqs: Vec<Vec<u8>>,
    /// [`HOT_ROWS_MAX`], but for tests.
    rows_max: usize,
    /// The seqs appended to accounts' histories in this transaction, written as runs.
    pub history: PendingRuns,
    /// The entries appended to accounts' timelines in this transaction, written as runs, and
    /// their changes to the accounts' day totals.
    pub timeline: PendingTimeline,
    /// Transaction entries applied in this transaction, added to the count in `meta`.
    pub transactions_applied: u64,
}

/// A map key for a tuple of names: each part but the last is prefixed by its length, so two
/// different tuples never make the same bytes.
fn key(parts: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(parts.iter().map(|part| part.len() + 4).sum());
    for (index, part) in parts.iter().enumerate() {
        if index + 1 < parts.len() {
            bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// The `N` names a [`key`] was made of.
fn parts<const N: usize>(mut bytes: &[u8]) -> Result<[&str; N], StateError> {
    let bad = || StateError::Database("a hot-row key does not parse".to_string());
    let mut parts = [""; N];
    for (index, slot) in parts.iter_mut().enumerate() {
        let len = if index + 1 < N {
            let (prefix, rest) = bytes.split_first_chunk::<4>().ok_or_else(bad)?;
            bytes = rest;
            u32::from_le_bytes(*prefix) as usize
        } else {
            bytes.len()
        };
        let (part, rest) = bytes.split_at_checked(len).ok_or_else(bad)?;
        *slot = std::str::from_utf8(part).map_err(|_| bad())?;
        bytes = rest;
    }
    Ok(parts)
}

fn write_volumes(
    tables: &mut WriteTables<'_>,
    key: &[u8],
    row: VolumesRow,
) -> Result<(), StateError> {
    let [ledger, account, asset] = parts(key)?;
    let bytes = encode_row("volumes", &row)?;
    tables
        .volumes
        .insert((ledger, account, asset), &bytes[..])?;
    Ok(())
}

fn write_posting_seq(
    tables: &mut WriteTables<'_>,
    key: &[u8],
    posting_seq: Option<u64>,
) -> Result<(), StateError> {
    let [ledger, account] = parts(key)?;
    if let Some(posting_seq) = posting_seq {
        tables.accounts.insert((ledger, account), posting_seq)?;
    }
    Ok(())
}

/// Writes the rows listed in `dirty` (keys of `rows`) and marks them clean. On an error the
/// caller drops the transaction and clears the hot rows.
fn write_dirty<T: Copy>(
    tables: &mut WriteTables<'_>,
    rows: &mut HashMap<Vec<u8>, Cached<T>>,
    dirty: &mut Vec<Vec<u8>>,
    write: fn(&mut WriteTables<'_>, &[u8], T) -> Result<(), StateError>,
) -> Result<(), StateError> {
    for key in std::mem::take(dirty) {
        let Some(cached) = rows.get_mut(&key) else {
            unreachable!("a listed dirty key is in its map");
        };
        write(tables, &key, cached.value)?;
        cached.dirty = false;
    }
    Ok(())
}

/// Stores a dirty row, listing its key in `dirty` unless it was dirty already.
fn put<T>(
    rows: &mut HashMap<Vec<u8>, Cached<T>>,
    dirty: &mut Vec<Vec<u8>>,
    key: Vec<u8>,
    row: Cached<T>,
) {
    match rows.get_mut(&key) {
        Some(cached) => {
            if !cached.dirty {
                dirty.push(key);
            }
            *cached = row;
        }
        None => {
            dirty.push(key.clone());
            rows.insert(key, row);
        }
    }
}

impl HotRows {
    pub fn new() -> HotRows {
        HotRows::with_rows_max(HOT_ROWS_MAX)
    }

    fn with_rows_max(rows_max: usize) -> HotRows {
        HotRows {
            volumes: HashMap::new(),
            posting_seqs: HashMap::new(),
            ledgers: HashSet::new(),
            dirty_volumes: Vec::new(),
            dirty_posting_seqs: Vec::new(),
            rows_max,
            history: PendingRuns::default(),
            timeline: PendingTimeline::default(),
            transactions_applied: 0,
        }
    }

    /// Forgets everything, dirty rows included: for a write transaction that was dropped.
    pub fn clear(&mut self) {
        self.volumes.clear();
        self.posting_seqs.clear();
        self.ledgers.clear();
        self.dirty_volumes.clear();
        self.dirty_posting_seqs.clear();
        self.history.clear();
        self.timeline.clear();
        self.transactions_applied = 0;
    }

    /// Rows changed and not yet written.
    pub fn dirty_rows(&self) -> usize {
        self.dirty_volumes.len() + self.dirty_posting_seqs.len()
    }

    fn put_volumes(&mut self, key: Vec<u8>, value: VolumesRow) {
        let row = Cached { value, dirty: true };
        put(&mut self.volumes, &mut self.dirty_volumes, key, row);
    }

    fn put_posting_seq(&mut self, key: Vec<u8>, posting_seq: u64) {
        let row = Cached {
            value: Some(posting_seq),
            dirty: true,
        };
        put(
            &mut self.posting_seqs,
            &mut self.dirty_posting_seqs,
            key,
            row,
        );
    }

    fn len(&self) -> usize {
        self.volumes.len() + self.posting_seqs.len() + self.ledgers.len()
    }

    /// Writes every dirty row, the transaction's history and timeline runs and its day totals'
    /// changes, to the tables and marks them clean; past [`HOT_ROWS_MAX`] rows,
    /// forgets them all instead. (Sorting the rows first saved no instructions in redb's
    /// inserts and cost 1% of a verify: callgrind, `examples/profile verify`.)
    pub fn flush(&mut self, tables: &mut WriteTables<'_>) -> Result<(), StateError> {
        write_dirty(
            tables,
            &mut self.volumes,
            &mut self.dirty_volumes,
            write_volumes,
        )?;
        write_dirty(
            tables,
            &mut self.posting_seqs,
            &mut self.dirty_posting_seqs,
            write_posting_seq,
        )?;
        self.history.flush(&mut tables.history)?;
        self.timeline
            .flush(&mut tables.timeline, &mut tables.day_totals)?;
        tables.count_transactions(std::mem::take(&mut self.transactions_applied))?;
        if self.len() > self.rows_max {
            self.clear();
        }
        Ok(())
    }
}

/// A write transaction's tables with the hot rows in front: what [`super::apply::apply`]
/// writes to and validation reads from.
pub struct StagedTables<'a, 'txn> {
    pub tables: &'a mut WriteTables<'txn>,
    pub hot: &'a mut HotRows,
}

impl StagedTables<'_, '_> {
    /// Makes sure the ledger has its row (the seq of the entry that first used it).
    pub fn touch_ledger(&mut self, ledger: &str, seq: u64) -> Result<(), StateError> {
        if self.hot.ledgers.contains(ledger) {
            return Ok(());
        }
        if self.tables.ledgers.get(ledger)?.is_none() {
            self.tables.ledgers.insert(ledger, seq)?;
        }
        self.hot.ledgers.insert(ledger.to_string());
        Ok(())
    }

    /// The account's posting sequence row, `None` when it has none.
    fn posting_seq_row(
        &self,
        key: &[u8],
        ledger: &str,
        account: &str,
    ) -> Result<Option<u64>, StateError> {
        if let Some(cached) = self.hot.posting_seqs.get(key) {
            return Ok(cached.value);
        }
        Ok(self
            .tables
            .accounts
            .get((ledger, account))?
            .map(|value| value.value()))
    }

    /// Sets the account's posting sequence; returns the one it replaces (0 for none).
    pub fn swap_posting_seq(
        &mut self,
        ledger: &str,
        account: &str,
        posting_seq: u64,
    ) -> Result<u64, StateError> {
        let key = key(&[ledger, account]);
        let current = self.posting_seq_row(&key, ledger, account)?;
        self.hot.put_posting_seq(key, posting_seq);
        Ok(current.unwrap_or(0))
    }

    /// Gives the account a row (posting sequence 0) if it has none.
    pub fn touch_account(&mut self, ledger: &str, account: &str) -> Result<(), StateError> {
        let key = key(&[ledger, account]);
        if self.posting_seq_row(&key, ledger, account)?.is_none() {
            self.hot.put_posting_seq(key, 0);
        }
        Ok(())
    }

    /// Sets the volumes of an account in an asset; returns the ones they replace.
    pub fn swap_volumes(
        &mut self,
        ledger: &str,
        account: &str,
        asset: &str,
        row: VolumesRow,
    ) -> Result<Volumes, StateError> {
        let key = key(&[ledger, account, asset]);
        let current = match self.hot.volumes.get(&key) {
            Some(cached) => cached.value.volumes(),
            None => self.tables.volumes(ledger, account, asset)?,
        };
        self.hot.put_volumes(key, row);
        Ok(current)
    }
}

impl StateReads for StagedTables<'_, '_> {
    fn volumes(&self, ledger: &str, account: &str, asset: &str) -> Result<Volumes, StateError> {
        match self.hot.volumes.get(&key(&[ledger, account, asset])) {
            Some(cached) => Ok(cached.value.volumes()),
            None => self.tables.volumes(ledger, account, asset),
        }
    }
    fn overdraft(&self, ledger: &str, account: &str, asset: &str) -> Result<Overdraft, StateError> {
        self.tables.overdraft(ledger, account, asset)
    }
    fn posting_seq(&self, ledger: &str, account: &str) -> Result<u64, StateError> {
        Ok(self
            .posting_seq_row(&key(&[ledger, account]), ledger, account)?
            .unwrap_or(0))
    }
    fn reference(&self, ledger: &str, reference: &str) -> Result<Option<ReferenceRow>, StateError> {
        self.tables.reference(ledger, reference)
    }
    fn transaction_changes(&self, id: u64) -> Result<Option<TransactionChanges>, StateError> {
        self.tables.transaction_changes(id)
    }
    fn account_metadata(&self, ledger: &str, account: &str) -> Result<Metadata, StateError> {
        self.tables.account_metadata(ledger, account)
    }
    fn watermark(&self) -> Result<Watermark, StateError> {
        self.tables.watermark()
    }
    fn cursor(&self, consumer: &str) -> Result<u64, StateError> {
        self.tables.cursor(consumer)
    }
}

impl Default for HotRows {
    fn default() -> HotRows {
        HotRows::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entry::Dec;
    use crate::state::State;
    use redb::ReadableTableMetadata;
    use rust_decimal::Decimal;

    fn row(input: i64) -> VolumesRow {
        VolumesRow {
            input: Dec(Decimal::from(input)),
            output: Dec(Decimal::ZERO),
        }
    }

    /// Writes `count` accounts' volumes and posting sequences through the hot rows, flushes,
    /// commits, and returns what a read transaction then finds.
    fn write_and_flush(hot: &mut HotRows, count: i64) -> Vec<(Volumes, u64)> {
        let state = State::in_memory().unwrap();
        let txn = state.begin_write(false).unwrap();
        {
            let mut tables = WriteTables::open(&txn).unwrap();
            let mut staged = StagedTables {
                tables: &mut tables,
                hot: &mut *hot,
            };
            for n in 0..count {
                let account = format!("a:{n}");
                // Twice: the second write must see the first, from memory.
                assert_eq!(
                    staged
                        .swap_volumes("main", &account, "USD", row(n))
                        .unwrap(),
                    Volumes::default()
                );
                assert_eq!(
                    staged
                        .swap_volumes("main", &account, "USD", row(n + 1))
                        .unwrap(),
                    row(n).volumes()
                );
                assert_eq!(staged.swap_posting_seq("main", &account, 2).unwrap(), 0);
                assert_eq!(staged.posting_seq("main", &account).unwrap(), 2);
            }
            // Nothing reached the tables before the flush; each row counts once as dirty.
            assert_eq!(tables.volumes.len().unwrap(), 0);
            assert_eq!(hot.dirty_rows(), 2 * count as usize);
            hot.flush(&mut tables).unwrap();
            assert_eq!(hot.dirty_rows(), 0);
        }
        state.commit(txn).unwrap();
        let read = state.read_tables().unwrap();
        (0..count)
            .map(|n| {
                let account = format!("a:{n}");
                (
                    read.volumes("main", &account, "USD").unwrap(),
                    read.posting_seq("main", &account).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn flush_writes_every_dirty_row_and_keeps_them_clean() {
        let mut hot = HotRows::new();
        let found = write_and_flush(&mut hot, 50);
        for (n, (volumes, seq)) in found.into_iter().enumerate() {
            assert_eq!(volumes, row(n as i64 + 1).volumes());
            assert_eq!(seq, 2);
        }
        assert_eq!(hot.len(), 100);
        assert!(hot.volumes.values().all(|cached| !cached.dirty));
        assert!(hot.posting_seqs.values().all(|cached| !cached.dirty));
    }

    #[test]
    fn flush_past_the_bound_writes_then_forgets_everything() {
        let mut hot = HotRows::with_rows_max(10);
        let found = write_and_flush(&mut hot, 50);
        for (n, (volumes, seq)) in found.into_iter().enumerate() {
            assert_eq!(volumes, row(n as i64 + 1).volumes());
            assert_eq!(seq, 2);
        }
        assert_eq!(hot.len(), 0);
    }

    #[test]
    fn keys_of_different_tuples_differ_and_parse_back() {
        let a = key(&["main", "users:1", "USD/2"]);
        let b = key(&["main", "users:1U", "SD/2"]);
        assert_ne!(a, b);
        assert_eq!(parts(&a).unwrap(), ["main", "users:1", "USD/2"]);
        assert_eq!(parts(&b).unwrap(), ["main", "users:1U", "SD/2"]);
        assert_eq!(parts(&key(&["", ""])).unwrap(), ["", ""]);
    }

    #[test]
    fn a_truncated_key_is_an_error_not_a_panic() {
        let k = key(&["main", "users:1", "USD/2"]);
        assert!(parts::<3>(&k[..2]).is_err());
        assert!(parts::<3>(&k[..6]).is_err());
    }
}
