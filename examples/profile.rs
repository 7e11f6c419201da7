//! Small, fixed workloads to profile with callgrind (instruction counts are repeatable on a
//! noisy machine, wall time is not). Each one is a single-threaded loop over the library, so
//! that `callgrind_annotate --inclusive=yes` shows where a transaction's instructions go.
//!
//! ```sh
//! cargo build --release --example profile
//! valgrind --tool=callgrind --callgrind-out-file=cg.bulk target/release/examples/profile bulk /tmp/p
//! callgrind_annotate --inclusive=yes cg.bulk | less
//! ```
//!
//! Workloads (`DIR` is made afresh, except for `verify`, which checks the store `bulk` left):
//! - `bulk DIR`: 50,000 transactions in batches of 1,000 (`post_batch`), from `world` to 10,000
//!   accounts, each with a reference;
//! - `each DIR`: 2,000 transactions, one `post` (one durable commit) each;
//! - `reads DIR`: 10,000 transactions, then 100,000 balance reads of random accounts;
//! - `verify DIR`: `verify_store` of the store in DIR.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a profiling run stops on any error"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::log::vfs::RealFs;
use folio::{Ledger, LedgerOptions, PostRequest, Posting};

const ACCOUNTS: u64 = 10_000;

fn sale(n: u64) -> PostRequest {
    let account = format!("users:{:05}", n % ACCOUNTS);
    let posting = Posting::new("world", account, "1.25", "USD/2").expect("a valid posting");
    PostRequest::new("main", vec![posting]).with_reference(format!("r{n}"))
}

/// A new store whose checkpoints come every `checkpoint_groups` groups only: the default's
/// one-second timer would fire far more often under callgrind, which runs the program about
/// fifty times slower, and charge each transaction for checkpoints a real run does not make.
fn fresh(dir: &Path) -> Ledger {
    let _ = std::fs::remove_dir_all(dir);
    let options = LedgerOptions {
        checkpoint_interval: Duration::MAX,
        ..LedgerOptions::default()
    };
    Ledger::create_with(Arc::new(RealFs), dir, options).expect("create the store")
}

fn post_batches(ledger: &Ledger, transactions: u64, batch: u64) {
    for first in (0..transactions).step_by(batch as usize) {
        let requests = (first..(first + batch).min(transactions))
            .map(sale)
            .collect();
        for result in ledger.post_batch(requests) {
            result.expect("every transaction posts");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(workload), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: profile (bulk|each|reads|verify) DIR");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let started = Instant::now();
    let count = match workload.as_str() {
        "bulk" => {
            let ledger = fresh(dir);
            post_batches(&ledger, 50_000, 1_000);
            ledger.close().expect("close");
            50_000
        }
        "each" => {
            let ledger = fresh(dir);
            for n in 0..2_000 {
                ledger.post(sale(n)).expect("the transaction posts");
            }
            2_000
        }
        "reads" => {
            let ledger = fresh(dir);
            post_batches(&ledger, 10_000, 1_000);
            let started = Instant::now();
            for n in 0..100_000u64 {
                let account = format!("users:{:05}", (n * 7_919) % ACCOUNTS);
                ledger.balance("main", &account).expect("a balance");
            }
            let seconds = started.elapsed().as_secs_f64();
            println!("reads: {:.0}/s", 100_000.0 / seconds);
            return;
        }
        "verify" => {
            let vfs = Arc::new(folio::log::vfs::RealFs);
            let report =
                folio::verify::verify_store(vfs, dir, &[], &mut |_, _| {}).expect("verify runs");
            assert!(report.ok, "the store verifies");
            report.entries
        }
        other => {
            eprintln!("unknown workload {other}");
            std::process::exit(2);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{workload}: {count} in {seconds:.2} s = {:.0}/s",
        count as f64 / seconds
    );
}
