//! Export: the log's entries as events for other systems, in log order (`docs/events.md`).
//! [`events`] maps an entry to a Formance-shaped event (a pure function); here a store is read
//! for it and [`EventWriter`], a [`Replay`] sink, writes the events as JSON Lines. Export never
//! changes the store: the log is opened read-only (a torn tail is neither cut nor exported).

pub mod events;

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

pub use events::{Event, Payload, event_of};

use crate::Error;
use crate::domain::LedgerError;
use crate::domain::entry::{EntryBody, TransactionEntry};
use crate::log::vfs::Vfs;
use crate::log::{Entry, Log, LogError, LogReader};
use crate::replay::ReplayError;
use crate::replay::{self, Replay};

/// Why an export stopped. Every line written before the error is a whole, valid event.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be opened or read (in use, not a store, a corrupt log).
    #[error(transparent)]
    Store(#[from] Error),
    /// Writing the events failed (a closed pipe, a full disk).
    #[error("writing the events failed: {source}")]
    Write { source: io::Error },
    /// An amount or volume that has no exact integer form in its asset's smallest unit: the
    /// entry cannot be exported without changing what it says.
    #[error(
        "entry {seq} cannot be exported: {amount} {asset} is not a whole number of the \
         asset's smallest unit ({reason})"
    )]
    Amount {
        seq: u64,
        asset: String,
        amount: String,
        reason: &'static str,
    },
    /// A time outside the years that RFC 3339 can write (0000 to 9999).
    #[error(
        "entry {seq} cannot be exported: its time ({micros} us since the epoch) is out of range"
    )]
    Time { seq: u64, micros: i64 },
}

impl ExportError {
    /// A stable, machine-readable code (`docs/cli.md`, "Errors").
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::Store(error) => error.code(),
            ExportError::Write { .. } => "IO",
            ExportError::Amount { .. } | ExportError::Time { .. } => "NOT_EXPORTABLE",
        }
    }

    /// Whether the export ran and found an entry it cannot express, as opposed to a failure
    /// of the store or of the output.
    pub fn is_rejection(&self) -> bool {
        match self {
            ExportError::Store(error) => error.is_rejection(),
            ExportError::Write { .. } => false,
            ExportError::Amount { .. } | ExportError::Time { .. } => true,
        }
    }

    /// Whether the reader of the output went away (`folio export | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ExportError::Write { source } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// What an export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// Entries read (those after the `since` seq).
    pub entries: u64,
    /// Events written: entries less those of kinds without an event.
    pub events: u64,
    /// The log's head when the export began: the last seq it covers.
    pub head: u64,
    /// Whether the log ends in a torn write (an append that never completed): not exported,
    /// and cut by the next writable open.
    pub torn_tail: bool,
}

/// Writes one event per entry as JSON Lines; entries without an event write nothing. Reads
/// the transaction a revert reverts from the log. An export error stops the drive as itself
/// (the sink's error is [`ExportError`]).
pub struct EventWriter<'a, W: Write> {
    log: &'a LogReader,
    store_id: [u8; 16],
    out: W,
    events: u64,
    line: Vec<u8>,
}

impl<'a, W: Write> EventWriter<'a, W> {
    pub fn new(log: &'a LogReader, store_id: [u8; 16], out: W) -> EventWriter<'a, W> {
        EventWriter {
            log,
            store_id,
            out,
            events: 0,
            line: Vec::new(),
        }
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Flushes the output (a buffered one holds whole lines only).
    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.out
            .flush()
            .map_err(|source| ExportError::Write { source })
    }

    fn write_entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ExportError> {
        let Some(event) = entry_event(self.log, self.store_id, entry, body)? else {
            return Ok(());
        };
        self.line.clear();
        // Serializing owned strings and integers into a Vec cannot fail; an error here would
        // be a bug, reported rather than hidden.
        serde_json::to_writer(&mut self.line, &event).map_err(|error| ExportError::Write {
            source: io::Error::other(error),
        })?;
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(|source| ExportError::Write { source })?;
        self.events += 1;
        Ok(())
    }
}

impl<W: Write> Replay for EventWriter<'_, W> {
    type Error = ExportError;

    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ExportError> {
        self.write_entry(entry, body)
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        self.flush()
    }
}

impl From<ReplayError> for ExportError {
    fn from(error: ReplayError) -> Self {
        ExportError::Store(error.into())
    }
}

/// The event of one entry of `log`, reading the transaction a revert reverts from the log:
/// what [`EventWriter`] writes, and what the outbox (`Ledger::events_since`) hands out, so the
/// two can never disagree. `None` for the kinds without an event.
pub fn entry_event(
    log: &LogReader,
    store_id: [u8; 16],
    entry: &Entry,
    body: &EntryBody,
) -> Result<Option<Event>, ExportError> {
    let reverted = reverted_of(log, body)?;
    event_of(entry, body, store_id, reverted.as_ref())
}

/// The entry of the transaction that `body` reverts, when it is a revert.
pub fn reverted_of(log: &LogReader, body: &EntryBody) -> Result<Option<TransactionEntry>, Error> {
    let EntryBody::Transaction(TransactionEntry {
        reverts: Some(id), ..
    }) = body
    else {
        return Ok(None);
    };
    let original = log.read(*id)?;
    match replay::decode_body(&original)? {
        EntryBody::Transaction(tx) => Ok(Some(tx)),
        // Not a transaction: event_of reports the revert as inconsistent.
        _ => Ok(None),
    }
}

/// The store's id, from its first entry; `None` for an empty log (a create that stopped
/// before writing it).
pub fn store_id_of(log: &LogReader) -> Result<Option<[u8; 16]>, Error> {
    if log.head().seq == 0 {
        return Ok(None);
    }
    match replay::decode_body(&log.read(1)?)? {
        EntryBody::StoreCreated(created) => Ok(Some(created.store_id)),
        _ => Err(LedgerError::NotAStore.into()),
    }
}

/// Writes the events of the entries after `seq_since` of an open log to `out`, then flushes
/// it. `seq_since` past the head is an error (`SEQ_OUT_OF_RANGE`): a reader that has seen
/// more than the log holds is reading another history (a store restored from a backup).
/// `progress` gets each seq read and the head.
pub fn export_log<W: Write>(
    log: &LogReader,
    seq_since: u64,
    out: W,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary, ExportError> {
    let head = log.head().seq;
    if seq_since > head {
        return Err(Error::from(LogError::SeqOutOfRange {
            seq: seq_since,
            head,
        })
        .into());
    }
    let mut summary = ExportSummary {
        head,
        torn_tail: !log.recovery_report().cuts.is_empty(),
        ..ExportSummary::default()
    };
    let Some(store_id) = store_id_of(log)? else {
        return Ok(summary);
    };
    let mut writer = EventWriter::new(log, store_id, out);
    let seq_from = seq_since.saturating_add(1);
    let driven = replay::drive(log, seq_from, head, &mut writer, &mut |seq| {
        progress(seq, head)
    });
    match driven {
        Ok(entries) => {
            summary.entries = entries;
            summary.events = writer.events();
            Ok(summary)
        }
        Err(failure) => {
            // Deliver the whole lines written before the failure; the failure is the news.
            let _ = writer.flush();
            Err(failure)
        }
    }
}

/// Exports a store in `dir` without changing it, beside a writer that may hold it: holds it as
/// a reader (`docs/ledger.md` section 12.1), opens the log for reading (up to the durable head the writer published, `Log::open_reader`) and writes
/// the events of the entries after `seq_since` to `out`.
pub fn export_store<W: Write>(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    seq_since: u64,
    out: W,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary, ExportError> {
    let wait = crate::store::READERS_WAIT_DEFAULT;
    let _pin = crate::store::pin_for_reading(&*vfs, dir, wait).map_err(Error::from)?;
    let log = Log::open_reader(vfs, dir, 0).map_err(Error::from)?;
    export_log(&log, seq_since, out, progress)
}
