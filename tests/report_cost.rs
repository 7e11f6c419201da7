//! What a report reads (issue 15, item 4): a statement reads the entries of its period from the
//! log and nothing else of it (its opening balance comes from the state's timeline of the
//! account), so a one-day statement reads the same bytes however long the account's history;
//! a trial balance as of now reads the state and no entry at all. Measured in bytes read from
//! the log's files, through a file system that counts them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod counting_fs;
}

use std::path::Path;
use std::sync::Arc;

use folio::log::vfs::RealFs;
use folio::report::{StatementRequest, statement, trial_balance};
use folio::{Ledger, LedgerOptions, PostRequest, Posting, Timestamp};
use rust_decimal::Decimal;
use support::counting_fs::CountingFs;

/// The bytes read from the log's files since the last `clear`.
fn log_bytes_read(fs: &CountingFs) -> u64 {
    fs.read_bytes()
        .iter()
        .filter(|(path, _)| path.to_string_lossy().contains("/log/"))
        .map(|(_, bytes)| bytes)
        .sum()
}

const LEDGER: &str = "shop";
const ASSET: &str = "EUR/2";

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

/// A store of 600 sales to customers' accounts and three movements of `till:1`, one of them
/// back-dated and one re-tagged later; and the bytes its log holds.
fn books(fs: &CountingFs, dir: &Path) -> (Ledger, u64) {
    let ledger = Ledger::create_with(Arc::new(fs.clone()), dir, LedgerOptions::default()).unwrap();
    let sales: Vec<PostRequest> = (0..600)
        .map(|n| {
            let posting = Posting::new("world", &format!("users:{n}"), "1.00", ASSET).unwrap();
            PostRequest::new(LEDGER, vec![posting])
                .with_reference(format!("sale-{n}"))
                .with_timestamp(at("2026-11-22T09:00:00Z"))
        })
        .collect();
    for result in ledger.post_batch(sales) {
        result.unwrap();
    }
    let till = |amount: &str, time: &str| {
        let posting = Posting::new("world", "till:1", amount, ASSET).unwrap();
        PostRequest::new(LEDGER, vec![posting]).with_timestamp(at(time))
    };
    ledger.post(till("5.00", "2026-11-22T10:00:00Z")).unwrap();
    let tagged = ledger
        .post(till("7.00", "2026-11-22T12:00:00Z"))
        .unwrap()
        .id;
    ledger.post(till("2.00", "2026-11-21T12:00:00Z")).unwrap();
    let note = [("note".to_string(), "counted".to_string())].into();
    ledger
        .set_transaction_metadata(LEDGER, tagged, note)
        .unwrap();
    let log_bytes = ledger.log().stats().used_bytes;
    (ledger, log_bytes)
}

#[test]
fn a_statement_reads_the_accounts_own_entries_and_not_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = CountingFs::new(Arc::new(RealFs));
    let (ledger, log_bytes) = books(&fs, &dir.path().join("store"));
    fs.clear();
    let request = StatementRequest {
        ledger: LEDGER.into(),
        account: "till:1".into(),
        from: at("2026-11-22T00:00:00Z"),
        to: at("2026-11-23T00:00:00Z"),
        asset: None,
    };
    let statement = statement(&ledger, &request).unwrap();
    let read = log_bytes_read(&fs);
    assert!(
        read * 20 < log_bytes,
        "the statement read {read} bytes of a {log_bytes}-byte log"
    );
    let part = &statement.assets[0];
    assert_eq!(
        part.opening,
        Decimal::new(200, 2),
        "the back-dated movement"
    );
    assert_eq!(part.movements.len(), 2);
    assert_eq!(part.closing, Decimal::new(1400, 2));
    assert_eq!(part.movements[1].metadata["note"], "counted");
    assert_eq!(statement.head_seq, ledger.log().head().seq);
}

#[test]
fn a_trial_balance_as_of_now_reads_the_state_and_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fs = CountingFs::new(Arc::new(RealFs));
    let (ledger, _) = books(&fs, &dir.path().join("store"));
    fs.clear();
    let trial = trial_balance(&ledger, LEDGER, None, "").unwrap();
    assert_eq!(log_bytes_read(&fs), 0);
    assert_eq!(trial.accounts.len(), 602, "600 customers, till:1 and world");
    assert_eq!(trial.accounts["till:1"][ASSET], Decimal::new(1400, 2));
    assert!(trial.totals.values().all(|total| total.is_zero()));
    assert_eq!(trial.head_seq, ledger.log().head().seq);
    let at_time = trial_balance(&ledger, LEDGER, Some(at("2026-11-22T11:00:00Z")), "").unwrap();
    assert_eq!(at_time.accounts["till:1"][ASSET], Decimal::new(700, 2));
}

/// A store where `till:1` has `older` sales on the days before 2026-11-22 and as many after
/// it, one an hour, and three on the 22nd.
fn long_history(fs: &CountingFs, dir: &Path, older: i64) -> Ledger {
    let ledger = Ledger::create_with(Arc::new(fs.clone()), dir, LedgerOptions::default()).unwrap();
    let day = at("2026-11-22T00:00:00Z").0;
    let hour = 3_600_000_000;
    let sale = |time: i64, amount: &str| {
        let posting = Posting::new("world", "till:1", amount, ASSET).unwrap();
        PostRequest::new(LEDGER, vec![posting]).with_timestamp(Timestamp(time))
    };
    let around: Vec<PostRequest> = (1..=older)
        .flat_map(|n| {
            [
                sale(day - n * hour, "1.00"),
                sale(day + 24 * hour + n * hour, "3.00"),
            ]
        })
        .collect();
    for result in ledger.post_batch(around) {
        result.unwrap();
    }
    for (n, amount) in ["5.00", "7.00", "2.00"].into_iter().enumerate() {
        ledger
            .post(sale(day + (n as i64 + 9) * hour, amount))
            .unwrap();
    }
    ledger
}

#[test]
fn a_one_day_statement_reads_the_days_entries_however_long_the_accounts_history() {
    let mut read_per_history = Vec::new();
    for older in [50, 1500] {
        let dir = tempfile::tempdir().unwrap();
        let fs = CountingFs::new(Arc::new(RealFs));
        let ledger = long_history(&fs, &dir.path().join("store"), older);
        let log_bytes = ledger.log().stats().used_bytes;
        fs.clear();
        let request = StatementRequest {
            ledger: LEDGER.into(),
            account: "till:1".into(),
            from: at("2026-11-22T00:00:00Z"),
            to: at("2026-11-23T00:00:00Z"),
            asset: None,
        };
        let statement = statement(&ledger, &request).unwrap();
        let part = &statement.assets[0];
        assert_eq!(
            part.opening,
            Decimal::from(older),
            "{older} older sales of 1.00"
        );
        assert_eq!(part.movements.len(), 3);
        assert_eq!(part.closing, Decimal::from(older + 14));
        let read = log_bytes_read(&fs);
        let entry_bytes = log_bytes / ledger.log().head().seq;
        assert!(
            read <= 3 * 2 * entry_bytes,
            "{older} older sales: the statement read {read} bytes; the period's three entries \
             are about {entry_bytes} bytes each"
        );
        read_per_history.push(read);
    }
    assert_eq!(
        read_per_history[0], read_per_history[1],
        "the same bytes with 100 and with 3000 entries around the period"
    );
}
