//! Commands of the outbox (`docs/sync.md`): `consumers` lists cursors and lag; `sync` pushes a
//! consumer's events to an HTTP receiver (`--url`) or a NATS JetStream stream (`--nats`). Both
//! open the store as a writer (sync appends its acks), so the store is locked to them while
//! they run.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::number;
use super::output::{CliError, note, outln, print_json, print_table};
use super::query::open;
use crate::Ledger;
use crate::outbox::http::{self, SyncOptions, SyncProgress, SyncReport};
use crate::outbox::nats::{self, Publisher};
use crate::outbox::{BatchLimits, OutboxError};

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
    let ledger = open(store)?;
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

/// Sends what is pending through one transport, the store open.
type Deliver<'a> = dyn FnMut(&Ledger, &SyncOptions, &mut dyn FnMut(&SyncProgress)) -> Result<SyncReport, OutboxError>
    + 'a;

/// Follows the store: each poll opens it, sends what is pending, and closes it again, so that
/// other processes (`folio post`) can write between polls. A store in use is tried again at
/// the next poll. Runs until the process is stopped (SIGINT) or an error.
fn follow(
    store: &Path,
    options: &SyncOptions,
    deliver: &mut Deliver<'_>,
    progress: &mut dyn FnMut(&SyncProgress),
) -> Result<u8, CliError> {
    let once = SyncOptions {
        once: true,
        ..options.clone()
    };
    loop {
        match Ledger::open(store) {
            Ok(ledger) => {
                let outcome = deliver(&ledger, &once, progress);
                let closed = ledger.close();
                drop(ledger);
                outcome?;
                closed?;
            }
            Err(error) if error.code() == "STORE_IN_USE" => {}
            Err(error) => return Err(error.into()),
        }
        std::thread::sleep(options.poll_interval);
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
    let mut deliver =
        |ledger: &Ledger, options: &SyncOptions, progress: &mut dyn FnMut(&SyncProgress)| {
            match publisher.as_mut() {
                Some(publisher) => nats::sync(ledger, options, publisher, progress),
                None => http::sync(ledger, options, progress),
            }
        };
    let mut progress = |event: &SyncProgress| print_progress(event, json);
    if !args.once {
        return follow(store, &options, &mut deliver, &mut progress);
    }
    let ledger = open(store)?;
    let outcome = deliver(&ledger, &options, &mut progress);
    let closed = ledger.close();
    let report = outcome?;
    closed?;
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
