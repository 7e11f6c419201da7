//! A store's directory and its lock: `<store>/LOCK`, held by one handle at a time (an
//! exclusive `flock`), and taken before anything of the store is read or written by the ledger,
//! replay, verify and the exports (`docs/ledger.md`, "Opening a store"). It sits above the
//! log, whose directory marks a store, and below everything that opens one.

use std::path::Path;

use crate::Error;
use crate::domain::LedgerError;
use crate::log::vfs::{LockGuard, Vfs};

/// Name of the lock file inside a store.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Takes the lock of an existing store. The log directory is checked first, so that a
/// directory that is not a store is left as it was (no lock file), ready for `create`.
pub fn lock_store(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn LockGuard>, Error> {
    if !vfs
        .exists(&dir.join(crate::log::LOG_DIR_NAME))
        .unwrap_or(false)
    {
        let reason = if vfs.exists(dir).unwrap_or(false) {
            "no log directory"
        } else {
            "the directory does not exist"
        };
        return Err(crate::log::LogError::NotAStore {
            path: dir.to_path_buf(),
            reason,
        }
        .into());
    }
    take_lock(vfs, dir)
}

/// Takes the store's lock file. A user who may only read the store locks it too (the lock
/// file opened for reading); an error names the lock file, not just the directory.
pub fn take_lock(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn LockGuard>, Error> {
    let path = dir.join(LOCK_FILE_NAME);
    match vfs.lock(&path) {
        Ok(guard) => Ok(guard),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            Err(LedgerError::StoreInUse {
                path: dir.display().to_string(),
            }
            .into())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let reason = "the directory does not exist";
            Err(crate::log::LogError::NotAStore {
                path: dir.to_path_buf(),
                reason,
            }
            .into())
        }
        Err(error) => Err(LedgerError::Storage {
            detail: format!("cannot lock the store: {}: {error}", path.display()),
        }
        .into()),
    }
}
