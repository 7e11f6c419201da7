//! State schema 3 (`docs/ledger.md`, "State"): transaction bodies live in the log only (the
//! state keeps a row for a transaction only once it is reverted or its metadata changes),
//! histories are runs of seqs per account and write transaction, accounts' timelines and day
//! totals serve statements (schema 3), and the state records its schema: a state of another
//! schema (schema 2 has no timelines), or of none (made by a build before schema 2), is rebuilt
//! from the log on open, and everything reads as before, statements included.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod support {
    pub mod binary;
}

use std::collections::BTreeMap;
use std::path::Path;

use folio::report::{StatementRequest, statement};
use folio::state::StateOpened;
use folio::state::history::{decode_run, encode_run};
use folio::state::tables::{
    DAY_TOTALS, HISTORY, META, META_SCHEMA, SCHEMA_VERSION, TIMELINE, TRANSACTIONS,
};
use folio::state::timeline::decode_run as decode_timeline_run;
use folio::{Ledger, PostRequest, Posting, RevertRequest};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

fn sale(account: &str, amount: &str, reference: String) -> PostRequest {
    let posting = Posting::new("world", account, amount, "USD/2").unwrap();
    PostRequest::new("main", vec![posting]).with_reference(reference)
}

/// Tills `till:0..3`, posted to in batches of 1 to 7, so that runs of every length and one
/// account in several runs per batch come up; then a revert and metadata on two others.
/// Returns each till's transaction ids, ascending.
fn populate(ledger: &Ledger) -> BTreeMap<String, Vec<u64>> {
    let mut ids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut n = 0u64;
    for batch in 1..=7 {
        for _ in 0..4 {
            let requests: Vec<PostRequest> = (0..batch)
                .map(|k| {
                    n += 1;
                    sale(&format!("till:{}", (n + k) % 3), "1.25", format!("r{n}"))
                })
                .collect();
            let accounts: Vec<String> = requests
                .iter()
                .map(|request| request.postings[0].destination.clone())
                .collect();
            for (result, account) in ledger.post_batch(requests).into_iter().zip(accounts) {
                let id = result.unwrap().id;
                ids.entry(account).or_default().push(id);
                ids.entry("world".to_string()).or_default().push(id);
            }
        }
    }
    let reverted = ids["till:1"][2];
    let revert = ledger
        .revert(RevertRequest {
            force: true,
            ..RevertRequest::new("main", reverted)
        })
        .unwrap();
    for account in ["till:1", "world"] {
        ids.entry(account.to_string()).or_default().push(revert.id);
    }
    let tagged = ids["till:2"][0];
    let metadata = BTreeMap::from([("note".to_string(), "checked".to_string())]);
    ledger
        .set_transaction_metadata("main", tagged, metadata)
        .unwrap();
    ids
}

fn database(store: &Path) -> redb::Database {
    redb::Database::open(store.join("state.redb")).unwrap()
}

#[test]
fn only_transactions_changed_after_posting_have_a_state_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ledger = Ledger::create(&store).unwrap();
    let ids = populate(&ledger);
    let stats = ledger.stats().unwrap();
    ledger.close().unwrap();
    drop(ledger);
    let posted: usize = ids["world"].len();
    assert_eq!(
        stats.transactions, posted as u64,
        "the count covers every transaction"
    );
    let db = database(&store);
    let read = db.begin_read().unwrap();
    let rows = read.open_table(TRANSACTIONS).unwrap();
    let mut keys: Vec<u64> = rows
        .iter()
        .unwrap()
        .map(|row| row.unwrap().0.value())
        .collect();
    keys.sort_unstable();
    let mut changed = vec![ids["till:1"][2], ids["till:2"][0]];
    changed.sort_unstable();
    assert_eq!(
        keys, changed,
        "rows for the reverted and the tagged transaction only"
    );
    let schema = read.open_table(META).unwrap();
    let stamp = schema.get(META_SCHEMA).unwrap().unwrap().value().to_vec();
    assert_eq!(stamp, SCHEMA_VERSION.to_le_bytes());
}

#[test]
fn history_pages_read_across_runs_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    let ids = populate(&ledger);
    for (account, ids) in &ids {
        let newest_first: Vec<u64> = ids.iter().rev().copied().collect();
        for limit in [1, 2, 3, 5, 1000] {
            let mut read = Vec::new();
            let mut before = None;
            loop {
                let page = ledger.history("main", account, limit, before).unwrap();
                assert!(page.len() <= limit);
                if page.is_empty() {
                    break;
                }
                before = page.last().map(|receipt| receipt.id);
                read.extend(page.iter().map(|receipt| receipt.id));
            }
            assert_eq!(read, newest_first, "{account} in pages of {limit}");
        }
    }
    // A run holds several seqs of one account per write transaction: the batches of 7
    // wrote runs longer than one (else this test would not cover reading inside a run).
    ledger.close().unwrap();
    drop(ledger);
    let db = database(&dir.path().join("store"));
    let read = db.begin_read().unwrap();
    let runs = read.open_table(HISTORY).unwrap();
    let longest = runs
        .iter()
        .unwrap()
        .map(|row| {
            let (key, value) = row.unwrap();
            decode_run(key.value().2, value.value()).unwrap().len()
        })
        .max()
        .unwrap();
    assert!(longest > 1, "runs of one seq only");
}

/// Snapshots of everything a user reads, to compare before and after a rebuild.
fn reads(ledger: &Ledger, ids: &BTreeMap<String, Vec<u64>>) -> String {
    let mut out = String::new();
    for account in ids.keys() {
        out += &format!("{account}: {:?}\n", ledger.balance("main", account));
        let history = ledger.history("main", account, 1000, None).unwrap();
        out += &format!("{:?}\n", history);
        let request = StatementRequest {
            ledger: "main".into(),
            account: account.clone(),
            from: folio::Timestamp(0),
            to: folio::Timestamp(i64::MAX / 2),
            asset: None,
        };
        out += &format!("{:?}\n", statement(ledger, &request));
    }
    out += &format!("{:?}\n", ledger.stats().unwrap().transactions);
    out
}

/// Makes the state look like one an older build left: `schema` None removes the stamp (as
/// before schema 2, when there was none), Some writes another version; the old layout's
/// per-transaction history table is added, as such a file would have it, and below schema 3
/// the timelines and day totals are taken away.
fn age_state(store: &Path, schema: Option<u32>) {
    const OLD_HISTORY: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("history");
    let db = database(store);
    let write = db.begin_write().unwrap();
    {
        let mut meta = write.open_table(META).unwrap();
        match schema {
            None => {
                meta.remove(META_SCHEMA).unwrap();
            }
            Some(version) => {
                meta.insert(META_SCHEMA, &version.to_le_bytes()[..])
                    .unwrap();
            }
        }
        if schema.is_none_or(|version| version < 3) {
            write.delete_table(TIMELINE).unwrap();
            write.delete_table(DAY_TOTALS).unwrap();
        }
        let mut old = write.open_table(OLD_HISTORY).unwrap();
        old.insert(("main", "till:0", 2), ()).unwrap();
        // A wrong row the rebuild must not keep.
        let mut runs = write.open_table(HISTORY).unwrap();
        runs.insert(("main", "till:0", 999_999), &encode_run(&[999_999])[..])
            .unwrap();
    }
    write.commit().unwrap();
}

#[test]
fn a_state_of_another_schema_or_none_is_rebuilt_from_the_log_on_open() {
    assert_eq!(
        SCHEMA_VERSION, 3,
        "a new schema gets a case of the one before it here"
    );
    for schema in [None, Some(1), Some(2), Some(SCHEMA_VERSION + 1)] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let ledger = Ledger::create(&store).unwrap();
        let ids = populate(&ledger);
        let before = reads(&ledger, &ids);
        ledger.close().unwrap();
        drop(ledger);
        age_state(&store, schema);

        let ledger = Ledger::open(&store).unwrap();
        let StateOpened::Rebuilt { reason } = &ledger.open_report().state else {
            panic!("{schema:?}: the state was kept: {:?}", ledger.open_report());
        };
        assert!(reason.contains("schema"), "{reason}");
        assert_eq!(reads(&ledger, &ids), before, "{schema:?}");
        assert_eq!(ledger.state_difference().unwrap(), None);
        ledger.close().unwrap();
        drop(ledger);

        // Rebuilt once: the next open keeps it.
        let ledger = Ledger::open(&store).unwrap();
        assert_eq!(ledger.open_report().state, StateOpened::Existing);
        let db_rows = ledger.stats().unwrap().transactions;
        assert_eq!(db_rows, ids["world"].len() as u64);
        ledger.close().unwrap();
        drop(ledger);
        let db = database(&store);
        let read = db.begin_read().unwrap();
        assert!(
            read.open_table(TableDefinition::<(&str, &str, u64), ()>::new("history"))
                .is_err(),
            "the old layout's table is gone with the old file"
        );
        assert!(read.open_table(TRANSACTIONS).unwrap().len().unwrap() == 2);
        // A rebuild applies the log in a few write transactions: each account's entries of
        // an hour make one run.
        let timeline = read.open_table(TIMELINE).unwrap();
        let entries: usize = timeline
            .iter()
            .unwrap()
            .map(|run| {
                let (key, value) = run.unwrap();
                let (_, _, hour, first) = key.value();
                decode_timeline_run(hour, first, value.value())
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(
            entries,
            2 * ids["world"].len(),
            "an entry per account per transaction"
        );
        assert!(
            timeline.len().unwrap() < entries as u64 / 4,
            "entries gathered into runs"
        );
    }
}

/// A read command rebuilds an older state in memory and says so, every time, since it never
/// writes the store; a writer keeps the rebuilt state, and read commands are then quiet.
#[test]
fn the_cli_says_it_rebuilt_a_state_of_an_older_schema_until_a_writer_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ledger = Ledger::create(&store).unwrap();
    populate(&ledger);
    ledger.close().unwrap();
    drop(ledger);
    age_state(&store, None);
    let path = store.to_str().unwrap();
    let args = ["balances", "--store", path, "--ledger", "main", "--json"];
    let (code, stdout, stderr) = support::binary::run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("rebuilt from the log") && stderr.contains("schema"),
        "{stderr}"
    );
    assert!(stdout.contains("till:1"), "{stdout}");
    let (code, again, stderr) = support::binary::run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("rebuilt from the log"),
        "a reader wrote the state: {stderr}"
    );
    assert_eq!(again, stdout);
    let (code, _, stderr) = support::binary::run(&["replay", "--store", path]);
    assert_eq!(code, 0, "{stderr}");
    let (code, again, stderr) = support::binary::run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "", "the writer's rebuilt state was not kept");
    assert_eq!(again, stdout);
}
