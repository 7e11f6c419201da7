//! The state layer's error: redb failures, undecodable rows, and entries whose recorded
//! effects disagree with the state they are applied to.

/// An error of the state layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// redb failed (I/O, a damaged file, a transaction error).
    #[error("state database error: {0}")]
    Database(String),
    /// A row in redb does not decode.
    #[error("state row in table {table} does not decode: {detail}")]
    BadRow { table: &'static str, detail: String },
    /// An entry body in the log does not decode.
    #[error("entry {seq} does not decode: {detail}")]
    BadEntry { seq: u64, detail: String },
    /// An entry's recorded effects disagree with the state it is applied to: the log and the
    /// state have diverged, or the log holds an entry the ledger would never have written.
    #[error("entry {seq} is inconsistent with the state: {detail}")]
    Inconsistent { seq: u64, detail: String },
    /// redb panicked while opening the file (a damaged file).
    #[error("state file could not be opened: {0}")]
    Unreadable(String),
    /// The disk is too full for a write of the state file (a commit, redb's recovery on open,
    /// its creation); an existing file was left as it was.
    #[error("no space left for the state file (state.redb): {source}")]
    NoSpace { source: std::io::Error },
    /// Reading a transaction's entry from the log failed (schema 2 keeps no copy of it).
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StateError {
            fn from(error: $error) -> Self {
                // A full disk is told apart (NO_SPACE), as the log does.
                let detail = error.to_string();
                match redb::Error::from(error) {
                    redb::Error::Io(source) if crate::log::vfs::is_no_space(&source) => {
                        StateError::NoSpace { source }
                    }
                    _ => StateError::Database(detail),
                }
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<StateError> for crate::domain::view::ViewError {
    fn from(error: StateError) -> Self {
        crate::domain::view::ViewError(Box::new(error))
    }
}

/// A view's error back as the state's: every view the state gives out fails with a
/// `StateError`; anything else (a view of another making) is told as a database error.
impl From<crate::domain::view::ViewError> for StateError {
    fn from(error: crate::domain::view::ViewError) -> Self {
        match error.0.downcast::<StateError>() {
            Ok(error) => *error,
            Err(other) => StateError::Database(other.to_string()),
        }
    }
}
