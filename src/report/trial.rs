//! A ledger's trial balance at a time: every account's balance per asset counting the
//! transactions with an effective timestamp at or before `at` (all of them when `at` is
//! `None`), and the totals per asset. As of now (`at` is `None`) it reads the state's
//! balances, at a cost of the ledger's accounts; at a time it walks the log, the only place
//! that knows effective timestamps. Invariant, checked before it is returned: without a prefix
//! the totals are zero in every asset (`world` included, double entry balances). Sums are kept in [`Total`], wider than a
//! `Decimal`, so that no order of accounts or postings can overflow where the result fits.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;

use super::{ReportError, ReportSink, walk};
use crate::Ledger;
use crate::domain::entry::EntryBody;
use crate::domain::model::{self, Timestamp};
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
    /// the net position of those accounts against all the others, which may be past the
    /// largest `Decimal` (two accounts each near it).
    pub totals: BTreeMap<String, Total>,
}

/// Builds and checks the trial balance of `ledger_name`.
pub fn trial_balance(
    ledger: &Ledger,
    ledger_name: &str,
    at: Option<Timestamp>,
    prefix: &str,
) -> Result<TrialBalance, ReportError> {
    model::check_ledger_name(ledger_name).map_err(crate::Error::from)?;
    let (accounts, head_seq) = match at {
        None => state_balances(ledger, ledger_name, prefix)?,
        Some(_) => {
            let mut sink = TrialSink {
                ledger: ledger_name,
                at,
                prefix,
                accounts: BTreeMap::new(),
            };
            let head_seq = walk(ledger.log(), &mut sink)?;
            (sink.balances()?, head_seq)
        }
    };
    let mut totals: BTreeMap<String, Total> = BTreeMap::new();
    for by_asset in accounts.values() {
        for (asset, balance) in by_asset {
            let total = totals.entry(asset.clone()).or_default();
            total
                .add(*balance)
                .ok_or_else(|| overflow("the total", asset))?;
        }
    }
    if prefix.is_empty()
        && let Some((asset, total)) = totals.iter().find(|(_, total)| !total.is_zero())
    {
        return Err(ReportError::Inconsistent {
            detail: format!("ledger {ledger_name}'s balances sum to {total} {asset}, not 0"),
        });
    }
    Ok(TrialBalance {
        ledger: ledger_name.to_string(),
        at,
        prefix: prefix.to_string(),
        head_seq,
        accounts,
        totals,
    })
}

/// The state's balances of the ledger's accounts (under `prefix`), and the log's head they are
/// as of.
fn state_balances(
    ledger: &Ledger,
    ledger_name: &str,
    prefix: &str,
) -> Result<(Balances, u64), ReportError> {
    Ok(ledger.balances_with_watermark(ledger_name, prefix)?)
}

fn overflow(what: &'static str, asset: &str) -> ReportError {
    ReportError::Overflow {
        what,
        asset: asset.to_string(),
    }
}

struct TrialSink<'a> {
    ledger: &'a str,
    at: Option<Timestamp>,
    prefix: &'a str,
    /// Running balances, wide: with `at`, a balance sums a subset of the account's postings,
    /// whose partial sums the ledger never checked.
    accounts: BTreeMap<String, BTreeMap<String, Total>>,
}

impl TrialSink<'_> {
    fn credit(&mut self, account: &str, asset: &str, amount: Decimal) -> Result<(), ReportError> {
        if !account.starts_with(self.prefix) {
            return Ok(());
        }
        self.accounts
            .entry(account.to_string())
            .or_default()
            .entry(asset.to_string())
            .or_default()
            .add(amount)
            .ok_or_else(|| overflow("a balance", asset))
    }

    /// The balances as decimals: each is one account's, which the ledger kept in a `Decimal`
    /// over the whole log; at an earlier `at`, one past it is `OVERFLOW`.
    fn balances(&self) -> Result<Balances, ReportError> {
        let mut balances = Balances::new();
        for (account, by_asset) in &self.accounts {
            let mut decimals = BTreeMap::new();
            for (asset, total) in by_asset {
                let balance = total
                    .to_decimal()
                    .ok_or_else(|| overflow("a balance", asset))?;
                decimals.insert(asset.clone(), balance);
            }
            balances.insert(account.clone(), decimals);
        }
        Ok(balances)
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

/// 10^28: one whole unit in [`Total`]'s fraction, the finest a `Decimal` has.
const FRACTION_ONE: i128 = 10_000_000_000_000_000_000_000_000_000;
/// Decimal places of [`Total`]'s fraction.
const FRACTION_DIGITS: u32 = 28;

/// An exact sum of decimals, far wider than a `Decimal`: whole units in an `i128` (up to
/// 1.7e38, two billion times the largest `Decimal`) and a fraction of 28 places. Every
/// decimal a ledger holds adds to it exactly; [`Total::add`] fails only past that bound.
/// Displays canonically, as a normalized `Decimal` does (`-1.5`, `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Total {
    /// Whole units.
    units: i128,
    /// The part below one, in units of 10^-28: `|fraction| < 10^28`, and never of the
    /// opposite sign to `units`.
    fraction: i128,
}

impl Total {
    /// Adds `value` exactly; `None` (and `self` unchanged) past the bound.
    pub fn add(&mut self, value: Decimal) -> Option<()> {
        // `Decimal` keeps a 96-bit mantissa and a scale of at most 28: both fit.
        let one = 10i128.checked_pow(value.scale())?;
        let (units, rest) = (value.mantissa() / one, value.mantissa() % one);
        let fraction = rest.checked_mul(10i128.checked_pow(FRACTION_DIGITS - value.scale())?)?;
        let mut sum = Total {
            units: self.units.checked_add(units)?,
            fraction: self.fraction + fraction,
        };
        if sum.fraction >= FRACTION_ONE {
            sum.units = sum.units.checked_add(1)?;
            sum.fraction -= FRACTION_ONE;
        } else if sum.fraction <= -FRACTION_ONE {
            sum.units = sum.units.checked_sub(1)?;
            sum.fraction += FRACTION_ONE;
        }
        if sum.units > 0 && sum.fraction < 0 {
            sum.units -= 1;
            sum.fraction += FRACTION_ONE;
        } else if sum.units < 0 && sum.fraction > 0 {
            sum.units += 1;
            sum.fraction -= FRACTION_ONE;
        }
        *self = sum;
        Some(())
    }

    pub fn is_zero(&self) -> bool {
        self.units == 0 && self.fraction == 0
    }

    /// The total as a normalized `Decimal`, when one holds it exactly.
    pub fn to_decimal(&self) -> Option<Decimal> {
        Decimal::from_str_exact(&self.to_string())
            .ok()
            .map(|amount| amount.normalize())
    }

    /// The total with at least `scale` decimal places (`12.50` at scale 2), as the table
    /// and CSV write amounts of an asset with a declared scale.
    pub fn to_string_at_scale(&self, scale: u32) -> String {
        let text = self.to_string();
        let places = text
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.len());
        let pad = (scale as usize).saturating_sub(places);
        match (pad, places) {
            (0, _) => text,
            (_, 0) => format!("{text}.{}", "0".repeat(pad)),
            _ => format!("{text}{}", "0".repeat(pad)),
        }
    }
}

impl fmt::Display for Total {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.units < 0 || self.fraction < 0 {
            f.write_str("-")?;
        }
        write!(f, "{}", self.units.unsigned_abs())?;
        if self.fraction != 0 {
            let digits = format!("{:028}", self.fraction.unsigned_abs());
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(values: &[&str]) -> Option<Total> {
        let mut total = Total::default();
        for value in values {
            total.add(value.parse().unwrap())?;
        }
        Some(total)
    }

    #[test]
    fn a_total_is_exact_and_canonical() {
        let shown = |values: &[&str]| total(values).unwrap().to_string();
        assert_eq!(shown(&[]), "0");
        assert_eq!(shown(&["12.5", "-2.25"]), "10.25");
        assert_eq!(shown(&["0.5", "-1"]), "-0.5");
        assert_eq!(shown(&["-0.75", "0.25", "-1"]), "-1.5");
        assert_eq!(shown(&["1.5", "-1.5"]), "0");
        assert_eq!(
            shown(&["0.0000000000000000000000000001"]),
            "0.0000000000000000000000000001"
        );
        assert_eq!(
            total(&["-3", "1.25"]).unwrap().to_decimal(),
            Some("-1.75".parse().unwrap())
        );
    }

    #[test]
    fn partial_sums_past_the_largest_decimal_still_total_exactly() {
        let near = "40000000000.000000000000000001";
        let both = total(&[near, near]).unwrap();
        assert_eq!(both.to_string(), "80000000000.000000000000000002");
        assert_eq!(both.to_decimal(), None, "past a Decimal's 96 bits");
        let back = total(&[near, near, &format!("-{near}"), &format!("-{near}")]).unwrap();
        assert!(back.is_zero());
        let max = Decimal::MAX.to_string();
        let wide = total(&[&max, &max, &max]).unwrap();
        assert_eq!(wide.to_string(), "237684487542793012780631851005");
        assert_eq!(
            wide.to_string_at_scale(2),
            "237684487542793012780631851005.00"
        );
        assert_eq!(total(&["1.5"]).unwrap().to_string_at_scale(3), "1.500");
    }
}
