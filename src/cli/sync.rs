//! Commands of the outbox (`docs/sync.md`): `consumers` lists cursors and lag; `sync` pushes a
//! consumer's events to an HTTP receiver (`--url`) or a NATS JetStream stream (`--nats`). Sync
//! opens the store (as a writer: it appends its acks) for one read or one ack at a time and
//! closes it at once, never across a send, a wait or a backoff, so that `folio post` and every
//! other command get the store while it waits for the network (`docs/sync.md`, "The store's
//! lock").

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::number;
use super::output::{CliError, note, outln, print_json, print_table};
use super::query::open_reader;
use crate::Ledger;
use crate::log::vfs::RealFs;
use crate::log::{TailFingerprint, tail_fingerprint};
use crate::outbox::http::{self, SyncOptions, SyncProgress};
use crate::outbox::nats::{self, Publisher};
use crate::outbox::source::{OutboxStore, is_busy};
use crate::outbox::{BatchLimits, OutboxBatch, OutboxError};

impl From<OutboxError> for CliError {
    fn from(error: OutboxError) -> Self {
        CliError {
            exit: if error.is_rejection() { 1 } else { 2 },
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

/// The flags of `folio sync`, as parsed.
#[derive(Debug, clap::Args)]
pub(super) struct SyncArgs {
    /// The consumer whose cursor is read and advanced.
    #[arg(long)]
    consumer: String,
    /// The receiver: an http:// or https:// URL that takes a POST of a JSON batch.
    #[arg(long, required_unless_present = "nats", conflicts_with = "nats")]
    url: Option<String>,
    /// The receiver: a NATS server (nats://HOST:PORT) whose JetStream stores --subject.
    #[arg(long, requires = "subject")]
    nats: Option<String>,
    /// The subject each event is published on (with --nats); a stream must take it.
    #[arg(long, requires = "nats")]
    subject: Option<String>,
    /// Most events per request (HTTP) or per acknowledged batch (NATS).
    #[arg(long, default_value_t = 100, value_parser = number::<usize>)]
    batch: usize,
    /// Send what is pending and exit, instead of following new entries.
    #[arg(long)]
    once: bool,
    /// The first retry's wait in milliseconds (doubling, with jitter, up to --retry-cap-ms).
    #[arg(
        long,
        env = "FOLIO_SYNC_RETRY_BASE_MS",
        default_value_t = 500,
        value_parser = number::<u64>
    )]
    retry_base_ms: u64,
    /// The longest wait between retries, in milliseconds.
    #[arg(
        long,
        env = "FOLIO_SYNC_RETRY_CAP_MS",
        default_value_t = 60_000,
        value_parser = number::<u64>
    )]
    retry_cap_ms: u64,
    /// Attempts per batch before giving up with SYNC_UNAVAILABLE (default: retry for ever).
    #[arg(long, value_parser = number::<u32>)]
    attempts_max: Option<u32>,
    /// One request's time limit (NATS: connecting, and each publish's ack), in milliseconds
    /// (at least 1).
    #[arg(long, default_value_t = 30_000, value_parser = number::<u64>)]
    timeout_ms: u64,
    /// How often to look for new entries while following, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = number::<u64>)]
    poll_ms: u64,
}

pub(super) fn consumers(store: &Path, json: bool) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let consumers = ledger.consumers()?;
    let head = ledger.head().seq;
    ledger.close()?;
    if json {
        print_json(&json!({ "head": head, "consumers": consumers }))?;
    } else {
        let rows: Vec<Vec<String>> = consumers
            .iter()
            .map(|c| vec![c.name.clone(), c.cursor.to_string(), c.lag.to_string()])
            .collect();
        print_table(&["CONSUMER", "CURSOR", "LAG"], &rows)?;
    }
    Ok(0)
}

/// The store as `folio sync` reaches it: opened for one read or one ack and closed at once.
/// A read for a cursor that last found nothing after it, while the log's tail is as it was
/// then, answers "nothing new" without opening the store: an idle follower leaves the store
/// to other commands.
struct ClosingStore<'a> {
    path: &'a Path,
    store_id: [u8; 16],
    /// The cursor, the head and the log's tail (taken before that read opened the store) of
    /// the last read that found no events.
    caught_up: Option<(u64, u64, TailFingerprint)>,
}

impl ClosingStore<'_> {
    /// Opens the store once, for its id; `STORE_IN_USE` if another process has it.
    fn new(path: &Path) -> Result<ClosingStore<'_>, OutboxError> {
        let mut store = ClosingStore {
            path,
            store_id: [0; 16],
            caught_up: None,
        };
        store.store_id = store.with(|ledger| Ok(ledger.store_id()))?;
        Ok(store)
    }

    /// Runs `access` on the store, opened for it and closed before this returns.
    fn with<T>(
        &self,
        access: impl FnOnce(&Ledger) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let ledger = Ledger::open(self.path)?;
        let outcome = access(&ledger);
        let closed = ledger.close();
        drop(ledger);
        let value = outcome?;
        closed?;
        Ok(value)
    }
}

impl OutboxStore for ClosingStore<'_> {
    fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    fn cursor(&mut self, consumer: &str) -> Result<u64, OutboxError> {
        self.with(|ledger| Ok(ledger.cursor(consumer)?))
    }

    fn events_since(
        &mut self,
        seq_after: u64,
        limits: BatchLimits,
    ) -> Result<OutboxBatch, OutboxError> {
        // Taken before the read: an append after it changes the tail, so the next poll reads.
        // Without one (an I/O error), read: the open reports what is wrong.
        let tail = tail_fingerprint(&RealFs, self.path).ok();
        if let (Some(tail), Some((cursor, head, seen))) = (&tail, &self.caught_up)
            && *cursor == seq_after
            && seen == tail
        {
            return Ok(OutboxBatch {
                seq_after,
                seq_last: seq_after,
                head: *head,
                events: Vec::new(),
                events_bytes: 0,
            });
        }
        let batch = self.with(|ledger| ledger.events_since(seq_after, limits))?;
        self.caught_up = match tail {
            Some(tail) if batch.events.is_empty() => Some((seq_after, batch.head, tail)),
            _ => None,
        };
        Ok(batch)
    }

    fn ack(&mut self, consumer: &str, seq: u64) -> Result<(), OutboxError> {
        self.with(|ledger| Ok(ledger.ack(consumer, seq).map(drop)?))
    }
}

/// Opens the store for its id; while following, a store in use is tried again at each poll.
fn closing_store<'a>(
    store: &'a Path,
    options: &SyncOptions,
) -> Result<ClosingStore<'a>, OutboxError> {
    loop {
        match ClosingStore::new(store) {
            Err(error) if is_busy(&error) && !options.once => {
                std::thread::sleep(options.poll_interval);
            }
            outcome => return outcome,
        }
    }
}

fn print_progress(event: &SyncProgress, json: bool) {
    match event {
        SyncProgress::Delivered {
            seq_first,
            seq_last,
            events,
            cursor,
        } => {
            if json {
                let delivered = json!({ "seq_first": seq_first, "seq_last": seq_last,
                    "events": events, "cursor": cursor });
                // A progress line that cannot be written is dropped: delivery goes on, and the
                // cursor in the store says how far it got.
                let _ = outln!("{}", json!({ "delivered": delivered }));
            } else {
                note(format_args!(
                    "folio sync: delivered {events} events of entries \
                     {seq_first}..={seq_last}; cursor {cursor}"
                ));
            }
        }
        SyncProgress::Retrying {
            attempt,
            delay,
            detail,
        } => note(format_args!(
            "folio sync: attempt {attempt} failed ({detail}); retrying in {} ms",
            delay.as_millis()
        )),
        SyncProgress::Waiting { delay, detail } => note(format_args!(
            "folio sync: {detail}; sending the same batch again in {} ms",
            delay.as_millis()
        )),
    }
}

pub(super) fn sync(store: &Path, args: SyncArgs, json: bool) -> Result<u8, CliError> {
    let url = args
        .url
        .clone()
        .or_else(|| args.nats.clone())
        .unwrap_or_default();
    let options = SyncOptions {
        limits: BatchLimits {
            events_max: args.batch,
            ..BatchLimits::default()
        },
        once: args.once,
        retry_base: Duration::from_millis(args.retry_base_ms),
        retry_cap: Duration::from_millis(args.retry_cap_ms.max(args.retry_base_ms)),
        attempts_max: args.attempts_max,
        request_timeout: Duration::from_millis(args.timeout_ms),
        poll_interval: Duration::from_millis(args.poll_ms),
        ..SyncOptions::new(url, args.consumer)
    };
    // Refuse bad flags before taking the store's lock.
    let mut publisher = match &args.subject {
        Some(subject) => Some(Publisher::new(&options, subject)?),
        None => {
            http::check_url(&options.url)?;
            None
        }
    };
    options.check()?;
    crate::domain::model::check_consumer_name(&options.consumer).map_err(crate::Error::from)?;
    let mut progress = |event: &SyncProgress| print_progress(event, json);
    let mut store = closing_store(store, &options)?;
    // Following ends only when stopped (SIGINT) or on an error that waiting cannot mend.
    let report = match publisher.as_mut() {
        Some(publisher) => nats::sync_with(&mut store, &options, publisher, &mut progress)?,
        None => http::sync_with(&mut store, &options, &mut progress)?,
    };
    if json {
        print_json(&json!({ "consumer": options.consumer, "sync": report }))?;
    } else {
        outln!(
            "synced {} events in {} batches ({} retries); cursor of {} at {}",
            report.events,
            report.batches,
            report.retries,
            options.consumer,
            report.cursor
        )?;
    }
    Ok(0)
}
