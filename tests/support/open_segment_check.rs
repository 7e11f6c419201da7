//! The `open_segment` check, shared by the fuzz target (`fuzz/fuzz_targets/open_segment.rs`)
//! and the seed-corpus test (`tests/fuzz_corpus.rs`): any bytes, written as the only segment
//! of a store on the simulated disk, either refuse to open with an error or open (read-only
//! and read-write alike) to a log whose entries all read back, seqs `1..=head` without a gap,
//! the head being the last entry. Nothing may panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio::log::format::segment_name;
use folio::log::sim::SimFs;
use folio::log::vfs::{OpenMode, Vfs};
use folio::log::{HASH_ZERO, Head, LOG_DIR_NAME, Log, LogOptions, RecoveryReport};

/// The store directory on the simulated disk.
pub const STORE: &str = "/store";
/// The smallest roll threshold the log accepts, so that an append after recovery may roll.
pub const SEGMENT_BYTES: u64 = 4096;

/// Writes `bytes` as segment 1 of a fresh store and checks every way of opening it:
///
/// 1. read-only: Ok or Err; on Ok every entry reads back; nothing on the disk changes;
/// 2. read-write: the same outcome, head and recovery report as read-only; then one append
///    succeeds and `close` trims;
/// 3. read-write again: no cut (recovery is idempotent), the head is one past the first open's,
///    and every entry, the appended one included, reads back.
///
/// Returns the head seq the bytes opened to, or `None` if they refused to open.
pub fn check_open_segment(bytes: &[u8]) -> Option<u64> {
    let fs = SimFs::new(1);
    let segment = write_segment(&fs, bytes);
    let steps_before = fs.steps();
    let read_only = open(&fs, true).map(|log| checked(&log));
    assert_eq!(
        fs.steps(),
        steps_before,
        "a read-only open made a mutating call"
    );
    assert_eq!(
        fs.file_bytes(&segment).as_deref(),
        Some(bytes),
        "a read-only open changed the segment"
    );
    let log = match (open(&fs, false), read_only) {
        (Ok(log), Ok(expected)) => {
            assert_eq!(
                checked(&log),
                expected,
                "read-only and read-write opens disagree"
            );
            log
        }
        (Err(_), Err(_)) => return None,
        (actual, expected) => panic!(
            "read-only open gave {:?} but read-write open gave {:?}",
            expected.map(|(head, _)| head),
            actual.map(|log| log.head()),
        ),
    };
    let head = log.head();
    let appended = log
        .append(&[b"after recovery".as_slice()])
        .unwrap_or_else(|error| panic!("append after a successful open failed: {error}"));
    assert_eq!(appended[0].seq, head.seq + 1);
    assert_eq!(appended[0].previous_hash, head.block_hash);
    log.close()
        .unwrap_or_else(|error| panic!("close failed: {error}"));
    drop(log);
    let reopened =
        open(&fs, false).unwrap_or_else(|error| panic!("reopen after an append failed: {error}"));
    let (head_reopened, report) = checked(&reopened);
    assert_eq!(report, RecoveryReport::default(), "a second open cut again");
    assert_eq!(head_reopened.seq, head.seq + 1);
    assert_eq!(head_reopened.block_hash, appended[0].block_hash);
    Some(head.seq)
}

/// Creates the store and log directories and writes `bytes` as segment 1, durably.
fn write_segment(fs: &SimFs, bytes: &[u8]) -> PathBuf {
    let log_dir = Path::new(STORE).join(LOG_DIR_NAME);
    fs.create_dir_all(&log_dir)
        .unwrap_or_else(|error| panic!("mkdir: {error}"));
    let segment = log_dir.join(segment_name(1));
    let file = fs
        .open(&segment, OpenMode::CreateNew)
        .unwrap_or_else(|error| panic!("create the segment: {error}"));
    file.write_all_at(bytes, 0)
        .and_then(|()| file.sync_data())
        .and_then(|()| fs.sync_dir(&log_dir))
        .unwrap_or_else(|error| panic!("write the segment: {error}"));
    segment
}

fn open(fs: &SimFs, read_only: bool) -> Result<Log, folio::log::LogError> {
    let options = LogOptions {
        segment_bytes: SEGMENT_BYTES,
        read_only,
        ..LogOptions::default()
    };
    Log::open(Arc::new(fs.clone()), Path::new(STORE), options)
}

/// Reads every entry of an opened log, by iteration and by seq, and checks that they are
/// seqs `1..=head` in a chain from the zero hash ending at the head. Returns the head and what
/// the open reported.
fn checked(log: &Log) -> (Head, RecoveryReport) {
    let head = log.head();
    let mut hash_prior = HASH_ZERO;
    let mut seq_expected = 1;
    for entry in log.iter_from(1) {
        let entry = entry.unwrap_or_else(|error| {
            panic!("entry {seq_expected} of an opened log (head {head:?}) fails: {error}")
        });
        assert_eq!(
            entry.seq, seq_expected,
            "iteration skipped or repeated a seq"
        );
        assert_eq!(
            entry.previous_hash, hash_prior,
            "entry {seq_expected} breaks the chain"
        );
        let read = log
            .read(entry.seq)
            .unwrap_or_else(|error| panic!("read({seq_expected}) fails: {error}"));
        assert_eq!(
            read, entry,
            "read and iteration disagree at seq {seq_expected}"
        );
        hash_prior = entry.block_hash;
        seq_expected += 1;
    }
    assert_eq!(
        seq_expected - 1,
        head.seq,
        "iteration stopped short of the head"
    );
    assert_eq!(
        hash_prior, head.block_hash,
        "the head is not the last entry"
    );
    (head, log.recovery_report().clone())
}
