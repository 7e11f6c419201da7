//! The ledger's operations one at a time, on the real file system: `post` (one durable commit
//! each), `post_batch` of 100 and of 1,000, a balance read, and rebuilding and verifying the
//! state of a 10,000-transaction store. Transactions are single `USD/2` postings from `world`
//! to 10,000 accounts, each with a unique reference, as in `benches/compare.rs`. Stores live in
//! temporary directories under `target/tmp`; making them is not timed.
//!
//! Run: `cargo bench --bench ledger` (about two minutes). `benches/compare.rs` sets these
//! operations side by side with SQLite and redb; these are the per-operation figures to watch
//! from one commit to the next.

#![allow(clippy::unwrap_used, reason = "a bench aborts on any error")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use folio::log::vfs::RealFs;
use folio::{Ledger, PostRequest, Posting};

const ACCOUNTS: u64 = 10_000;

/// A fresh reference for every request of the run, across samples.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn sale() -> PostRequest {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let account = format!("users:{:05}", n % ACCOUNTS);
    let posting = Posting::new("world", account, "1.25", "USD/2").unwrap();
    PostRequest::new("main", vec![posting]).with_reference(format!("r{n}"))
}

fn fresh_store() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    (dir, ledger)
}

fn post_batch(ledger: &Ledger, size: u64) {
    let requests = (0..size).map(|_| sale()).collect();
    for result in ledger.post_batch(requests) {
        result.unwrap();
    }
}

fn posting(c: &mut Criterion) {
    let mut group = c.benchmark_group("post");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_per_commit", |b| {
        let (_dir, ledger) = fresh_store();
        b.iter(|| ledger.post(sale()).unwrap());
    });
    for size in [100u64, 1_000] {
        group.throughput(Throughput::Elements(size));
        group.bench_with_input(BenchmarkId::new("batch", size), &size, |b, &size| {
            let (_dir, ledger) = fresh_store();
            b.iter(|| post_batch(&ledger, size));
        });
    }
    group.finish();
}

fn reading(c: &mut Criterion) {
    let (_dir, ledger) = fresh_store();
    post_batch(&ledger, ACCOUNTS);
    let mut n = 0u64;
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1));
    group.bench_function("balance", |b| {
        b.iter(|| {
            n = (n + 7_919) % ACCOUNTS;
            ledger.balance("main", &format!("users:{n:05}")).unwrap()
        });
    });
    group.finish();
}

/// A closed store of `transactions` transactions.
fn store_of(transactions: u64) -> tempfile::TempDir {
    let (dir, ledger) = fresh_store();
    for _ in 0..transactions / 1_000 {
        post_batch(&ledger, 1_000);
    }
    ledger.close().unwrap();
    dir
}

fn audit(c: &mut Criterion) {
    const TRANSACTIONS: u64 = 10_000;
    let dir = store_of(TRANSACTIONS);
    let store = dir.path().join("store");
    let mut group = c.benchmark_group("audit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(TRANSACTIONS + 1));
    group.bench_function("replay_state", |b| {
        b.iter_custom(|iters| time(iters, || rebuild(&store)));
    });
    group.bench_function("verify", |b| {
        b.iter_custom(|iters| time(iters, || verify(&store)));
    });
    group.finish();
}

fn time(iters: u64, mut run: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        run();
    }
    started.elapsed()
}

fn rebuild(store: &Path) {
    folio::replay::rebuild_state(Arc::new(RealFs), store, &mut |_, _| {}).unwrap();
}

fn verify(store: &Path) {
    let report = folio::verify::verify_store(Arc::new(RealFs), store, &[], &mut |_, _| {});
    assert!(report.unwrap().ok);
}

criterion_group!(benches, posting, reading, audit);
criterion_main!(benches);
