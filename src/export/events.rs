//! Log entries as Formance ledger events (`docs/events.md`): typed events that serialize to the
//! wire shape, and [`event_of`], the pure mapping from one entry to at most one event. The
//! payloads follow Formance's published schemas exactly (their `additionalProperties: false`
//! leaves no room for extras); Folio's own fields (store id, seq, hashes) go in the envelope.
//! Amounts are integers in the asset's smallest unit, converted exactly or refused, never rounded.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SecondsFormat};
use rust_decimal::Decimal;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::ExportError;
use crate::domain::entry::{EntryBody, PostingEntry, TransactionEntry, VolumeChange};
use crate::domain::model::{Metadata, parse_asset};
use crate::domain::request::hex;
use crate::log::{Entry, Hash};
use crate::state::StateError;

/// The envelope's `app`: who produced the event.
pub const EVENT_APP: &str = "folio";
/// The envelope's `version`: the version of this event format (not of Folio).
pub const EVENT_VERSION: &str = "v1";

/// Years an RFC 3339 date-time can write: four digits, no sign.
const YEAR_MIN: i32 = 0;
const YEAR_MAX: i32 = 9999;

/// One event: the envelope and its payload. Serializes to one JSON object:
/// `{date, app, version, type, payload, store_id, seq, block_hash, previous_hash}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When the entry was recorded (its `inserted_at`), RFC 3339 in UTC.
    pub date: String,
    /// The store's random id, from entry 1 (32 hex digits on the wire).
    pub store_id: [u8; 16],
    /// The entry's seq: with `store_id`, the event's identity.
    pub seq: u64,
    pub block_hash: Hash,
    pub previous_hash: Hash,
    pub payload: Payload,
}

/// The payload of an event; its variant names the event's `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    CommittedTransactions(CommittedTransactions),
    /// Boxed: two transactions, several times the size of the other payloads.
    RevertedTransaction(Box<RevertedTransaction>),
    SavedMetadata(SavedMetadata),
    DeletedMetadata(DeletedMetadata),
}

impl Payload {
    /// The envelope's `type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Payload::CommittedTransactions(_) => "COMMITTED_TRANSACTIONS",
            Payload::RevertedTransaction(_) => "REVERTED_TRANSACTION",
            Payload::SavedMetadata(_) => "SAVED_METADATA",
            Payload::DeletedMetadata(_) => "DELETED_METADATA",
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("Event", 9)?;
        event.serialize_field("date", &self.date)?;
        event.serialize_field("app", EVENT_APP)?;
        event.serialize_field("version", EVENT_VERSION)?;
        event.serialize_field("type", self.payload.event_type())?;
        event.serialize_field("payload", &self.payload)?;
        event.serialize_field("store_id", &hex_bytes(&self.store_id))?;
        event.serialize_field("seq", &self.seq)?;
        event.serialize_field("block_hash", &hex(&self.block_hash))?;
        event.serialize_field("previous_hash", &hex(&self.previous_hash))?;
        event.end()
    }
}

/// Lowercase hex, as `folio init` prints the store id.
pub(crate) fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `COMMITTED_TRANSACTIONS`: one posted transaction (Folio commits them one per entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommittedTransactions {
    pub ledger: String,
    pub transactions: Vec<Transaction>,
    /// Required by the schema; always empty: a Folio transaction sets no account metadata.
    pub account_metadata: BTreeMap<String, Metadata>,
}

/// `REVERTED_TRANSACTION`: a revert, with the transaction it reverts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertedTransaction {
    pub ledger: String,
    /// The original, as its own entry recorded it, with `revertedAt` set.
    pub reverted_transaction: Transaction,
    /// The new transaction that reverses it, with `revertedAt: null`.
    pub revert_transaction: Transaction,
}

/// A transaction in Formance's shape. Which optional fields appear depends on the event: the
/// two schemas allow different sets (see [`event_of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub postings: Vec<Posting>,
    pub metadata: Metadata,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub inserted_at: String,
    /// The transaction id: its entry's seq.
    pub id: u64,
    #[serde(skip_serializing_if = "RevertedAt::is_omitted")]
    pub reverted_at: RevertedAt,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_commit_volumes: Option<AccountVolumes>,
    pub post_commit_volumes: AccountVolumes,
}

/// `revertedAt`, which Formance's Go type (`*time.Time`, no `omitempty`) writes as a time or
/// `null`, and which the schemas want absent (committed) or present (reverted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertedAt {
    /// Left out: a transaction just committed.
    Omitted,
    /// `null`: a transaction that is not reverted, where the field must be present.
    NotReverted,
    /// When it was reverted, RFC 3339.
    At(String),
}

impl RevertedAt {
    fn is_omitted(&self) -> bool {
        *self == RevertedAt::Omitted
    }
}

impl Serialize for RevertedAt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RevertedAt::Omitted | RevertedAt::NotReverted => serializer.serialize_none(),
            RevertedAt::At(time) => serializer.serialize_str(time),
        }
    }
}

/// A posting with its amount in the asset's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posting {
    pub source: String,
    pub destination: String,
    pub amount: i128,
    pub asset: String,
}

/// account -> asset -> volumes.
pub type AccountVolumes = BTreeMap<String, BTreeMap<String, Volumes>>;

/// Volumes in the asset's smallest unit. `balance` (`input - output`) only where the schema
/// allows it (`COMMITTED_TRANSACTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Volumes {
    pub input: i128,
    pub output: i128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<i128>,
}

/// What metadata belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetType {
    Account,
    Transaction,
}

/// `SAVED_METADATA`: keys set (added or replaced) on an account or a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedMetadata {
    pub ledger: String,
    pub target_type: TargetType,
    /// The account address, or the transaction id as a decimal string (the schema's type).
    pub target_id: String,
    /// The keys this entry set, not the target's whole metadata.
    pub metadata: Metadata,
}

/// `DELETED_METADATA`: one key removed from an account or a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedMetadata {
    pub ledger: String,
    pub target_type: TargetType,
    pub target_id: TargetId,
    pub key: String,
}

/// A `DELETED_METADATA` target: an address (string) or a transaction id (integer), as
/// Formance writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TargetId {
    Account(String),
    Transaction(u64),
}

/// The event of one entry, or `None` for the kinds that have none (`StoreCreated`,
/// `OverdraftSet`, `ConsumerAcked`, `EventSkipped`). `reverted` must be the entry of the transaction a revert
/// reverts (read it with [`super::reverted_of`]) and `None` otherwise. Pure: the same inputs
/// give the same event, so an entry exported twice is the same event twice.
pub fn event_of(
    entry: &Entry,
    body: &EntryBody,
    store_id: [u8; 16],
    reverted: Option<&TransactionEntry>,
) -> Result<Option<Event>, ExportError> {
    let seq = entry.seq;
    let (inserted_at, payload) = match body {
        EntryBody::StoreCreated(_)
        | EntryBody::OverdraftSet(_)
        | EntryBody::ConsumerAcked(_)
        | EntryBody::EventSkipped(_) => {
            return Ok(None);
        }
        EntryBody::Transaction(tx) => match (tx.reverts, reverted) {
            (None, _) => (tx.inserted_at, committed(seq, tx)?),
            (Some(id), Some(original)) => (tx.inserted_at, revert(seq, tx, id, original)?),
            (Some(id), None) => return Err(missing_original(seq, id)),
        },
        EntryBody::AccountMetadataSet(set) => {
            let payload = Payload::SavedMetadata(SavedMetadata {
                ledger: set.ledger.clone(),
                target_type: TargetType::Account,
                target_id: set.account.clone(),
                metadata: set.metadata.clone(),
            });
            (set.inserted_at, payload)
        }
        EntryBody::AccountMetadataDeleted(deleted) => {
            let payload = Payload::DeletedMetadata(DeletedMetadata {
                ledger: deleted.ledger.clone(),
                target_type: TargetType::Account,
                target_id: TargetId::Account(deleted.account.clone()),
                key: deleted.key.clone(),
            });
            (deleted.inserted_at, payload)
        }
        EntryBody::TransactionMetadataSet(set) => {
            let payload = Payload::SavedMetadata(SavedMetadata {
                ledger: set.ledger.clone(),
                target_type: TargetType::Transaction,
                target_id: set.id.to_string(),
                metadata: set.metadata.clone(),
            });
            (set.inserted_at, payload)
        }
        EntryBody::TransactionMetadataDeleted(deleted) => {
            let payload = Payload::DeletedMetadata(DeletedMetadata {
                ledger: deleted.ledger.clone(),
                target_type: TargetType::Transaction,
                target_id: TargetId::Transaction(deleted.id),
                key: deleted.key.clone(),
            });
            (deleted.inserted_at, payload)
        }
    };
    Ok(Some(Event {
        date: rfc3339(seq, inserted_at)?,
        store_id,
        seq,
        block_hash: entry.block_hash,
        previous_hash: entry.previous_hash,
        payload,
    }))
}

fn missing_original(seq: u64, id: u64) -> ExportError {
    let detail = format!("reverts transaction {id}, which was not given or is not a transaction");
    ExportError::Store(StateError::Inconsistent { seq, detail }.into())
}

fn committed(seq: u64, tx: &TransactionEntry) -> Result<Payload, ExportError> {
    let mut transaction = transaction(seq, tx, true)?;
    transaction.reverted = Some(false);
    transaction.pre_commit_volumes = Some(volumes(seq, &tx.volumes, true, true)?);
    Ok(Payload::CommittedTransactions(CommittedTransactions {
        ledger: tx.ledger.clone(),
        transactions: vec![transaction],
        account_metadata: BTreeMap::new(),
    }))
}

/// The revert entry `seq` of transaction `id`. The reverted schema allows neither `reverted`,
/// `preCommitVolumes` nor `balance`, and requires `revertedAt` on both transactions. The
/// original may itself be a revert (the ledger lets a revert be reverted, `docs/ledger.md`):
/// it is then `revertedTransaction` as its own entry recorded it, like any other.
fn revert(
    seq: u64,
    tx: &TransactionEntry,
    id: u64,
    original: &TransactionEntry,
) -> Result<Payload, ExportError> {
    // Validation only reverts a transaction of the same ledger: anything else is a damaged
    // store, not an entry the ledger accepted.
    if original.ledger != tx.ledger {
        let detail = format!("reverts transaction {id}, which is of another ledger");
        return Err(ExportError::Store(
            StateError::Inconsistent { seq, detail }.into(),
        ));
    }
    let mut reverted_transaction = transaction(id, original, false)?;
    reverted_transaction.reverted_at = RevertedAt::At(rfc3339(seq, tx.inserted_at)?);
    let mut revert_transaction = transaction(seq, tx, false)?;
    revert_transaction.reverted_at = RevertedAt::NotReverted;
    Ok(Payload::RevertedTransaction(Box::new(
        RevertedTransaction {
            ledger: tx.ledger.clone(),
            reverted_transaction,
            revert_transaction,
        },
    )))
}

/// The fields every transaction has: the entry `id` (its seq) as it was recorded.
fn transaction(
    id: u64,
    tx: &TransactionEntry,
    with_balance: bool,
) -> Result<Transaction, ExportError> {
    let postings = tx
        .postings
        .iter()
        .map(|posting| posting_of(id, posting))
        .collect::<Result<_, _>>()?;
    Ok(Transaction {
        postings,
        metadata: tx.metadata.clone(),
        timestamp: rfc3339(id, tx.timestamp)?,
        reference: tx.reference.clone(),
        inserted_at: rfc3339(id, tx.inserted_at)?,
        id,
        reverted_at: RevertedAt::Omitted,
        reverted: None,
        pre_commit_volumes: None,
        post_commit_volumes: volumes(id, &tx.volumes, false, with_balance)?,
    })
}

fn posting_of(seq: u64, posting: &PostingEntry) -> Result<Posting, ExportError> {
    Ok(Posting {
        source: posting.source.clone(),
        destination: posting.destination.clone(),
        amount: units_of(seq, posting.amount.0, &posting.asset)?,
        asset: posting.asset.clone(),
    })
}

/// The pre (`pre` true) or post volumes recorded in a transaction entry.
fn volumes(
    seq: u64,
    changes: &[VolumeChange],
    pre: bool,
    with_balance: bool,
) -> Result<AccountVolumes, ExportError> {
    let mut by_account = AccountVolumes::new();
    for change in changes {
        let (input, output) = if pre {
            (change.pre_input.0, change.pre_output.0)
        } else {
            (change.post_input.0, change.post_output.0)
        };
        let input = units_of(seq, input, &change.asset)?;
        let output = units_of(seq, output, &change.asset)?;
        let balance = if with_balance {
            let overflow = || ExportError::Amount {
                seq,
                asset: change.asset.clone(),
                amount: format!("{input} - {output}"),
                reason: "the balance is too large for a 128-bit integer",
            };
            Some(input.checked_sub(output).ok_or_else(overflow)?)
        } else {
            None
        };
        let volumes = Volumes {
            input,
            output,
            balance,
        };
        by_account
            .entry(change.account.clone())
            .or_default()
            .insert(change.asset.clone(), volumes);
    }
    Ok(by_account)
}

fn units_of(seq: u64, amount: Decimal, asset: &str) -> Result<i128, ExportError> {
    smallest_units(amount, asset).map_err(|reason| ExportError::Amount {
        seq,
        asset: asset.to_string(),
        amount: amount.normalize().to_string(),
        reason,
    })
}

/// An amount as an integer count of its asset's smallest unit: `12.5` of `USD/2` is 1250, and
/// `7` of `POINTS` (no declared scale, so scale 0 on the wire, as Formance reads it) is 7.
/// Exact or refused: an amount with more decimal places than the scale (possible only for an
/// asset without a declared scale, which Folio lets carry decimals) has no integer form, and
/// is refused rather than rounded or moved to another asset. So is one past `i128`.
pub fn smallest_units(amount: Decimal, asset: &str) -> Result<i128, &'static str> {
    let spec = parse_asset(asset).map_err(|_| "the asset does not parse")?;
    let scale = spec.scale.unwrap_or(0);
    let amount = amount.normalize();
    if amount.scale() > scale {
        return Err(if spec.scale.is_some() {
            "more decimal places than the asset's scale"
        } else {
            "an asset without a declared scale has scale 0 on the wire; this amount has decimals"
        });
    }
    10i128
        .checked_pow(scale - amount.scale())
        .and_then(|factor| amount.mantissa().checked_mul(factor))
        .ok_or("too large for a 128-bit integer of the smallest unit")
}

/// Microseconds since the epoch as RFC 3339 in UTC, with as many fractional digits as needed
/// (none, 3 or 6), as Folio writes times elsewhere; refused outside the years 0000 to 9999.
pub fn rfc3339(seq: u64, micros: i64) -> Result<String, ExportError> {
    match DateTime::from_timestamp_micros(micros) {
        Some(time) if (YEAR_MIN..=YEAR_MAX).contains(&time.year()) => {
            Ok(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }
        _ => Err(ExportError::Time { seq, micros }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(amount: &str, asset: &str) -> Result<i128, &'static str> {
        smallest_units(amount.parse().unwrap(), asset)
    }

    #[test]
    fn amounts_become_integers_of_the_smallest_unit() {
        assert_eq!(units("12.50", "USD/2"), Ok(1250));
        assert_eq!(units("12.5", "USD/2"), Ok(1250));
        assert_eq!(units("1500", "JPY"), Ok(1500));
        assert_eq!(units("1500", "JPY/0"), Ok(1500));
        assert_eq!(units("0.00012345", "BTC/8"), Ok(12345));
        assert_eq!(units("1", "ETH/18"), Ok(1_000_000_000_000_000_000));
        assert_eq!(units("-2.5", "USD/2"), Ok(-250));
    }

    #[test]
    fn amounts_without_an_integer_form_are_refused_not_rounded() {
        assert!(units("0.5", "POINTS").is_err());
        assert!(units("0.001", "USD/2").is_err());
        // 10^38 of the smallest unit fits in an i128, 10^39 does not.
        assert_eq!(units("100000000000000000000", "ETH/18"), Ok(10i128.pow(38)));
        assert!(units("1000000000000000000000", "ETH/18").is_err());
    }

    #[test]
    fn times_are_rfc3339_in_utc_or_refused() {
        assert_eq!(rfc3339(1, 0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1, 1_795_860_000_123_456).unwrap(),
            "2026-11-28T10:00:00.123456Z"
        );
        assert!(rfc3339(1, i64::MAX).is_err());
        assert!(rfc3339(1, 253_402_300_800_000_000).is_err(), "year 10000");
    }
}
