//! Applying one entry to the state tables. The same code runs when the ledger commits a group,
//! when open catches up past the watermark, and when replay rebuilds the state, so the state
//! is always exactly what the log implies. It checks every effect an entry records against
//! the state it lands on (volumes, posting sequences, references, reverts) and refuses an
//! entry that disagrees: on the live path that is a broken invariant, on replay a bad log.

use std::collections::BTreeMap;

use super::error::StateError;
use super::hot::StagedTables;
use super::tables::{
    META_STORE_ID, META_WATERMARK, ReferenceRow, StateReads, TransactionChanges, VolumesRow,
    Watermark, WriteTables, encode_row,
};
use super::timeline;
use crate::domain::entry::{self, Dec, EntryBody, OverdraftCode, TransactionEntry};
use crate::domain::model::{check_consumer_name, check_skip_reason};
pub use crate::domain::view::TransactionLookup;
use crate::domain::view::ViewError;
use crate::log::LogReader;

/// The log itself: every entry it holds up to its head.
impl TransactionLookup for LogReader {
    fn transaction(&self, id: u64) -> Result<Option<TransactionEntry>, ViewError> {
        if id == 0 || id > self.head().seq {
            return Ok(None);
        }
        let entry = self.read(id).map_err(StateError::from)?;
        decode_transaction(id, &entry.body)
    }
}

/// The transaction entry `seq` holds, from its encoded body: `None` when it holds another kind.
pub fn decode_transaction(seq: u64, body: &[u8]) -> Result<Option<TransactionEntry>, ViewError> {
    match entry::decode(body) {
        Ok(EntryBody::Transaction(tx)) => Ok(Some(tx)),
        Ok(_) => Ok(None),
        Err(error) => Err(StateError::BadEntry {
            seq,
            detail: error.to_string(),
        }
        .into()),
    }
}

/// Applies the entry `seq` to the tables (volumes and posting sequences to the hot rows in
/// front of them), reading the transactions it names through `lookup`.
pub fn apply(
    state: &mut StagedTables<'_, '_>,
    lookup: &dyn TransactionLookup,
    seq: u64,
    body: &EntryBody,
) -> Result<(), StateError> {
    if let Some(ledger) = body.ledger() {
        state.touch_ledger(ledger, seq)?;
    }
    let tables = &mut *state.tables;
    match body {
        EntryBody::StoreCreated(created) => {
            if seq != 1 {
                return Err(inconsistent(seq, "store creation after entry 1"));
            }
            tables.meta.insert(META_STORE_ID, &created.store_id[..])?;
        }
        EntryBody::Transaction(tx) => apply_transaction(state, lookup, seq, tx)?,
        EntryBody::AccountMetadataSet(set) => {
            state.touch_account(&set.ledger, &set.account)?;
            let tables = &mut *state.tables;
            let mut metadata = tables.account_metadata(&set.ledger, &set.account)?;
            metadata.extend(set.metadata.clone());
            let row = encode_row("account_metadata", &metadata)?;
            tables
                .account_metadata
                .insert((set.ledger.as_str(), set.account.as_str()), &row[..])?;
        }
        EntryBody::AccountMetadataDeleted(deleted) => {
            let key = (deleted.ledger.as_str(), deleted.account.as_str());
            let mut metadata = tables.account_metadata(key.0, key.1)?;
            if metadata.remove(&deleted.key).is_none() {
                return Err(inconsistent(
                    seq,
                    "deletes an account metadata key that is not set",
                ));
            }
            let row = encode_row("account_metadata", &metadata)?;
            tables.account_metadata.insert(key, &row[..])?;
        }
        EntryBody::TransactionMetadataSet(set) => {
            let (entry, mut changes) = transaction_of(tables, lookup, seq, &set.ledger, set.id)?;
            let mut metadata = changes.metadata.unwrap_or(entry.metadata);
            metadata.extend(set.metadata.clone());
            changes.metadata = Some(metadata);
            put_transaction(tables, set.id, &changes)?;
        }
        EntryBody::TransactionMetadataDeleted(deleted) => {
            let (entry, mut changes) =
                transaction_of(tables, lookup, seq, &deleted.ledger, deleted.id)?;
            let mut metadata = changes.metadata.unwrap_or(entry.metadata);
            if metadata.remove(&deleted.key).is_none() {
                return Err(inconsistent(
                    seq,
                    "deletes a transaction metadata key that is not set",
                ));
            }
            changes.metadata = Some(metadata);
            put_transaction(tables, deleted.id, &changes)?;
        }
        EntryBody::OverdraftSet(set) => {
            state.touch_account(&set.ledger, &set.account)?;
            let tables = &mut *state.tables;
            let key = (
                set.ledger.as_str(),
                set.account.as_str(),
                set.asset.as_str(),
            );
            if set.policy == OverdraftCode::None {
                tables.policies.remove(key)?;
            } else {
                let row = encode_row("policies", &set.policy)?;
                tables.policies.insert(key, &row[..])?;
            }
        }
        EntryBody::ConsumerAcked(acked) => {
            move_cursor(tables, seq, &acked.consumer, acked.seq)?;
        }
        EntryBody::EventSkipped(skipped) => {
            if check_skip_reason(&skipped.reason).is_err() {
                return Err(inconsistent(seq, "a skip whose reason breaks its grammar"));
            }
            move_cursor(tables, seq, &skipped.consumer, skipped.seq)?;
        }
    }
    Ok(())
}

/// Records the last applied entry; done once per committed group, in the same transaction.
pub fn set_watermark(tables: &mut WriteTables<'_>, watermark: Watermark) -> Result<(), StateError> {
    let row = encode_row("meta", &watermark)?;
    tables.meta.insert(META_WATERMARK, &row[..])?;
    Ok(())
}

/// Moves a consumer's cursor for the entry `seq` (a `ConsumerAcked` or an `EventSkipped`).
/// Validation writes one only when it moves the cursor forward, to an entry before its own; a
/// log that says otherwise was not written by the ledger.
fn move_cursor(
    tables: &mut WriteTables<'_>,
    seq: u64,
    consumer: &str,
    to: u64,
) -> Result<(), StateError> {
    let cursor = tables.cursor(consumer)?;
    let named = check_consumer_name(consumer).is_ok();
    if !named || to >= seq || to <= cursor {
        return Err(inconsistent(
            seq,
            format!("consumer {consumer} acknowledges seq {to} from cursor {cursor}"),
        ));
    }
    tables.consumers.insert(consumer, to)?;
    Ok(())
}

fn inconsistent(seq: u64, detail: impl Into<String>) -> StateError {
    StateError::Inconsistent {
        seq,
        detail: detail.into(),
    }
}

/// The transaction `id` of `ledger` that entry `seq` names, as posted and what changed since.
fn transaction_of(
    tables: &WriteTables<'_>,
    lookup: &dyn TransactionLookup,
    seq: u64,
    ledger: &str,
    id: u64,
) -> Result<(TransactionEntry, TransactionChanges), StateError> {
    match lookup.transaction(id)? {
        Some(entry) if id < seq && entry.ledger == ledger => {
            Ok((entry, tables.transaction_changes(id)?.unwrap_or_default()))
        }
        _ => Err(inconsistent(
            seq,
            format!("names transaction {id}, not in ledger {ledger}"),
        )),
    }
}

fn put_transaction(
    tables: &mut WriteTables<'_>,
    id: u64,
    row: &TransactionChanges,
) -> Result<(), StateError> {
    let bytes = encode_row("transactions", row)?;
    tables.transactions.insert(id, &bytes[..])?;
    Ok(())
}

/// Per (account, asset), what the postings add to input and output.
fn apply_transaction(
    state: &mut StagedTables<'_, '_>,
    lookup: &dyn TransactionLookup,
    seq: u64,
    tx: &TransactionEntry,
) -> Result<(), StateError> {
    apply_volumes(state, seq, tx)?;
    apply_posting_seqs(state, seq, tx)?;
    apply_timeline(state, seq, tx)?;
    let tables = &mut *state.tables;
    if let Some(reference) = &tx.reference {
        let key = (tx.ledger.as_str(), reference.as_str());
        let row = ReferenceRow {
            id: seq,
            request_hash: tx.canonical_request().hash(),
        };
        let replaced = tables
            .references
            .insert(key, &encode_row("references", &row)?[..])?;
        if replaced.is_some() {
            return Err(inconsistent(seq, format!("reuses reference {reference:?}")));
        }
    }
    if let Some(original) = tx.reverts {
        let (_, mut changes) = transaction_of(tables, lookup, seq, &tx.ledger, original)?;
        if changes.reverted_by.is_some() {
            return Err(inconsistent(
                seq,
                format!("reverts transaction {original} a second time"),
            ));
        }
        changes.reverted_by = Some(seq);
        put_transaction(tables, original, &changes)?;
    }
    state.hot.transactions_applied += 1;
    for account in tx.posting_seqs.iter().map(|entry| entry.account.as_str()) {
        state.hot.history.push(&tx.ledger, account, seq);
    }
    Ok(())
}

/// Checks each recorded volume change against the state and the postings, then writes it.
fn apply_volumes(
    state: &mut StagedTables<'_, '_>,
    seq: u64,
    tx: &TransactionEntry,
) -> Result<(), StateError> {
    if let Err(mismatch) = tx.check_volume_changes() {
        return Err(inconsistent(
            seq,
            format!(
                "recorded volumes of {} in {} do not follow from the postings",
                mismatch.account, mismatch.asset
            ),
        ));
    }
    for change in &tx.volumes {
        let (account, asset) = (change.account.as_str(), change.asset.as_str());
        let row = VolumesRow {
            input: Dec(change.post_input.0),
            output: Dec(change.post_output.0),
        };
        // On a mismatch the caller drops the whole write transaction.
        let current = state.swap_volumes(&tx.ledger, account, asset, row)?;
        if current.input != change.pre_input.0 || current.output != change.pre_output.0 {
            return Err(inconsistent(
                seq,
                format!("volumes of {account} in {asset} disagree"),
            ));
        }
    }
    Ok(())
}

/// Adds the transaction to each of its accounts' timelines and day totals, with its change to
/// the account's balance per asset (from the volume changes, checked against the postings).
fn apply_timeline(
    state: &mut StagedTables<'_, '_>,
    seq: u64,
    tx: &TransactionEntry,
) -> Result<(), StateError> {
    for (account, changes) in timeline::changes_of(seq, tx)? {
        let row = timeline::TimelineRow {
            timestamp_us: tx.timestamp,
            seq,
            changes,
        };
        state.hot.timeline.push(&tx.ledger, account, row)?;
    }
    Ok(())
}

/// Checks each account's posting sequence continues from the state's, then writes it.
fn apply_posting_seqs(
    state: &mut StagedTables<'_, '_>,
    seq: u64,
    tx: &TransactionEntry,
) -> Result<(), StateError> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for posting in &tx.postings {
        *counts.entry(posting.source.as_str()).or_default() += 1;
        *counts.entry(posting.destination.as_str()).or_default() += 1;
    }
    let recorded: Vec<&str> = tx
        .posting_seqs
        .iter()
        .map(|entry| entry.account.as_str())
        .collect();
    if !recorded.iter().copied().eq(counts.keys().copied()) {
        return Err(inconsistent(
            seq,
            "recorded posting sequences do not match the postings",
        ));
    }
    for (entry, count) in tx.posting_seqs.iter().zip(counts.values()) {
        let current = state.swap_posting_seq(&tx.ledger, &entry.account, entry.posting_seq)?;
        if current.checked_add(*count) != Some(entry.posting_seq) {
            return Err(inconsistent(
                seq,
                format!("posting sequence of {} skips", entry.account),
            ));
        }
    }
    Ok(())
}
