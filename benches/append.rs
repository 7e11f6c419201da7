//! Append throughput of the log on the real file system: batches of 1, 100 and 1000 entries of
//! 200-byte bodies, each batch one write and one `fdatasync`, reported in entries per second.
//! Every sample appends to a fresh log (default 16 MiB segments, so a long sample includes the
//! occasional roll) in a temporary directory under `target/tmp`; creating it is not timed.
//!
//! Run: `cargo bench --bench append` (about 30 seconds; the figures depend on the disk's
//! `fdatasync` latency far more than on the CPU).

#![allow(clippy::unwrap_used, reason = "a bench aborts on any error")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use folio::log::vfs::RealFs;
use folio::log::{Log, LogOptions};

/// Bytes of each entry's body.
const BODY_BYTES: usize = 200;
/// Entries per append (per `fdatasync`).
const BATCH_SIZES: [usize; 3] = [1, 100, 1000];

fn bodies(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|index| (0..BODY_BYTES).map(|at| (index + at) as u8).collect())
        .collect()
}

/// Appends `batch` `iters` times to a new log and returns the time the appends took.
fn append_to_fresh_log(batch: &[Vec<u8>], iters: u64) -> Duration {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let log = Log::create(Arc::new(RealFs), dir.path(), LogOptions::default()).unwrap();
    let started = Instant::now();
    for _ in 0..iters {
        log.append(batch).unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(log.head().seq, iters * batch.len() as u64);
    elapsed
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for batch_size in BATCH_SIZES {
        let batch = bodies(batch_size);
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(
            BenchmarkId::new("batch_of_200_byte_bodies", batch_size),
            &batch,
            |b, batch| b.iter_custom(|iters| append_to_fresh_log(batch, iters)),
        );
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
