//! One scan of the log drives every consumer of entries in order: rebuilding or catching up the
//! state, verification, and export all implement [`Replay`]. [`drive`] reads each entry (crc,
//! seq, hash and chain checked by the log reader), decodes its body once, and hands both on.
//! [`rebuild_state`] and [`replay_into`] run it over a whole store, under the store's lock;
//! a scan and those functions fail with [`ReplayError`].

pub mod apply;

pub use apply::Applier;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::entry::{self, EntryBody};
use crate::log::vfs::Vfs;
use crate::log::{Entry, Log, LogError, LogOptions, LogReader};
use crate::state::{STATE_FILE_NAME, State, StateError};
use crate::store::{StoreError, lock_store, take_lock};

/// Why a scan, or a whole-store function of replay ([`rebuild_state`], [`replay_into`]),
/// stopped on its own account (a sink's failures are the sink's own error): a record that does
/// not read or the log failing, a body that does not decode, a state that refused an entry;
/// and for the whole-store functions, the store's lock and the directories they write.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log failed, or a record of it does not read (crc, hash, chain); also a `seq_to`
    /// that the log does not hold (`SeqOutOfRange`).
    #[error(transparent)]
    Log(#[from] LogError),
    /// An entry's body does not decode (`BadEntry`), or a state refused it or failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store is not one, or is in use (whole-store functions).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An I/O error on the state file being rebuilt (`state.redb.replay`), its rename over
    /// `state.redb`, or the sync of the store's directory (`IO`). The old state is left whole.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `replay_into`'s `out` names no directory (`/`, `..`): `INVALID_INPUT`, a rejection.
    #[error("out {:?} must name a directory", path.display().to_string())]
    OutNotADirectory { path: PathBuf },
    /// `replay_into`'s `out`, or the `<out>.replay-partial` an interrupted replay left, exists
    /// and is not empty (`STORE_EXISTS`). Nothing was written.
    #[error("{path} exists and is not empty")]
    OutExists { path: PathBuf },
    /// Reading, making or renaming `replay_into`'s `out` or its `.replay-partial` failed
    /// (`STORAGE`). `out` holds no part of a store; a `.replay-partial` may be left.
    #[error("storage error, nothing was written: {}: {source}", out.display())]
    OutIo {
        /// The `out` directory asked for.
        out: PathBuf,
        source: std::io::Error,
    },
}

/// A consumer of log entries in seq order, with an error of its own that a failure of the
/// scan converts into ([`ReplayError`]).
pub trait Replay {
    type Error: From<ReplayError>;
    /// Takes the next entry.
    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), Self::Error>;
    /// Called once after the last entry.
    fn finish(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Decodes an entry's body, refusing a kind that the format version of the entry's segment
/// may not hold (F-53): the entry was not written by a ledger of that version.
pub fn decode_body(entry: &Entry) -> Result<EntryBody, ReplayError> {
    Ok(decode_checked(entry)?)
}

/// [`decode_body`], with the state's error (`BadEntry`).
fn decode_checked(entry: &Entry) -> Result<EntryBody, StateError> {
    let bad_entry = |detail: String| StateError::BadEntry {
        seq: entry.seq,
        detail,
    };
    let body: EntryBody =
        entry::decode(&entry.body).map_err(|error| bad_entry(error.to_string()))?;
    let version_min = body.format_version_min();
    if version_min > entry.version {
        return Err(bad_entry(format!(
            "an entry of a kind added in format version {version_min}, in a segment of \
             version {}",
            entry.version
        )));
    }
    Ok(body)
}

/// Feeds entries `seq_from..=seq_to` to `sink`, calling `progress` with each seq; returns how
/// many entries it fed.
pub fn drive<S: Replay + ?Sized>(
    log: &LogReader,
    seq_from: u64,
    seq_to: u64,
    sink: &mut S,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, S::Error> {
    let mut fed = 0;
    if seq_from <= seq_to {
        for entry in log.iter_from(seq_from) {
            let entry = entry.map_err(ReplayError::from)?;
            if entry.seq > seq_to {
                break;
            }
            let body = decode_checked(&entry).map_err(ReplayError::from)?;
            sink.entry(&entry, &body)?;
            progress(entry.seq);
            fed += 1;
        }
    }
    sink.finish()?;
    Ok(fed)
}

/// Rebuilds `<dir>/state.redb` from the log: into a new file that then atomically replaces the
/// old one, so that a crash during the rebuild leaves the old state usable and never a
/// half-built one. The log is opened read-only (a torn tail is left for the next open to cut).
/// Returns the entries applied.
pub fn rebuild_state(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, ReplayError> {
    let (_lock, log) = lock_and_read(&vfs, dir)?;
    let head = log.head().seq;
    let building = dir.join(REBUILD_FILE_NAME);
    let io = |source: std::io::Error| ReplayError::Io {
        path: building.clone(),
        source,
    };
    if vfs.exists(&building).map_err(io)? {
        vfs.remove(&building).map_err(io)?;
    }
    let state = State::create_at(&*vfs, dir, &building)?;
    let mut applier = Applier::new(&state, &*log);
    let applied = drive(&log, 1, head, &mut applier, &mut |seq| progress(seq, head))?;
    drop(state);
    vfs.rename(&building, &dir.join(STATE_FILE_NAME))
        .map_err(io)?;
    vfs.sync_dir(dir).map_err(io)?;
    Ok(applied)
}

/// Takes the store's lock and opens its log read-only (a torn tail is left for the next
/// read-write open to cut): what the whole-store functions read.
fn lock_and_read(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
) -> Result<(Box<dyn crate::log::vfs::LockGuard>, Log), ReplayError> {
    let lock = lock_store(&**vfs, dir)?;
    let options = LogOptions {
        read_only: true,
        ..Default::default()
    };
    Ok((lock, Log::open(vfs.clone(), dir, options)?))
}

/// Name of the state file while `rebuild_state` builds it.
pub const REBUILD_FILE_NAME: &str = "state.redb.replay";

/// Makes a new store in `out` holding the books as they stood at entry `seq_to` (the head when
/// `None`): the log's entries `1..=seq_to` appended anew (the hash chain is the same, since a
/// block hash depends only on seq, previous hash and body) and the state rebuilt to match.
/// `seq_to` must be 1 to the head (`SEQ_OUT_OF_RANGE` otherwise): entry 1 records the store id,
/// and a copy without it is no store. The copy is built in `<out>.replay-partial` and renamed
/// to `out` only once complete, so an interrupted replay never leaves a store at `out` that
/// holds part of the log; a `.replay-partial` left behind is refused (`STORE_EXISTS`) until
/// removed.
pub fn replay_into(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    seq_to: Option<u64>,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, ReplayError> {
    let (_lock, log) = lock_and_read(&vfs, dir)?;
    let head = log.head().seq;
    let seq_to = seq_to.unwrap_or(head);
    if seq_to == 0 || seq_to > head {
        return Err(LogError::SeqOutOfRange { seq: seq_to, head }.into());
    }
    let Some((building, parent)) = partial_dir(out) else {
        let path = out.to_path_buf();
        return Err(ReplayError::OutNotADirectory { path });
    };
    let io = |source: std::io::Error| ReplayError::OutIo {
        out: out.to_path_buf(),
        source,
    };
    for path in [out, &building] {
        if vfs.exists(path).map_err(io)? && !vfs.list(path).map_err(io)?.is_empty() {
            let path = path.to_path_buf();
            return Err(ReplayError::OutExists { path });
        }
    }
    vfs.create_dir_all(&building).map_err(io)?;
    let _out_lock = take_lock(&*vfs, &building)?;
    let copy = Log::create(vfs.clone(), &building, LogOptions::default())?;
    let state = State::create_file(&*vfs, &building)?;
    let mut sink = CopySink {
        log: &copy,
        bodies: Vec::new(),
        applier: Applier::new(&state, &*log),
    };
    let copied = drive(&log, 1, seq_to, &mut sink, &mut |seq| progress(seq, seq_to))?;
    drop(sink);
    let source_head = log.read(seq_to)?.block_hash;
    assert_eq!(
        source_head,
        copy.head().block_hash,
        "a copied chain must hash the same"
    );
    copy.close()?;
    drop(state);
    vfs.rename(&building, out).map_err(io)?;
    vfs.sync_dir(&parent).map_err(io)?;
    Ok(copied)
}

/// Where `replay_into` builds `out`: a sibling `<name>.replay-partial` (the same file system,
/// so the final rename is atomic), and the directory that holds both; `None` for a path that
/// names no directory (`/`, `..`).
fn partial_dir(out: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = out.file_name()?;
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut partial = name.to_os_string();
    partial.push(".replay-partial");
    Some((parent.join(partial), parent))
}

/// Appends each entry's body to a new log (in batches) while applying it to a new state.
struct CopySink<'a> {
    log: &'a Log,
    bodies: Vec<Vec<u8>>,
    applier: Applier<'a>,
}

impl CopySink<'_> {
    fn flush(&mut self) -> Result<(), ReplayError> {
        if !self.bodies.is_empty() {
            self.log.append(&self.bodies)?;
            self.bodies.clear();
        }
        Ok(())
    }
}

impl Replay for CopySink<'_> {
    type Error = ReplayError;

    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ReplayError> {
        self.bodies.push(entry.body.clone());
        if self.bodies.len() >= 1000 {
            self.flush()?;
        }
        self.applier.entry(entry, body)
    }

    fn finish(&mut self) -> Result<(), ReplayError> {
        self.flush()?;
        self.applier.finish()
    }
}
