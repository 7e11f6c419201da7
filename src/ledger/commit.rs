//! Group commit, pipelined. Callers queue their operations; one caller at a time leads and
//! takes everything queued as a group: it validates each operation in queue order (each
//! against the state the earlier ones left, inside one redb write transaction), has the log
//! prepare the accepted entries (hashed, framed, their place reserved: every clean failure,
//! a full disk included, happens here), records the new watermark and commits the state
//! transaction *held*: readers do not see it yet. Then it hands leadership on and lands the
//! group: the log writes it with one write and one fsync (the commit point), after every
//! group before it; the held state is published to readers, and each caller gets its result.
//! So group N+1 is validated and encoded by the next leader while group N's write and fsync
//! run (TigerBeetle's pipeline), and no read sees a group before its fsync returned.
//!
//! A group that makes a checkpoint (a durable state commit) is not pipelined: its state must
//! never be durable before its entries, so it commits after its own write. A failed write or
//! fsync poisons the ledger, leaves the outcome unknown for its group and for every group
//! prepared after it, and fences the state file, so that the state commits held for those
//! groups never become durable (`docs/ledger.md` §11). One rejected operation never fails the
//! others; a panic inside a group poisons the ledger and fails every operation of the group.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::read::receipt_of;
use super::syncer::PendingWrite;
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
use crate::state::apply::{apply, decode_transaction, set_watermark};
use crate::state::hot::{HotRows, StagedTables};
use crate::state::{Held, StateError, Watermark, WriteTables, panic_text};

/// What a write returns: a receipt for transactions, the entry's place for the rest.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Receipt(Receipt),
    Committed(Committed),
    /// Nothing was appended: the operation changed nothing (a repeated ack).
    Unchanged,
}

type Slot = Arc<Mutex<Option<Result<Outcome, Error>>>>;

/// A queued operation, where its result goes, and how to wake the caller waiting for it.
pub(crate) struct Pending {
    op: Op,
    slot: Slot,
    /// The submitting caller's own condition variable (used with the queue's mutex): it is
    /// woken when its results are in or when it may lead, never for other callers' groups.
    waker: Arc<Condvar>,
}

/// The checkpoint bookkeeping, the hot rows and the groups in flight, guarded by the
/// committer lock (held by the leader while it validates and prepares a group).
///
/// Every group commits its own state (redb) write transaction, with `Durability::None`
/// between checkpoints (the log, fsynced per group, is the commit point); readers see it once
/// the group's fsync returned. What a crash takes from the non-durable commits is re-applied
/// from the log on open, like any entry past the watermark.
pub(crate) struct Committer {
    groups_since_checkpoint: u32,
    last_checkpoint: Instant,
    /// Volumes and posting sequences as the last state commit left them (a cache in front of
    /// the tables), plus, within a group, the rows it changed; written before it commits.
    hot: HotRows,
    /// The encoded entries of groups prepared but maybe not yet durable, by first seq: a later
    /// group may revert or repeat one of their transactions before the log can read it.
    in_flight: Vec<(u64, Vec<Vec<u8>>)>,
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
            in_flight: Vec::new(),
        }
    }

    /// Forgets what the committer caches, after a group failed half-way: the hot rows are
    /// read again from the tables.
    fn forget(&mut self) {
        self.hot.clear();
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

/// A group its leader has validated, prepared and (unless it appends nothing) committed held,
/// to be landed once leadership is handed on.
struct Flight {
    group: Vec<Pending>,
    staged: Vec<Staged>,
    staged_tx: HashMap<u64, usize>,
    landing: Landing,
}

enum Landing {
    /// Nothing to append: the results stand once every entry prepared before the group (which
    /// they may repeat, or have been judged against) is durable, up to this seq.
    Settle { seq: u64 },
    /// Wait for the entries' write (under way on the writer thread), then publish the held
    /// state.
    Write { write: PendingWrite, held: Held },
    /// Written and committed already (a checkpoint group), or failed: deliver these.
    Done { appended: Vec<Appended> },
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

/// The queue of operations waiting for a group, whether some caller is leading one, and how
/// many groups are landing (their operations neither queued nor settled).
#[derive(Default)]
pub(crate) struct Queue {
    pending: VecDeque<Pending>,
    leader_active: bool,
    landing: usize,
}

/// Held by the leader while it validates and prepares a group; its drop hands leadership back
/// (counting the group as landing when it has one) and wakes the caller of the first queued
/// operation, to lead the next group.
struct Leading<'a> {
    inner: &'a Inner,
    landing: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut queue = self.inner.lock_queue();
        queue.leader_active = false;
        queue.landing += usize::from(self.landing);
        if let Some(next) = queue.pending.front() {
            next.waker.notify_one();
        }
    }
}

/// The distinct callers of a group's operations.
fn wakers_of(group: &[Pending]) -> Vec<Arc<Condvar>> {
    let mut wakers: Vec<Arc<Condvar>> = Vec::new();
    for pending in group {
        if !wakers
            .iter()
            .any(|waker| Arc::ptr_eq(waker, &pending.waker))
        {
            wakers.push(pending.waker.clone());
        }
    }
    wakers
}

impl Ledger {
    /// Queues operations and returns their results in order, once they are committed. One
    /// caller at a time leads: it takes what is queued, validates and prepares it as a group,
    /// hands leadership on, and lands the group (its write and fsync) while the next leader
    /// prepares the next one. The others wait, each on its own condition variable: a waiter is
    /// woken when a group settled its operations (and returns at once) or when it may lead.
    pub(crate) fn submit(&self, ops: Vec<Op>) -> Vec<Result<Outcome, Error>> {
        let inner = &self.inner;
        let slots: Vec<Slot> = ops.iter().map(|_| Arc::new(Mutex::new(None))).collect();
        let waker = Arc::new(Condvar::new());
        let mut queue = inner.lock_queue();
        for (op, slot) in ops.into_iter().zip(&slots) {
            queue.pending.push_back(Pending {
                op,
                slot: slot.clone(),
                waker: waker.clone(),
            });
        }
        while !slots.iter().all(is_filled) {
            if !queue.leader_active && !queue.pending.is_empty() {
                queue.leader_active = true;
                let count = queue.pending.len().min(inner.options.group_ops_max);
                let group: Vec<Pending> = queue.pending.drain(..count).collect();
                drop(queue);
                inner.lead(group);
                queue = inner.lock_queue();
                continue;
            }
            if queue.leader_active || queue.landing > 0 {
                queue = waker
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Every group fills each slot it took (a panic included), so an unfilled slot is
            // always queued, in a group being led, or in one landing; never spin on one that
            // is none of these.
            debug_assert!(false, "an operation is neither queued nor settled");
            break;
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

/// Transaction entries for validation: the group's own (not yet in the log) first, then those
/// of the groups in flight, then the log.
struct GroupEntries<'a> {
    log: &'a LogReader,
    staged: &'a [Staged],
    /// Seq -> position in `staged` of the group's transaction entries.
    positions: &'a HashMap<u64, usize>,
    in_flight: &'a [(u64, Vec<Vec<u8>>)],
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

    /// Transaction `id` from a group in flight: `Some(None)` when the entry is there but not a
    /// transaction, `None` when no group in flight holds it.
    fn in_flight_transaction(
        &self,
        id: u64,
    ) -> Option<Result<Option<TransactionEntry>, ViewError>> {
        let (first_seq, bodies) = self.in_flight.iter().find(|(first_seq, bodies)| {
            (*first_seq..*first_seq + bodies.len() as u64).contains(&id)
        })?;
        Some(decode_transaction(id, &bodies[(id - first_seq) as usize]))
    }
}

impl TransactionLookup for GroupEntries<'_> {
    fn transaction(&self, id: u64) -> Result<Option<TransactionEntry>, ViewError> {
        if let Some(tx) = self.staged_transaction(id) {
            return Ok(Some(tx.clone()));
        }
        if let Some(found) = self.in_flight_transaction(id) {
            return found;
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
    /// (`lead_guarded`), but should one have escaped with the lock held, nothing the committer
    /// holds is trusted again: the ledger is poisoned and the hot rows forgotten.
    pub(crate) fn lock_committer(&self) -> MutexGuard<'_, Committer> {
        match self.committer.lock() {
            Ok(committer) => committer,
            Err(poisoned) => {
                let mut committer = poisoned.into_inner();
                self.poison();
                committer.forget();
                committer
            }
        }
    }

    /// Refuses every later write until the store is reopened.
    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Poisons the ledger after a write of the log failed or was refused, and fences the state:
    /// it may hold commits of groups whose entries will never be durable, which must not
    /// become durable either (the log past the last checkpoint is applied again on open).
    fn poison_fenced(&self) {
        self.poison();
        self.state.fence();
    }

    fn refusal(&self) -> Option<LedgerError> {
        if self.reader {
            Some(LedgerError::OpenForReading)
        } else if self.closed.load(Ordering::SeqCst) {
            Some(LedgerError::Closed)
        } else if self.poisoned.load(Ordering::SeqCst) {
            Some(LedgerError::Poisoned)
        } else {
            None
        }
    }

    /// Leads one group: validates and prepares it under the committer lock, hands leadership
    /// on, then lands it. Returns once every slot of the group is filled (or its unprocessed
    /// operations are back in the queue).
    fn lead(&self, group: Vec<Pending>) {
        let wakers = wakers_of(&group);
        let flight = {
            let mut leading = Leading {
                inner: self,
                landing: false,
            };
            let mut committer = self.lock_committer();
            let flight = self.prepare_group_guarded(&mut committer, group);
            leading.landing = flight.is_some();
            flight
        };
        let landed = flight.map(|flight| self.land_guarded(flight)).is_some();
        // Under the queue's lock, so that no waiter checks its slots between their filling
        // and this wakeup.
        let mut queue = self.lock_queue();
        queue.landing -= usize::from(landed);
        for waker in wakers {
            waker.notify_one();
        }
        if !queue.leader_active
            && let Some(next) = queue.pending.front()
        {
            next.waker.notify_one();
        }
    }

    /// Validates and prepares one group, turning a panic inside it (a user's clock, or a bug)
    /// into a poisoned ledger and an `OutcomeUnknown` for each of the group's operations that
    /// has no result yet: unwinding has aborted the group's state transaction, its hot rows
    /// are forgotten, and whether its entries reached the log is not known here (the log's
    /// writes are poisoned too, so that no group waits for a batch that was never written).
    fn prepare_group_guarded(
        &self,
        committer: &mut Committer,
        group: Vec<Pending>,
    ) -> Option<Flight> {
        let slots: Vec<Slot> = group.iter().map(|pending| pending.slot.clone()).collect();
        let prepared = catch_unwind(AssertUnwindSafe(|| self.prepare_group(committer, group)));
        let panic = match prepared {
            Ok(flight) => return flight,
            Err(panic) => panic,
        };
        committer.forget();
        self.after_panic(&slots, "committing", &*panic);
        None
    }

    /// After a panic in a group: the log's writes are poisoned (no group waits for a batch
    /// that may never be written), the ledger poisoned and its state fenced, and each of the
    /// group's operations without a result gets `OutcomeUnknown`.
    fn after_panic(&self, slots: &[Slot], doing: &str, panic: &(dyn std::any::Any + Send)) {
        self.log.poison_writes();
        self.poison_fenced();
        let error = LedgerError::OutcomeUnknown {
            detail: format!("a panic while {doing} a group: {}", panic_text(panic)),
        };
        for slot in slots.iter().filter(|slot| !is_filled(slot)) {
            fill(slot, Err(error.clone().into()));
        }
    }

    /// Lands a group, turning a panic into a poisoned, fenced ledger and an `OutcomeUnknown`
    /// for each operation without a result.
    fn land_guarded(&self, flight: Flight) {
        let slots: Vec<Slot> = flight.group.iter().map(|p| p.slot.clone()).collect();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.land(flight))) {
            self.after_panic(&slots, "landing", &*panic);
        }
    }

    /// Validates and prepares one group; `None` when it is settled already (every slot filled,
    /// or its unprocessed operations requeued), else the flight to land.
    fn prepare_group(&self, committer: &mut Committer, group: Vec<Pending>) -> Option<Flight> {
        if let Some(refusal) = self.refusal() {
            fail_all(&group, &refusal);
            return None;
        }
        let due = committer.groups_since_checkpoint + 1 >= self.options.checkpoint_groups
            || committer.last_checkpoint.elapsed() >= self.options.checkpoint_interval;
        // A checkpoint rewrites the state that readers read (`docs/ledger.md`, "Readers beside
        // a writer"): put off, to the next group, while any reader holds the store.
        let readers_out = if due {
            crate::store::try_exclude_readers(&*self.vfs, &self.dir)
        } else {
            None
        };
        let checkpoint = readers_out.is_some();
        let durable_seq = self.log.head().seq;
        committer
            .in_flight
            .retain(|(first_seq, bodies)| first_seq + bodies.len() as u64 - 1 > durable_seq);
        let flight = self.prepare_group_inner(committer, group, checkpoint);
        drop(readers_out);
        let flight = flight?;
        match &flight.landing {
            Landing::Done { appended } if checkpoint && !appended.is_empty() => {
                committer.groups_since_checkpoint = 0;
                committer.last_checkpoint = Instant::now();
            }
            Landing::Write { .. } => committer.groups_since_checkpoint += 1,
            _ => {}
        }
        Some(flight)
    }

    /// Begins the group's state transaction, validates and applies its operations and has the
    /// log prepare the accepted entries; then commits the state held (or, for a checkpoint,
    /// writes the entries and commits it durably). `None` when the group failed (its slots
    /// are filled with the errors).
    fn prepare_group_inner(
        &self,
        committer: &mut Committer,
        mut group: Vec<Pending>,
        checkpoint: bool,
    ) -> Option<Flight> {
        let mut open = match OpenState::begin(&self.state, checkpoint) {
            Ok(open) => open,
            Err(error) => {
                // redb latches an I/O failure: only a reopen brings the state back.
                self.poison();
                let detail = error.to_string();
                fail_all(&group, &LedgerError::Storage { detail });
                return None;
            }
        };
        let now = (self.options.clock)();
        let staging = match self.stage(&mut open, committer, &mut group, now) {
            Ok(staging) => staging,
            Err(detail) => {
                // A failure of the state leaves the transaction with a partial write: nothing
                // of this group may stand.
                drop(open);
                committer.forget();
                self.poison();
                fail_all(&group, &LedgerError::Storage { detail });
                return None;
            }
        };
        let Staging {
            bodies,
            staged,
            staged_tx,
            unprocessed,
        } = staging;
        self.requeue(unprocessed);
        let mut flight = Flight {
            group,
            staged,
            staged_tx,
            landing: Landing::Settle {
                seq: self.log.prepared_head().seq,
            },
        };
        if bodies.is_empty() {
            // Validation only read: nothing to append or commit.
            return Some(flight);
        }
        let prepared = match self.log.prepare(&bodies) {
            Ok(prepared) => prepared,
            Err(error) => {
                // The group's rows are in the transaction and the hot rows: both go.
                drop(open);
                committer.forget();
                self.fail_append(&flight.group, flight.staged, &error);
                return None;
            }
        };
        flight.landing = if checkpoint {
            // Its state must never be durable before its entries: written first.
            match self.log.write(prepared) {
                Ok(appended) => {
                    self.finish_state(committer, open, &appended);
                    Landing::Done { appended }
                }
                Err(error) => {
                    drop(open);
                    committer.forget();
                    self.poison_fenced();
                    self.fail_append(&flight.group, flight.staged, &error);
                    return None;
                }
            }
        } else {
            let first_seq = prepared.appended().first().map_or(0, |first| first.seq);
            let watermark = watermark_of(prepared.appended());
            // The write and fsync run on the writer thread from here on, while this one
            // commits the group's state.
            let write = self.syncer.send(prepared);
            match self.commit_held(committer, open, watermark) {
                Ok(held) => {
                    committer.in_flight.push((first_seq, bodies));
                    Landing::Write { write, held }
                }
                Err(_) => return self.held_commit_failed(committer, flight, write),
            }
        };
        Some(flight)
    }

    /// The group's held state commit failed while its entries were on their way to the log.
    /// redb latches the failure: the ledger is poisoned. If the entries became durable, the
    /// callers get their receipts, and reads are refused (`StateBehind`) until a reopen, since
    /// the state lacks the group (catching it up here could apply again what the groups still
    /// in flight hold); if not, the group fails as a failed write does.
    fn held_commit_failed(
        &self,
        committer: &mut Committer,
        mut flight: Flight,
        write: PendingWrite,
    ) -> Option<Flight> {
        committer.forget();
        self.poison();
        match write.finish(&self.log) {
            Ok(appended) => {
                self.state_behind.store(true, Ordering::SeqCst);
                flight.landing = Landing::Done { appended };
                Some(flight)
            }
            Err(log_error) => {
                self.poison_fenced();
                self.fail_append(&flight.group, flight.staged, &log_error);
                None
            }
        }
    }

    /// Records the group's hot rows and its watermark (the last entry's seq and `block_hash`)
    /// and commits its state held: readers see it once it is published.
    fn commit_held(
        &self,
        committer: &mut Committer,
        mut open: OpenState,
        watermark: Watermark,
    ) -> Result<Held, StateError> {
        let hot = &mut committer.hot;
        open.with_dependent_mut(|_, tables| {
            hot.flush(tables)?;
            set_watermark(tables, watermark)
        })?;
        self.state.commit_held(open.into_owner())
    }

    /// Lands a group: waits for (or makes) its entries durable, publishes its state and hands
    /// out the results.
    fn land(&self, flight: Flight) {
        let Flight {
            group,
            staged,
            staged_tx,
            landing,
        } = flight;
        let appended = match landing {
            Landing::Done { appended } => appended,
            Landing::Settle { seq } => {
                if let Err(error) = self.log.wait_durable(seq) {
                    // What the repeats repeat may never be durable.
                    self.fail_append(&group, staged, &error);
                    return;
                }
                Vec::new()
            }
            Landing::Write { write, held } => match write.finish(&self.log) {
                Ok(appended) => {
                    self.state.publish(held);
                    appended
                }
                Err(error) => {
                    self.poison_fenced();
                    self.fail_append(&group, staged, &error);
                    return;
                }
            },
        };
        self.deliver(&group, staged, &appended, &staged_tx);
    }

    /// Validates each operation of `group` in order against the tables as the earlier ones
    /// left them, encodes the accepted entries and applies them to the transaction. The
    /// operations past the log's batch bound are split off `group` into `unprocessed`. Err
    /// (with what failed) when applying an accepted entry failed: the transaction then holds a
    /// partial write.
    fn stage(
        &self,
        open: &mut OpenState,
        committer: &mut Committer,
        group: &mut Vec<Pending>,
        now: i64,
    ) -> Result<Staging, String> {
        // The group chains after every group prepared before it, durable or not.
        let head = self.log.prepared_head();
        let Committer { hot, in_flight, .. } = committer;
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
                        in_flight,
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
                    in_flight,
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

    /// Writes a checkpoint group's hot rows and watermark into its transaction and commits it
    /// durably, before any caller learns its result. The log already holds the group, so a
    /// failure here loses nothing; the ledger is poisoned (redb latches I/O failures) and the
    /// state caught up from the log, so that reads still show the group.
    fn finish_state(&self, committer: &mut Committer, mut open: OpenState, appended: &[Appended]) {
        let watermark = watermark_of(appended);
        let hot = &mut committer.hot;
        let recorded = open.with_dependent_mut(|_, tables| {
            hot.flush(tables)?;
            set_watermark(tables, watermark)
        });
        let committed = recorded.and_then(|()| self.state.commit(open.into_owner()));
        if committed.is_ok() {
            return;
        }
        // The flush marked rows clean for a transaction that did not commit.
        committer.forget();
        self.poison();
        self.catch_up_state();
    }

    /// Applies the entries past the state's watermark from the log, as open does, after a
    /// state commit failed; if even that fails, reads are refused (`StateBehind`) until a
    /// reopen, rather than answered without entries that were acknowledged.
    fn catch_up_state(&self) {
        let caught_up = (|| -> Result<(), Error> {
            let watermark = crate::state::StateReads::watermark(&self.state.read_tables()?)?;
            let mut applier = crate::replay::Applier::new(&self.state, &**self.log);
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
        // Every group before this one is durable by now: the log reads their entries.
        let entries = GroupEntries {
            log: &self.log,
            staged: &staged,
            positions: staged_tx,
            in_flight: &[],
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

/// The watermark after a batch: its last entry's seq and `block_hash` (a batch is never empty
/// here).
fn watermark_of(appended: &[Appended]) -> Watermark {
    let last = appended.last();
    debug_assert!(last.is_some(), "a watermark of an empty batch");
    Watermark {
        seq: last.map_or(0, |last| last.seq),
        block_hash: last.map_or(crate::log::HASH_ZERO, |last| last.block_hash),
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
