//! The redb tables of the materialized state, their row encodings, and [`StateView`]: the
//! reads that validation (inside a write transaction) and queries (inside a read transaction)
//! share. Every row is derived from the log (`docs/ledger.md`, "State").

use bincode::{Decode, Encode};
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::error::StateError;
use crate::ledger::entry::{self, Dec, OverdraftCode};
use crate::ledger::model::{Metadata, Overdraft, Volumes};
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
/// Transaction id (its seq) -> [`TransactionRow`].
pub const TRANSACTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("transactions");
/// (ledger, account, transaction id): the account's history.
pub const HISTORY: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("history");
/// Outbox consumer name -> its cursor, the last seq it acknowledged (`ConsumerAcked` entries).
/// A consumer that never acknowledged anything has no row (cursor 0).
pub const CONSUMERS: TableDefinition<&str, u64> = TableDefinition::new("consumers");

pub const META_WATERMARK: &str = "watermark";
pub const META_STORE_ID: &str = "store_id";

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

/// Where a reference was used, and the hash of the request that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct ReferenceRow {
    pub id: u64,
    pub request_hash: Hash,
}

/// What the state knows of a transaction beyond its log entry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TransactionRow {
    pub ledger: String,
    pub reverted_by: Option<u64>,
    pub reverts: Option<u64>,
    /// Current metadata: at post time plus later changes.
    pub metadata: Metadata,
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

/// Reads shared by validation and queries.
pub trait StateView {
    fn volumes(&self, ledger: &str, account: &str, asset: &str) -> Result<Volumes, StateError>;
    fn overdraft(&self, ledger: &str, account: &str, asset: &str) -> Result<Overdraft, StateError>;
    fn posting_seq(&self, ledger: &str, account: &str) -> Result<u64, StateError>;
    fn reference(&self, ledger: &str, reference: &str) -> Result<Option<ReferenceRow>, StateError>;
    fn transaction(&self, id: u64) -> Result<Option<TransactionRow>, StateError>;
    fn account_metadata(&self, ledger: &str, account: &str) -> Result<Metadata, StateError>;
    fn watermark(&self) -> Result<Watermark, StateError>;
    /// A consumer's cursor; 0 for a consumer that never acknowledged anything.
    fn cursor(&self, consumer: &str) -> Result<u64, StateError>;
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

fn get_transaction<T>(table: &T, id: u64) -> Result<Option<TransactionRow>, StateError>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    table
        .get(id)?
        .map(|row| decode_row("transactions", row.value()))
        .transpose()
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

/// Implements [`StateView`] for a set of tables of either transaction kind.
macro_rules! impl_state_view {
    ($tables:ty) => {
        impl StateView for $tables {
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
            fn transaction(&self, id: u64) -> Result<Option<TransactionRow>, StateError> {
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
    pub history: Table<'txn, (&'static str, &'static str, u64), ()>,
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
            consumers: txn.open_table(CONSUMERS)?,
        })
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
    pub history: redb::ReadOnlyTable<(&'static str, &'static str, u64), ()>,
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
            consumers: txn.open_table(CONSUMERS)?,
        })
    }
}

impl_state_view!(ReadTables);
