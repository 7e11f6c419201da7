//! Reading: one entry by seq, and iteration from any seq forward. The active segment indexes
//! every record; a sealed one keeps only its summary's sparse index, and a read walks the
//! frames (their lengths) from the nearest indexed record (F-73). Every record read is checked
//! (crc, seq, recomputed `block_hash`, and the chain between consecutive entries) before its
//! bytes are used, so a flipped bit or a misplaced walk is an error, never data (F-37).

use std::sync::{Arc, MutexGuard};

use super::error::{CorruptionKind, LogError};
use super::format::{self, FormatVersion, FrameFault, Hash};
use super::recovery::{self, Expect};
use super::vfs::{FileBytes, OpenMode};
use super::{Entry, LogReader, SEALED_MAPS_MAX, Source};

/// Most bytes read from the active segment in one call while iterating.
const ACTIVE_READ_BYTES_MAX: u64 = 1 << 20;

impl LogReader {
    /// Reads the entry with this seq.
    pub fn read(&self, seq: u64) -> Result<Entry, LogError> {
        let head = self.head().seq;
        if seq == 0 || seq > head {
            return Err(LogError::SeqOutOfRange { seq, head });
        }
        let mut chunk = self.load_chunk(seq, seq + 1)?;
        let read = chunk.next_entry(None);
        if read.is_err()
            && let Some(first_seq) = chunk.sealed_first_seq
        {
            // The map may hold what a bad read returned: the next read maps the file again.
            self.forget_map(first_seq);
        }
        read
    }

    /// Iterates entries from `seq_from` to the head as it is now.
    pub fn iter_from(&self, seq_from: u64) -> LogIter<'_> {
        let seq_end = self.head().seq + 1;
        LogIter {
            log: self,
            seq_next: seq_from.max(1),
            seq_end,
            chunk: None,
            hash_prior: None,
        }
    }

    /// Checks every record of every sealed segment, and the active segment's header against
    /// the chain they end with, as an open with `scan_sealed` does (F-24, F-30): the error is
    /// the one that open would have refused with. One segment is read at a time and nothing
    /// is kept. Nothing to do when the open scanned them already. Verify's check: an ordinary
    /// open trusts the summaries instead (F-71).
    pub fn check_sealed(&self) -> Result<(), LogError> {
        if self.sealed_scanned {
            return Ok(());
        }
        let segments: Vec<(String, u64)> = self
            .view_read()
            .segments
            .iter()
            .map(|segment| (segment.name.clone(), segment.first_seq))
            .collect();
        let mut expect = Expect {
            first_seq: 1,
            previous_hash: format::HASH_ZERO,
            is_last: false,
            seq_durable_min: 0,
            seq_limit: u64::MAX,
        };
        for (index, (name, first_seq)) in segments.iter().enumerate() {
            let path = self.log_dir.join(name);
            let io = |source| LogError::Io {
                path: path.clone(),
                source,
            };
            let file = self.vfs.open(&path, OpenMode::Read).map_err(io)?;
            let len_bytes = file.len().map_err(io)?;
            if index + 1 == segments.len() {
                // The active segment's records were scanned by the open.
                let mut header = vec![0u8; len_bytes.min(format::HEADER_BYTES as u64) as usize];
                file.read_exact_at(&mut header, 0).map_err(io)?;
                recovery::check_header(name, *first_seq, &header, expect)?;
                break;
            }
            if len_bytes > format::SEGMENT_FILE_BYTES_MAX {
                return Err(LogError::Corrupt {
                    segment: name.clone(),
                    offset_bytes: 0,
                    seq: *first_seq,
                    kind: CorruptionKind::SegmentTooLarge { bytes: len_bytes },
                });
            }
            let bytes = file.read_all().map_err(io)?;
            let scanned = recovery::scan_segment(name, *first_seq, &bytes, expect)?;
            expect.first_seq = scanned.seq_last() + 1;
            expect.previous_hash = scanned.hash_last();
        }
        Ok(())
    }

    /// A chunk of the segment holding `seq`, positioned at `seq`, ending before `seq_end` (or
    /// at the segment's end).
    fn load_chunk(&self, seq: u64, seq_end: u64) -> Result<Chunk, LogError> {
        let view = self.view_read();
        let segment = &view.segments[view.segment_of(seq)];
        let seq_end = segment.seq_end().min(seq_end);
        let place = (segment.name.clone(), segment.version);
        match &segment.source {
            Source::Sealed => {
                let (seq_point, at_bytes) = segment.index_point(seq);
                let (first_seq, end_bytes) = (segment.first_seq, segment.end_bytes);
                drop(view);
                let map = self.sealed_bytes(first_seq, &place.0)?;
                let mut chunk = Chunk {
                    segment: place.0,
                    version: place.1,
                    bytes: ChunkBytes::Mapped(map),
                    base_bytes: 0,
                    end_bytes,
                    at_bytes,
                    seq_next: seq_point,
                    seq_end,
                    sealed_first_seq: Some(first_seq),
                };
                if let Err(error) = chunk.skip_to(seq) {
                    self.forget_map(first_seq);
                    return Err(error);
                }
                Ok(chunk)
            }
            Source::Active(file) => {
                let (start, mut end) = segment.record_range(seq);
                let mut seq_last = seq;
                while seq_last + 1 < seq_end {
                    let (_, record_end) = segment.record_range(seq_last + 1);
                    if record_end - start > ACTIVE_READ_BYTES_MAX {
                        break;
                    }
                    (seq_last, end) = (seq_last + 1, record_end);
                }
                let file = file.clone();
                drop(view);
                let mut buf = vec![0u8; (end - start) as usize];
                file.read_exact_at(&mut buf, start)
                    .map_err(|source| LogError::Io {
                        path: self.log_dir.join(&place.0),
                        source,
                    })?;
                Ok(Chunk {
                    segment: place.0,
                    version: place.1,
                    bytes: ChunkBytes::Read(buf),
                    base_bytes: start,
                    end_bytes: end,
                    at_bytes: start,
                    seq_next: seq,
                    seq_end: seq_last + 1,
                    sealed_first_seq: None,
                })
            }
        }
    }

    /// The bytes of a sealed segment, mapped; the last few maps are kept (`SEALED_MAPS_MAX`),
    /// so that memory stays bounded however much of the history is read.
    fn sealed_bytes(&self, first_seq: u64, name: &str) -> Result<Arc<FileBytes>, LogError> {
        {
            let mut maps = self.maps_lock();
            if let Some(at) = maps.iter().position(|(seq, _)| *seq == first_seq) {
                let entry = maps.remove(at);
                let bytes = entry.1.clone();
                maps.push(entry);
                return Ok(bytes);
            }
        }
        let path = self.log_dir.join(name);
        let io = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        let file = self.vfs.open(&path, OpenMode::Read).map_err(io)?;
        let bytes = Arc::new(file.read_all().map_err(io)?);
        let mut maps = self.maps_lock();
        maps.retain(|(seq, _)| *seq != first_seq);
        if maps.len() >= SEALED_MAPS_MAX {
            maps.remove(0);
        }
        maps.push((first_seq, bytes.clone()));
        Ok(bytes)
    }

    fn forget_map(&self, first_seq: u64) {
        self.maps_lock().retain(|(seq, _)| *seq != first_seq);
    }

    fn maps_lock(&self) -> MutexGuard<'_, Vec<(u64, Arc<FileBytes>)>> {
        self.maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Bytes holding a run of consecutive records of one segment, and a cursor into them.
#[derive(Debug)]
struct Chunk {
    segment: String,
    /// The segment's format version: the domain tag of its hashes.
    version: FormatVersion,
    bytes: ChunkBytes,
    /// File offset of `bytes[0]`.
    base_bytes: u64,
    /// File offset where the chunk's records end: no record may run past it.
    end_bytes: u64,
    /// File offset of the record `seq_next`.
    at_bytes: u64,
    seq_next: u64,
    /// Seq after the chunk's last record.
    seq_end: u64,
    /// The first seq of the sealed segment mapped, if it is one.
    sealed_first_seq: Option<u64>,
}

#[derive(Debug)]
enum ChunkBytes {
    Mapped(Arc<FileBytes>),
    Read(Vec<u8>),
}

impl Chunk {
    /// The chunk's bytes from file offset `at` to its end (empty past it).
    fn bytes_from(&self, at: u64) -> &[u8] {
        let bytes: &[u8] = match &self.bytes {
            ChunkBytes::Mapped(map) => map,
            ChunkBytes::Read(buf) => buf,
        };
        let end = ((self.end_bytes - self.base_bytes) as usize).min(bytes.len());
        let start = (at.saturating_sub(self.base_bytes) as usize).min(end);
        &bytes[start..end]
    }

    fn corrupt(&self, kind: CorruptionKind) -> LogError {
        LogError::Corrupt {
            segment: self.segment.clone(),
            offset_bytes: self.at_bytes,
            seq: self.seq_next,
            kind,
        }
    }

    /// Walks the frames from the cursor to the record `seq` by their lengths (F-73). A length
    /// out of bounds stops the walk; a length damaged within bounds lands the cursor on bytes
    /// that the record's own checks then refuse.
    fn skip_to(&mut self, seq: u64) -> Result<(), LogError> {
        while self.seq_next < seq {
            let frame = self.bytes_from(self.at_bytes);
            if frame.len() < format::FRAME_PREFIX_BYTES {
                return Err(self.corrupt(CorruptionKind::BadLength));
            }
            let length = format::read_u32(frame, 0) as usize;
            let in_bounds = (format::PAYLOAD_FIXED_BYTES
                ..=format::PAYLOAD_FIXED_BYTES + format::BODY_BYTES_MAX)
                .contains(&length);
            let record_bytes = format::FRAME_PREFIX_BYTES + length;
            if !in_bounds || record_bytes > frame.len() {
                return Err(self.corrupt(CorruptionKind::BadLength));
            }
            self.at_bytes += record_bytes as u64;
            self.seq_next += 1;
        }
        Ok(())
    }

    /// Decodes and checks the record at the cursor, which must be `seq_next`, and moves on.
    fn next_entry(&mut self, hash_prior: Option<Hash>) -> Result<Entry, LogError> {
        let seq = self.seq_next;
        let record = format::decode_record(self.bytes_from(self.at_bytes)).map_err(|fault| {
            self.corrupt(match fault {
                FrameFault::Checksum => CorruptionKind::BadChecksum,
                FrameFault::Zero | FrameFault::Truncated | FrameFault::Length(_) => {
                    CorruptionKind::BadLength
                }
            })
        })?;
        let fixed = record.fixed;
        if fixed.seq != seq {
            return Err(self.corrupt(CorruptionKind::SeqGap {
                expected: seq,
                found: fixed.seq,
            }));
        }
        if hash_prior.is_some_and(|prior| prior != fixed.previous_hash) {
            return Err(self.corrupt(CorruptionKind::ChainBreak));
        }
        if self
            .version
            .block_hash(seq, &fixed.previous_hash, record.body)
            != fixed.block_hash
        {
            return Err(self.corrupt(CorruptionKind::BadHash));
        }
        let entry = Entry {
            version: self.version.number,
            seq,
            batch_first_seq: fixed.batch_first_seq,
            previous_hash: fixed.previous_hash,
            block_hash: fixed.block_hash,
            body: record.body.to_vec(),
        };
        self.at_bytes += record.record_bytes as u64;
        self.seq_next += 1;
        Ok(entry)
    }
}

/// Iterator over entries in seq order; yields an error (and then stops) at the first record
/// that fails its checks.
#[derive(Debug)]
pub struct LogIter<'a> {
    log: &'a LogReader,
    seq_next: u64,
    seq_end: u64,
    chunk: Option<Chunk>,
    hash_prior: Option<Hash>,
}

impl LogIter<'_> {
    fn next_entry(&mut self) -> Result<Entry, LogError> {
        let chunk = match self.chunk.take() {
            Some(chunk) if chunk.seq_next == self.seq_next && chunk.seq_next < chunk.seq_end => {
                chunk
            }
            _ => self.log.load_chunk(self.seq_next, self.seq_end)?,
        };
        let chunk = self.chunk.insert(chunk);
        chunk.next_entry(self.hash_prior)
    }
}

impl Iterator for LogIter<'_> {
    type Item = Result<Entry, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.seq_next >= self.seq_end {
            return None;
        }
        match self.next_entry() {
            Ok(entry) => {
                self.seq_next += 1;
                self.hash_prior = Some(entry.block_hash);
                Some(Ok(entry))
            }
            Err(error) => {
                self.seq_next = self.seq_end;
                Some(Err(error))
            }
        }
    }
}
