//! The `open_segment` fuzz target's check, run over its checked-in seed corpus
//! (`fuzz/corpus_seed/open_segment/`) on every `cargo test`: each file, as the only segment of
//! a store, either refuses to open or opens (read-only and read-write alike) to a log whose
//! entries all read back gapless up to the head; recovery is idempotent; nothing panics.
//!
//! The seeds are a valid segment written by the real code and the shapes of damage made from
//! it; `write_seed_corpus` (ignored) regenerates them. Inputs the fuzzer found to fail stay
//! here as named tests.

#![allow(clippy::unwrap_used, reason = "a test fails on any error")]

mod support {
    pub mod open_segment_check;
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio::log::format::{FORMAT_VERSION, HEADER_BYTES, segment_name};
use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::log::{LOG_DIR_NAME, Log, LogOptions};
use support::open_segment_check::{SEGMENT_BYTES, STORE, check_open_segment};

const SEED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus_seed/open_segment");

/// Each seed's name and the head seq it opens to (`None`: it refuses to open).
const SEEDS_EXPECTED: &[(&str, Option<u64>)] = &[
    ("valid_two_batches", Some(2)),
    ("valid_one_batch_of_two", Some(2)),
    ("zero_tail", Some(2)),
    ("garbage_tail", Some(2)),
    ("empty", Some(0)),
    ("all_zeros", Some(0)),
    ("header_only", Some(0)),
    ("truncated_in_header", None),
    ("truncated_in_first_record", Some(0)),
    ("truncated_in_second_prefix", Some(1)),
    ("truncated_in_second_body", Some(1)),
    ("flipped_header_byte", None),
    ("flipped_first_body_byte", None),
    ("flipped_first_body_byte_one_batch", Some(0)),
    ("flipped_last_crc_byte", Some(1)),
    ("wrong_version", None),
    ("wrong_version_stale_crc", None),
    ("header_first_seq_two", None),
];

fn seed_files() -> BTreeMap<String, Vec<u8>> {
    let entries =
        std::fs::read_dir(SEED_DIR).unwrap_or_else(|error| panic!("read {SEED_DIR}: {error}"));
    let mut seeds = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        seeds.insert(name, std::fs::read(&path).unwrap());
    }
    seeds
}

#[test]
fn every_seed_opens_to_a_readable_log_or_refuses() {
    let seeds = seed_files();
    assert!(
        seeds.len() >= SEEDS_EXPECTED.len(),
        "seeds missing: {:?}",
        seeds.keys()
    );
    for (name, bytes) in &seeds {
        let outcome = std::panic::catch_unwind(|| check_open_segment(bytes));
        assert!(outcome.is_ok(), "seed {name} failed the check");
    }
}

#[test]
fn each_named_seed_opens_to_its_expected_head() {
    let seeds = seed_files();
    for (name, expected) in SEEDS_EXPECTED {
        let bytes = seeds
            .get(*name)
            .unwrap_or_else(|| panic!("seed {name} missing from {SEED_DIR}"));
        assert_eq!(check_open_segment(bytes), *expected, "seed {name}");
    }
}

/// Regenerates the seed corpus from the real writer:
/// `cargo test --test fuzz_corpus -- --ignored write_seed_corpus`. Deterministic, so a rerun
/// changes no file unless the format changed.
#[test]
#[ignore = "writes fuzz/corpus_seed/open_segment/"]
fn write_seed_corpus() {
    let dir = PathBuf::from(SEED_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds_generated() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A segment written by the real log: `batches` appended on the simulated disk, then closed
/// (trimmed to its records) or not (preallocated zeros after them).
fn segment_written(batches: &[&[&[u8]]], close: bool) -> Vec<u8> {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    let options = LogOptions {
        segment_bytes: SEGMENT_BYTES,
        ..LogOptions::default()
    };
    let log = Log::create(Arc::new(fs.clone()), Path::new(STORE), options).unwrap();
    for batch in batches {
        log.append(batch).unwrap();
    }
    if close {
        log.close().unwrap();
    }
    let path = Path::new(STORE).join(LOG_DIR_NAME).join(segment_name(1));
    fs.file_bytes(&path).unwrap()
}

/// Recomputes a record's crc after its payload was edited (the record starts at `at`).
fn fix_record_crc(bytes: &mut [u8], at: usize) {
    let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&bytes[at + 8..at + 8 + length]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the header's crc after a field was edited.
fn fix_header_crc(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[0..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// The bodies of the two entries of the seed segments.
const FIRST_BODY: &[u8] = &[b'a'; 40];
const SECOND_BODY: &[u8] = &[b'b'; 60];
/// Where the second record starts: after the header and the first record (frame prefix 8,
/// fixed payload 80, body).
const SECOND_AT: usize = HEADER_BYTES + 8 + 80 + FIRST_BODY.len();

/// Two entries, each appended alone (two batches), closed.
fn valid_segment() -> Vec<u8> {
    segment_written(&[&[FIRST_BODY], &[SECOND_BODY]], true)
}

fn seeds_generated() -> Vec<(&'static str, Vec<u8>)> {
    let valid = valid_segment();
    let one_batch = segment_written(&[&[FIRST_BODY, SECOND_BODY]], true);
    let zero_tail = segment_written(&[&[FIRST_BODY], &[SECOND_BODY]], false);
    let second_at = SECOND_AT;
    let with = |edit: &dyn Fn(&mut Vec<u8>), from: &[u8]| {
        let mut bytes = from.to_vec();
        edit(&mut bytes);
        bytes
    };
    let mut garbage = valid.clone();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    garbage.extend((0..100).map(|_| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng.to_le_bytes()[0] | 1
    }));
    vec![
        ("valid_two_batches", valid.clone()),
        ("valid_one_batch_of_two", one_batch.clone()),
        ("zero_tail", zero_tail),
        ("garbage_tail", garbage),
        ("empty", Vec::new()),
        ("all_zeros", vec![0; SEGMENT_BYTES as usize]),
        ("header_only", valid[..HEADER_BYTES].to_vec()),
        ("truncated_in_header", valid[..40].to_vec()),
        (
            "truncated_in_first_record",
            valid[..HEADER_BYTES + 50].to_vec(),
        ),
        (
            "truncated_in_second_prefix",
            valid[..second_at + 4].to_vec(),
        ),
        (
            "truncated_in_second_body",
            valid[..valid.len() - 10].to_vec(),
        ),
        ("flipped_header_byte", with(&|b| b[20] ^= 0x10, &valid)),
        (
            "flipped_first_body_byte",
            with(&|b| b[second_at - 5] ^= 0x01, &valid),
        ),
        (
            "flipped_first_body_byte_one_batch",
            with(&|b| b[second_at - 5] ^= 0x01, &one_batch),
        ),
        (
            "flipped_last_crc_byte",
            with(&|b| b[second_at + 4] ^= 0x80, &valid),
        ),
        (
            "wrong_version",
            with(
                &|b| {
                    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
                    fix_header_crc(b);
                },
                &valid,
            ),
        ),
        ("wrong_version_stale_crc", with(&|b| b[8] ^= 0x08, &valid)),
        (
            "header_first_seq_two",
            with(
                &|b| {
                    b[16..24].copy_from_slice(&2u64.to_le_bytes());
                    fix_header_crc(b);
                },
                &valid,
            ),
        ),
    ]
}

/// Not one a fuzzer finds (it would have to repair a crc): a body edited and its record's crc
/// recomputed frames correctly, so only the recomputed blake3 hash shows the edit, and open
/// must refuse the segment rather than carry a head that no body produced.
#[test]
fn record_with_edited_body_and_fixed_crc_refuses_to_open() {
    let mut bytes = valid_segment();
    bytes[SECOND_AT - 5] ^= 0x01;
    fix_record_crc(&mut bytes, HEADER_BYTES);
    assert_eq!(check_open_segment(&bytes), None);
}
