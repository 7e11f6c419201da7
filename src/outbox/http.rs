//! Pushing a consumer's events to an HTTP endpoint (`folio sync`, `docs/sync.md`): batches
//! after the cursor, each POSTed as one JSON body with an `Idempotency-Key` made from the
//! batch's seqs and a hash of that body; a 2xx acks the batch (durably, before the next one is
//! read), a network error, timeout, 408, 429 or 5xx is retried with capped exponential backoff
//! and jitter, the same bytes and key each time; any other status stops sync with the cursor
//! unchanged. Delivery is therefore at-least-once and in log order.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::source::{OutboxStore, is_busy};
use super::{BatchLimits, OutboxBatch, OutboxError};
use crate::export::Event;
use crate::export::events::hex_bytes;
use crate::ledger::Ledger;

/// Names the sender to the receiver's logs.
const USER_AGENT: &str = concat!("folio/", env!("CARGO_PKG_VERSION"));
/// Most bytes of a rejecting response's body quoted in the error.
const RESPONSE_DETAIL_BYTES_MAX: usize = 512;
/// The longest single sleep while following (so a stop request is seen soon).
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Hex digits of the body's blake3 hash in an `Idempotency-Key` (128 bits).
const IDEMPOTENCY_HASH_HEX_DIGITS: usize = 32;

/// How `folio sync` runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The receiver: an `http://` or `https://` URL for [`sync`], a `nats://` server for
    /// [`super::nats::sync`].
    pub url: String,
    /// The consumer whose cursor is read and advanced.
    pub consumer: String,
    pub limits: BatchLimits,
    /// Send what is pending and return, rather than follow new entries.
    pub once: bool,
    /// The first retry waits about this long; each further one twice as long...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_cap: Duration,
    /// Attempts per batch before giving up (`Unavailable`); `None` retries for ever. While
    /// following (not `once`), giving up waits a poll interval and sends the same batch again.
    pub attempts_max: Option<u32>,
    /// One request's whole time (connect, send, response); for NATS, connecting, and the wait
    /// for each publish's acknowledgement.
    pub request_timeout: Duration,
    /// How often to look for new entries while following; also the wait after an outage while
    /// following, and before trying a store in use again.
    pub poll_interval: Duration,
    /// Set to stop following between batches (the CLI leaves it unset: SIGINT ends it). A
    /// batch being retried when it is set gives up at its next failure (`Unavailable`).
    pub stop: Option<Arc<AtomicBool>>,
}

impl SyncOptions {
    /// Defaults for everything but the receiver and the consumer.
    pub fn new(url: impl Into<String>, consumer: impl Into<String>) -> SyncOptions {
        SyncOptions {
            url: url.into(),
            consumer: consumer.into(),
            limits: BatchLimits::default(),
            once: false,
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(60),
            attempts_max: None,
            request_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            stop: None,
        }
    }

    /// Checks the options that no sync can run with (`USAGE`; the field named is the CLI's
    /// flag): the batch bounds, a time limit of 0 (every attempt would time out at once, and
    /// be retried for ever), a retry base of 0 with unlimited attempts (a busy loop).
    pub fn check(&self) -> Result<(), OutboxError> {
        self.limits.check()?;
        if self.request_timeout.is_zero() {
            return Err(OutboxError::Usage {
                detail: "--timeout-ms must be at least 1: every attempt would time out".to_string(),
            });
        }
        if self.retry_base.is_zero() && self.attempts_max.is_none() {
            return Err(OutboxError::Usage {
                detail: "a retry base of 0 with unlimited attempts would spin".to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
    }
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyncReport {
    /// Batches delivered and acknowledged.
    pub batches: u64,
    /// Events in them.
    pub events: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// The consumer's cursor at the end.
    pub cursor: u64,
}

/// What happens during a sync, for a progress line. New kinds of progress may come: a match
/// on it needs a catch-all arm.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// A batch was delivered and its last seq acknowledged.
    Delivered {
        seq_first: u64,
        seq_last: u64,
        events: usize,
        cursor: u64,
    },
    /// An attempt failed; the same request goes again after `delay`.
    Retrying {
        attempt: u32,
        delay: Duration,
        detail: String,
    },
    /// Following, a batch failed `attempts_max` attempts (`detail` says how): the same batch,
    /// the same bytes, goes again after `delay` (a poll interval).
    Waiting { delay: Duration, detail: String },
}

/// The request body: `{"store_id", "consumer", "seq_after", "seq_last", "events": [...]}`.
#[derive(Serialize)]
struct RequestBody<'a> {
    store_id: String,
    consumer: &'a str,
    seq_after: u64,
    seq_last: u64,
    events: &'a [Event],
}

/// The body of one batch's request, as sent on every attempt.
pub fn request_body(
    store_id: [u8; 16],
    consumer: &str,
    batch: &OutboxBatch,
) -> Result<Vec<u8>, OutboxError> {
    let body = RequestBody {
        store_id: hex_bytes(&store_id),
        consumer,
        seq_after: batch.seq_after,
        seq_last: batch.seq_last,
        events: &batch.events,
    };
    serde_json::to_vec(&body).map_err(|error| OutboxError::Encode {
        detail: error.to_string(),
    })
}

/// `<store_id>-<first event seq>-<last event seq>-<first 32 hex digits of blake3(body)>`, where
/// `body` is the request body exactly as sent ([`request_body`]): one key never names two
/// different bodies, whatever else differs between them (the consumer, a `seq_last` moved by
/// entries without an event written between two runs), and the same bytes always get the same
/// key, so every attempt of a request sends the same key. The seqs are there for people
/// reading the receiver's logs; the hash is what makes the key.
pub fn idempotency_key(store_id: [u8; 16], batch: &OutboxBatch, body: &[u8]) -> Option<String> {
    let (first, last) = (batch.events.first()?, batch.events.last()?);
    let hash = blake3::hash(body).to_hex();
    Some(format!(
        "{}-{}-{}-{}",
        hex_bytes(&store_id),
        first.seq,
        last.seq,
        &hash[..IDEMPOTENCY_HASH_HEX_DIGITS]
    ))
}

/// Checks that a URL is one sync can POST to.
pub fn check_url(url: &str) -> Result<(), OutboxError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(OutboxError::Usage {
            detail: format!("--url {url:?} must be an http:// or https:// URL with a host"),
        }),
    }
}

/// Capped exponential backoff with jitter: attempt `n` (from 1) waits a random time between
/// half and all of `min(cap, base * 2^(n-1))`, so that many devices coming back online at
/// once do not retry in step.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        let mut seed = [0u8; 8];
        // Without OS randomness the jitter is merely predictable; the time still varies it.
        if getrandom::fill(&mut seed).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            seed = now.to_le_bytes();
        }
        Backoff {
            base,
            cap,
            rng: u64::from_le_bytes(seed) | 1,
        }
    }

    /// The wait before retry number `attempt` (1 after the first failure).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let ceiling = self.base.saturating_mul(doubling).min(self.cap);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = ceiling / 2;
        let spread_ns = (ceiling - half).as_nanos().max(1) as u64;
        half + Duration::from_nanos(self.rng % spread_ns)
    }
}

/// What one attempt came to (an HTTP request here, a JetStream publish in [`super::nats`]).
pub(super) enum Attempt {
    Delivered,
    /// Worth retrying: a network error, a timeout, 408, 429 or 5xx (for NATS: see there).
    Failed(String),
    /// Refused for good: sync stops with this error, the cursor where it was.
    Rejected(OutboxError),
}

/// The entries one batch covers, as errors quote them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub seq_first: u64,
    pub seq_last: u64,
    /// The cursor the batch was read from, which stays put until it is delivered.
    pub cursor: u64,
}

impl Span {
    pub(super) fn of(batch: &OutboxBatch) -> Span {
        Span {
            seq_first: batch.first_event_seq().unwrap_or(batch.seq_after + 1),
            seq_last: batch.last_event_seq().unwrap_or(batch.seq_last),
            cursor: batch.seq_after,
        }
    }
}

fn agent(options: &SyncOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(options.request_timeout))
        .http_status_as_error(false)
        // A redirect is a misconfigured URL: report it rather than re-POST elsewhere.
        .max_redirects(0)
        .build()
        .into()
}

fn attempt(agent: &ureq::Agent, url: &str, body: &[u8], key: &str, span: Span) -> Attempt {
    let sent = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .header("User-Agent", USER_AGENT)
        .send(body);
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => return Attempt::Failed(error.to_string()),
    };
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Attempt::Delivered;
    }
    // Only the start of the body, on one line: it goes into a one-line error message.
    let mut start = Vec::new();
    let read = response
        .body_mut()
        .as_reader()
        .take(RESPONSE_DETAIL_BYTES_MAX as u64)
        .read_to_end(&mut start);
    let text: String = String::from_utf8_lossy(&start)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let detail = match (read, text.trim()) {
        (Err(error), _) => format!("the response body did not read: {error}"),
        (Ok(_), "") => "no response body".to_string(),
        (Ok(_), text) => text.to_string(),
    };
    if status == 408 || status == 429 || status >= 500 {
        Attempt::Failed(format!("HTTP {status}: {detail}"))
    } else {
        Attempt::Rejected(OutboxError::Rejected {
            status,
            seq_first: span.seq_first,
            seq_last: span.seq_last,
            cursor: span.cursor,
            detail,
        })
    }
}

/// Sends one batch until it is delivered, rejected, or out of attempts.
fn deliver(
    store_id: [u8; 16],
    options: &SyncOptions,
    agent: &ureq::Agent,
    batch: &OutboxBatch,
    report: &mut SyncReport,
    progress: &mut dyn FnMut(&SyncProgress),
) -> Result<(), OutboxError> {
    let body = request_body(store_id, &options.consumer, batch)?;
    let key = idempotency_key(store_id, batch, &body).unwrap_or_default();
    let span = Span::of(batch);
    retry(options, span, report, progress, &mut || {
        attempt(agent, &options.url, &body, &key, span)
    })
}

/// Runs `attempt` until it delivers, is rejected, or has failed `options.attempts_max` times,
/// sleeping a capped, jittered, doubling delay ([`Backoff`]) between failures. Shared by every
/// transport, so that HTTP and NATS retry alike.
pub(super) fn retry(
    options: &SyncOptions,
    span: Span,
    report: &mut SyncReport,
    progress: &mut dyn FnMut(&SyncProgress),
    attempt: &mut dyn FnMut() -> Attempt,
) -> Result<(), OutboxError> {
    let mut backoff = Backoff::new(options.retry_base, options.retry_cap);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let detail = match attempt() {
            Attempt::Delivered => return Ok(()),
            Attempt::Rejected(error) => return Err(error),
            Attempt::Failed(detail) => detail,
        };
        if options.attempts_max.is_some_and(|max| attempts >= max) || options.stopped() {
            return Err(OutboxError::Unavailable {
                attempts,
                seq_first: span.seq_first,
                seq_last: span.seq_last,
                cursor: span.cursor,
                detail,
            });
        }
        report.retries += 1;
        let delay = backoff.delay(attempts);
        progress(&SyncProgress::Retrying {
            attempt: attempts,
            delay,
            detail,
        });
        std::thread::sleep(delay);
    }
}

/// Pushes `options.consumer`'s events to `options.url` until it is caught up (`once`) or
/// stopped. Each batch is acknowledged (a durable `ConsumerAcked` entry) only after a 2xx, and
/// the next batch is read from the new cursor, so a crash at any point resends at most the
/// batch in flight. Only batches holding events are sent and acknowledged: entries without
/// an event (sync's own acks among them) are passed over with the next batch that has one.
/// While following, a batch out of attempts waits a poll interval and goes again.
///
/// An application that keeps its store open runs it on a clone of its handle:
///
/// ```no_run
/// use std::sync::{Arc, atomic::AtomicBool};
/// use folio::outbox::http::{SyncOptions, sync};
/// let ledger = folio::Ledger::open("books")?;
/// let stop = Arc::new(AtomicBool::new(false));
/// let options = SyncOptions {
///     stop: Some(stop.clone()),
///     ..SyncOptions::new("https://ledger.example/folio/events", "central")
/// };
/// let follower = {
///     let ledger = ledger.clone();
///     std::thread::spawn(move || sync(&ledger, &options, &mut |_| {}))
/// };
/// // ... post as usual; the follower sends each new event once it is committed ...
/// stop.store(true, std::sync::atomic::Ordering::SeqCst);
/// let report = follower.join().expect("the follower thread")?;
/// println!("{} events sent, cursor at {}", report.events, report.cursor);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sync(
    ledger: &Ledger,
    options: &SyncOptions,
    progress: &mut dyn FnMut(&SyncProgress),
) -> Result<SyncReport, OutboxError> {
    sync_with(&mut { ledger }, options, progress)
}

/// [`sync`] through any [`OutboxStore`]: `folio sync` passes one that opens the store for each
/// read and each ack and closes it at once.
pub fn sync_with(
    store: &mut dyn OutboxStore,
    options: &SyncOptions,
    progress: &mut dyn FnMut(&SyncProgress),
) -> Result<SyncReport, OutboxError> {
    check_url(&options.url)?;
    let agent = agent(options);
    let store_id = store.store_id();
    drive(store, options, progress, &mut |batch, report, progress| {
        deliver(store_id, options, &agent, batch, report, progress)
    })
}

/// One delivery of a batch, as [`drive`] calls it: returns once the whole batch is delivered.
pub(super) type Deliver<'a> = dyn FnMut(&OutboxBatch, &mut SyncReport, &mut dyn FnMut(&SyncProgress)) -> Result<(), OutboxError>
    + 'a;

/// The loop every transport shares: read a batch after the cursor, `deliver` it, ack its last
/// seq (durably, before the next batch is read), until caught up (`once`) or stopped.
///
/// The store is reached only through `store`, never across a delivery or a wait: what the
/// loop carries between calls is a batch not yet delivered and an ack not yet recorded. A
/// store in use ([`is_busy`]) is tried again after a poll interval, with the ack first: it is
/// never dropped, and the next batch is read only after it. While following, a batch out of
/// attempts (`Unavailable`) is reported, and sent again, the same bytes, after a poll
/// interval; with `once`, or once stopped, it ends the sync.
pub(super) fn drive(
    store: &mut dyn OutboxStore,
    options: &SyncOptions,
    progress: &mut dyn FnMut(&SyncProgress),
    deliver: &mut Deliver<'_>,
) -> Result<SyncReport, OutboxError> {
    options.check()?;
    let cursor = loop {
        match store.cursor(&options.consumer) {
            Err(error) if is_busy(&error) && !options.stopped() => wait(options),
            outcome => break outcome?,
        }
    };
    let mut report = SyncReport {
        cursor,
        ..SyncReport::default()
    };
    // Delivered, its ack not yet recorded (the store was in use).
    let mut unacked: Option<OutboxBatch> = None;
    // Read, not yet delivered (following, after an outage): sent again as it is.
    let mut undelivered: Option<OutboxBatch> = None;
    loop {
        if let Some(batch) = unacked.take() {
            match store.ack(&options.consumer, batch.seq_last) {
                Ok(()) => acked(&batch, &mut report, progress),
                Err(error) if is_busy(&error) && !options.stopped() => {
                    unacked = Some(batch);
                    wait(options);
                    continue;
                }
                Err(error) => return Err(error),
            }
        }
        if options.stopped() {
            break;
        }
        let batch = match undelivered.take() {
            Some(batch) => batch,
            None => match store.events_since(report.cursor, options.limits) {
                Ok(batch) => batch,
                Err(error) if is_busy(&error) => {
                    wait(options);
                    continue;
                }
                Err(error) => return Err(error),
            },
        };
        if batch.events.is_empty() {
            if options.once {
                break;
            }
            wait(options);
            continue;
        }
        match deliver(&batch, &mut report, progress) {
            Ok(()) => unacked = Some(batch),
            Err(error @ OutboxError::Unavailable { .. }) if !options.once && !options.stopped() => {
                progress(&SyncProgress::Waiting {
                    delay: options.poll_interval,
                    detail: error.to_string(),
                });
                undelivered = Some(batch);
                wait(options);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(report)
}

/// Counts a batch whose ack was recorded, and reports it.
fn acked(batch: &OutboxBatch, report: &mut SyncReport, progress: &mut dyn FnMut(&SyncProgress)) {
    report.cursor = batch.seq_last;
    report.batches += 1;
    report.events += batch.events.len() as u64;
    progress(&SyncProgress::Delivered {
        seq_first: batch.first_event_seq().unwrap_or(batch.seq_after + 1),
        seq_last: batch.seq_last,
        events: batch.events.len(),
        cursor: report.cursor,
    });
}

/// Sleeps one poll interval, in slices, returning early when stopped.
fn wait(options: &SyncOptions) {
    let mut left = options.poll_interval;
    while !left.is_zero() && !options.stopped() {
        let slice = left.min(STOP_CHECK_INTERVAL);
        std::thread::sleep(slice);
        left -= slice;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let delay = backoff.delay(attempt);
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(check_url("http://127.0.0.1:8080/events").is_ok());
        assert!(check_url("https://ledger.example/in").is_ok());
        for bad in ["ftp://x", "http://", "127.0.0.1:80", "http:///path"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
