//! Verification: proving that the books were never altered. One pass over the log checks every
//! record (crc, seq, recomputed `block_hash`, chain, segment headers, decodable bodies) while
//! rebuilding the state up to the watermark in memory; the rebuilt state is then compared with
//! the store's, row by row; every `--expect-head` digest taken earlier must still hold.
//!
//! Verification never changes the store: the log is opened read-only (a torn tail is reported,
//! not cut) and the state file is copied into memory before redb opens it (`docs/cli.md`,
//! "verify").

pub mod diff;
mod error;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

pub use diff::{StateDifference, diff_states, replay_state};
pub use error::VerifyError;

use crate::domain::entry::EntryBody;
use crate::log::format::hex;
use crate::log::vfs::Vfs;
use crate::log::{CorruptionKind, Cut, Entry, Hash, Head, Log, LogError, LogOptions, LogReader};
use crate::replay::{self, Applier, Replay, ReplayError};
use crate::state::{ReadTables, STATE_FILE_NAME, State, StateError, StateOpened, StateReads};
use crate::store::{READERS_WAIT_DEFAULT, pin_for_reading};

/// The outcome of a verification (the JSON report of `folio verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Entries in the log (its head seq).
    pub entries: u64,
    pub head: HeadView,
    /// The state's watermark: entries up to it were compared with a replay.
    pub watermark: u64,
    /// Entries past the watermark (not yet applied to the state).
    pub pending: u64,
    pub first_failure: Option<Failure>,
    /// Torn writes past the watermark that an open would cut: reported, not failures.
    pub torn: Vec<TornView>,
}

/// A head digest: seq and block hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadView {
    pub seq: u64,
    pub block_hash: String,
}

impl From<Head> for HeadView {
    fn from(head: Head) -> Self {
        HeadView {
            seq: head.seq,
            block_hash: hex(&head.block_hash),
        }
    }
}

/// A torn write found by the read-only open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornView {
    pub segment: String,
    pub offset: u64,
    pub bytes: u64,
}

/// The first check that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Stable name of the check: `bad_checksum`, `chain_break`, `bad_hash`, `expect_head`,
    /// `state_mismatch`, ... (`docs/cli.md` lists them all).
    pub kind: String,
    pub seq: Option<u64>,
    pub segment: Option<String>,
    pub offset: Option<u64>,
    pub detail: String,
}

impl Failure {
    fn new(kind: &str, seq: Option<u64>, detail: String) -> Failure {
        Failure {
            kind: kind.to_string(),
            seq,
            segment: None,
            offset: None,
            detail,
        }
    }

    /// A failure for a log error, when it is damage; `None` for errors that stop verification
    /// (I/O, not a store).
    fn of_log_error(error: &LogError) -> Option<Failure> {
        match error {
            LogError::Corrupt {
                segment,
                offset_bytes,
                seq,
                kind,
            } => Some(Failure {
                kind: corruption_name(kind).to_string(),
                seq: Some(*seq),
                segment: Some(segment.clone()),
                offset: Some(*offset_bytes),
                detail: error.to_string(),
            }),
            _ => None,
        }
    }
}

/// Stable names of the kinds of log damage.
pub fn corruption_name(kind: &CorruptionKind) -> &'static str {
    match kind {
        CorruptionKind::BadHeader(_) => "bad_header",
        CorruptionKind::NameMismatch { .. } => "name_mismatch",
        CorruptionKind::SegmentOrder => "segment_order",
        CorruptionKind::MissingSegment { .. } => "missing_segment",
        CorruptionKind::BadLength => "bad_length",
        CorruptionKind::BadChecksum => "bad_checksum",
        CorruptionKind::SeqGap { .. } => "seq_gap",
        CorruptionKind::ChainBreak => "chain_break",
        CorruptionKind::BadHash => "bad_hash",
        CorruptionKind::BadBatch => "bad_batch",
        CorruptionKind::TrailingBytes => "trailing_bytes",
        CorruptionKind::ValidRecordsAfterDamage { .. } => "damage_before_valid_records",
        CorruptionKind::TailTooLong { .. } => "tail_too_long",
        CorruptionKind::SegmentTooLarge { .. } => "segment_too_large",
        CorruptionKind::DamageBelowWatermark { .. } => "damage_below_watermark",
    }
}

/// Verifies the store in `dir` without changing it. Returns `Err` only when verification
/// cannot run (the store is in use, is not a store, or cannot be read: [`VerifyError`]);
/// damage is a report with `ok: false`.
pub fn verify_store(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    expect_heads: &[(u64, Hash)],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    // Beside a writer, as a reader: the state's last checkpoint is not rewritten while this
    // runs, and the log is read up to the durable head the writer published.
    let _pin = pin_for_reading(&*vfs, dir, READERS_WAIT_DEFAULT)?;
    let (state, state_failure) = open_state(&*vfs, dir)?;
    let watermark = match &state {
        Some(state) => state.read_tables()?.watermark()?,
        None => Default::default(),
    };
    // Every sealed record is checked at open, as an ordinary open no longer does (F-71).
    let options = LogOptions {
        read_only: true,
        seq_durable_min: watermark.seq,
        scan_sealed: true,
        seq_limit: crate::log::reader_limit(&*vfs, dir, watermark.seq),
        ..LogOptions::default()
    };
    let log = match Log::open(vfs, dir, options) {
        Ok(log) => log,
        Err(error) => match Failure::of_log_error(&error) {
            Some(failure) => return Ok(failed_open(watermark.seq, failure)),
            None => return Err(error.into()),
        },
    };
    let actual = state.as_ref().map(State::read_tables).transpose()?;
    let mut report = verify_log_and_state(&log, actual.as_ref(), expect_heads, progress)?;
    if report.first_failure.is_none()
        && let Some(failure) = state_failure
    {
        report.first_failure = Some(failure);
        report.ok = false;
    }
    Ok(report)
}

fn failed_open(watermark: u64, failure: Failure) -> VerifyReport {
    VerifyReport {
        ok: false,
        entries: 0,
        head: Head {
            seq: 0,
            block_hash: [0; 32],
        }
        .into(),
        watermark,
        pending: 0,
        first_failure: Some(failure),
        torn: Vec::new(),
    }
}

/// Opens `state.redb` read-only, under a memory overlay (`State::open_read_only`), so that
/// redb's own recovery (after an unclean shutdown) writes into memory, never into the store,
/// and memory grows with what that recovery writes, not with the file. A missing or unreadable
/// file is a failure, not an error.
fn open_state(vfs: &dyn Vfs, dir: &Path) -> Result<(Option<State>, Option<Failure>), VerifyError> {
    let path = dir.join(STATE_FILE_NAME);
    let io = |source: std::io::Error| VerifyError::StateFile {
        path: path.clone(),
        source,
    };
    if !vfs.exists(&path).map_err(io)? {
        let failure = Failure::new("state_missing", None, "state.redb is missing".to_string());
        return Ok((None, Some(failure)));
    }
    match State::open_read_only_with(vfs, &path, crate::state::SCAN_CACHE_BYTES) {
        Ok((state, StateOpened::Existing)) => Ok((Some(state), None)),
        Ok((_, opened)) => {
            let detail = format!("state.redb does not open: {opened:?}");
            Ok((None, Some(Failure::new("state_unreadable", None, detail))))
        }
        Err(error) => Ok((
            None,
            Some(Failure::new("state_unreadable", None, error.to_string())),
        )),
    }
}

/// Rebuilds entries up to the watermark into a scratch state and decodes the rest.
struct VerifySink<'a> {
    applier: Applier<'a>,
    watermark: u64,
}

impl Replay for VerifySink<'_> {
    type Error = ReplayError;

    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ReplayError> {
        if entry.seq <= self.watermark {
            self.applier.entry(entry, body)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReplayError> {
        self.applier.finish()
    }
}

/// The checks on an open log and (if there is one) a state snapshot: the chain and bodies of
/// every entry, the expected heads, the watermark's place in the log, and state = replay.
pub fn verify_log_and_state(
    log: &LogReader,
    actual: Option<&ReadTables>,
    expect_heads: &[(u64, Hash)],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    let head = log.head();
    let watermark = match actual {
        Some(tables) => tables.watermark()?,
        None => Default::default(),
    };
    let mut report = VerifyReport {
        ok: true,
        entries: head.seq,
        head: head.into(),
        watermark: watermark.seq,
        pending: head.seq.saturating_sub(watermark.seq),
        first_failure: None,
        torn: log
            .recovery_report()
            .cuts
            .iter()
            .map(|cut: &Cut| TornView {
                segment: cut.segment.clone(),
                offset: cut.offset_bytes,
                bytes: cut.bytes_dropped,
            })
            .collect(),
    };
    let failure = check_everything(log, actual, watermark.seq, expect_heads, progress)?;
    report.ok = failure.is_none();
    report.first_failure = failure;
    Ok(report)
}

fn check_everything(
    log: &LogReader,
    actual: Option<&ReadTables>,
    watermark_seq: u64,
    expect_heads: &[(u64, Hash)],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Failure>, VerifyError> {
    // A log opened without `scan_sealed` (a ledger's) trusted its summaries: its sealed
    // segments are scanned here, as that open would have (nothing to do for verify_store's).
    if let Err(error) = log.check_sealed() {
        return match Failure::of_log_error(&error) {
            Some(failure) => Ok(Some(failure)),
            None => Err(error.into()),
        };
    }
    let head = log.head();
    if head.seq < watermark_seq {
        let detail = format!(
            "the log ends at seq {} but the state has applied seq {watermark_seq}",
            head.seq
        );
        return Ok(Some(Failure::new(
            "log_behind_state",
            Some(head.seq),
            detail,
        )));
    }
    let replayed = State::scratch()?;
    let mut sink = VerifySink {
        applier: Applier::new(&replayed, log),
        watermark: watermark_seq,
    };
    let driven = replay::drive(log, 1, head.seq, &mut sink, &mut |seq| {
        progress(seq, head.seq)
    });
    if let Err(error) = driven {
        return Ok(Some(failure_of_error(&error)));
    }
    if let Some(failure) = check_expected_heads(log, expect_heads)? {
        return Ok(Some(failure));
    }
    let Some(actual) = actual else {
        return Ok(None);
    };
    let watermark = actual.watermark()?;
    if watermark.seq > 0 && log.read(watermark.seq)?.block_hash != watermark.block_hash {
        let detail = "the state's watermark names an entry with another block_hash".to_string();
        return Ok(Some(Failure::new(
            "state_log_mismatch",
            Some(watermark.seq),
            detail,
        )));
    }
    Ok(
        diff_states(&replayed.read_tables()?, actual)?.map(|difference| {
            let detail = format!(
                "table {} row {}: {}",
                difference.table, difference.key, difference.detail
            );
            Failure::new("state_mismatch", None, detail)
        }),
    )
}

/// What stopped the replay of verify, as the failure it reports.
fn failure_of_error(error: &ReplayError) -> Failure {
    match error {
        ReplayError::Log(log_error) => Failure::of_log_error(log_error)
            .unwrap_or_else(|| Failure::new("log_unreadable", None, log_error.to_string())),
        ReplayError::State(StateError::BadEntry { seq, .. }) => {
            Failure::new("bad_entry", Some(*seq), error.to_string())
        }
        ReplayError::State(StateError::Inconsistent { seq, .. }) => {
            Failure::new("entry_inconsistent", Some(*seq), error.to_string())
        }
        // The in-memory state failing, and (never from a scan) the whole-store errors.
        ReplayError::State(
            StateError::Database(_)
            | StateError::BadRow { .. }
            | StateError::Unreadable(_)
            | StateError::NoSpace { .. }
            | StateError::Log(_),
        )
        | ReplayError::Store(_)
        | ReplayError::Io { .. }
        | ReplayError::OutNotADirectory { .. }
        | ReplayError::OutExists { .. }
        | ReplayError::OutIo { .. } => Failure::new("replay_failed", None, error.to_string()),
    }
}

fn check_expected_heads(
    log: &LogReader,
    expect_heads: &[(u64, Hash)],
) -> Result<Option<Failure>, VerifyError> {
    let head = log.head();
    for (seq, hash) in expect_heads {
        if *seq > head.seq {
            let detail = format!(
                "expected head seq {seq} but the log ends at seq {}: it was truncated",
                head.seq
            );
            return Ok(Some(Failure::new("expect_head", Some(*seq), detail)));
        }
        // Head 0 is the empty log's, whose hash is the zero hash: any other hash at 0 fails.
        let actual = match seq {
            0 => crate::log::HASH_ZERO,
            _ => log.read(*seq)?.block_hash,
        };
        if actual != *hash {
            let detail = format!(
                "entry {seq} has block_hash {} but {} was expected: the log was rewritten",
                hex(&actual),
                hex(hash)
            );
            return Ok(Some(Failure::new("expect_head", Some(*seq), detail)));
        }
    }
    Ok(None)
}
