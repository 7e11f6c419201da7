//! The ledger: the domain (postings, balances, overdrafts, reverts, metadata, idempotency) over
//! the log and the state, and [`Ledger`], the handle an application links. Every change is a
//! log entry first; the state only ever holds what the log implies (`docs/ledger.md`).
//!
//! `ledger/` never opens a file itself: it goes through the log and the state.

/// The domain's modules, where they were before the domain was a layer of its own: an
/// application's paths (`folio::ledger::model::Timestamp`) keep working.
pub use crate::domain::{entry, error, model, request};

mod commit;
mod read;
mod syncer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::domain::LedgerError;
pub use read::{AccountView, LedgerStats};

use crate::Error;
use crate::domain::validate::Op;
use crate::log::vfs::{LockGuard, RealFs, Vfs};
use crate::log::{Log, LogOptions, LogReader, RecoveryReport};
use crate::replay;
use crate::replay::Applier;
use crate::state::{State, StateOpened, StateReads};
use crate::store::{lock_store, take_lock};
use commit::Committer;
use entry::{EntryBody, StoreCreated};
use model::{Metadata, Overdraft, Timestamp};
use request::{Committed, PostRequest, Receipt, RevertRequest};

pub use crate::store::LOCK_FILE_NAME;

/// A source of the current time, in microseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How to open a store.
#[derive(Clone)]
pub struct LedgerOptions {
    /// Log segment size (the roll threshold).
    pub segment_bytes: u64,
    /// Make the state durable (a redb checkpoint) after this many committed groups...
    pub checkpoint_groups: u32,
    /// ...or after this much time, whichever comes first; and always on close.
    pub checkpoint_interval: Duration,
    /// Most operations committed in one group (one fsync).
    pub group_ops_max: usize,
    /// The clock for `inserted_at` and default timestamps.
    pub clock: Clock,
    /// How long an open waits on the other side of the readers' lock (`docs/ledger.md`,
    /// "Readers beside a writer") before failing with `STORE_IN_USE`: a writer's open for
    /// readers that are reading, a reader's open for a writer making its state durable.
    pub readers_wait: Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            segment_bytes: crate::log::format::SEGMENT_BYTES_DEFAULT,
            checkpoint_groups: 256,
            checkpoint_interval: Duration::from_secs(1),
            group_ops_max: 4096,
            clock: Arc::new(|| Timestamp::now().0),
            readers_wait: crate::store::READERS_WAIT_DEFAULT,
        }
    }
}

impl std::fmt::Debug for LedgerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerOptions")
            .field("segment_bytes", &self.segment_bytes)
            .field("checkpoint_groups", &self.checkpoint_groups)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("group_ops_max", &self.group_ops_max)
            .field("readers_wait", &self.readers_wait)
            .finish_non_exhaustive()
    }
}

/// What opening a store found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Torn writes the log cut.
    pub log_recovery: RecoveryReport,
    /// How the state file was found.
    pub state: StateOpened,
    /// Entries applied past the state's watermark before the ledger served anything.
    pub entries_caught_up: u64,
}

/// A handle on an open store. Cheap to clone and share between threads (`Send + Sync`);
/// concurrent writes are committed in groups (one log append, one fsync, one state transaction
/// per group), and reads never wait for writers.
///
/// ```
/// use folio::{Ledger, PostRequest, Posting};
/// let dir = tempfile::tempdir()?;
/// let ledger = Ledger::create(dir.path().join("store"))?;
/// let sale = PostRequest::new("main", vec![Posting::new("world", "till:1", "12.50", "USD/2")?])
///     .with_reference("sale-1");
/// let receipt = ledger.post(sale.clone())?;
/// assert_eq!(ledger.balance("main", "till:1")?["USD/2"].to_string(), "12.5");
/// // The same request again is not posted twice: the original receipt comes back.
/// let again = ledger.post(sale)?;
/// assert!(again.replayed && again.id == receipt.id);
/// ledger.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    /// The log's writer thread; declared first, so that it has stopped (and let go of the
    /// log) before anything else of the ledger is dropped.
    syncer: syncer::Syncer,
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    log: Arc<Log>,
    state: State,
    /// Opened with [`Ledger::open_reader`]: every write is refused, nothing is written.
    reader: bool,
    options: LedgerOptions,
    store_id: [u8; 16],
    open_report: OpenReport,
    /// Writes are refused once a write's outcome is unknown, until the store is reopened.
    poisoned: AtomicBool,
    closed: AtomicBool,
    /// A state commit failed and catching the state up from the log failed too: the state
    /// lacks acknowledged entries, so reads are refused until a reopen.
    state_behind: AtomicBool,
    committer: Mutex<Committer>,
    queue: Mutex<commit::Queue>,
    /// `LOCK` for a writer; `READERS`, shared, for a reader (`None` when the store has no
    /// readers' lock file and this process may not make one).
    _lock: Option<Box<dyn LockGuard>>,
}

impl Drop for Inner {
    /// redb's own close writes the state file again (its header, its allocator state), and a
    /// reader may be reading it by now: nothing more is written to it. The log past the last
    /// checkpoint is applied again by the next open.
    fn drop(&mut self) {
        if !self.reader {
            self.state.fence();
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Creates a new store in `dir` (which must not exist, or be empty) on the real disk.
    pub fn create(dir: impl AsRef<Path>) -> Result<Ledger, Error> {
        Ledger::create_with(Arc::new(RealFs), dir.as_ref(), LedgerOptions::default())
    }

    /// Opens the store in `dir` on the real disk.
    pub fn open(dir: impl AsRef<Path>) -> Result<Ledger, Error> {
        Ledger::open_with(Arc::new(RealFs), dir.as_ref(), LedgerOptions::default())
    }

    /// Creates a new store on a given file system. Options that cannot work and an empty or
    /// non-directory path are refused (`InvalidInput`) before anything is written.
    pub fn create_with(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<Ledger, Error> {
        options.check()?;
        check_dir(dir)?;
        let io = |error: std::io::Error| storage_or_not_a_directory(dir, error);
        if vfs.exists(dir).map_err(io)? {
            // A lone lock file is what a create or open that stopped early leaves behind.
            let entries = vfs.list(dir).map_err(io)?;
            if entries.iter().any(|name| name != LOCK_FILE_NAME) {
                return Err(LedgerError::StoreExists {
                    path: dir.display().to_string(),
                }
                .into());
            }
        } else {
            vfs.create_dir_all(dir).map_err(io)?;
        }
        let lock = take_lock(&*vfs, dir)?;
        let readers_out = crate::store::exclude_readers(&*vfs, dir, options.readers_wait)?;
        Log::create(vfs.clone(), dir, log_options(&options, 0))?;
        let (state, _) = State::open(&*vfs, dir, true)?;
        drop(state);
        drop(readers_out);
        // The lock is handed on, never released and retaken: a child process forked by
        // another thread holds a copy of the descriptor until it execs, and a retake in that
        // window would fail with STORE_IN_USE.
        Ledger::open_locked(vfs, dir, options, lock)
    }

    /// Opens a store on a given file system: validates the log (cutting a provably torn
    /// tail), checks the state's watermark against it, rebuilds a missing or unreadable state,
    /// and applies every entry past the watermark before returning.
    pub fn open_with(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<Ledger, Error> {
        options.check()?;
        check_dir(dir)?;
        let lock = lock_store(&*vfs, dir)?;
        Ledger::open_locked(vfs, dir, options, lock)
    }

    /// `open_with` once the store's lock is held: readers are waited for and kept out while
    /// the open may rewrite the state file (a rebuild, redb's recovery, the catch-up).
    fn open_locked(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: LedgerOptions,
        lock: Box<dyn LockGuard>,
    ) -> Result<Ledger, Error> {
        let readers_out = crate::store::exclude_readers(&*vfs, dir, options.readers_wait)?;
        let (state, state_opened) = State::open(&*vfs, dir, false)?;
        let watermark = state.read_tables()?.watermark()?;
        let log = Log::open(vfs.clone(), dir, log_options(&options, watermark.seq))?;
        check_log_against_state(&log, watermark)?;
        if log.head().seq == 0 {
            // A create that stopped before its first entry: finish it.
            let created = StoreCreated {
                store_id: new_store_id(),
                created_at: Timestamp((options.clock)()).check("clock")?.0,
            };
            let body = entry::encode(&EntryBody::StoreCreated(created)).map_err(|error| {
                LedgerError::Storage {
                    detail: error.to_string(),
                }
            })?;
            log.append(&[body])?;
        }
        let opened = Opened {
            log,
            state,
            state_opened,
            watermark,
        };
        let ledger = Ledger::serve(vfs, dir, options, opened, Some(lock), false)?;
        drop(readers_out);
        Ok(ledger)
    }

    /// Opens the store in `dir` on the real disk for reading, beside a writer that may hold it
    /// in another process or this one (`docs/ledger.md`, "Readers beside a writer"). The handle
    /// sees a consistent prefix of the books: the log up to the durable head the writer had
    /// published when it opened, and the state equal to that prefix (the state's last
    /// checkpoint, with the entries after it applied in memory). It never writes the store:
    /// writes fail with `OpenForReading` (`READ_ONLY`), a torn tail is neither cut nor
    /// applied, and a state that would need rebuilding is rebuilt in memory.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = dir.path().join("store");
    /// let writer = folio::Ledger::create(&store)?;
    /// let reader = folio::Ledger::open_reader(&store)?;
    /// assert_eq!(reader.head(), writer.head());
    /// // A second writer is still refused.
    /// assert_eq!(folio::Ledger::open(&store).unwrap_err().code(), "STORE_IN_USE");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_reader(dir: impl AsRef<Path>) -> Result<Ledger, Error> {
        Ledger::open_reader_with(Arc::new(RealFs), dir.as_ref(), LedgerOptions::default())
    }

    /// [`Ledger::open_reader`] on a given file system.
    pub fn open_reader_with(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<Ledger, Error> {
        options.check()?;
        check_dir(dir)?;
        let pin = crate::store::pin_for_reading(&*vfs, dir, options.readers_wait)?;
        let (state, state_opened) = State::open_for_reader(&*vfs, dir)?;
        let watermark = state.read_tables()?.watermark()?;
        // Past the durable head the writer published, the active segment may hold a batch
        // written but not yet durable.
        let log = Log::open_reader(vfs.clone(), dir, watermark.seq)?;
        check_log_against_state(&log, watermark)?;
        if log.head().seq == 0 {
            return Err(LedgerError::NotAStore.into());
        }
        let opened = Opened {
            log,
            state,
            state_opened,
            watermark,
        };
        Ledger::serve(vfs, dir, options, opened, pin, true)
    }

    /// Applies the log past the state's watermark and makes the handle.
    fn serve(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        options: LedgerOptions,
        opened: Opened,
        lock: Option<Box<dyn LockGuard>>,
        reader: bool,
    ) -> Result<Ledger, Error> {
        let Opened {
            log,
            state,
            state_opened,
            watermark,
        } = opened;
        let mut applier = Applier::new(&state, &*log);
        let caught_up = replay::drive(
            &log,
            watermark.seq + 1,
            log.head().seq,
            &mut applier,
            &mut |_| {},
        )?;
        let store_id = read_store_id(&log)?;
        let open_report = OpenReport {
            log_recovery: log.recovery_report().clone(),
            state: state_opened,
            entries_caught_up: caught_up,
        };
        let log = Arc::new(log);
        Ok(Ledger {
            inner: Arc::new(Inner {
                syncer: syncer::Syncer::start(log.clone()),
                vfs,
                dir: dir.to_path_buf(),
                log,
                state,
                reader,
                committer: Mutex::new(Committer::new(Instant::now())),
                queue: Mutex::new(commit::Queue::default()),
                options,
                store_id,
                open_report,
                poisoned: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                state_behind: AtomicBool::new(false),
                _lock: lock,
            }),
        })
    }

    /// What opening the store found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.open_report
    }

    /// The store's random, stable id (made at creation, recorded in entry 1).
    pub fn store_id(&self) -> [u8; 16] {
        self.inner.store_id
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log, read-only (for verification, export and statistics): entries by seq,
    /// iteration, the head. Only the ledger appends, so that every entry in the chain went
    /// through validation and the state.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let ledger = folio::Ledger::create(dir.path().join("store"))?;
    /// let head = ledger.log().head();
    /// assert_eq!(ledger.log().read(head.seq)?.block_hash, head.block_hash);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Appending through it does not compile (before issue 12 it appended a record that no
    /// validation saw, and the store could never be verified or rebuilt again):
    ///
    /// ```compile_fail
    /// let dir = tempfile::tempdir()?;
    /// let ledger = folio::Ledger::create(dir.path().join("store"))?;
    /// ledger.log().append(&[b"not an entry".to_vec()])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn log(&self) -> &LogReader {
        &self.inner.log
    }

    /// Makes everything durable and trims the log: call before dropping the last handle.
    /// Dropping without `close` loses nothing acknowledged (the log is the commit point), but
    /// the next open then re-applies the entries past the last checkpoint. The store stays
    /// locked until the last handle (and every clone) is dropped; after `close`, writes fail
    /// with `Closed`.
    pub fn close(&self) -> Result<(), Error> {
        // Taken so that no group is being prepared during the checkpoint...
        let _committer = self.inner.lock_committer();
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // ...and every group prepared is landed first: a checkpoint makes the state durable,
        // which it may only be up to entries that are.
        if self.inner.reader {
            return Ok(());
        }
        let settled = self.inner.log.settle();
        if settled.is_ok() && !self.inner.poisoned.load(Ordering::SeqCst) {
            // Put off while readers read the last checkpoint: the next open applies the log
            // past it again.
            let inner = &self.inner;
            if let Some(_readers_out) = crate::store::try_exclude_readers(&*inner.vfs, &inner.dir) {
                inner.state.checkpoint()?;
            }
        }
        // From here on a reader may read the state file: nothing more is written to it (redb's
        // own close would write its header again).
        self.inner.state.fence();
        self.inner.log.close()?;
        Ok(())
    }
}

impl LedgerOptions {
    /// Refuses options that cannot work (`InvalidInput`, naming the option), before a store
    /// is touched: no group could ever take an operation with `group_ops_max` 0.
    fn check(&self) -> Result<(), Error> {
        let at_least_one = |field: &'static str| LedgerError::InvalidInput {
            field,
            value: "0".to_string(),
            reason: "must be at least 1",
        };
        if self.group_ops_max == 0 {
            return Err(at_least_one("group_ops_max").into());
        }
        if self.checkpoint_groups == 0 {
            return Err(at_least_one("checkpoint_groups").into());
        }
        // The log's own bounds: its `InvalidOption` is INVALID_INPUT and names the option.
        crate::log::check_options(&log_options(self, 0))?;
        Ok(())
    }
}

/// Refuses an empty store path: it would name the current directory, and a store made there
/// by mistake would mix with whatever the directory holds.
fn check_dir(dir: &Path) -> Result<(), LedgerError> {
    if dir.as_os_str().is_empty() {
        return Err(LedgerError::InvalidInput {
            field: "store directory",
            value: String::new(),
            reason: "is empty",
        });
    }
    Ok(())
}

/// A file system error on the store's directory: `InvalidInput` when the path names something
/// other than a directory, `Storage` otherwise.
fn storage_or_not_a_directory(dir: &Path, error: std::io::Error) -> LedgerError {
    if error.kind() == std::io::ErrorKind::NotADirectory {
        return LedgerError::InvalidInput {
            field: "store directory",
            value: dir.display().to_string(),
            reason: "is not a directory",
        };
    }
    LedgerError::Storage {
        detail: format!("{}: {error}", dir.display()),
    }
}

fn log_options(options: &LedgerOptions, seq_durable_min: u64) -> LogOptions {
    LogOptions {
        segment_bytes: options.segment_bytes,
        seq_durable_min,
        read_only: false,
        scan_sealed: false,
        seq_limit: None,
    }
}

/// A store just opened, before the log past the state's watermark is applied.
struct Opened {
    log: Log,
    state: State,
    state_opened: StateOpened,
    watermark: crate::state::Watermark,
}

/// The state may not be ahead of the log, nor on another chain (its watermark's hash).
fn check_log_against_state(log: &Log, watermark: crate::state::Watermark) -> Result<(), Error> {
    let head = log.head();
    if head.seq < watermark.seq {
        return Err(LedgerError::LogBehindState {
            log_head: head.seq,
            watermark: watermark.seq,
        }
        .into());
    }
    if watermark.seq > 0 && log.read(watermark.seq)?.block_hash != watermark.block_hash {
        return Err(LedgerError::StateLogMismatch { seq: watermark.seq }.into());
    }
    Ok(())
}

fn new_store_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        // No OS randomness: fall back on a hash of the time and process, unique enough to
        // tell devices apart.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        id.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    id
}

fn read_store_id(log: &LogReader) -> Result<[u8; 16], Error> {
    let first = log.read(1)?;
    match replay::decode_body(&first)? {
        EntryBody::StoreCreated(created) => Ok(created.store_id),
        _ => Err(LedgerError::NotAStore.into()),
    }
}

fn expect_receipt(result: Result<commit::Outcome, Error>) -> Result<Receipt, Error> {
    match result? {
        commit::Outcome::Receipt(receipt) => Ok(receipt),
        commit::Outcome::Committed(_) | commit::Outcome::Unchanged => Err(LedgerError::Storage {
            detail: "expected a receipt".into(),
        }
        .into()),
    }
}

fn expect_committed(result: Result<commit::Outcome, Error>) -> Result<Committed, Error> {
    match result? {
        commit::Outcome::Committed(committed) => Ok(committed),
        commit::Outcome::Receipt(_) | commit::Outcome::Unchanged => Err(LedgerError::Storage {
            detail: "expected an entry".into(),
        }
        .into()),
    }
}

/// Writes. Each returns once its entry is durable in the log (or with the error that kept it
/// out); concurrent calls share one fsync.
impl Ledger {
    fn submit_one(&self, op: Op) -> Result<commit::Outcome, Error> {
        let mut results = self.submit(vec![op]);
        results
            .pop()
            .unwrap_or_else(|| Err(LedgerError::Closed.into()))
    }

    /// Posts one transaction. A request whose reference was used before returns the original
    /// receipt (`replayed: true`) if it is the same request, and `IdempotencyConflict` if not.
    pub fn post(&self, request: PostRequest) -> Result<Receipt, Error> {
        expect_receipt(self.submit_one(Op::Post(request)))
    }

    /// Posts many transactions in as few groups as possible; one result per request, in order.
    /// A rejected request does not fail the others.
    pub fn post_batch(&self, requests: Vec<PostRequest>) -> Vec<Result<Receipt, Error>> {
        let ops = requests.into_iter().map(Op::Post).collect();
        self.submit(ops).into_iter().map(expect_receipt).collect()
    }

    /// Reverts a transaction: posts its postings reversed, linked to it.
    pub fn revert(&self, request: RevertRequest) -> Result<Receipt, Error> {
        expect_receipt(self.submit_one(Op::Revert(request)))
    }

    /// Sets (adds or replaces) metadata keys on an account.
    pub fn set_account_metadata(
        &self,
        ledger: &str,
        account: &str,
        metadata: Metadata,
    ) -> Result<Committed, Error> {
        let op = Op::SetAccountMetadata {
            ledger: ledger.into(),
            account: account.into(),
            metadata,
        };
        expect_committed(self.submit_one(op))
    }

    /// Deletes a metadata key of an account.
    pub fn delete_account_metadata(
        &self,
        ledger: &str,
        account: &str,
        key: &str,
    ) -> Result<Committed, Error> {
        let op = Op::DeleteAccountMetadata {
            ledger: ledger.into(),
            account: account.into(),
            key: key.into(),
        };
        expect_committed(self.submit_one(op))
    }

    /// Sets (adds or replaces) metadata keys on a transaction.
    pub fn set_transaction_metadata(
        &self,
        ledger: &str,
        id: u64,
        metadata: Metadata,
    ) -> Result<Committed, Error> {
        let op = Op::SetTransactionMetadata {
            ledger: ledger.into(),
            id,
            metadata,
        };
        expect_committed(self.submit_one(op))
    }

    /// Deletes a metadata key of a transaction.
    pub fn delete_transaction_metadata(
        &self,
        ledger: &str,
        id: u64,
        key: &str,
    ) -> Result<Committed, Error> {
        let op = Op::DeleteTransactionMetadata {
            ledger: ledger.into(),
            id,
            key: key.into(),
        };
        expect_committed(self.submit_one(op))
    }

    /// Sets an account's overdraft policy in one asset.
    pub fn set_overdraft(
        &self,
        ledger: &str,
        account: &str,
        asset: &str,
        policy: Overdraft,
    ) -> Result<Committed, Error> {
        let op = Op::SetOverdraft {
            ledger: ledger.into(),
            account: account.into(),
            asset: asset.into(),
            policy,
        };
        expect_committed(self.submit_one(op))
    }

    /// Moves an outbox consumer's cursor to `seq`: the consumer has every event up to and
    /// including that entry (`docs/sync.md`). Appends a `ConsumerAcked` entry through group
    /// commit, durable (fsynced) before it returns; `Ok(None)` when the cursor already was at
    /// `seq` (nothing appended). A `seq` past the log's head is `AckBeyondHead`
    /// (`SEQ_OUT_OF_RANGE`), one below the cursor `AckBackwards`, a bad name `InvalidInput`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let ledger = folio::Ledger::create(dir.path().join("store"))?;
    /// let head = ledger.log().head().seq;
    /// assert!(ledger.ack("central", head)?.is_some());
    /// assert!(ledger.ack("central", head)?.is_none(), "a repeated ack changes nothing");
    /// assert_eq!(ledger.consumers()?[0].cursor, head);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ack(&self, consumer: &str, seq: u64) -> Result<Option<Committed>, Error> {
        let op = Op::Ack {
            consumer: consumer.into(),
            seq,
        };
        match self.submit_one(op)? {
            commit::Outcome::Committed(committed) => Ok(Some(committed)),
            commit::Outcome::Unchanged => Ok(None),
            commit::Outcome::Receipt(_) => Err(LedgerError::Storage {
                detail: "expected an entry".into(),
            }
            .into()),
        }
    }

    /// Skips the entry `seq` for an outbox consumer, recording `reason`: appends an
    /// `EventSkipped` entry that moves the consumer's cursor to `seq` as [`Ledger::ack`] would
    /// (`docs/sync.md`, "Skipping an entry"), durable before it returns. `seq` must be the
    /// consumer's next entry with an event (every entry between its cursor and `seq` has
    /// none), so that nothing else is ever skipped: otherwise `SkipNotNext`, naming the next
    /// one. A consumer that never acknowledged anything has cursor 0. The reason is 1 to 1024
    /// bytes of UTF-8 without control characters (`InvalidInput`).
    ///
    /// ```
    /// use folio::{Ledger, PostRequest, Posting};
    /// let dir = tempfile::tempdir()?;
    /// let ledger = Ledger::create(dir.path().join("store"))?;
    /// let sale = Posting::new("world", "till:1", "5", "EUR/2")?;
    /// let id = ledger.post(PostRequest::new("main", vec![sale]))?.id;
    /// ledger.skip("central", id, "delivered by hand")?;
    /// assert_eq!(ledger.cursor("central")?, id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn skip(&self, consumer: &str, seq: u64, reason: &str) -> Result<Committed, Error> {
        model::check_consumer_name(consumer)?;
        model::check_skip_reason(reason)?;
        self.check_readable()?;
        let cursor = self.inner.state.read_tables()?.cursor(consumer)?;
        let next = self.next_event_seq(cursor)?;
        if next != Some(seq) {
            let consumer = consumer.to_string();
            return Err(LedgerError::SkipNotNext {
                consumer,
                seq,
                cursor,
                next,
            }
            .into());
        }
        let op = Op::Skip {
            consumer: consumer.into(),
            seq,
            reason: reason.into(),
            cursor_read: cursor,
        };
        expect_committed(self.submit_one(op))
    }

    /// The first entry after `seq_after` whose kind has an event, if any.
    fn next_event_seq(&self, seq_after: u64) -> Result<Option<u64>, Error> {
        let log = self.log();
        let head = log.head().seq;
        for entry in log.iter_from(seq_after + 1) {
            let entry = entry?;
            if entry.seq > head {
                break;
            }
            if replay::decode_body(&entry)?.has_event() {
                return Ok(Some(entry.seq));
            }
        }
        Ok(None)
    }

    /// The materialized state (for the outbox's cursor reads).
    pub(crate) fn state(&self) -> Result<&State, Error> {
        self.check_readable()?;
        Ok(&self.inner.state)
    }

    /// Reads never wait for a writer: every group commits its state before its callers
    /// return, so the last state commit holds every write that returned. Only a state that
    /// could not record an acknowledged group refuses reads (`StateBehind`).
    pub(crate) fn check_readable(&self) -> Result<(), Error> {
        if self.inner.state_behind.load(Ordering::SeqCst) {
            return Err(LedgerError::StateBehind.into());
        }
        Ok(())
    }
}
