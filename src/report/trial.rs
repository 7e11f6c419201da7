//! A ledger's trial balance at a time: every account's balance per asset counting the
//! transactions with an effective timestamp at or before `at` (all of them when `at` is
//! `None`), and the totals per asset. Invariants, checked before it is returned: without a
//! prefix the totals are zero in every asset (`world` included, double entry balances); over
//! the whole log the balances equal the state's.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{ReportError, ReportSink, add, walk};
use crate::Ledger;
use crate::ledger::entry::EntryBody;
use crate::ledger::model::{self, Timestamp};
use crate::log::Entry;

/// account -> asset -> balance.
pub type Balances = BTreeMap<String, BTreeMap<String, Decimal>>;

/// A trial balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalance {
    pub ledger: String,
    /// Inclusive bound on effective timestamps; `None`: every transaction.
    pub at: Option<Timestamp>,
    /// Only accounts whose address starts with it (`""`: all).
    pub prefix: String,
    /// The log's head it covers.
    pub head_seq: u64,
    /// Every account touched by a counted transaction, zero balances included.
    pub accounts: Balances,
    /// asset -> the sum of the listed accounts' balances: zero without a prefix; with one,
    /// the net position of those accounts against all the others.
    pub totals: BTreeMap<String, Decimal>,
}

/// Builds and checks the trial balance of `ledger_name`.
pub fn trial_balance(
    ledger: &Ledger,
    ledger_name: &str,
    at: Option<Timestamp>,
    prefix: &str,
) -> Result<TrialBalance, ReportError> {
    model::check_ledger_name(ledger_name).map_err(crate::Error::from)?;
    let mut sink = TrialSink {
        ledger: ledger_name,
        at,
        prefix,
        accounts: Balances::new(),
    };
    let head_seq = walk(ledger.log(), &mut sink)?;
    let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
    for by_asset in sink.accounts.values() {
        for (asset, balance) in by_asset {
            let total = totals.entry(asset.clone()).or_default();
            *total = add(*total, *balance, "the total", asset)?;
        }
    }
    if prefix.is_empty()
        && let Some((asset, total)) = totals.iter().find(|(_, total)| !total.is_zero())
    {
        return Err(ReportError::Inconsistent {
            detail: format!("ledger {ledger_name}'s balances sum to {total} {asset}, not 0"),
        });
    }
    if at.is_none() {
        let state = ledger.balances(ledger_name, prefix)?;
        if state != sink.accounts {
            return Err(ReportError::Inconsistent {
                detail: format!(
                    "ledger {ledger_name}: the log's postings and the state's balances differ"
                ),
            });
        }
    }
    Ok(TrialBalance {
        ledger: ledger_name.to_string(),
        at,
        prefix: prefix.to_string(),
        head_seq,
        accounts: sink.accounts,
        totals,
    })
}

struct TrialSink<'a> {
    ledger: &'a str,
    at: Option<Timestamp>,
    prefix: &'a str,
    accounts: Balances,
}

impl TrialSink<'_> {
    fn credit(&mut self, account: &str, asset: &str, amount: Decimal) -> Result<(), ReportError> {
        if !account.starts_with(self.prefix) {
            return Ok(());
        }
        let balance = self
            .accounts
            .entry(account.to_string())
            .or_default()
            .entry(asset.to_string())
            .or_default();
        *balance = add(*balance, amount, "a balance", asset)?;
        Ok(())
    }
}

impl ReportSink for TrialSink<'_> {
    fn entry(&mut self, _entry: &Entry, body: &EntryBody) -> Result<(), ReportError> {
        let EntryBody::Transaction(tx) = body else {
            return Ok(());
        };
        if tx.ledger != self.ledger || self.at.is_some_and(|at| tx.timestamp > at.0) {
            return Ok(());
        }
        for posting in &tx.postings {
            let (asset, amount) = (&posting.asset, posting.amount.0);
            self.credit(&posting.destination, asset, amount)?;
            self.credit(&posting.source, asset, -amount)?;
        }
        Ok(())
    }
}
