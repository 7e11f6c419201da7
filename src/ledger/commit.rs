//! Group commit. Callers queue their operations; one caller at a time leads and takes
//! everything queued and commits it as one group: validate each operation in queue order
//! (each against the state the earlier ones left, inside one redb write transaction), append
//! the accepted entries to the log with one write and one fsync (the commit point), then
//! record the new watermark in the state transaction, which commits every few groups (see
//! [`Committer`]). Each caller gets its own result; one rejected operation never fails the
//! others.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::entry::{self, EntryBody, TransactionEntry};
use super::error::LedgerError;
use super::read::receipt_of;
use super::request::{Committed, Receipt};
use super::validate::{self, Context, Decision, EntrySource, Op};
use super::{Inner, Ledger};
use crate::Error;
use crate::log::format::{
    BATCH_BYTES_MAX, BODY_BYTES_MAX, FRAME_PREFIX_BYTES, PAYLOAD_FIXED_BYTES,
};
use crate::log::{Appended, Log, LogError};
use crate::replay;
use crate::state::apply::{apply, set_watermark};
use crate::state::hot::{HotRows, StagedTables};
use crate::state::{StateError, Watermark, WriteTables};

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

/// The state's write transaction and checkpoint bookkeeping, guarded by the committer lock.
///
/// Groups share one redb write transaction until `LedgerOptions::state_commit_groups` of them
/// are in it, a checkpoint is due, or a read needs the state (`Ledger::settle_state`): a redb
/// commit costs more than a small group's own work (copying every page it touches, rewriting
/// the table roots), and the log, fsynced per group, is the commit point anyway. What a crash
/// takes from the open transaction is re-applied from the log on open, like any entry past the
/// watermark.
pub(crate) struct Committer {
    groups_since_checkpoint: u32,
    last_checkpoint: Instant,
    /// The open write transaction, holding `groups_in_txn` committed groups.
    txn: Option<OpenState>,
    groups_in_txn: u32,
    /// Volumes and posting sequences in front of `txn`'s tables, flushed when it commits.
    hot: HotRows,
}

self_cell::self_cell!(
    /// The state's open write transaction with its tables, open for as long as it is. Opening
    /// the ten tables reads each one's root from redb's table tree, and closing one writes it
    /// back: per group, that cost a third of a one-transaction group's instructions.
    pub(crate) struct OpenState {
        owner: redb::WriteTransaction,
        #[not_covariant]
        dependent: WriteTables,
    }
);

impl OpenState {
    /// Begins a write transaction and opens its tables.
    fn begin(state: &crate::state::State) -> Result<OpenState, StateError> {
        OpenState::try_new(state.begin_write(false)?, |txn| WriteTables::open(txn))
    }
}

impl Committer {
    pub(crate) fn new(now: Instant) -> Committer {
        Committer {
            groups_since_checkpoint: 0,
            last_checkpoint: now,
            txn: None,
            groups_in_txn: 0,
            hot: HotRows::new(),
        }
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("groups_since_checkpoint", &self.groups_since_checkpoint)
            .field("groups_in_txn", &self.groups_in_txn)
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
    Replay(u64),
    Done(Result<Outcome, Error>),
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

/// The queue of operations waiting for a group, and whether some caller is committing one.
#[derive(Default)]
pub(crate) struct Queue {
    pending: VecDeque<Pending>,
    leader_active: bool,
}

/// Held by the leader while it commits a group; its drop hands leadership back and wakes the
/// waiters, also if the commit panicked (a waiter then leads, rather than waiting forever).
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
            queue.leader_active = true;
            let count = queue.pending.len().min(inner.options.group_ops_max);
            let group: Vec<Pending> = queue.pending.drain(..count).collect();
            drop(queue);
            {
                let _leading = Leading(inner);
                let mut committer = inner
                    .committer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                inner.commit_group(&mut committer, group);
            }
            queue = inner.lock_queue();
        }
        drop(queue);
        slots
            .iter()
            .map(|slot| take(slot).unwrap_or_else(|| Err(LedgerError::Closed.into())))
            .collect()
    }
}

/// Transaction entries for validation: the group's own (not yet in the log) first, then the
/// log.
struct GroupEntries<'a> {
    log: &'a Log,
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

impl EntrySource for GroupEntries<'_> {
    fn transaction(&self, id: u64) -> Result<TransactionEntry, Error> {
        if let Some(tx) = self.staged_transaction(id) {
            return Ok(tx.clone());
        }
        read_transaction(self.log, id)
    }
}

/// Reads and decodes a transaction entry from the log.
pub(crate) fn read_transaction(log: &Log, id: u64) -> Result<TransactionEntry, Error> {
    let entry = log.read(id)?;
    match replay::decode_body(&entry)? {
        EntryBody::Transaction(tx) => Ok(tx),
        _ => Err(crate::state::StateError::Inconsistent {
            seq: id,
            detail: "the state names it as a transaction, the log does not".to_string(),
        }
        .into()),
    }
}

impl Inner {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Commits one group, filling every slot of it (or returning unprocessed operations to
    /// the front of the queue when the group's bytes would pass the log's batch bound).
    fn commit_group(&self, committer: &mut Committer, group: Vec<Pending>) {
        if let Some(refusal) = self.refusal() {
            for pending in &group {
                fill(&pending.slot, Err(refusal.clone().into()));
            }
            return;
        }
        let checkpoint = committer.groups_since_checkpoint + 1 >= self.options.checkpoint_groups
            || committer.last_checkpoint.elapsed() >= self.options.checkpoint_interval;
        match self.commit_group_inner(committer, group, checkpoint) {
            Ok(true) if checkpoint => {
                committer.groups_since_checkpoint = 0;
                committer.last_checkpoint = Instant::now();
            }
            Ok(_) => committer.groups_since_checkpoint += 1,
            Err(()) => {}
        }
    }

    /// Commits the open state transaction, if any (durably for a checkpoint). A failure
    /// poisons the ledger: redb latches I/O failures, and the log holds what was lost.
    pub(crate) fn commit_state_txn(
        &self,
        committer: &mut Committer,
        durable: bool,
    ) -> Result<(), crate::state::StateError> {
        committer.groups_in_txn = 0;
        self.state_pending.store(false, Ordering::SeqCst);
        let Some(mut open) = committer.txn.take() else {
            return Ok(());
        };
        if let Err(error) = open.with_dependent_mut(|_, tables| committer.hot.flush(tables)) {
            committer.hot.clear();
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(error);
        }
        let mut txn = open.into_owner();
        let committed = (|| {
            if durable {
                txn.set_durability(redb::Durability::Immediate)
                    .map_err(|error| StateError::from(redb::Error::from(error)))?;
                txn.set_quick_repair(true);
            }
            self.state.commit(txn)
        })();
        committed.inspect_err(|_| {
            // The flush marked the hot rows clean for a transaction that did not commit.
            committer.hot.clear();
            self.poisoned.store(true, Ordering::SeqCst);
        })
    }

    /// Drops the state transaction (aborting whatever it holds) and applies the `groups`
    /// committed groups it held again from the log, so that reads still see every write that
    /// returned Ok.
    fn drop_state_txn(&self, committer: &mut Committer, open: OpenState, groups: u32) {
        let _ = open.into_owner().abort();
        committer.hot.clear();
        committer.groups_in_txn = 0;
        self.state_pending.store(false, Ordering::SeqCst);
        if groups > 0 {
            self.reapply_dropped_groups();
        }
    }

    /// Applies the entries past the state's watermark from the log, as open does, or poisons
    /// the ledger.
    fn reapply_dropped_groups(&self) {
        let reapplied = (|| -> Result<(), Error> {
            let watermark = crate::state::StateView::watermark(&self.state.read_tables()?)?;
            let mut applier = crate::state::catchup::Applier::new(&self.state);
            replay::drive(
                &self.log,
                watermark.seq + 1,
                self.log.head().seq,
                &mut applier,
                &mut |_| {},
            )?;
            Ok(())
        })();
        if reapplied.is_err() {
            self.poisoned.store(true, Ordering::SeqCst);
        }
    }

    /// Returns Ok(whether a state transaction was committed), Err when the group failed (its
    /// slots are filled with the errors).
    fn commit_group_inner(
        &self,
        committer: &mut Committer,
        group: Vec<Pending>,
        checkpoint: bool,
    ) -> Result<bool, ()> {
        let fail_all = |group: &[Pending], error: &dyn Fn() -> Error| {
            for pending in group {
                fill(&pending.slot, Err(error()));
            }
        };
        let groups_before = committer.groups_in_txn;
        let opened = match committer.txn.take() {
            Some(open) => Ok(open),
            None => OpenState::begin(&self.state),
        };
        let mut open = match opened {
            Ok(open) => open,
            Err(error) => {
                // redb latches an I/O failure: only a reopen brings the state back.
                self.poisoned.store(true, Ordering::SeqCst);
                let detail = error.to_string();
                fail_all(&group, &|| {
                    LedgerError::Storage {
                        detail: detail.clone(),
                    }
                    .into()
                });
                return Err(());
            }
        };
        let now = (self.options.clock)();
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        let mut staged: Vec<Staged> = Vec::new();
        // Seq -> position in `staged`, for the group's transactions: a later operation of the
        // group may revert or repeat one.
        let mut staged_tx: HashMap<u64, usize> = HashMap::new();
        let head = self.log.head();
        let mut group = group;
        let mut unprocessed = Vec::new();
        // A failure of the state leaves the transaction with a partial write: nothing of
        // this group may stand (handled below, once the tables are closed).
        let hot = &mut committer.hot;
        let state_failure: Option<String> = open.with_dependent_mut(|_, tables| {
            let mut staged_state = StagedTables { tables, hot };
            let mut bytes_total = 0usize;
            for (position, pending) in group.iter().enumerate() {
                let seq = head.seq + 1 + bodies.len() as u64;
                let decision = {
                    let entries = GroupEntries {
                        log: &self.log,
                        staged: &staged,
                        positions: &staged_tx,
                    };
                    let ctx = Context {
                        view: &staged_state,
                        entries: &entries,
                        now,
                        seq,
                    };
                    validate::validate(&ctx, &pending.op)
                };
                let body = match decision {
                    Ok(Decision::Append(body)) => body,
                    Ok(Decision::Replay(id)) => {
                        staged.push(Staged::Replay(id));
                        continue;
                    }
                    Ok(Decision::Unchanged) => {
                        staged.push(Staged::Done(Ok(Outcome::Unchanged)));
                        continue;
                    }
                    Err(error) => {
                        staged.push(Staged::Done(Err(error)));
                        continue;
                    }
                };
                let encoded = match encode_bounded(&body) {
                    Ok(encoded) => encoded,
                    Err(error) => {
                        staged.push(Staged::Done(Err(error)));
                        continue;
                    }
                };
                let record_bytes = FRAME_PREFIX_BYTES + PAYLOAD_FIXED_BYTES + encoded.len();
                if bytes_total + record_bytes > BATCH_BYTES_MAX {
                    unprocessed = group.split_off(position);
                    break;
                }
                if let Err(error) = apply(&mut staged_state, seq, &body) {
                    return Some(error.to_string());
                }
                bytes_total += record_bytes;
                if let EntryBody::Transaction(_) = &body {
                    staged_tx.insert(seq, staged.len());
                }
                staged.push(Staged::Entry {
                    index: bodies.len(),
                    body,
                });
                bodies.push(encoded);
            }
            None
        });
        if let Some(detail) = state_failure {
            self.drop_state_txn(committer, open, groups_before);
            self.poisoned.store(true, Ordering::SeqCst);
            fail_all(&group, &|| {
                LedgerError::Storage {
                    detail: detail.clone(),
                }
                .into()
            });
            self.requeue(unprocessed);
            return Err(());
        }
        self.requeue(unprocessed);
        if bodies.is_empty() {
            // Validation only reads: the transaction holds what it held before this group.
            committer.txn = Some(open);
            self.deliver(&group, staged, &[], &staged_tx);
            return Ok(false);
        }
        let appended = match self.log.append(&bodies) {
            Ok(appended) => appended,
            Err(error) => {
                // The group's writes cannot be taken out of the transaction alone.
                self.drop_state_txn(committer, open, groups_before);
                self.fail_append(&group, staged, &error);
                return Err(());
            }
        };
        let committed = self.finish_state(committer, open, &appended, checkpoint);
        self.deliver(&group, staged, &appended, &staged_tx);
        Ok(committed)
    }

    /// Records the watermark, then commits the state transaction (durably for a checkpoint)
    /// or leaves it open for the next groups. Returns whether it committed. The log already
    /// holds the group, so a failure here loses nothing, but the state is now behind: refuse
    /// writes until a reopen catches it up.
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
            hot.write_cold(tables)?;
            set_watermark(tables, watermark)
        });
        if recorded.is_err() {
            self.drop_state_txn(committer, open, committer.groups_in_txn);
            self.poisoned.store(true, Ordering::SeqCst);
            return false;
        }
        committer.txn = Some(open);
        committer.groups_in_txn += 1;
        if checkpoint || committer.groups_in_txn >= self.options.state_commit_groups {
            return self.commit_state_txn(committer, checkpoint).is_ok();
        }
        // Set before the callers learn their results, so that a read they make next sees
        // the flag and settles the state first.
        self.state_pending.store(true, Ordering::SeqCst);
        false
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
        let make: Box<dyn Fn() -> Error> = match error {
            LogError::NoSpace { source } => {
                let detail = source.to_string();
                Box::new(move || {
                    LedgerError::NoSpace {
                        detail: detail.clone(),
                    }
                    .into()
                })
            }
            LogError::OutcomeUnknown { .. } | LogError::Poisoned => {
                self.poisoned.store(true, Ordering::SeqCst);
                let detail = error.to_string();
                Box::new(move || {
                    LedgerError::OutcomeUnknown {
                        detail: detail.clone(),
                    }
                    .into()
                })
            }
            other => {
                let detail = other.to_string();
                Box::new(move || {
                    LedgerError::Storage {
                        detail: detail.clone(),
                    }
                    .into()
                })
            }
        };
        for (pending, staged) in group.iter().zip(staged) {
            let result = match staged {
                Staged::Done(result) => result,
                Staged::Entry { .. } | Staged::Replay(_) => Err(make()),
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
        let mut replays: Vec<Option<Result<Outcome, Error>>> = staged
            .iter()
            .map(|staged| match staged {
                Staged::Replay(id) => Some(self.replayed(*id, appended, &entries)),
                _ => None,
            })
            .collect();
        for ((pending, staged), replay) in group.iter().zip(staged).zip(&mut replays) {
            let result = match (staged, replay.take()) {
                (Staged::Done(result), _) => result,
                (Staged::Entry { index, body }, _) => Ok(outcome_of(&appended[index], body)),
                (Staged::Replay(_), Some(result)) => result,
                (Staged::Replay(id), None) => unreachable!("repeat of {id} has no result"),
            };
            fill(&pending.slot, result);
        }
    }

    /// The original receipt of transaction `id`, marked replayed.
    fn replayed(
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
