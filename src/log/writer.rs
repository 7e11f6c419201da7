//! Appending, in two steps so that a committer can pipeline: [`Log::prepare`] hashes a batch
//! against the head of the batches prepared before it, frames it into one buffer and reserves
//! its bytes in the active segment (rolling to a new segment, or growing the file, first:
//! every clean failure, a full disk included, happens here, before anything is written);
//! [`Log::write`] writes that buffer with one write and makes it durable with one `fdatasync`
//! (`docs/format.md` section 5), strictly in the order the batches were prepared. So batch
//! N+1 can be prepared while batch N's write and sync run on another thread, and no batch is
//! ever durable before the one it chains to. A failed write or sync poisons the writer: the
//! outcome is unknown until the log is reopened, a sync is never retried, and every batch
//! prepared after it fails with `Poisoned`. [`Log::append`] is the two steps at once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};

use super::durable::DurableHeadFile;
use super::format::{self, BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, BODY_BYTES_MAX, HEADER_BYTES};
use super::format::{FormatVersion, RecordFixed, SegmentHeader};
use super::summary::{self, SUMMARY_INDEX_STRIDE, Summary};
use super::vfs::{self, OpenMode, VfsFile};
use super::{Active, Appended, Head, Log, LogError, LogOptions, SegmentView, Source};

/// The writer's state, behind the log's writer mutex. Two positions: what is durable (`head`,
/// `end_bytes`, `records_in_segment`) and what has been prepared (`prepared_*`), which is
/// ahead while batches are between [`Log::prepare`] and the end of their [`Log::write`].
#[derive(Debug)]
pub(super) struct Writer {
    file: Arc<dyn VfsFile>,
    /// The active segment's header: its version decides whether a batch may go into it.
    header: SegmentHeader,
    /// Where the next durable record goes in the active segment.
    end_bytes: u64,
    /// Bytes the active segment file has (preallocated or grown).
    file_bytes: u64,
    records_in_segment: u64,
    /// The last durable entry.
    head: Head,
    /// The last prepared entry, where the next batch chains.
    prepared_head: Head,
    /// Where the next prepared batch goes in the active segment.
    prepared_end_bytes: u64,
    prepared_records_in_segment: u64,
    poisoned: bool,
    read_only: bool,
    /// Why a read-write open became read-only, for the error of every append.
    not_writable: Option<NotWritable>,
    segment_bytes: u64,
    /// Where the durable head is published for readers in other processes (F-81); `None` for
    /// a read-only open, or when the file could not be opened.
    durable_head: Option<DurableHeadFile>,
}

/// A batch hashed, framed and given its place in the log, waiting for [`Log::write`].
#[derive(Debug)]
pub struct Prepared {
    /// Each entry's seq and hashes, in order.
    appended: Vec<Appended>,
    /// The hash the batch chains to (the previous batch's last `block_hash`).
    previous_hash: format::Hash,
    buf: Vec<u8>,
    /// Each record's offset in `buf`.
    buf_offsets: Vec<u32>,
    /// Where `buf` goes in the segment file.
    at_bytes: u64,
    file: Arc<dyn VfsFile>,
}

impl Prepared {
    /// Each entry's seq and hashes, as the write will make them durable.
    pub fn appended(&self) -> &[Appended] {
        &self.appended
    }

    fn first_seq(&self) -> Option<u64> {
        self.appended.first().map(|appended| appended.seq)
    }
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
        durable_head: Option<DurableHeadFile>,
    ) -> Writer {
        if let Some(file) = &durable_head {
            file.publish(head, true);
        }
        Writer {
            file: active.file,
            header: active.header,
            end_bytes: active.end_bytes,
            file_bytes: active.file_bytes.max(active.end_bytes),
            records_in_segment: active.records,
            head,
            prepared_head: head,
            prepared_end_bytes: active.end_bytes,
            prepared_records_in_segment: active.records,
            poisoned: false,
            read_only: options.read_only,
            not_writable,
            segment_bytes: options.segment_bytes,
            durable_head,
        }
    }

    /// Whether every prepared batch has been written (or the writer is poisoned).
    fn settled(&self) -> bool {
        self.poisoned || self.prepared_head == self.head
    }

    /// Trims the active segment's preallocated zeros (on close, once every prepared batch is
    /// written).
    pub(super) fn trim(&mut self) -> Result<(), LogError> {
        if self.read_only || self.poisoned {
            return Ok(());
        }
        assert_eq!(
            self.prepared_head, self.head,
            "the log is trimmed with a batch prepared but not written"
        );
        let trimmed = self
            .file
            .set_len(self.end_bytes)
            .and_then(|()| self.file.sync_data());
        trimmed.map_err(|source| self.poison(source))?;
        self.file_bytes = self.end_bytes;
        // Every record is durable and none will follow from this writer: a reader may read them
        // all (F-81).
        if let Some(file) = &self.durable_head {
            file.publish(self.head, false);
        }
        Ok(())
    }

    fn poison(&mut self, source: io::Error) -> LogError {
        self.poisoned = true;
        LogError::OutcomeUnknown { source }
    }

    /// Why no batch may be prepared or written now, if one may not.
    fn refusal(&self) -> Option<LogError> {
        if let Some(not_writable) = &self.not_writable {
            return Some(not_writable.error());
        }
        if self.read_only {
            return Some(LogError::ReadOnly);
        }
        self.poisoned.then_some(LogError::Poisoned)
    }

    /// Hashes and frames a batch after the prepared head, at `at_bytes` of the active file.
    fn encode_batch<B: AsRef<[u8]>>(&self, bodies: &[B], at_bytes: u64) -> Prepared {
        let batch_first_seq = self.prepared_head.seq + 1;
        let mut previous_hash = self.prepared_head.block_hash;
        let mut prepared = Prepared {
            appended: Vec::with_capacity(bodies.len()),
            previous_hash,
            buf: Vec::new(),
            buf_offsets: Vec::with_capacity(bodies.len()),
            at_bytes,
            file: self.file.clone(),
        };
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
            prepared.buf_offsets.push(prepared.buf.len() as u32);
            format::encode_record(&mut prepared.buf, &fixed, body);
            prepared.appended.push(Appended {
                seq,
                previous_hash,
                block_hash,
            });
            previous_hash = block_hash;
        }
        prepared
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
        let prepared = self.prepare(bodies)?;
        self.write(prepared)
    }

    /// Hashes and frames a batch after every batch prepared before it, and reserves its place
    /// in the active segment (rolling or growing it first). Nothing of the batch is written:
    /// a failure here (bounds, a full disk: `NoSpace`) leaves the log as it was. The batch
    /// must then be given to [`Log::write`]: every later write waits for it (a caller that
    /// loses it calls [`Log::poison_writes`]).
    pub fn prepare<B: AsRef<[u8]>>(&self, bodies: &[B]) -> Result<Prepared, LogError> {
        check_batch(bodies)?;
        let mut writer = self.writer_lock();
        if let Some(refusal) = writer.refusal() {
            return Err(refusal);
        }
        if bodies.is_empty() {
            let at_bytes = writer.prepared_end_bytes;
            return Ok(writer.encode_batch(bodies, at_bytes));
        }
        let batch_bytes = framed_bytes(bodies);
        // Entries are only ever appended to a segment of the version this build writes (the
        // batch was hashed with its tag): an older one is sealed by a roll, or, holding no
        // record, takes the current header in place (F-40).
        let older = writer.header.version != FormatVersion::CURRENT;
        let full = writer.prepared_end_bytes + batch_bytes > writer.segment_bytes;
        if writer.prepared_records_in_segment > 0 && (full || older) {
            // A roll seals the active segment: every batch bound for it is written first.
            writer = self.wait_settled(writer);
            if let Some(refusal) = writer.refusal() {
                return Err(refusal);
            }
            self.roll(&mut writer)?;
        } else if older {
            self.upgrade_empty(&mut writer)?;
        }
        self.ensure_room(&mut writer, batch_bytes)?;
        let at_bytes = writer.prepared_end_bytes;
        let prepared = writer.encode_batch(bodies, at_bytes);
        debug_assert_eq!(prepared.buf.len() as u64, batch_bytes);
        let Some(last) = prepared.appended.last() else {
            unreachable!("bodies is not empty")
        };
        writer.prepared_head = Head {
            seq: last.seq,
            block_hash: last.block_hash,
        };
        writer.prepared_end_bytes += batch_bytes;
        writer.prepared_records_in_segment += prepared.appended.len() as u64;
        Ok(prepared)
    }

    /// Writes a prepared batch with one write and one `fdatasync`, once every batch prepared
    /// before it is durable; returns each entry's seq and hashes. The writer's lock is not held
    /// during the write and the sync, so the next batch can be prepared meanwhile.
    ///
    /// On [`LogError::OutcomeUnknown`] the batch may or may not be durable and the log refuses
    /// further appends ([`LogError::Poisoned`]), a batch prepared after it included, until it
    /// is reopened.
    pub fn write(&self, prepared: Prepared) -> Result<Vec<Appended>, LogError> {
        let Some(first_seq) = prepared.first_seq() else {
            return Ok(Vec::new());
        };
        let mut writer = self.writer_lock();
        while !writer.poisoned && writer.head.seq + 1 != first_seq {
            writer = self.wait_written(writer);
        }
        if let Some(refusal) = writer.refusal() {
            return Err(refusal);
        }
        assert_eq!(
            writer.head.block_hash, prepared.previous_hash,
            "batch {first_seq} was prepared on a head that is not the log's"
        );
        drop(writer);
        let durable = prepared
            .file
            .write_all_at(&prepared.buf, prepared.at_bytes)
            .and_then(|()| prepared.file.sync_data());
        let mut writer = self.writer_lock();
        if let Err(source) = durable {
            let error = writer.poison(source);
            self.written.notify_all();
            return Err(error);
        }
        self.record_written(&mut writer, &prepared);
        self.written.notify_all();
        Ok(prepared.appended)
    }

    /// Waits until every prepared batch is written; returns the durable head, or `Poisoned`
    /// when a write failed.
    pub fn settle(&self) -> Result<Head, LogError> {
        let writer = self.wait_settled(self.writer_lock());
        if writer.poisoned {
            return Err(LogError::Poisoned);
        }
        Ok(writer.head)
    }

    /// Waits until the entry `seq` is durable; returns the durable head, or `Poisoned` when a
    /// write failed first.
    pub fn wait_durable(&self, seq: u64) -> Result<Head, LogError> {
        let mut writer = self.writer_lock();
        while !writer.poisoned && writer.head.seq < seq {
            writer = self.wait_written(writer);
        }
        if writer.head.seq >= seq {
            return Ok(writer.head);
        }
        Err(LogError::Poisoned)
    }

    /// Refuses every later prepare and write until the log is reopened (a batch being written
    /// now still ends as it ends): its caller lost track of what was prepared (a panic).
    pub fn poison_writes(&self) {
        let mut writer = self.writer_lock();
        writer.poisoned = true;
        drop(writer);
        self.written.notify_all();
    }

    /// The head after every batch prepared so far: where the next prepared batch chains.
    pub fn prepared_head(&self) -> Head {
        self.writer_lock().prepared_head
    }

    pub(super) fn wait_settled<'a>(
        &self,
        mut writer: MutexGuard<'a, Writer>,
    ) -> MutexGuard<'a, Writer> {
        while !writer.settled() {
            writer = self.wait_written(writer);
        }
        writer
    }

    fn wait_written<'a>(&self, writer: MutexGuard<'a, Writer>) -> MutexGuard<'a, Writer> {
        self.written
            .wait(writer)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes a durable batch the head, for the writer and for readers.
    fn record_written(&self, writer: &mut Writer, prepared: &Prepared) {
        let Some(last) = prepared.appended.last() else {
            return;
        };
        let head = Head {
            seq: last.seq,
            block_hash: last.block_hash,
        };
        assert_eq!(
            writer.end_bytes, prepared.at_bytes,
            "a batch was written out of place"
        );
        writer.end_bytes += prepared.buf.len() as u64;
        writer.records_in_segment += prepared.appended.len() as u64;
        writer.head = head;
        if let Some(file) = &writer.durable_head {
            file.publish(head, true);
        }
        let mut view = self.view_write();
        let Some(active) = view.segments.last_mut() else {
            unreachable!("a log has a segment")
        };
        let at = prepared.at_bytes;
        active.offsets.extend(
            prepared
                .buf_offsets
                .iter()
                .map(|offset| (at + u64::from(*offset)) as u32),
        );
        active.records += prepared.appended.len() as u64;
        active.end_bytes = writer.end_bytes;
        view.head = head;
    }

    /// Grows the active segment before a batch that would pass its end, so that a full disk
    /// fails the batch cleanly instead of halfway through the write.
    fn ensure_room(&self, writer: &mut Writer, batch_bytes: u64) -> Result<(), LogError> {
        let needed = writer.prepared_end_bytes + batch_bytes;
        if needed <= writer.file_bytes {
            return Ok(());
        }
        let path = self
            .log_dir
            .join(format::segment_name(writer.prepared_head.seq + 1));
        writer
            .file
            .allocate(needed)
            .map_err(|source| clean_error(&path, source))?;
        writer.file_bytes = needed;
        Ok(())
    }

    /// Seals the active segment and starts the next one (F-40): the new segment is made
    /// durable (header, preallocation, directory entry) before the old one is trimmed, so a
    /// crash at any step leaves a log that recovery settles. Then the sealed segment's summary
    /// is written (F-72): after every byte it describes is durable, so it never claims more.
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
        let summary = self
            .view_read()
            .segments
            .last()
            .map(|old| sealed_summary(writer, old));
        if let Some(summary) = &summary {
            // Best effort, and outside the view's lock (readers go on meanwhile): a summary is
            // derived data, and one that is missing is rebuilt from its segment by the next
            // open (F-71).
            let _ = summary::write(&*self.vfs, &self.log_dir, summary);
        }
        {
            let mut view = self.view_write();
            if let (Some(old), Some(summary)) = (view.segments.last_mut(), summary) {
                *old = SegmentView::sealed(&old.name.clone(), summary);
            }
            view.segments.push(SegmentView {
                name,
                version: header.version,
                first_seq,
                records: 0,
                offsets: Vec::new(),
                stride: 1,
                end_bytes: HEADER_BYTES as u64,
                source: Source::Active(file.clone()),
            });
        }
        writer.file = file;
        writer.header = header;
        writer.end_bytes = HEADER_BYTES as u64;
        writer.prepared_end_bytes = HEADER_BYTES as u64;
        writer.file_bytes = writer.segment_bytes;
        writer.records_in_segment = 0;
        writer.prepared_records_in_segment = 0;
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

/// The summary of the active segment as a roll seals it: every batch bound for it written
/// and durable, and the file trimmed to its last record.
fn sealed_summary(writer: &Writer, active: &SegmentView) -> Summary {
    debug_assert_eq!(active.stride, 1);
    debug_assert_eq!(active.records, writer.records_in_segment);
    Summary {
        segment_version: writer.header.version,
        first_seq: writer.header.first_seq,
        records: writer.records_in_segment,
        end_bytes: writer.end_bytes,
        file_bytes: writer.end_bytes,
        previous_hash: writer.header.previous_hash,
        hash_last: writer.head.block_hash,
        index: active
            .offsets
            .iter()
            .step_by(SUMMARY_INDEX_STRIDE as usize)
            .copied()
            .collect(),
    }
}

/// The bytes a batch takes in a segment, framed.
fn framed_bytes<B: AsRef<[u8]>>(bodies: &[B]) -> u64 {
    bodies
        .iter()
        .map(|body| {
            (format::FRAME_PREFIX_BYTES + format::PAYLOAD_FIXED_BYTES + body.as_ref().len()) as u64
        })
        .sum()
}
