//! Appending: a batch of entries is hashed, framed into one buffer, written with one write
//! and made durable with one `fdatasync` (`docs/format.md` section 5). Rolling to a new
//! segment happens before a batch that would not fit, and before the first batch into a
//! segment of an older format version (F-40). A failed write or sync poisons the
//! writer: the outcome is unknown until the log is reopened, and a sync is never retried.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, BODY_BYTES_MAX, HEADER_BYTES};
use super::format::{FormatVersion, RecordFixed, SegmentHeader};
use super::vfs::{self, OpenMode, VfsFile};
use super::{Active, Appended, Head, Log, LogError, LogOptions, SegmentView, Source};

/// The writer's state, behind the log's writer mutex.
#[derive(Debug)]
pub(super) struct Writer {
    file: Arc<dyn VfsFile>,
    /// The active segment's header: its version decides whether a batch may go into it.
    header: SegmentHeader,
    /// Where the next record goes in the active segment.
    end_bytes: u64,
    /// Bytes the active segment file has (preallocated or grown).
    file_bytes: u64,
    records_in_segment: u64,
    head: Head,
    poisoned: bool,
    read_only: bool,
    /// Why a read-write open became read-only, for the error of every append.
    not_writable: Option<NotWritable>,
    segment_bytes: u64,
    buf: Vec<u8>,
}

/// The file a read-write open could not open for writing, and why.
#[derive(Debug, Clone)]
pub(super) struct NotWritable {
    path: PathBuf,
    kind: io::ErrorKind,
    os_error: Option<i32>,
}

impl NotWritable {
    pub(super) fn new(path: &Path, error: &io::Error) -> NotWritable {
        NotWritable {
            path: path.to_path_buf(),
            kind: error.kind(),
            os_error: error.raw_os_error(),
        }
    }

    fn error(&self) -> LogError {
        let source = self
            .os_error
            .map_or_else(|| self.kind.into(), io::Error::from_raw_os_error);
        LogError::NotWritable {
            path: self.path.clone(),
            source,
        }
    }
}

impl Writer {
    pub(super) fn new(
        options: &LogOptions,
        active: Active,
        head: Head,
        not_writable: Option<NotWritable>,
    ) -> Writer {
        Writer {
            file: active.file,
            header: active.header,
            end_bytes: active.end_bytes,
            file_bytes: active.file_bytes.max(active.end_bytes),
            records_in_segment: active.records,
            head,
            poisoned: false,
            read_only: options.read_only,
            not_writable,
            segment_bytes: options.segment_bytes,
            buf: Vec::new(),
        }
    }

    /// Trims the active segment's preallocated zeros (on close).
    pub(super) fn trim(&mut self) -> Result<(), LogError> {
        if self.read_only || self.poisoned {
            return Ok(());
        }
        let trimmed = self
            .file
            .set_len(self.end_bytes)
            .and_then(|()| self.file.sync_data());
        trimmed.map_err(|source| self.poison(source))?;
        self.file_bytes = self.end_bytes;
        Ok(())
    }

    fn poison(&mut self, source: io::Error) -> LogError {
        self.poisoned = true;
        LogError::OutcomeUnknown { source }
    }

    /// Frames the batch into `self.buf`; returns each entry's result and offset in the buffer.
    fn encode_batch<B: AsRef<[u8]>>(&mut self, bodies: &[B]) -> (Vec<Appended>, Vec<u32>) {
        self.buf.clear();
        let batch_first_seq = self.head.seq + 1;
        let mut previous_hash = self.head.block_hash;
        let mut appended = Vec::with_capacity(bodies.len());
        let mut offsets = Vec::with_capacity(bodies.len());
        for (index, body) in bodies.iter().enumerate() {
            let body = body.as_ref();
            let seq = batch_first_seq + index as u64;
            let block_hash = format::block_hash(seq, &previous_hash, body);
            let fixed = RecordFixed {
                seq,
                batch_first_seq,
                previous_hash,
                block_hash,
            };
            offsets.push(self.buf.len() as u32);
            format::encode_record(&mut self.buf, &fixed, body);
            appended.push(Appended {
                seq,
                previous_hash,
                block_hash,
            });
            previous_hash = block_hash;
        }
        (appended, offsets)
    }
}

fn check_batch<B: AsRef<[u8]>>(bodies: &[B]) -> Result<(), LogError> {
    let mut bytes = 0usize;
    for (index, body) in bodies.iter().enumerate() {
        let body_bytes = body.as_ref().len();
        if body_bytes > BODY_BYTES_MAX {
            return Err(LogError::BodyTooLarge {
                index,
                body_bytes,
                max: BODY_BYTES_MAX,
            });
        }
        bytes += format::FRAME_PREFIX_BYTES + format::PAYLOAD_FIXED_BYTES + body_bytes;
    }
    if bodies.len() > BATCH_ENTRIES_MAX || bytes > BATCH_BYTES_MAX {
        return Err(LogError::BatchTooLarge {
            entries: bodies.len(),
            bytes,
            entries_max: BATCH_ENTRIES_MAX,
            bytes_max: BATCH_BYTES_MAX,
        });
    }
    Ok(())
}

/// A clean failure of an operation that left the log as it was.
fn clean_error(path: &Path, source: io::Error) -> LogError {
    if vfs::is_no_space(&source) {
        LogError::NoSpace { source }
    } else {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Log {
    /// Appends a batch: one write, one `fdatasync`. Returns when the batch is durable, with
    /// each entry's seq and hashes in order. Bounds are checked before anything is written.
    ///
    /// On [`LogError::OutcomeUnknown`] the batch may or may not be durable and the log refuses
    /// further appends ([`LogError::Poisoned`]) until it is reopened.
    pub fn append<B: AsRef<[u8]>>(&self, bodies: &[B]) -> Result<Vec<Appended>, LogError> {
        check_batch(bodies)?;
        let mut writer = self.writer_lock();
        if let Some(not_writable) = &writer.not_writable {
            return Err(not_writable.error());
        }
        if writer.read_only {
            return Err(LogError::ReadOnly);
        }
        if writer.poisoned {
            return Err(LogError::Poisoned);
        }
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let (appended, buf_offsets) = writer.encode_batch(bodies);
        let batch_bytes = writer.buf.len() as u64;
        // Entries are only ever appended to a segment of the version this build writes (the
        // batch was hashed with its tag): an older one is sealed by a roll, or, holding no
        // record, takes the current header in place (F-40).
        let older = writer.header.version != FormatVersion::CURRENT;
        let full = writer.end_bytes + batch_bytes > writer.segment_bytes;
        if writer.records_in_segment > 0 && (full || older) {
            self.roll(&mut writer)?;
        } else if older {
            self.upgrade_empty(&mut writer)?;
        }
        self.ensure_room(&mut writer, batch_bytes)?;
        let at = writer.end_bytes;
        let durable = writer
            .file
            .write_all_at(&writer.buf, at)
            .and_then(|()| writer.file.sync_data());
        durable.map_err(|source| writer.poison(source))?;
        let Some(last) = appended.last() else {
            unreachable!("bodies is not empty")
        };
        let head = Head {
            seq: last.seq,
            block_hash: last.block_hash,
        };
        writer.end_bytes += batch_bytes;
        writer.records_in_segment += appended.len() as u64;
        writer.head = head;
        let mut view = self.view_write();
        let end_bytes = writer.end_bytes;
        let Some(active) = view.segments.last_mut() else {
            unreachable!("a log has a segment")
        };
        active.offsets.extend(
            buf_offsets
                .iter()
                .map(|offset| (at + u64::from(*offset)) as u32),
        );
        active.end_bytes = end_bytes;
        view.head = head;
        Ok(appended)
    }

    /// Grows the active segment before a batch that would pass its end, so that a full disk
    /// fails the batch cleanly instead of halfway through the write.
    fn ensure_room(&self, writer: &mut Writer, batch_bytes: u64) -> Result<(), LogError> {
        let needed = writer.end_bytes + batch_bytes;
        if needed <= writer.file_bytes {
            return Ok(());
        }
        let path = self.log_dir.join(format::segment_name(writer.head.seq + 1));
        writer
            .file
            .allocate(needed)
            .map_err(|source| clean_error(&path, source))?;
        writer.file_bytes = needed;
        Ok(())
    }

    /// Seals the active segment and starts the next one (F-40): the new segment is made
    /// durable (header, preallocation, directory entry) before the old one is trimmed, so a
    /// crash at any step leaves a log that recovery settles.
    fn roll(&self, writer: &mut Writer) -> Result<(), LogError> {
        let first_seq = writer.head.seq + 1;
        let name = format::segment_name(first_seq);
        let path = self.log_dir.join(&name);
        let file = self.create_segment(writer, &path)?;
        let header = SegmentHeader {
            version: FormatVersion::CURRENT,
            first_seq,
            previous_hash: writer.head.block_hash,
        };
        let started = file
            .write_all_at(&header.encode(), 0)
            .and_then(|()| file.sync_data())
            .and_then(|()| self.vfs.sync_dir(&self.log_dir))
            .and_then(|()| writer.file.set_len(writer.end_bytes))
            .and_then(|()| writer.file.sync_data());
        started.map_err(|source| writer.poison(source))?;
        // The sealed segment is read through a map from now on; if mapping fails, plain reads
        // serve it as well.
        let sealed = match writer.file.read_all() {
            Ok(bytes) => Source::Sealed(Arc::new(bytes)),
            Err(_) => Source::Active(writer.file.clone()),
        };
        {
            let mut view = self.view_write();
            if let Some(old) = view.segments.last_mut() {
                old.source = sealed;
            }
            view.segments.push(SegmentView {
                name,
                version: header.version,
                first_seq,
                offsets: Vec::new(),
                end_bytes: HEADER_BYTES as u64,
                source: Source::Active(file.clone()),
            });
        }
        writer.file = file;
        writer.header = header;
        writer.end_bytes = HEADER_BYTES as u64;
        writer.file_bytes = writer.segment_bytes;
        writer.records_in_segment = 0;
        Ok(())
    }

    /// Rewrites the header of an active segment that holds no record and is of an older
    /// version with the current version (F-40): a roll would make a file of the same name. The
    /// header lies in one sector, written whole or not at all (A3), and either header is valid
    /// for a segment without records, so a crash at any point leaves a log that opens.
    fn upgrade_empty(&self, writer: &mut Writer) -> Result<(), LogError> {
        let header = SegmentHeader {
            version: FormatVersion::CURRENT,
            ..writer.header
        };
        let written = writer
            .file
            .write_all_at(&header.encode(), 0)
            .and_then(|()| writer.file.sync_data());
        written.map_err(|source| writer.poison(source))?;
        writer.header = header;
        let mut view = self.view_write();
        if let Some(active) = view.segments.last_mut() {
            active.version = header.version;
        }
        Ok(())
    }

    /// Creates and preallocates a segment file; on failure removes it again and reports a
    /// clean error (nothing of any batch was written).
    fn create_segment(
        &self,
        writer: &mut Writer,
        path: &Path,
    ) -> Result<Arc<dyn VfsFile>, LogError> {
        let file = self
            .vfs
            .open(path, OpenMode::CreateNew)
            .map_err(|e| clean_error(path, e))?;
        if let Err(source) = file.allocate(self.options.segment_bytes) {
            if self.vfs.remove(path).is_err() {
                // The half-made file stays until a reopen removes it (an all-zero last
                // segment is a torn roll); until then no roll can succeed.
                return Err(writer.poison(source));
            }
            return Err(clean_error(path, source));
        }
        Ok(file)
    }
}
