//! Scanning segments on open, and the decision table for a damaged tail (`docs/format.md`
//! section 6). A sealed segment must be whole; only the last segment may end in a torn
//! write, and only a *provably* torn one is cut: everything else is corruption of
//! acknowledged data and stops the open (fail-stop).

use super::error::{CorruptionKind, LogError};
use super::format::{
    self, BATCH_BYTES_MAX, FRAME_PREFIX_BYTES, FrameFault, HEADER_BYTES, Hash, PAYLOAD_FIXED_BYTES,
    RecordFixed, SegmentHeader,
};

/// Where a segment's records start and end, as found by a scan.
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    pub header: SegmentHeader,
    /// Byte offset of each record, in seq order from `header.first_seq`.
    pub offsets: Vec<u32>,
    /// End of the last valid record.
    pub end_bytes: u64,
    /// The last record's fixed fields, if any record.
    pub last: Option<RecordFixed>,
    /// A torn tail found past `end_bytes` in the last segment: the damaged bytes to drop
    /// (zeros after them are not counted).
    pub torn_bytes: u64,
}

impl Scanned {
    pub fn seq_last(&self) -> u64 {
        self.header.first_seq + self.offsets.len() as u64 - 1
    }

    pub fn hash_last(&self) -> Hash {
        self.last
            .map_or(self.header.previous_hash, |fixed| fixed.block_hash)
    }
}

/// What a scan knows about the segment before it: the chain it must continue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    pub first_seq: u64,
    pub previous_hash: Hash,
    /// Whether this is the last segment, where a torn tail may be cut.
    pub is_last: bool,
    /// The state's watermark: a cut may not drop entries at or below it.
    pub seq_durable_min: u64,
    /// The scan ends after this seq, whatever follows it (`LogOptions::seq_limit`).
    pub seq_limit: u64,
}

/// Scans one segment's bytes against what the previous segment implies.
pub(crate) fn scan_segment(
    name: &str,
    name_seq: u64,
    bytes: &[u8],
    expect: Expect,
) -> Result<Scanned, LogError> {
    let corrupt = |offset_bytes: u64, seq: u64, kind| LogError::Corrupt {
        segment: name.to_string(),
        offset_bytes,
        seq,
        kind,
    };
    let header = check_header(name, name_seq, bytes, expect)?;
    let mut scanned = Scanned {
        header,
        offsets: Vec::new(),
        end_bytes: HEADER_BYTES as u64,
        last: None,
        torn_bytes: 0,
    };
    walk_records(bytes, &mut scanned, expect.seq_limit).or_else(|damage| {
        settle_damage(bytes, &mut scanned, damage, expect)
            .map_err(|kind| corrupt(damage.offset_bytes, scanned.seq_last() + 1, kind))
    })?;
    Ok(scanned)
}

/// Decodes a segment's header (F-02..F-06) and checks it against its place in the log
/// (F-07, F-08): the first checks of a scan, and all that open reads of a sealed segment whose
/// summary it trusts. `bytes` are the segment's first bytes (at least the header, if it has
/// one).
pub(crate) fn check_header(
    name: &str,
    name_seq: u64,
    bytes: &[u8],
    expect: Expect,
) -> Result<SegmentHeader, LogError> {
    let corrupt = |seq: u64, kind| LogError::Corrupt {
        segment: name.to_string(),
        offset_bytes: 0,
        seq,
        kind,
    };
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        Err(format::HeaderFault::Version(found)) => {
            return Err(LogError::UnsupportedVersion {
                segment: name.to_string(),
                found,
                expected: format::FORMAT_VERSION,
            });
        }
        Err(fault) => return Err(corrupt(name_seq, CorruptionKind::BadHeader(fault))),
    };
    if header.first_seq != name_seq {
        let kind = CorruptionKind::NameMismatch {
            name_seq,
            header_seq: header.first_seq,
        };
        return Err(corrupt(name_seq, kind));
    }
    if header.first_seq != expect.first_seq {
        let kind = if header.first_seq > expect.first_seq && expect.first_seq > 1 {
            CorruptionKind::MissingSegment {
                expected_seq: expect.first_seq,
                found_seq: header.first_seq,
            }
        } else {
            CorruptionKind::SegmentOrder
        };
        return Err(corrupt(header.first_seq, kind));
    }
    if header.previous_hash != expect.previous_hash {
        return Err(corrupt(header.first_seq, CorruptionKind::ChainBreak));
    }
    Ok(header)
}

/// The first place where the records stop making sense.
#[derive(Debug, Clone, Copy)]
struct Damage {
    offset_bytes: u64,
    kind: DamageKind,
}

#[derive(Debug, Clone, Copy)]
enum DamageKind {
    /// The bytes do not frame a record (bad length, bad crc, cut short, or a zero length
    /// followed by nonzero bytes): what a torn write leaves.
    Frame(CorruptionKind2),
    /// A record that frames correctly but does not continue the chain: never a torn write.
    Chain(CorruptionKind2),
}

/// `CorruptionKind` without data, so that `Damage` stays `Copy`.
#[derive(Debug, Clone, Copy)]
enum CorruptionKind2 {
    BadLength,
    BadChecksum,
    TrailingBytes,
    SeqGap { expected: u64, found: u64 },
    ChainBreak,
    BadBatch,
    BadHash,
}

impl From<CorruptionKind2> for CorruptionKind {
    fn from(kind: CorruptionKind2) -> Self {
        match kind {
            CorruptionKind2::BadLength => CorruptionKind::BadLength,
            CorruptionKind2::BadChecksum => CorruptionKind::BadChecksum,
            CorruptionKind2::TrailingBytes => CorruptionKind::TrailingBytes,
            CorruptionKind2::SeqGap { expected, found } => {
                CorruptionKind::SeqGap { expected, found }
            }
            CorruptionKind2::ChainBreak => CorruptionKind::ChainBreak,
            CorruptionKind2::BadBatch => CorruptionKind::BadBatch,
            CorruptionKind2::BadHash => CorruptionKind::BadHash,
        }
    }
}

/// Walks records from the header on, appending to `scanned`, until a clean end (end of
/// file, or a zero length followed only by zeros), the record `seq_limit`, or the first damage.
fn walk_records(bytes: &[u8], scanned: &mut Scanned, seq_limit: u64) -> Result<(), Damage> {
    let mut at = HEADER_BYTES;
    let mut previous = scanned.header.previous_hash;
    let mut batch_first_seq = 0;
    loop {
        if at == bytes.len() {
            return Ok(());
        }
        let damage = |kind| Damage {
            offset_bytes: at as u64,
            kind,
        };
        let record = match format::decode_record(&bytes[at..]) {
            Ok(record) => record,
            Err(FrameFault::Zero) if format::is_all_zero(&bytes[at..]) => return Ok(()),
            Err(FrameFault::Zero) => {
                return Err(damage(DamageKind::Frame(CorruptionKind2::TrailingBytes)));
            }
            Err(FrameFault::Checksum) => {
                return Err(damage(DamageKind::Frame(CorruptionKind2::BadChecksum)));
            }
            Err(FrameFault::Length(_) | FrameFault::Truncated) => {
                return Err(damage(DamageKind::Frame(CorruptionKind2::BadLength)));
            }
        };
        let expected = scanned.header.first_seq + scanned.offsets.len() as u64;
        let fixed = record.fixed;
        if fixed.seq != expected {
            let kind = CorruptionKind2::SeqGap {
                expected,
                found: fixed.seq,
            };
            return Err(damage(DamageKind::Chain(kind)));
        }
        if fixed.previous_hash != previous {
            return Err(damage(DamageKind::Chain(CorruptionKind2::ChainBreak)));
        }
        // A record whose crc holds but whose hash does not was written that way or altered
        // with its crc fixed: never a torn write, so it is refused, never cut.
        let version = scanned.header.version;
        if version.block_hash(fixed.seq, &fixed.previous_hash, record.body) != fixed.block_hash {
            return Err(damage(DamageKind::Chain(CorruptionKind2::BadHash)));
        }
        if !batch_continues(fixed, batch_first_seq) {
            return Err(damage(DamageKind::Chain(CorruptionKind2::BadBatch)));
        }
        batch_first_seq = fixed.batch_first_seq;
        scanned.offsets.push(at as u32);
        scanned.last = Some(fixed);
        previous = fixed.block_hash;
        at += record.record_bytes;
        scanned.end_bytes = at as u64;
        if fixed.seq >= seq_limit {
            return Ok(());
        }
    }
}

/// A record starts a batch (its `batch_first_seq` is its own seq) or continues the batch of
/// its predecessor in the same segment. A segment's first record always starts a batch, since
/// a batch never spans segments.
pub(crate) fn batch_continues(fixed: RecordFixed, batch_first_seq_prior: u64) -> bool {
    fixed.batch_first_seq == fixed.seq
        || (batch_first_seq_prior != 0 && fixed.batch_first_seq == batch_first_seq_prior)
}

/// Decides what damage at the end of the valid records means (the decision table, F-30..F-36):
/// a provably torn tail of the last segment is marked for cutting; anything else is corruption.
fn settle_damage(
    bytes: &[u8],
    scanned: &mut Scanned,
    damage: Damage,
    expect: Expect,
) -> Result<(), CorruptionKind> {
    let frame_kind = match damage.kind {
        DamageKind::Chain(kind) => return Err(kind.into()),
        DamageKind::Frame(kind) => kind,
    };
    if !expect.is_last {
        return Err(frame_kind.into());
    }
    let start = damage.offset_bytes as usize;
    let end = format::last_nonzero(bytes)
        .map_or(start, |at| at + 1)
        .max(start);
    let torn_bytes = (end - start) as u64;
    if torn_bytes > BATCH_BYTES_MAX as u64 {
        return Err(CorruptionKind::TailTooLong { bytes: torn_bytes });
    }
    // A valid record after the damage that belongs to a later batch than the damaged one
    // proves the damaged bytes were once acknowledged.
    let seq_first_torn = scanned.header.first_seq + scanned.offsets.len() as u64;
    if let Some(at) = later_batch_record(&bytes[..end], start + 1, seq_first_torn) {
        return Err(CorruptionKind::ValidRecordsAfterDamage {
            at_offset_bytes: at as u64,
        });
    }
    let seq_last_valid = seq_first_torn - 1;
    if seq_last_valid < expect.seq_durable_min {
        let seq_durable_min = expect.seq_durable_min;
        return Err(CorruptionKind::DamageBelowWatermark {
            seq_last_valid,
            seq_durable_min,
        });
    }
    scanned.torn_bytes = torn_bytes;
    Ok(())
}

/// The offset of the first record in `bytes[from..]` that decodes (length and crc) and was
/// written by a batch that began after `seq_first_torn`, or that claims an impossible batch.
fn later_batch_record(bytes: &[u8], from: usize, seq_first_torn: u64) -> Option<usize> {
    let min_record = FRAME_PREFIX_BYTES + PAYLOAD_FIXED_BYTES;
    let mut at = from;
    while at + min_record <= bytes.len() {
        // Cheap filter first: most offsets in zeros or garbage fail on the length field.
        let length = format::read_u32(bytes, at) as usize;
        let plausible =
            length >= PAYLOAD_FIXED_BYTES && at + FRAME_PREFIX_BYTES + length <= bytes.len();
        if plausible && let Ok(record) = format::decode_record(&bytes[at..]) {
            let fixed = record.fixed;
            let same_torn_batch = fixed.batch_first_seq <= seq_first_torn
                && fixed.seq >= seq_first_torn
                && fixed.batch_first_seq <= fixed.seq;
            if !same_torn_batch {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}
