//! Segment summaries (`docs/format.md` section 10): a sidecar file `<20 digits>.sum` beside each
//! sealed segment that says what open needs to trust the segment without reading its records
//! (seq range, first and last hash, end offset, a sparse seq -> offset index). A summary is
//! derived data: one that is missing, torn or disagrees with its segment is rebuilt from the
//! segment (F-71), never trusted, and never the reason an open refuses.

use std::io;
use std::path::{Path, PathBuf};

use super::format::{
    self, FRAME_PREFIX_BYTES, FormatVersion, HEADER_BYTES, Hash, PAYLOAD_FIXED_BYTES,
    SEGMENT_FILE_BYTES_MAX, SegmentHeader,
};
use super::recovery::Scanned;
use super::vfs::{OpenMode, Vfs};

/// First bytes of every summary file (F-70).
pub const SUMMARY_MAGIC: [u8; 8] = *b"FOLIOSUM";
/// Version of the summary layout this build reads and writes (F-70).
pub const SUMMARY_VERSION: u32 = 1;
/// Records between two points of a summary's sparse index: a read walks at most this many
/// frames less one from the nearest point (F-70).
pub const SUMMARY_INDEX_STRIDE: u32 = 64;
/// Bytes of a summary before its index.
pub const SUMMARY_FIXED_BYTES: usize = 120;
/// Bytes of a summary that holds no index point: the fixed part and the crc.
pub const SUMMARY_BYTES_MIN: usize = SUMMARY_FIXED_BYTES + 4;
/// The largest summary: the index of the largest segment of the smallest records. A longer file
/// is not read (F-70).
pub const SUMMARY_BYTES_MAX: usize = SUMMARY_BYTES_MIN + 4 * INDEX_POINTS_MAX;
const RECORD_BYTES_MIN: u64 = (FRAME_PREFIX_BYTES + PAYLOAD_FIXED_BYTES) as u64;
const RECORDS_MAX: u64 = (SEGMENT_FILE_BYTES_MAX - HEADER_BYTES as u64) / RECORD_BYTES_MIN;
const INDEX_POINTS_MAX: usize = RECORDS_MAX.div_ceil(SUMMARY_INDEX_STRIDE as u64) as usize;

const _: () = assert!(SUMMARY_FIXED_BYTES == 8 + 4 + 4 + 8 + 8 + 8 + 8 + 32 + 32 + 4 + 4);

/// What a summary says about its sealed segment.
///
/// Format: `{ magic 8 | version u32 | segment_version u32 | first_seq u64 | records u64 |
/// end_bytes u64 | file_bytes u64 | previous_hash 32 | hash_last 32 | index_stride u32 |
/// index_count u32 | index u32 * index_count | crc32 u32 }`, little-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The segment header's version.
    pub segment_version: FormatVersion,
    pub first_seq: u64,
    /// Records in the segment: its entries are `first_seq .. first_seq + records`.
    pub records: u64,
    /// End of the last record.
    pub end_bytes: u64,
    /// Length of the segment file when it was summarized (zeros past `end_bytes`, if longer).
    pub file_bytes: u64,
    /// The segment header's `previous_hash`.
    pub previous_hash: Hash,
    /// `block_hash` of the last record (`previous_hash` when the segment holds none).
    pub hash_last: Hash,
    /// Offset of record `first_seq + i * SUMMARY_INDEX_STRIDE`, for each `i`.
    pub index: Vec<u32>,
}

/// Why a summary's bytes are not a usable summary (each means: rebuild it, F-71).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryFault {
    /// Shorter than [`SUMMARY_BYTES_MIN`] or longer than [`SUMMARY_BYTES_MAX`].
    Size,
    /// Not `FOLIOSUM`.
    Magic,
    /// The crc does not match.
    Checksum,
    /// A summary version this build does not read.
    Version,
    /// A field out of its legal range, or fields that contradict each other.
    Field,
}

impl Summary {
    /// The summary of a segment scanned in full, whose file is `file_bytes` long.
    pub(crate) fn of_scanned(scanned: &Scanned, file_bytes: u64) -> Summary {
        let index = scanned
            .offsets
            .iter()
            .step_by(SUMMARY_INDEX_STRIDE as usize)
            .copied()
            .collect();
        Summary {
            segment_version: scanned.header.version,
            first_seq: scanned.header.first_seq,
            records: scanned.offsets.len() as u64,
            end_bytes: scanned.end_bytes,
            file_bytes,
            previous_hash: scanned.header.previous_hash,
            hash_last: scanned.hash_last(),
            index,
        }
    }

    /// Seq after the segment's last entry: the next segment's `first_seq`.
    pub fn seq_end(&self) -> u64 {
        self.first_seq + self.records
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUMMARY_BYTES_MIN + 4 * self.index.len());
        out.extend_from_slice(&SUMMARY_MAGIC);
        out.extend_from_slice(&SUMMARY_VERSION.to_le_bytes());
        out.extend_from_slice(&self.segment_version.number.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.records.to_le_bytes());
        out.extend_from_slice(&self.end_bytes.to_le_bytes());
        out.extend_from_slice(&self.file_bytes.to_le_bytes());
        out.extend_from_slice(&self.previous_hash);
        out.extend_from_slice(&self.hash_last);
        out.extend_from_slice(&SUMMARY_INDEX_STRIDE.to_le_bytes());
        out.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        debug_assert_eq!(out.len(), SUMMARY_FIXED_BYTES);
        for offset in &self.index {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a summary (F-70): size, magic, crc, then version, then the fields.
    pub fn decode(bytes: &[u8]) -> Result<Summary, SummaryFault> {
        if bytes.len() < SUMMARY_BYTES_MIN || bytes.len() > SUMMARY_BYTES_MAX {
            return Err(SummaryFault::Size);
        }
        if bytes[0..8] != SUMMARY_MAGIC {
            return Err(SummaryFault::Magic);
        }
        let crc_at = bytes.len() - 4;
        if crc32fast::hash(&bytes[..crc_at]) != format::read_u32(bytes, crc_at) {
            return Err(SummaryFault::Checksum);
        }
        if format::read_u32(bytes, 8) != SUMMARY_VERSION {
            return Err(SummaryFault::Version);
        }
        let segment_version =
            FormatVersion::of(format::read_u32(bytes, 12)).ok_or(SummaryFault::Field)?;
        let index_count = format::read_u32(bytes, 116) as usize;
        if format::read_u32(bytes, 112) != SUMMARY_INDEX_STRIDE
            || bytes.len() != SUMMARY_BYTES_MIN + 4 * index_count
        {
            return Err(SummaryFault::Field);
        }
        let summary = Summary {
            segment_version,
            first_seq: format::read_u64(bytes, 16),
            records: format::read_u64(bytes, 24),
            end_bytes: format::read_u64(bytes, 32),
            file_bytes: format::read_u64(bytes, 40),
            previous_hash: read_hash(bytes, 48),
            hash_last: read_hash(bytes, 80),
            index: (0..index_count)
                .map(|point| format::read_u32(bytes, SUMMARY_FIXED_BYTES + 4 * point))
                .collect(),
        };
        if !summary.fields_hold() {
            return Err(SummaryFault::Field);
        }
        Ok(summary)
    }

    /// The rules of F-70 between the fields.
    fn fields_hold(&self) -> bool {
        let header_bytes = HEADER_BYTES as u64;
        let records_fit = self.records
            <= (self.end_bytes.saturating_sub(header_bytes)) / RECORD_BYTES_MIN
            && (self.records > 0 || self.end_bytes == header_bytes);
        let index_count = self.records.div_ceil(u64::from(SUMMARY_INDEX_STRIDE));
        let index_holds = self.index.len() as u64 == index_count
            && self
                .index
                .first()
                .is_none_or(|at| *at as usize == HEADER_BYTES)
            && self.index.windows(2).all(|pair| pair[0] < pair[1])
            && self
                .index
                .last()
                .is_none_or(|at| u64::from(*at) + RECORD_BYTES_MIN <= self.end_bytes);
        self.first_seq >= 1
            && self.first_seq.checked_add(self.records).is_some()
            && self.end_bytes >= header_bytes
            && self.end_bytes <= self.file_bytes
            && self.file_bytes <= SEGMENT_FILE_BYTES_MAX
            && records_fit
            && index_holds
    }

    /// Whether the summary describes this segment as it is now (F-71): its name, its header and
    /// its length.
    pub fn agrees_with(&self, name_seq: u64, header: &SegmentHeader, file_bytes: u64) -> bool {
        self.first_seq == name_seq
            && self.first_seq == header.first_seq
            && self.previous_hash == header.previous_hash
            && self.segment_version == header.version
            && self.file_bytes == file_bytes
    }
}

fn read_hash(bytes: &[u8], at: usize) -> Hash {
    let mut hash = format::HASH_ZERO;
    hash.copy_from_slice(&bytes[at..at + 32]);
    hash
}

/// The file name of the summary of the segment whose first entry is `first_seq` (F-72).
pub fn summary_name(first_seq: u64) -> String {
    format!(
        "{first_seq:0width$}.sum",
        width = format::SEGMENT_NAME_DIGITS
    )
}

/// Where a summary is written before it is renamed into place.
fn temporary_path(path: &Path) -> PathBuf {
    path.with_extension("sum.tmp")
}

/// Reads the summary of segment `first_seq`; `None` when there is none or it is not usable
/// (any I/O error included: the segment itself decides then).
pub(crate) fn read(vfs: &dyn Vfs, log_dir: &Path, first_seq: u64) -> Option<Summary> {
    let path = log_dir.join(summary_name(first_seq));
    let file = vfs.open(&path, OpenMode::Read).ok()?;
    let len_bytes = file.len().ok()?;
    if len_bytes > SUMMARY_BYTES_MAX as u64 {
        return None;
    }
    let mut bytes = vec![0u8; len_bytes as usize];
    file.read_exact_at(&mut bytes, 0).ok()?;
    Summary::decode(&bytes).ok()
}

/// Writes a summary durably (F-72): to a temporary file, `fdatasync`ed, renamed over its
/// name, and the directory `fsync`ed. A crash at any step leaves the old summary, none, or
/// the new one, each whole.
pub(crate) fn write(vfs: &dyn Vfs, log_dir: &Path, summary: &Summary) -> io::Result<()> {
    let path = log_dir.join(summary_name(summary.first_seq));
    let temporary = temporary_path(&path);
    if vfs.exists(&temporary)? {
        vfs.remove(&temporary)?;
    }
    let file = vfs.open(&temporary, OpenMode::CreateNew)?;
    let written = file
        .write_all_at(&summary.encode(), 0)
        .and_then(|()| file.sync_data());
    drop(file);
    if let Err(error) = written {
        let _ = vfs.remove(&temporary);
        return Err(error);
    }
    vfs.rename(&temporary, &path)?;
    vfs.sync_dir(log_dir)
}

/// Removes the summary of segment `first_seq`, if any, durably: the segment is about to take
/// appends again (it is the active one), so what it says would become stale (F-72).
pub(crate) fn remove(vfs: &dyn Vfs, log_dir: &Path, first_seq: u64) -> io::Result<()> {
    let path = log_dir.join(summary_name(first_seq));
    if !vfs.exists(&path)? {
        return Ok(());
    }
    vfs.remove(&path)?;
    vfs.sync_dir(log_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(records: u64) -> Summary {
        let index: Vec<u32> = (0..records.div_ceil(64))
            .map(|point| 64 + point as u32 * 64 * 100)
            .collect();
        Summary {
            segment_version: FormatVersion::CURRENT,
            first_seq: 7,
            records,
            end_bytes: 64 + records * 100,
            file_bytes: 64 + records * 100,
            previous_hash: [3u8; 32],
            hash_last: [9u8; 32],
            index,
        }
    }

    #[test]
    fn a_summary_round_trips_and_every_single_byte_change_is_refused() {
        for records in [0, 1, 64, 65, 200] {
            let summary = summary(records);
            let bytes = summary.encode();
            assert_eq!(bytes.len(), SUMMARY_BYTES_MIN + 4 * summary.index.len());
            assert_eq!(Summary::decode(&bytes), Ok(summary));
            for at in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x10;
                assert!(Summary::decode(&damaged).is_err(), "flip at {at} passed");
            }
            for cut in 0..bytes.len() {
                assert!(
                    Summary::decode(&bytes[..cut]).is_err(),
                    "cut at {cut} passed"
                );
            }
        }
    }

    #[test]
    fn fields_that_contradict_each_other_are_refused_even_with_a_good_crc() {
        let mut more_records = summary(10);
        more_records.records = 100; // the index would need two points
        let mut past_the_file = summary(10);
        past_the_file.end_bytes = past_the_file.file_bytes + 1;
        let mut first_seq_zero = summary(10);
        first_seq_zero.first_seq = 0;
        for bad in [more_records, past_the_file, first_seq_zero] {
            assert_eq!(
                Summary::decode(&bad.encode()),
                Err(SummaryFault::Field),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_largest_summary_is_the_documented_bound() {
        // docs/format.md F-70: 124 + 4 * ceil(((SEGMENT_FILE_BYTES_MAX - 64) / 88) / 64).
        assert_eq!(SUMMARY_BYTES_MAX, 786_556);
    }

    #[test]
    fn summary_names_follow_segment_names() {
        assert_eq!(summary_name(1), "00000000000000000001.sum");
    }
}
