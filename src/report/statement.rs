//! An account's statement over a period `[from, to)` of effective timestamps, per asset: the
//! opening balance (every posting before `from`), each movement in the period in effective
//! order, and the closing balance (every posting before `to`). It reads the account's own
//! transactions (their ids from the state's history of the account, their entries from the
//! log), so it costs the account's entries, not the log's. Invariants, checked before the
//! statement is returned: opening + sum(in) - sum(out) = closing, the last running balance is
//! the closing balance, and the sum over all the account's transactions equals the state's
//! balance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;

use super::{ReportError, add};
use crate::Ledger;
use crate::domain::entry::{EntryBody, TransactionEntry};
use crate::domain::model::{self, Metadata, Timestamp};

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
    let mut sink = StatementSink {
        request,
        parts: BTreeMap::new(),
        index: HashMap::new(),
        movements: 0,
        touched: false,
    };
    let (ids, head_seq) = ledger.account_transaction_ids(&request.ledger, &request.account)?;
    for id in ids {
        let tx = transaction_entry(ledger, id)?;
        sink.transaction(id, &tx)?;
    }
    sink.current_metadata(ledger)?;
    if !sink.touched {
        return Err(ReportError::AccountNotFound {
            ledger: request.ledger.clone(),
            account: request.account.clone(),
        });
    }
    if let Some(asset) = &request.asset {
        // An asset the account never held: a statement of zeros, not a missing section.
        sink.parts.entry(asset.clone()).or_default();
    }
    let state = ledger.balance(&request.ledger, &request.account)?;
    let mut assets = Vec::with_capacity(sink.parts.len());
    for (asset, part) in sink.parts {
        let expected = state.get(&asset).copied().unwrap_or_default();
        if part.all_time != expected {
            return Err(ReportError::Inconsistent {
                detail: format!(
                    "the log's postings sum to {} {asset} for {}, the state holds {expected}",
                    part.all_time, request.account
                ),
            });
        }
        assets.push(part.finish(&asset)?);
    }
    Ok(Statement {
        ledger: request.ledger.clone(),
        account: request.account.clone(),
        from: request.from,
        to: request.to,
        head_seq,
        assets,
    })
}

/// One asset while the log is walked.
#[derive(Default)]
struct Part {
    opening: Decimal,
    /// Summed independently of the movements, to check them.
    closing: Decimal,
    /// Every posting, whatever its time: compared with the state.
    all_time: Decimal,
    movements: Vec<Movement>,
}

impl Part {
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
                     running {running}, but the postings before the end sum to {}",
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

struct StatementSink<'a> {
    request: &'a StatementRequest,
    parts: BTreeMap<String, Part>,
    /// Transaction id -> (asset, index in its part's movements): where later metadata
    /// changes land.
    index: HashMap<u64, Vec<(String, usize)>>,
    movements: usize,
    /// Whether any posting of the ledger touched the account.
    touched: bool,
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

impl StatementSink<'_> {
    fn transaction(&mut self, id: u64, tx: &TransactionEntry) -> Result<(), ReportError> {
        let effect = effect_on(tx, &self.request.account)?;
        self.touched |= !effect.is_empty();
        let (from, to) = (self.request.from.0, self.request.to.0);
        for (asset, (amount_in, amount_out, counterparties)) in effect {
            if self
                .request
                .asset
                .as_ref()
                .is_some_and(|only| *only != asset)
            {
                continue;
            }
            let net = add(amount_in, -amount_out, "a transaction's net", &asset)?;
            let part = self.parts.entry(asset.clone()).or_default();
            part.all_time = add(part.all_time, net, "the balance", &asset)?;
            if tx.timestamp < from {
                part.opening = add(part.opening, net, "the opening balance", &asset)?;
            }
            if tx.timestamp < to {
                part.closing = add(part.closing, net, "the closing balance", &asset)?;
            }
            if tx.timestamp < from || tx.timestamp >= to {
                continue;
            }
            self.movements += 1;
            if self.movements > STATEMENT_MOVEMENTS_MAX {
                return Err(ReportError::TooLarge {
                    what: "statement",
                    max: STATEMENT_MOVEMENTS_MAX,
                });
            }
            self.index
                .entry(id)
                .or_default()
                .push((asset.clone(), part.movements.len()));
            part.movements.push(Movement {
                id,
                timestamp: Timestamp(tx.timestamp),
                inserted_at: Timestamp(tx.inserted_at),
                counterparties: counterparties.into_iter().collect(),
                amount_in,
                amount_out,
                balance: Decimal::ZERO,
                reference: tx.reference.clone(),
                reverts: tx.reverts,
                metadata: tx.metadata.clone(),
            });
        }
        Ok(())
    }

    /// Gives each movement its transaction's metadata as it is now (later changes applied),
    /// from the state.
    fn current_metadata(&mut self, ledger: &Ledger) -> Result<(), ReportError> {
        for (id, places) in &self.index {
            let Some(receipt) = ledger.transaction(&self.request.ledger, *id)? else {
                continue;
            };
            for (asset, at) in places {
                if let Some(movement) = self
                    .parts
                    .get_mut(asset)
                    .and_then(|part| part.movements.get_mut(*at))
                {
                    movement.metadata = receipt.metadata.clone();
                }
            }
        }
        Ok(())
    }
}

/// The transaction entry `id` of the log, which the account's history names.
fn transaction_entry(ledger: &Ledger, id: u64) -> Result<TransactionEntry, ReportError> {
    let entry = ledger.log().read(id).map_err(crate::Error::from)?;
    match crate::replay::decode_body(&entry).map_err(crate::Error::from)? {
        EntryBody::Transaction(tx) => Ok(tx),
        _ => Err(ReportError::Inconsistent {
            detail: format!("an account's history names entry {id}, which is not a transaction"),
        }),
    }
}
