//! The log: Folio's source of truth, an append-only, hash-chained sequence of entries in
//! segment files under `<store>/log/` (`docs/format.md`). It knows nothing of accounts: an
//! entry's body is opaque bytes here.
//!
//! One writer appends batches (one write and one `fdatasync` each: the group-commit point);
//! any number of readers read by seq or iterate, sealed segments through a memory map (a few
//! at a time) and the active one with positional reads. `open` trusts each sealed segment's
//! summary (`summary.rs`, F-70..F-73) once its header and its neighbours agree, so it reads no
//! sealed record: its cost follows the active segment, not the history. It scans the active
//! segment and cuts only a provably torn tail (see `recovery.rs`); a read-write open then
//! writes the tail past the state's watermark again and syncs it (F-44), and a process that
//! may not write the log gets a read-only one. Checking every sealed record is verify's job
//! (`LogOptions::scan_sealed`, [`LogReader::check_sealed`]).

pub mod durable;
pub mod format;
pub mod sim;
pub mod summary;
pub mod vfs;

mod error;
mod reader;
mod recovery;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use error::{CorruptionKind, LogError};
pub use format::{HASH_ZERO, Hash};
pub use reader::LogIter;

use format::{FormatVersion, SegmentHeader};
use recovery::{Expect, Scanned};
use summary::{SUMMARY_INDEX_STRIDE, Summary};
use vfs::{FileBytes, OpenMode, Vfs, VfsFile};
pub use writer::Prepared;
use writer::{NotWritable, Writer};

/// Name of the log's folder inside a store.
pub const LOG_DIR_NAME: &str = "log";

/// How to open or create a log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Roll to a new segment once the active one would grow past this many bytes; each
    /// segment is preallocated to this size.
    pub segment_bytes: u64,
    /// The state's durable watermark: recovery never cuts a tail at or below this seq.
    pub seq_durable_min: u64,
    /// Open without changing anything: a torn tail is reported, not cut; appends fail.
    /// A read-write open whose active segment this process may not write (its permissions, a
    /// read-only mount) falls back to this, and its appends fail with `NotWritable`.
    pub read_only: bool,
    /// Scan every sealed segment in full at open (every record checked, F-24, F-30), as a
    /// version 3 build did, instead of trusting its summary (F-71): verify's open. Summaries
    /// are then not read.
    pub scan_sealed: bool,
    /// Read no entry past this seq: a reader beside a live writer passes the durable head the
    /// writer published (F-81). The log then ends there, segments past it are not listed, and
    /// whatever follows it in its segment (a batch being written) is neither read nor cut.
    pub seq_limit: Option<u64>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: format::SEGMENT_BYTES_DEFAULT,
            seq_durable_min: 0,
            read_only: false,
            scan_sealed: false,
            seq_limit: None,
        }
    }
}

/// The last entry of the log: `seq` 0 and the zero hash when the log is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Head {
    pub seq: u64,
    pub block_hash: Hash,
}

/// One entry, as read back from the log (its crc, seq and hash checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The format version of the segment that holds it (F-03): the layer that decodes bodies
    /// refuses a kind of entry that version may not hold.
    pub version: u32,
    pub seq: u64,
    /// Seq of the first entry of the append that wrote this one.
    pub batch_first_seq: u64,
    pub previous_hash: Hash,
    pub block_hash: Hash,
    pub body: Vec<u8>,
}

/// What an append made durable for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub previous_hash: Hash,
    pub block_hash: Hash,
}

/// What open found and cut (or, read-only, would cut).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub cuts: Vec<Cut>,
}

/// One piece of a torn write removed by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub segment: String,
    /// Where the dropped bytes began.
    pub offset_bytes: u64,
    /// How many nonzero bytes were dropped.
    pub bytes_dropped: u64,
    /// The entries kept end at this seq.
    pub seq_last_kept: u64,
    pub kind: CutKind,
}

/// What kind of torn write a cut removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKind {
    /// The tail of the last segment after its last valid record.
    TornTail,
    /// A last segment whose header never became durable (a torn roll): removed.
    TornSegment,
    /// The only segment was never made, or its header never became durable (a torn create):
    /// written afresh.
    TornCreate,
}

/// Where a segment's bytes are read from.
#[derive(Debug, Clone)]
enum Source {
    /// A sealed segment: its whole file, mapped when a read needs it (`LogReader::sealed_bytes`
    /// keeps a few maps).
    Sealed,
    /// The active segment: positional reads, since it grows (and recovery may truncate it).
    Active(Arc<dyn VfsFile>),
}

#[derive(Debug)]
struct SegmentView {
    name: String,
    /// From the header: the domain tag of its hashes, what its entries may hold.
    version: FormatVersion,
    first_seq: u64,
    /// Records the segment holds.
    records: u64,
    /// Byte offset of every `stride`-th record from the first, in seq order: every record of the
    /// active segment (stride 1), a sparse index from the summary of a sealed one.
    offsets: Vec<u32>,
    stride: u64,
    /// End of the last record.
    end_bytes: u64,
    source: Source,
}

impl SegmentView {
    fn seq_end(&self) -> u64 {
        self.first_seq + self.records
    }

    /// A sealed segment, as its summary describes it.
    fn sealed(name: &str, summary: Summary) -> SegmentView {
        SegmentView {
            name: name.to_string(),
            version: summary.segment_version,
            first_seq: summary.first_seq,
            records: summary.records,
            offsets: summary.index,
            stride: u64::from(SUMMARY_INDEX_STRIDE),
            end_bytes: summary.end_bytes,
            source: Source::Sealed,
        }
    }

    /// The indexed record nearest before or at `seq` (which the segment must hold): its seq and
    /// offset. Reads walk the frames from there.
    fn index_point(&self, seq: u64) -> (u64, u64) {
        let point = (seq - self.first_seq) / self.stride;
        let offset = self.offsets.get(point as usize).copied().unwrap_or(0);
        (self.first_seq + point * self.stride, u64::from(offset))
    }

    /// The byte range of the record with this seq, which the segment must hold; only for a
    /// segment that indexes every record (the active one).
    fn record_range(&self, seq: u64) -> (u64, u64) {
        assert_eq!(self.stride, 1, "a sparse index has no range per record");
        let index = (seq - self.first_seq) as usize;
        let start = u64::from(self.offsets[index]);
        let end = self
            .offsets
            .get(index + 1)
            .map_or(self.end_bytes, |at| u64::from(*at));
        (start, end)
    }
}

#[derive(Debug)]
struct View {
    segments: Vec<SegmentView>,
    head: Head,
}

impl View {
    /// Index of the segment holding `seq`, which must be in `1..=head`.
    fn segment_of(&self, seq: u64) -> usize {
        self.segments
            .partition_point(|segment| segment.first_seq <= seq)
            - 1
    }
}

/// The log of one store: a [`LogReader`] (every read, through `Deref`) and the writer.
#[derive(Debug)]
pub struct Log {
    reader: LogReader,
    writer: Mutex<Writer>,
    /// Signalled when a batch's write ends (durable or failed): the next batch's write, a roll
    /// and `settle` wait on it.
    written: Condvar,
}

/// The reading half of a [`Log`]: entries by seq, iteration, the head and figures. It cannot
/// append or close, so it is what a [`Log`] is lent out as (`Ledger::log`): a holder of a
/// reader can never put an entry into the chain behind the ledger's back.
#[derive(Debug)]
pub struct LogReader {
    vfs: Arc<dyn Vfs>,
    log_dir: PathBuf,
    options: LogOptions,
    view: RwLock<View>,
    recovery: RecoveryReport,
    /// Sealed segments mapped lately (first seq and bytes), most recent last; at most
    /// `SEALED_MAPS_MAX`, so that reading the whole history holds a bounded part of it.
    maps: Mutex<Vec<(u64, Arc<FileBytes>)>>,
    /// Whether open scanned every sealed segment in full (`scan_sealed`).
    sealed_scanned: bool,
}

/// Most sealed segments kept mapped at once by a reader: the one an iteration walks and one
/// that a lookup (a revert's original, a statement's entry) reads. Every mapped page a reader
/// touched counts in its RSS, up to the segment's size: with 64 MiB segments, four maps made
/// verify's peak RSS 462 MB at 1,009,942 entries, two 333 MB.
const SEALED_MAPS_MAX: usize = 2;

impl std::ops::Deref for Log {
    type Target = LogReader;

    fn deref(&self) -> &LogReader {
        &self.reader
    }
}

/// Summary figures of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub entries: u64,
    pub segments: u64,
    /// Bytes of records and headers (preallocated space not counted).
    pub used_bytes: u64,
}

impl Log {
    /// Creates an empty log in `store_dir` (which must exist): `log/` with its first segment.
    pub fn create(
        vfs: Arc<dyn Vfs>,
        store_dir: &Path,
        options: LogOptions,
    ) -> Result<Log, LogError> {
        check_options(&options)?;
        let log_dir = store_dir.join(LOG_DIR_NAME);
        let io = |source| LogError::Io {
            path: log_dir.clone(),
            source,
        };
        if vfs.exists(&log_dir).map_err(io)? {
            return Err(LogError::AlreadyExists { path: log_dir });
        }
        vfs.create_dir_all(&log_dir).map_err(io)?;
        vfs.sync_dir(store_dir).map_err(io)?;
        write_first_segment(&*vfs, &log_dir, &options)?;
        Self::open(vfs, store_dir, options)
    }

    /// Opens the log of `store_dir`: checks the chain of segment headers and summaries, scans
    /// the active segment and settles a torn tail (`docs/format.md` section 6).
    pub fn open(vfs: Arc<dyn Vfs>, store_dir: &Path, options: LogOptions) -> Result<Log, LogError> {
        check_options(&options)?;
        let log_dir = store_dir.join(LOG_DIR_NAME);
        let mut names = list_segments(&*vfs, store_dir, &log_dir)?;
        if let Some(limit) = options.seq_limit {
            // A segment whose first seq is past the limit holds nothing a reader may read (a
            // roll made it after the durable head it was given); the first is always kept.
            names.retain(|(first_seq, _)| *first_seq <= limit.max(1));
        }
        let mut cuts = Vec::new();
        if names.is_empty() {
            // A create that stopped after making `log/` but before its first segment became
            // durable: nothing was ever acknowledged, so finish it. With a durable watermark
            // above zero the log is missing, not torn.
            if options.read_only || options.seq_durable_min > 0 {
                return Err(not_a_store(store_dir, "the log directory holds no segment"));
            }
            write_first_segment(&*vfs, &log_dir, &options)?;
            cuts.push(Cut {
                segment: format::segment_name(1),
                offset_bytes: 0,
                bytes_dropped: 0,
                seq_last_kept: 0,
                kind: CutKind::TornCreate,
            });
            names = list_segments(&*vfs, store_dir, &log_dir)?;
        }
        let mut opener = Opener::new(&*vfs, &log_dir, &options, cuts.clone());
        let opened = match opener.open_segments(&names) {
            // A chain that does not check where a summary was trusted may be the summary's
            // fault: the segments decide, scanned in full as a version 3 build did (F-71).
            Err(error) if opener.trusted_summary && is_place_error(&error) => {
                opener = Opener::new(&*vfs, &log_dir, &options, cuts);
                opener.scan_all = true;
                // Listed again: the first pass may have removed a torn roll.
                let names = list_segments(&*vfs, store_dir, &log_dir)?;
                opener.open_segments(&names)
            }
            opened => opened,
        };
        let (segments, active) = opened?;
        let Opener {
            cuts, not_writable, ..
        } = opener;
        let sealed_scanned = options.scan_sealed;
        let mut options = options;
        options.read_only |= not_writable.is_some();
        let last = segments
            .last()
            .ok_or_else(|| not_a_store(store_dir, "no segments"))?;
        let head = Head {
            seq: last.seq_end() - 1,
            block_hash: active.hash_last,
        };
        let durable_head = if options.read_only {
            None
        } else {
            durable::DurableHeadFile::open(&*vfs, &log_dir)
        };
        let writer = Writer::new(&options, active, head, not_writable, durable_head);
        Ok(Log {
            reader: LogReader {
                vfs,
                log_dir,
                options,
                view: RwLock::new(View { segments, head }),
                recovery: RecoveryReport { cuts },
                maps: Mutex::new(Vec::new()),
                sealed_scanned,
            },
            writer: Mutex::new(writer),
            written: Condvar::new(),
        })
    }

    /// Opens the log of `store_dir` for reading beside a writer that may be appending to it
    /// (in this process or another): read-only, and ending at the durable head the writer
    /// published (F-81), or at `seq_durable` when that is further (the state's watermark,
    /// durable by construction). Without a writer (its head says it closed the log, or no
    /// writer of this version opened the store) it ends at the last valid record.
    pub fn open_reader(
        vfs: Arc<dyn Vfs>,
        store_dir: &Path,
        seq_durable: u64,
    ) -> Result<Log, LogError> {
        let options = LogOptions {
            read_only: true,
            seq_durable_min: seq_durable,
            seq_limit: reader_limit(&*vfs, store_dir, seq_durable),
            ..LogOptions::default()
        };
        Log::open(vfs, store_dir, options)
    }

    /// Makes the log ready to be dropped: trims the active segment's preallocated space so
    /// that the files hold exactly their records. Dropping without `close` is safe too (the
    /// zeros are "no record yet").
    pub fn close(&self) -> Result<(), LogError> {
        let mut writer = self.wait_settled(self.writer_lock());
        writer.trim()
    }

    fn writer_lock(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LogReader {
    /// What open found and cut.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The last entry.
    pub fn head(&self) -> Head {
        self.view_read().head
    }

    /// Entries, segments and bytes.
    pub fn stats(&self) -> LogStats {
        let view = self.view_read();
        LogStats {
            entries: view.head.seq,
            segments: view.segments.len() as u64,
            used_bytes: view.segments.iter().map(|segment| segment.end_bytes).sum(),
        }
    }

    /// Names of the segment files, in order.
    pub fn segment_names(&self) -> Vec<String> {
        self.view_read()
            .segments
            .iter()
            .map(|segment| segment.name.clone())
            .collect()
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    fn view_read(&self) -> RwLockReadGuard<'_, View> {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn view_write(&self) -> RwLockWriteGuard<'_, View> {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Refuses options the log cannot work with.
pub(crate) fn check_options(options: &LogOptions) -> Result<(), LogError> {
    let range = format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX;
    if !range.contains(&options.segment_bytes) {
        return Err(LogError::InvalidOption(
            "segment_bytes must be between 4 KiB and 1 GiB",
        ));
    }
    Ok(())
}

/// Bytes of a reading beside a live writer read from its active segment at a time.
const READER_CHUNK_BYTES: usize = 2 << 20;

/// The first bytes of an active segment that a reader beside a live writer needs: read in
/// chunks until a run of zeros longer than any record (which no record can hold, so no record
/// follows it) or the end of the file. A writer preallocates its segment (16 MiB by default), so
/// reading it whole would cost a reader the segment's size, not its records'. A file that a
/// roll trims meanwhile ends where it now ends.
fn read_records_prefix(file: &dyn VfsFile, len_bytes: u64) -> io::Result<Vec<u8>> {
    let zeros_enough = format::RECORD_BYTES_MAX + 1;
    let mut len_bytes = len_bytes as usize;
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < len_bytes {
        let at = bytes.len();
        let chunk = READER_CHUNK_BYTES.min(len_bytes - at);
        bytes.resize(at + chunk, 0);
        match file.read_exact_at(&mut bytes[at..], at as u64) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                let trimmed = file.len()? as usize;
                if trimmed >= at + chunk {
                    return Err(error);
                }
                bytes.truncate(at);
                len_bytes = trimmed;
                continue;
            }
            Err(error) => return Err(error),
        }
        let tail = &bytes[bytes.len().saturating_sub(zeros_enough)..];
        if bytes.len() > format::HEADER_BYTES + zeros_enough && format::is_all_zero(tail) {
            break;
        }
    }
    Ok(bytes)
}

/// The last seq a reader beside a writer may read ([`LogOptions::seq_limit`]): the durable head
/// the writer published (F-81), or `seq_durable` when that is further; `None` (the whole valid
/// log) when no head was published, or its writer closed the log.
pub fn reader_limit(vfs: &dyn Vfs, store_dir: &Path, seq_durable: u64) -> Option<u64> {
    let durable = durable::read(vfs, store_dir)?;
    durable
        .writer_open
        .then(|| durable.head.seq.max(seq_durable))
}

fn not_a_store(store_dir: &Path, reason: &'static str) -> LogError {
    LogError::NotAStore {
        path: store_dir.to_path_buf(),
        reason,
    }
}

/// The newest segment of a log: its file name and length. Appends only add records to the
/// newest segment or add a segment, and a writer's close trims the newest one to its records,
/// so between two fingerprints taken while no writer holds the store, new entries change it.
/// (While a writer holds the store its segment is preallocated and keeps its length; its close
/// changes it.) Opening and closing the store without appending leaves it as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailFingerprint {
    pub segment: String,
    pub length_bytes: u64,
}

/// The log's [`TailFingerprint`], read from the directory listing and one file's length,
/// without opening the log or taking the store's lock: a follower compares it between polls
/// to open the store only when the log may have grown.
pub fn tail_fingerprint(vfs: &dyn Vfs, store_dir: &Path) -> Result<TailFingerprint, LogError> {
    let log_dir = store_dir.join(LOG_DIR_NAME);
    let segments = list_segments(vfs, store_dir, &log_dir)?;
    let Some((_, segment)) = segments.into_iter().next_back() else {
        return Err(not_a_store(store_dir, "no log segment"));
    };
    let path = log_dir.join(&segment);
    let io = |source| LogError::Io {
        path: path.clone(),
        source,
    };
    let length_bytes = vfs
        .open(&path, OpenMode::Read)
        .map_err(io)?
        .len()
        .map_err(io)?;
    Ok(TailFingerprint {
        segment,
        length_bytes,
    })
}

/// Segment names sorted by first seq; an error if there is no log.
fn list_segments(
    vfs: &dyn Vfs,
    store_dir: &Path,
    log_dir: &Path,
) -> Result<Vec<(u64, String)>, LogError> {
    let io = |source| LogError::Io {
        path: log_dir.to_path_buf(),
        source,
    };
    if !vfs.exists(log_dir).map_err(io)? {
        return Err(not_a_store(store_dir, "no log directory"));
    }
    let mut names: Vec<(u64, String)> = vfs
        .list(log_dir)
        .map_err(io)?
        .into_iter()
        .filter_map(|name| format::parse_segment_name(&name).map(|seq| (seq, name)))
        .collect();
    names.sort();
    Ok(names)
}

fn write_first_segment(
    vfs: &dyn Vfs,
    log_dir: &Path,
    options: &LogOptions,
) -> Result<(), LogError> {
    let path = log_dir.join(format::segment_name(1));
    let io = |source| LogError::Io {
        path: path.clone(),
        source,
    };
    let file = vfs.open(&path, OpenMode::CreateNew).map_err(io)?;
    let header = SegmentHeader {
        version: FormatVersion::CURRENT,
        first_seq: 1,
        previous_hash: HASH_ZERO,
    };
    file.allocate(options.segment_bytes).map_err(io)?;
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    file.sync_data().map_err(io)?;
    vfs.sync_dir(log_dir).map_err(io)
}

/// The active segment as open leaves it, for the writer.
#[derive(Debug)]
struct Active {
    file: Arc<dyn VfsFile>,
    /// Its header, for the writer: a segment of an older version is never appended to (F-40).
    header: SegmentHeader,
    end_bytes: u64,
    /// Bytes the file has (its records and any preallocated zeros).
    file_bytes: u64,
    records: u64,
    hash_last: Hash,
}

/// Opens every segment in turn, carrying the chain from one to the next.
struct Opener<'a> {
    vfs: &'a dyn Vfs,
    log_dir: &'a Path,
    options: &'a LogOptions,
    cuts: Vec<Cut>,
    /// Set when a read-write open finds it may not write the active segment: the open goes on
    /// read-only (reads need no write permission), and appends say why they fail.
    not_writable: Option<NotWritable>,
    /// The last segment's bytes as its scan checked them, until `activate` takes them.
    last_bytes: Option<Vec<u8>>,
    /// Scan every sealed segment in full instead of trusting summaries.
    scan_all: bool,
    /// Whether a summary was trusted in this pass.
    trusted_summary: bool,
}

/// Whether an open's error is a header out of its place in the chain (F-07, F-08), which a
/// trusted summary may have caused (F-71), or a cut refused under the watermark.
fn is_place_error(error: &LogError) -> bool {
    matches!(
        error,
        LogError::Corrupt {
            offset_bytes: 0,
            kind: CorruptionKind::SegmentOrder
                | CorruptionKind::MissingSegment { .. }
                | CorruptionKind::ChainBreak
                | CorruptionKind::DamageBelowWatermark { .. },
            ..
        }
    )
}

impl<'a> Opener<'a> {
    fn new(
        vfs: &'a dyn Vfs,
        log_dir: &'a Path,
        options: &'a LogOptions,
        cuts: Vec<Cut>,
    ) -> Opener<'a> {
        Opener {
            vfs,
            log_dir,
            options,
            cuts,
            not_writable: None,
            last_bytes: None,
            scan_all: options.scan_sealed,
            trusted_summary: false,
        }
    }
}

impl Opener<'_> {
    fn read_only(&self) -> bool {
        self.options.read_only || self.not_writable.is_some()
    }

    /// Opens the segment that may be written: for writing, unless the open is read-only or
    /// this process may not write it (then for reading, and the open becomes read-only).
    fn open_active(&mut self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        if self.read_only() {
            return self.vfs.open(path, OpenMode::Read);
        }
        match self.vfs.open(path, OpenMode::Write) {
            Err(error) if vfs::is_not_writable(&error) => {
                let file = self.vfs.open(path, OpenMode::Read)?;
                self.not_writable = Some(NotWritable::new(path, &error));
                Ok(file)
            }
            opened => opened,
        }
    }

    fn open_segments(
        &mut self,
        names: &[(u64, String)],
    ) -> Result<(Vec<SegmentView>, Active), LogError> {
        let mut segments: Vec<SegmentView> = Vec::new();
        let mut expect = Expect {
            first_seq: 1,
            previous_hash: HASH_ZERO,
            is_last: false,
            seq_durable_min: self.options.seq_durable_min,
            seq_limit: self.options.seq_limit.unwrap_or(u64::MAX),
        };
        // What the segment before the last expected: it becomes the last after a torn roll.
        let mut expect_prior = expect;
        let mut last_scanned: Option<Scanned> = None;
        for (index, (name_seq, name)) in names.iter().enumerate() {
            expect.is_last = index + 1 == names.len();
            if !expect.is_last {
                let view = self.open_sealed(name, *name_seq, expect)?;
                expect_prior = expect;
                expect.first_seq = view.seq_end();
                expect.previous_hash = view.hash_last;
                segments.push(view.view);
                continue;
            }
            last_scanned = match self.open_last(&mut segments, name, *name_seq, expect)? {
                Some(scanned) => Some(scanned),
                // A torn roll, removed: the segment before is the last again, and takes appends.
                None => match segments.pop() {
                    Some(prior) => {
                        let expect = Expect {
                            is_last: true,
                            ..expect_prior
                        };
                        self.open_last(&mut segments, &prior.name, prior.first_seq, expect)?
                    }
                    None => None,
                },
            };
        }
        let (Some(scanned), Some(last)) = (last_scanned, segments.last()) else {
            return Err(LogError::NotAStore {
                path: self.log_dir.to_path_buf(),
                reason: "the log's only segment has no valid header",
            });
        };
        let active = self.activate(last, &scanned)?;
        Ok((segments, active))
    }

    /// Opens a sealed segment: its length and header are checked (F-23, F-02..F-08); its
    /// summary, when it agrees with them, is trusted without reading a record (F-71); else the
    /// segment is scanned in full (F-30) and its summary rebuilt, and written unless the open
    /// is read-only.
    fn open_sealed(
        &mut self,
        name: &str,
        name_seq: u64,
        expect: Expect,
    ) -> Result<SealedView, LogError> {
        let path = self.log_dir.join(name);
        let io = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        let file = self.vfs.open(&path, OpenMode::Read).map_err(io)?;
        let file_bytes = file.len().map_err(io)?;
        check_segment_len(name, name_seq, file_bytes)?;
        if !self.scan_all && file_bytes >= format::HEADER_BYTES as u64 {
            let mut header_bytes = [0u8; format::HEADER_BYTES];
            file.read_exact_at(&mut header_bytes, 0).map_err(io)?;
            let header = recovery::check_header(name, name_seq, &header_bytes, expect)?;
            if let Some(summary) = summary::read(self.vfs, self.log_dir, name_seq)
                && summary.agrees_with(name_seq, &header, file_bytes)
            {
                self.trusted_summary = true;
                return Ok(SealedView::new(name, summary));
            }
        }
        let bytes = file.read_all().map_err(io)?;
        let scanned = recovery::scan_segment(name, name_seq, &bytes, expect)?;
        drop(bytes);
        let summary = Summary::of_scanned(&scanned, file_bytes);
        if !self.read_only() && !self.options.scan_sealed {
            self.store_summary(&summary);
        }
        Ok(SealedView::new(name, summary))
    }

    /// Writes a rebuilt summary unless the one on disk already says the same. Best effort: a
    /// summary is derived data, and one that could not be written is rebuilt by the next open.
    fn store_summary(&self, summary: &Summary) {
        if summary::read(self.vfs, self.log_dir, summary.first_seq).as_ref() == Some(summary) {
            return;
        }
        let _ = summary::write(self.vfs, self.log_dir, summary);
    }

    /// Opens, scans and settles the last segment; `None` when it was a torn roll.
    fn open_last(
        &mut self,
        segments: &mut Vec<SegmentView>,
        name: &str,
        name_seq: u64,
        expect: Expect,
    ) -> Result<Option<Scanned>, LogError> {
        let path = self.log_dir.join(name);
        let io = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        let file = self.open_active(&path).map_err(io)?;
        // Read, not mapped: recovery may truncate this file.
        let len_bytes = file.len().map_err(io)?;
        check_segment_len(name, name_seq, len_bytes)?;
        let mut bytes = if self.options.seq_limit.is_some() {
            read_records_prefix(&*file, len_bytes).map_err(io)?
        } else {
            let mut bytes = vec![0u8; len_bytes as usize];
            file.read_exact_at(&mut bytes, 0).map_err(io)?;
            bytes
        };
        if is_torn_header(&bytes) {
            if !segments.is_empty() {
                self.cut_torn_roll(&path, name, expect)?;
                return Ok(None);
            }
            bytes = self.rewrite_torn_create(&*file, name, &path)?;
        }
        let scanned = recovery::scan_segment(name, name_seq, &bytes, expect)?;
        if !self.read_only() {
            // The active segment takes appends: a summary of it (a roll that a crash tore
            // after the summary, F-72) would go stale.
            summary::remove(self.vfs, self.log_dir, name_seq).map_err(io)?;
        }
        if scanned.torn_bytes > 0 {
            self.cuts.push(Cut {
                segment: name.to_string(),
                offset_bytes: scanned.end_bytes,
                bytes_dropped: scanned.torn_bytes,
                seq_last_kept: scanned.seq_last(),
                kind: CutKind::TornTail,
            });
            if !self.read_only() {
                file.set_len(scanned.end_bytes).map_err(io)?;
                file.sync_data().map_err(io)?;
            }
        }
        segments.push(segment_view(name, &scanned, Source::Active(file)));
        self.last_bytes = Some(bytes);
        Ok(Some(scanned))
    }

    /// Removes a last segment whose header never became durable (F-34), unless the state has
    /// applied entries past the segment before it (F-36): those entries were in this file, so
    /// it is lost data, not a torn roll, and it is left as it is for the operator.
    fn cut_torn_roll(&mut self, path: &Path, name: &str, expect: Expect) -> Result<(), LogError> {
        let seq_last_kept = expect.first_seq - 1;
        if seq_last_kept < expect.seq_durable_min {
            let kind = CorruptionKind::DamageBelowWatermark {
                seq_last_valid: seq_last_kept,
                seq_durable_min: expect.seq_durable_min,
            };
            return Err(LogError::Corrupt {
                segment: name.to_string(),
                offset_bytes: 0,
                seq: expect.first_seq,
                kind,
            });
        }
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !self.read_only() {
            self.vfs.remove(path).map_err(io)?;
            self.vfs.sync_dir(self.log_dir).map_err(io)?;
        }
        let kind = CutKind::TornSegment;
        let cut = Cut {
            segment: name.to_string(),
            offset_bytes: 0,
            bytes_dropped: 0,
            seq_last_kept,
            kind,
        };
        self.cuts.push(cut);
        Ok(())
    }

    /// The only segment's header never became durable: the create was torn, and the log is
    /// empty. Writes the header it should have had (F-35) and returns the segment's new bytes.
    fn rewrite_torn_create(
        &mut self,
        file: &dyn VfsFile,
        name: &str,
        path: &Path,
    ) -> Result<Vec<u8>, LogError> {
        let header = SegmentHeader {
            version: FormatVersion::CURRENT,
            first_seq: 1,
            previous_hash: HASH_ZERO,
        }
        .encode();
        if self.options.seq_durable_min > 0 {
            // The state applied entries this log no longer holds: lost, not torn.
            let kind = CorruptionKind::DamageBelowWatermark {
                seq_last_valid: 0,
                seq_durable_min: self.options.seq_durable_min,
            };
            return Err(LogError::Corrupt {
                segment: name.to_string(),
                offset_bytes: 0,
                seq: 1,
                kind,
            });
        }
        if format::parse_segment_name(name) != Some(1) {
            let kind = CorruptionKind::SegmentOrder;
            return Err(LogError::Corrupt {
                segment: name.to_string(),
                offset_bytes: 0,
                seq: 1,
                kind,
            });
        }
        if !self.read_only() {
            let io = |source| LogError::Io {
                path: path.to_path_buf(),
                source,
            };
            file.write_all_at(&header, 0).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let kind = CutKind::TornCreate;
        let cut = Cut {
            segment: name.to_string(),
            offset_bytes: 0,
            bytes_dropped: 0,
            seq_last_kept: 0,
            kind,
        };
        self.cuts.push(cut);
        Ok(header.to_vec())
    }

    /// Turns the last segment into the writer's active one: its unproven tail made durable
    /// (F-44), then preallocated (F-41).
    fn activate(&mut self, last: &SegmentView, scanned: &Scanned) -> Result<Active, LogError> {
        let path = self.log_dir.join(&last.name);
        let Source::Active(file) = &last.source else {
            unreachable!("the last segment is opened by open_last, for appends")
        };
        let file = file.clone();
        let bytes = self.last_bytes.take().unwrap_or_default();
        let mut file_bytes = scanned.end_bytes;
        if !self.read_only() {
            self.sync_unproven_tail(&*file, last, &bytes, &path)?;
            file_bytes = self.preallocate(&*file, &path)?;
        }
        let records = last.records;
        Ok(Active {
            file,
            header: scanned.header,
            end_bytes: scanned.end_bytes,
            file_bytes,
            records,
            hash_last: scanned.hash_last(),
        })
    }

    /// Writes again, and `fdatasync`s, the active segment's bytes past the state's watermark
    /// (F-44): the scan read them from the page cache, which after a failed `fdatasync` may hold
    /// a batch that never reached the disk (Linux marks such pages clean, so a later sync does
    /// not carry them). Written again, they are dirty, and the sync proves them durable before
    /// the state applies them or a later batch is acknowledged after them. `bytes` are the
    /// segment's bytes as the scan checked them.
    fn sync_unproven_tail(
        &self,
        file: &dyn VfsFile,
        last: &SegmentView,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(), LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let seq_proven = self.options.seq_durable_min;
        let start_bytes = if seq_proven < last.first_seq {
            // Nothing of this segment is proven, its header included (a roll whose sync failed).
            0
        } else if seq_proven + 1 < last.seq_end() {
            last.record_range(seq_proven + 1).0
        } else {
            return Ok(());
        };
        // The scan read every byte up to the segment's end; anything else is a bug, refused
        // rather than written.
        let tail = bytes
            .get(start_bytes as usize..last.end_bytes as usize)
            .ok_or_else(|| io(io::ErrorKind::UnexpectedEof.into()))?;
        file.write_all_at(tail, start_bytes)
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        if start_bytes == 0 {
            // The roll's own directory sync may have failed too.
            self.vfs.sync_dir(self.log_dir).map_err(io)?;
        }
        Ok(())
    }

    /// Preallocates the active segment (F-41) and returns the file's length. A disk too full
    /// for it does not stop the open: reading needs no space, and an append that needs more
    /// grows the file first and fails cleanly with `NoSpace` (F-41).
    fn preallocate(&self, file: &dyn VfsFile, path: &Path) -> Result<u64, LogError> {
        let io = |source| LogError::Io {
            path: path.to_path_buf(),
            source,
        };
        match file.allocate(self.options.segment_bytes) {
            Ok(()) => file.sync_data().map_err(io)?,
            Err(error) if vfs::is_no_space(&error) => {}
            Err(error) => return Err(io(error)),
        }
        file.len().map_err(io)
    }
}

/// Refuses a segment file larger than the writer ever makes, before anything is allocated for
/// it (F-23).
fn check_segment_len(name: &str, name_seq: u64, len_bytes: u64) -> Result<(), LogError> {
    if len_bytes > format::SEGMENT_FILE_BYTES_MAX {
        return Err(LogError::Corrupt {
            segment: name.to_string(),
            offset_bytes: 0,
            seq: name_seq,
            kind: CorruptionKind::SegmentTooLarge { bytes: len_bytes },
        });
    }
    Ok(())
}

/// A header that never became durable: the header's bytes (or as many as exist) and
/// everything after them are zeros (F-34). Writes of one 512-byte sector are assumed atomic,
/// so a header that is nonzero but does not decode is damage, not a torn write.
fn is_torn_header(bytes: &[u8]) -> bool {
    format::is_all_zero(bytes)
}

/// The active segment's view: every record's offset.
fn segment_view(name: &str, scanned: &Scanned, source: Source) -> SegmentView {
    SegmentView {
        name: name.to_string(),
        version: scanned.header.version,
        first_seq: scanned.header.first_seq,
        records: scanned.offsets.len() as u64,
        offsets: scanned.offsets.clone(),
        stride: 1,
        end_bytes: scanned.end_bytes,
        source,
    }
}

/// A sealed segment as open found it, and the hash its successor must chain to.
struct SealedView {
    view: SegmentView,
    hash_last: Hash,
}

impl SealedView {
    fn new(name: &str, summary: Summary) -> SealedView {
        let hash_last = summary.hash_last;
        SealedView {
            view: SegmentView::sealed(name, summary),
            hash_last,
        }
    }

    fn seq_end(&self) -> u64 {
        self.view.seq_end()
    }
}
