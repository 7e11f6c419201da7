//! `folio::Error`: the one error type of the public API, wrapping each layer's error, with the
//! stable machine-readable codes that the CLI prints (`docs/cli.md`, "Errors").

use crate::domain::LedgerError;
use crate::domain::validate::Refusal;
use crate::log::LogError;
use crate::state::StateError;

/// Any error Folio returns.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Validation's answer in the crate's terms: a broken rule is the ledger's error, a failed read
/// the state's (`ViewError` carries it whole), a disagreement between state and log the
/// state's `Inconsistent`.
impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rule(error) => Error::Ledger(error),
            Refusal::View(error) => Error::State(StateError::from(error)),
            Refusal::Inconsistent { seq, detail } => {
                Error::State(StateError::Inconsistent { seq, detail })
            }
        }
    }
}

impl Error {
    /// A stable, machine-readable code naming the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Ledger(error) => ledger_code(error),
            Error::Log(error) => log_code(error),
            Error::State(error) => match error {
                StateError::Inconsistent { .. } => "STATE_INCONSISTENT",
                StateError::BadEntry { .. } => "BAD_ENTRY",
                StateError::NoSpace { .. } => "NO_SPACE",
                StateError::Log(error) => log_code(error),
                StateError::Database(_) | StateError::BadRow { .. } | StateError::Unreadable(_) => {
                    "STATE"
                }
            },
        }
    }

    /// Whether the error is a rejection of the request (bad input or a business rule), as
    /// opposed to a failure of the store.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::Ledger(
                LedgerError::InvalidInput { .. }
                    | LedgerError::AmountPrecision { .. }
                    | LedgerError::MetadataTooLarge { .. }
                    | LedgerError::EmptyPostings
                    | LedgerError::TooManyPostings { .. }
                    | LedgerError::InsufficientFunds { .. }
                    | LedgerError::Overflow { .. }
                    | LedgerError::IdempotencyConflict { .. }
                    | LedgerError::TransactionNotFound { .. }
                    | LedgerError::AlreadyReverted { .. }
                    | LedgerError::MetadataKeyNotFound { .. }
                    | LedgerError::WorldPolicy
                    | LedgerError::EntryTooLarge { .. }
                    | LedgerError::AckBeyondHead { .. }
                    | LedgerError::AckBackwards { .. }
                    | LedgerError::SkipNotNext { .. }
            ) | Error::Log(
                LogError::BodyTooLarge { .. }
                    | LogError::BatchTooLarge { .. }
                    | LogError::InvalidOption(_)
            )
        )
    }
}

fn ledger_code(error: &LedgerError) -> &'static str {
    match error {
        LedgerError::InvalidInput { .. } => "INVALID_INPUT",
        LedgerError::AmountPrecision { .. } => "AMOUNT_PRECISION",
        LedgerError::MetadataTooLarge { .. } => "METADATA_TOO_LARGE",
        LedgerError::EmptyPostings => "EMPTY_POSTINGS",
        LedgerError::TooManyPostings { .. } => "TOO_MANY_POSTINGS",
        LedgerError::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
        LedgerError::Overflow { .. } => "OVERFLOW",
        LedgerError::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
        LedgerError::TransactionNotFound { .. } => "TRANSACTION_NOT_FOUND",
        LedgerError::AlreadyReverted { .. } => "ALREADY_REVERTED",
        LedgerError::MetadataKeyNotFound { .. } => "METADATA_KEY_NOT_FOUND",
        LedgerError::WorldPolicy => "WORLD_POLICY",
        LedgerError::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN",
        LedgerError::NoSpace { .. } => "NO_SPACE",
        LedgerError::Storage { .. } => "STORAGE",
        LedgerError::EntryTooLarge { .. } => "ENTRY_TOO_LARGE",
        LedgerError::AckBeyondHead { .. } => "SEQ_OUT_OF_RANGE",
        LedgerError::AckBackwards { .. } => "ACK_BACKWARDS",
        LedgerError::SkipNotNext { .. } => "SKIP_NOT_NEXT",
        LedgerError::Closed => "CLOSED",
        LedgerError::Poisoned => "POISONED",
        LedgerError::StateBehind => "STATE_BEHIND",
        LedgerError::StoreInUse { .. } => "STORE_IN_USE",
        LedgerError::StoreExists { .. } => "STORE_EXISTS",
        LedgerError::LogBehindState { .. } => "LOG_BEHIND_STATE",
        LedgerError::StateLogMismatch { .. } => "STATE_LOG_MISMATCH",
        LedgerError::NotAStore => "NOT_A_STORE",
    }
}

/// The code of a log error, wherever it surfaced.
fn log_code(error: &LogError) -> &'static str {
    match error {
        LogError::NotAStore { .. } => "NOT_A_STORE",
        LogError::AlreadyExists { .. } => "STORE_EXISTS",
        LogError::UnsupportedVersion { .. } => "UNSUPPORTED_VERSION",
        LogError::Corrupt { .. } => "LOG_CORRUPT",
        LogError::BodyTooLarge { .. } | LogError::BatchTooLarge { .. } => "ENTRY_TOO_LARGE",
        LogError::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN",
        LogError::Poisoned => "POISONED",
        LogError::NoSpace { .. } => "NO_SPACE",
        LogError::Io { .. } => "IO",
        LogError::SeqOutOfRange { .. } => "SEQ_OUT_OF_RANGE",
        LogError::ReadOnly | LogError::NotWritable { .. } => "READ_ONLY",
        LogError::InvalidOption(_) => "INVALID_INPUT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_large_entry_is_a_rejection_whichever_layer_refuses_it() {
        let from_log = Error::Log(LogError::BodyTooLarge {
            index: 0,
            body_bytes: 2 << 20,
            max: 1 << 20,
        });
        let from_ledger = Error::Ledger(LedgerError::EntryTooLarge {
            bytes: 2 << 20,
            max: 1 << 20,
        });
        for error in [from_log, from_ledger] {
            assert_eq!(error.code(), "ENTRY_TOO_LARGE");
            assert!(error.is_rejection(), "{error}");
        }
        let option = Error::Log(LogError::InvalidOption("segment_bytes"));
        assert_eq!(option.code(), "INVALID_INPUT");
        assert!(option.is_rejection());
    }
}
