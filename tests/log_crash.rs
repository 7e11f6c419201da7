//! Crash safety of the log, as a property: random batches are appended through the simulated
//! file system, which crashes at a random step; after reopening any power-loss image (or the
//! process-crash image) the log holds exactly a prefix of what was appended, and that prefix
//! contains every entry whose append returned Ok. A second open changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::path::Path;
use std::sync::Arc;

use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::log::{Log, LogOptions};
use proptest::prelude::*;

const STORE: &str = "/store";

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        ..LogOptions::default()
    }
}

fn open(fs: &SimFs) -> Log {
    match Log::open(Arc::new(fs.clone()), Path::new(STORE), options()) {
        Ok(log) => log,
        Err(error) => panic!("recovery failed: {error}"),
    }
}

/// Runs the batches until the crash; returns every body attempted (in order) and how many of
/// them were acknowledged.
fn run_until_crash(fs: &SimFs, batches: &[Vec<Vec<u8>>]) -> (Vec<Vec<u8>>, usize) {
    let mut attempted = Vec::new();
    let mut acknowledged = 0;
    let Ok(log) = Log::create(Arc::new(fs.clone()), Path::new(STORE), options()) else {
        return (attempted, acknowledged);
    };
    for batch in batches {
        attempted.extend(batch.iter().cloned());
        match log.append(batch) {
            Ok(appended) => {
                acknowledged = attempted.len();
                assert_eq!(appended.len(), batch.len());
            }
            Err(_) => break,
        }
    }
    if !fs.crashed() {
        let _ = log.close();
    }
    (attempted, acknowledged)
}

fn check_image(image: &SimFs, attempted: &[Vec<u8>], acknowledged: usize) {
    let log = open(image);
    let found: Vec<Vec<u8>> = log.iter_from(1).map(|entry| entry.unwrap().body).collect();
    assert!(
        found.len() >= acknowledged,
        "lost acknowledged entries: {} < {acknowledged}",
        found.len()
    );
    assert!(found.len() <= attempted.len());
    assert_eq!(
        found[..],
        attempted[..found.len()],
        "not a prefix of what was appended"
    );
    let head = log.head();
    drop(log);
    let again = open(image);
    assert_eq!(again.head(), head);
    assert!(
        again.recovery_report().cuts.is_empty(),
        "second open cut again"
    );
}

fn batches_strategy() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    let body = proptest::collection::vec(any::<u8>(), 0..300);
    let batch = proptest::collection::vec(body, 1..12);
    proptest::collection::vec(batch, 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_at_any_step_leaves_a_prefix_holding_every_acknowledged_entry(
        batches in batches_strategy(),
        crash_fraction in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        // A dry run counts the steps, so that the crash lands inside the workload.
        let dry = SimFs::new(seed);
        dry.create_dir_all(Path::new(STORE)).unwrap();
        run_until_crash(&dry, &batches);
        let steps = dry.steps();

        let fs = SimFs::new(seed);
        fs.create_dir_all(Path::new(STORE)).unwrap();
        fs.crash_at_step(1 + (crash_fraction * steps as f64) as u64);
        let (attempted, acknowledged) = run_until_crash(&fs, &batches);
        if attempted.is_empty() {
            return Ok(()); // crashed inside create: nothing was ever acknowledged
        }
        for image_seed in 0..4 {
            check_image(&fs.power_loss_image(seed ^ image_seed), &attempted, acknowledged);
        }
        check_image(&fs.process_crash_image(), &attempted, acknowledged);
    }
}
