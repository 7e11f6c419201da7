//! `ReportError`: why a report (statement, trial balance, journal) could not be made or
//! written, with the stable codes the CLI prints (`docs/cli.md`, "Errors"). Every report is
//! checked against its own arithmetic and against the state before it is handed out; a report
//! that fails those checks is an error, never a wrong page.

use std::io;
use std::path::PathBuf;

use crate::Error;

/// Any error of the report layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be opened or read (boxed: a crate error is large, and every report
    /// function returns this type).
    #[error(transparent)]
    Store(Box<Error>),
    /// A flag or argument the report cannot use (a bad time, `from` after `to`).
    #[error("{field} {value:?} {reason}")]
    InvalidInput {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The statement's account has never been touched by a posting in the ledger.
    #[error("account {account} has no postings in ledger {ledger}")]
    AccountNotFound { ledger: String, account: String },
    /// A sum of amounts past the largest decimal.
    #[error("{what} overflows: the sum of {asset} amounts is past the largest decimal")]
    Overflow { what: &'static str, asset: String },
    /// The report's own checks failed: opening plus movements is not the closing balance,
    /// the totals of a whole ledger are not zero, or the log's postings disagree with the
    /// state's balances. A bug or a damaged store, never a report to trust.
    #[error("report inconsistent: {detail}")]
    Inconsistent { detail: String },
    /// A report longer than its bound (`docs/reports.md`, "Limits").
    #[error("the {what} has more than {max} rows; narrow it (a shorter period, one asset)")]
    TooLarge { what: &'static str, max: usize },
    /// Writing the report failed (a closed pipe, a full disk, a path that cannot be made).
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The spreadsheet writer refused the workbook.
    #[error("writing the xlsx workbook {}: {detail}", path.display())]
    Xlsx { path: PathBuf, detail: String },
}

impl From<Error> for ReportError {
    fn from(error: Error) -> Self {
        ReportError::Store(Box::new(error))
    }
}

impl ReportError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::Store(error) => error.code(),
            ReportError::InvalidInput { .. } => "INVALID_INPUT",
            ReportError::AccountNotFound { .. } => "ACCOUNT_NOT_FOUND",
            ReportError::Overflow { .. } => "OVERFLOW",
            ReportError::Inconsistent { .. } => "REPORT_INCONSISTENT",
            ReportError::TooLarge { .. } => "REPORT_TOO_LARGE",
            ReportError::Write { .. } | ReportError::Xlsx { .. } => "IO",
        }
    }

    /// Whether the report ran and found a failure (exit 1), as opposed to one that could
    /// not run (exit 2).
    pub fn is_rejection(&self) -> bool {
        match self {
            ReportError::Store(error) => error.is_rejection(),
            ReportError::InvalidInput { .. }
            | ReportError::AccountNotFound { .. }
            | ReportError::Overflow { .. }
            | ReportError::Inconsistent { .. }
            | ReportError::TooLarge { .. } => true,
            ReportError::Write { .. } | ReportError::Xlsx { .. } => false,
        }
    }

    /// Whether the reader of the output went away (`folio export --format journal | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ReportError::Write { source, .. }
            if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<crate::replay::ReplayError> for ReportError {
    fn from(error: crate::replay::ReplayError) -> Self {
        ReportError::Store(Box::new(error.into()))
    }
}
