//! Pushing a consumer's events to a NATS JetStream stream (`folio sync --nats`, `docs/sync.md`,
//! "NATS JetStream"): one message per event on one subject, its payload the event's JSON exactly
//! as `export --format events` writes it, with `Nats-Msg-Id: <store_id>-<seq>` so that the
//! stream's duplicate window drops re-publishes. A batch is acked (a durable `ConsumerAcked`)
//! only once JetStream has acknowledged every event in it. The client is async: its tokio
//! runtime (current-thread, on the caller's thread) lives in [`Publisher`] and nowhere else.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{
    AccountErrorKind, GetStreamByNameErrorKind, PublishErrorKind,
};
use async_nats::{ConnectOptions, HeaderMap};

use super::http::{Attempt, Span, SyncOptions, SyncProgress, SyncReport, drive, retry};
use super::source::OutboxStore;
use super::{OutboxBatch, OutboxError};
use crate::export::events::hex_bytes;
use crate::ledger::Ledger;

/// Names the connection in the server's monitoring.
const CLIENT_NAME: &str = concat!("folio/", env!("CARGO_PKG_VERSION"));
/// Longest subject accepted (NATS has no hard limit; a longer one is surely a mistake).
pub const SUBJECT_BYTES_MAX: usize = 256;

/// One event as published: its message id, its seq (for errors) and its JSON.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    seq: u64,
    payload: Vec<u8>,
}

/// `<store_id as 32 hex digits>-<seq>`: the same event always gets the same id, events of
/// different stores never do, so JetStream's duplicate window drops a re-publish.
pub fn message_id(store_id: [u8; 16], seq: u64) -> String {
    format!("{}-{}", hex_bytes(&store_id), seq)
}

/// Checks that a URL names a NATS server: `nats://host[:port]` or `tls://host[:port]`.
pub fn check_url(url: &str) -> Result<(), OutboxError> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with(['/', ':']) => Ok(()),
        _ => Err(OutboxError::Usage {
            detail: format!("--nats {url:?} must be a nats:// or tls:// URL with a host"),
        }),
    }
}

/// Checks that a subject is one a message can be published on: dot-separated, non-empty
/// tokens, no wildcards (`*`, `>`), no whitespace.
pub fn check_subject(subject: &str) -> Result<(), OutboxError> {
    let bad_token = |token: &str| {
        token.is_empty()
            || token == "*"
            || token == ">"
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if subject.len() > SUBJECT_BYTES_MAX || subject.split('.').any(bad_token) {
        return Err(OutboxError::Usage {
            detail: format!(
                "--subject {subject:?} must be dot-separated tokens without wildcards or \
                 spaces, at most {SUBJECT_BYTES_MAX} bytes"
            ),
        });
    }
    Ok(())
}

/// A NATS connection, made on first use and remade after a failed attempt, with the runtime
/// that drives it. Keep one across calls of [`sync`] (as `folio sync` does while following) to
/// keep the connection.
pub struct Publisher {
    /// Declared before `runtime`, so dropped first: the client's tasks run on it.
    jetstream: Option<jetstream::Context>,
    runtime: tokio::runtime::Runtime,
    url: String,
    subject: String,
    /// Connecting, and each publish's acknowledgement.
    timeout: Duration,
    /// Whether JetStream has acknowledged any publish of this publisher: after that, a subject
    /// without a stream is a server restarting (or the stream being recreated), not a mistake.
    acked_any: bool,
}

impl Publisher {
    /// A publisher to `options.url` (a `nats://` URL) on `subject`; it does not connect yet.
    pub fn new(options: &SyncOptions, subject: &str) -> Result<Publisher, OutboxError> {
        check_url(&options.url)?;
        check_subject(subject)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| OutboxError::Runtime {
                detail: error.to_string(),
            })?;
        Ok(Publisher {
            jetstream: None,
            runtime,
            url: options.url.clone(),
            subject: subject.to_string(),
            timeout: options.request_timeout,
            acked_any: false,
        })
    }

    /// Publishes `messages[*acked..]`, advancing `acked` past each one JetStream acknowledged,
    /// in order: a retry resumes after them (re-publishing any is harmless, only slower).
    fn attempt(&mut self, messages: &[Message], acked: &mut usize, span: Span) -> Attempt {
        let jetstream = match self.jetstream.take() {
            Some(jetstream) => jetstream,
            None => match self.runtime.block_on(connect(&self.url, self.timeout)) {
                Ok(jetstream) => jetstream,
                Err(detail) => return Attempt::Failed(detail),
            },
        };
        let before = *acked;
        let published = self.runtime.block_on(publish(
            &jetstream,
            &self.subject,
            &messages[*acked..],
            acked,
        ));
        self.acked_any |= *acked > before;
        let Err((index, error)) = published else {
            self.jetstream = Some(jetstream);
            return Attempt::Delivered;
        };
        let seq = messages.get(index).map_or(span.seq_first, |m| m.seq);
        let verdict = match classify(&error) {
            Verdict::Refused(detail) if error.kind() == PublishErrorKind::StreamNotFound => {
                self.confirm_no_stream(&jetstream, detail)
            }
            verdict => verdict,
        };
        match verdict {
            Verdict::Transient => {
                // Dropping the client closes its connection; the next attempt makes a new one
                // rather than wait on one that may have stopped reconnecting.
                drop(jetstream);
                Attempt::Failed(format!("publishing entry {seq}: {error}"))
            }
            Verdict::Refused(detail) => {
                self.jetstream = Some(jetstream);
                Attempt::Rejected(OutboxError::NatsRejected {
                    subject: self.subject.clone(),
                    seq,
                    cursor: span.cursor,
                    detail,
                })
            }
        }
    }
}

impl Publisher {
    /// "No responders" to a publish means no stream takes the subject, or that JetStream is
    /// not serving it for now (a server shutting down or starting, recovering its streams).
    /// A refusal only when nothing was ever acknowledged here and JetStream's API, asked,
    /// answers that no stream takes the subject; otherwise passing, so retried.
    ///
    /// A server without JetStream (started without `-js`) answers no publish either, and
    /// never will: when the server said so as we connected (its INFO) and JetStream's API
    /// has no responders (no other server of a cluster serves it), that is a refusal too,
    /// whatever this publisher saw before (a server restarted without JetStream).
    fn confirm_no_stream(&self, jetstream: &jetstream::Context, detail: String) -> Verdict {
        if self.jetstream_absent(jetstream) {
            return Verdict::Refused(format!(
                "the server at {} does not run JetStream, so no stream takes this subject \
                 (start it with -js and create a stream, docs/sync.md)",
                self.url
            ));
        }
        if self.acked_any {
            return Verdict::Transient;
        }
        let lookup = self
            .runtime
            .block_on(jetstream.stream_by_subject(self.subject.clone()));
        match lookup {
            Err(error) if matches!(error.kind(), GetStreamByNameErrorKind::NotFound) => {
                Verdict::Refused(detail)
            }
            _ => Verdict::Transient,
        }
    }
}

impl Publisher {
    /// Whether the server we are connected to runs no JetStream and none is reachable
    /// through it: its INFO says so, and JetStream's API (`$JS.API.INFO`) has no responders.
    fn jetstream_absent(&self, jetstream: &jetstream::Context) -> bool {
        if jetstream.client().server_info().jetstream {
            return false;
        }
        let account = self.runtime.block_on(jetstream.query_account());
        matches!(
            account.map_err(|error| error.kind()),
            Err(AccountErrorKind::JetStreamUnavailable)
        )
    }
}

async fn connect(url: &str, timeout: Duration) -> Result<jetstream::Context, String> {
    let client = ConnectOptions::new()
        .name(CLIENT_NAME)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .connect(url)
        .await
        .map_err(|error| format!("connecting to {url}: {error}"))?;
    let mut jetstream = jetstream::new(client);
    jetstream.set_timeout(timeout);
    Ok(jetstream)
}

/// Publishes `messages` in order, one at a time: each is sent only once JetStream has
/// acknowledged every earlier one, so that a refused or lost event is never followed in the
/// stream by a later one (a refusal stops with nothing after it sent; a passing failure is
/// retried from that event, `docs/sync.md`, "Order in the stream"). `acked` counts those
/// acknowledged. On failure, the index (into `messages` as the caller sees them, `acked`
/// before the call included) of the event that failed.
async fn publish(
    jetstream: &jetstream::Context,
    subject: &str,
    messages: &[Message],
    acked: &mut usize,
) -> Result<(), (usize, jetstream::context::PublishError)> {
    for message in messages {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
        headers.insert("Content-Type", "application/json");
        let payload = message.payload.clone().into();
        let future = jetstream
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(|error| (*acked, error))?;
        // A duplicate ack (`duplicate: true`) means the stream already holds the event:
        // delivered.
        future.await.map_err(|error| (*acked, error))?;
        *acked += 1;
    }
    Ok(())
}

enum Verdict {
    /// A timeout, a lost connection, JetStream unavailable for now: retry.
    Transient,
    /// Retrying cannot help: stop, with this explanation.
    Refused(String),
}

/// Sorts a failed publish into worth retrying or not (`docs/sync.md`, "NATS JetStream").
fn classify(error: &jetstream::context::PublishError) -> Verdict {
    match error.kind() {
        PublishErrorKind::StreamNotFound => Verdict::Refused(
            "no stream takes this subject (create one with a subject filter and a duplicate \
             window, docs/sync.md)"
                .to_string(),
        ),
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => Verdict::Refused(error.to_string()),
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => Verdict::Transient,
        // `Other` carries a JetStream API error when the server answered with one: its status
        // says whether it is passing (408, 429, 5xx: no quorum, resources, leader election)
        // or final (4xx: a malformed or refused message). Without one, the client failed
        // (its connection closed): transient.
        PublishErrorKind::Other => {
            let api = std::error::Error::source(error)
                .and_then(|source| source.downcast_ref::<jetstream::Error>());
            match api {
                Some(api) if !matches!(api.code(), 408 | 429 | 500..) => {
                    Verdict::Refused(error.to_string())
                }
                _ => Verdict::Transient,
            }
        }
    }
}

/// The messages of a batch's events, as published on every attempt.
fn messages(store_id: [u8; 16], batch: &OutboxBatch) -> Result<Vec<Message>, OutboxError> {
    batch
        .events
        .iter()
        .map(|event| {
            let payload = serde_json::to_vec(event).map_err(|error| OutboxError::Encode {
                detail: error.to_string(),
            })?;
            Ok(Message {
                id: message_id(store_id, event.seq),
                seq: event.seq,
                payload,
            })
        })
        .collect()
}

/// Publishes `options.consumer`'s events to JetStream until it is caught up (`once`) or
/// stopped, through `publisher` (made from the same `options`). Each batch is acked only after
/// JetStream acknowledged all its events, so a crash at any point re-publishes at most the
/// batch in flight, whose duplicates the stream drops within its duplicate window. Failures
/// are retried as [`super::http::sync`] retries them; a refusal stops with `NatsRejected` and
/// the cursor unchanged.
pub fn sync(
    ledger: &Ledger,
    options: &SyncOptions,
    publisher: &mut Publisher,
    progress: &mut dyn FnMut(&SyncProgress),
) -> Result<SyncReport, OutboxError> {
    sync_with(&mut { ledger }, options, publisher, progress)
}

/// [`sync`] through any [`OutboxStore`]: `folio sync --nats` passes one that opens the store
/// for each read and each ack and closes it at once.
pub fn sync_with(
    store: &mut dyn OutboxStore,
    options: &SyncOptions,
    publisher: &mut Publisher,
    progress: &mut dyn FnMut(&SyncProgress),
) -> Result<SyncReport, OutboxError> {
    let store_id = store.store_id();
    drive(store, options, progress, &mut |batch, report, progress| {
        let messages = messages(store_id, batch)?;
        let span = Span::of(batch);
        let mut acked = 0usize;
        retry(options, span, report, progress, &mut || {
            publisher.attempt(&messages, &mut acked, span)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_nats_with_a_host() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("tls://nats.example").is_ok());
        for bad in ["http://x", "nats://", "127.0.0.1:4222", "nats://:4222"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects_are_literal_tokens() {
        assert!(check_subject("folio.events").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b"] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn message_ids_are_store_id_and_seq() {
        let id = message_id([0xab; 16], 42);
        assert_eq!(id, format!("{}-42", "ab".repeat(16)));
    }
}
