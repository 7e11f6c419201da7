//! The outbox layer's error: the store's, an entry that cannot become an event, and what an
//! HTTP receiver or a NATS JetStream server did (`docs/sync.md`, "Errors"), each with a stable
//! code for the CLI.

use crate::Error;
use crate::export::ExportError;

/// An error of the outbox or of `folio sync`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The store failed or refused (a bad consumer name, an ack out of range, ...).
    #[error(transparent)]
    Store(#[from] Error),
    /// An entry that has no event form (`NOT_EXPORTABLE`): the consumer cannot pass it.
    #[error(transparent)]
    Export(ExportError),
    /// A bad argument: a batch bound, a URL.
    #[error("{detail}")]
    Usage { detail: String },
    /// Serializing a request body failed (a bug, reported rather than hidden).
    #[error("encoding events as JSON failed: {detail}")]
    Encode { detail: String },
    /// The receiver refused a batch with a 4xx status: sync stops, the cursor stays where it
    /// was, so nothing is skipped.
    #[error(
        "the receiver rejected the batch of entries {seq_first}..={seq_last} with HTTP {status}: \
         {detail}; the cursor stays at {cursor}"
    )]
    Rejected {
        status: u16,
        seq_first: u64,
        seq_last: u64,
        cursor: u64,
        /// The start of the response body.
        detail: String,
    },
    /// JetStream refused an event for good (`NATS_REJECTED`): no stream takes the subject, the
    /// message is larger than the server allows, or a JetStream API error that retrying cannot
    /// mend. Sync stops; the cursor stays at the last batch JetStream acknowledged in full.
    #[error(
        "JetStream rejected the event of entry {seq} on subject {subject:?}: {detail}; the \
         cursor stays at {cursor}"
    )]
    NatsRejected {
        subject: String,
        seq: u64,
        cursor: u64,
        detail: String,
    },
    /// The async runtime that drives the NATS client could not start (an OS resource limit).
    #[error("starting the runtime for the NATS client failed: {detail}")]
    Runtime { detail: String },
    /// The receiver could not be reached, or kept failing, for as many attempts as allowed.
    #[error(
        "the receiver failed {attempts} attempts to deliver entries {seq_first}..={seq_last}, \
         the last with: {detail}; the cursor stays at {cursor}"
    )]
    Unavailable {
        attempts: u32,
        seq_first: u64,
        seq_last: u64,
        cursor: u64,
        detail: String,
    },
}

impl From<ExportError> for OutboxError {
    fn from(error: ExportError) -> Self {
        match error {
            ExportError::Store(error) => OutboxError::Store(error),
            other => OutboxError::Export(other),
        }
    }
}

impl OutboxError {
    /// A stable, machine-readable code (`docs/cli.md`, "Errors").
    pub fn code(&self) -> &'static str {
        match self {
            OutboxError::Store(error) => error.code(),
            OutboxError::Export(error) => error.code(),
            OutboxError::Usage { .. } => "USAGE",
            OutboxError::Encode { .. } | OutboxError::Runtime { .. } => "IO",
            OutboxError::Rejected { .. } => "SYNC_REJECTED",
            OutboxError::Unavailable { .. } => "SYNC_UNAVAILABLE",
            OutboxError::NatsRejected { .. } => "NATS_REJECTED",
        }
    }

    /// Whether the operation ran and was refused (exit 1), as opposed to a failure to run
    /// (exit 2): a receiver's 4xx is a refusal; an unreachable receiver is not.
    pub fn is_rejection(&self) -> bool {
        match self {
            OutboxError::Store(error) => error.is_rejection(),
            OutboxError::Export(error) => error.is_rejection(),
            OutboxError::Rejected { .. } | OutboxError::NatsRejected { .. } => true,
            OutboxError::Usage { .. }
            | OutboxError::Encode { .. }
            | OutboxError::Runtime { .. }
            | OutboxError::Unavailable { .. } => false,
        }
    }
}
