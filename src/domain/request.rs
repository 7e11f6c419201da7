//! The public shapes of the ledger API: what a caller sends (post and revert requests) and what
//! it gets back (receipts). Their serde form is the CLI's JSON contract (`docs/cli.md`):
//! amounts are decimal strings, timestamps RFC 3339, hashes lowercase hex.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::LedgerError;
use crate::domain::model::{Metadata, Timestamp, Volumes, parse_decimal_text};
use crate::log::Hash;

/// A request to post one transaction.
///
/// ```
/// use folio::{PostRequest, Posting};
/// let request = PostRequest::new("main", vec![Posting::new("world", "till:1", "12.50", "USD/2")?])
///     .with_reference("sale-1")
///     .with_metadata("till", "1");
/// assert_eq!(request.postings[0].amount.to_string(), "12.50");
/// # Ok::<(), folio::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostRequest {
    pub ledger: String,
    /// The idempotency key, unique per ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Effective time; defaults to now. May lie in the past (an offline device posting later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(deserialize_with = "postings_in")]
    pub postings: Vec<Posting>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
}

impl PostRequest {
    /// A request with these postings and nothing else.
    pub fn new(ledger: impl Into<String>, postings: Vec<Posting>) -> PostRequest {
        PostRequest {
            ledger: ledger.into(),
            reference: None,
            timestamp: None,
            postings,
            metadata: Metadata::new(),
        }
    }

    pub fn with_reference(mut self, reference: impl Into<String>) -> PostRequest {
        self.reference = Some(reference.into());
        self
    }

    pub fn with_timestamp(mut self, timestamp: Timestamp) -> PostRequest {
        self.timestamp = Some(timestamp);
        self
    }

    pub fn with_metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> PostRequest {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Parses one JSON Lines request (the `folio post` input); the error names the field that is
    /// wrong (`postings[0].amount: ...`). Shape only: the ledger validates the values.
    ///
    /// ```
    /// let request = folio::PostRequest::from_json_line(
    ///     r#"{"ledger":"main","postings":[{"source":"world","destination":"till:1","amount":"1.5","asset":"USD/2"}]}"#,
    /// )?;
    /// assert_eq!(request.ledger, "main");
    /// let error = folio::PostRequest::from_json_line(r#"{"ledger":"main","postings":[{"amount":2}]}"#)
    ///     .unwrap_err();
    /// assert!(error.starts_with("postings[0]"), "{error}");
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_json_line(line: &str) -> Result<PostRequest, String> {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let parsed: Result<ObjectOnly<PostRequest>, _> =
            serde_path_to_error::deserialize(&mut deserializer);
        match parsed {
            Ok(ObjectOnly(request)) => deserializer
                .end()
                .map(|()| request)
                .map_err(|error| error.to_string()),
            Err(error) => {
                let path = error.path().to_string();
                let inner = error.into_inner();
                if path.is_empty() || path == "." {
                    Err(inner.to_string())
                } else {
                    Err(format!("{path}: {inner}"))
                }
            }
        }
    }
}

/// One movement of an amount of an asset from a source account to a destination account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    pub source: String,
    pub destination: String,
    #[serde(serialize_with = "decimal_out", deserialize_with = "decimal_in")]
    pub amount: Decimal,
    pub asset: String,
}

impl Posting {
    /// A posting with the amount written as a decimal string (`"12.50"`).
    pub fn new(
        source: impl Into<String>,
        destination: impl Into<String>,
        amount: &str,
        asset: impl Into<String>,
    ) -> Result<Posting, LedgerError> {
        let amount = parse_decimal_text(amount).map_err(|reason| LedgerError::InvalidInput {
            field: "amount",
            value: amount.to_string(),
            reason,
        })?;
        Ok(Posting {
            source: source.into(),
            destination: destination.into(),
            amount,
            asset: asset.into(),
        })
    }
}

/// A request to revert a transaction: post its postings reversed, linked to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    pub ledger: String,
    /// The transaction to revert.
    pub id: u64,
    /// Post even if it takes an account below its overdraft policy.
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
}

impl RevertRequest {
    pub fn new(ledger: impl Into<String>, id: u64) -> RevertRequest {
        RevertRequest {
            ledger: ledger.into(),
            id,
            force: false,
            reference: None,
            metadata: Metadata::new(),
        }
    }
}

/// What a committed (or replayed) transaction looks like to its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The transaction id: its seq in the log.
    pub id: u64,
    pub ledger: String,
    pub reference: Option<String>,
    /// True when this is the original receipt returned again for a repeated request.
    pub replayed: bool,
    #[serde(serialize_with = "hash_out")]
    pub block_hash: Hash,
    #[serde(serialize_with = "hash_out")]
    pub previous_hash: Hash,
    pub timestamp: Timestamp,
    pub inserted_at: Timestamp,
    pub postings: Vec<Posting>,
    pub metadata: Metadata,
    /// The transaction this one reverts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverts: Option<u64>,
    /// The transaction that reverted this one (as of when it was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted_by: Option<u64>,
    /// account -> asset -> volumes before the transaction.
    pub pre_commit_volumes: BTreeMap<String, BTreeMap<String, Volumes>>,
    /// account -> asset -> volumes after the transaction.
    pub post_commit_volumes: BTreeMap<String, BTreeMap<String, Volumes>>,
    /// account -> its posting sequence after the transaction.
    pub posting_seqs: BTreeMap<String, u64>,
    /// Accounts (other than world) left below zero, as their overdraft policy allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overdrafts: Vec<OverdraftFlag>,
}

/// An account left with a negative balance under an allowed overdraft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverdraftFlag {
    pub account: String,
    pub asset: String,
    #[serde(serialize_with = "decimal_out")]
    pub balance: Decimal,
}

/// Where a non-transaction entry (metadata, policy) landed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Committed {
    pub seq: u64,
    #[serde(serialize_with = "hash_out")]
    pub block_hash: Hash,
    #[serde(serialize_with = "hash_out")]
    pub previous_hash: Hash,
}

pub use crate::log::format::{hex, parse_hex};

/// A struct read from a JSON object only. serde's derive also reads a struct from an array of
/// its fields in order (`["main","ref",null,[...],{}]`), a second shape that the unknown-field
/// rule cannot see; a request has one shape.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        let visitor = ObjectVisitor(std::marker::PhantomData);
        deserializer.deserialize_map(visitor).map(ObjectOnly)
    }
}

/// `postings`: an array of posting objects (see [`ObjectOnly`]).
fn postings_in<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Posting>, D::Error> {
    let postings = Vec::<ObjectOnly<Posting>>::deserialize(deserializer)?;
    Ok(postings
        .into_iter()
        .map(|ObjectOnly(posting)| posting)
        .collect())
}

fn hash_out<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex(hash))
}

fn decimal_out<S: Serializer>(amount: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&amount.to_string())
}

/// Accepts only a JSON string holding a plain decimal (`"12.50"`): a JSON number would lose
/// precision on the way, so it is refused rather than guessed at.
fn decimal_in<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_decimal_text(&text).map_err(serde::de::Error::custom)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}
