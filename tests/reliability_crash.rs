//! Crash at every step (SQLite's crash loop): a deterministic workload runs on the simulated
//! disk, under both the log and redb, and is crashed at every mutating I/O step k in turn. For
//! each k, 8 power-loss images (the durable image plus a random subset of unsynced writes, torn
//! at 512 bytes) and the process-crash image (every write kept) are reopened and checked: every
//! acknowledged transaction and entry is there unchanged, nothing rejected is, at most the
//! in-flight operation was added, balances equal the sum of the present postings, verify
//! passes, and a second open changes nothing. The compound suite crashes again during that
//! recovery. `FOLIO_CRASH_FULL=1` runs the long workload (see docs/reliability.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod workload;
}

use std::collections::BTreeMap;

use folio::log::sim::SimFs;
use folio::{Ledger, Receipt};
use rust_decimal::Decimal;
use support::workload::{self, LEDGER, Op, Outcome, Trace};

/// Operations in the workload, and power-loss images per crash point.
fn sizes() -> (u64, u64) {
    if std::env::var_os("FOLIO_CRASH_FULL").is_some() {
        (300, 8)
    } else {
        (60, 8)
    }
}

/// The seq of the last entry an acknowledged operation wrote (1: the store's creation).
fn last_acknowledged_seq(trace: &Trace) -> u64 {
    let seqs = trace
        .outcomes
        .iter()
        .filter_map(|(_, outcome)| match outcome {
            Outcome::Receipt(receipt) => Some(receipt.id),
            Outcome::Entry(seq, _) => Some(*seq),
            Outcome::Rejected(_) => None,
        });
    seqs.max().unwrap_or(1)
}

fn same_transaction(found: &Receipt, acknowledged: &Receipt) -> bool {
    found.id == acknowledged.id
        && found.block_hash == acknowledged.block_hash
        && found.previous_hash == acknowledged.previous_hash
        && found.postings == acknowledged.postings
        && found.pre_commit_volumes == acknowledged.pre_commit_volumes
        && found.post_commit_volumes == acknowledged.post_commit_volumes
        && found.timestamp == acknowledged.timestamp
}

fn reference_of(op: &Op) -> Option<&str> {
    match op {
        Op::Post(request) => request.reference.as_deref(),
        Op::Revert(request) => request.reference.as_deref(),
        _ => None,
    }
}

/// Sum of the postings of every transaction present, per account.
fn balances_from_postings(ledger: &Ledger) -> BTreeMap<String, BTreeMap<String, Decimal>> {
    let mut balances: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for id in 2..=ledger.head().seq {
        let Some(tx) = ledger.transaction(LEDGER, id).unwrap() else {
            continue;
        };
        for posting in &tx.postings {
            *balances
                .entry(posting.source.clone())
                .or_default()
                .entry(posting.asset.clone())
                .or_default() -= posting.amount;
            *balances
                .entry(posting.destination.clone())
                .or_default()
                .entry(posting.asset.clone())
                .or_default() += posting.amount;
        }
    }
    for by_asset in balances.values_mut() {
        for amount in by_asset.values_mut() {
            *amount = amount.normalize();
        }
    }
    balances
}

/// Opens a recovered image and checks it against what the run acknowledged.
fn check_recovered(image: &SimFs, trace: &Trace, what: &str) {
    let ledger = match workload::open(image) {
        Ok(ledger) => ledger,
        // A crash inside `create` before its log directory existed: the store was never
        // acknowledged, so there may be none, but the directory must take a new `create`.
        Err(error) if trace.outcomes.is_empty() && error.code() == "NOT_A_STORE" => {
            if let Err(error) = workload::create(image) {
                panic!("{what}: neither open nor create after a torn create: {error}");
            }
            return;
        }
        Err(error) => panic!("{what}: reopen failed: {error}"),
    };
    for (op, outcome) in &trace.outcomes {
        match outcome {
            Outcome::Receipt(acknowledged) => {
                let found = ledger.transaction(LEDGER, acknowledged.id).unwrap();
                let found = found
                    .unwrap_or_else(|| panic!("{what}: acknowledged tx {} lost", acknowledged.id));
                assert!(
                    same_transaction(&found, acknowledged),
                    "{what}: tx {} changed",
                    acknowledged.id
                );
            }
            Outcome::Entry(seq, block_hash) => {
                assert_eq!(
                    ledger.log().read(*seq).unwrap().block_hash,
                    *block_hash,
                    "{what}: entry {seq}"
                );
            }
            Outcome::Rejected(code) => {
                if let Some(reference) = reference_of(op) {
                    let found = ledger.transaction_by_reference(LEDGER, reference).unwrap();
                    assert!(
                        found.is_none(),
                        "{what}: rejected ({code}) {reference} is present"
                    );
                }
            }
        }
    }
    let head = ledger.head().seq;
    let acknowledged = last_acknowledged_seq(trace);
    let in_flight_allowed = u64::from(trace.in_flight.is_some() || !trace.closed);
    assert!(
        head >= acknowledged && head <= acknowledged + in_flight_allowed,
        "{what}: head {head}, last acknowledged {acknowledged}"
    );
    assert_eq!(
        ledger.balances(LEDGER, "").unwrap(),
        balances_from_postings(&ledger),
        "{what}: balances"
    );
    let report = ledger.verify(&[]).unwrap();
    assert!(
        report.ok,
        "{what}: verify failed: {:?}",
        report.first_failure
    );
    ledger.close().unwrap();
    drop(ledger);
    let again = workload::open(image).unwrap();
    assert_eq!(again.head().seq, head, "{what}: second open moved the head");
    assert!(
        again.open_report().log_recovery.cuts.is_empty(),
        "{what}: second open cut again"
    );
    assert_eq!(
        again.open_report().entries_caught_up,
        0,
        "{what}: second open caught up again"
    );
}

/// Counts the steps of the workload without a crash.
fn total_steps(ops: &[Op]) -> u64 {
    let dry = workload::new_disk(1);
    let trace = workload::run(&dry, ops);
    assert!(
        trace.closed && trace.in_flight.is_none(),
        "the workload runs clean without faults"
    );
    dry.steps()
}

#[test]
fn a_crash_at_every_step_loses_nothing_acknowledged() {
    let (operations, images_per_point) = sizes();
    let ops = workload::operations(operations);
    let steps = total_steps(&ops);
    let (mut points, mut images) = (0u64, 0u64);
    for step in 1..=steps {
        let fs = workload::new_disk(1);
        fs.crash_at_step(step);
        let trace = workload::run(&fs, &ops);
        for seed in 0..images_per_point {
            check_recovered(
                &fs.power_loss_image(step * 1000 + seed),
                &trace,
                &format!("step {step} image {seed}"),
            );
            images += 1;
        }
        check_recovered(
            &fs.process_crash_image(),
            &trace,
            &format!("step {step} process crash"),
        );
        images += 1;
        points += 1;
    }
    println!("crash points: {points} of {steps} steps; images reopened and checked: {images}");
    assert_eq!(points, steps);
}

/// Steps one open of `image` takes (on a copy).
fn recovery_steps(image: &SimFs) -> u64 {
    let copy = image.process_crash_image();
    let opened = workload::open(&copy);
    let steps = copy.steps();
    drop(opened);
    steps
}

#[test]
fn a_second_crash_during_recovery_loses_nothing_either() {
    let (operations, _) = sizes();
    let ops = workload::operations(operations);
    let steps = total_steps(&ops);
    let (mut points, mut images) = (0u64, 0u64);
    // Every third crash point of the workload, crashed again at every step of its recovery.
    for step in (1..=steps).step_by(3) {
        let fs = workload::new_disk(1);
        fs.crash_at_step(step);
        let trace = workload::run(&fs, &ops);
        let first = fs.power_loss_image(step);
        for recovery_step in 1..=recovery_steps(&first) {
            let second = first.process_crash_image();
            second.crash_at_step(second.steps() + recovery_step);
            assert!(
                workload::open(&second).is_err(),
                "the recovery crash point was not reached"
            );
            let what = format!("step {step}, then recovery step {recovery_step}");
            check_recovered(
                &second.power_loss_image(step + recovery_step),
                &trace,
                &what,
            );
            images += 1;
        }
        points += 1;
    }
    println!(
        "compound crash points: {points} workload points; recovery crash images checked: {images}"
    );
    assert!(images > 0);
}
