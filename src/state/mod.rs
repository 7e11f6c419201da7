//! The materialized state: balances, volumes, references, indexes, metadata, policies and the
//! watermark, in redb (`<store>/state.redb`). It is a cache of the log: it may be stale,
//! missing or damaged, and the ledger rebuilds or catches it up from the log on open. It is
//! written only by [`apply`] (one entry at a time, whole groups per write transaction, watermark
//! included), through the [`hot`] rows for volumes and posting sequences, and read by validation
//! and queries through [`StateReads`]. Every commit goes through [`State::commit`].

pub mod apply;
pub mod backend;
pub mod error;
pub mod history;
pub mod hot;
pub mod tables;
pub mod timeline;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, WriteTransaction};

pub use error::StateError;
pub use tables::{ReadTables, SCHEMA_VERSION, StateReads, Watermark, WriteTables};

use crate::log::vfs::{OpenMode, Vfs, VfsFile, is_no_space, is_not_writable};
use backend::{MemoryOverlay, VfsBackend};

/// Name of the state file inside a store.
pub const STATE_FILE_NAME: &str = "state.redb";
/// Where a state file that would not open is moved before it is rebuilt.
pub const STATE_DAMAGED_NAME: &str = "state.redb.damaged";
/// redb's page cache, for a store's own state.
pub const CACHE_BYTES: usize = 64 << 20;
/// redb's page cache for a state that is built or read once, in key order (verify's replica
/// and its read of the store's state): each page is read about once, so a larger cache buys no
/// time and costs memory. Measured at 1,009,942 entries: verify 16.3 s and 192 MB of peak RSS
/// with 16 MiB, 16.4 s and 333 MB with 64 MiB.
pub const SCAN_CACHE_BYTES: usize = 16 << 20;

/// How the state file came to be open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOpened {
    /// An existing file, opened as it was.
    Existing,
    /// A new file for a new store.
    Created,
    /// A new, empty file replacing one that was missing or would not open; the ledger
    /// rebuilds it from the log.
    Rebuilt { reason: String },
}

/// The volumes table of a read snapshot.
pub type VolumesTable =
    redb::ReadOnlyTable<(&'static str, &'static str, &'static str), &'static [u8]>;

/// The state database of one store.
#[derive(Debug)]
pub struct State {
    /// What readers see (see [`State::snapshot`]); declared first so that its snapshot is
    /// dropped before the database.
    published: Mutex<Published>,
    db: Database,
    /// Shared with the file's backend: set, it keeps redb from writing anything more.
    fenced: Arc<AtomicBool>,
}

/// The snapshot readers read, and the volumes table opened on it.
///
/// A committer that pipelines (`ledger/commit.rs`) commits a group's state before the group's
/// log entries are durable, so what readers see cannot simply be redb's last commit: it is
/// this snapshot, which only [`State::publish`] moves forward once the group is durable, and
/// which a plain [`State::commit`] (nothing held back) moves to the commit it made. Sharing it
/// also saves each read the cost of beginning a transaction (more than a third of a balance
/// read); it is replaced at each commit or publication, so it never pins the pages a writer
/// freed for longer than that.
#[derive(Debug, Default)]
struct Published {
    /// `None` only before the first commit through this handle, or when beginning a read
    /// failed: readers then begin their own (under the lock, so never past a held commit).
    snapshot: Option<Arc<ReadTransaction>>,
    /// The order of the commit the snapshot shows (commits are counted in `order`).
    order: u64,
    /// Commits made through this handle.
    commits: u64,
    /// The volumes table opened on `snapshot`, shared by balance reads.
    volumes: Option<Arc<VolumesTable>>,
}

/// A commit made while its group was not yet durable, and the snapshot that shows it: readers
/// see it once it is given to [`State::publish`].
#[derive(Debug)]
pub struct Held {
    snapshot: Arc<ReadTransaction>,
    order: u64,
}

impl State {
    /// Opens `<store>/state.redb`, creating it when `create` is set, and otherwise replacing a
    /// missing or unreadable file with an empty one (which the caller then rebuilds).
    ///
    /// A store this process may only read (its permissions, a read-only mount) opens too, and
    /// nothing of it is written: the file is read under a [`MemoryOverlay`] that keeps redb's
    /// writes in memory, and a missing or unreadable file is rebuilt in memory instead. A disk
    /// too full for redb's recovery is `NoSpace`, never taken for a damaged file.
    pub fn open(
        vfs: &dyn Vfs,
        store_dir: &Path,
        create: bool,
    ) -> Result<(State, StateOpened), StateError> {
        let path = store_dir.join(STATE_FILE_NAME);
        let io =
            |error: std::io::Error| StateError::Database(format!("{}: {error}", path.display()));
        if !vfs.exists(&path).map_err(io)? {
            return State::open_missing(vfs, store_dir, create);
        }
        let file = match vfs.open(&path, OpenMode::Write) {
            Ok(file) => file,
            Err(error) if is_not_writable(&error) => return State::open_read_only(vfs, &path),
            Err(error) => return Err(io(error)),
        };
        let fenced = Arc::new(AtomicBool::new(false));
        match open_database(file, fenced.clone(), CACHE_BYTES) {
            Ok(db) => {
                let state = State::of(db, fenced);
                if let Some(reason) = state.schema_mismatch()? {
                    drop(state);
                    vfs.remove(&path).map_err(io)?;
                    vfs.sync_dir(store_dir).map_err(io)?;
                    let state = State::create_file(vfs, store_dir)?;
                    return Ok((state, StateOpened::Rebuilt { reason }));
                }
                Ok((state, StateOpened::Existing))
            }
            Err(OpenFailure::NoSpace(source)) => Err(StateError::NoSpace { source }),
            Err(OpenFailure::Io(source)) => Err(io(source)),
            Err(OpenFailure::Unreadable(error)) => {
                let damaged = store_dir.join(STATE_DAMAGED_NAME);
                if vfs.exists(&damaged).map_err(io)? {
                    vfs.remove(&damaged).map_err(io)?;
                }
                vfs.rename(&path, &damaged).map_err(io)?;
                vfs.sync_dir(store_dir).map_err(io)?;
                let state = State::create_file(vfs, store_dir)?;
                let reason =
                    format!("state.redb would not open ({error}); moved to {STATE_DAMAGED_NAME}");
                Ok((state, StateOpened::Rebuilt { reason }))
            }
        }
    }

    /// A store without a state file: a new one, or one rebuilt in memory when this process
    /// may not create the file.
    fn open_missing(
        vfs: &dyn Vfs,
        store_dir: &Path,
        create: bool,
    ) -> Result<(State, StateOpened), StateError> {
        let path = store_dir.join(STATE_FILE_NAME);
        let file = match vfs.open(&path, OpenMode::CreateNew) {
            Ok(file) => file,
            Err(error) if !create && is_not_writable(&error) => {
                let reason = format!(
                    "state.redb is missing and cannot be created ({error}); rebuilt in memory"
                );
                return Ok((State::in_memory()?, StateOpened::Rebuilt { reason }));
            }
            Err(error) => {
                return Err(StateError::Database(format!("{}: {error}", path.display())));
            }
        };
        let state = State::init_file(vfs, store_dir, &path, file, CACHE_BYTES)?;
        let opened = if create {
            StateOpened::Created
        } else {
            StateOpened::Rebuilt {
                reason: "state.redb was missing".to_string(),
            }
        };
        Ok((state, opened))
    }

    /// Opens `<store>/state.redb` for a reader beside a writer: read under a memory overlay
    /// (nothing of the file is ever written), or, when it is missing or does not open, an empty
    /// state in memory that the caller rebuilds from the log.
    pub fn open_for_reader(
        vfs: &dyn Vfs,
        store_dir: &Path,
    ) -> Result<(State, StateOpened), StateError> {
        let path = store_dir.join(STATE_FILE_NAME);
        let exists = vfs
            .exists(&path)
            .map_err(|error| StateError::Database(format!("{}: {error}", path.display())))?;
        if !exists {
            let reason = "state.redb is missing; rebuilt in memory".to_string();
            return Ok((State::in_memory()?, StateOpened::Rebuilt { reason }));
        }
        State::open_read_only(vfs, &path)
    }

    /// Opens a state file this process may only read: under a memory overlay, or, when it
    /// does not open, as an empty state in memory that the caller rebuilds from the log.
    pub fn open_read_only(vfs: &dyn Vfs, path: &Path) -> Result<(State, StateOpened), StateError> {
        State::open_read_only_with(vfs, path, CACHE_BYTES)
    }

    /// [`State::open_read_only`] with a page cache of `cache_bytes`.
    pub fn open_read_only_with(
        vfs: &dyn Vfs,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<(State, StateOpened), StateError> {
        let io =
            |error: std::io::Error| StateError::Database(format!("{}: {error}", path.display()));
        let file = vfs.open(path, OpenMode::Read).map_err(io)?;
        let overlay = MemoryOverlay::new(file).map_err(io)?;
        let fenced = Arc::new(AtomicBool::new(false));
        match open_database(Arc::new(overlay), fenced.clone(), cache_bytes) {
            Ok(db) => {
                let state = State::of(db, fenced);
                if let Some(reason) = state.schema_mismatch()? {
                    let reason = format!("{reason} (in memory: this open only reads the store)");
                    return Ok((State::in_memory()?, StateOpened::Rebuilt { reason }));
                }
                Ok((state, StateOpened::Existing))
            }
            Err(OpenFailure::NoSpace(source)) | Err(OpenFailure::Io(source)) => Err(io(source)),
            Err(OpenFailure::Unreadable(error)) => {
                let reason = format!(
                    "state.redb would not open ({error}) and the store is read-only to this \
                     process; rebuilt in memory"
                );
                Ok((State::in_memory()?, StateOpened::Rebuilt { reason }))
            }
        }
    }

    /// Why the state cannot be used as it is, if it cannot: its schema is not
    /// [`SCHEMA_VERSION`] (an older build made it), or it has none (an older build, or a crash
    /// right after the file was made, before the first commit created the tables and stamped
    /// the schema). Such a state is rebuilt from the log: it is a cache of it.
    fn schema_mismatch(&self) -> Result<Option<String>, StateError> {
        let read = self.begin_read()?;
        let found = match read.open_table(tables::META) {
            Ok(meta) => meta
                .get(tables::META_SCHEMA)?
                .map(|row| row.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let found = found.map(|bytes| match <[u8; 4]>::try_from(bytes.as_slice()) {
            Ok(version) => u32::from_le_bytes(version).to_string(),
            Err(_) => format!("{bytes:02x?}"),
        });
        Ok(match found {
            Some(version) if version == SCHEMA_VERSION.to_string() => None,
            Some(version) => Some(format!(
                "state.redb has schema {version}; this build keeps schema {SCHEMA_VERSION}"
            )),
            None => Some(format!(
                "state.redb has no schema (made before schema 2, or never committed); this \
                 build keeps schema {SCHEMA_VERSION}"
            )),
        })
    }

    /// Creates an empty state file with every table.
    pub fn create_file(vfs: &dyn Vfs, store_dir: &Path) -> Result<State, StateError> {
        let path = store_dir.join(STATE_FILE_NAME);
        State::create_at(vfs, store_dir, &path)
    }

    /// Creates an empty state database at `path` (a file in `store_dir`).
    pub fn create_at(vfs: &dyn Vfs, store_dir: &Path, path: &Path) -> Result<State, StateError> {
        State::create_at_with(vfs, store_dir, path, CACHE_BYTES)
    }

    /// [`State::create_at`] with a page cache of `cache_bytes`.
    fn create_at_with(
        vfs: &dyn Vfs,
        store_dir: &Path,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<State, StateError> {
        let io =
            |error: std::io::Error| StateError::Database(format!("{}: {error}", path.display()));
        let file = vfs.open(path, OpenMode::CreateNew).map_err(io)?;
        State::init_file(vfs, store_dir, path, file, cache_bytes)
    }

    /// Makes a newly created, empty file at `path` a state database with every table.
    fn init_file(
        vfs: &dyn Vfs,
        store_dir: &Path,
        path: &Path,
        file: Arc<dyn VfsFile>,
        cache_bytes: usize,
    ) -> Result<State, StateError> {
        let io =
            |error: std::io::Error| StateError::Database(format!("{}: {error}", path.display()));
        vfs.sync_dir(store_dir).map_err(io)?;
        let fenced = Arc::new(AtomicBool::new(false));
        let db =
            open_database(file, fenced.clone(), cache_bytes).map_err(|failure| match failure {
                OpenFailure::NoSpace(source) => StateError::NoSpace { source },
                OpenFailure::Io(source) => io(source),
                OpenFailure::Unreadable(detail) => StateError::Unreadable(detail),
            })?;
        let state = State::of(db, fenced);
        let txn = state.begin_write(true)?;
        WriteTables::open(&txn)?.stamp_schema()?;
        state.commit(txn)?;
        Ok(state)
    }

    /// An empty state on a file of its own in the system's temporary directory, removed from
    /// the directory as soon as it is open (the file lives as long as the state, and nothing
    /// is left behind by a crash): for a replay that is compared, not kept, in memory bounded
    /// by redb's cache ([`SCAN_CACHE_BYTES`]) rather than by the size of the state. On a system that cannot remove an
    /// open file (not Unix), the file stays, named `folio-scratch-*.redb`, for the temporary
    /// directory's cleaner.
    pub fn scratch() -> Result<State, StateError> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir();
        let name = format!(
            "folio-scratch-{}-{}.redb",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        );
        let path = dir.join(name);
        let vfs = crate::log::vfs::RealFs;
        let state = State::create_at_with(&vfs, &dir, &path, SCAN_CACHE_BYTES)?;
        // Unlinked at once: the open file stays until the state closes it.
        let _ = std::fs::remove_file(&path);
        Ok(state)
    }

    /// An empty state in memory (for replays that are compared, not kept).
    pub fn in_memory() -> Result<State, StateError> {
        let db = redb::Builder::new().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let state = State::of(db, Arc::new(AtomicBool::new(false)));
        let txn = state.begin_write(false)?;
        WriteTables::open(&txn)?.stamp_schema()?;
        state.commit(txn)?;
        Ok(state)
    }

    /// Begins a write transaction: durable (a checkpoint, with quick repair recorded so that
    /// reopening after a crash does not walk the file) or not (the log is the commit point).
    pub fn begin_write(&self, durable: bool) -> Result<WriteTransaction, StateError> {
        let mut txn = self.db.begin_write()?;
        if durable {
            txn.set_durability(Durability::Immediate)?;
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None)?;
        }
        Ok(txn)
    }

    /// Begins a read transaction of redb's last commit, held or not (for the state's own
    /// checks at open; readers read [`State::snapshot`]).
    fn begin_read(&self) -> Result<ReadTransaction, StateError> {
        Ok(self.db.begin_read()?)
    }

    /// Opens every table of the published snapshot for reading.
    pub fn read_tables(&self) -> Result<ReadTables, StateError> {
        ReadTables::open(&*self.snapshot()?)
    }

    /// Makes everything committed so far durable.
    pub fn checkpoint(&self) -> Result<(), StateError> {
        self.commit(self.begin_write(true)?)
    }

    fn of(db: Database, fenced: Arc<AtomicBool>) -> State {
        State {
            db,
            published: Mutex::new(Published::default()),
            fenced,
        }
    }

    fn lock_published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits a write transaction of this state, and shows it to readers. Every commit made
    /// while no [`Held`] commit waits for publication goes through here.
    pub fn commit(&self, txn: WriteTransaction) -> Result<(), StateError> {
        let committed = txn.commit();
        let mut published = self.lock_published();
        published.commits += 1;
        let order = published.commits;
        // Even a failed commit may have changed what a new read sees: never keep showing an
        // older snapshot as if it were the last.
        let snapshot = self.db.begin_read().ok().map(Arc::new);
        published.show(snapshot, order);
        Ok(committed?)
    }

    /// Commits a write transaction whose group is not yet durable in the log: readers keep
    /// seeing what they saw until [`State::publish`] is given the returned [`Held`]. The
    /// caller commits nothing else until this returns (it holds the only write transaction).
    pub fn commit_held(&self, txn: WriteTransaction) -> Result<Held, StateError> {
        {
            let mut published = self.lock_published();
            if published.snapshot.is_none() {
                // Pin what readers see now, before the commit changes the latest.
                let order = published.commits;
                let snapshot = Some(Arc::new(self.db.begin_read()?));
                published.show(snapshot, order);
            }
        }
        txn.commit()?;
        // Only the caller commits, so this snapshot shows exactly its commit.
        let snapshot = Arc::new(self.db.begin_read()?);
        let mut published = self.lock_published();
        published.commits += 1;
        Ok(Held {
            snapshot,
            order: published.commits,
        })
    }

    /// Shows a held commit to readers, unless a later one is shown already.
    pub fn publish(&self, held: Held) {
        let mut published = self.lock_published();
        if held.order > published.order {
            published.show(Some(held.snapshot), held.order);
        }
    }

    /// Keeps redb from writing anything more to the file, its close included: the state holds
    /// commits whose log entries may never be durable, and the file must keep only what its
    /// last checkpoint made durable (the log past it is applied again on open).
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// The snapshot readers read: the last published commit.
    pub fn snapshot(&self) -> Result<Arc<ReadTransaction>, StateError> {
        let published = self.lock_published();
        match &published.snapshot {
            Some(snapshot) => Ok(snapshot.clone()),
            None => Ok(Arc::new(self.db.begin_read()?)),
        }
    }

    /// The volumes table of the published snapshot (shared until it changes).
    pub fn volumes_snapshot(&self) -> Result<Arc<VolumesTable>, StateError> {
        let mut published = self.lock_published();
        if let Some(table) = &published.volumes {
            return Ok(table.clone());
        }
        let table = match &published.snapshot {
            Some(snapshot) => Arc::new(snapshot.open_table(tables::VOLUMES)?),
            None => return Ok(Arc::new(self.db.begin_read()?.open_table(tables::VOLUMES)?)),
        };
        published.volumes = Some(table.clone());
        Ok(table)
    }
}

impl Published {
    fn show(&mut self, snapshot: Option<Arc<ReadTransaction>>, order: u64) {
        self.snapshot = snapshot;
        self.order = order;
        self.volumes = None;
    }
}

/// Why redb would not open a file.
enum OpenFailure {
    /// The disk is full: the file may be fine (redb's recovery needed space).
    NoSpace(std::io::Error),
    /// Any other I/O error of the file (not a sign of damage), seen on a read-only open.
    Io(std::io::Error),
    /// redb refused the file or panicked on it: damaged (or an I/O error it cannot tell).
    Unreadable(String),
}

/// Opens (or initializes) a redb database on a file, turning a panic inside redb (which a
/// damaged file can cause) into an error.
fn open_database(
    file: Arc<dyn VfsFile>,
    fenced: Arc<AtomicBool>,
    cache_bytes: usize,
) -> Result<Database, OpenFailure> {
    let opened = catch_unwind(AssertUnwindSafe(|| {
        redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create_with_backend(VfsBackend::new(file, fenced))
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(error))))
            if is_no_space(&error) =>
        {
            Err(OpenFailure::NoSpace(error))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(error))))
            if is_not_writable(&error) =>
        {
            Err(OpenFailure::Io(error))
        }
        Ok(Err(error)) => Err(OpenFailure::Unreadable(error.to_string())),
        Err(panic) => Err(OpenFailure::Unreadable(format!(
            "redb panicked: {}",
            panic_text(&*panic)
        ))),
    }
}

/// The message a caught panic carried, if it was text.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entry::Dec;
    use rust_decimal::Decimal;
    use tables::VolumesRow;

    /// A write transaction that sets `account`'s USD input volume.
    fn volumes_txn(state: &State, account: &str, input: i64) -> WriteTransaction {
        let txn = state.begin_write(false).unwrap();
        {
            let mut tables = WriteTables::open(&txn).unwrap();
            let row = VolumesRow {
                input: Dec(Decimal::from(input)),
                output: Dec(Decimal::ZERO),
            };
            let bytes = tables::encode_row("volumes", &row).unwrap();
            tables
                .volumes
                .insert(("main", account, "USD"), &bytes[..])
                .unwrap();
        }
        txn
    }

    fn write_volumes(state: &State, account: &str, input: i64) {
        state.commit(volumes_txn(state, account, input)).unwrap();
    }

    fn input_of(table: &VolumesTable, account: &str) -> Option<Vec<u8>> {
        table
            .get(("main", account, "USD"))
            .unwrap()
            .map(|row| row.value().to_vec())
    }

    fn held_commit(state: &State, account: &str, input: i64) -> Held {
        state
            .commit_held(volumes_txn(state, account, input))
            .unwrap()
    }

    #[test]
    fn a_scratch_state_works_and_leaves_no_file_in_the_temporary_directory() {
        let prefix = format!("folio-scratch-{}-", std::process::id());
        let scratch_files = || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter(|entry| {
                    let name = entry.as_ref().unwrap().file_name();
                    name.to_string_lossy().starts_with(&prefix)
                })
                .count()
        };
        let state = State::scratch().unwrap();
        write_volumes(&state, "a", 7);
        assert!(input_of(&state.volumes_snapshot().unwrap(), "a").is_some());
        assert_eq!(
            scratch_files(),
            0,
            "the scratch file is unlinked while open"
        );
    }

    #[test]
    fn reads_share_a_snapshot_until_a_commit_and_see_the_commit_after_it() {
        let state = State::in_memory().unwrap();
        write_volumes(&state, "a", 1);
        let first = state.volumes_snapshot().unwrap();
        assert!(Arc::ptr_eq(&first, &state.volumes_snapshot().unwrap()));
        assert!(input_of(&first, "b").is_none());
        write_volumes(&state, "b", 2);
        let second = state.volumes_snapshot().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(input_of(&second, "b").is_some());
    }

    #[test]
    fn a_held_commit_is_seen_only_once_published_and_never_replaced_by_an_older_one() {
        let state = State::in_memory().unwrap();
        write_volumes(&state, "a", 1);
        let first = held_commit(&state, "b", 2);
        let second = held_commit(&state, "c", 3);
        let before = state.volumes_snapshot().unwrap();
        assert!(input_of(&before, "a").is_some());
        assert!(
            input_of(&before, "b").is_none(),
            "a held commit is not read"
        );
        assert!(input_of(&state.read_tables().unwrap().volumes, "c").is_none());
        state.publish(second);
        state.publish(first);
        let after = state.volumes_snapshot().unwrap();
        assert!(input_of(&after, "b").is_some());
        assert!(
            input_of(&after, "c").is_some(),
            "the older publication came too late"
        );
    }
}
