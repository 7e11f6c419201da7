//! Turning a request into an entry: grammar and bounds, idempotency, and the running-balance
//! check of overdraft policies (Formance semantics: postings in order, each against the
//! balances the earlier ones left). Validation only reads; the caller applies what it returns,
//! so a rejected request never leaves a partial write.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::request::{PostRequest, RevertRequest};
use super::view::{StateView, TransactionLookup, ViewError};
use crate::domain::LedgerError;
use crate::domain::entry::{
    AccountMetadataDeleted, AccountMetadataSet, CanonicalRequest, ConsumerAcked, Dec, EntryBody,
    EventSkipped, OverdraftSet, PostingEntry, PostingSeq, TransactionEntry,
    TransactionMetadataDeleted, TransactionMetadataSet, VolumeChange,
};
use crate::domain::model::{self, Metadata, Overdraft, Volumes, WORLD};

/// Why validation gave no decision: the request breaks a rule (its answer), a read of the
/// state or the log failed, or they disagree with each other.
#[derive(Debug)]
pub enum Refusal {
    Rule(LedgerError),
    View(ViewError),
    /// The state names entry `seq` as something the log says it is not.
    Inconsistent {
        seq: u64,
        detail: String,
    },
}

impl From<LedgerError> for Refusal {
    fn from(error: LedgerError) -> Self {
        Refusal::Rule(error)
    }
}

impl From<ViewError> for Refusal {
    fn from(error: ViewError) -> Self {
        Refusal::View(error)
    }
}

/// A write operation, as queued for group commit.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Post(PostRequest),
    Revert(RevertRequest),
    SetAccountMetadata {
        ledger: String,
        account: String,
        metadata: Metadata,
    },
    DeleteAccountMetadata {
        ledger: String,
        account: String,
        key: String,
    },
    SetTransactionMetadata {
        ledger: String,
        id: u64,
        metadata: Metadata,
    },
    DeleteTransactionMetadata {
        ledger: String,
        id: u64,
        key: String,
    },
    SetOverdraft {
        ledger: String,
        account: String,
        asset: String,
        policy: Overdraft,
    },
    /// An outbox consumer acknowledges every entry up to `seq`.
    Ack {
        consumer: String,
        seq: u64,
    },
    /// An outbox consumer skips the entry `seq`: the caller read the log and found it the
    /// consumer's next entry with an event as seen from the cursor `cursor_read`.
    Skip {
        consumer: String,
        seq: u64,
        reason: String,
        cursor_read: u64,
    },
}

/// What validation decided.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Append this entry.
    Append(EntryBody),
    /// The request repeats the transaction with this id: return its receipt.
    Repeat(u64),
    /// The request changes nothing (an ack of the seq the cursor is at): append nothing.
    Unchanged,
}

/// What validation reads.
pub(crate) struct Context<'a> {
    pub view: &'a dyn StateView,
    /// Transaction entries by id, including those of the group being committed (not yet in
    /// the log).
    pub entries: &'a dyn TransactionLookup,
    /// Microseconds since the epoch: `inserted_at`, and the default timestamp.
    pub now: i64,
    /// The seq the entry would get: every entry before it (the group's included) is below.
    pub seq: u64,
}

pub(crate) fn validate(ctx: &Context<'_>, op: &Op) -> Result<Decision, Refusal> {
    // `now` is `LedgerOptions::clock`'s: a clock out of the storable range would write an
    // `inserted_at` that no export, event or journal can express (`docs/ledger.md`).
    model::Timestamp(ctx.now).check("clock")?;
    match op {
        Op::Post(request) => validate_post(ctx, request),
        Op::Revert(request) => validate_revert(ctx, request),
        Op::SetAccountMetadata {
            ledger,
            account,
            metadata,
        } => {
            check_target(ledger, account)?;
            check_nonempty_metadata(metadata)?;
            check_merged_metadata(ctx.view.account_metadata(ledger, account)?, metadata)?;
            let set = AccountMetadataSet {
                ledger: ledger.clone(),
                account: account.clone(),
                metadata: metadata.clone(),
                inserted_at: ctx.now,
            };
            Ok(Decision::Append(EntryBody::AccountMetadataSet(set)))
        }
        Op::DeleteAccountMetadata {
            ledger,
            account,
            key,
        } => {
            check_target(ledger, account)?;
            model::check_metadata_key(key)?;
            if !ctx
                .view
                .account_metadata(ledger, account)?
                .contains_key(key)
            {
                let target = format!("account {account}");
                return Err(LedgerError::MetadataKeyNotFound {
                    target,
                    key: key.clone(),
                }
                .into());
            }
            let deleted = AccountMetadataDeleted {
                ledger: ledger.clone(),
                account: account.clone(),
                key: key.clone(),
                inserted_at: ctx.now,
            };
            Ok(Decision::Append(EntryBody::AccountMetadataDeleted(deleted)))
        }
        Op::SetTransactionMetadata {
            ledger,
            id,
            metadata,
        } => {
            model::check_ledger_name(ledger)?;
            check_nonempty_metadata(metadata)?;
            check_merged_metadata(current_transaction(ctx, ledger, *id)?.metadata, metadata)?;
            let set = TransactionMetadataSet {
                ledger: ledger.clone(),
                id: *id,
                metadata: metadata.clone(),
                inserted_at: ctx.now,
            };
            Ok(Decision::Append(EntryBody::TransactionMetadataSet(set)))
        }
        Op::DeleteTransactionMetadata { ledger, id, key } => {
            model::check_ledger_name(ledger)?;
            model::check_metadata_key(key)?;
            if !current_transaction(ctx, ledger, *id)?
                .metadata
                .contains_key(key)
            {
                let target = format!("transaction {id}");
                return Err(LedgerError::MetadataKeyNotFound {
                    target,
                    key: key.clone(),
                }
                .into());
            }
            let deleted = TransactionMetadataDeleted {
                ledger: ledger.clone(),
                id: *id,
                key: key.clone(),
                inserted_at: ctx.now,
            };
            Ok(Decision::Append(EntryBody::TransactionMetadataDeleted(
                deleted,
            )))
        }
        Op::SetOverdraft {
            ledger,
            account,
            asset,
            policy,
        } => validate_overdraft(ctx, ledger, account, asset, *policy),
        Op::Ack { consumer, seq } => validate_ack(ctx, consumer, *seq),
        Op::Skip {
            consumer,
            seq,
            reason,
            cursor_read,
        } => validate_skip(ctx, consumer, *seq, reason, *cursor_read),
    }
}

/// An ack moves a cursor forward to an entry that exists; acking the cursor's own seq again
/// is a no-op, so that a consumer may repeat an ack whose outcome it did not learn.
fn validate_ack(ctx: &Context<'_>, consumer: &str, seq: u64) -> Result<Decision, Refusal> {
    model::check_consumer_name(consumer)?;
    let head = ctx.seq.saturating_sub(1);
    if seq > head {
        let consumer = consumer.to_string();
        return Err(LedgerError::AckBeyondHead {
            consumer,
            seq,
            head,
        }
        .into());
    }
    let cursor = ctx.view.cursor(consumer)?;
    if seq < cursor {
        let consumer = consumer.to_string();
        return Err(LedgerError::AckBackwards {
            consumer,
            seq,
            cursor,
        }
        .into());
    }
    if seq == cursor {
        return Ok(Decision::Unchanged);
    }
    let acked = ConsumerAcked {
        consumer: consumer.to_string(),
        seq,
        inserted_at: ctx.now,
    };
    Ok(Decision::Append(EntryBody::ConsumerAcked(acked)))
}

/// A skip is written only while `seq` is still the consumer's next entry with an event: the
/// entries between `cursor_read` and `seq` have none (the caller read them, and the log does
/// not change), so any cursor from `cursor_read` up to below `seq` still has `seq` next.
fn validate_skip(
    ctx: &Context<'_>,
    consumer: &str,
    seq: u64,
    reason: &str,
    cursor_read: u64,
) -> Result<Decision, Refusal> {
    model::check_consumer_name(consumer)?;
    model::check_skip_reason(reason)?;
    let cursor = ctx.view.cursor(consumer)?;
    if cursor < cursor_read || cursor >= seq || seq >= ctx.seq {
        let consumer = consumer.to_string();
        let next = None;
        return Err(LedgerError::SkipNotNext {
            consumer,
            seq,
            cursor,
            next,
        }
        .into());
    }
    let skipped = EventSkipped {
        consumer: consumer.to_string(),
        seq,
        reason: reason.to_string(),
        inserted_at: ctx.now,
    };
    Ok(Decision::Append(EntryBody::EventSkipped(skipped)))
}

fn check_target(ledger: &str, account: &str) -> Result<(), Refusal> {
    model::check_ledger_name(ledger)?;
    model::check_account("account", account)?;
    Ok(())
}

fn check_nonempty_metadata(metadata: &Metadata) -> Result<(), Refusal> {
    if metadata.is_empty() {
        let reason = "must set at least one key";
        return Err(LedgerError::InvalidInput {
            field: "metadata",
            value: String::new(),
            reason,
        }
        .into());
    }
    model::check_metadata(metadata)?;
    Ok(())
}

/// A transaction as it is now: its entry, and what changed since.
struct Current {
    entry: TransactionEntry,
    reverted_by: Option<u64>,
    metadata: Metadata,
}

/// Transaction `id` of `ledger`, or `TransactionNotFound`.
fn current_transaction(ctx: &Context<'_>, ledger: &str, id: u64) -> Result<Current, Refusal> {
    let Some(entry) = ctx
        .entries
        .transaction(id)?
        .filter(|tx| tx.ledger == ledger)
    else {
        return Err(LedgerError::TransactionNotFound {
            ledger: ledger.to_string(),
            id,
        }
        .into());
    };
    let changes = ctx.view.transaction_changes(id)?.unwrap_or_default();
    Ok(Current {
        metadata: changes.metadata.unwrap_or_else(|| entry.metadata.clone()),
        reverted_by: changes.reverted_by,
        entry,
    })
}

fn validate_overdraft(
    ctx: &Context<'_>,
    ledger: &str,
    account: &str,
    asset: &str,
    policy: Overdraft,
) -> Result<Decision, Refusal> {
    check_target(ledger, account)?;
    if account == WORLD {
        return Err(LedgerError::WorldPolicy.into());
    }
    let spec = model::parse_asset(asset)?;
    if let Overdraft::Bounded(limit) = policy {
        if limit < Decimal::ZERO {
            let reason = "limit may not be negative";
            return Err(LedgerError::InvalidInput {
                field: "overdraft",
                value: limit.to_string(),
                reason,
            }
            .into());
        }
        if let Some(scale) = spec.scale
            && limit.normalize().scale() > scale
        {
            let amount = limit.to_string();
            return Err(LedgerError::AmountPrecision {
                amount,
                asset: asset.to_string(),
                scale,
            }
            .into());
        }
    }
    let policy = match policy {
        Overdraft::Bounded(limit) => Overdraft::Bounded(limit.normalize()),
        other => other,
    };
    let set = OverdraftSet {
        ledger: ledger.to_string(),
        account: account.to_string(),
        asset: asset.to_string(),
        policy: policy.into(),
        inserted_at: ctx.now,
    };
    Ok(Decision::Append(EntryBody::OverdraftSet(set)))
}

/// Checks each posting's fields and returns them in canonical form.
fn check_postings(request: &PostRequest) -> Result<Vec<PostingEntry>, Refusal> {
    if request.postings.is_empty() {
        return Err(LedgerError::EmptyPostings.into());
    }
    if request.postings.len() > model::POSTINGS_PER_TRANSACTION_MAX {
        let (count, max) = (request.postings.len(), model::POSTINGS_PER_TRANSACTION_MAX);
        return Err(LedgerError::TooManyPostings { count, max }.into());
    }
    let mut postings = Vec::with_capacity(request.postings.len());
    for posting in &request.postings {
        model::check_account("source", &posting.source)?;
        model::check_account("destination", &posting.destination)?;
        if posting.source == posting.destination {
            let reason = "is the same account as the source";
            let value = posting.destination.clone();
            return Err(LedgerError::InvalidInput {
                field: "destination",
                value,
                reason,
            }
            .into());
        }
        let amount = model::check_amount("amount", posting.amount, &posting.asset)?;
        postings.push(PostingEntry {
            source: posting.source.clone(),
            destination: posting.destination.clone(),
            amount: Dec(amount),
            asset: posting.asset.clone(),
        });
    }
    Ok(postings)
}

fn check_common(ledger: &str, reference: Option<&str>, metadata: &Metadata) -> Result<(), Refusal> {
    model::check_ledger_name(ledger)?;
    if let Some(reference) = reference {
        model::check_reference(reference)?;
    }
    model::check_metadata(metadata)?;
    Ok(())
}

/// If the request's reference was used: `Some(Repeat)` for the same request, an
/// `IdempotencyConflict` naming the first differing field for another one.
fn check_reference_use(
    ctx: &Context<'_>,
    canonical: &CanonicalRequest,
) -> Result<Option<Decision>, Refusal> {
    let Some(reference) = &canonical.reference else {
        return Ok(None);
    };
    let Some(used) = ctx.view.reference(&canonical.ledger, reference)? else {
        return Ok(None);
    };
    if used.request_hash == canonical.hash() {
        return Ok(Some(Decision::Repeat(used.id)));
    }
    let Some(original) = ctx.entries.transaction(used.id)? else {
        return Err(Refusal::Inconsistent {
            seq: used.id,
            detail: format!("reference {reference:?} names it, and it is not a transaction"),
        });
    };
    let original = original.canonical_request();
    Err(LedgerError::IdempotencyConflict {
        ledger: canonical.ledger.clone(),
        reference: reference.clone(),
        original_id: used.id,
        field: first_difference(&original, canonical),
    }
    .into())
}

/// Names the first field in which two canonical requests differ.
fn first_difference(original: &CanonicalRequest, retry: &CanonicalRequest) -> String {
    if original.kind != retry.kind {
        return "kind (a post and a revert)".to_string();
    }
    if original.reverts != retry.reverts {
        return "id".to_string();
    }
    if original.forced != retry.forced {
        return "force".to_string();
    }
    if original.postings.len() != retry.postings.len() {
        return "number of postings".to_string();
    }
    for (index, (a, b)) in original.postings.iter().zip(&retry.postings).enumerate() {
        let field = if a.source != b.source {
            "source"
        } else if a.destination != b.destination {
            "destination"
        } else if a.amount != b.amount {
            "amount"
        } else if a.asset != b.asset {
            "asset"
        } else {
            continue;
        };
        return format!("postings[{index}].{field}");
    }
    if original.timestamp != retry.timestamp {
        return "timestamp".to_string();
    }
    if original.metadata != retry.metadata {
        return "metadata".to_string();
    }
    "request".to_string()
}

fn validate_post(ctx: &Context<'_>, request: &PostRequest) -> Result<Decision, Refusal> {
    check_common(
        &request.ledger,
        request.reference.as_deref(),
        &request.metadata,
    )?;
    if let Some(at) = request.timestamp {
        at.check("timestamp")?;
    }
    let postings = check_postings(request)?;
    let canonical = CanonicalRequest {
        kind: 0,
        ledger: request.ledger.clone(),
        reference: request.reference.clone(),
        timestamp: request.timestamp.map(|at| at.0),
        postings,
        metadata: request.metadata.clone(),
        reverts: None,
        forced: false,
    };
    if let Some(repeat) = check_reference_use(ctx, &canonical)? {
        return Ok(repeat);
    }
    let (volumes, posting_seqs) = effects(ctx.view, &canonical.ledger, &canonical.postings, true)?;
    append_transaction(TransactionEntry {
        ledger: canonical.ledger,
        reference: canonical.reference,
        timestamp: canonical.timestamp.unwrap_or(ctx.now),
        timestamp_given: canonical.timestamp.is_some(),
        inserted_at: ctx.now,
        postings: canonical.postings,
        metadata: canonical.metadata,
        reverts: None,
        forced: false,
        volumes,
        posting_seqs,
    })
}

/// Checks the bounds on the map that a metadata `set` leaves behind: the stored keys merged
/// with the new ones. The bounds are those of one map, not of one request.
fn check_merged_metadata(mut stored: Metadata, set: &Metadata) -> Result<(), Refusal> {
    stored.extend(set.iter().map(|(key, value)| (key.clone(), value.clone())));
    model::check_metadata(&stored)?;
    Ok(())
}

/// The decision to append `tx`, once its volume changes are checked exactly as `apply` will
/// check them: a sum that a `Decimal` cannot hold exactly is an overflow, never rounded.
fn append_transaction(tx: TransactionEntry) -> Result<Decision, Refusal> {
    match tx.check_volume_changes() {
        Ok(()) => Ok(Decision::Append(EntryBody::Transaction(tx))),
        Err(mismatch) => Err(LedgerError::Overflow {
            account: mismatch.account,
            asset: mismatch.asset,
        }
        .into()),
    }
}

fn validate_revert(ctx: &Context<'_>, request: &RevertRequest) -> Result<Decision, Refusal> {
    check_common(
        &request.ledger,
        request.reference.as_deref(),
        &request.metadata,
    )?;
    let canonical = CanonicalRequest {
        kind: 1,
        ledger: request.ledger.clone(),
        reference: request.reference.clone(),
        timestamp: None,
        postings: Vec::new(),
        metadata: request.metadata.clone(),
        reverts: Some(request.id),
        forced: request.force,
    };
    // A retried revert that went through is a repeat, so the reference comes first.
    if let Some(repeat) = check_reference_use(ctx, &canonical)? {
        return Ok(repeat);
    }
    let current = current_transaction(ctx, &request.ledger, request.id)?;
    if let Some(reverted_by) = current.reverted_by {
        return Err(LedgerError::AlreadyReverted {
            id: request.id,
            reverted_by,
        }
        .into());
    }
    let original = current.entry;
    let postings: Vec<PostingEntry> = original
        .postings
        .iter()
        .rev()
        .map(|posting| PostingEntry {
            source: posting.destination.clone(),
            destination: posting.source.clone(),
            amount: posting.amount,
            asset: posting.asset.clone(),
        })
        .collect();
    let (volumes, posting_seqs) = effects(ctx.view, &request.ledger, &postings, !request.force)?;
    append_transaction(TransactionEntry {
        ledger: canonical.ledger,
        reference: canonical.reference,
        timestamp: ctx.now,
        timestamp_given: false,
        inserted_at: ctx.now,
        postings,
        metadata: canonical.metadata,
        reverts: Some(request.id),
        forced: request.force,
        volumes,
        posting_seqs,
    })
}

/// Runs the postings in order against running balances; returns the volume changes (sorted by
/// account, asset) and the accounts' new posting sequences. With `enforce`, a posting that
/// takes its source below its overdraft floor rejects the whole transaction.
fn effects(
    view: &dyn StateView,
    ledger: &str,
    postings: &[PostingEntry],
    enforce: bool,
) -> Result<(Vec<VolumeChange>, Vec<PostingSeq>), Refusal> {
    let mut running: BTreeMap<(&str, &str), (Volumes, Volumes)> = BTreeMap::new();
    for posting in postings {
        let (source, destination, asset) = (&posting.source, &posting.destination, &posting.asset);
        let amount = posting.amount.0;
        for account in [source, destination] {
            if !running.contains_key(&(account.as_str(), asset.as_str())) {
                let current = view.volumes(ledger, account, asset)?;
                running.insert((account.as_str(), asset.as_str()), (current, current));
            }
        }
        let overflow = || LedgerError::Overflow {
            account: source.clone(),
            asset: asset.clone(),
        };
        let source_now = running[&(source.as_str(), asset.as_str())].1;
        let source_after = source_now.sent(amount).ok_or_else(overflow)?;
        if enforce && source != WORLD {
            let policy = view.overdraft(ledger, source, asset)?;
            if !policy.allows(source_after.balance) {
                let floor = policy.floor().unwrap_or(Decimal::MIN);
                return Err(LedgerError::InsufficientFunds {
                    ledger: ledger.to_string(),
                    account: source.clone(),
                    asset: asset.clone(),
                    balance: source_now.balance.to_string(),
                    amount: amount.to_string(),
                    shortfall: (floor - source_after.balance).normalize().to_string(),
                }
                .into());
            }
        }
        let overflow = || LedgerError::Overflow {
            account: destination.clone(),
            asset: asset.clone(),
        };
        let destination_after = running[&(destination.as_str(), asset.as_str())]
            .1
            .received(amount)
            .ok_or_else(overflow)?;
        if let Some(entry) = running.get_mut(&(source.as_str(), asset.as_str())) {
            entry.1 = source_after;
        }
        if let Some(entry) = running.get_mut(&(destination.as_str(), asset.as_str())) {
            entry.1 = destination_after;
        }
    }
    let volumes = running
        .iter()
        .map(|((account, asset), (pre, post))| VolumeChange {
            account: account.to_string(),
            asset: asset.to_string(),
            pre_input: Dec(pre.input),
            pre_output: Dec(pre.output),
            post_input: Dec(post.input),
            post_output: Dec(post.output),
        })
        .collect();
    Ok((volumes, posting_seqs(view, ledger, postings)?))
}

fn posting_seqs(
    view: &dyn StateView,
    ledger: &str,
    postings: &[PostingEntry],
) -> Result<Vec<PostingSeq>, Refusal> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for posting in postings {
        *counts.entry(posting.source.as_str()).or_default() += 1;
        *counts.entry(posting.destination.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(account, count)| {
            let posting_seq = view.posting_seq(ledger, account)? + count;
            Ok(PostingSeq {
                account: account.to_string(),
                posting_seq,
            })
        })
        .collect()
}
