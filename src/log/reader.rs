//! Reading: one entry by seq (through the in-memory seq -> offset index built at open), and
//! iteration from any seq forward. Every record read is checked (crc, seq, recomputed
//! `block_hash`, and the chain between consecutive entries) before its bytes are used, so a
//! flipped bit on the way from the disk is an error, never data.

use std::sync::Arc;

use super::error::{CorruptionKind, LogError};
use super::format::{self, FormatVersion, FrameFault, Hash};
use super::vfs::FileBytes;
use super::{Entry, LogReader, Source};

/// Most bytes read from the active segment in one call while iterating.
const ACTIVE_READ_BYTES_MAX: u64 = 1 << 20;

impl LogReader {
    /// Reads the entry with this seq.
    pub fn read(&self, seq: u64) -> Result<Entry, LogError> {
        let (name, start, end, source) = {
            let view = self.view_read();
            if seq == 0 || seq > view.head.seq {
                return Err(LogError::SeqOutOfRange {
                    seq,
                    head: view.head.seq,
                });
            }
            let segment = &view.segments[view.segment_of(seq)];
            let (start, end) = segment.record_range(seq);
            let name = (segment.name.clone(), segment.version);
            (name, start, end, segment.source.clone())
        };
        let (name, version) = name;
        let chunk = Chunk::load((&name, version), source, (start, end), seq, vec![start])?;
        chunk.decode_at(0, seq, None)
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
}

/// Bytes holding a run of consecutive records of one segment.
#[derive(Debug)]
struct Chunk {
    segment: String,
    /// The segment's format version: the domain tag of its hashes.
    version: FormatVersion,
    bytes: ChunkBytes,
    /// File offset of `bytes[0]`.
    base_bytes: u64,
    /// Record offsets (file offsets) of the run, from `seq_first`.
    offsets: Vec<u64>,
    seq_first: u64,
}

#[derive(Debug)]
enum ChunkBytes {
    Mapped(Arc<FileBytes>),
    Read(Vec<u8>),
}

impl Chunk {
    /// Loads the records at file offsets `offsets`, which lie in `range` (file offsets).
    fn load(
        (segment, version): (&str, FormatVersion),
        source: Source,
        (start, end): (u64, u64),
        seq_first: u64,
        offsets: Vec<u64>,
    ) -> Result<Chunk, LogError> {
        let bytes = match source {
            Source::Sealed(map) => ChunkBytes::Mapped(map),
            Source::Active(file) => {
                let mut buf = vec![0u8; (end - start) as usize];
                file.read_exact_at(&mut buf, start)
                    .map_err(|source| LogError::Io {
                        path: segment.into(),
                        source,
                    })?;
                ChunkBytes::Read(buf)
            }
        };
        let base_bytes = match bytes {
            ChunkBytes::Mapped(_) => 0,
            ChunkBytes::Read(_) => start,
        };
        Ok(Chunk {
            segment: segment.to_string(),
            version,
            bytes,
            base_bytes,
            offsets,
            seq_first,
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            ChunkBytes::Mapped(map) => map,
            ChunkBytes::Read(buf) => buf,
        }
    }

    fn seq_end(&self) -> u64 {
        self.seq_first + self.offsets.len() as u64
    }

    /// Decodes and checks the `index`-th record of the chunk, which must be `seq`.
    fn decode_at(
        &self,
        index: usize,
        seq: u64,
        hash_prior: Option<Hash>,
    ) -> Result<Entry, LogError> {
        let offset_bytes = self.offsets[index];
        let corrupt = |kind| LogError::Corrupt {
            segment: self.segment.clone(),
            offset_bytes,
            seq,
            kind,
        };
        let local = (offset_bytes - self.base_bytes) as usize;
        let record = format::decode_record(self.bytes().get(local..).unwrap_or_default()).map_err(
            |fault| {
                corrupt(match fault {
                    FrameFault::Checksum => CorruptionKind::BadChecksum,
                    FrameFault::Zero | FrameFault::Truncated | FrameFault::Length(_) => {
                        CorruptionKind::BadLength
                    }
                })
            },
        )?;
        let fixed = record.fixed;
        if fixed.seq != seq {
            return Err(corrupt(CorruptionKind::SeqGap {
                expected: seq,
                found: fixed.seq,
            }));
        }
        if hash_prior.is_some_and(|prior| prior != fixed.previous_hash) {
            return Err(corrupt(CorruptionKind::ChainBreak));
        }
        if self
            .version
            .block_hash(seq, &fixed.previous_hash, record.body)
            != fixed.block_hash
        {
            return Err(corrupt(CorruptionKind::BadHash));
        }
        Ok(Entry {
            version: self.version.number,
            seq,
            batch_first_seq: fixed.batch_first_seq,
            previous_hash: fixed.previous_hash,
            block_hash: fixed.block_hash,
            body: record.body.to_vec(),
        })
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
    /// Loads the run of records starting at `self.seq_next`: the rest of a sealed segment
    /// (mapped), or up to about 1 MiB of the active one.
    fn load_chunk(&mut self) -> Result<Chunk, LogError> {
        let view = self.log.view_read();
        let segment = &view.segments[view.segment_of(self.seq_next)];
        let seq_last = (segment.seq_end() - 1).min(self.seq_end - 1);
        let first = (self.seq_next - segment.first_seq) as usize;
        let last = (seq_last - segment.first_seq) as usize;
        let (start, _) = segment.record_range(self.seq_next);
        let mut offsets: Vec<u64> = Vec::new();
        let mut end = start;
        for index in first..=last {
            let seq = segment.first_seq + index as u64;
            let (record_start, record_end) = segment.record_range(seq);
            let sealed = matches!(segment.source, Source::Sealed(_));
            if !sealed && !offsets.is_empty() && record_end - start > ACTIVE_READ_BYTES_MAX {
                break;
            }
            offsets.push(record_start);
            end = record_end;
        }
        let source = segment.source.clone();
        let (name, version) = (segment.name.clone(), segment.version);
        drop(view);
        Chunk::load(
            (&name, version),
            source,
            (start, end),
            self.seq_next,
            offsets,
        )
    }

    fn next_entry(&mut self) -> Result<Entry, LogError> {
        let loaded = self
            .chunk
            .as_ref()
            .is_some_and(|chunk| self.seq_next < chunk.seq_end());
        if !loaded {
            self.chunk = Some(self.load_chunk()?);
        }
        let Some(chunk) = self.chunk.as_ref() else {
            unreachable!("loaded above")
        };
        let index = (self.seq_next - chunk.seq_first) as usize;
        chunk.decode_at(index, self.seq_next, self.hash_prior)
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
