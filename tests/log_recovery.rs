//! Recovery on open: a provably torn tail is cut and reported, everything else that is wrong
//! with acknowledged data refuses to open with an error naming segment, offset and seq
//! (`docs/format.md` section 6). Recovery is idempotent, and a failed sync poisons the writer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio::log::format::{self, RecordFixed};
use folio::log::sim::{Fault, FaultError, OpKind, SimFs};
use folio::log::vfs::Vfs;
use folio::log::{CorruptionKind, CutKind, Log, LogError, LogOptions};

const STORE: &str = "/store";

fn new_store(segment_bytes: u64) -> (SimFs, Log) {
    let fs = SimFs::new(7);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    let log = Log::create(
        Arc::new(fs.clone()),
        Path::new(STORE),
        options(segment_bytes),
    )
    .unwrap();
    (fs, log)
}

fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        ..LogOptions::default()
    }
}

fn open(fs: &SimFs, options: LogOptions) -> Result<Log, LogError> {
    Log::open(Arc::new(fs.clone()), Path::new(STORE), options)
}

fn segment_path(first_seq: u64) -> PathBuf {
    Path::new(STORE)
        .join("log")
        .join(format::segment_name(first_seq))
}

fn body(seq: u64) -> Vec<u8> {
    format!("entry number {seq} with some padding to make it longer").into_bytes()
}

/// Appends entries `1..=count`, each in its own batch, and closes the log.
fn store_with_entries(count: u64, segment_bytes: u64) -> SimFs {
    let (fs, log) = new_store(segment_bytes);
    for seq in 1..=count {
        log.append(&[body(seq)]).unwrap();
    }
    log.close().unwrap();
    fs
}

fn bodies(log: &Log) -> Vec<Vec<u8>> {
    log.iter_from(1).map(|entry| entry.unwrap().body).collect()
}

fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = format::HEADER_BYTES;
    let mut offsets = Vec::new();
    while let Ok(record) = format::decode_record(&bytes[at..]) {
        offsets.push(at);
        at += record.record_bytes;
    }
    offsets
}

fn corrupt_kind(result: Result<Log, LogError>) -> (String, u64, u64, CorruptionKind) {
    match result {
        Err(LogError::Corrupt {
            segment,
            offset_bytes,
            seq,
            kind,
        }) => (segment, offset_bytes, seq, kind),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn torn_tail_is_cut_at_every_byte_offset_of_the_final_record() {
    let fs = store_with_entries(3, 4096);
    let path = segment_path(1);
    let original = fs.file_bytes(&path).unwrap();
    let last_start = *record_offsets(&original).last().unwrap();
    for cut_at in last_start..original.len() {
        for damage in ["truncated", "zeroed", "garbage"] {
            let mut bytes = original.clone();
            match damage {
                "truncated" => bytes.truncate(cut_at),
                "zeroed" => bytes[cut_at..].fill(0),
                _ => bytes[cut_at..].fill(0xA5),
            }
            let fs = fs.process_crash_image();
            fs.set_file_bytes(&path, bytes);
            let log = open(&fs, options(4096)).unwrap();
            assert_eq!(log.head().seq, 2, "{damage} at {cut_at}");
            let cuts = &log.recovery_report().cuts;
            // A record's first byte (its length) is nonzero: only a cut exactly at the
            // record's start leaves nothing but zeros behind.
            let nonzero_damage = damage == "garbage" || cut_at > last_start;
            if nonzero_damage {
                assert_eq!(cuts.len(), 1, "{damage} at {cut_at}: {cuts:?}");
                assert_eq!(cuts[0].kind, CutKind::TornTail);
                assert_eq!(cuts[0].offset_bytes, last_start as u64);
                assert_eq!(cuts[0].seq_last_kept, 2);
            } else {
                assert!(cuts.is_empty(), "{damage} at {cut_at}: {cuts:?}");
            }
            // The log is usable, and a second open finds nothing more to do.
            log.append(&[b"after".to_vec()]).unwrap();
            drop(log);
            let again = open(&fs, options(4096)).unwrap();
            assert!(again.recovery_report().cuts.is_empty());
            assert_eq!(bodies(&again), vec![body(1), body(2), b"after".to_vec()]);
        }
    }
}

#[test]
fn torn_tail_below_the_watermark_refuses_to_open() {
    let fs = store_with_entries(3, 4096);
    let path = segment_path(1);
    let mut bytes = fs.file_bytes(&path).unwrap();
    let len = bytes.len();
    bytes[len - 1] ^= 0xFF;
    fs.set_file_bytes(&path, bytes);
    let watermark = LogOptions {
        seq_durable_min: 3,
        ..options(4096)
    };
    let (_, _, seq, kind) = corrupt_kind(open(&fs, watermark));
    assert_eq!(seq, 3);
    assert_eq!(
        kind,
        CorruptionKind::DamageBelowWatermark {
            seq_last_valid: 2,
            seq_durable_min: 3
        }
    );
    // With the watermark at 2 the same tail is a torn write.
    let log = open(
        &fs,
        LogOptions {
            seq_durable_min: 2,
            ..options(4096)
        },
    )
    .unwrap();
    assert_eq!(log.head().seq, 2);
}

#[test]
fn read_only_open_reports_the_cut_and_changes_nothing() {
    let fs = store_with_entries(3, 4096);
    let path = segment_path(1);
    let mut bytes = fs.file_bytes(&path).unwrap();
    let len = bytes.len();
    bytes[len - 1] ^= 0xFF;
    fs.set_file_bytes(&path, bytes.clone());
    let log = open(
        &fs,
        LogOptions {
            read_only: true,
            ..options(4096)
        },
    )
    .unwrap();
    assert_eq!(log.recovery_report().cuts.len(), 1);
    assert!(matches!(log.append(&[b"x"]), Err(LogError::ReadOnly)));
    assert_eq!(fs.file_bytes(&path).unwrap(), bytes);
}

#[test]
fn mid_log_corruption_refuses_to_open() {
    let fs = store_with_entries(5, 4096);
    let path = segment_path(1);
    let original = fs.file_bytes(&path).unwrap();
    let offsets = record_offsets(&original);
    let mut bytes = original.clone();
    bytes[offsets[1] + 100] ^= 0x01; // a body byte of entry 2
    fs.set_file_bytes(&path, bytes);
    let (segment, offset_bytes, seq, kind) = corrupt_kind(open(&fs, options(4096)));
    assert_eq!(segment, format::segment_name(1));
    assert_eq!((offset_bytes, seq), (offsets[1] as u64, 2));
    assert_eq!(
        kind,
        CorruptionKind::ValidRecordsAfterDamage {
            at_offset_bytes: offsets[2] as u64
        }
    );
}

/// F-30, F-71: an open that scans sealed segments (verify's, or one whose summary is unusable)
/// refuses damage in them; an ordinary open trusts the summary and reads no record of them, and
/// a read of the damaged entry is refused (F-37).
#[test]
fn corruption_in_a_sealed_segment_refuses_a_scanning_open() {
    let fs = store_with_entries(40, 4096);
    let first = fs.file_bytes(&segment_path(1)).unwrap();
    let offsets = record_offsets(&first);
    let mut bytes = first.clone();
    let last = *offsets.last().unwrap();
    bytes[last + 20] ^= 0x80; // the last record of a sealed segment: no valid record follows
    fs.set_file_bytes(&segment_path(1), bytes);
    let scanning = LogOptions {
        scan_sealed: true,
        ..options(4096)
    };
    let (segment, offset_bytes, seq, kind) = corrupt_kind(open(&fs, scanning));
    assert_eq!(segment, format::segment_name(1));
    assert_eq!((offset_bytes, seq), (last as u64, offsets.len() as u64));
    assert_eq!(kind, CorruptionKind::BadChecksum);
    let log = open(&fs, options(4096)).unwrap();
    assert!(matches!(
        log.read(offsets.len() as u64),
        Err(LogError::Corrupt { .. })
    ));
    assert!(matches!(log.check_sealed(), Err(LogError::Corrupt { .. })));
}

fn segment_first_seqs(fs: &SimFs) -> Vec<u64> {
    let mut seqs: Vec<u64> = fs
        .list(&Path::new(STORE).join("log"))
        .unwrap()
        .iter()
        .filter_map(|name| format::parse_segment_name(name))
        .collect();
    seqs.sort();
    seqs
}

#[test]
fn missing_segment_refuses_to_open() {
    let fs = store_with_entries(100, 4096);
    let seqs = segment_first_seqs(&fs);
    assert!(seqs.len() >= 3, "{seqs:?}");
    fs.remove(&segment_path(seqs[1])).unwrap();
    let (segment, _, seq, kind) = corrupt_kind(open(&fs, options(4096)));
    assert_eq!(segment, format::segment_name(seqs[2]));
    assert_eq!(seq, seqs[2]);
    assert_eq!(
        kind,
        CorruptionKind::MissingSegment {
            expected_seq: seqs[1],
            found_seq: seqs[2]
        }
    );
}

#[test]
fn missing_first_segment_refuses_to_open() {
    let fs = store_with_entries(100, 4096);
    fs.remove(&segment_path(1)).unwrap();
    let (_, _, _, kind) = corrupt_kind(open(&fs, options(4096)));
    assert_eq!(kind, CorruptionKind::SegmentOrder);
}

/// Rewrites the last record of the only segment with other fixed fields, crc and hash valid.
fn rewrite_last_record(fs: &SimFs, change: impl FnOnce(&mut RecordFixed)) -> u64 {
    let path = segment_path(1);
    let mut bytes = fs.file_bytes(&path).unwrap();
    let last = *record_offsets(&bytes).last().unwrap();
    let record = format::decode_record(&bytes[last..]).unwrap();
    let body = record.body.to_vec();
    let mut fixed = record.fixed;
    change(&mut fixed);
    fixed.block_hash = format::block_hash(fixed.seq, &fixed.previous_hash, &body);
    bytes.truncate(last);
    format::encode_record(&mut bytes, &fixed, &body);
    fs.set_file_bytes(&path, bytes);
    last as u64
}

#[test]
fn seq_gap_refuses_to_open() {
    let fs = store_with_entries(3, 4096);
    let offset = rewrite_last_record(&fs, |fixed| {
        fixed.seq = 4;
        fixed.batch_first_seq = 4;
    });
    let (_, offset_bytes, seq, kind) = corrupt_kind(open(&fs, options(4096)));
    assert_eq!((offset_bytes, seq), (offset, 3));
    assert_eq!(
        kind,
        CorruptionKind::SeqGap {
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn chain_break_refuses_to_open() {
    let fs = store_with_entries(3, 4096);
    let offset = rewrite_last_record(&fs, |fixed| fixed.previous_hash[0] ^= 1);
    let (_, offset_bytes, seq, kind) = corrupt_kind(open(&fs, options(4096)));
    assert_eq!((offset_bytes, seq), (offset, 3));
    assert_eq!(kind, CorruptionKind::ChainBreak);
}

#[test]
fn chain_break_across_segments_refuses_to_open() {
    let fs = store_with_entries(100, 4096);
    let seqs = segment_first_seqs(&fs);
    let path = segment_path(seqs[1]);
    let mut bytes = fs.file_bytes(&path).unwrap();
    let mut header = format::SegmentHeader::decode(&bytes).unwrap();
    header.previous_hash[5] ^= 1;
    bytes[..format::HEADER_BYTES].copy_from_slice(&header.encode());
    fs.set_file_bytes(&path, bytes);
    let (segment, offset_bytes, _, kind) = corrupt_kind(open(&fs, options(4096)));
    assert_eq!((segment, offset_bytes), (format::segment_name(seqs[1]), 0));
    assert_eq!(kind, CorruptionKind::ChainBreak);
}

#[test]
fn unknown_format_version_is_a_clear_error() {
    let fs = store_with_entries(1, 4096);
    let path = segment_path(1);
    let mut bytes = fs.file_bytes(&path).unwrap();
    bytes[8] = 9;
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    fs.set_file_bytes(&path, bytes);
    match open(&fs, options(4096)) {
        Err(LogError::UnsupportedVersion {
            found: 9,
            expected: format::FORMAT_VERSION,
            ..
        }) => {}
        other => panic!("expected an unsupported version, got {other:?}"),
    }
}

#[test]
fn a_directory_without_a_log_is_not_a_store() {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    assert!(matches!(
        open(&fs, options(4096)),
        Err(LogError::NotAStore { .. })
    ));
}

/// `create` makes `log/`, then its first segment: a crash between the two leaves an empty log
/// directory. Nothing was acknowledged, so a writable open with no durable watermark finishes
/// the create (and reports it); a read-only open, or one whose state has a watermark (the log
/// is then missing, not torn), refuses.
#[test]
fn an_empty_log_directory_is_a_torn_create() {
    let fs = SimFs::new(1);
    fs.create_dir_all(&Path::new(STORE).join("log")).unwrap();
    let read_only = LogOptions {
        read_only: true,
        ..options(4096)
    };
    let behind_state = LogOptions {
        seq_durable_min: 3,
        ..options(4096)
    };
    for refused in [read_only, behind_state] {
        assert!(matches!(
            open(&fs, refused),
            Err(LogError::NotAStore { .. })
        ));
    }
    assert!(fs.file_bytes(&segment_path(1)).is_none());
    let log = open(&fs, options(4096)).unwrap();
    let cuts = &log.recovery_report().cuts;
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0].kind, CutKind::TornCreate);
    assert_eq!(cuts[0].segment, format::segment_name(1));
    assert_eq!(log.head().seq, 0);
    log.append(&[body(1)]).unwrap();
    drop(log);
    let again = open(&fs, options(4096)).unwrap();
    assert_eq!(again.head().seq, 1);
    assert!(again.recovery_report().cuts.is_empty());
}

#[test]
fn fsync_failure_poisons_the_writer_until_reopen() {
    let (fs, log) = new_store(4096);
    log.append(&[body(1)]).unwrap();
    fs.inject(Fault {
        op: Some(OpKind::Sync),
        nth: 1,
        persist: false,
        error: FaultError::Io,
    });
    assert!(matches!(
        log.append(&[body(2)]),
        Err(LogError::OutcomeUnknown { .. })
    ));
    // Never retried: the writer refuses until the log is reopened, even with the disk well.
    assert!(matches!(log.append(&[body(3)]), Err(LogError::Poisoned)));
    drop(log);
    let log = open(&fs, options(4096)).unwrap();
    // The simulated write reached the page cache, so the entry is there: the outcome was
    // unknown, not failed.
    assert_eq!(bodies(&log), vec![body(1), body(2)]);
    log.append(&[body(3)]).unwrap();
    assert_eq!(log.head().seq, 3);
}

#[test]
fn no_space_on_roll_fails_the_batch_cleanly() {
    let (fs, log) = new_store(4096);
    while log.stats().segments == 1 {
        log.append(&[body(0)]).unwrap();
    }
    let head = log.head();
    // Fill the active segment, then make the next roll's preallocation fail.
    fs.inject(Fault {
        op: Some(OpKind::Allocate),
        nth: 1,
        persist: true,
        error: FaultError::NoSpace,
    });
    let mut failed = false;
    for _ in 0..200 {
        match log.append(&[body(0)]) {
            Ok(_) => {}
            Err(LogError::NoSpace { .. }) => {
                failed = true;
                break;
            }
            Err(other) => panic!("expected NoSpace, got {other}"),
        }
    }
    assert!(failed, "the roll never happened");
    let head_at_failure = log.head();
    assert!(head_at_failure.seq > head.seq);
    fs.clear_fault();
    // Space is back: the same log goes on.
    log.append(&[b"after".to_vec()]).unwrap();
    assert_eq!(log.head().seq, head_at_failure.seq + 1);
    drop(log);
    let log = open(&fs, options(4096)).unwrap();
    assert_eq!(log.head().seq, head_at_failure.seq + 1);
}

#[test]
fn flipped_bits_on_read_are_detected_not_used() {
    let fs = store_with_entries(40, 4096);
    let log = open(&fs, options(4096)).unwrap();
    let active_first_seq = *segment_first_seqs(&fs).last().unwrap();
    assert!(active_first_seq > 1 && active_first_seq <= 40);
    // Sealed segments are mapped when first read; the active segment is read from the file
    // each time. The first read of an open is a sealed header (F-71), checked as always.
    fs.flip_next_reads(1);
    match log.read(40) {
        Err(LogError::Corrupt { seq: 40, .. }) => {}
        other => panic!("a flipped bit went unnoticed: {other:?}"),
    }
    assert_eq!(log.read(40).unwrap().body, body(40));
    assert_eq!(log.read(1).unwrap().body, body(1));
    fs.flip_next_reads(1);
    let reopened = open(&fs, options(4096));
    assert!(
        matches!(reopened, Err(LogError::Corrupt { .. })),
        "{reopened:?}"
    );
}

#[test]
fn torn_roll_and_torn_create_are_cut() {
    // A last segment that is all zeros (its header never became durable) is removed.
    let fs = store_with_entries(100, 4096);
    let head = open(&fs, options(4096)).unwrap().head();
    let log_dir = Path::new(STORE).join("log");
    let torn = fs
        .open(
            &log_dir.join(format::segment_name(head.seq + 1)),
            folio::log::vfs::OpenMode::CreateNew,
        )
        .unwrap();
    torn.allocate(4096).unwrap();
    let log = open(&fs, options(4096)).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(log.recovery_report().cuts[0].kind, CutKind::TornSegment);
    log.append(&[b"after".to_vec()]).unwrap();
    drop(log);
    assert_eq!(open(&fs, options(4096)).unwrap().head().seq, head.seq + 1);

    // An only segment that is all zeros: the create was torn; the log opens empty.
    let fs = SimFs::new(3);
    fs.create_dir_all(&log_dir).unwrap();
    fs.open(&segment_path(1), folio::log::vfs::OpenMode::CreateNew)
        .unwrap();
    let log = open(&fs, options(4096)).unwrap();
    assert_eq!(log.head().seq, 0);
    assert_eq!(log.recovery_report().cuts[0].kind, CutKind::TornCreate);
}

#[test]
fn reads_and_iteration_cross_segments() {
    let fs = store_with_entries(100, 4096);
    let log = open(&fs, options(4096)).unwrap();
    assert!(log.stats().segments > 3);
    for seq in [1, 2, 50, 99, 100] {
        assert_eq!(log.read(seq).unwrap().body, body(seq));
    }
    assert!(matches!(
        log.read(101),
        Err(LogError::SeqOutOfRange {
            seq: 101,
            head: 100
        })
    ));
    let from_50: Vec<u64> = log.iter_from(50).map(|entry| entry.unwrap().seq).collect();
    assert_eq!(from_50, (50..=100).collect::<Vec<_>>());
    log.append(&[body(101), body(102)]).unwrap();
    assert_eq!(log.read(102).unwrap().body, body(102));
    assert_eq!(bodies(&log).len(), 102);
}

#[test]
fn oversized_bodies_are_refused_before_anything_is_written() {
    let (fs, log) = new_store(4096);
    let steps = fs.steps();
    let big = vec![0u8; format::BODY_BYTES_MAX + 1];
    assert!(matches!(
        log.append(&[big]),
        Err(LogError::BodyTooLarge { index: 0, .. })
    ));
    assert_eq!(fs.steps(), steps);
    assert_eq!(log.head().seq, 0);
}

/// F-35, F-36: an all-zero only segment is a torn create only when the state has applied
/// nothing; under a watermark the log lost entries the state holds, and open refuses without
/// rewriting the file.
#[test]
fn a_torn_create_under_a_watermark_is_refused_and_left_as_it_was() {
    let fs = SimFs::new(1);
    fs.create_dir_all(&Path::new(STORE).join("log")).unwrap();
    fs.open(&segment_path(1), folio::log::vfs::OpenMode::CreateNew)
        .unwrap();
    assert!(fs.set_file_bytes(&segment_path(1), vec![0; 4096]));
    let behind_state = LogOptions {
        seq_durable_min: 2,
        ..options(4096)
    };
    match open(&fs, behind_state) {
        Err(LogError::Corrupt {
            kind:
                CorruptionKind::DamageBelowWatermark {
                    seq_last_valid: 0,
                    seq_durable_min: 2,
                },
            ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(fs.file_bytes(&segment_path(1)), Some(vec![0; 4096]));
    let log = open(&fs, options(4096)).unwrap();
    assert_eq!(log.recovery_report().cuts[0].kind, CutKind::TornCreate);
}

/// F-23: a segment file longer than the writer can leave is refused before it is read (its
/// offsets would not fit the reader's `u32`s). A sparse file on the real disk stands in for it.
#[test]
fn a_segment_file_larger_than_the_writer_makes_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let vfs: Arc<dyn Vfs> = Arc::new(folio::log::vfs::RealFs);
    let log = Log::create(vfs.clone(), dir.path(), options(4096)).unwrap();
    for seq in 1..=40 {
        log.append(&[body(seq)]).unwrap();
    }
    assert!(log.segment_names().len() > 1);
    let sealed = log.segment_names()[0].clone();
    drop(log);
    let path = dir.path().join("log").join(&sealed);
    let oversized = format::SEGMENT_FILE_BYTES_MAX + 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(oversized)
        .unwrap();
    match Log::open(vfs, dir.path(), options(4096)) {
        Err(LogError::Corrupt {
            segment,
            kind: CorruptionKind::SegmentTooLarge { bytes },
            ..
        }) => {
            assert_eq!(segment, sealed);
            assert_eq!(bytes, oversized);
        }
        other => panic!("expected SegmentTooLarge, got {other:?}"),
    }
}

/// F-34, F-36: an all-zero last segment is a torn roll only when the state has applied
/// nothing past the segment before it; under a higher watermark the file held entries the
/// state applied, and open refuses before removing anything.
#[test]
fn a_torn_roll_under_the_watermark_is_refused_and_the_file_is_kept() {
    let fs = store_with_entries(100, 4096);
    let head = open(&fs, options(4096)).unwrap().head();
    let torn_path = segment_path(head.seq + 1);
    fs.open(&torn_path, folio::log::vfs::OpenMode::CreateNew)
        .unwrap();
    assert!(fs.set_file_bytes(&torn_path, vec![0; 4096]));
    let behind_state = LogOptions {
        seq_durable_min: head.seq + 3,
        ..options(4096)
    };
    let (segment, _, seq, kind) = corrupt_kind(open(&fs, behind_state));
    assert_eq!(segment, format::segment_name(head.seq + 1));
    assert_eq!(seq, head.seq + 1);
    assert_eq!(
        kind,
        CorruptionKind::DamageBelowWatermark {
            seq_last_valid: head.seq,
            seq_durable_min: head.seq + 3,
        }
    );
    assert_eq!(fs.file_bytes(&torn_path), Some(vec![0; 4096]));
    // At the watermark the roll is torn, and cut as before.
    let at_watermark = LogOptions {
        seq_durable_min: head.seq,
        ..options(4096)
    };
    let log = open(&fs, at_watermark).unwrap();
    assert_eq!(log.recovery_report().cuts[0].kind, CutKind::TornSegment);
    assert_eq!(fs.file_bytes(&torn_path), None);
}
