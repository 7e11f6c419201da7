//! Accounts' timelines (state schema 3): each account's transactions in effective-time order,
//! with what each changed in the account's balance per asset, and each day's total change per
//! asset. A statement reads them to cost the period, not the account's whole history
//! (`docs/reports.md`, "How a statement is computed"): the period's rows name the entries it reads from the log,
//! and the balance at any time comes from day totals and at most one day's rows, never from
//! the log.
//!
//! Invariants, for every (ledger, account): the rows are exactly the account's transactions
//! (one row per transaction, keyed by its entry's effective timestamp and seq); a row's changes
//! are the transaction's per-asset change to the account's balance; a day's total is the sum of
//! the changes of that day's rows; and the sum of all of an account's day totals in an asset is
//! its balance (its volumes row). Verify compares both tables with a replay.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table};
use rust_decimal::Decimal;

use super::error::StateError;
use crate::domain::entry::TransactionEntry;
use crate::domain::model::ASSET_CODE_BYTES_MAX;

/// The timeline's key: (ledger, account, effective timestamp in microseconds, seq).
pub type TimelineKey<'a> = (&'a str, &'a str, i64, u64);
/// The day totals' key: (ledger, account, asset, UTC day: the timestamp divided by
/// [`DAY_MICROS`], rounded down).
pub type DayKey<'a> = (&'a str, &'a str, &'a str, i64);

/// Microseconds in a day: the unit of the day totals.
pub const DAY_MICROS: i64 = 86_400_000_000;
/// An asset name's longest form: a code, `/`, two digits of scale.
const ASSET_BYTES_MAX: usize = ASSET_CODE_BYTES_MAX + 3;
/// rust_decimal's largest scale.
const SCALE_MAX: u8 = 28;
/// LEB128 bytes of a 96-bit mantissa, zigzagged: 14 at most.
const MANTISSA_BYTES_MAX: usize = 14;

/// One transaction's change to one account's balance, per asset, ascending by asset.
pub type Changes = Vec<(String, Decimal)>;

/// The UTC day of a timestamp.
pub fn day_of(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(DAY_MICROS)
}

fn bad(table: &'static str, detail: impl Into<String>) -> StateError {
    StateError::BadRow {
        table,
        detail: detail.into(),
    }
}

/// Appends a decimal: `{ scale u8 | mantissa zigzag LEB128 }`, normalized, so that equal
/// values encode to equal bytes.
pub fn encode_decimal(value: Decimal, bytes: &mut Vec<u8>) {
    let value = value.normalize();
    bytes.push(value.scale() as u8);
    let mantissa = value.mantissa();
    let mut zigzag = ((mantissa << 1) ^ (mantissa >> 127)) as u128;
    loop {
        let low = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            bytes.push(low);
            return;
        }
        bytes.push(low | 0x80);
    }
}

/// Reads a decimal written by [`encode_decimal`] from the front of `bytes`; refuses any other
/// encoding of it (a longer LEB128, a value not normalized).
fn decode_decimal(table: &'static str, bytes: &mut &[u8]) -> Result<Decimal, StateError> {
    let (&scale, rest) = bytes
        .split_first()
        .ok_or_else(|| bad(table, "a decimal is cut short"))?;
    let mut zigzag = 0u128;
    let mut used = 0;
    loop {
        let Some(&byte) = rest.get(used) else {
            return Err(bad(table, "a decimal's mantissa is cut short"));
        };
        if used == MANTISSA_BYTES_MAX {
            return Err(bad(table, "a decimal's mantissa is too long"));
        }
        zigzag |= u128::from(byte & 0x7f) << (7 * used);
        used += 1;
        if byte & 0x80 == 0 {
            if byte == 0 && used > 1 {
                return Err(bad(
                    table,
                    "a decimal's mantissa is not in its shortest form",
                ));
            }
            break;
        }
    }
    *bytes = &rest[used..];
    let mantissa = ((zigzag >> 1) as i128) ^ -((zigzag & 1) as i128);
    let value = (scale <= SCALE_MAX)
        .then(|| Decimal::try_from_i128_with_scale(mantissa, u32::from(scale)).ok())
        .flatten()
        .ok_or_else(|| bad(table, "a decimal out of range"))?;
    let canonical = value.normalize();
    if canonical.mantissa() != mantissa || canonical.scale() != u32::from(scale) {
        return Err(bad(table, "a decimal not normalized"));
    }
    Ok(value)
}

/// A timeline row's value: `{ asset_bytes u8 | asset | change decimal }` per asset, assets
/// ascending and distinct, at least one.
pub fn encode_changes(changes: &[(String, Decimal)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(changes.len() * 12);
    for (asset, change) in changes {
        debug_assert!(asset.len() <= ASSET_BYTES_MAX);
        bytes.push(asset.len() as u8);
        bytes.extend_from_slice(asset.as_bytes());
        encode_decimal(*change, &mut bytes);
    }
    bytes
}

/// The changes of a timeline row; refuses any encoding [`encode_changes`] would not write.
pub fn decode_changes(mut bytes: &[u8]) -> Result<Changes, StateError> {
    const TABLE: &str = "account_timeline";
    let mut changes: Changes = Vec::with_capacity(1);
    while let Some((&len, rest)) = bytes.split_first() {
        let len = usize::from(len);
        let asset = rest
            .get(..len)
            .filter(|asset| !asset.is_empty() && asset.len() <= ASSET_BYTES_MAX)
            .and_then(|asset| std::str::from_utf8(asset).ok())
            .ok_or_else(|| bad(TABLE, "an asset name is cut short or not text"))?;
        if changes
            .last()
            .is_some_and(|(last, _)| last.as_str() >= asset)
        {
            return Err(bad(TABLE, "assets not ascending"));
        }
        bytes = &rest[len..];
        let change = decode_decimal(TABLE, &mut bytes)?;
        changes.push((asset.to_string(), change));
    }
    if changes.is_empty() {
        return Err(bad(TABLE, "a row without changes"));
    }
    Ok(changes)
}

/// A day total's value: one decimal.
pub fn decode_day_total(mut bytes: &[u8]) -> Result<Decimal, StateError> {
    let total = decode_decimal("account_days", &mut bytes)?;
    if !bytes.is_empty() {
        return Err(bad("account_days", "trailing bytes after a day total"));
    }
    Ok(total)
}

fn encode_day_total(total: Decimal) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8);
    encode_decimal(total, &mut bytes);
    bytes
}

/// Each account's change per asset in a transaction, from its recorded volumes (which apply
/// has checked against the postings): account -> changes, in the entry's (account, asset)
/// order.
pub fn changes_of(seq: u64, tx: &TransactionEntry) -> Result<Vec<(&str, Changes)>, StateError> {
    let mut accounts: Vec<(&str, Changes)> = Vec::new();
    for change in &tx.volumes {
        let delta = change
            .post_input
            .0
            .checked_sub(change.pre_input.0)
            .zip(change.post_output.0.checked_sub(change.pre_output.0))
            .and_then(|(input, output)| input.checked_sub(output))
            .ok_or_else(|| StateError::Inconsistent {
                seq,
                detail: format!(
                    "the change of {} in {} overflows",
                    change.account, change.asset
                ),
            })?;
        let pair = (change.asset.clone(), delta);
        match accounts.last_mut() {
            Some((account, changes)) if *account == change.account => changes.push(pair),
            _ => accounts.push((change.account.as_str(), vec![pair])),
        }
    }
    Ok(accounts)
}

/// Day totals changed during one write transaction, not yet added to the table.
#[derive(Debug, Default)]
pub struct PendingDays {
    /// (ledger, account, asset, day) -> the change not yet written.
    days: BTreeMap<(String, String, String, i64), Decimal>,
}

impl PendingDays {
    /// Adds a transaction's changes to an account's day totals.
    pub fn add(
        &mut self,
        seq: u64,
        ledger: &str,
        account: &str,
        day: i64,
        changes: &[(String, Decimal)],
    ) -> Result<(), StateError> {
        for (asset, change) in changes {
            let key = (ledger.to_string(), account.to_string(), asset.clone(), day);
            let total = self.days.entry(key).or_default();
            *total = total
                .checked_add(*change)
                .ok_or_else(|| StateError::Inconsistent {
                    seq,
                    detail: format!("the day's total of {account} in {asset} overflows"),
                })?;
        }
        Ok(())
    }

    /// Forgets every pending change: for a write transaction that was dropped.
    pub fn clear(&mut self) {
        self.days.clear();
    }

    /// Adds the pending changes to the table's totals and forgets them.
    pub fn flush(
        &mut self,
        table: &mut Table<'_, DayKey<'static>, &'static [u8]>,
    ) -> Result<(), StateError> {
        for ((ledger, account, asset, day), change) in std::mem::take(&mut self.days) {
            let key = (ledger.as_str(), account.as_str(), asset.as_str(), day);
            let before = match table.get(key)? {
                Some(row) => decode_day_total(row.value())?,
                None => Decimal::ZERO,
            };
            let total = before.checked_add(change).ok_or_else(|| {
                bad(
                    "account_days",
                    format!("the total of {account} in {asset} on day {day} overflows"),
                )
            })?;
            table.insert(key, &encode_day_total(total)[..])?;
        }
        Ok(())
    }
}

/// Writes an account's timeline row for transaction `seq`; a second row for it means the
/// entry was applied twice.
pub fn insert_row(
    table: &mut Table<'_, TimelineKey<'static>, &'static [u8]>,
    key: TimelineKey<'_>,
    changes: &[(String, Decimal)],
) -> Result<(), StateError> {
    let replaced = table.insert(key, &encode_changes(changes)[..])?;
    if replaced.is_some() {
        return Err(StateError::Inconsistent {
            seq: key.3,
            detail: format!("a second timeline row of {} at {}", key.1, key.2),
        });
    }
    Ok(())
}

/// One row of an account's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    pub timestamp_us: i64,
    pub seq: u64,
    pub changes: Changes,
}

/// An account's timeline rows with effective timestamps in `[from_us, to_us)`, in (timestamp,
/// seq) order, only those with a change in `asset` when given, at most `limit` (more is
/// `None`).
pub fn rows_between<T>(
    table: &T,
    (ledger, account, asset): (&str, &str, Option<&str>),
    (from_us, to_us): (i64, i64),
    limit: usize,
) -> Result<Option<Vec<TimelineRow>>, StateError>
where
    T: ReadableTable<TimelineKey<'static>, &'static [u8]>,
{
    let mut rows = Vec::new();
    if from_us >= to_us {
        return Ok(Some(rows));
    }
    for row in table.range((ledger, account, from_us, 0)..(ledger, account, to_us, 0))? {
        let (key, value) = row?;
        let (_, _, timestamp_us, seq) = key.value();
        let changes = decode_changes(value.value())?;
        if asset.is_some_and(|only| changes.iter().all(|(name, _)| name != only)) {
            continue;
        }
        if rows.len() == limit {
            return Ok(None);
        }
        rows.push(TimelineRow {
            timestamp_us,
            seq,
            changes,
        });
    }
    Ok(Some(rows))
}

/// The sum of the values below a bound, from whichever side of it is shorter: `before` walks
/// the values below the bound, `after` those at or above it, and `total` is the sum of both.
/// The two are walked in turn and the first to end gives the answer, so the cost is twice the
/// shorter side, whatever the length of the longer.
fn sum_below(
    before: impl Iterator<Item = Result<Decimal, StateError>>,
    after: impl Iterator<Item = Result<Decimal, StateError>>,
    total: Decimal,
    what: &str,
) -> Result<Decimal, StateError> {
    let overflow = || bad("account_days", format!("{what} overflows"));
    let (mut before, mut after) = (before.fuse(), after.fuse());
    let (mut sum_before, mut sum_after) = (Decimal::ZERO, Decimal::ZERO);
    loop {
        match before.next().transpose()? {
            Some(value) => sum_before = sum_before.checked_add(value).ok_or_else(overflow)?,
            None => return Ok(sum_before),
        }
        match after.next().transpose()? {
            Some(value) => sum_after = sum_after.checked_add(value).ok_or_else(overflow)?,
            None => return total.checked_sub(sum_after).ok_or_else(overflow),
        }
    }
}

/// A row as a range over a table of byte values yields it.
type RangeItem<'a, K> = Result<
    (
        redb::AccessGuard<'a, K>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// The total of a day totals' row.
fn day_total_of(row: RangeItem<'_, DayKey<'static>>) -> Result<Decimal, StateError> {
    decode_day_total(row?.1.value())
}

/// The change of `asset` in a timeline row (zero if the row has none in it).
fn row_change_in(
    asset: &str,
    row: RangeItem<'_, TimelineKey<'static>>,
) -> Result<Decimal, StateError> {
    Ok(decode_changes(row?.1.value())?
        .into_iter()
        .find(|(name, _)| name == asset)
        .map_or(Decimal::ZERO, |(_, change)| change))
}

/// An account's balance in `asset` just before `at_us` (the sum of the changes of its
/// transactions with earlier effective timestamps), given its balance now. Reads day totals
/// from the nearer end of the account's days and the rows of at most one day, from the nearer
/// end of that day; never the log.
pub fn balance_before<D, T>(
    days: &D,
    timeline: &T,
    (ledger, account, asset): (&str, &str, &str),
    balance_now: Decimal,
    at_us: i64,
) -> Result<Decimal, StateError>
where
    D: ReadableTable<DayKey<'static>, &'static [u8]>,
    T: ReadableTable<TimelineKey<'static>, &'static [u8]>,
{
    let day = day_of(at_us);
    let before = days.range((ledger, account, asset, i64::MIN)..(ledger, account, asset, day))?;
    let after = days.range((ledger, account, asset, day)..=(ledger, account, asset, i64::MAX))?;
    let days_before = sum_below(
        before.map(day_total_of),
        after.rev().map(day_total_of),
        balance_now,
        "a balance",
    )?;
    let day_total = match days.get((ledger, account, asset, day))? {
        Some(row) => decode_day_total(row.value())?,
        None => Decimal::ZERO,
    };
    let day_start = day.saturating_mul(DAY_MICROS);
    let day_end = day.saturating_add(1).saturating_mul(DAY_MICROS);
    let early = timeline.range((ledger, account, day_start, 0)..(ledger, account, at_us, 0))?;
    let late = timeline.range((ledger, account, at_us, 0)..(ledger, account, day_end, 0))?;
    let in_day = sum_below(
        early.map(|row| row_change_in(asset, row)),
        late.rev().map(|row| row_change_in(asset, row)),
        day_total,
        "a day's changes",
    )?;
    days_before
        .checked_add(in_day)
        .ok_or_else(|| bad("account_days", "a balance overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_through_their_encoding() {
        let changes = vec![
            ("EUR/2".to_string(), Decimal::new(-12_345, 2)),
            ("USD".to_string(), Decimal::ZERO),
            ("X".to_string(), Decimal::MAX),
            ("Y".to_string(), Decimal::MIN),
            ("Z".to_string(), Decimal::new(1, 28)),
        ];
        let bytes = encode_changes(&changes);
        assert_eq!(decode_changes(&bytes).unwrap(), changes);
        // 1.50 and 1.5 are one value: one encoding.
        assert_eq!(
            encode_changes(&[("A".into(), Decimal::new(150, 2))]),
            encode_changes(&[("A".into(), Decimal::new(15, 1))])
        );
        assert_eq!(
            encode_changes(&[("A".into(), Decimal::new(-1, 0))]),
            vec![1, b'A', 0, 1]
        );
    }

    #[test]
    fn a_damaged_row_is_a_typed_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[1, b'A'][..],
            &[1, b'A', 0][..],
            &[1, b'A', 0, 0x80][..],
            &[1, b'A', 0, 0x80, 0][..],
            &[1, b'A', 29, 2][..],
            &[1, b'A', 1, 20][..],
            &[1, b'B', 0, 2, 1, b'A', 0, 2][..],
            &[0, 0, 2][..],
            &[
                1, b'A', 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0x7f,
            ][..],
        ] {
            assert!(
                matches!(decode_changes(bytes), Err(StateError::BadRow { .. })),
                "{bytes:?}"
            );
        }
        assert!(decode_day_total(&[0, 2, 0]).is_err());
    }

    #[test]
    fn the_sum_below_a_bound_is_the_same_from_either_side() {
        let values: Vec<i64> = vec![5, -3, 7, 11, 2];
        let total: i64 = values.iter().sum();
        for cut in 0..=values.len() {
            let ok = |slice: &[i64]| -> Vec<Result<Decimal, StateError>> {
                slice.iter().map(|v| Ok(Decimal::from(*v))).collect()
            };
            let before = ok(&values[..cut]);
            let mut after = ok(&values[cut..]);
            after.reverse();
            let sum = sum_below(before.into_iter(), after.into_iter(), total.into(), "x").unwrap();
            assert_eq!(
                sum,
                Decimal::from(values[..cut].iter().sum::<i64>()),
                "cut {cut}"
            );
        }
    }
}
