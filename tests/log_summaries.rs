//! Segment summaries (`docs/format.md` section 10): open reads no sealed record, only each sealed
//! segment's header and summary (F-71); a summary that is missing, torn, fails its crc or
//! disagrees with its segment is rebuilt from the segment, never trusted, and never hides
//! damage from verify; a store without summaries (as a version 3 build left it) opens and gets
//! them once; a crash at any step of a roll leaves a log that opens with every acknowledged
//! entry; reads through the sparse index return every entry.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod counting_fs;
    pub mod workload;
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio::log::format::{self, segment_name};
use folio::log::sim::SimFs;
use folio::log::summary::{Summary, summary_name};
use folio::log::vfs::{OpenMode, Vfs};
use folio::log::{CorruptionKind, Log, LogError, LogOptions};
use support::counting_fs::CountingFs;

const STORE: &str = "/store";

fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        ..LogOptions::default()
    }
}

fn read_only(segment_bytes: u64) -> LogOptions {
    LogOptions {
        read_only: true,
        ..options(segment_bytes)
    }
}

fn scanning(segment_bytes: u64) -> LogOptions {
    LogOptions {
        read_only: true,
        scan_sealed: true,
        ..options(segment_bytes)
    }
}

fn open(vfs: Arc<dyn Vfs>, options: LogOptions) -> Result<Log, LogError> {
    Log::open(vfs, Path::new(STORE), options)
}

fn body(seq: u64) -> Vec<u8> {
    format!("entry {seq}, padded to a few dozen bytes").into_bytes()
}

fn log_dir() -> PathBuf {
    Path::new(STORE).join("log")
}

/// A closed log of `count` entries in batches of `batch`, rolled at `segment_bytes`.
fn store(count: u64, batch: u64, segment_bytes: u64) -> SimFs {
    let fs = SimFs::new(5);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    let log = Log::create(
        Arc::new(fs.clone()),
        Path::new(STORE),
        options(segment_bytes),
    )
    .unwrap();
    let mut seq = 1;
    while seq <= count {
        let bodies: Vec<Vec<u8>> = (seq..(seq + batch).min(count + 1)).map(body).collect();
        seq += bodies.len() as u64;
        log.append(&bodies).unwrap();
    }
    log.close().unwrap();
    fs
}

/// First seqs of the segments, in order.
fn segment_seqs(fs: &SimFs) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs
        .list(&log_dir())
        .unwrap()
        .iter()
        .filter_map(|name| format::parse_segment_name(name))
        .collect();
    seqs.sort();
    seqs
}

/// Every summary file and its bytes.
fn summaries(fs: &SimFs) -> BTreeMap<String, Vec<u8>> {
    fs.list(&log_dir())
        .unwrap()
        .into_iter()
        .filter(|name| name.ends_with(".sum"))
        .map(|name| {
            let bytes = fs.file_bytes(&log_dir().join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

fn summary_path(first_seq: u64) -> PathBuf {
    log_dir().join(summary_name(first_seq))
}

fn all_bodies(log: &Log) -> Vec<Vec<u8>> {
    log.iter_from(1).map(|entry| entry.unwrap().body).collect()
}

#[test]
fn open_reads_only_the_header_of_each_sealed_segment() {
    let fs = store(300, 10, 4096);
    let seqs = segment_seqs(&fs);
    assert!(seqs.len() >= 5, "{seqs:?}");
    let counting = CountingFs::new(Arc::new(fs.clone()));
    for options in [options(4096), read_only(4096)] {
        counting.clear();
        let log = open(Arc::new(counting.clone()), options).unwrap();
        assert_eq!(log.head().seq, 300);
        let read = counting.read_bytes();
        for seq in &seqs[..seqs.len() - 1] {
            let path = log_dir().join(segment_name(*seq));
            assert_eq!(
                read.get(&path).copied().unwrap_or(0),
                format::HEADER_BYTES as u64,
                "F-71: open read more than the header of sealed segment {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_log_whose_sealed_records_are_zeroed_opens_but_verify_and_reads_find_the_damage() {
    let fs = store(300, 10, 4096);
    let seqs = segment_seqs(&fs);
    let before = open(Arc::new(fs.clone()), options(4096)).unwrap().head();
    for seq in &seqs[..seqs.len() - 1] {
        let path = log_dir().join(segment_name(*seq));
        let mut bytes = fs.file_bytes(&path).unwrap();
        bytes[format::HEADER_BYTES..].fill(0);
        fs.set_file_bytes(&path, bytes);
    }
    // Open trusts the summaries: the chain of headers and summaries holds.
    let log = open(Arc::new(fs.clone()), options(4096)).unwrap();
    assert_eq!(log.head(), before);
    let active_first = *seqs.last().unwrap();
    assert_eq!(log.read(300).unwrap().body, body(300));
    assert_eq!(log.read(active_first).unwrap().body, body(active_first));
    // Reading a sealed entry checks it (F-37), and verify's checks scan every record.
    assert!(matches!(log.read(1), Err(LogError::Corrupt { .. })));
    let checked = log.check_sealed().unwrap_err();
    drop(log);
    // The first segment now reads as a segment without records, so the second one is out of
    // its place: what a scanning open (verify's) and `check_sealed` both report.
    let scanned = open(Arc::new(fs.clone()), scanning(4096)).unwrap_err();
    match &scanned {
        LogError::Corrupt {
            segment,
            offset_bytes: 0,
            kind: CorruptionKind::SegmentOrder,
            ..
        } => assert_eq!(segment, &segment_name(seqs[1])),
        other => panic!("a scanning open passed zeroed records: {other:?}"),
    }
    assert_eq!(format!("{checked:?}"), format!("{scanned:?}"));
}

#[test]
fn a_missing_summary_is_rebuilt_by_a_writable_open_and_built_in_memory_by_a_read_only_one() {
    let fs = store(300, 10, 4096);
    let original = summaries(&fs);
    let seqs = segment_seqs(&fs);
    assert_eq!(
        original.len(),
        seqs.len() - 1,
        "every sealed segment has one"
    );
    let second = summary_path(seqs[1]);
    fs.remove(&second).unwrap();
    let log = open(Arc::new(fs.clone()), read_only(4096)).unwrap();
    assert_eq!(all_bodies(&log), (1..=300).map(body).collect::<Vec<_>>());
    drop(log);
    assert!(
        fs.file_bytes(&second).is_none(),
        "F-38: a read-only open writes nothing"
    );
    let log = open(Arc::new(fs.clone()), options(4096)).unwrap();
    assert_eq!(log.head().seq, 300);
    drop(log);
    assert_eq!(
        summaries(&fs),
        original,
        "F-71: rebuilt as the roll wrote it"
    );
}

#[test]
fn a_torn_or_damaged_summary_is_never_trusted_and_is_rebuilt() {
    let fs = store(300, 10, 4096);
    let original = summaries(&fs);
    let path = summary_path(1);
    let bytes = fs.file_bytes(&path).unwrap();
    let mut damages: Vec<Vec<u8>> = vec![Vec::new(), bytes[..bytes.len() / 2].to_vec()];
    for at in [0, 9, 20, 50, 90, bytes.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x04;
        damages.push(flipped);
    }
    for damaged in damages {
        let image = fs.process_crash_image();
        image.set_file_bytes(&path, damaged);
        let log = open(Arc::new(image.clone()), options(4096)).unwrap();
        assert_eq!(all_bodies(&log).len(), 300);
        drop(log);
        assert_eq!(summaries(&image), original);
    }
}

/// A summary whose crc holds but that disagrees with its segment: with its header, with the
/// file's length, or with the next segment's header.
#[test]
fn a_summary_that_disagrees_with_its_segment_is_rebuilt_from_the_segment() {
    let fs = store(300, 10, 4096);
    let original = summaries(&fs);
    let path = summary_path(1);
    let summary = Summary::decode(&fs.file_bytes(&path).unwrap()).unwrap();
    let mut wrong_previous = summary.clone();
    wrong_previous.previous_hash[0] ^= 1;
    let mut wrong_length = summary.clone();
    wrong_length.file_bytes += 1;
    let mut wrong_last_hash = summary.clone();
    wrong_last_hash.hash_last[0] ^= 1;
    let mut fewer_records = summary.clone();
    fewer_records.records -= 1;
    for lie in [wrong_previous, wrong_length, wrong_last_hash, fewer_records] {
        let image = fs.process_crash_image();
        image.set_file_bytes(&path, lie.encode());
        let log = open(Arc::new(image.clone()), options(4096)).unwrap();
        assert_eq!(all_bodies(&log), (1..=300).map(body).collect::<Vec<_>>());
        drop(log);
        assert_eq!(summaries(&image), original, "{lie:?}");
    }
}

/// Damage in a sealed segment whose summary is gone is found by the scan that rebuilds it:
/// losing a summary never makes damage pass (F-71, F-30).
#[test]
fn a_damaged_segment_without_its_summary_refuses_to_open() {
    let fs = store(300, 10, 4096);
    let path = log_dir().join(segment_name(1));
    let mut bytes = fs.file_bytes(&path).unwrap();
    bytes[200] ^= 0x01;
    fs.set_file_bytes(&path, bytes);
    assert!(open(Arc::new(fs.clone()), options(4096)).is_ok());
    fs.remove(&summary_path(1)).unwrap();
    assert!(matches!(
        open(Arc::new(fs.clone()), options(4096)),
        Err(LogError::Corrupt { .. })
    ));
}

/// A store written by a build of version 3 has no summaries: a read-only open builds them in
/// memory and writes nothing; a writable open writes them once.
#[test]
fn a_store_without_summaries_opens_and_gets_them_once() {
    let fs = store(300, 10, 4096);
    let original = summaries(&fs);
    for name in original.keys() {
        fs.remove(&log_dir().join(name)).unwrap();
    }
    let log = open(Arc::new(fs.clone()), read_only(4096)).unwrap();
    assert_eq!(log.head().seq, 300);
    drop(log);
    assert!(summaries(&fs).is_empty());
    let log = open(Arc::new(fs.clone()), options(4096)).unwrap();
    assert_eq!(all_bodies(&log).len(), 300);
    drop(log);
    assert_eq!(summaries(&fs), original);
}

/// F-72: the active segment has no summary; one left by a torn roll is removed by a writable
/// open, since appends would make it stale.
#[test]
fn a_summary_of_the_active_segment_is_removed_before_it_takes_appends() {
    let fs = store(300, 10, 4096);
    let seqs = segment_seqs(&fs);
    let active = *seqs.last().unwrap();
    let sealed = Summary::decode(&fs.file_bytes(&summary_path(seqs[0])).unwrap()).unwrap();
    let mut stale = sealed;
    stale.first_seq = active;
    let file = fs.open(&summary_path(active), OpenMode::CreateNew).unwrap();
    file.write_all_at(&stale.encode(), 0).unwrap();
    drop(file);
    let log = open(Arc::new(fs.clone()), read_only(4096)).unwrap();
    drop(log);
    assert!(fs.file_bytes(&summary_path(active)).is_some());
    let log = open(Arc::new(fs.clone()), options(4096)).unwrap();
    log.append(&[body(301)]).unwrap();
    drop(log);
    assert!(fs.file_bytes(&summary_path(active)).is_none());
    let log = open(Arc::new(fs.clone()), options(4096)).unwrap();
    assert_eq!(log.read(301).unwrap().body, body(301));
}

/// F-73: entries of a sealed segment are found through the sparse index, one in every 64
/// records, walking the frames from the nearest point.
#[test]
fn every_entry_of_a_long_sealed_segment_reads_through_the_sparse_index() {
    let fs = store(3000, 100, 128 * 1024);
    let seqs = segment_seqs(&fs);
    assert!(seqs.len() >= 2 && seqs[1] > 200, "{seqs:?}");
    let log = open(Arc::new(fs.clone()), options(128 * 1024)).unwrap();
    for seq in (1..=3000).rev() {
        assert_eq!(log.read(seq).unwrap().body, body(seq), "seq {seq}");
    }
    for from in [1, 63, 64, 65, 129, seqs[1] - 1, seqs[1], 2999] {
        let seqs_read: Vec<u64> = log.iter_from(from).map(|e| e.unwrap().seq).collect();
        assert_eq!(seqs_read, (from..=3000).collect::<Vec<_>>());
    }
    assert!(log.check_sealed().is_ok());
}

/// F-72: a crash at every step of a roll (new segment, trim, summary written and renamed)
/// leaves a log that opens with every acknowledged entry, whose summaries agree with a full
/// scan, and that a second open leaves as it is.
#[test]
fn a_crash_at_each_step_of_sealing_leaves_a_log_that_opens() {
    // A dry run finds the steps of the roll that the last batch makes.
    let run = |fs: &SimFs| -> (u64, u64) {
        fs.create_dir_all(Path::new(STORE)).unwrap();
        let Ok(log) = Log::create(Arc::new(fs.clone()), Path::new(STORE), options(4096)) else {
            return (0, 0);
        };
        let mut acknowledged = 0;
        let mut seq = 1;
        while log.stats().segments < 3 {
            let bodies: Vec<Vec<u8>> = (seq..seq + 5).map(body).collect();
            seq += 5;
            match log.append(&bodies) {
                Ok(_) => acknowledged = seq - 1,
                Err(_) => return (acknowledged, seq - 1),
            }
        }
        (acknowledged, seq - 1)
    };
    let dry = SimFs::new(1);
    run(&dry);
    let steps = dry.steps();
    let rolls = segment_seqs(&dry).len() - 1;
    assert_eq!(summaries(&dry).len(), rolls, "each roll wrote a summary");
    let mut opened = 0;
    for step in 1..=steps {
        let fs = SimFs::new(1);
        fs.crash_at_step(step);
        let (acknowledged, attempted) = run(&fs);
        let images = (0..3)
            .map(|seed| fs.power_loss_image(seed))
            .chain([fs.process_crash_image()]);
        for image in images {
            if !image.exists(&log_dir()).unwrap() {
                assert_eq!(acknowledged, 0);
                continue;
            }
            let log = open(Arc::new(image.clone()), options(4096)).unwrap();
            let head = log.head().seq;
            assert!(
                (acknowledged..=attempted).contains(&head),
                "step {step}: head {head}, acknowledged {acknowledged}"
            );
            assert_eq!(all_bodies(&log), (1..=head).map(body).collect::<Vec<_>>());
            drop(log);
            let scanned = open(Arc::new(image.clone()), scanning(4096)).unwrap();
            assert_eq!(scanned.head().seq, head, "step {step}");
            drop(scanned);
            let again = open(Arc::new(image.clone()), options(4096)).unwrap();
            assert_eq!(again.head().seq, head);
            assert!(again.recovery_report().cuts.is_empty(), "step {step}");
            assert!(again.check_sealed().is_ok(), "step {step}");
            opened += 1;
        }
    }
    assert!(
        steps > 50 && opened > 4 * 50,
        "{steps} steps, {opened} images opened"
    );
}

/// F-30, F-71: a ledger opens on a sealed segment whose record was altered (its summary is
/// trusted), but both verify paths, the ledger's own and `verify_store`, scan the segment and
/// report the damage where it lies.
#[test]
fn verify_finds_damage_in_a_sealed_segment_that_open_did_not_read() {
    let fs = support::workload::new_disk(3);
    let ledger = support::workload::create(&fs).unwrap();
    for n in 0..200 {
        let posting = folio::Posting::new("world", "till:1", "1.25", "USD/2").unwrap();
        let request = folio::PostRequest::new(support::workload::LEDGER, vec![posting])
            .with_reference(format!("r{n}"));
        ledger.post(request).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    assert!(summaries(&fs).len() >= 2, "the store has sealed segments");
    let path = log_dir().join(segment_name(1));
    let mut bytes = fs.file_bytes(&path).unwrap();
    let last = bytes.len() - 40; // a body byte of the segment's last record
    bytes[last] ^= 0x01;
    fs.set_file_bytes(&path, bytes);
    let ledger = support::workload::open(&fs).unwrap();
    let report = ledger.verify(&[]).unwrap();
    let failure = report
        .first_failure
        .expect("Ledger::verify scans sealed segments");
    assert_eq!(failure.kind, "bad_checksum");
    assert_eq!(failure.segment.as_deref(), Some(segment_name(1).as_str()));
    drop(ledger);
    let report =
        folio::verify::verify_store(Arc::new(fs.clone()), Path::new(STORE), &[], &mut |_, _| {})
            .unwrap();
    let failure = report
        .first_failure
        .expect("verify_store scans sealed segments");
    assert_eq!(failure.kind, "bad_checksum");
    assert_eq!(failure.segment.as_deref(), Some(segment_name(1).as_str()));
}
