//! The log layer's error: every way opening, appending to or reading the log can fail.
//! Corruption carries where it was found (segment, byte offset, seq) so that an operator can
//! look at the bytes.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::format::HeaderFault;

/// An error of the log layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The directory has no `log/` folder with segments: it is not a Folio store.
    #[error("{path} is not a Folio store: {reason}")]
    NotAStore { path: PathBuf, reason: &'static str },
    /// `create` found a log already there.
    #[error("{path} already holds a log")]
    AlreadyExists { path: PathBuf },
    /// A segment of a format version this build cannot read (`format::FORMAT_VERSIONS_READ`).
    #[error(
        "segment {segment} has format version {found}; this build reads versions {} to \
         {expected}",
        super::format::FORMAT_VERSIONS_READ[0].number
    )]
    UnsupportedVersion {
        segment: String,
        found: u32,
        /// The newest version this build reads, the one it writes.
        expected: u32,
    },
    /// Acknowledged data is damaged or missing; the log refuses to open (fail-stop).
    #[error("corrupt log: {kind} in segment {segment} at offset {offset_bytes} (seq {seq})")]
    Corrupt {
        segment: String,
        offset_bytes: u64,
        seq: u64,
        kind: CorruptionKind,
    },
    /// A body over the bound; nothing was written.
    #[error("entry {index} of the batch has a body of {body_bytes} bytes, over the bound of {max}")]
    BodyTooLarge {
        index: usize,
        body_bytes: usize,
        max: usize,
    },
    /// A batch over the entry or byte bound; nothing was written.
    #[error(
        "batch of {entries} entries and {bytes} bytes exceeds the bounds ({entries_max}, {bytes_max})"
    )]
    BatchTooLarge {
        entries: usize,
        bytes: usize,
        entries_max: usize,
        bytes_max: usize,
    },
    /// A write or sync failed: the batch may or may not be durable. The log refuses further
    /// appends until it is reopened, which rescans the disk and settles the outcome.
    #[error("log write outcome unknown (the batch may or may not be durable): {source}")]
    OutcomeUnknown { source: io::Error },
    /// An earlier write or sync failed; reopen the log.
    #[error("the log refuses writes after an earlier failed write or sync; reopen it")]
    Poisoned,
    /// The disk is full; nothing of the batch was written and the log stays usable.
    #[error("no space left for the log; nothing was written: {source}")]
    NoSpace { source: io::Error },
    /// An I/O error that left the log as it was.
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A seq that the log does not hold.
    #[error("seq {seq} is not in the log (head is {head})")]
    SeqOutOfRange { seq: u64, head: u64 },
    /// Appends on a log opened read-only.
    #[error("the log is open read-only")]
    ReadOnly,
    /// Appends on a log opened read-write whose active segment this process may not write (its
    /// permissions, a read-only mount): the open went on read-only, so reads work.
    #[error("{path} cannot be written ({source}): the store is read-only to this process")]
    NotWritable { path: PathBuf, source: io::Error },
    /// Bad options.
    #[error("invalid log option: {0}")]
    InvalidOption(&'static str),
}

/// What exactly is wrong in a corrupt log.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptionKind {
    /// A segment header that does not decode.
    BadHeader(HeaderFault),
    /// The header's first seq differs from the one in the file name.
    NameMismatch { name_seq: u64, header_seq: u64 },
    /// The first segment does not start at seq 1, or segments overlap.
    SegmentOrder,
    /// A segment is missing: the next one starts later than the previous one ends.
    MissingSegment { expected_seq: u64, found_seq: u64 },
    /// A record frame's length field is out of bounds or past the end of the segment.
    BadLength,
    /// A record's crc does not match its payload.
    BadChecksum,
    /// A record carries another seq than the one that follows its predecessor.
    SeqGap { expected: u64, found: u64 },
    /// A record's `previous_hash` differs from its predecessor's `block_hash`.
    ChainBreak,
    /// A record's `block_hash` is not the hash of its contents.
    BadHash,
    /// A record's `batch_first_seq` is not its own seq or its predecessor's batch start.
    BadBatch,
    /// Nonzero bytes after a zero length field: where the records of a segment end, only zeros
    /// may follow (refused in a sealed segment; in the last one, judged as a possibly torn tail).
    TrailingBytes,
    /// Damage followed by a valid record of a later batch: not a torn write.
    ValidRecordsAfterDamage { at_offset_bytes: u64 },
    /// A damaged tail longer than any batch the writer can produce.
    TailTooLong { bytes: u64 },
    /// A segment file larger than any the writer produces (`SEGMENT_BYTES_MAX` plus one
    /// batch): refused before it is read, since offsets within a segment are `u32`.
    SegmentTooLarge { bytes: u64 },
    /// A damaged tail would cut entries the state has already applied.
    DamageBelowWatermark {
        seq_last_valid: u64,
        seq_durable_min: u64,
    },
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::BadHeader(fault) => write!(f, "bad segment header ({fault:?})"),
            CorruptionKind::NameMismatch {
                name_seq,
                header_seq,
            } => {
                write!(f, "file name says seq {name_seq}, header says {header_seq}")
            }
            CorruptionKind::SegmentOrder => write!(f, "segments out of order"),
            CorruptionKind::MissingSegment {
                expected_seq,
                found_seq,
            } => {
                write!(
                    f,
                    "missing segment: expected seq {expected_seq}, next starts at {found_seq}"
                )
            }
            CorruptionKind::BadLength => write!(f, "record length out of bounds"),
            CorruptionKind::BadChecksum => write!(f, "record checksum mismatch"),
            CorruptionKind::SeqGap { expected, found } => {
                write!(f, "seq gap: expected {expected}, found {found}")
            }
            CorruptionKind::ChainBreak => write!(f, "chain break: previous_hash mismatch"),
            CorruptionKind::BadHash => write!(f, "block_hash mismatch"),
            CorruptionKind::BadBatch => write!(f, "batch_first_seq out of place"),
            CorruptionKind::TrailingBytes => write!(f, "bytes after the last record"),
            CorruptionKind::ValidRecordsAfterDamage { at_offset_bytes } => {
                write!(
                    f,
                    "damage followed by a valid record at offset {at_offset_bytes}"
                )
            }
            CorruptionKind::TailTooLong { bytes } => {
                write!(f, "damaged tail of {bytes} bytes, longer than any batch")
            }
            CorruptionKind::SegmentTooLarge { bytes } => {
                write!(
                    f,
                    "segment of {bytes} bytes, larger than any the writer makes"
                )
            }
            CorruptionKind::DamageBelowWatermark {
                seq_last_valid,
                seq_durable_min,
            } => write!(
                f,
                "damaged tail after seq {seq_last_valid}, below the state's watermark {seq_durable_min}"
            ),
        }
    }
}
