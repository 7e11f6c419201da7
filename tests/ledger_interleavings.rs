//! Interleavings of the group commit that single-threaded tests never reach, forced with a file
//! system that holds an fsync until the test lets it go, and with a clock that panics. The
//! invariant: a read made after a write returned Ok sees that write, whatever group another
//! thread is committing, and never waits for that group; a panic inside a group poisons the
//! ledger, fails every operation of the group (no caller hangs), and leaves the store with every
//! acknowledged transaction exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use folio::log::sim::{Fault, FaultError, OpKind, SimFs};
use folio::log::vfs::{FileBytes, LockGuard, OpenMode, RealFs, Vfs, VfsFile};
use folio::{Error, Ledger, LedgerOptions, PostRequest, Posting};
use rust_decimal::Decimal;

const LEDGER: &str = "main";
const ASSET: &str = "USD/2";
/// Long enough that a call which does not return in it is waiting for something that will
/// not come without the test.
const PATIENCE: Duration = Duration::from_secs(20);

fn sale(reference: &str, amount: &str) -> PostRequest {
    let posting = Posting::new("world", "till:1", amount, ASSET).unwrap();
    PostRequest::new(LEDGER, vec![posting]).with_reference(reference)
}

fn till(ledger: &Ledger) -> Result<Decimal, Error> {
    Ok(ledger
        .balance(LEDGER, "till:1")?
        .get(ASSET)
        .copied()
        .unwrap_or_default())
}

/// Runs `work` on its own thread and returns its result, or None if it did not finish within
/// [`PATIENCE`] (the thread is then left behind, blocked).
fn within_patience<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver.recv_timeout(PATIENCE).ok()
}

/// Holds the first `sync_data` of a file whose path contains `needle`, once armed, until
/// released: the caller is then provably inside that fsync.
#[derive(Debug, Default)]
struct Gate {
    needle: String,
    /// 0: open; 1: armed; 2: holding a sync; 3: released; 4: released, the held sync failing.
    phase: Mutex<u8>,
    changed: Condvar,
}

impl Gate {
    fn new(needle: &str) -> Arc<Gate> {
        Arc::new(Gate {
            needle: needle.to_string(),
            ..Gate::default()
        })
    }

    fn set(&self, phase: u8) {
        *self.phase.lock().unwrap() = phase;
        self.changed.notify_all();
    }

    fn arm(&self) {
        self.set(1);
    }

    fn release(&self) {
        self.set(3);
    }

    /// Lets the held sync go with an I/O error (as a dying disk would).
    fn release_failing(&self) {
        self.set(4);
    }

    /// Waits until a sync is held; false if none came within [`PATIENCE`].
    fn wait_holding(&self) -> bool {
        let phase = self.phase.lock().unwrap();
        let (phase, _) = self
            .changed
            .wait_timeout_while(phase, PATIENCE, |phase| *phase != 2)
            .unwrap();
        *phase == 2
    }

    fn on_sync(&self, path: &Path) -> io::Result<()> {
        if !path.to_string_lossy().contains(&self.needle) {
            return Ok(());
        }
        let mut phase = self.phase.lock().unwrap();
        if *phase != 1 {
            return Ok(());
        }
        *phase = 2;
        self.changed.notify_all();
        let released = self.changed.wait_while(phase, |phase| *phase < 3).unwrap();
        if *released == 4 {
            return Err(io::Error::other("the held sync failed"));
        }
        Ok(())
    }
}

/// The real file system, with a [`Gate`] on `sync_data`. A sync that follows a change of the
/// file's length passes: redb syncs a file it grows while it holds its own state lock, which
/// readers take too, and the syncs these tests hold are those of commits.
#[derive(Debug)]
struct GatedFs {
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn VfsFile>,
    path: PathBuf,
    gate: Arc<Gate>,
    resized: AtomicBool,
}

impl Vfs for GatedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        RealFs.exists(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(GatedFile {
            inner: RealFs.open(path, mode)?,
            path: path.to_path_buf(),
            gate: self.gate.clone(),
            resized: AtomicBool::new(false),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.lock(path)
    }
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.lock_shared(path)
    }
}

impl VfsFile for GatedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if !self.resized.swap(false, Ordering::SeqCst) {
            self.gate.on_sync(&self.path)?;
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.resized.store(true, Ordering::SeqCst);
        self.inner.set_len(len_bytes)
    }
    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.resized.store(true, Ordering::SeqCst);
        self.inner.allocate(len_bytes)
    }
    fn read_all(&self) -> io::Result<FileBytes> {
        self.inner.read_all()
    }
}

fn gated_store(gate: &Arc<Gate>, options: LedgerOptions) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let vfs = Arc::new(GatedFs { gate: gate.clone() });
    let ledger = Ledger::create_with(vfs, &dir.path().join("store"), options).unwrap();
    (dir, ledger)
}

/// Thread B's group is a checkpoint and is held in the state file's fsync; thread A, whose post
/// returned before, reads: it must see its own post (the lost read-your-write: B's group
/// cleared the "state pending" flag before the rows it held were committed).
#[test]
fn a_read_sees_its_own_post_while_another_threads_group_checkpoints() {
    let gate = Gate::new("state.redb");
    let options = LedgerOptions {
        checkpoint_groups: 3,
        checkpoint_interval: Duration::from_secs(3_600),
        ..LedgerOptions::default()
    };
    let (_dir, ledger) = gated_store(&gate, options);
    ledger.post(sale("r1", "1.00")).unwrap();
    ledger.post(sale("a", "2.00")).unwrap();
    gate.arm();
    let writer = ledger.clone();
    let b = std::thread::spawn(move || writer.post(sale("b", "4.00")));
    assert!(gate.wait_holding(), "B's checkpoint never synced the state");
    let reader = ledger.clone();
    let seen = within_patience(move || till(&reader)).expect("the read waited for B's group");
    assert_eq!(
        seen.unwrap(),
        Decimal::new(300, 2),
        "A's read misses its own post"
    );
    gate.release();
    b.join().unwrap().unwrap();
    assert_eq!(till(&ledger).unwrap(), Decimal::new(700, 2));
    assert!(ledger.verify(&[]).unwrap().ok);
}

/// A writer's group is held inside the log's fsync, with the committer taken: reads of every
/// kind answer meanwhile, with every acknowledged write and nothing of the group in flight.
#[test]
fn reads_do_not_wait_for_a_group_in_its_log_fsync() {
    let gate = Gate::new("/log/");
    let options = LedgerOptions {
        checkpoint_interval: Duration::from_secs(3_600),
        ..LedgerOptions::default()
    };
    let (_dir, ledger) = gated_store(&gate, options);
    let first = ledger.post(sale("r1", "1.00")).unwrap();
    gate.arm();
    let writer = ledger.clone();
    let held = std::thread::spawn(move || writer.post(sale("r2", "2.00")));
    assert!(gate.wait_holding(), "the second post never synced the log");
    let reader = ledger.clone();
    let reads = within_patience(move || {
        let balance = till(&reader).unwrap();
        let by_id = reader.transaction(LEDGER, first.id).unwrap();
        let by_reference = reader.transaction_by_reference(LEDGER, "r2").unwrap();
        let account = reader.account(LEDGER, "till:1").unwrap().unwrap();
        (
            balance,
            by_id.map(|tx| tx.block_hash),
            by_reference,
            account,
        )
    });
    let (balance, by_id, by_reference, account) = reads.expect("a read waited for the writer");
    assert_eq!(balance, Decimal::ONE);
    assert_eq!(by_id, Some(first.block_hash));
    assert!(
        by_reference.is_none(),
        "a read saw a group before its fsync returned"
    );
    assert_eq!(account.posting_seq, 1);
    gate.release();
    held.join().unwrap().unwrap();
    assert_eq!(till(&ledger).unwrap(), Decimal::new(300, 2));
}

/// A clock that counts its calls: the ledger reads it once per group it validates.
fn counting_clock(calls: &Arc<std::sync::atomic::AtomicU64>) -> folio::ledger::Clock {
    let calls = calls.clone();
    Arc::new(move || {
        calls.fetch_add(1, Ordering::SeqCst);
        folio::Timestamp::now().0
    })
}

/// Waits until `calls` passes `count`; false if it did not within [`PATIENCE`].
fn wait_for_call(calls: &std::sync::atomic::AtomicU64, count: u64) -> bool {
    let start = std::time::Instant::now();
    while calls.load(Ordering::SeqCst) <= count {
        if start.elapsed() > PATIENCE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn spend(reference: &str, amount: &str) -> PostRequest {
    let posting = Posting::new("till:1", "shop", amount, ASSET).unwrap();
    PostRequest::new(LEDGER, vec![posting]).with_reference(reference)
}

type Posted = std::thread::JoinHandle<Result<folio::Receipt, Error>>;

/// A store with `r1` posted; then group A (`r2`, 2.00 into till:1) held inside its log fsync,
/// and group B (`s1`, which spends 2.50 of till:1: only A's money makes it valid) validated
/// while A waits (the clock, read once per group, was called during the hold).
fn a_held_and_b_validated() -> (Arc<Gate>, tempfile::TempDir, Ledger, Posted, Posted) {
    let gate = Gate::new("/log/");
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let options = LedgerOptions {
        checkpoint_interval: Duration::from_secs(3_600),
        clock: counting_clock(&calls),
        ..LedgerOptions::default()
    };
    let (dir, ledger) = gated_store(&gate, options);
    ledger.post(sale("r1", "1.00")).unwrap();
    gate.arm();
    let a = {
        let ledger = ledger.clone();
        std::thread::spawn(move || ledger.post(sale("r2", "2.00")))
    };
    assert!(gate.wait_holding(), "A never synced the log");
    let before_b = calls.load(Ordering::SeqCst);
    let b = {
        let ledger = ledger.clone();
        std::thread::spawn(move || ledger.post(spend("s1", "2.50")))
    };
    assert!(
        wait_for_call(&calls, before_b),
        "B was not validated while A's fsync ran"
    );
    (gate, dir, ledger, a, b)
}

/// The pipeline: while group A is held inside its log fsync, group B, which spends what A
/// brought, is validated against A's state (the clock it reads per group is called during the
/// hold), and no read sees either; released, both return, in order.
#[test]
fn the_next_group_is_validated_while_a_group_is_in_its_log_fsync() {
    let (gate, _dir, ledger, a, b) = a_held_and_b_validated();
    let reader = ledger.clone();
    let seen = within_patience(move || {
        let till = till(&reader).unwrap();
        let b = reader.transaction_by_reference(LEDGER, "s1").unwrap();
        (till, b.is_some())
    });
    let (seen, b_seen) = seen.expect("a read waited for the pipeline");
    assert_eq!(seen, Decimal::ONE, "a read saw a group before its fsync");
    assert!(!b_seen, "a read saw B before its fsync");
    gate.release();
    let a = a.join().unwrap().unwrap();
    let b = b.join().unwrap().unwrap();
    assert!(b.id > a.id);
    assert_eq!(till(&ledger).unwrap(), Decimal::new(50, 2));
    assert!(ledger.verify(&[]).unwrap().ok);
}

/// Group A's log fsync fails while group B, validated on A's state and committed held, waits
/// behind it: both get OUTCOME_UNKNOWN, reads keep showing what was acknowledged, and the
/// store (dropped without a checkpoint, as a crash-free process would) reopens with exactly
/// what its log holds: B's held state commit must never reach the file (without the fence,
/// redb's close makes it durable and the reopen finds the state ahead of the log).
#[test]
fn a_failed_log_fsync_fails_the_group_behind_it_and_the_store_reopens_with_its_log() {
    let (gate, dir, ledger, a, b) = a_held_and_b_validated();
    // B is committed held by the time it waits for A's write: give it the moment it needs.
    std::thread::sleep(Duration::from_millis(200));
    gate.release_failing();
    for (name, result) in [("A", a.join().unwrap()), ("B", b.join().unwrap())] {
        let error = result.expect_err(name);
        assert_eq!(error.code(), "OUTCOME_UNKNOWN", "{name}: {error}");
    }
    assert_eq!(till(&ledger).unwrap(), Decimal::ONE);
    assert_eq!(
        ledger.post(sale("r3", "1.00")).unwrap_err().code(),
        "POISONED"
    );
    let _ = ledger.close();
    drop(ledger);
    let store = dir.path().join("store");
    let reopened = Ledger::open_with(Arc::new(RealFs), &store, LedgerOptions::default())
        .expect("the store reopens");
    let report = reopened.verify(&[]).unwrap();
    assert!(report.ok, "{:?}", report.first_failure);
    let log_has_a = reopened.log().head().seq > 2;
    let expected = if log_has_a {
        Decimal::new(300, 2)
    } else {
        Decimal::ONE
    };
    assert_eq!(till(&reopened).unwrap(), expected);
    assert!(
        reopened
            .transaction_by_reference(LEDGER, "s1")
            .unwrap()
            .is_none(),
        "B was never written, yet it is in the books"
    );
}

const CLOCK_NORMAL: u8 = 0;
/// The next call sleeps (so that other callers queue behind its group), then arms the panic.
const CLOCK_SLOW: u8 = 1;
const CLOCK_PANIC: u8 = 2;

fn moody_clock(mode: &Arc<AtomicU8>) -> folio::ledger::Clock {
    let mode = mode.clone();
    Arc::new(move || {
        match mode.load(Ordering::SeqCst) {
            CLOCK_SLOW => {
                std::thread::sleep(Duration::from_millis(400));
                mode.store(CLOCK_PANIC, Ordering::SeqCst);
            }
            CLOCK_PANIC => {
                mode.store(CLOCK_NORMAL, Ordering::SeqCst);
                panic!("the clock broke");
            }
            _ => {}
        }
        folio::Timestamp::now().0
    })
}

/// Two callers' posts land in one group whose clock panics. Both get OUTCOME_UNKNOWN (neither
/// hangs nor takes the panic), later writes are POISONED (so a retry cannot post an
/// acknowledged reference twice), reads keep every acknowledged post, and after a reopen the
/// retries settle: acknowledged references come back as repeats, failed ones post once.
#[test]
fn a_panic_inside_a_group_poisons_the_ledger_and_fails_every_operation_of_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mode = Arc::new(AtomicU8::new(CLOCK_NORMAL));
    let options = LedgerOptions {
        clock: moody_clock(&mode),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::create_with(Arc::new(RealFs), &store, options).unwrap();
    ledger.post(sale("a1", "1.00")).unwrap();
    mode.store(CLOCK_SLOW, Ordering::SeqCst);
    let slow = {
        let ledger = ledger.clone();
        std::thread::spawn(move || ledger.post(sale("t1", "2.00")))
    };
    std::thread::sleep(Duration::from_millis(100));
    let queued: Vec<_> = ["t2", "t3"]
        .into_iter()
        .map(|reference| {
            let ledger = ledger.clone();
            let (sender, receiver) = mpsc::channel();
            std::thread::spawn(move || {
                let post = std::panic::AssertUnwindSafe(|| ledger.post(sale(reference, "4.00")));
                let result = std::panic::catch_unwind(post);
                drop(ledger);
                let _ = sender.send(result.map_err(|_| "the post panicked"));
            });
            receiver
        })
        .collect();
    slow.join().unwrap().unwrap();
    for receiver in queued {
        let result = receiver.recv_timeout(PATIENCE).expect("a caller hangs");
        let error = result
            .unwrap()
            .expect_err("a post of the panicked group succeeded");
        assert_eq!(error.code(), "OUTCOME_UNKNOWN", "{error}");
    }
    let retry = ledger.post(sale("a1", "1.00")).unwrap_err();
    assert_eq!(retry.code(), "POISONED");
    assert_eq!(till(&ledger).unwrap(), Decimal::new(300, 2));
    drop(ledger);

    let options = LedgerOptions::default();
    let reopened = Ledger::open_with(Arc::new(RealFs), &store, options).unwrap();
    assert!(reopened.post(sale("a1", "1.00")).unwrap().replayed);
    assert!(reopened.post(sale("t1", "2.00")).unwrap().replayed);
    assert!(!reopened.post(sale("t2", "4.00")).unwrap().replayed);
    assert_eq!(till(&reopened).unwrap(), Decimal::new(700, 2));
    assert_eq!(reopened.stats().unwrap().transactions, 3);
    let report = reopened.verify(&[]).unwrap();
    assert!(report.ok, "{:?}", report.first_failure);
}

/// The state commit of the first group after an open fails (one of its fsyncs, at a
/// checkpoint) after the group reached the log: the caller has its receipt, so a read must show
/// the group or refuse (STATE_BEHIND), never answer without it; writes are then refused, and a
/// reopen shows the group. Each sync of the group is failed in turn; at least one of them must
/// be a state sync after the log's.
#[test]
fn a_failed_state_commit_of_the_first_group_never_hides_the_group_from_reads() {
    let mut state_failures = 0;
    for nth in 1..=6 {
        let fs = SimFs::new(nth);
        let store = Path::new("/store");
        let options = || LedgerOptions {
            checkpoint_groups: 1,
            ..LedgerOptions::default()
        };
        let ledger = Ledger::create_with(Arc::new(fs.clone()), store, options()).unwrap();
        ledger.close().unwrap();
        drop(ledger);
        let ledger = Ledger::open_with(Arc::new(fs.clone()), store, options()).unwrap();
        fs.inject(Fault {
            op: Some(OpKind::Sync),
            nth,
            persist: false,
            error: FaultError::Io,
        });
        let posted = ledger.post(sale("s1", "5.00"));
        fs.clear_fault();
        let acknowledged = match &posted {
            Ok(_) => true,
            Err(error) => {
                let code = error.code();
                assert!(
                    matches!(code, "OUTCOME_UNKNOWN" | "STORAGE"),
                    "sync {nth}: {error}"
                );
                false
            }
        };
        let written = !matches!(&posted, Err(error) if error.code() == "STORAGE");
        let poisoned = match ledger.post(sale("s2", "1.00")) {
            Err(error) if error.code() == "POISONED" => true,
            Err(error) => panic!("sync {nth}: {error}"),
            Ok(_) => false,
        };
        let second = if poisoned {
            Decimal::ZERO
        } else {
            Decimal::ONE
        };
        if acknowledged && poisoned {
            state_failures += 1;
            match till(&ledger) {
                Ok(balance) => assert_eq!(balance, Decimal::new(500, 2), "sync {nth}"),
                Err(error) => assert_eq!(error.code(), "STATE_BEHIND", "sync {nth}: {error}"),
            }
        }
        drop(ledger);
        let reopened = Ledger::open_with(Arc::new(fs.clone()), store, options()).unwrap();
        let balance = till(&reopened).unwrap();
        if acknowledged {
            let expected = Decimal::new(500, 2) + second;
            assert_eq!(balance, expected, "sync {nth}: lost after reopen");
        }
        if !written {
            let expected = second;
            assert_eq!(
                balance, expected,
                "sync {nth}: STORAGE said nothing was written"
            );
        }
        assert!(reopened.verify(&[]).unwrap().ok, "sync {nth}");
    }
    assert!(
        state_failures > 0,
        "no sync failed a state commit after the log's"
    );
}

/// A group is written to the log and held inside its fsync: a reader that opens now finds the
/// batch's bytes in the segment but reads no further than the durable head the writer
/// published, so it never shows an entry a power cut could still take back. Once the fsync
/// returns, a new reader sees it.
#[test]
fn a_reader_never_reads_a_batch_written_but_not_yet_durable() {
    let gate = Gate::new("/log/");
    let options = LedgerOptions {
        checkpoint_interval: Duration::from_secs(3_600),
        ..LedgerOptions::default()
    };
    let (dir, ledger) = gated_store(&gate, options);
    let store = dir.path().join("store");
    ledger.post(sale("r1", "1.00")).unwrap();
    let durable = ledger.head();
    gate.arm();
    let writer = ledger.clone();
    let held = std::thread::spawn(move || writer.post(sale("r2", "2.00")));
    assert!(gate.wait_holding(), "the second post never synced the log");
    let reader = Ledger::open_reader(&store).unwrap();
    assert_eq!(
        reader.head(),
        durable,
        "a reader read past the durable head"
    );
    assert_eq!(till(&reader).unwrap(), Decimal::new(100, 2));
    assert!(reader.log().read(durable.seq + 1).is_err());
    gate.release();
    let receipt = held.join().unwrap().unwrap();
    let later = Ledger::open_reader(&store).unwrap();
    assert_eq!(later.head().seq, receipt.id);
    assert_eq!(till(&later).unwrap(), Decimal::new(300, 2));
}
