//! The log's on-disk format: constants, limits, the segment header and the record frame.
//!
//! Everything here is pure (no I/O) and implements `docs/format.md` sections 2 to 5; the
//! normative ids (`F-xx`) in comments refer to that document. A change to anything in this
//! file that alters bytes on disk must bump [`FORMAT_VERSION`]; [`FORMAT_VERSIONS_READ`] is
//! the one place that says which versions this build reads (F-60).

/// A blake3 digest: `block_hash` and `previous_hash` of an entry.
pub type Hash = [u8; 32];

/// The all-zeros hash that entry 1 chains to (F-12).
pub const HASH_ZERO: Hash = [0u8; 32];

/// Version of the on-disk format this build writes in the header of every new segment (F-03).
pub const FORMAT_VERSION: u32 = 3;

/// Every format version this build reads, oldest first, each with the domain tag that hashes
/// the entries of its segments (F-11, F-60). The last is the one it writes. Supporting a new
/// version is one more row here (and what its entries may hold, in the layer that decodes
/// bodies); a store may hold segments of several of these versions, in this order.
pub const FORMAT_VERSIONS_READ: [FormatVersion; 2] = [
    FormatVersion {
        number: 2,
        domain_tag: *b"folio-entry-v2",
    },
    FormatVersion {
        number: 3,
        domain_tag: *b"folio-entry-v3",
    },
];

const _: () =
    assert!(FORMAT_VERSIONS_READ[FORMAT_VERSIONS_READ.len() - 1].number == FORMAT_VERSION);

/// First bytes of every segment file (F-02).
pub const SEGMENT_MAGIC: [u8; 8] = *b"FOLIOSEG";

/// Domain tag that starts the hash input of every entry this build writes; it carries the
/// format version (F-11).
pub const HASH_DOMAIN_TAG: &[u8; 14] = &FormatVersion::CURRENT.domain_tag;

/// A format version this build reads (one of [`FORMAT_VERSIONS_READ`]): its number, as the
/// segment header writes it, and the domain tag of its hash input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatVersion {
    pub number: u32,
    /// `folio-entry-v` and the number in decimal (F-60).
    pub domain_tag: [u8; 14],
}

impl FormatVersion {
    /// The version this build writes.
    pub const CURRENT: FormatVersion = FORMAT_VERSIONS_READ[FORMAT_VERSIONS_READ.len() - 1];

    /// The version with this number, if this build reads it.
    pub fn of(number: u32) -> Option<FormatVersion> {
        FORMAT_VERSIONS_READ
            .into_iter()
            .find(|version| version.number == number)
    }

    /// `block_hash` as segments of this version compute it (F-11).
    pub fn block_hash(&self, seq: u64, previous_hash: &Hash, body: &[u8]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.domain_tag);
        hasher.update(&seq.to_le_bytes());
        hasher.update(previous_hash);
        hasher.update(body);
        *hasher.finalize().as_bytes()
    }
}

/// Size of a segment header.
pub const HEADER_BYTES: usize = 64;
/// Size of a record's frame prefix: `length | crc32`.
pub const FRAME_PREFIX_BYTES: usize = 8;
/// Size of the fixed part of a payload: `seq | batch_first_seq | previous_hash | block_hash`.
pub const PAYLOAD_FIXED_BYTES: usize = 8 + 8 + 32 + 32;

/// Largest body the log accepts (F-21). Bigger bodies are refused before anything is written.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Largest record, frame prefix included.
pub const RECORD_BYTES_MAX: usize = FRAME_PREFIX_BYTES + PAYLOAD_FIXED_BYTES + BODY_BYTES_MAX;
/// Most entries one append (one batch, one fsync) may carry.
pub const BATCH_ENTRIES_MAX: usize = 100_000;
/// Most bytes one append may write; also the longest tail recovery may cut as torn (F-33).
pub const BATCH_BYTES_MAX: usize = 32 << 20;
/// Smallest and largest configurable segment size (the roll threshold).
pub const SEGMENT_BYTES_MIN: u64 = 4096;
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
/// Default roll threshold. An open reads the active segment whole (its records: a reader beside
/// a live writer reads no further than them), so this bounds what every open costs: 16 MiB,
/// about 160,000 sales, keeps `folio head` at tens of milliseconds and MiB whatever the history.
pub const SEGMENT_BYTES_DEFAULT: u64 = 16 << 20;
/// Digits in a segment file name (`00000000000000000001.seg`), enough for any u64.
pub const SEGMENT_NAME_DIGITS: usize = 20;

const _: () = assert!(HEADER_BYTES == 64);
const _: () = assert!(PAYLOAD_FIXED_BYTES == 80);
// Offsets inside a segment are kept as u32: a full segment plus one maximal batch must fit.
const _: () = assert!(SEGMENT_FILE_BYTES_MAX < u32::MAX as u64);

/// The largest segment file the writer can leave: a full segment plus one batch (a batch never
/// spans segments). A reader refuses a larger file before reading it.
pub const SEGMENT_FILE_BYTES_MAX: u64 = SEGMENT_BYTES_MAX + BATCH_BYTES_MAX as u64;
const _: () = assert!(RECORD_BYTES_MAX <= BATCH_BYTES_MAX);

/// The file name of the segment whose first entry is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:0width$}.seg", width = SEGMENT_NAME_DIGITS)
}

/// Parses a segment file name back into its first seq; `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A decoded segment header.
///
/// Format: `{ magic 8 | version u32 | header_bytes u32 | first_seq u64 | previous_hash 32 |
/// reserved u32 | crc32 u32 }`, little-endian, 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The version of this segment: which domain tag hashes its entries, and which kinds of
    /// entry it may hold (F-03).
    pub version: FormatVersion,
    pub first_seq: u64,
    pub previous_hash: Hash,
}

/// Why a segment header did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// Fewer than [`HEADER_BYTES`] bytes.
    Short,
    /// The magic bytes are wrong: not a Folio segment.
    Magic,
    /// The crc does not match the header bytes.
    Checksum,
    /// A well-formed header of a version this build does not read.
    Version(u32),
    /// The header length field or a reserved field has an illegal value.
    Field,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&self.version.number.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..56].copy_from_slice(&self.previous_hash);
        // 56..60 reserved, zero (F-05).
        let crc = crc32fast::hash(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header (F-02..F-06). The crc is checked before the version so that
    /// a torn header is never mistaken for a store of another version.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderFault> {
        let Some(bytes) = bytes.get(..HEADER_BYTES) else {
            return Err(HeaderFault::Short);
        };
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderFault::Magic);
        }
        if crc32fast::hash(&bytes[0..60]) != read_u32(bytes, 60) {
            return Err(HeaderFault::Checksum);
        }
        let number = read_u32(bytes, 8);
        let Some(version) = FormatVersion::of(number) else {
            return Err(HeaderFault::Version(number));
        };
        if read_u32(bytes, 12) != HEADER_BYTES as u32 || read_u32(bytes, 56) != 0 {
            return Err(HeaderFault::Field);
        }
        let first_seq = read_u64(bytes, 16);
        if first_seq == 0 {
            return Err(HeaderFault::Field);
        }
        Ok(SegmentHeader {
            version,
            first_seq,
            previous_hash: read_hash(bytes, 24),
        })
    }
}

/// `block_hash = blake3(domain tag || seq u64 LE || previous_hash || body)` (F-11), as this
/// build writes it (the tag of [`FORMAT_VERSION`]).
pub fn block_hash(seq: u64, previous_hash: &Hash, body: &[u8]) -> Hash {
    FormatVersion::CURRENT.block_hash(seq, previous_hash, body)
}

/// Appends one framed record to `out` (F-20).
///
/// Format: `{ length u32 | crc32 u32 | seq u64 | batch_first_seq u64 | previous_hash 32 |
/// block_hash 32 | body }`, where `length` counts the payload (everything after the crc) and
/// the crc covers the payload. `batch_first_seq` is the seq of the first entry of the append
/// (the fsync) that wrote this record: recovery uses it to tell a torn batch from damage.
pub fn encode_record(out: &mut Vec<u8>, fixed: &RecordFixed, body: &[u8]) {
    assert!(
        body.len() <= BODY_BYTES_MAX,
        "caller must bound bodies before encoding"
    );
    let payload_bytes = PAYLOAD_FIXED_BYTES + body.len();
    out.reserve(FRAME_PREFIX_BYTES + payload_bytes);
    out.extend_from_slice(&(payload_bytes as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0u8; 4]);
    let payload_at = out.len();
    out.extend_from_slice(&fixed.seq.to_le_bytes());
    out.extend_from_slice(&fixed.batch_first_seq.to_le_bytes());
    out.extend_from_slice(&fixed.previous_hash);
    out.extend_from_slice(&fixed.block_hash);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[payload_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed fields of a record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFixed {
    pub seq: u64,
    pub batch_first_seq: u64,
    pub previous_hash: Hash,
    pub block_hash: Hash,
}

/// A record as it lies in the bytes of a segment, its body borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub fixed: RecordFixed,
    pub body: &'a [u8],
    /// Bytes the whole record takes, frame prefix included.
    pub record_bytes: usize,
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFault {
    /// The length field is zero: preallocated space, no record written here (F-22).
    Zero,
    /// Fewer bytes remain than a frame prefix, or than the length field announces.
    Truncated,
    /// The length field is below the fixed payload size or above the record bound.
    Length(u32),
    /// The crc does not match the payload.
    Checksum,
}

/// Decodes the record starting at `bytes[0]`, checking bounds and crc but not the chain.
/// Every length is bound-checked before it is used (F-23).
pub fn decode_record(bytes: &[u8]) -> Result<RecordView<'_>, FrameFault> {
    if bytes.len() < FRAME_PREFIX_BYTES {
        return if is_all_zero(bytes) {
            Err(FrameFault::Zero)
        } else {
            Err(FrameFault::Truncated)
        };
    }
    let length = read_u32(bytes, 0);
    if length == 0 {
        return Err(FrameFault::Zero);
    }
    let payload_bytes = length as usize;
    if payload_bytes < PAYLOAD_FIXED_BYTES || payload_bytes > PAYLOAD_FIXED_BYTES + BODY_BYTES_MAX {
        return Err(FrameFault::Length(length));
    }
    let record_bytes = FRAME_PREFIX_BYTES + payload_bytes;
    let Some(payload) = bytes.get(FRAME_PREFIX_BYTES..record_bytes) else {
        return Err(FrameFault::Truncated);
    };
    if crc32fast::hash(payload) != read_u32(bytes, 4) {
        return Err(FrameFault::Checksum);
    }
    Ok(view_payload(payload, record_bytes))
}

fn view_payload(payload: &[u8], record_bytes: usize) -> RecordView<'_> {
    let (fixed, body) = payload.split_at(PAYLOAD_FIXED_BYTES);
    let fixed = RecordFixed {
        seq: read_u64(fixed, 0),
        batch_first_seq: read_u64(fixed, 8),
        previous_hash: read_hash(fixed, 16),
        block_hash: read_hash(fixed, 48),
    };
    RecordView {
        fixed,
        body,
        record_bytes,
    }
}

fn read_hash(bytes: &[u8], at: usize) -> Hash {
    let mut hash = HASH_ZERO;
    hash.copy_from_slice(&bytes[at..at + 32]);
    hash
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Lowercase hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Parses 64 lowercase hex digits (the form [`hex`] writes) into a hash; nothing else, so that
/// a hash has one written form (`u8::from_str_radix` alone would take `+f`).
pub fn parse_hex(text: &str) -> Option<Hash> {
    let lowercase_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    if text.len() != 64 || !text.bytes().all(lowercase_hex) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_every_single_byte_change() {
        let header = SegmentHeader {
            version: FormatVersion::CURRENT,
            first_seq: 42,
            previous_hash: [7u8; 32],
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for at in 0..HEADER_BYTES {
            let mut damaged = bytes;
            damaged[at] ^= 0x01;
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "flip at {at} passed"
            );
        }
    }

    #[test]
    fn record_round_trips_and_short_input_is_truncated() {
        let prev = [1u8; 32];
        let fixed = RecordFixed {
            seq: 5,
            batch_first_seq: 4,
            previous_hash: prev,
            block_hash: block_hash(5, &prev, b"body"),
        };
        let mut out = Vec::new();
        encode_record(&mut out, &fixed, b"body");
        let view = decode_record(&out).unwrap();
        assert_eq!(
            (view.fixed, view.body, view.record_bytes),
            (fixed, &b"body"[..], out.len())
        );
        for cut in 1..out.len() {
            assert!(decode_record(&out[..cut]).is_err());
        }
    }

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000a.seg"), None);
    }
}

/// Bytes checked per step of the zero scans: small enough to stop soon after a nonzero byte,
/// large enough for the compiler to vectorize the inner fold (a preallocated segment is tens
/// of MiB of zeros that every open scans).
const ZERO_SCAN_CHUNK_BYTES: usize = 4096;

/// Whether every byte is zero.
pub(crate) fn is_all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(ZERO_SCAN_CHUNK_BYTES)
        .all(|chunk| chunk.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// The offset of the last nonzero byte, if any.
pub(crate) fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let chunk_count = bytes.len().div_ceil(ZERO_SCAN_CHUNK_BYTES);
    (0..chunk_count).rev().find_map(|index| {
        let start = index * ZERO_SCAN_CHUNK_BYTES;
        let chunk = &bytes[start..(start + ZERO_SCAN_CHUNK_BYTES).min(bytes.len())];
        if is_all_zero(chunk) {
            None
        } else {
            chunk.iter().rposition(|b| *b != 0).map(|at| start + at)
        }
    })
}
