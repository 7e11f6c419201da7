//! An account's statement over a period `[from, to)` of effective timestamps, per asset: the
//! opening balance (every posting before `from`), each movement in the period in effective
//! order, and the closing balance (every posting before `to`). It reads the state's timeline of
//! the account (`docs/reports.md`, "How a statement is computed"): the opening and closing balances from its
//! day totals and at most a day of its rows at each end, the period's transaction ids from its
//! rows, and only those transactions' entries from the log. So it costs the period's entries,
//! not the account's history or the log. Invariants, checked before the statement is returned:
//! each entry's effect on the account is what its timeline row says, opening + sum(in) -
//! sum(out) = closing (both read independently of the movements), and the last running balance
//! is the closing balance.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::{ReportError, add};
use crate::Ledger;
use crate::domain::entry::{EntryBody, TransactionEntry};
use crate::domain::model::{self, Metadata, Timestamp};
use crate::state::tables::TransactionChanges;
use crate::state::timeline::TimelineRow;

/// Most movements one statement holds (all assets together): a statement is built in
/// memory, since back-dated transactions make log order differ from effective order.
pub const STATEMENT_MOVEMENTS_MAX: usize = 1_000_000;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRequest {
    pub ledger: String,
    pub account: String,
    /// Inclusive: movements with an effective timestamp at or after it.
    pub from: Timestamp,
    /// Exclusive: movements with an effective timestamp before it.
    pub to: Timestamp,
    /// Only this asset; every asset the account holds when `None`.
    pub asset: Option<String>,
}

/// One transaction's effect on the account in one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The transaction's id (its entry's seq).
    pub id: u64,
    /// Effective time.
    pub timestamp: Timestamp,
    pub inserted_at: Timestamp,
    /// The accounts on the other side of the postings that touched the account, sorted.
    pub counterparties: Vec<String>,
    /// Received (the account was a posting's destination), zero or more.
    pub amount_in: Decimal,
    /// Sent (the account was a posting's source), zero or more.
    pub amount_out: Decimal,
    /// The balance after this movement.
    pub balance: Decimal,
    pub reference: Option<String>,
    /// The transaction this one reverts.
    pub reverts: Option<u64>,
    /// The transaction's metadata as of the end of the log (later changes applied).
    pub metadata: Metadata,
}

/// One asset's part of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetStatement {
    pub asset: String,
    pub opening: Decimal,
    pub total_in: Decimal,
    pub total_out: Decimal,
    pub closing: Decimal,
    /// In effective order: by timestamp, then id.
    pub movements: Vec<Movement>,
}

/// A statement: one part per asset, sorted by asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub ledger: String,
    pub account: String,
    pub from: Timestamp,
    pub to: Timestamp,
    /// The log's head the statement covers.
    pub head_seq: u64,
    pub assets: Vec<AssetStatement>,
}

/// Builds and checks `request`'s statement from the account's transactions.
pub fn statement(ledger: &Ledger, request: &StatementRequest) -> Result<Statement, ReportError> {
    model::check_ledger_name(&request.ledger).map_err(crate::Error::from)?;
    model::check_account("account", &request.account).map_err(crate::Error::from)?;
    if let Some(asset) = &request.asset {
        model::parse_asset(asset).map_err(crate::Error::from)?;
    }
    if request.from >= request.to {
        return Err(ReportError::InvalidInput {
            field: "from",
            value: request.from.to_rfc3339(),
            reason: "must be before --to",
        });
    }
    let period = ledger.account_period(
        &request.ledger,
        &request.account,
        (request.from, request.to),
        request.asset.as_deref(),
        STATEMENT_MOVEMENTS_MAX,
    )?;
    let Some(period) = period else {
        return Err(ReportError::AccountNotFound {
            ledger: request.ledger.clone(),
            account: request.account.clone(),
        });
    };
    let Some(rows) = period.rows else {
        return Err(too_large());
    };
    let mut parts: BTreeMap<String, Part> = period
        .balances
        .into_iter()
        .map(|(asset, (opening, closing))| (asset, Part::new(opening, closing)))
        .collect();
    if let Some(asset) = &request.asset {
        // An asset the account never held: a statement of zeros, not a missing section.
        parts.entry(asset.clone()).or_default();
    }
    add_movements(ledger, request, rows, &mut parts)?;
    let mut assets = Vec::with_capacity(parts.len());
    for (asset, part) in parts {
        assets.push(part.finish(&asset)?);
    }
    Ok(Statement {
        ledger: request.ledger.clone(),
        account: request.account.clone(),
        from: request.from,
        to: request.to,
        head_seq: period.head_seq,
        assets,
    })
}

/// Reads the period's entries from the log, each once, and adds its movements to its assets'
/// parts.
fn add_movements(
    ledger: &Ledger,
    request: &StatementRequest,
    rows: Vec<(Option<TransactionChanges>, TimelineRow)>,
    parts: &mut BTreeMap<String, Part>,
) -> Result<(), ReportError> {
    let mut movements = 0;
    for (changes, row) in rows {
        let tx = transaction_entry(ledger, row.seq)?;
        let effect = checked_effect(&tx, request, &row)?;
        let metadata = changes
            .and_then(|changes| changes.metadata)
            .unwrap_or_else(|| tx.metadata.clone());
        for (asset, (amount_in, amount_out, counterparties)) in effect {
            if request.asset.as_ref().is_some_and(|only| *only != asset) {
                continue;
            }
            movements += 1;
            if movements > STATEMENT_MOVEMENTS_MAX {
                return Err(too_large());
            }
            let part = parts.entry(asset).or_default();
            part.movements.push(Movement {
                id: row.seq,
                timestamp: Timestamp(tx.timestamp),
                inserted_at: Timestamp(tx.inserted_at),
                counterparties: counterparties.into_iter().collect(),
                amount_in,
                amount_out,
                balance: Decimal::ZERO,
                reference: tx.reference.clone(),
                reverts: tx.reverts,
                metadata: metadata.clone(),
            });
        }
    }
    Ok(())
}

fn too_large() -> ReportError {
    ReportError::TooLarge {
        what: "statement",
        max: STATEMENT_MOVEMENTS_MAX,
    }
}

/// One asset while the period's entries are read.
#[derive(Default)]
struct Part {
    /// From the timeline, as is `closing`: read independently of the movements, to check them.
    opening: Decimal,
    closing: Decimal,
    movements: Vec<Movement>,
}

impl Part {
    fn new(opening: Decimal, closing: Decimal) -> Part {
        Part {
            opening,
            closing,
            movements: Vec::new(),
        }
    }

    /// Sorts the movements into effective order, runs the balance, and checks the sums.
    fn finish(mut self, asset: &str) -> Result<AssetStatement, ReportError> {
        self.movements
            .sort_by_key(|movement| (movement.timestamp, movement.id));
        let (mut running, mut total_in, mut total_out) =
            (self.opening, Decimal::ZERO, Decimal::ZERO);
        for movement in &mut self.movements {
            total_in = add(total_in, movement.amount_in, "the period's inflow", asset)?;
            total_out = add(
                total_out,
                movement.amount_out,
                "the period's outflow",
                asset,
            )?;
            running = add(running, movement.amount_in, "a running balance", asset)?;
            running = add(running, -movement.amount_out, "a running balance", asset)?;
            movement.balance = running;
        }
        let net = add(total_in, -total_out, "the period's net movement", asset)?;
        let expected = add(self.opening, net, "the closing balance", asset)?;
        if running != self.closing || expected != self.closing {
            return Err(ReportError::Inconsistent {
                detail: format!(
                    "{asset}: opening {} + in {total_in} - out {total_out} is {expected}, \
                     running {running}, but the timeline's balance at the end is {}",
                    self.opening, self.closing
                ),
            });
        }
        Ok(AssetStatement {
            asset: asset.to_string(),
            opening: self.opening,
            total_in,
            total_out,
            closing: self.closing,
            movements: self.movements,
        })
    }
}

/// A transaction's effect on one account, per asset: (in, out, counterparties).
type Effect = BTreeMap<String, (Decimal, Decimal, BTreeSet<String>)>;

fn effect_on(tx: &TransactionEntry, account: &str) -> Result<Effect, ReportError> {
    let mut effect = Effect::new();
    for posting in &tx.postings {
        let asset = &posting.asset;
        if posting.destination == account {
            let slot = effect.entry(asset.clone()).or_default();
            slot.0 = add(slot.0, posting.amount.0, "a transaction's inflow", asset)?;
            slot.2.insert(posting.source.clone());
        }
        if posting.source == account {
            let slot = effect.entry(asset.clone()).or_default();
            slot.1 = add(slot.1, posting.amount.0, "a transaction's outflow", asset)?;
            slot.2.insert(posting.destination.clone());
        }
    }
    Ok(effect)
}

/// The transaction's effect on the request's account, after checking that its entry is what
/// the account's timeline row says: in the ledger, at the row's effective time, with the
/// row's change to the balance in each asset.
fn checked_effect(
    tx: &TransactionEntry,
    request: &StatementRequest,
    row: &TimelineRow,
) -> Result<Effect, ReportError> {
    let effect = effect_on(tx, &request.account)?;
    let mut changes = Vec::with_capacity(effect.len());
    for (asset, (amount_in, amount_out, _)) in &effect {
        changes.push((
            asset.clone(),
            add(*amount_in, -*amount_out, "a transaction's net", asset)?,
        ));
    }
    if tx.ledger != request.ledger || tx.timestamp != row.timestamp_us || changes != row.changes {
        return Err(ReportError::Inconsistent {
            detail: format!(
                "the timeline of {} names transaction {} at {} changing {:?}; its entry is in \
                 ledger {} at {} changing {changes:?}",
                request.account, row.seq, row.timestamp_us, row.changes, tx.ledger, tx.timestamp
            ),
        });
    }
    Ok(effect)
}

/// The transaction entry `id` of the log, which the account's timeline names.
fn transaction_entry(ledger: &Ledger, id: u64) -> Result<TransactionEntry, ReportError> {
    let entry = ledger.log().read(id).map_err(crate::Error::from)?;
    match crate::replay::decode_body(&entry).map_err(crate::Error::from)? {
        EntryBody::Transaction(tx) => Ok(tx),
        _ => Err(ReportError::Inconsistent {
            detail: format!("an account's timeline names entry {id}, which is not a transaction"),
        }),
    }
}
