//! A store's directory and its two locks (`docs/ledger.md`, "Readers beside a writer"):
//! `<store>/LOCK`, held by the one writer (an exclusive `flock`: a second writer is
//! `STORE_IN_USE`), and `<store>/READERS`, which readers hold shared while they read and which
//! the writer holds exclusive whenever it makes `state.redb` durable (its open, a checkpoint,
//! its close), so that the durable state a reader reads is never rewritten under it. It sits
//! above the log, whose directory marks a store, and below everything that opens one; its
//! failures are its own [`StoreError`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::log::vfs::{LockGuard, Vfs};

/// Name of the lock file inside a store.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Name of the readers' lock file inside a store.
pub const READERS_FILE_NAME: &str = "READERS";

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
    /// The other side of the readers' lock held it for longer than the wait allowed
    /// (`STORE_IN_USE`): readers, for a writer's open; a writer making the state durable, for
    /// a reader's.
    #[error(
        "store {} is busy: {holder} held it for {waited_ms} ms, longer than the wait allowed",
        path.display()
    )]
    Busy {
        path: PathBuf,
        holder: Holder,
        waited_ms: u64,
    },
    /// The lock file could not be opened or locked for another reason, such as its
    /// permissions (`STORAGE`).
    #[error("storage error, nothing was written: cannot lock the store: {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who held the readers' lock too long for [`StoreError::Busy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Readers, for a writer's open.
    Readers,
    /// A writer making its state durable, for a reader's open.
    Writer,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Holder::Readers => "readers",
            Holder::Writer => "a writer",
        })
    }
}

/// Takes the lock of an existing store. The log directory is checked first, so that a
/// directory that is not a store is left as it was (no lock file), ready for `create`.
pub fn lock_store(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn LockGuard>, StoreError> {
    check_store(vfs, dir)?;
    take_lock(vfs, dir)
}

/// Refuses a directory that is not a store (no log directory), before any lock file is made.
pub fn check_store(vfs: &dyn Vfs, dir: &Path) -> Result<(), StoreError> {
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
    Ok(())
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

/// How long one side of the readers' lock waits for the other before giving up with
/// [`StoreError::Busy`]: a writer's open for readers that are reading, a reader for a writer
/// that is making the state durable (milliseconds, unless the disk stalls).
pub const READERS_WAIT_DEFAULT: Duration = Duration::from_secs(60);

/// A reader's hold on the store: `READERS` shared, for as long as it reads. Waits (up to
/// `wait`) while a writer holds it exclusive. `None` when the file neither exists nor can be
/// made (a store on a read-only mount that no writer of this version ever opened: no writer can
/// be writing it).
pub fn pin_for_reading(
    vfs: &dyn Vfs,
    dir: &Path,
    wait: Duration,
) -> Result<Option<Box<dyn LockGuard>>, StoreError> {
    check_store(vfs, dir)?;
    let path = dir.join(READERS_FILE_NAME);
    match waiting(&path, wait, Holder::Writer, || vfs.lock_shared(&path)) {
        Err(StoreError::Lock { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                || crate::log::vfs::is_not_writable(&source) =>
        {
            Ok(None)
        }
        pinned => pinned.map(Some),
    }
}

/// A writer's hold on `READERS`, exclusive, waiting (up to `wait`) for the readers that hold it:
/// taken for the whole of a writer's open, which may rewrite the state file.
pub fn exclude_readers(
    vfs: &dyn Vfs,
    dir: &Path,
    wait: Duration,
) -> Result<Box<dyn LockGuard>, StoreError> {
    let path = dir.join(READERS_FILE_NAME);
    waiting(&path, wait, Holder::Readers, || vfs.lock(&path))
}

/// A writer's hold on `READERS`, exclusive, if no reader holds it now: taken for a checkpoint,
/// which is put off while readers read rather than made to wait for them.
pub fn try_exclude_readers(vfs: &dyn Vfs, dir: &Path) -> Option<Box<dyn LockGuard>> {
    vfs.lock(&dir.join(READERS_FILE_NAME)).ok()
}

/// Tries `lock` until it succeeds, fails other than with `WouldBlock`, or `wait` has passed:
/// polled, with a pause that grows from 1 to 16 ms, since the other side's holds are short
/// except for a reader's.
fn waiting(
    path: &Path,
    wait: Duration,
    holder: Holder,
    mut lock: impl FnMut() -> std::io::Result<Box<dyn LockGuard>>,
) -> Result<Box<dyn LockGuard>, StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match lock() {
            Ok(guard) => return Ok(guard),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(source) => {
                return Err(StoreError::Lock {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let waited = started.elapsed();
        if waited >= wait {
            let dir = path.parent().unwrap_or(path).to_path_buf();
            return Err(StoreError::Busy {
                path: dir,
                holder,
                waited_ms: waited.as_millis() as u64,
            });
        }
        std::thread::sleep(pause.min(wait - waited));
        pause = (pause * 2).min(Duration::from_millis(16));
    }
}
