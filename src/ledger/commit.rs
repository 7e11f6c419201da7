//! Group commit. Callers queue their operations; one caller at a time leads and takes
//! everything queued and commits it as one group: validate each operation in queue order
//! (each against the state the earlier ones left, inside one redb write transaction), append
//! the accepted entries to the log with one write and one fsync (the commit point), then
//! record the new watermark and commit the state transaction before any caller learns its
//! result: the state readers see advances when a group's fsync returns, never later, so a read
//! never waits for a group in progress and never misses a write that returned. Each caller gets
//! its own result; one rejected operation never fails the others. A panic inside a group
//! poisons the ledger and fails every operation of the group (`docs/ledger.md` §11).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::read::receipt_of;
use super::{Inner, Ledger};
use crate::Error;
use crate::domain::LedgerError;
use crate::domain::entry::{self, EntryBody, TransactionEntry};
use crate::domain::request::{Committed, Receipt};
use crate::domain::validate::{self, Context, Decision, Op};
use crate::domain::view::{TransactionLookup, ViewError};
use crate::log::format::{
    BATCH_BYTES_MAX, BODY_BYTES_MAX, FRAME_PREFIX_BYTES, PAYLOAD_FIXED_BYTES,
};
use crate::log::{Appended, LogError, LogReader};
use crate::replay;
use crate::state::apply::{apply, set_watermark};
use crate::state::hot::{HotRows, StagedTables};
use crate::state::{StateError, Watermark, WriteTables, panic_text};

/// What a write returns: a receipt for transactions, the entry's place for the rest.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Receipt(Receipt),
    Committed(Committed),
    /// Nothing was appended: the operation changed nothing (a repeated ack).
    Unchanged,
}

type Slot = Arc<Mutex<Option<Result<Outcome, Error>>>>;

/// A queued operation and where its result goes.
pub(crate) struct Pending {
    op: Op,
    slot: Slot,
}

/// The checkpoint bookkeeping and the hot rows, guarded by the committer lock.
///
/// Every group that appends entries commits its own state (redb) write transaction before its
/// callers learn their results, with `Durability::None` between checkpoints (the log, fsynced
/// per group, is the commit point): so the state readers see is always the last group whose
/// fsync returned, and a read never waits for the group in progress. What a crash takes from
/// the non-durable commits is re-applied from the log on open, like any entry past the
/// watermark.
pub(crate) struct Committer {
    groups_since_checkpoint: u32,
    last_checkpoint: Instant,
    /// Volumes and posting sequences as the last state commit left them (a cache in front of
    /// the tables), plus, within a group, the rows it changed; written before it commits.
    hot: HotRows,
}

self_cell::self_cell!(
    /// A group's state write transaction with its tables, open for as long as it is.
    pub(crate) struct OpenState {
        owner: redb::WriteTransaction,
        #[not_covariant]
        dependent: WriteTables,
    }
);

impl OpenState {
    /// Begins a write transaction (durable for a checkpoint) and opens its tables.
    fn begin(state: &crate::state::State, durable: bool) -> Result<OpenState, StateError> {
        OpenState::try_new(state.begin_write(durable)?, |txn| WriteTables::open(txn))
    }
}

impl Committer {
    pub(crate) fn new(now: Instant) -> Committer {
        Committer {
            groups_since_checkpoint: 0,
            last_checkpoint: now,
            hot: HotRows::new(),
        }
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("groups_since_checkpoint", &self.groups_since_checkpoint)
            .finish_non_exhaustive()
    }
}

/// One accepted or settled operation of a group.
enum Staged {
    /// Appended as this entry (index into the group's bodies).
    Entry {
        index: usize,
        body: EntryBody,
    },
    /// Repeats transaction `id`.
    Repeat(u64),
    Done(Result<Outcome, Error>),
}

/// What validating a group produced: the encoded entries to append, each operation's fate, and
/// the operations left for the next group (past the log's batch bound).
#[derive(Default)]
struct Staging {
    bodies: Vec<Vec<u8>>,
    staged: Vec<Staged>,
    /// Seq -> position in `staged`, for the group's transactions: a later operation of the
    /// group may revert or repeat one.
    staged_tx: HashMap<u64, usize>,
    unprocessed: Vec<Pending>,
}

fn fill(slot: &Slot, result: Result<Outcome, Error>) {
    *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(result);
}

fn take(slot: &Slot) -> Option<Result<Outcome, Error>> {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

fn is_filled(slot: &Slot) -> bool {
    slot.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .is_some()
}

fn fail_all(group: &[Pending], error: &LedgerError) {
    for pending in group {
        fill(&pending.slot, Err(error.clone().into()));
    }
}

/// The queue of operations waiting for a group, and whether some caller is committing one.
#[derive(Default)]
pub(crate) struct Queue {
    pending: VecDeque<Pending>,
    leader_active: bool,
}

/// Held by the leader while it commits a group; its drop hands leadership back and wakes the
/// waiters.
struct Leading<'a>(&'a Inner);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.lock_queue().leader_active = false;
        self.0.group_done.notify_all();
    }
}

impl Ledger {
    /// Queues operations and returns their results in order, once some caller (maybe this
    /// one) has committed them. One caller at a time leads: it takes what is queued and
    /// commits it as a group while the others wait on `group_done`. A waiter whose operations
    /// a group settled returns at once, rather than waiting behind the next group's fsync.
    pub(crate) fn submit(&self, ops: Vec<Op>) -> Vec<Result<Outcome, Error>> {
        let inner = &self.inner;
        let slots: Vec<Slot> = ops.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let mut queue = inner.lock_queue();
        for (op, slot) in ops.into_iter().zip(&slots) {
            queue.pending.push_back(Pending {
                op,
                slot: slot.clone(),
            });
        }
        while !slots.iter().all(is_filled) {
            if queue.leader_active {
                queue = inner
                    .group_done
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            if queue.pending.is_empty() {
                // Every group fills each slot it took (a panic included), so an unfilled slot
                // is always still queued; never spin on one that is not.
                debug_assert!(false, "an operation is neither queued nor settled");
                break;
            }
            queue.leader_active = true;
            let count = queue.pending.len().min(inner.options.group_ops_max);
            let group: Vec<Pending> = queue.pending.drain(..count).collect();
            drop(queue);
            {
                let _leading = Leading(inner);
                let mut committer = inner.lock_committer();
                inner.commit_group_guarded(&mut committer, group);
            }
            queue = inner.lock_queue();
        }
        drop(queue);
        slots
            .iter()
            .map(|slot| {
                take(slot).unwrap_or_else(|| {
                    Err(LedgerError::Storage {
                        detail: "the group commit lost the operation".into(),
                    }
                    .into())
                })
            })
            .collect()
    }
}

/// Transaction entries for validation: the group's own (not yet in the log) first, then the
/// log.
struct GroupEntries<'a> {
    log: &'a LogReader,
    staged: &'a [Staged],
    /// Seq -> position in `staged` of the group's transaction entries.
    positions: &'a HashMap<u64, usize>,
}

impl GroupEntries<'_> {
    fn staged_transaction(&self, id: u64) -> Option<&TransactionEntry> {
        match self.staged.get(*self.positions.get(&id)?)? {
            Staged::Entry {
                body: EntryBody::Transaction(tx),
                ..
            } => Some(tx),
            _ => None,
        }
    }
}

impl TransactionLookup for GroupEntries<'_> {
    fn transaction(&self, id: u64) -> Result<Option<TransactionEntry>, ViewError> {
        if let Some(tx) = self.staged_transaction(id) {
            return Ok(Some(tx.clone()));
        }
        self.log.transaction(id)
    }
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The committer, for the leader (or `close`). A panic never escapes a group
    /// (`commit_group_guarded`), but should one have escaped with the lock held, nothing the
    /// committer holds is trusted again: the ledger is poisoned and the hot rows forgotten.
    pub(crate) fn lock_committer(&self) -> MutexGuard<'_, Committer> {
        match self.committer.lock() {
            Ok(committer) => committer,
            Err(poisoned) => {
                let mut committer = poisoned.into_inner();
                self.poison();
                committer.hot.clear();
                committer
            }
        }
    }

    /// Refuses every later write until the store is reopened.
    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    fn refusal(&self) -> Option<LedgerError> {
        if self.closed.load(Ordering::SeqCst) {
            Some(LedgerError::Closed)
        } else if self.poisoned.load(Ordering::SeqCst) {
            Some(LedgerError::Poisoned)
        } else {
            None
        }
    }

    /// Commits one group, turning a panic inside it (a user's clock, or a bug) into a
    /// poisoned ledger and an `OutcomeUnknown` for each of the group's operations that has no
    /// result yet: unwinding has aborted the group's state transaction, its hot rows are
    /// forgotten, and whether its entries reached the log is not known here. Every earlier
    /// group's state was committed before its callers returned, so reads stay right.
    fn commit_group_guarded(&self, committer: &mut Committer, group: Vec<Pending>) {
        let slots: Vec<Slot> = group.iter().map(|pending| pending.slot.clone()).collect();
        let committed = catch_unwind(AssertUnwindSafe(|| self.commit_group(committer, group)));
        let Err(panic) = committed else {
            return;
        };
        self.poison();
        committer.hot.clear();
        let error = LedgerError::OutcomeUnknown {
            detail: format!("a panic while committing a group: {}", panic_text(&*panic)),
        };
        for slot in slots.iter().filter(|slot| !is_filled(slot)) {
            fill(slot, Err(error.clone().into()));
        }
    }

    /// Commits one group, filling every slot of it (or returning unprocessed operations to
    /// the front of the queue when the group's bytes would pass the log's batch bound).
    fn commit_group(&self, committer: &mut Committer, group: Vec<Pending>) {
        if let Some(refusal) = self.refusal() {
            fail_all(&group, &refusal);
            return;
        }
        let checkpoint = committer.groups_since_checkpoint + 1 >= self.options.checkpoint_groups
            || committer.last_checkpoint.elapsed() >= self.options.checkpoint_interval;
        match self.commit_group_inner(committer, group, checkpoint) {
            Ok(true) => {
                committer.groups_since_checkpoint = 0;
                committer.last_checkpoint = Instant::now();
            }
            Ok(false) => committer.groups_since_checkpoint += 1,
            Err(()) => {}
        }
    }

    /// Begins the group's state transaction, validates and applies its operations, appends
    /// the accepted entries to the log, commits the state and hands out the results. Returns
    /// Ok(whether the state commit was a checkpoint), Err when the group failed (its slots
    /// are filled with the errors).
    fn commit_group_inner(
        &self,
        committer: &mut Committer,
        group: Vec<Pending>,
        checkpoint: bool,
    ) -> Result<bool, ()> {
        let mut open = match OpenState::begin(&self.state, checkpoint) {
            Ok(open) => open,
            Err(error) => {
                // redb latches an I/O failure: only a reopen brings the state back.
                self.poison();
                let detail = error.to_string();
                fail_all(&group, &LedgerError::Storage { detail });
                return Err(());
            }
        };
        let now = (self.options.clock)();
        let mut group = group;
        let staging = match self.stage(&mut open, &mut committer.hot, &mut group, now) {
            Ok(staging) => staging,
            Err(detail) => {
                // A failure of the state leaves the transaction with a partial write: nothing
                // of this group may stand.
                drop(open);
                committer.hot.clear();
                self.poison();
                fail_all(&group, &LedgerError::Storage { detail });
                return Err(());
            }
        };
        let Staging {
            bodies,
            staged,
            staged_tx,
            unprocessed,
        } = staging;
        self.requeue(unprocessed);
        if bodies.is_empty() {
            // Validation only read: nothing to append or commit.
            drop(open);
            self.deliver(&group, staged, &[], &staged_tx);
            return Ok(false);
        }
        let appended = match self.log.append(&bodies) {
            Ok(appended) => appended,
            Err(error) => {
                // The group's rows are in the transaction and the hot rows: both go.
                drop(open);
                committer.hot.clear();
                self.fail_append(&group, staged, &error);
                return Err(());
            }
        };
        let durable = self.finish_state(committer, open, &appended, checkpoint);
        self.deliver(&group, staged, &appended, &staged_tx);
        Ok(durable)
    }

    /// Validates each operation of `group` in order against the tables as the earlier ones
    /// left them, encodes the accepted entries and applies them to the transaction. The
    /// operations past the log's batch bound are split off `group` into `unprocessed`. Err
    /// (with what failed) when applying an accepted entry failed: the transaction then holds a
    /// partial write.
    fn stage(
        &self,
        open: &mut OpenState,
        hot: &mut HotRows,
        group: &mut Vec<Pending>,
        now: i64,
    ) -> Result<Staging, String> {
        let head = self.log.head();
        let mut staging = Staging::default();
        open.with_dependent_mut(|_, tables| {
            let mut staged_state = StagedTables { tables, hot };
            let mut bytes_total = 0usize;
            for position in 0..group.len() {
                let seq = head.seq + 1 + staging.bodies.len() as u64;
                let decision = {
                    let entries = GroupEntries {
                        log: &self.log,
                        staged: &staging.staged,
                        positions: &staging.staged_tx,
                    };
                    let ctx = Context {
                        view: &staged_state,
                        entries: &entries,
                        now,
                        seq,
                    };
                    validate::validate(&ctx, &group[position].op)
                };
                let body = match decision {
                    Ok(Decision::Append(body)) => body,
                    Ok(Decision::Repeat(id)) => {
                        staging.staged.push(Staged::Repeat(id));
                        continue;
                    }
                    Ok(Decision::Unchanged) => {
                        staging.staged.push(Staged::Done(Ok(Outcome::Unchanged)));
                        continue;
                    }
                    Err(error) => {
                        staging.staged.push(Staged::Done(Err(error.into())));
                        continue;
                    }
                };
                let encoded = match encode_bounded(&body) {
                    Ok(encoded) => encoded,
                    Err(error) => {
                        staging.staged.push(Staged::Done(Err(error)));
                        continue;
                    }
                };
                let record_bytes = FRAME_PREFIX_BYTES + PAYLOAD_FIXED_BYTES + encoded.len();
                if bytes_total + record_bytes > BATCH_BYTES_MAX {
                    staging.unprocessed = group.split_off(position);
                    break;
                }
                let entries = GroupEntries {
                    log: &self.log,
                    staged: &staging.staged,
                    positions: &staging.staged_tx,
                };
                apply(&mut staged_state, &entries, seq, &body)
                    .map_err(|error| error.to_string())?;
                bytes_total += record_bytes;
                if let EntryBody::Transaction(_) = &body {
                    staging.staged_tx.insert(seq, staging.staged.len());
                }
                staging.staged.push(Staged::Entry {
                    index: staging.bodies.len(),
                    body,
                });
                staging.bodies.push(encoded);
            }
            Ok(staging)
        })
    }

    /// Writes the group's hot rows and its watermark (the last entry's seq and `block_hash`)
    /// into its transaction and commits it (durably for a checkpoint), before any caller
    /// learns its result. Returns whether it made a checkpoint. The log already holds the
    /// group, so a failure here loses nothing; the ledger is poisoned (redb latches I/O
    /// failures) and the state caught up from the log, so that reads still show the group.
    fn finish_state(
        &self,
        committer: &mut Committer,
        mut open: OpenState,
        appended: &[Appended],
        checkpoint: bool,
    ) -> bool {
        let Some(last) = appended.last() else {
            return false;
        };
        let watermark = Watermark {
            seq: last.seq,
            block_hash: last.block_hash,
        };
        let hot = &mut committer.hot;
        let recorded = open.with_dependent_mut(|_, tables| {
            hot.flush(tables)?;
            set_watermark(tables, watermark)
        });
        let committed = recorded.and_then(|()| self.state.commit(open.into_owner()));
        if committed.is_ok() {
            return checkpoint;
        }
        // The flush marked rows clean for a transaction that did not commit.
        committer.hot.clear();
        self.poison();
        self.catch_up_state();
        false
    }

    /// Applies the entries past the state's watermark from the log, as open does, after a
    /// state commit failed; if even that fails, reads are refused (`StateBehind`) until a
    /// reopen, rather than answered without entries that were acknowledged.
    fn catch_up_state(&self) {
        let caught_up = (|| -> Result<(), Error> {
            let watermark = crate::state::StateReads::watermark(&self.state.read_tables()?)?;
            let mut applier = crate::replay::Applier::new(&self.state, &*self.log);
            replay::drive(
                &self.log,
                watermark.seq + 1,
                self.log.head().seq,
                &mut applier,
                &mut |_| {},
            )?;
            Ok(())
        })();
        if caught_up.is_err() {
            self.state_behind.store(true, Ordering::SeqCst);
        }
    }

    fn requeue(&self, unprocessed: Vec<Pending>) {
        if unprocessed.is_empty() {
            return;
        }
        let mut queue = self.lock_queue();
        for pending in unprocessed.into_iter().rev() {
            queue.pending.push_front(pending);
        }
    }

    /// The log refused or failed the append: nothing of the group is in the state. A clean
    /// failure fails the accepted operations; an unknown outcome also poisons the ledger.
    fn fail_append(&self, group: &[Pending], staged: Vec<Staged>, error: &LogError) {
        let failure = match error {
            LogError::NoSpace { source } => LedgerError::NoSpace {
                detail: source.to_string(),
            },
            LogError::OutcomeUnknown { .. } | LogError::Poisoned => {
                self.poison();
                LedgerError::OutcomeUnknown {
                    detail: error.to_string(),
                }
            }
            other => LedgerError::Storage {
                detail: other.to_string(),
            },
        };
        for (pending, staged) in group.iter().zip(staged) {
            let result = match staged {
                Staged::Done(result) => result,
                Staged::Entry { .. } | Staged::Repeat(_) => Err(failure.clone().into()),
            };
            fill(&pending.slot, result);
        }
    }

    fn deliver(
        &self,
        group: &[Pending],
        staged: Vec<Staged>,
        appended: &[Appended],
        staged_tx: &HashMap<u64, usize>,
    ) {
        // Repeats first, while the entries they may repeat are still in `staged`.
        let entries = GroupEntries {
            log: &self.log,
            staged: &staged,
            positions: staged_tx,
        };
        let mut repeats: Vec<Option<Result<Outcome, Error>>> = staged
            .iter()
            .map(|staged| match staged {
                Staged::Repeat(id) => Some(self.repeated(*id, appended, &entries)),
                _ => None,
            })
            .collect();
        for ((pending, staged), repeat) in group.iter().zip(staged).zip(&mut repeats) {
            let result = match (staged, repeat.take()) {
                (Staged::Done(result), _) => result,
                (Staged::Entry { index, body }, _) => Ok(outcome_of(&appended[index], body)),
                (Staged::Repeat(_), Some(result)) => result,
                (Staged::Repeat(id), None) => unreachable!("repeat of {id} has no result"),
            };
            fill(&pending.slot, result);
        }
    }

    /// The original receipt of transaction `id`, for a repeat (marked `replayed`, the
    /// receipt's field as applications and `folio post --json` read it).
    fn repeated(
        &self,
        id: u64,
        appended: &[Appended],
        entries: &GroupEntries<'_>,
    ) -> Result<Outcome, Error> {
        if let (Some(tx), Some(first)) = (entries.staged_transaction(id), appended.first()) {
            let hashes = &appended[(id - first.seq) as usize];
            let (block_hash, previous_hash) = (hashes.block_hash, hashes.previous_hash);
            let mut receipt = receipt_of(id, block_hash, previous_hash, tx.clone(), None);
            receipt.replayed = true;
            return Ok(Outcome::Receipt(receipt));
        }
        let entry = self.log.read(id)?;
        let EntryBody::Transaction(tx) = replay::decode_body(&entry)? else {
            return Err(LedgerError::NotAStore.into());
        };
        let mut receipt = receipt_of(id, entry.block_hash, entry.previous_hash, tx, None);
        receipt.replayed = true;
        Ok(Outcome::Receipt(receipt))
    }
}

fn outcome_of(appended: &Appended, body: EntryBody) -> Outcome {
    match body {
        EntryBody::Transaction(tx) => Outcome::Receipt(receipt_of(
            appended.seq,
            appended.block_hash,
            appended.previous_hash,
            tx,
            None,
        )),
        _ => Outcome::Committed(Committed {
            seq: appended.seq,
            block_hash: appended.block_hash,
            previous_hash: appended.previous_hash,
        }),
    }
}

fn encode_bounded(body: &EntryBody) -> Result<Vec<u8>, Error> {
    let storage = |error: bincode::error::EncodeError| LedgerError::Storage {
        detail: format!("encoding an entry: {error}"),
    };
    let bytes = entry::encoded_len(body).map_err(storage)?;
    if bytes > BODY_BYTES_MAX {
        return Err(LedgerError::EntryTooLarge {
            bytes,
            max: BODY_BYTES_MAX,
        }
        .into());
    }
    Ok(entry::encode(body).map_err(storage)?)
}
