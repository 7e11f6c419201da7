//! Reports for people outside the program: an account's statement over a period, a ledger's
//! trial balance at a time, and the ledger as an hledger / ledger-cli journal
//! (`docs/reports.md`). Each walks the log with [`crate::replay::drive`] (the log is the
//! source of truth, and it alone knows effective timestamps), checks its own arithmetic
//! (opening + movements = closing; a whole ledger sums to zero) and, where it covers the whole
//! log, agrees with the state's balances before it is handed out. Rendering (table, JSON, CSV,
//! XLSX) is in [`render`]; reports never change the store.

mod error;
pub mod file;
pub mod journal;
pub mod render;
pub mod statement;
pub mod trial;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

pub use error::ReportError;
pub use journal::{JournalSummary, write_journal};
pub use statement::{AssetStatement, Movement, Statement, StatementRequest, statement};
pub use trial::{TrialBalance, trial_balance};

use crate::domain::entry::EntryBody;
use crate::domain::model::{Timestamp, exact_add};
use crate::log::{Entry, LogReader};
use crate::replay::{self, Replay};

/// Parses a report's time bound: RFC 3339 (`2026-11-22T10:00:00Z`, any offset, at most
/// microseconds), or a bare date `YYYY-MM-DD`, which means that day's midnight in UTC (so
/// `--from 2026-11-22 --to 2026-11-23` is the whole UTC day of the 22nd). Either must lie in
/// the years the ledger stores (`Timestamp::MIN` to `Timestamp::MAX`), so that the report can
/// write it back.
pub fn parse_time(field: &'static str, text: &str) -> Result<Timestamp, ReportError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date
            .and_hms_opt(0, 0, 0)
            .map(|time| Timestamp(Utc.from_utc_datetime(&time).timestamp_micros()));
        if let Some(midnight) = midnight.filter(|at| at.in_range()) {
            return Ok(midnight);
        }
    }
    Timestamp::parse(text).map_err(|_| ReportError::InvalidInput {
        field,
        value: text.to_string(),
        reason: "must be an RFC 3339 date-time or a date YYYY-MM-DD, in the years 0000 to 9999 \
                 (UTC)",
    })
}

/// `a + b`, exactly, or an `Overflow` naming what was being summed.
fn add(a: Decimal, b: Decimal, what: &'static str, asset: &str) -> Result<Decimal, ReportError> {
    exact_add(a, b).ok_or_else(|| ReportError::Overflow {
        what,
        asset: asset.to_string(),
    })
}

/// A report's consumer of log entries: a [`Replay`] with the report's own error.
trait ReportSink {
    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ReportError>;
}

/// Adapts a [`ReportSink`] to [`Replay`], its errors passed on as themselves.
struct Driven<'a, S: ReportSink> {
    sink: &'a mut S,
}

impl<S: ReportSink> Replay for Driven<'_, S> {
    type Error = ReportError;

    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ReportError> {
        self.sink.entry(entry, body)
    }
}

/// Feeds every entry of the log, up to its head when the walk begins, to `sink`; returns
/// that head's seq.
fn walk(log: &LogReader, sink: &mut impl ReportSink) -> Result<u64, ReportError> {
    let head = log.head().seq;
    let mut driven = Driven { sink };
    replay::drive(log, 1, head, &mut driven, &mut |_| {})?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_date_is_utc_midnight_and_rfc3339_keeps_its_offset() {
        let day = parse_time("from", "2026-11-22").unwrap();
        assert_eq!(day.to_rfc3339(), "2026-11-22T00:00:00Z");
        let at = parse_time("to", "2026-11-22T10:00:00+01:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-22T09:00:00Z");
        assert!(parse_time("from", "22/11/2026").is_err());
        assert!(parse_time("from", "2026-13-01").is_err());
    }

    #[test]
    fn a_bound_outside_years_0000_to_9999_in_utc_is_refused() {
        for text in [
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+00:01",
            "10000-01-01",
        ] {
            let error = parse_time("to", text).unwrap_err();
            assert_eq!(error.code(), "INVALID_INPUT", "{text}");
        }
        assert_eq!(
            parse_time("to", "9999-12-31").unwrap().to_rfc3339(),
            "9999-12-31T00:00:00Z"
        );
        assert_eq!(parse_time("from", "0000-01-01").unwrap(), Timestamp::MIN);
    }
}
