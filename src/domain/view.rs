//! What validation reads of the state ([`StateView`]) and of the log ([`TransactionLookup`]),
//! as the domain names it: the state implements these (`crate::state`), the ledger hands them
//! to [`super::validate`]. The rows they return are the state's rows of schema 2
//! (`docs/ledger.md`, "The state"), defined here so that the state takes its row types from
//! the domain.

use bincode::{Decode, Encode};

use super::entry::TransactionEntry;
use super::model::{Metadata, Overdraft, Volumes};
use crate::log::Hash;

/// A read of the state or the log failed. It carries the store's own error (the state's
/// `StateError`), which the layers above get back whole (`crate::Error`'s conversion).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ViewError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

/// Where a reference was used, and the hash of the request that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct ReferenceRow {
    pub id: u64,
    pub request_hash: Hash,
}

/// What changed in a transaction after its entry was written (its entry holds the rest).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Default)]
pub struct TransactionChanges {
    pub reverted_by: Option<u64>,
    /// Current metadata, when it changed since the entry (which holds it as posted).
    pub metadata: Option<Metadata>,
}

/// The state as validation reads it: each read as of the operations validated before.
pub trait StateView {
    fn volumes(&self, ledger: &str, account: &str, asset: &str) -> Result<Volumes, ViewError>;
    fn overdraft(&self, ledger: &str, account: &str, asset: &str) -> Result<Overdraft, ViewError>;
    fn posting_seq(&self, ledger: &str, account: &str) -> Result<u64, ViewError>;
    fn reference(&self, ledger: &str, reference: &str) -> Result<Option<ReferenceRow>, ViewError>;
    /// What changed in transaction `id` since its entry; `None` if nothing did (or there is
    /// no such transaction: the log says which).
    fn transaction_changes(&self, id: u64) -> Result<Option<TransactionChanges>, ViewError>;
    fn account_metadata(&self, ledger: &str, account: &str) -> Result<Metadata, ViewError>;
    /// A consumer's cursor; 0 for a consumer that never acknowledged anything.
    fn cursor(&self, consumer: &str) -> Result<u64, ViewError>;
}

/// Transaction entries by id, for what changes a transaction after it was posted (a revert,
/// its metadata): the state keeps no copy of them (schema 2).
pub trait TransactionLookup {
    /// The transaction entry `id`; `None` when entry `id` is not a transaction or not written.
    fn transaction(&self, id: u64) -> Result<Option<TransactionEntry>, ViewError>;
}
