//! The redb tables of the materialized state, their row encodings, and [`StateReads`]: the
//! reads that validation (inside a write transaction) and queries (inside a read transaction)
//! share. Every row is derived from the log (`docs/ledger.md`, "State").

use bincode::{Decode, Encode};
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::error::StateError;
use super::history::RunKey;
use super::timeline::{DayKey, TimelineKey};
use crate::domain::entry::{self, Dec, OverdraftCode};
use crate::domain::model::{Metadata, Overdraft, Volumes};
use crate::domain::view::{self, ViewError};
pub use crate::domain::view::{ReferenceRow, TransactionChanges};
use crate::log::Hash;

/// Store-wide values: the watermark, the store id.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Ledger name -> seq of the entry that first used it.
pub const LEDGERS: TableDefinition<&str, u64> = TableDefinition::new("ledgers");
/// (ledger, account, asset) -> [`VolumesRow`].
pub const VOLUMES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("volumes");
/// (ledger, account) -> the account's posting sequence.
pub const ACCOUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("accounts");
/// (ledger, account) -> [`Metadata`].
pub const ACCOUNT_METADATA: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("account_metadata");
/// (ledger, account, asset) -> [`OverdraftCode`]; absent means the default (none).
pub const POLICIES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("policies");
/// (ledger, reference) -> [`ReferenceRow`].
pub const REFERENCES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("references");
/// Transaction id (its seq) -> [`TransactionChanges`]: only for a transaction reverted, or
/// whose metadata changed, after it was posted. What it was posted as is its log entry.
pub const TRANSACTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("transactions");
/// (ledger, account, first seq) -> the rest of a run of the account's history
/// ([`super::history`]).
pub const HISTORY: TableDefinition<RunKey, &[u8]> = TableDefinition::new("history_runs");
/// (ledger, account, effective timestamp, seq) -> the transaction's change to the account's
/// balance per asset ([`super::timeline`]): the account's transactions in effective order.
pub const TIMELINE: TableDefinition<TimelineKey, &[u8]> = TableDefinition::new("account_timeline");
/// (ledger, account, asset, UTC day) -> the sum of the changes of that day's timeline rows in
/// the asset ([`super::timeline`]).
pub const DAY_TOTALS: TableDefinition<DayKey, &[u8]> = TableDefinition::new("account_days");
/// Outbox consumer name -> its cursor, the last seq it acknowledged (`ConsumerAcked` entries).
/// A consumer that never acknowledged anything has no row (cursor 0).
pub const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("consumers");

pub const META_WATERMARK: &str = "watermark";
pub const META_STORE_ID: &str = "store_id";
/// The state's schema version ([`SCHEMA_VERSION`], as 4 bytes little-endian).
pub const META_SCHEMA: &str = "schema";
/// How many transaction entries the state holds (u64 little-endian; absent: none).
pub const META_TRANSACTIONS: &str = "transactions";

/// The layout of the tables this build writes and reads. A state without it (made before
/// schema 2) or with another is rebuilt from the log on open: the state is a cache.
///
/// 2: histories as runs ([`super::history`]); transaction rows only for what changed after
/// the entry ([`TransactionChanges`]), bodies in the log only; a count of transactions.
/// 3: accounts' timelines and day totals ([`super::timeline`]), for statements.
pub const SCHEMA_VERSION: u32 = 3;

/// Volumes of one account in one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Default)]
pub struct VolumesRow {
    pub input: Dec,
    pub output: Dec,
}

impl VolumesRow {
    pub fn volumes(&self) -> Volumes {
        Volumes::new(self.input.0, self.output.0)
    }
}

/// The last entry applied to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Default)]
pub struct Watermark {
    pub seq: u64,
    pub block_hash: Hash,
}

pub(crate) fn decode_row<T: bincode::Encode + Decode<()>>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StateError> {
    entry::decode(bytes).map_err(|error| StateError::BadRow {
        table,
        detail: error.to_string(),
    })
}

pub(crate) fn encode_row<T: Encode>(table: &'static str, row: &T) -> Result<Vec<u8>, StateError> {
    entry::encode(row).map_err(|error| StateError::BadRow {
        table,
        detail: error.to_string(),
    })
}

/// The state's reads, shared by validation (as the domain's [`view::StateView`]), apply and
/// queries.
pub trait StateReads {
    fn volumes(&self, ledger: &str, account: &str, asset: &str) -> Result<Volumes, StateError>;
    fn overdraft(&self, ledger: &str, account: &str, asset: &str) -> Result<Overdraft, StateError>;
    fn posting_seq(&self, ledger: &str, account: &str) -> Result<u64, StateError>;
    fn reference(&self, ledger: &str, reference: &str) -> Result<Option<ReferenceRow>, StateError>;
    /// What changed in transaction `id` since its entry; `None` if nothing did (or there is
    /// no such transaction: the log says which).
    fn transaction_changes(&self, id: u64) -> Result<Option<TransactionChanges>, StateError>;
    fn account_metadata(&self, ledger: &str, account: &str) -> Result<Metadata, StateError>;
    fn watermark(&self) -> Result<Watermark, StateError>;
    /// A consumer's cursor; 0 for a consumer that never acknowledged anything.
    fn cursor(&self, consumer: &str) -> Result<u64, StateError>;
}

/// Validation reads the state through the domain's view; a failed read carries the
/// `StateError` whole.
impl<T: StateReads + ?Sized> view::StateView for T {
    fn volumes(&self, ledger: &str, account: &str, asset: &str) -> Result<Volumes, ViewError> {
        Ok(StateReads::volumes(self, ledger, account, asset)?)
    }
    fn overdraft(&self, ledger: &str, account: &str, asset: &str) -> Result<Overdraft, ViewError> {
        Ok(StateReads::overdraft(self, ledger, account, asset)?)
    }
    fn posting_seq(&self, ledger: &str, account: &str) -> Result<u64, ViewError> {
        Ok(StateReads::posting_seq(self, ledger, account)?)
    }
    fn reference(&self, ledger: &str, reference: &str) -> Result<Option<ReferenceRow>, ViewError> {
        Ok(StateReads::reference(self, ledger, reference)?)
    }
    fn transaction_changes(&self, id: u64) -> Result<Option<TransactionChanges>, ViewError> {
        Ok(StateReads::transaction_changes(self, id)?)
    }
    fn account_metadata(&self, ledger: &str, account: &str) -> Result<Metadata, ViewError> {
        Ok(StateReads::account_metadata(self, ledger, account)?)
    }
    fn cursor(&self, consumer: &str) -> Result<u64, ViewError> {
        Ok(StateReads::cursor(self, consumer)?)
    }
}

type Key3<'a> = (&'a str, &'a str, &'a str);
type Key2<'a> = (&'a str, &'a str);

fn get_volumes<T>(table: &T, key: Key3<'_>) -> Result<Volumes, StateError>
where
    T: ReadableTable<Key3<'static>, &'static [u8]>,
{
    match table.get(key)? {
        Some(row) => Ok(decode_row::<VolumesRow>("volumes", row.value())?.volumes()),
        None => Ok(Volumes::default()),
    }
}

fn get_overdraft<T>(table: &T, key: Key3<'_>) -> Result<Overdraft, StateError>
where
    T: ReadableTable<Key3<'static>, &'static [u8]>,
{
    match table.get(key)? {
        Some(row) => Ok(decode_row::<OverdraftCode>("policies", row.value())?.into()),
        None => Ok(Overdraft::None),
    }
}

fn get_u64<T>(table: &T, key: Key2<'_>) -> Result<u64, StateError>
where
    T: ReadableTable<Key2<'static>, u64>,
{
    Ok(table.get(key)?.map_or(0, |value| value.value()))
}

fn get_row2<T, R>(table: &T, name: &'static str, key: Key2<'_>) -> Result<Option<R>, StateError>
where
    T: ReadableTable<Key2<'static>, &'static [u8]>,
    R: bincode::Encode + Decode<()>,
{
    table
        .get(key)?
        .map(|row| decode_row(name, row.value()))
        .transpose()
}

fn get_transaction<T>(table: &T, id: u64) -> Result<Option<TransactionChanges>, StateError>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    table
        .get(id)?
        .map(|row| decode_row("transactions", row.value()))
        .transpose()
}

/// The count of transactions recorded in `meta`.
pub fn get_transactions_count<T>(table: &T) -> Result<u64, StateError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let Some(row) = table.get(META_TRANSACTIONS)? else {
        return Ok(0);
    };
    match <[u8; 8]>::try_from(row.value()) {
        Ok(bytes) => Ok(u64::from_le_bytes(bytes)),
        Err(_) => Err(StateError::BadRow {
            table: "meta",
            detail: "the transaction count is not 8 bytes".to_string(),
        }),
    }
}

fn get_watermark<T>(table: &T) -> Result<Watermark, StateError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let row = table.get(META_WATERMARK)?;
    row.map_or(Ok(Watermark::default()), |row| {
        decode_row("meta", row.value())
    })
}

/// Implements [`StateReads`] for a set of tables of either transaction kind.
macro_rules! impl_state_view {
    ($tables:ty) => {
        impl StateReads for $tables {
            fn volumes(&self, l: &str, a: &str, asset: &str) -> Result<Volumes, StateError> {
                get_volumes(&self.volumes, (l, a, asset))
            }
            fn overdraft(&self, l: &str, a: &str, asset: &str) -> Result<Overdraft, StateError> {
                get_overdraft(&self.policies, (l, a, asset))
            }
            fn posting_seq(&self, l: &str, a: &str) -> Result<u64, StateError> {
                get_u64(&self.accounts, (l, a))
            }
            fn reference(&self, l: &str, r: &str) -> Result<Option<ReferenceRow>, StateError> {
                get_row2(&self.references, "references", (l, r))
            }
            fn transaction_changes(
                &self,
                id: u64,
            ) -> Result<Option<TransactionChanges>, StateError> {
                get_transaction(&self.transactions, id)
            }
            fn account_metadata(&self, l: &str, a: &str) -> Result<Metadata, StateError> {
                Ok(
                    get_row2(&self.account_metadata, "account_metadata", (l, a))?
                        .unwrap_or_default(),
                )
            }
            fn watermark(&self) -> Result<Watermark, StateError> {
                get_watermark(&self.meta)
            }
            fn cursor(&self, consumer: &str) -> Result<u64, StateError> {
                Ok(self
                    .consumers
                    .get(consumer)?
                    .map_or(0, |value| value.value()))
            }
        }
    };
}

/// The tables opened in a write transaction.
pub struct WriteTables<'txn> {
    pub meta: Table<'txn, &'static str, &'static [u8]>,
    pub ledgers: Table<'txn, &'static str, u64>,
    pub volumes: Table<'txn, Key3<'static>, &'static [u8]>,
    pub accounts: Table<'txn, Key2<'static>, u64>,
    pub account_metadata: Table<'txn, Key2<'static>, &'static [u8]>,
    pub policies: Table<'txn, Key3<'static>, &'static [u8]>,
    pub references: Table<'txn, Key2<'static>, &'static [u8]>,
    pub transactions: Table<'txn, u64, &'static [u8]>,
    pub history: Table<'txn, RunKey<'static>, &'static [u8]>,
    pub timeline: Table<'txn, TimelineKey<'static>, &'static [u8]>,
    pub day_totals: Table<'txn, DayKey<'static>, &'static [u8]>,
    pub consumers: Table<'txn, &'static str, u64>,
}

impl<'txn> WriteTables<'txn> {
    /// Opens (creating if needed) every table.
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StateError> {
        Ok(WriteTables {
            meta: txn.open_table(META)?,
            ledgers: txn.open_table(LEDGERS)?,
            volumes: txn.open_table(VOLUMES)?,
            accounts: txn.open_table(ACCOUNTS)?,
            account_metadata: txn.open_table(ACCOUNT_METADATA)?,
            policies: txn.open_table(POLICIES)?,
            references: txn.open_table(REFERENCES)?,
            transactions: txn.open_table(TRANSACTIONS)?,
            history: txn.open_table(HISTORY)?,
            timeline: txn.open_table(TIMELINE)?,
            day_totals: txn.open_table(DAY_TOTALS)?,
            consumers: txn.open_table(CONSUMERS)?,
        })
    }
}

impl WriteTables<'_> {
    /// Adds `count` to the transactions counted in `meta`.
    pub fn count_transactions(&mut self, count: u64) -> Result<(), StateError> {
        if count == 0 {
            return Ok(());
        }
        let total = get_transactions_count(&self.meta)? + count;
        self.meta
            .insert(META_TRANSACTIONS, &total.to_le_bytes()[..])?;
        Ok(())
    }

    /// Records that these tables are laid out as [`SCHEMA_VERSION`]: done in the transaction
    /// that creates them.
    pub fn stamp_schema(&mut self) -> Result<(), StateError> {
        self.meta
            .insert(META_SCHEMA, &SCHEMA_VERSION.to_le_bytes()[..])?;
        Ok(())
    }
}

impl_state_view!(WriteTables<'_>);

/// The tables opened in a read transaction.
pub struct ReadTables {
    pub meta: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    pub ledgers: redb::ReadOnlyTable<&'static str, u64>,
    pub volumes: redb::ReadOnlyTable<Key3<'static>, &'static [u8]>,
    pub accounts: redb::ReadOnlyTable<Key2<'static>, u64>,
    pub account_metadata: redb::ReadOnlyTable<Key2<'static>, &'static [u8]>,
    pub policies: redb::ReadOnlyTable<Key3<'static>, &'static [u8]>,
    pub references: redb::ReadOnlyTable<Key2<'static>, &'static [u8]>,
    pub transactions: redb::ReadOnlyTable<u64, &'static [u8]>,
    pub history: redb::ReadOnlyTable<RunKey<'static>, &'static [u8]>,
    pub timeline: redb::ReadOnlyTable<TimelineKey<'static>, &'static [u8]>,
    pub day_totals: redb::ReadOnlyTable<DayKey<'static>, &'static [u8]>,
    pub consumers: redb::ReadOnlyTable<&'static str, u64>,
}

impl ReadTables {
    /// Opens every table; they exist from the state's creation on.
    pub fn open(txn: &ReadTransaction) -> Result<Self, StateError> {
        Ok(ReadTables {
            meta: txn.open_table(META)?,
            ledgers: txn.open_table(LEDGERS)?,
            volumes: txn.open_table(VOLUMES)?,
            accounts: txn.open_table(ACCOUNTS)?,
            account_metadata: txn.open_table(ACCOUNT_METADATA)?,
            policies: txn.open_table(POLICIES)?,
            references: txn.open_table(REFERENCES)?,
            transactions: txn.open_table(TRANSACTIONS)?,
            history: txn.open_table(HISTORY)?,
            timeline: txn.open_table(TIMELINE)?,
            day_totals: txn.open_table(DAY_TOTALS)?,
            consumers: txn.open_table(CONSUMERS)?,
        })
    }
}

impl_state_view!(ReadTables);
