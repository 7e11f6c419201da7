//! Faults (SQLite's I/O-error loop and friends): fail I/O call N, for N = 1, 2, ... until the
//! workload runs clean, once failing only that call and once every call from N on. No panic,
//! a typed error, nothing acknowledged lost, and after the fault clears and the store reopens,
//! verify passes. Also: a failed fsync (outcome unknown, writes refused until reopened, a retry
//! with the same reference settles it), a full disk on a segment roll (the group fails whole,
//! the store stays usable), flipped bits on read, a crash during replay, and a log shorter
//! than the state's watermark.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod workload;
}

use std::path::Path;
use std::sync::Arc;

use folio::log::sim::{Fault, FaultError, OpKind, SimFs};
use folio::{Ledger, PostRequest, Posting};
use support::workload::{self, LEDGER, Outcome, STORE, Trace};

/// Reopens after a fault cleared and checks that nothing acknowledged was lost.
fn check_after_fault(fs: &SimFs, trace: &Trace, what: &str) {
    fs.clear_fault();
    let ledger = match workload::open(fs) {
        Ok(ledger) => ledger,
        Err(error) if trace.outcomes.is_empty() => {
            // The fault hit the store's creation, which never returned: nothing to keep.
            assert!(
                matches!(error.code(), "NOT_A_STORE" | "STORAGE" | "LOG_CORRUPT"),
                "{what}: {error}"
            );
            if error.code() == "NOT_A_STORE" {
                // The create stopped before its log existed: the directory takes a new one.
                if let Err(error) = workload::create(fs) {
                    panic!("{what}: neither open nor create after a failed create: {error}");
                }
            }
            return;
        }
        Err(error) => panic!("{what}: reopen failed: {error}"),
    };
    for (_, outcome) in &trace.outcomes {
        match outcome {
            Outcome::Receipt(receipt) => {
                let found = ledger.transaction(LEDGER, receipt.id).unwrap();
                assert_eq!(
                    found.map(|tx| tx.block_hash),
                    Some(receipt.block_hash),
                    "{what}: tx {}",
                    receipt.id
                );
            }
            Outcome::Entry(seq, hash) => {
                assert_eq!(ledger.log().read(*seq).unwrap().block_hash, *hash, "{what}")
            }
            Outcome::Rejected(_) => {}
        }
    }
    let report = ledger.verify(&[]).unwrap();
    assert!(report.ok, "{what}: {:?}", report.first_failure);
    ledger.close().unwrap();
}

fn io_error_loop(persist: bool) -> u64 {
    let ops = workload::operations(40);
    let mut faults_hit = 0;
    for nth in 1.. {
        let fs = workload::new_disk(2);
        fs.inject(Fault {
            op: None,
            nth,
            persist,
            error: FaultError::Io,
        });
        let trace = workload::run(&fs, &ops);
        if trace.closed && trace.in_flight.is_none() && fs.steps() < nth {
            break; // the workload finished before call N: every call has been failed once
        }
        faults_hit += 1;
        check_after_fault(
            &fs,
            &trace,
            &format!("I/O call {nth} failing (persist: {persist})"),
        );
    }
    faults_hit
}

#[test]
fn failing_any_one_io_call_loses_nothing_acknowledged() {
    let faults = io_error_loop(false);
    println!("I/O calls failed once: {faults}");
    assert!(faults > 50);
}

#[test]
fn failing_every_io_call_from_n_on_loses_nothing_acknowledged() {
    let faults = io_error_loop(true);
    println!("I/O calls failed from N on: {faults}");
    assert!(faults > 50);
}

fn sale(reference: &str, amount: &str) -> PostRequest {
    PostRequest::new(
        LEDGER,
        vec![Posting::new("world", "till:1", amount, "USD/2").unwrap()],
    )
    .with_reference(reference)
}

#[test]
fn a_failed_fsync_is_an_unknown_outcome_settled_by_retrying_the_reference() {
    let fs = workload::new_disk(3);
    let ledger = workload::create(&fs).unwrap();
    ledger.post(sale("a", "1.00")).unwrap();
    fs.inject(Fault {
        op: Some(OpKind::Sync),
        nth: 1,
        persist: false,
        error: FaultError::Io,
    });
    let error = ledger.post(sale("b", "2.00")).unwrap_err();
    assert_eq!(error.code(), "OUTCOME_UNKNOWN");
    // The ledger refuses writes until reopened, even though the disk works again.
    assert_eq!(
        ledger.post(sale("c", "3.00")).unwrap_err().code(),
        "POISONED"
    );
    drop(ledger);
    let ledger = workload::open(&fs).unwrap();
    let retried = ledger.post(sale("b", "2.00")).unwrap();
    // The simulated write reached the page cache, so it survived: the retry replays it.
    assert!(retried.replayed);
    assert_eq!(
        ledger.balance(LEDGER, "till:1").unwrap()["USD/2"].to_string(),
        "3"
    );
    // A power loss instead would have dropped the unsynced write: the retry posts it afresh.
    let fs = workload::new_disk(4);
    let ledger = workload::create(&fs).unwrap();
    // A first post grows the state file (redb syncs when it grows); the next sync is the log's.
    ledger.post(sale("a", "1.00")).unwrap();
    fs.inject(Fault {
        op: Some(OpKind::Sync),
        nth: 1,
        persist: false,
        error: FaultError::Io,
    });
    let error = ledger.post(sale("b", "2.00")).unwrap_err();
    assert_eq!(error.code(), "OUTCOME_UNKNOWN", "{error}");
    let steps = fs.steps();
    fs.crash_at_step(steps + 1);
    drop(ledger);
    let image = fs.power_loss_image(1);
    let ledger = workload::open(&image).unwrap();
    let retried = ledger.post(sale("b", "2.00")).unwrap();
    assert!(!retried.replayed);
    assert_eq!(
        ledger.balance(LEDGER, "till:1").unwrap()["USD/2"].to_string(),
        "3"
    );
}

#[test]
fn a_full_disk_on_a_segment_roll_fails_the_group_whole_and_the_store_goes_on() {
    let fs = workload::new_disk(5);
    let ledger = workload::create(&fs).unwrap();
    let segments = ledger.stats().unwrap().segments;
    fs.inject(Fault {
        op: Some(OpKind::Allocate),
        nth: 1,
        persist: true,
        error: FaultError::NoSpace,
    });
    let mut failed_group = None;
    for round in 0..100 {
        let batch: Vec<PostRequest> = (0..20)
            .map(|n| sale(&format!("r{round}-{n}"), "1.00"))
            .collect();
        let results = ledger.post_batch(batch);
        if results.iter().any(Result::is_err) {
            failed_group = Some((round, results));
            break;
        }
    }
    let (round, results) = failed_group.expect("the log never rolled");
    assert!(
        results.iter().all(|result| result
            .as_ref()
            .is_err_and(|error| error.code() == "NO_SPACE")),
        "the group fails as a whole"
    );
    let found = ledger
        .transaction_by_reference(LEDGER, &format!("r{round}-0"))
        .unwrap();
    assert!(
        found.is_none(),
        "nothing of the failed group is in the store"
    );
    fs.clear_fault();
    let results = ledger.post_batch(
        (0..20)
            .map(|n| sale(&format!("r{round}-{n}"), "1.00"))
            .collect(),
    );
    assert!(
        results.iter().all(Result::is_ok),
        "the store is usable once space returns"
    );
    assert!(ledger.stats().unwrap().segments > segments);
    assert!(ledger.verify(&[]).unwrap().ok);
    ledger.close().unwrap();
}

#[test]
fn flipped_bits_on_read_are_detected_never_used() {
    let fs = workload::new_disk(6);
    let ledger = workload::create(&fs).unwrap();
    let receipt = ledger.post(sale("a", "1.00")).unwrap();
    let mut detected = 0;
    for _ in 0..50 {
        fs.flip_next_reads(1);
        match ledger.transaction(LEDGER, receipt.id) {
            Ok(Some(found)) => assert_eq!(found.block_hash, receipt.block_hash),
            Ok(None) => panic!("a flipped bit made a transaction vanish"),
            Err(_) => detected += 1,
        }
    }
    // Reads of the active log segment go to the disk each time; a flip there is always caught.
    assert!(detected > 0);
    ledger.close().unwrap();
    drop(ledger);
    fs.flip_next_reads(1);
    match workload::open(&fs) {
        Ok(ledger) => assert!(
            ledger.verify(&[]).unwrap().ok,
            "the flipped read was not in data that is kept"
        ),
        Err(error) => assert!(!error.is_rejection(), "{error}"),
    }
}

#[test]
fn a_crash_during_replay_leaves_the_old_state_or_the_new_one() {
    let ops = workload::operations(60);
    let fs = workload::new_disk(7);
    let trace = workload::run(&fs, &ops);
    assert!(trace.closed);
    let replay = |fs: &SimFs| {
        folio::replay::rebuild_state(Arc::new(fs.clone()), Path::new(STORE), &mut |_, _| {})
    };
    let dry = fs.process_crash_image();
    let before = dry.steps();
    replay(&dry).unwrap();
    let steps = dry.steps() - before;
    for step in 1..=steps {
        let image = fs.process_crash_image();
        image.crash_at_step(image.steps() + step);
        assert!(replay(&image).is_err());
        for seed in 0..4 {
            let recovered = image.power_loss_image(seed);
            let ledger = workload::open(&recovered)
                .unwrap_or_else(|e| panic!("replay crash at {step}: {e}"));
            assert!(
                ledger.open_report().entries_caught_up == 0,
                "the state was complete, old or new"
            );
            assert!(ledger.verify(&[]).unwrap().ok);
        }
    }
    println!("replay crash points: {steps}");
}

#[test]
fn a_log_shorter_than_the_state_is_refused_as_log_behind_state() {
    let fs = workload::new_disk(8);
    let ledger = workload::create(&fs).unwrap();
    for n in 0..5 {
        ledger.post(sale(&format!("s{n}"), "1.00")).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    // Cut the last record off the log; the state (watermark 6) stays.
    let path = Path::new(STORE)
        .join("log")
        .join(folio::log::format::segment_name(1));
    let mut bytes = fs.file_bytes(&path).unwrap();
    let log = folio::log::Log::open(
        Arc::new(fs.clone()),
        Path::new(STORE),
        folio::log::LogOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let last = log.read(6).unwrap();
    drop(log);
    bytes.truncate(
        bytes.len()
            - (folio::log::format::FRAME_PREFIX_BYTES
                + folio::log::format::PAYLOAD_FIXED_BYTES
                + last.body.len()),
    );
    fs.set_file_bytes(&path, bytes);
    let error =
        Ledger::open_with(Arc::new(fs.clone()), Path::new(STORE), workload::options()).unwrap_err();
    assert_eq!(error.code(), "LOG_BEHIND_STATE", "{error}");
    assert!(error.to_string().contains("log behind state"));
}
