//! Entry bodies: what the ledger writes into the log, and their canonical encoding
//! (`docs/format.md`, "Entry bodies"). The encoding is bincode 2 with one fixed configuration
//! (little-endian, fixed-width integers); every value has exactly one encoding (maps are
//! sorted, decimals normalized, and decoding refuses anything else), since hashes depend on it.
//!
//! A transaction entry carries, besides the request, the effects the ledger computed when it
//! accepted it (pre- and post-commit volumes, posting sequences): receipts can be rebuilt from
//! the log alone, and replay checks that the effects agree with the state it rebuilds.

use std::collections::BTreeMap;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use rust_decimal::Decimal;

use crate::log::format::BODY_BYTES_MAX;

use super::model::{Metadata, Overdraft, exact_add};

/// The one bincode configuration of every body (F-50).
pub const fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<BODY_BYTES_MAX>()
}

/// Encodes a value canonically.
pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::encode_to_vec(value, config())
}

/// The size in bytes of a value's encoding, whatever its size (the body limit applies to
/// decoding): what a refusal of an oversized body reports.
pub fn encoded_len<T: Encode>(value: &T) -> Result<usize, EncodeError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::encode_into_writer(value, &mut size, config())?;
    Ok(size.bytes_written)
}

/// Decodes a value, refusing trailing bytes (F-51) and any encoding that is not the canonical
/// one (F-54): bincode itself accepts a map with unsorted or repeated keys, or a decimal with
/// trailing zeros, which would give one value two byte strings (and two hashes).
pub fn decode<T: Encode + Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, read) = bincode::decode_from_slice(bytes, config())?;
    if read != bytes.len() {
        return Err(DecodeError::Other("trailing bytes after the body"));
    }
    let canonical =
        encode(&value).map_err(|_| DecodeError::Other("a body that does not encode again"))?;
    if canonical != bytes {
        return Err(DecodeError::Other("a body that is not in canonical form"));
    }
    Ok(value)
}

/// A decimal in canonical form: `{ mantissa i128 | scale u32 }`, normalized (no trailing zeros
/// in the fraction), scale at most 28 (F-52).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dec(pub Decimal);

impl Encode for Dec {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        let value = self.0.normalize();
        value.mantissa().encode(encoder)?;
        value.scale().encode(encoder)
    }
}

impl<Context> Decode<Context> for Dec {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let mantissa = i128::decode(decoder)?;
        let scale = u32::decode(decoder)?;
        let value = Decimal::try_from_i128_with_scale(mantissa, scale)
            .map_err(|_| DecodeError::Other("decimal out of range"))?;
        let canonical = value.normalize();
        if canonical.mantissa() != mantissa || canonical.scale() != scale {
            return Err(DecodeError::Other("decimal not in canonical form"));
        }
        Ok(Dec(value))
    }
}
bincode::impl_borrow_decode!(Dec);

/// An overdraft policy as stored: `{ tag u32 | limit Dec if tag = 1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum OverdraftCode {
    None,
    Bounded(Dec),
    Unbounded,
}

impl From<Overdraft> for OverdraftCode {
    fn from(policy: Overdraft) -> Self {
        match policy {
            Overdraft::None => OverdraftCode::None,
            Overdraft::Bounded(limit) => OverdraftCode::Bounded(Dec(limit)),
            Overdraft::Unbounded => OverdraftCode::Unbounded,
        }
    }
}

impl From<OverdraftCode> for Overdraft {
    fn from(code: OverdraftCode) -> Self {
        match code {
            OverdraftCode::None => Overdraft::None,
            OverdraftCode::Bounded(limit) => Overdraft::Bounded(limit.0),
            OverdraftCode::Unbounded => Overdraft::Unbounded,
        }
    }
}

/// Every kind of entry. The variant index is the body's first 4 bytes (F-53); new kinds are
/// only ever added at the end.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum EntryBody {
    /// Entry 1 of every store.
    StoreCreated(StoreCreated),
    /// A posted or reverting transaction.
    Transaction(TransactionEntry),
    AccountMetadataSet(AccountMetadataSet),
    AccountMetadataDeleted(AccountMetadataDeleted),
    TransactionMetadataSet(TransactionMetadataSet),
    TransactionMetadataDeleted(TransactionMetadataDeleted),
    OverdraftSet(OverdraftSet),
    /// A consumer of the outbox acknowledged the entries up to a seq (format version 2).
    ConsumerAcked(ConsumerAcked),
    /// A consumer of the outbox skipped one entry it cannot receive (format version 3).
    EventSkipped(EventSkipped),
}

/// The store's identity, made at `init`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoreCreated {
    /// Random, stable: names the device to a central ledger.
    pub store_id: [u8; 16],
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// One posting as stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PostingEntry {
    pub source: String,
    pub destination: String,
    pub amount: Dec,
    pub asset: String,
}

/// An (account, asset)'s volumes before and after a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct VolumeChange {
    pub account: String,
    pub asset: String,
    pub pre_input: Dec,
    pub pre_output: Dec,
    pub post_input: Dec,
    pub post_output: Dec,
}

/// An account's posting sequence after a transaction: the count of postings that touched it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PostingSeq {
    pub account: String,
    pub posting_seq: u64,
}

/// A transaction: the request as accepted, and its computed effects.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TransactionEntry {
    pub ledger: String,
    pub reference: Option<String>,
    /// Effective time, microseconds since the epoch.
    pub timestamp: i64,
    /// Whether the caller gave the timestamp (it is part of the idempotency comparison).
    pub timestamp_given: bool,
    /// When the ledger recorded it.
    pub inserted_at: i64,
    pub postings: Vec<PostingEntry>,
    pub metadata: Metadata,
    /// The transaction this one reverts.
    pub reverts: Option<u64>,
    /// A revert posted without overdraft checks.
    pub forced: bool,
    /// Sorted by (account, asset).
    pub volumes: Vec<VolumeChange>,
    /// Sorted by account.
    pub posting_seqs: Vec<PostingSeq>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AccountMetadataSet {
    pub ledger: String,
    pub account: String,
    pub metadata: Metadata,
    pub inserted_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct AccountMetadataDeleted {
    pub ledger: String,
    pub account: String,
    pub key: String,
    pub inserted_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TransactionMetadataSet {
    pub ledger: String,
    pub id: u64,
    pub metadata: Metadata,
    pub inserted_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TransactionMetadataDeleted {
    pub ledger: String,
    pub id: u64,
    pub key: String,
    pub inserted_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct OverdraftSet {
    pub ledger: String,
    pub account: String,
    pub asset: String,
    pub policy: OverdraftCode,
    pub inserted_at: i64,
}

/// A consumer's cursor moved: it has everything up to and including `seq`
/// (`docs/sync.md`, "Cursors"). Produces no event.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ConsumerAcked {
    /// The consumer's name (the grammar of a ledger name).
    pub consumer: String,
    /// The last seq the consumer acknowledged: below this entry's own seq, and at least the
    /// consumer's cursor before it.
    pub seq: u64,
    pub inserted_at: i64,
}

/// A consumer skipped the entry `seq`, its next entry with an event, which it cannot receive
/// (an event that cannot be made, `NOT_EXPORTABLE`), with the operator's reason: its cursor
/// moves to `seq` as a `ConsumerAcked` would move it (`docs/sync.md`, "Skipping an entry").
/// Produces no event. Format version 3 and later (F-58).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EventSkipped {
    /// The consumer's name (the grammar of a ledger name).
    pub consumer: String,
    /// The entry skipped: above the consumer's cursor before it, and below this entry's own seq.
    pub seq: u64,
    /// Why: 1 to `model::SKIP_REASON_BYTES_MAX` (1024) bytes of UTF-8 without control
    /// characters.
    pub reason: String,
    pub inserted_at: i64,
}

/// What a request was, as the caller gave it (before defaults such as the timestamp were
/// filled in): two requests with the same reference are the same request if and only if their
/// canonical forms are equal. Rebuilt from a transaction entry by [`TransactionEntry::canonical_request`].
#[derive(Debug, Clone, PartialEq, Eq, Encode)]
pub struct CanonicalRequest {
    /// 0 for a post, 1 for a revert.
    pub kind: u32,
    pub ledger: String,
    pub reference: Option<String>,
    pub timestamp: Option<i64>,
    /// A post's postings; empty for a revert (its postings are derived, not given).
    pub postings: Vec<PostingEntry>,
    pub metadata: Metadata,
    pub reverts: Option<u64>,
    pub forced: bool,
}

/// Domain tag of the request hash.
const REQUEST_HASH_TAG: &[u8] = b"folio-request-v1";

impl CanonicalRequest {
    /// `blake3("folio-request-v1" || bincode(self))`.
    pub fn hash(&self) -> crate::log::Hash {
        let config = bincode::config::standard()
            .with_little_endian()
            .with_fixed_int_encoding();
        // Encoded into one buffer, then hashed in one call: bincode writes field by field, and
        // blake3 pays a fixed cost per `update` (encoding straight into the hasher cost six
        // times the instructions). Encoding plain owned values cannot fail: there is no size
        // limit in this configuration.
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(REQUEST_HASH_TAG);
        let written = bincode::encode_into_std_write(self, &mut bytes, config);
        debug_assert!(written.is_ok());
        *blake3::hash(&bytes).as_bytes()
    }
}

impl TransactionEntry {
    /// The request that produced this entry, in canonical form.
    pub fn canonical_request(&self) -> CanonicalRequest {
        let is_revert = self.reverts.is_some();
        CanonicalRequest {
            kind: u32::from(is_revert),
            ledger: self.ledger.clone(),
            reference: self.reference.clone(),
            timestamp: (self.timestamp_given && !is_revert).then_some(self.timestamp),
            postings: if is_revert {
                Vec::new()
            } else {
                self.postings.clone()
            },
            metadata: self.metadata.clone(),
            reverts: self.reverts,
            forced: self.forced,
        }
    }

    /// Checks the recorded volume changes against the postings: one change per (account,
    /// asset) the postings touch, sorted, each with `post` equal to `pre` plus the postings'
    /// amounts added one at a time, in posting order, exactly. Adding step by step (rather
    /// than summing each account's amounts first) refuses exactly the transactions with a
    /// volume that does not fit, never one whose volumes all fit. Validation runs this on the
    /// entry it builds and `apply` runs it on the entry it lands, so the two can never
    /// disagree. The error names the (account, asset) at fault.
    pub fn check_volume_changes(&self) -> Result<(), VolumeMismatch> {
        let mut running: BTreeMap<(&str, &str), (Decimal, Decimal)> = BTreeMap::new();
        for change in &self.volumes {
            let key = (change.account.as_str(), change.asset.as_str());
            if running
                .insert(key, (change.pre_input.0, change.pre_output.0))
                .is_some()
            {
                return Err(VolumeMismatch::of(change));
            }
        }
        let sorted = self
            .volumes
            .windows(2)
            .all(|pair| (&pair[0].account, &pair[0].asset) < (&pair[1].account, &pair[1].asset));
        let mut touched = std::collections::BTreeSet::new();
        for posting in &self.postings {
            let asset = posting.asset.as_str();
            for (account, is_source) in [(&posting.source, true), (&posting.destination, false)] {
                let mismatch = || VolumeMismatch {
                    account: account.clone(),
                    asset: asset.to_string(),
                };
                let volumes = running
                    .get_mut(&(account.as_str(), asset))
                    .ok_or_else(mismatch)?;
                let side = if is_source {
                    &mut volumes.1
                } else {
                    &mut volumes.0
                };
                *side = exact_add(*side, posting.amount.0).ok_or_else(mismatch)?;
                touched.insert((account.as_str(), asset));
            }
        }
        if !sorted || touched.len() != running.len() {
            return Err(VolumeMismatch {
                account: String::new(),
                asset: String::new(),
            });
        }
        for change in &self.volumes {
            let key = (change.account.as_str(), change.asset.as_str());
            let (input, output) = running[&key];
            if input != change.post_input.0 || output != change.post_output.0 {
                return Err(VolumeMismatch::of(change));
            }
        }
        Ok(())
    }
}

/// A transaction entry whose volume changes do not follow from its postings; empty names when
/// the set of (account, asset) pairs itself differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMismatch {
    pub account: String,
    pub asset: String,
}

impl VolumeMismatch {
    fn of(change: &VolumeChange) -> Self {
        VolumeMismatch {
            account: change.account.clone(),
            asset: change.asset.clone(),
        }
    }
}

impl EntryBody {
    /// The ledger an entry belongs to; `None` for store-wide entries.
    pub fn ledger(&self) -> Option<&str> {
        match self {
            EntryBody::StoreCreated(_) => None,
            EntryBody::Transaction(tx) => Some(&tx.ledger),
            EntryBody::AccountMetadataSet(entry) => Some(&entry.ledger),
            EntryBody::AccountMetadataDeleted(entry) => Some(&entry.ledger),
            EntryBody::TransactionMetadataSet(entry) => Some(&entry.ledger),
            EntryBody::TransactionMetadataDeleted(entry) => Some(&entry.ledger),
            EntryBody::OverdraftSet(entry) => Some(&entry.ledger),
            EntryBody::ConsumerAcked(_) | EntryBody::EventSkipped(_) => None,
        }
    }

    /// Whether an entry of this kind becomes an event (`docs/events.md`): an outbox consumer's
    /// next entry with an event is the next one of such a kind, whether or not its event can
    /// be made.
    pub fn has_event(&self) -> bool {
        match self {
            EntryBody::Transaction(_)
            | EntryBody::AccountMetadataSet(_)
            | EntryBody::AccountMetadataDeleted(_)
            | EntryBody::TransactionMetadataSet(_)
            | EntryBody::TransactionMetadataDeleted(_) => true,
            EntryBody::StoreCreated(_)
            | EntryBody::OverdraftSet(_)
            | EntryBody::ConsumerAcked(_)
            | EntryBody::EventSkipped(_) => false,
        }
    }

    /// The first format version whose segments may hold an entry of this kind (F-53): a
    /// reader refuses one found in a segment of an older version.
    pub fn format_version_min(&self) -> u32 {
        match self {
            EntryBody::StoreCreated(_)
            | EntryBody::Transaction(_)
            | EntryBody::AccountMetadataSet(_)
            | EntryBody::AccountMetadataDeleted(_)
            | EntryBody::TransactionMetadataSet(_)
            | EntryBody::TransactionMetadataDeleted(_)
            | EntryBody::OverdraftSet(_) => 1,
            EntryBody::ConsumerAcked(_) => 2,
            EntryBody::EventSkipped(_) => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn decimals_encode_canonically_and_refuse_other_forms() {
        let a = encode(&Dec(Decimal::from_str("12.50").unwrap())).unwrap();
        let b = encode(&Dec(Decimal::from_str("12.5").unwrap())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
        // 1250 at scale 2 is 12.5 written with a trailing zero: not canonical.
        let mut other = 1250i128.to_le_bytes().to_vec();
        other.extend_from_slice(&2u32.to_le_bytes());
        assert!(decode::<Dec>(&other).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&StoreCreated {
            store_id: [1; 16],
            created_at: 5,
        })
        .unwrap();
        assert!(decode::<StoreCreated>(&bytes).is_ok());
        bytes.push(0);
        assert!(decode::<StoreCreated>(&bytes).is_err());
    }
}
