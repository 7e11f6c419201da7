//! Read throughput of the log on the real file system, over a log of 100,000 entries of
//! 200-byte bodies in 4 MiB segments (six sealed, read through a memory map, and the active
//! one, read with positional reads): `iter_from(1)` over every entry, and `read(seq)` at
//! random seqs. Every entry read is checked (crc, seq, chain, recomputed blake3 hash). The log
//! is built once, closed and reopened, in a temporary directory under `target/tmp`.
//!
//! Run: `cargo bench --bench read` (about 30 seconds).

#![allow(clippy::unwrap_used, reason = "a bench aborts on any error")]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use folio::log::vfs::RealFs;
use folio::log::{Log, LogOptions};

const ENTRIES: u64 = 100_000;
const BODY_BYTES: usize = 200;
const BATCH_ENTRIES: u64 = 1000;
/// Small enough that the log spans several segments (288 bytes a record: about 14,500 each).
const SEGMENT_BYTES: u64 = 4 << 20;

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: SEGMENT_BYTES,
        ..LogOptions::default()
    }
}

/// Writes the log, closes it and opens it again, so that reads go through what `open` built.
fn build_log(store_dir: &Path) -> Log {
    let log = Log::create(Arc::new(RealFs), store_dir, options()).unwrap();
    for batch in 0..ENTRIES / BATCH_ENTRIES {
        let bodies: Vec<Vec<u8>> = (0..BATCH_ENTRIES)
            .map(|index| {
                let seed = (batch * BATCH_ENTRIES + index) as usize;
                (0..BODY_BYTES).map(|at| (seed + at) as u8).collect()
            })
            .collect();
        log.append(&bodies).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let log = Log::open(Arc::new(RealFs), store_dir, options()).unwrap();
    let stats = log.stats();
    assert_eq!(stats.entries, ENTRIES);
    assert!(
        stats.segments >= 4,
        "want several sealed segments: {stats:?}"
    );
    log
}

/// splitmix64: random seqs without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let log = build_log(dir.path());
    let mut group = c.benchmark_group("read");
    group.warm_up_time(Duration::from_secs(1));

    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(ENTRIES));
    group.bench_function("iter_from_1_all_100k", |b| {
        b.iter(|| {
            let mut entries = 0u64;
            for entry in log.iter_from(1) {
                black_box(entry.unwrap());
                entries += 1;
            }
            assert_eq!(entries, ENTRIES);
        })
    });

    let mut rng = 7u64;
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group.bench_function("read_random_seq", |b| {
        b.iter(|| {
            let seq = next_random(&mut rng) % ENTRIES + 1;
            black_box(log.read(seq).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
