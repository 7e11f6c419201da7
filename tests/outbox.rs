//! The outbox: a consumer's cursor is a `ConsumerAcked` entry, so it is durable once `ack`
//! returns (across close, a power loss at any step, and `replay`), it only moves forward to an
//! entry that exists, verify checks it like every other row, and `events_since` hands out
//! exactly the events `export --format events` writes for the same range.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod support {
    pub mod every_entry;
    pub mod workload;
}

use std::sync::Arc;

use folio::export::export_log;
use folio::log::vfs::RealFs;
use folio::outbox::BatchLimits;
use folio::{Ledger, LedgerError, Overdraft, PostRequest, Posting, RevertRequest};
use support::every_entry::every_entry;
use support::workload;

fn sale(ledger: &Ledger, amount: &str) -> u64 {
    let posting = Posting::new("world", "till:1", amount, "EUR/2").unwrap();
    ledger
        .post(PostRequest::new("main", vec![posting]))
        .unwrap()
        .id
}

/// A store holding every kind of entry: posts, a revert, metadata set and deleted, an
/// overdraft policy and acks, interleaved.
fn busy_store(ledger: &Ledger) {
    let first = sale(ledger, "10.00");
    ledger
        .set_overdraft("main", "till:1", "EUR/2", Overdraft::Unbounded)
        .unwrap();
    ledger.ack("audit", 2).unwrap();
    let second = sale(ledger, "2.50");
    let metadata = [("k".to_string(), "v".to_string())].into_iter().collect();
    ledger
        .set_account_metadata("main", "till:1", metadata)
        .unwrap();
    ledger
        .delete_account_metadata("main", "till:1", "k")
        .unwrap();
    ledger.revert(RevertRequest::new("main", second)).unwrap();
    ledger.ack("audit", first + 3).unwrap();
    sale(ledger, "0.01");
}

fn code(error: &folio::Error) -> &'static str {
    error.code()
}

#[test]
fn an_ack_moves_the_cursor_forward_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    assert_eq!(ledger.cursor("central").unwrap(), 0);
    assert!(ledger.consumers().unwrap().is_empty());
    sale(&ledger, "1");
    sale(&ledger, "2");
    let committed = ledger.ack("central", 2).unwrap().unwrap();
    assert_eq!(committed.seq, 4, "the ack is an entry of its own");
    assert_eq!(ledger.cursor("central").unwrap(), 2);
    ledger.close().unwrap();
    drop(ledger);

    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.cursor("central").unwrap(), 2);
    let consumers = ledger.consumers().unwrap();
    assert_eq!(consumers.len(), 1);
    assert_eq!(
        (
            consumers[0].name.as_str(),
            consumers[0].cursor,
            consumers[0].lag
        ),
        ("central", 2, 1),
        "one sale (seq 3) is pending; the ack entry itself is no event"
    );
    ledger.ack("central", 4).unwrap();
    assert_eq!(ledger.consumers().unwrap()[0].lag, 0);
    ledger.close().unwrap();
}

#[test]
fn acks_beyond_the_head_backwards_or_by_a_bad_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    sale(&ledger, "1");
    sale(&ledger, "2");
    let head = ledger.head().seq;
    assert_eq!(head, 3);

    let beyond = ledger.ack("central", head + 1).unwrap_err();
    assert_eq!(code(&beyond), "SEQ_OUT_OF_RANGE");
    assert!(beyond.is_rejection());
    assert!(matches!(
        beyond,
        folio::Error::Ledger(LedgerError::AckBeyondHead {
            seq: 4,
            head: 3,
            ..
        })
    ));
    assert_eq!(ledger.head().seq, head, "a refused ack appends nothing");

    ledger.ack("central", 3).unwrap();
    let backwards = ledger.ack("central", 2).unwrap_err();
    assert_eq!(code(&backwards), "ACK_BACKWARDS");
    assert!(backwards.to_string().contains("cursor is already at 3"));

    let head = ledger.head().seq;
    assert_eq!(
        ledger.ack("central", 3).unwrap(),
        None,
        "the same seq again"
    );
    assert_eq!(ledger.head().seq, head, "a repeated ack appends nothing");

    for bad in ["", "has space", "slash/y", "é", &"x".repeat(64)] {
        let error = ledger.ack(bad, 1).unwrap_err();
        assert_eq!(code(&error), "INVALID_INPUT", "{bad:?}");
        assert!(ledger.cursor(bad).is_err());
    }
    ledger.ack(&"x".repeat(63), 1).unwrap();
    assert_eq!(ledger.head().seq, head + 1);
    ledger.close().unwrap();
}

#[test]
fn acks_in_one_group_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    for _ in 0..10 {
        sale(&ledger, "1");
    }
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let ledger = ledger.clone();
            scope.spawn(move || {
                for seq in 1..=11u64 {
                    // Each thread's cursor is its own; the others' acks land in between.
                    ledger.ack(&format!("c{thread}"), seq).unwrap();
                }
            });
        }
    });
    let consumers = ledger.consumers().unwrap();
    assert_eq!(consumers.len(), 4);
    assert!(consumers.iter().all(|c| c.cursor == 11 && c.lag == 0));
    let report = ledger.verify(&[]).unwrap();
    assert!(report.ok, "{:?}", report.first_failure);
    ledger.close().unwrap();
}

#[test]
fn cursors_survive_replay_and_verify_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    busy_store(&ledger);
    let before = ledger.consumers().unwrap();
    assert_eq!(before.len(), 1);
    let report = ledger.verify(&[]).unwrap();
    assert!(report.ok, "{:?}", report.first_failure);
    ledger.close().unwrap();
    drop(ledger);

    folio::replay::rebuild_state(Arc::new(RealFs), &path, &mut |_, _| {}).unwrap();
    let report = folio::verify::verify_store(Arc::new(RealFs), &path, &[], &mut |_, _| {}).unwrap();
    assert!(report.ok, "{:?}", report.first_failure);
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.consumers().unwrap(), before);
    ledger.close().unwrap();
    drop(ledger);

    // Without its state file, the store rebuilds the cursors from the log on open.
    std::fs::remove_file(path.join(folio::state::STATE_FILE_NAME)).unwrap();
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.consumers().unwrap(), before);
    ledger.close().unwrap();
}

#[test]
fn verify_reports_a_cursor_that_differs_from_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    sale(&ledger, "1");
    ledger.ack("central", 2).unwrap();
    ledger.close().unwrap();
    drop(ledger);
    {
        let db = redb::Database::open(path.join(folio::state::STATE_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(folio::state::tables::CONSUMERS)
            .unwrap()
            .insert("central", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let report = folio::verify::verify_store(Arc::new(RealFs), &path, &[], &mut |_, _| {}).unwrap();
    assert!(!report.ok);
    let failure = report.first_failure.unwrap();
    assert_eq!(failure.kind, "state_mismatch");
    assert!(failure.detail.contains("consumers"), "{}", failure.detail);
}

#[test]
fn an_acknowledged_ack_survives_a_power_loss_at_every_step() {
    // Find how many mutating steps one ack takes, on a fresh run.
    let (prepare, ack_steps) = {
        let fs = workload::new_disk(7);
        let ledger = workload::create(&fs).unwrap();
        sale(&ledger, "1");
        sale(&ledger, "2");
        let before = fs.steps();
        ledger.ack("central", 3).unwrap();
        (before, fs.steps() - before)
    };
    assert!(ack_steps > 0);
    for step in 1..=ack_steps + 1 {
        let fs = workload::new_disk(7);
        let ledger = workload::create(&fs).unwrap();
        sale(&ledger, "1");
        sale(&ledger, "2");
        assert_eq!(fs.steps(), prepare, "the run is deterministic");
        fs.crash_at_step(prepare + step);
        let acked = ledger.ack("central", 3).is_ok();
        drop(ledger);
        for seed in 0..4 {
            let image = fs.power_loss_image(seed);
            let reopened = workload::open(&image).unwrap();
            let cursor = reopened.cursor("central").unwrap();
            if acked {
                assert_eq!(
                    cursor, 3,
                    "step {step} image {seed}: an acknowledged ack is lost"
                );
            } else {
                assert!(cursor == 0 || cursor == 3, "step {step}: cursor {cursor}");
            }
            let report = reopened.verify(&[]).unwrap();
            assert!(report.ok, "step {step}: {:?}", report.first_failure);
            // The cursor can always move on after recovery.
            reopened.ack("central", 3).unwrap();
            assert_eq!(reopened.cursor("central").unwrap(), 3);
            reopened.close().unwrap();
            drop(reopened);
            let again = workload::open(&image).unwrap();
            assert_eq!(
                again.cursor("central").unwrap(),
                3,
                "reopening changes nothing"
            );
            again.close().unwrap();
        }
    }
}

/// Serializes events as export writes them: one compact JSON object per line.
fn lines(events: &[folio::export::Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        serde_json::to_writer(&mut out, event).unwrap();
        out.push(b'\n');
    }
    out
}

#[test]
fn every_kind_of_entry_and_every_revert_chain_comes_out_of_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let books = every_entry(&path);
    let ledger = Ledger::open(&path).unwrap();
    let everything = BatchLimits {
        events_max: folio::outbox::BATCH_EVENTS_MAX,
        bytes_max: folio::outbox::BATCH_BYTES_MAX,
    };
    let batch = ledger.events_since(0, everything).unwrap();
    assert_eq!(batch.seq_last, books.head, "no entry stops the outbox");
    assert_eq!(
        batch.events.len() as u64,
        books.head - books.silent.len() as u64
    );
    let mut exported = Vec::new();
    export_log(ledger.log(), 0, &mut exported, &mut |_, _| {}).unwrap();
    assert!(lines(&batch.events) == exported);
    ledger.ack("central", batch.seq_last).unwrap();
    assert_eq!(ledger.consumers().unwrap()[1].lag, 0);
    ledger.close().unwrap();
}

#[test]
fn events_since_is_what_export_writes_for_the_same_range() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    busy_store(&ledger);
    let head = ledger.head().seq;
    for since in 0..=head {
        let mut exported = Vec::new();
        export_log(ledger.log(), since, &mut exported, &mut |_, _| {}).unwrap();
        let everything = BatchLimits {
            events_max: folio::outbox::BATCH_EVENTS_MAX,
            bytes_max: folio::outbox::BATCH_BYTES_MAX,
        };
        let batch = ledger.events_since(since, everything).unwrap();
        assert_eq!(
            batch.seq_last, head,
            "since {since}: the batch covers the rest"
        );
        assert!(lines(&batch.events) == exported, "since {since}");

        // The same in batches of two events, each read from the last one's seq_last.
        let mut cursor = since;
        let mut joined = Vec::new();
        let small = BatchLimits {
            events_max: 2,
            ..BatchLimits::default()
        };
        loop {
            let batch = ledger.events_since(cursor, small).unwrap();
            assert!(batch.events.len() <= 2);
            assert!(
                batch
                    .events
                    .iter()
                    .all(|e| e.seq > cursor && e.seq <= batch.seq_last)
            );
            joined.extend(lines(&batch.events));
            if batch.seq_last == cursor {
                break;
            }
            cursor = batch.seq_last;
        }
        assert_eq!(cursor, head);
        assert!(joined == exported, "since {since}, in batches");
    }
    let past = ledger
        .events_since(head + 1, BatchLimits::default())
        .unwrap_err();
    assert_eq!(past.code(), "SEQ_OUT_OF_RANGE");
    ledger.close().unwrap();
}

#[test]
fn a_batch_keeps_to_its_byte_bound_but_always_carries_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    for _ in 0..5 {
        sale(&ledger, "1");
    }
    let one_byte = BatchLimits {
        events_max: 100,
        bytes_max: 1,
    };
    let batch = ledger.events_since(0, one_byte).unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.seq_last, 2, "the store's creation and the first sale");
    let bad = BatchLimits {
        events_max: 0,
        bytes_max: 1,
    };
    assert_eq!(ledger.events_since(0, bad).unwrap_err().code(), "USAGE");
    ledger.close().unwrap();
}

#[test]
fn replay_refuses_an_ack_entry_the_ledger_would_not_write() {
    use folio::ledger::entry::{self, ConsumerAcked, EntryBody};
    use folio::log::{Log, LogOptions};
    // Entry 3 acking seq 3 (itself) or beyond; acking 0, which moves no cursor; or a consumer
    // name the grammar refuses (F-57).
    for (consumer, seq) in [("central", 3), ("central", 9), ("central", 0), ("a b", 2)] {
        let fs = workload::new_disk(3);
        let ledger = workload::create(&fs).unwrap();
        sale(&ledger, "1");
        ledger.close().unwrap();
        drop(ledger);
        let options = LogOptions {
            segment_bytes: 4096,
            ..LogOptions::default()
        };
        let store = std::path::Path::new(workload::STORE);
        let log = Log::open(Arc::new(fs.clone()), store, options).unwrap();
        let acked = ConsumerAcked {
            consumer: consumer.into(),
            seq,
            inserted_at: 0,
        };
        let body = entry::encode(&EntryBody::ConsumerAcked(acked)).unwrap();
        assert_eq!(log.append(&[body]).unwrap()[0].seq, 3);
        log.close().unwrap();
        drop(log);
        let error = workload::open(&fs).unwrap_err();
        assert_eq!(error.code(), "STATE_INCONSISTENT", "ack of {seq}: {error}");
    }
}
