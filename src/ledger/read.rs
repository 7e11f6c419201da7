//! Reads: balances and volumes, accounts, transactions by id or reference, account history in
//! pages, and store figures. Balance reads share one snapshot of the last state commit (see
//! `State::volumes_snapshot`); the other reads open their own redb read transaction. Reads never
//! wait for a writer; transaction bodies come from the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::ReadableTable;
use rust_decimal::Decimal;
use serde::Serialize;

use super::Ledger;
use crate::Error;
use crate::domain::LedgerError;
use crate::domain::entry::EntryBody;
use crate::domain::entry::{OverdraftCode, TransactionEntry};
use crate::domain::model::{self, Metadata, Overdraft, Timestamp, Volumes, WORLD};
use crate::domain::request::{OverdraftFlag, Posting, Receipt};
use crate::log::{Hash, Head};
use crate::state::tables::{
    ReadTables, TransactionChanges, VolumesRow, Watermark, decode_row, get_transactions_count,
};
use crate::state::timeline::{self, TimelineRow};
use crate::state::{StateReads, VolumesTable};

/// Most transactions one history page returns.
pub const HISTORY_PAGE_MAX: usize = 1000;

/// What the ledger knows of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub ledger: String,
    pub address: String,
    /// asset -> volumes.
    pub volumes: BTreeMap<String, Volumes>,
    pub metadata: Metadata,
    /// asset -> policy, for the assets with a policy other than the default.
    #[serde(serialize_with = "policies_out")]
    pub overdrafts: BTreeMap<String, Overdraft>,
    /// Postings that touched the account so far.
    pub posting_seq: u64,
}

fn policies_out<S: serde::Serializer>(
    policies: &BTreeMap<String, Overdraft>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        policies
            .iter()
            .map(|(asset, policy)| (asset, policy.to_string())),
    )
}

/// Figures of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerStats {
    pub entries: u64,
    pub segments: u64,
    pub log_bytes: u64,
    pub ledgers: u64,
    pub accounts: u64,
    pub transactions: u64,
    pub watermark: u64,
}

/// What a statement reads of the state ([`Ledger::account_period`]).
#[derive(Debug)]
pub(crate) struct AccountPeriod {
    /// The watermark of the snapshot read: the log's head the figures cover.
    pub head_seq: u64,
    /// Asset -> (balance before `from`, balance before `to`).
    pub balances: BTreeMap<String, (Decimal, Decimal)>,
    /// The period's timeline rows in effective order, each with what changed in its
    /// transaction since its entry; `None` when there are more than asked for.
    pub rows: Option<Vec<(Option<TransactionChanges>, TimelineRow)>>,
}

/// Builds a transaction's receipt from its entry.
pub(crate) fn receipt_of(
    id: u64,
    block_hash: Hash,
    previous_hash: Hash,
    tx: TransactionEntry,
    changes: Option<TransactionChanges>,
) -> Receipt {
    // Takes the entry by value: its names move into the receipt instead of being copied, which
    // on a bulk post was a tenth of the allocations.
    let mut pre: BTreeMap<String, BTreeMap<String, Volumes>> = BTreeMap::new();
    let mut post: BTreeMap<String, BTreeMap<String, Volumes>> = BTreeMap::new();
    let mut overdrafts = Vec::new();
    for change in tx.volumes {
        let before = Volumes::new(change.pre_input.0, change.pre_output.0);
        let after = Volumes::new(change.post_input.0, change.post_output.0);
        if after.balance < Decimal::ZERO && change.account != WORLD {
            overdrafts.push(OverdraftFlag {
                account: change.account.clone(),
                asset: change.asset.clone(),
                balance: after.balance,
            });
        }
        pre.entry(change.account.clone())
            .or_default()
            .insert(change.asset.clone(), before);
        post.entry(change.account)
            .or_default()
            .insert(change.asset, after);
    }
    Receipt {
        id,
        ledger: tx.ledger,
        reference: tx.reference,
        replayed: false,
        block_hash,
        previous_hash,
        timestamp: Timestamp(tx.timestamp),
        inserted_at: Timestamp(tx.inserted_at),
        postings: tx
            .postings
            .into_iter()
            .map(|posting| Posting {
                source: posting.source,
                destination: posting.destination,
                amount: posting.amount.0,
                asset: posting.asset,
            })
            .collect(),
        metadata: changes
            .as_ref()
            .and_then(|changes| changes.metadata.clone())
            .unwrap_or(tx.metadata),
        reverts: tx.reverts,
        reverted_by: changes.and_then(|changes| changes.reverted_by),
        pre_commit_volumes: pre,
        post_commit_volumes: post,
        posting_seqs: tx
            .posting_seqs
            .into_iter()
            .map(|seq| (seq.account, seq.posting_seq))
            .collect(),
        overdrafts,
    }
}

/// The volumes rows of `(ledger, account prefix)`, in key order.
/// account -> asset -> balance.
type BalancesByAccount = BTreeMap<String, BTreeMap<String, Decimal>>;

/// Every balance of a ledger's accounts under `prefix`, by account and asset.
fn balances_in(
    table: &VolumesTable,
    ledger: &str,
    prefix: &str,
) -> Result<BalancesByAccount, Error> {
    let rows = volumes_rows(table, ledger, prefix, |found| found.starts_with(prefix))?;
    let mut accounts = BalancesByAccount::new();
    for (account, asset, volumes) in rows {
        accounts
            .entry(account)
            .or_default()
            .insert(asset, volumes.balance);
    }
    Ok(accounts)
}

fn volumes_rows(
    volumes: &VolumesTable,
    ledger: &str,
    account_from: &str,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, String, Volumes)>, Error> {
    let mut rows = Vec::new();
    let range = volumes
        .range((ledger, account_from, "")..)
        .map_err(crate::state::StateError::from)?;
    for item in range {
        let (key, value) = item.map_err(crate::state::StateError::from)?;
        let (row_ledger, account, asset) = key.value();
        if row_ledger != ledger || !keep(account) {
            break;
        }
        let volumes = decode_row::<VolumesRow>("volumes", value.value())?.volumes();
        rows.push((account.to_string(), asset.to_string(), volumes));
    }
    Ok(rows)
}

impl Ledger {
    fn tables(&self) -> Result<ReadTables, Error> {
        self.check_readable()?;
        Ok(self.inner.state.read_tables()?)
    }

    /// The volumes table alone: balance reads open only it (opening all nine tables cost
    /// more than the lookup itself), from the snapshot the reads since the last state commit
    /// share.
    fn volumes_table(&self) -> Result<Arc<VolumesTable>, Error> {
        self.check_readable()?;
        Ok(self.inner.state.volumes_snapshot()?)
    }

    /// An account's volumes per asset.
    pub fn volumes(&self, ledger: &str, account: &str) -> Result<BTreeMap<String, Volumes>, Error> {
        model::check_ledger_name(ledger)?;
        model::check_account("account", account)?;
        let rows = volumes_rows(&*self.volumes_table()?, ledger, account, |found| {
            found == account
        })?;
        Ok(rows
            .into_iter()
            .map(|(_, asset, volumes)| (asset, volumes))
            .collect())
    }

    /// An account's balance per asset (empty for an account never used).
    pub fn balance(&self, ledger: &str, account: &str) -> Result<BTreeMap<String, Decimal>, Error> {
        let volumes = self.volumes(ledger, account)?;
        Ok(volumes
            .into_iter()
            .map(|(asset, volumes)| (asset, volumes.balance))
            .collect())
    }

    /// Every account's balances whose address starts with `prefix` (all with `""`).
    pub fn balances(
        &self,
        ledger: &str,
        prefix: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, Decimal>>, Error> {
        model::check_ledger_name(ledger)?;
        balances_in(&*self.volumes_table()?, ledger, prefix)
    }

    /// [`Ledger::balances`], with the watermark seq of the one snapshot they were read from
    /// (for a trial balance, which names the log's head it covers).
    pub(crate) fn balances_with_watermark(
        &self,
        ledger: &str,
        prefix: &str,
    ) -> Result<(BalancesByAccount, u64), Error> {
        model::check_ledger_name(ledger)?;
        let tables = self.tables()?;
        let balances = balances_in(&tables.volumes, ledger, prefix)?;
        Ok((balances, tables.watermark()?.seq))
    }

    /// Everything about one account; `None` if it was never used.
    pub fn account(&self, ledger: &str, account: &str) -> Result<Option<AccountView>, Error> {
        let volumes = self.volumes(ledger, account)?;
        let tables = self.tables()?;
        let known = tables
            .accounts
            .get((ledger, account))
            .map_err(crate::state::StateError::from)?;
        let Some(posting_seq) = known.map(|value| value.value()) else {
            return Ok(None);
        };
        let mut overdrafts = BTreeMap::new();
        let range = tables
            .policies
            .range((ledger, account, "")..)
            .map_err(crate::state::StateError::from)?;
        for item in range {
            let (key, value) = item.map_err(crate::state::StateError::from)?;
            let (row_ledger, row_account, asset) = key.value();
            if row_ledger != ledger || row_account != account {
                break;
            }
            let policy: OverdraftCode = decode_row("policies", value.value())?;
            overdrafts.insert(asset.to_string(), policy.into());
        }
        Ok(Some(AccountView {
            ledger: ledger.to_string(),
            address: account.to_string(),
            volumes,
            metadata: tables.account_metadata(ledger, account)?,
            overdrafts,
            posting_seq,
        }))
    }

    /// A transaction by id, with its current metadata and revert link; `None` if the ledger
    /// has no such transaction.
    pub fn transaction(&self, ledger: &str, id: u64) -> Result<Option<Receipt>, Error> {
        model::check_ledger_name(ledger)?;
        self.receipt_in(&self.tables()?, ledger, id)
    }

    /// Transaction `id` of `ledger` as of the snapshot `tables`: its entry from the log, what
    /// changed since from the state. Reads that list several take them all from one snapshot.
    fn receipt_in(
        &self,
        tables: &ReadTables,
        ledger: &str,
        id: u64,
    ) -> Result<Option<Receipt>, Error> {
        // Only what the state's snapshot holds: the log may already hold a group whose
        // callers have not been answered.
        if id == 0 || id > tables.watermark()?.seq {
            return Ok(None);
        }
        let entry = self.inner.log.read(id)?;
        let tx = match crate::replay::decode_body(&entry)? {
            EntryBody::Transaction(tx) if tx.ledger == ledger => tx,
            _ => return Ok(None),
        };
        let changes = tables.transaction_changes(id)?;
        Ok(Some(receipt_of(
            id,
            entry.block_hash,
            entry.previous_hash,
            tx,
            changes,
        )))
    }

    /// A transaction by its reference.
    pub fn transaction_by_reference(
        &self,
        ledger: &str,
        reference: &str,
    ) -> Result<Option<Receipt>, Error> {
        model::check_ledger_name(ledger)?;
        model::check_reference(reference)?;
        let tables = self.tables()?;
        match tables.reference(ledger, reference)? {
            Some(used) => self.receipt_in(&tables, ledger, used.id),
            None => Ok(None),
        }
    }

    /// An account's transactions, newest first: at most `limit` (up to 1,000) with ids below
    /// `before` (the last id of the previous page), or from the newest when `before` is None.
    pub fn history(
        &self,
        ledger: &str,
        account: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<Receipt>, Error> {
        model::check_ledger_name(ledger)?;
        model::check_account("account", account)?;
        let limit = limit.min(HISTORY_PAGE_MAX);
        let end = before.unwrap_or(u64::MAX);
        let tables = self.tables()?;
        let ids = crate::state::history::page(&tables.history, ledger, account, end, limit)?;
        let mut receipts = Vec::with_capacity(ids.len());
        for id in ids {
            match self.receipt_in(&tables, ledger, id)? {
                Some(receipt) => receipts.push(receipt),
                None => {
                    return Err(LedgerError::TransactionNotFound {
                        ledger: ledger.to_string(),
                        id,
                    }
                    .into());
                }
            }
        }
        Ok(receipts)
    }

    /// What a statement of `account` over `[from, to)` reads of the state, from one snapshot
    /// (`docs/reports.md`, "How a statement is computed"): per asset, the balance before `from` and before `to`
    /// (from the account's day totals and timeline, anchored on its balance now), and the
    /// timeline rows of the period (at most `rows_max`) with what changed in each transaction
    /// since its entry. Only `asset` when given. `None` when no transaction ever touched the
    /// account. Reads no entry of the log.
    pub(crate) fn account_period(
        &self,
        ledger: &str,
        account: &str,
        (from, to): (Timestamp, Timestamp),
        asset: Option<&str>,
        rows_max: usize,
    ) -> Result<Option<AccountPeriod>, Error> {
        let tables = self.tables()?;
        let held = volumes_rows(&tables.volumes, ledger, account, |found| found == account)?;
        if held.is_empty() {
            return Ok(None);
        }
        let mut balances = BTreeMap::new();
        for (name, volumes) in held.into_iter().map(|(_, name, volumes)| (name, volumes)) {
            if asset.is_some_and(|only| only != name) {
                continue;
            }
            let at = |time: Timestamp| {
                timeline::balance_before(
                    &tables.day_totals,
                    &tables.timeline,
                    (ledger, account, &name),
                    volumes.balance,
                    time.0,
                )
            };
            balances.insert(name.clone(), (at(from)?, at(to)?));
        }
        let rows = timeline::rows_between(
            &tables.timeline,
            (ledger, account, asset),
            (from.0, to.0),
            rows_max,
        )?;
        let rows = match rows {
            Some(rows) => {
                let mut with_changes = Vec::with_capacity(rows.len());
                for row in rows {
                    with_changes.push((tables.transaction_changes(row.seq)?, row));
                }
                Some(with_changes)
            }
            None => None,
        };
        Ok(Some(AccountPeriod {
            head_seq: tables.watermark()?.seq,
            balances,
            rows,
        }))
    }

    /// The names of the ledgers that have entries.
    pub fn ledgers(&self) -> Result<Vec<String>, Error> {
        let tables = self.tables()?;
        let mut names = Vec::new();
        for item in tables
            .ledgers
            .iter()
            .map_err(crate::state::StateError::from)?
        {
            let (key, _) = item.map_err(crate::state::StateError::from)?;
            names.push(key.value().to_string());
        }
        Ok(names)
    }

    /// The log's last entry: the digest an auditor writes down.
    pub fn head(&self) -> Head {
        self.inner.log.head()
    }

    /// The last entry applied to the state.
    pub fn watermark(&self) -> Result<Watermark, Error> {
        Ok(self.tables()?.watermark()?)
    }

    /// Entries, segments, bytes, ledgers, accounts, transactions and the watermark.
    pub fn stats(&self) -> Result<LedgerStats, Error> {
        use redb::ReadableTableMetadata;
        let log = self.inner.log.stats();
        let tables = self.tables()?;
        let count =
            |len: Result<u64, redb::StorageError>| len.map_err(crate::state::StateError::from);
        Ok(LedgerStats {
            entries: log.entries,
            segments: log.segments,
            log_bytes: log.used_bytes,
            ledgers: count(tables.ledgers.len())?,
            accounts: count(tables.accounts.len())?,
            transactions: get_transactions_count(&tables.meta)?,
            watermark: tables.watermark()?.seq,
        })
    }
}

impl Ledger {
    /// Rebuilds the state from the log up to the state's watermark (in memory) and returns the
    /// first row where the two differ, or `None` when the state is exactly what the log implies.
    pub fn state_difference(&self) -> Result<Option<crate::verify::StateDifference>, Error> {
        let actual = self.tables()?;
        let watermark = actual.watermark()?;
        let replayed = crate::verify::replay_state(&self.inner.log, watermark.seq, &mut |_| {})?;
        let difference = crate::verify::diff_states(&replayed.read_tables()?, &actual)?;
        Ok(difference)
    }
}

impl Ledger {
    /// Verifies the store in-process while it runs: every record of the log (crc, hash,
    /// chain), every expected head `(seq, block_hash)`, and the state (as of now) against a
    /// replay of the log up to its watermark.
    pub fn verify(
        &self,
        expect_heads: &[(u64, Hash)],
    ) -> Result<crate::verify::VerifyReport, Error> {
        let tables = self.tables()?;
        let report = crate::verify::verify_log_and_state(
            &self.inner.log,
            Some(&tables),
            expect_heads,
            &mut |_, _| {},
        )?;
        Ok(report)
    }
}
