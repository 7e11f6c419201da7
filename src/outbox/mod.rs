//! The outbox: the log itself, read as events by named consumers, each with a durable cursor
//! (`docs/sync.md`). There is no second queue: [`Ledger::events_since`] maps the entries after a
//! seq to events with the same code as `export --format events` (`crate::export::entry_event`),
//! and [`Ledger::ack`] records a cursor as a `ConsumerAcked` entry ([`Ledger::skip`] as an
//! `EventSkipped` one, past an entry the consumer cannot receive), so cursors are in the hash
//! chain, survive crashes and `replay`, and are checked by `verify` like every other row.
//! [`http`] pushes a consumer's events to an HTTP endpoint (`folio sync --url`), [`nats`] to a
//! NATS JetStream stream (`folio sync --nats`); both share `http`'s retry and batch loop.

pub mod error;
pub mod http;
pub mod nats;
pub mod source;

use redb::ReadableTable;
use serde::Serialize;

pub use error::OutboxError;

use crate::Error;
use crate::domain::entry::EntryBody;
use crate::export::{Event, ExportError, entry_event};
use crate::ledger::{Ledger, model};
use crate::log::LogError;
use crate::replay;
use crate::state::{StateError, StateReads};

/// Most events one batch may carry.
pub const BATCH_EVENTS_MAX: usize = 10_000;
/// Most bytes of event JSON one batch may carry (a single larger event still goes alone).
pub const BATCH_BYTES_MAX: usize = 8 << 20;

/// How much one call of [`Ledger::events_since`] gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Events at most (1 to [`BATCH_EVENTS_MAX`]).
    pub events_max: usize,
    /// Bytes of event JSON at most, one event always fits (1 to [`BATCH_BYTES_MAX`]).
    pub bytes_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            events_max: 100,
            bytes_max: 1 << 20,
        }
    }
}

impl BatchLimits {
    /// Checks the bounds; the field named is the CLI's flag.
    pub fn check(&self) -> Result<(), OutboxError> {
        if self.events_max == 0 || self.events_max > BATCH_EVENTS_MAX {
            return Err(OutboxError::Usage {
                detail: format!("--batch must be 1 to {BATCH_EVENTS_MAX}"),
            });
        }
        if self.bytes_max == 0 || self.bytes_max > BATCH_BYTES_MAX {
            return Err(OutboxError::Usage {
                detail: format!("a batch's bytes must be 1 to {BATCH_BYTES_MAX}"),
            });
        }
        Ok(())
    }
}

/// The events of the entries `seq_after + 1 ..= seq_last`, in log order. Entries of kinds
/// without an event (`OverdraftSet`, `ConsumerAcked`, `EventSkipped`) are covered but give
/// nothing: acking `seq_last` once the events are delivered moves the cursor past them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxBatch {
    /// The seq the batch starts after (the cursor it was read from).
    pub seq_after: u64,
    /// The last entry the batch covers: what to acknowledge once it is delivered. Equal to
    /// `seq_after` when there was nothing after it.
    pub seq_last: u64,
    /// The log's head when the batch was read.
    pub head: u64,
    /// One per entry that has an event, exactly as `export --format events` writes them.
    pub events: Vec<Event>,
    /// Bytes of the events as compact JSON (without separators).
    pub events_bytes: usize,
}

impl OutboxBatch {
    /// The seq of the first event, if any.
    pub fn first_event_seq(&self) -> Option<u64> {
        self.events.first().map(|event| event.seq)
    }

    /// The seq of the last event, if any.
    pub fn last_event_seq(&self) -> Option<u64> {
        self.events.last().map(|event| event.seq)
    }
}

/// A consumer as `folio consumers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerView {
    pub name: String,
    /// The last seq it acknowledged.
    pub cursor: u64,
    /// Events after the cursor: what it has yet to receive (0: caught up). Entries without an
    /// event, such as its own acks, do not count.
    pub lag: u64,
}

impl Ledger {
    /// The events of the entries after `seq_after`, up to `limits`, in log order: what an
    /// outbox consumer whose cursor is `seq_after` receives next. The events are those that
    /// `export --format events --since seq_after` writes, byte for byte once serialized. A
    /// `seq_after` past the head is `SEQ_OUT_OF_RANGE`. Reading never waits for writers; the
    /// batch ends at the head as it was when the call began.
    ///
    /// The batch stops before the first entry whose event cannot be made (`NOT_EXPORTABLE`),
    /// covering everything before it, so that what can be delivered is; only when it would
    /// hold no event at all is that entry's error returned (naming its seq), which stops the
    /// consumer there until the entry is skipped ([`Ledger::skip`]). No entry past the
    /// batch's last event is converted.
    ///
    /// ```
    /// use folio::{Ledger, PostRequest, Posting};
    /// use folio::outbox::BatchLimits;
    /// let dir = tempfile::tempdir()?;
    /// let ledger = Ledger::create(dir.path().join("store"))?;
    /// let sale = Posting::new("world", "till:1", "5", "EUR/2")?;
    /// ledger.post(PostRequest::new("main", vec![sale]))?;
    /// let cursor = ledger.cursor("central")?;
    /// let batch = ledger.events_since(cursor, BatchLimits::default())?;
    /// assert_eq!(batch.events.len(), 1);
    /// assert_eq!(batch.events[0].payload.event_type(), "COMMITTED_TRANSACTIONS");
    /// // Once the receiver has them: the cursor moves, durably, and nothing is pending.
    /// ledger.ack("central", batch.seq_last)?;
    /// assert_eq!(ledger.consumers()?[0].lag, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events_since(
        &self,
        seq_after: u64,
        limits: BatchLimits,
    ) -> Result<OutboxBatch, OutboxError> {
        limits.check()?;
        let log = self.log();
        let head = log.head().seq;
        if seq_after > head {
            let error = LogError::SeqOutOfRange {
                seq: seq_after,
                head,
            };
            return Err(Error::from(error).into());
        }
        let mut batch = OutboxBatch {
            seq_after,
            seq_last: seq_after,
            head,
            events: Vec::new(),
            events_bytes: 0,
        };
        if seq_after == head {
            return Ok(batch);
        }
        for entry in log.iter_from(seq_after + 1) {
            let entry = entry.map_err(Error::from)?;
            if entry.seq > head {
                break;
            }
            let body = replay::decode_body(&entry).map_err(Error::from)?;
            if !has_event(&body) {
                batch.seq_last = entry.seq;
                continue;
            }
            if batch.events.len() >= limits.events_max {
                break;
            }
            let event = match entry_event(log, self.store_id(), &entry, &body) {
                Ok(event) => event,
                Err(ExportError::Store(error)) => return Err(error.into()),
                // Stop before it: the next read starts here and returns the error. A batch
                // without events would read as "caught up" to a sender, so then the error.
                Err(_) if !batch.events.is_empty() => break,
                Err(error) => return Err(error.into()),
            };
            let Some(event) = event else {
                debug_assert!(false, "lag counts what export maps: entry {}", entry.seq);
                batch.seq_last = entry.seq;
                continue;
            };
            let bytes = event_bytes(&event)?;
            if !batch.events.is_empty() && batch.events_bytes + bytes > limits.bytes_max {
                break;
            }
            batch.events.push(event);
            batch.events_bytes += bytes;
            batch.seq_last = entry.seq;
        }
        Ok(batch)
    }

    /// A consumer's cursor: the last seq it acknowledged, 0 if it never did.
    pub fn cursor(&self, consumer: &str) -> Result<u64, Error> {
        model::check_consumer_name(consumer)?;
        Ok(self.state()?.read_tables()?.cursor(consumer)?)
    }

    /// Every consumer that has acknowledged something, by name, with its cursor and lag
    /// (events after the cursor). Counting the lag reads the log from the lowest cursor on.
    pub fn consumers(&self) -> Result<Vec<ConsumerView>, Error> {
        let tables = self.state()?.read_tables()?;
        let mut consumers = Vec::new();
        for row in tables.consumers.iter().map_err(StateError::from)? {
            let (name, cursor) = row.map_err(StateError::from)?;
            consumers.push(ConsumerView {
                name: name.value().to_string(),
                cursor: cursor.value(),
                lag: 0,
            });
        }
        let Some(lowest) = consumers.iter().map(|consumer| consumer.cursor).min() else {
            return Ok(consumers);
        };
        let log = self.log();
        let head = log.head().seq;
        if lowest >= head {
            return Ok(consumers);
        }
        for entry in log.iter_from(lowest + 1) {
            let entry = entry?;
            if entry.seq > head {
                break;
            }
            if !has_event(&replay::decode_body(&entry)?) {
                continue;
            }
            for consumer in consumers.iter_mut().filter(|c| c.cursor < entry.seq) {
                consumer.lag += 1;
            }
        }
        Ok(consumers)
    }
}

/// Whether an entry of this kind becomes an event (`docs/events.md`).
fn has_event(body: &EntryBody) -> bool {
    body.has_event()
}

/// The size of an event as compact JSON.
fn event_bytes(event: &Event) -> Result<usize, OutboxError> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, event).map_err(|error| OutboxError::Encode {
        detail: error.to_string(),
    })?;
    Ok(counter.0)
}

/// A writer that only counts.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
