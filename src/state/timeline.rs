//! Accounts' timelines (state schema 3): each account's transactions in effective-time order,
//! with what each changed in the account's balance per asset, and each day's total change per
//! asset. A statement reads them to cost the period, not the account's whole history
//! (`docs/reports.md`, "How a statement is computed"): the period's rows name the entries it
//! reads from the log, and the balance at any time comes from day totals and at most one day's
//! runs, never from the log.
//!
//! A timeline row is a run: the account's transactions of one UTC hour (of their effective
//! timestamps) applied in one write transaction, keyed by (ledger, account, hour, the run's
//! first seq). A group of a thousand sales at one till writes one row for the till, not a
//! thousand (as history runs do, [`super::history`]); a back-dated transaction lands in its
//! hour's runs. Runs of one hour may interleave in time, so a reader sorts what it reads of an
//! hour, and two states are compared entry by entry ([`TimelineEntries`]), not row by row.
//!
//! Invariants, for every (ledger, account): the entries are exactly the account's transactions,
//! each once, in the run of its effective hour; an entry's changes are the transaction's
//! per-asset change to the account's balance; a day's total is the sum of the changes of that
//! day's entries; and the sum of all of an account's day totals in an asset is its balance (its
//! volumes row). Verify compares both tables with a replay.

use std::collections::HashMap;
use std::rc::Rc;

use redb::{ReadableTable, Table};
use rust_decimal::Decimal;

use super::error::StateError;
use crate::domain::entry::TransactionEntry;
use crate::domain::model::{ASSET_CODE_BYTES_MAX, POSTINGS_PER_TRANSACTION_MAX};

/// The timeline's key: (ledger, account, UTC hour: the effective timestamp divided by
/// [`HOUR_MICROS`], rounded down, the run's first seq).
pub type TimelineKey<'a> = (&'a str, &'a str, i64, u64);
/// The day totals' key: (ledger, account, asset, UTC day: the timestamp divided by
/// [`DAY_MICROS`], rounded down).
pub type DayKey<'a> = (&'a str, &'a str, &'a str, i64);

/// Microseconds in a day: the unit of the day totals.
pub const DAY_MICROS: i64 = 86_400_000_000;
/// Microseconds in an hour: the unit of the timeline's runs.
pub const HOUR_MICROS: i64 = 3_600_000_000;
const _: () = assert!(DAY_MICROS % HOUR_MICROS == 0, "a day is whole hours");
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

/// The UTC hour of a timestamp.
pub fn hour_of(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(HOUR_MICROS)
}

/// The first hour of a day.
fn first_hour(day: i64) -> i64 {
    day.saturating_mul(DAY_MICROS / HOUR_MICROS)
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

const TIMELINE: &str = "account_timeline";

/// Appends `value` as LEB128.
fn encode_varint(mut value: u64, bytes: &mut Vec<u8>) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(low);
            return;
        }
        bytes.push(low | 0x80);
    }
}

/// Reads a LEB128 value in its shortest form from the front of `bytes`.
fn decode_varint(bytes: &mut &[u8]) -> Result<u64, StateError> {
    let mut value = 0u64;
    for (used, &byte) in bytes.iter().enumerate() {
        if used == 10 || (used == 9 && byte > 1) {
            return Err(bad(TIMELINE, "a number runs past 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << (7 * used);
        if byte & 0x80 == 0 {
            if byte == 0 && used > 0 {
                return Err(bad(TIMELINE, "a number not in its shortest form"));
            }
            *bytes = &bytes[used + 1..];
            return Ok(value);
        }
    }
    Err(bad(TIMELINE, "a number is cut short"))
}

/// One transaction of an account's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    pub timestamp_us: i64,
    pub seq: u64,
    pub changes: Changes,
}

/// A run's value: per entry, in seq order, `{ offset_us LEB128 (from the hour's start) |
/// seq_delta LEB128 (from the run's first seq for the first entry, so 0; from the entry before
/// for the others, so above 0) | assets LEB128 | per asset { asset_bytes u8 | asset | change }
/// }`,
/// assets ascending and distinct, at least one; a change as [`encode_decimal`] writes it.
pub fn encode_run(hour: i64, rows: &[TimelineRow]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(rows.len() * 16);
    let mut seq_before = rows.first().map_or(0, |row| row.seq);
    for row in rows {
        let offset_us = row.timestamp_us - hour * HOUR_MICROS;
        debug_assert!((0..HOUR_MICROS).contains(&offset_us));
        encode_varint(offset_us as u64, &mut bytes);
        encode_varint(row.seq - seq_before, &mut bytes);
        seq_before = row.seq;
        debug_assert!(!row.changes.is_empty());
        // A transaction may touch one account in up to POSTINGS_PER_TRANSACTION_MAX assets.
        encode_varint(row.changes.len() as u64, &mut bytes);
        for (asset, change) in &row.changes {
            debug_assert!(asset.len() <= ASSET_BYTES_MAX);
            bytes.push(asset.len() as u8);
            bytes.extend_from_slice(asset.as_bytes());
            encode_decimal(*change, &mut bytes);
        }
    }
    bytes
}

/// The entries of the run keyed (hour, first seq); refuses any encoding [`encode_run`] would
/// not write.
pub fn decode_run(
    hour: i64,
    first_seq: u64,
    mut bytes: &[u8],
) -> Result<Vec<TimelineRow>, StateError> {
    let mut rows: Vec<TimelineRow> = Vec::with_capacity(1);
    while !bytes.is_empty() {
        let offset_us = decode_varint(&mut bytes)?;
        let delta = decode_varint(&mut bytes)?;
        let seq = match rows.last() {
            None if delta == 0 => first_seq,
            Some(last) if delta > 0 => last
                .seq
                .checked_add(delta)
                .ok_or_else(|| bad(TIMELINE, "a seq past 64 bits"))?,
            _ => return Err(bad(TIMELINE, "seqs do not ascend from the run's first")),
        };
        let timestamp_us = i64::try_from(offset_us)
            .ok()
            .filter(|offset| *offset < HOUR_MICROS)
            .and_then(|offset| hour.checked_mul(HOUR_MICROS)?.checked_add(offset))
            .ok_or_else(|| bad(TIMELINE, "a time outside its hour"))?;
        let changes = decode_changes(&mut bytes)?;
        rows.push(TimelineRow {
            timestamp_us,
            seq,
            changes,
        });
    }
    if rows.is_empty() {
        return Err(bad(TIMELINE, "a run without entries"));
    }
    Ok(rows)
}

/// An entry's changes, from the front of `bytes`.
fn decode_changes(bytes: &mut &[u8]) -> Result<Changes, StateError> {
    let count = decode_varint(bytes)?;
    if count > POSTINGS_PER_TRANSACTION_MAX as u64 {
        return Err(bad(TIMELINE, "more assets than a transaction can have"));
    }
    let mut changes: Changes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (&len, rest) = bytes
            .split_first()
            .ok_or_else(|| bad(TIMELINE, "an entry is cut short"))?;
        let len = usize::from(len);
        let asset = rest
            .get(..len)
            .filter(|asset| !asset.is_empty() && asset.len() <= ASSET_BYTES_MAX)
            .and_then(|asset| std::str::from_utf8(asset).ok())
            .ok_or_else(|| bad(TIMELINE, "an asset name is cut short or not text"))?;
        if changes
            .last()
            .is_some_and(|(last, _)| last.as_str() >= asset)
        {
            return Err(bad(TIMELINE, "assets not ascending"));
        }
        *bytes = &rest[len..];
        let change = decode_decimal(TIMELINE, bytes)?;
        changes.push((asset.to_string(), change));
    }
    if changes.is_empty() {
        return Err(bad(TIMELINE, "an entry without changes"));
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

/// Timeline entries and day totals' changes of one write transaction, not yet written.
#[derive(Debug, Default)]
pub struct PendingTimeline {
    /// ledger -> account -> what its transactions add. Nested so that a push looks both names
    /// up borrowed, without building a key (a push per account per transaction).
    accounts: HashMap<String, HashMap<String, PendingAccount>>,
}

/// What one account's transactions of one write transaction add. Both lists are short (the
/// hours and days the transaction's entries fall in), so they are searched from the end,
/// where the latest entry's hour and day are.
#[derive(Debug, Default)]
struct PendingAccount {
    /// (hour, its new entries in seq order).
    runs: Vec<(i64, Vec<TimelineRow>)>,
    /// (asset, day, the change to the day's total).
    days: Vec<(String, i64, Decimal)>,
}

impl PendingAccount {
    fn push(&mut self, row: TimelineRow) -> Result<(), StateError> {
        let day = day_of(row.timestamp_us);
        for (asset, change) in &row.changes {
            let slot = self
                .days
                .iter_mut()
                .rev()
                .find(|(name, at, _)| *at == day && name == asset);
            let total = match slot {
                Some((_, _, total)) => total,
                None => {
                    self.days.push((asset.clone(), day, Decimal::ZERO));
                    let Some((_, _, total)) = self.days.last_mut() else {
                        unreachable!("a day was just pushed");
                    };
                    total
                }
            };
            *total = total
                .checked_add(*change)
                .ok_or_else(|| StateError::Inconsistent {
                    seq: row.seq,
                    detail: format!("a day's total in {asset} overflows"),
                })?;
        }
        let hour = hour_of(row.timestamp_us);
        match self.runs.iter_mut().rev().find(|(at, _)| *at == hour) {
            Some((_, rows)) => {
                debug_assert!(rows.last().is_none_or(|last| last.seq < row.seq));
                rows.push(row);
            }
            None => self.runs.push((hour, vec![row])),
        }
        Ok(())
    }
}

impl PendingTimeline {
    /// Appends a transaction to an account's timeline and adds its changes to the account's
    /// day totals; seqs come in ascending order.
    pub fn push(
        &mut self,
        ledger: &str,
        account: &str,
        row: TimelineRow,
    ) -> Result<(), StateError> {
        if !self.accounts.contains_key(ledger) {
            self.accounts.insert(ledger.to_string(), HashMap::new());
        }
        let Some(accounts) = self.accounts.get_mut(ledger) else {
            unreachable!("the ledger's map was just made");
        };
        if !accounts.contains_key(account) {
            accounts.insert(account.to_string(), PendingAccount::default());
        }
        let Some(pending) = accounts.get_mut(account) else {
            unreachable!("the account's entry was just made");
        };
        pending.push(row)
    }

    /// Forgets everything pending: for a write transaction that was dropped.
    pub fn clear(&mut self) {
        self.accounts.clear();
    }

    /// Writes one run per account and hour, adds the changes to the day totals, and forgets
    /// them.
    pub fn flush(
        &mut self,
        timeline: &mut Table<'_, TimelineKey<'static>, &'static [u8]>,
        days: &mut Table<'_, DayKey<'static>, &'static [u8]>,
    ) -> Result<(), StateError> {
        for (ledger, accounts) in self.accounts.drain() {
            for (account, pending) in accounts {
                let names = (ledger.as_str(), account.as_str());
                for (hour, rows) in pending.runs {
                    write_run(timeline, names, hour, &rows)?;
                }
                for (asset, day, change) in pending.days {
                    add_to_day(days, (names.0, names.1, &asset, day), change)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a run; one starting at a seq some run of the hour already starts at means an entry
/// was applied twice (every seq is pushed once, in order).
fn write_run(
    table: &mut Table<'_, TimelineKey<'static>, &'static [u8]>,
    (ledger, account): (&str, &str),
    hour: i64,
    rows: &[TimelineRow],
) -> Result<(), StateError> {
    let Some(first) = rows.first().map(|row| row.seq) else {
        return Ok(());
    };
    if table
        .insert((ledger, account, hour, first), &encode_run(hour, rows)[..])?
        .is_some()
    {
        return Err(StateError::Inconsistent {
            seq: first,
            detail: format!("a second timeline run of {account} from seq {first}"),
        });
    }
    Ok(())
}

/// Adds `change` to a day's total.
fn add_to_day(
    table: &mut Table<'_, DayKey<'static>, &'static [u8]>,
    key: DayKey<'_>,
    change: Decimal,
) -> Result<(), StateError> {
    let before = match table.get(key)? {
        Some(row) => decode_day_total(row.value())?,
        None => Decimal::ZERO,
    };
    let total = before.checked_add(change).ok_or_else(|| {
        bad(
            "account_days",
            format!(
                "the total of {} in {} on day {} overflows",
                key.1, key.2, key.3
            ),
        )
    })?;
    table.insert(key, &encode_day_total(total)[..])?;
    Ok(())
}

/// An account's timeline entries with effective timestamps in `[from_us, to_us)`, in
/// (timestamp, seq) order, only those with a change in `asset` when given, at most `limit`
/// (more is `None`). Reads the runs of the hours the period touches.
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
    let hours =
        (ledger, account, hour_of(from_us), 0)..=(ledger, account, hour_of(to_us - 1), u64::MAX);
    for run in table.range(hours)? {
        let (key, value) = run?;
        let (_, _, hour, first) = key.value();
        for row in decode_run(hour, first, value.value())? {
            let inside = (from_us..to_us).contains(&row.timestamp_us);
            if !inside || asset.is_some_and(|only| row.changes.iter().all(|(name, _)| name != only))
            {
                continue;
            }
            if rows.len() == limit {
                return Ok(None);
            }
            rows.push(row);
        }
    }
    rows.sort_by_key(|row| (row.timestamp_us, row.seq));
    Ok(Some(rows))
}

/// Every timeline entry of a table, in (ledger, account, hour, seq) order, whatever runs they
/// were written in: what two states are compared by. The runs of one account's hour come from
/// successive write transactions, so in key order their seqs ascend from run to run: the
/// entries come out in order one run at a time, without gathering the hour.
pub struct TimelineEntries<'t> {
    runs: redb::Range<'t, TimelineKey<'static>, &'static [u8]>,
    /// The run being handed out.
    run: Option<RunLeft>,
}

/// A run's ledger, account and hour, and its entries not yet handed out.
type RunLeft = (Rc<str>, Rc<str>, i64, std::vec::IntoIter<TimelineRow>);

/// One entry of [`TimelineEntries`]: (ledger, account, hour, the entry).
pub type TimelineEntry = (Rc<str>, Rc<str>, i64, TimelineRow);

impl<'t> TimelineEntries<'t> {
    pub fn new<T>(table: &'t T) -> Result<TimelineEntries<'t>, StateError>
    where
        T: ReadableTable<TimelineKey<'static>, &'static [u8]>,
    {
        Ok(TimelineEntries {
            runs: table.iter()?,
            run: None,
        })
    }

    fn next_entry(&mut self) -> Result<Option<TimelineEntry>, StateError> {
        loop {
            if let Some((ledger, account, hour, rows)) = &mut self.run
                && let Some(row) = rows.next()
            {
                return Ok(Some((ledger.clone(), account.clone(), *hour, row)));
            }
            let Some(run) = self.runs.next() else {
                return Ok(None);
            };
            let (key, value) = run?;
            let (ledger, account, hour, first) = key.value();
            let rows = decode_run(hour, first, value.value())?;
            let (ledger, account) = match self.run.take() {
                // The same account as the run before: share its names.
                Some((l, a, _, _)) if (&*l, &*a) == (ledger, account) => (l, a),
                _ => (Rc::from(ledger), Rc::from(account)),
            };
            self.run = Some((ledger, account, hour, rows.into_iter()));
        }
    }
}

impl Iterator for TimelineEntries<'_> {
    type Item = Result<TimelineEntry, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
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

/// The change in `asset` of a run's entries: all of them, and those before `at_us`.
fn run_change_in(
    asset: &str,
    at_us: i64,
    run: RangeItem<'_, TimelineKey<'static>>,
) -> Result<(Decimal, Decimal), StateError> {
    let (key, value) = run?;
    let (_, _, hour, first) = key.value();
    let overflow = || bad(TIMELINE, "a run's changes overflow");
    let (mut all, mut before) = (Decimal::ZERO, Decimal::ZERO);
    for row in decode_run(hour, first, value.value())? {
        for (_, change) in row.changes.iter().filter(|(name, _)| name == asset) {
            all = all.checked_add(*change).ok_or_else(overflow)?;
            if row.timestamp_us < at_us {
                before = before.checked_add(*change).ok_or_else(overflow)?;
            }
        }
    }
    Ok((all, before))
}

/// An account's balance in `asset` just before `at_us` (the sum of the changes of its
/// transactions with earlier effective timestamps), given its balance now. Reads day totals
/// from the nearer end of the account's days, then the runs of the hour of `at_us`, and the
/// runs of that day's other hours from the nearer end of the day; never the log.
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
    let overflow = || bad(TIMELINE, "a balance overflows");
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
    let hour = hour_of(at_us);
    let (mut hour_total, mut hour_before) = (Decimal::ZERO, Decimal::ZERO);
    for run in timeline.range((ledger, account, hour, 0)..=(ledger, account, hour, u64::MAX))? {
        let (all, before) = run_change_in(asset, at_us, run)?;
        hour_total = hour_total.checked_add(all).ok_or_else(overflow)?;
        hour_before = hour_before.checked_add(before).ok_or_else(overflow)?;
    }
    let all_of = |run| run_change_in(asset, at_us, run).map(|(all, _)| all);
    let early =
        timeline.range((ledger, account, first_hour(day), 0)..(ledger, account, hour, 0))?;
    let late = timeline
        .range((ledger, account, hour + 1, 0)..(ledger, account, first_hour(day + 1), 0))?;
    let other_hours = day_total.checked_sub(hour_total).ok_or_else(overflow)?;
    let hours_before = sum_below(
        early.map(all_of),
        late.rev().map(all_of),
        other_hours,
        "a day's changes",
    )?;
    days_before
        .checked_add(hours_before)
        .and_then(|sum| sum.checked_add(hour_before))
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(timestamp_us: i64, seq: u64, changes: &[(&str, Decimal)]) -> TimelineRow {
        TimelineRow {
            timestamp_us,
            seq,
            changes: changes
                .iter()
                .map(|(asset, change)| (asset.to_string(), *change))
                .collect(),
        }
    }

    #[test]
    fn runs_round_trip_through_their_encoding() {
        let hour = hour_of(1_767_225_600_000_000) + 5;
        let start = hour * HOUR_MICROS;
        let rows = vec![
            row(
                start + 59,
                7,
                &[
                    ("EUR/2", Decimal::new(-12_345, 2)),
                    ("USD", Decimal::ZERO),
                    ("X", Decimal::MAX),
                    ("Y", Decimal::MIN),
                    ("Z", Decimal::new(1, 28)),
                ],
            ),
            row(start, 8, &[("EUR/2", Decimal::ONE)]),
            row(start + HOUR_MICROS - 1, u64::MAX, &[("A", Decimal::TEN)]),
        ];
        let bytes = encode_run(hour, &rows);
        assert_eq!(decode_run(hour, 7, &bytes).unwrap(), rows);
        // More assets than a byte counts (a transaction may touch an account in 1,000).
        let names: Vec<String> = (0..300).map(|n| format!("A{n:03}")).collect();
        let many: Vec<(&str, Decimal)> = names
            .iter()
            .map(|name| (name.as_str(), Decimal::ONE))
            .collect();
        let wide = vec![row(start, 9, &many)];
        assert_eq!(decode_run(hour, 9, &encode_run(hour, &wide)).unwrap(), wide);
        // Before 1970 too: hours below zero.
        let early = vec![row(-1, 1, &[("A", Decimal::ONE)])];
        assert_eq!(decode_run(-1, 1, &encode_run(-1, &early)).unwrap(), early);
        // 1.50 and 1.5 are one value: one encoding.
        assert_eq!(
            encode_run(0, &[row(0, 1, &[("A", Decimal::new(150, 2))])]),
            encode_run(0, &[row(0, 1, &[("A", Decimal::new(15, 1))])])
        );
        assert_eq!(
            encode_run(0, &[row(3, 1, &[("A", Decimal::new(-1, 0))])]),
            vec![3, 0, 1, 1, b'A', 0, 1]
        );
    }

    #[test]
    fn a_damaged_run_is_a_typed_error_not_a_panic() {
        let long = [0xffu8; 15];
        let mut too_long = vec![0, 0, 1, 1, b'A', 0];
        too_long.extend_from_slice(&long);
        too_long.push(0x7f);
        for bytes in [
            &[][..],
            &[0, 0, 1, 1, b'A'][..],
            &[0, 0, 1, 1, b'A', 0][..],
            &[0, 0, 1, 1, b'A', 0, 0x80][..],
            &[0, 0, 1, 1, b'A', 0, 0x80, 0][..],
            &[0, 0, 1, 1, b'A', 29, 2][..],
            &[0, 0, 1, 1, b'A', 1, 20][..],
            &[0, 0, 2, 1, b'B', 0, 2, 1, b'A', 0, 2][..],
            &[0, 0, 0][..],
            &[0, 0, 1, 0, 0, 2][..],
            // The first entry's seq is not the key's; a later one does not ascend.
            &[0, 1, 1, 1, b'A', 0, 2][..],
            &[0, 0, 1, 1, b'A', 0, 2, 0, 0, 1, 1, b'A', 0, 2][..],
            // Past the hour; a number not in its shortest form.
            &[0x80, 0xa0, 0xd9, 0xb4, 0x0d, 0, 1, 1, b'A', 0, 2][..],
            &[0x80, 0x00, 0, 1, 1, b'A', 0, 2][..],
            &too_long[..],
        ] {
            assert!(
                matches!(decode_run(0, 1, bytes), Err(StateError::BadRow { .. })),
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
