//! A store's directory and its lock: `<store>/LOCK`, held by one handle at a time (an
//! exclusive `flock`), and taken before anything of the store is read or written by the ledger,
//! replay, verify and the exports (`docs/ledger.md`, "Opening a store"). It sits above the
//! log, whose directory marks a store, and below everything that opens one; its failures are
//! its own [`StoreError`].

use std::path::{Path, PathBuf};

use crate::log::vfs::{LockGuard, Vfs};

/// Name of the lock file inside a store.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Why a store's lock could not be taken. Nothing was written to the directory.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory does not exist or has no log directory: it is not a Folio store
    /// (`NOT_A_STORE`). No lock file was left in it.
    #[error("{path} is not a Folio store: {reason}")]
    NotAStore { path: PathBuf, reason: &'static str },
    /// Another handle or process holds the store's lock (`STORE_IN_USE`).
    #[error("store is in use by another process or handle: {}", path.display())]
    InUse { path: PathBuf },
    /// The lock file could not be opened or locked for another reason, such as its
    /// permissions (`STORAGE`).
    #[error("storage error, nothing was written: cannot lock the store: {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes the lock of an existing store. The log directory is checked first, so that a
/// directory that is not a store is left as it was (no lock file), ready for `create`.
pub fn lock_store(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn LockGuard>, StoreError> {
    if !vfs
        .exists(&dir.join(crate::log::LOG_DIR_NAME))
        .unwrap_or(false)
    {
        let reason = if vfs.exists(dir).unwrap_or(false) {
            "no log directory"
        } else {
            "the directory does not exist"
        };
        return Err(StoreError::NotAStore {
            path: dir.to_path_buf(),
            reason,
        });
    }
    take_lock(vfs, dir)
}

/// Takes the store's lock file. A user who may only read the store locks it too (the lock
/// file opened for reading); an error names the lock file, not just the directory.
pub fn take_lock(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn LockGuard>, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    match vfs.lock(&path) {
        Ok(guard) => Ok(guard),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Err(StoreError::InUse {
            path: dir.to_path_buf(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotAStore {
            path: dir.to_path_buf(),
            reason: "the directory does not exist",
        }),
        Err(source) => Err(StoreError::Lock { path, source }),
    }
}
