//! The ledger oracle: a plain in-memory model of the ledger (balances and volumes, posting
//! sequences, references and their replays and conflicts, overdraft policies, reverts, account
//! and transaction metadata and their bounds) and the ledger under test on the simulated disk,
//! run side by side over a sequence of operations. After every operation the outcome (receipt
//! fields, entry seq, or error code) and the balances agree with the model; after every account
//! metadata change that account does; after every reopen and crash (each opened twice, the
//! second open finding nothing to do) and at the end the accounts, transactions and the state
//! (against a replay of the log) do too, the log verifies, and per ledger and asset the
//! balances sum to zero. Nothing may panic.
//!
//! Its users: `tests/ledger_model.rs` draws the operations with proptest; the `ledger_ops` fuzz
//! target (`fuzz/fuzz_targets/ledger_ops.rs`) and its seed-corpus test
//! (`tests/fuzz_corpus_ledger.rs`) decode them from bytes (with `arbitrary`, `decode`).
//!
//! The model keeps amounts as `i128` thousandths (no operation writes more than 3 decimal
//! places), so its sums are exact and its idea of "fits a `Decimal`" is written independently
//! of the ledger's.

#![allow(clippy::unwrap_used, reason = "a check fails on any error")]
#![allow(dead_code, reason = "each user runs the part it needs")]
#![allow(
    clippy::result_large_err,
    reason = "the closures return the public API's own `Result<_, folio::Error>`"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{
    Error, Ledger, LedgerOptions, Metadata, Overdraft, PostRequest, Posting, Receipt,
    RevertRequest, Timestamp,
};
use rust_decimal::Decimal;

/// The store directory on the simulated disk.
pub const STORE: &str = "/store";
pub const LEDGERS: [&str; 2] = ["main", "shop"];
/// `world` first: the only account that may always send.
pub const ACCOUNTS: [&str; 5] = ["world", "till:1", "till:2", "bank", "fees:card"];
/// Each asset with its declared scale; `EUR` declares none, so any precision is accepted.
pub const ASSETS: [(&str, Option<u32>); 3] =
    [("USD/2", Some(2)), ("JPY/0", Some(0)), ("EUR", None)];
/// Asset picks: below `EUR`, `ASSETS[pick % 2]`; at or above it, `EUR` (about 1 in 8). (A
/// third asset by `pick % 3` would have changed what the kept fuzzer finds decode to.)
pub const USD: u8 = 0;
pub const JPY: u8 = 1;
pub const EUR: u8 = 224;
/// Most operations one input runs; the rest of a longer input is ignored.
pub const OPS_MAX: usize = 32;
/// Most postings one request carries; further decoded postings are ignored.
pub const POSTINGS_MAX: usize = 4;
/// An `AmountSpec::scale` at or above this picks one of `HUGE` (about 1 amount in 32).
pub const HUGE_SCALE_MIN: u8 = 248;
/// Huge amounts as (mantissa, scale): `Decimal::MAX`, and others near the 96-bit bound.
pub const HUGE: [(i128, u32); 5] = [
    ((1 << 96) - 1, 0),
    ((1 << 96) - 1, 2),
    (10_000_000_000_000_000_000_000_000_000, 0),
    (1 << 95, 0),
    (100_000_000_000_000_000_000_000_007, 2),
];
/// A metadata `value` byte at or above this writes a long value (`(value - 239) * 300`
/// bytes), so that single values and merged maps pass their bounds.
pub const LONG_VALUE_MIN: u8 = 240;

/// One operation, as decoded from the fuzzer's bytes. Small integers pick among the fixed
/// ledgers, accounts, assets, keys and references, so that operations collide often.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    Post {
        ledger: u8,
        postings: Vec<PostingSpec>,
        reference: Option<u8>,
        dated: bool,
    },
    /// Sends an earlier post request again, unchanged.
    Repeat {
        pick: u8,
    },
    /// Sends an earlier post request again with its first amount changed.
    Conflict {
        pick: u8,
    },
    Revert {
        ledger: u8,
        target: u8,
        force: bool,
        reference: Option<u8>,
    },
    SetAccountMetadata {
        ledger: u8,
        account: u8,
        key: u8,
        value: u8,
    },
    DeleteAccountMetadata {
        ledger: u8,
        account: u8,
        key: u8,
    },
    SetTransactionMetadata {
        ledger: u8,
        target: u8,
        key: u8,
        value: u8,
    },
    DeleteTransactionMetadata {
        ledger: u8,
        target: u8,
        key: u8,
    },
    SetOverdraft {
        ledger: u8,
        account: u8,
        asset: u8,
        policy: u8,
        limit: AmountSpec,
    },
    /// Close and open again.
    Reopen,
    /// The process dies while idle: every write made so far survives.
    ProcessCrash,
    /// Power is lost while idle, as a write (account metadata `x`=`y` on `main`/`bank`)
    /// reaches its first mutating call: what was not synced may be lost or torn, and the
    /// write, never acknowledged, is in the state wholly or not at all.
    PowerLoss {
        seed: u8,
    },
    /// The process dies or power is lost `steps` mutating calls into a post with a fresh
    /// reference; the post is settled by retrying it after reopening.
    CrashDuringPost {
        ledger: u8,
        postings: Vec<PostingSpec>,
        steps: u8,
        power_loss: bool,
        seed: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct PostingSpec {
    /// Below 96: `world`; otherwise `ACCOUNTS[source % 5]`.
    pub source: u8,
    pub destination: u8,
    pub amount: AmountSpec,
    /// See `USD`, `JPY` and `EUR`.
    pub asset: u8,
}

impl PostingSpec {
    /// `amount` of `asset` from `ACCOUNTS[source]` to `ACCOUNTS[destination]`.
    pub fn between(source: u8, destination: u8, amount: AmountSpec, asset: u8) -> PostingSpec {
        PostingSpec {
            // Below 96 always picks world; 100 + i picks ACCOUNTS[i].
            source: 100 + source,
            destination,
            amount,
            asset,
        }
    }
}

/// `units / 10^(scale % 4)`, not normalized; or, with `scale >= HUGE_SCALE_MIN`,
/// `HUGE[units % 5]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub struct AmountSpec {
    pub units: u16,
    pub scale: u8,
}

impl AmountSpec {
    pub fn decimal(self) -> Decimal {
        if self.scale >= HUGE_SCALE_MIN {
            let (mantissa, scale) = HUGE[usize::from(self.units) % HUGE.len()];
            Decimal::from_i128_with_scale(mantissa, scale)
        } else {
            Decimal::new(i64::from(self.units), u32::from(self.scale % 4))
        }
    }
}

/// Decodes up to `OPS_MAX` operations; decoding stops at the first that the bytes cannot make.
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut input = Unstructured::new(bytes);
    let mut ops = Vec::new();
    let Ok(iter) = input.arbitrary_iter::<Op>() else {
        return ops;
    };
    for op in iter {
        match op {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
        if ops.len() == OPS_MAX {
            break;
        }
    }
    ops
}

/// Decodes `bytes` and runs the operations against the ledger and the model (see the module
/// doc). Returns the operations run, for the seed tests.
pub fn check_ledger_ops(bytes: &[u8]) -> Vec<Op> {
    let ops = decode(bytes);
    run(&ops);
    ops
}

/// Runs `ops` against a fresh ledger and a fresh model, checking at every step.
pub fn run(ops: &[Op]) {
    let mut subject = Subject::create();
    let mut model = Model::new();
    for op in ops {
        step(&mut subject, &mut model, op);
        check_balances(&model, subject.ledger());
    }
    check_everything(&model, subject.ledger());
    let difference = subject.ledger().state_difference().unwrap();
    assert_eq!(difference, None, "state differs from a replay at the end");
    let report = subject.ledger().verify(&[]).unwrap();
    assert!(report.ok, "verify failed: {report:?}");
    subject.ledger().close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Amounts in the model.

/// Thousandths of a unit: every amount an operation writes has at most 3 decimal places.
type Milli = i128;
const MILLI_SCALE: u32 = 3;

/// `milli` with trailing zeros of its fraction removed: (mantissa, scale).
fn normalized(milli: Milli) -> (i128, u32) {
    let (mut mantissa, mut scale) = (milli, MILLI_SCALE);
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    (mantissa, scale)
}

/// Whether a `Decimal` holds `milli` exactly: its normalized mantissa fits in 96 bits.
fn fits(milli: Milli) -> bool {
    normalized(milli).0.unsigned_abs() < 1 << 96
}

/// Whether `milli` has more decimal places than an asset's declared scale (if it has one).
fn too_precise(milli: Milli, scale: Option<u32>) -> bool {
    scale.is_some_and(|scale| normalized(milli).1 > scale)
}

fn to_decimal(milli: Milli) -> Decimal {
    let (mantissa, scale) = normalized(milli);
    Decimal::from_i128_with_scale(mantissa, scale)
}

fn to_milli(amount: Decimal) -> Milli {
    assert!(
        amount.scale() <= MILLI_SCALE,
        "amount {amount} past the model's scale"
    );
    amount.mantissa() * 10i128.pow(MILLI_SCALE - amount.scale())
}

fn ledger_name(pick: u8) -> &'static str {
    LEDGERS[usize::from(pick) % LEDGERS.len()]
}

fn account_name(pick: u8) -> &'static str {
    ACCOUNTS[usize::from(pick) % ACCOUNTS.len()]
}

fn source_name(pick: u8) -> &'static str {
    if pick < 96 {
        ACCOUNTS[0]
    } else {
        account_name(pick)
    }
}

fn asset_of(pick: u8) -> (&'static str, Option<u32>) {
    if pick >= EUR {
        ASSETS[2]
    } else {
        ASSETS[usize::from(pick) % 2]
    }
}

fn reference_name(pick: u8) -> String {
    format!("ref-{}", pick % 16)
}

fn key_name(pick: u8) -> String {
    format!("k{}", pick % 4)
}

fn value_text(pick: u8) -> String {
    if pick >= LONG_VALUE_MIN {
        "x".repeat(usize::from(pick - LONG_VALUE_MIN + 1) * 300)
    } else {
        format!("v{pick}")
    }
}

/// The effective time of dated requests.
const DATED_AT: i64 = 1_767_254_400_000_000;

fn post_request(
    ledger: u8,
    postings: &[PostingSpec],
    reference: Option<String>,
    dated: bool,
) -> PostRequest {
    let postings = postings
        .iter()
        .take(POSTINGS_MAX)
        .map(|spec| Posting {
            source: source_name(spec.source).to_string(),
            destination: account_name(spec.destination).to_string(),
            amount: spec.amount.decimal(),
            asset: asset_of(spec.asset).0.to_string(),
        })
        .collect();
    let mut request = PostRequest::new(ledger_name(ledger), postings);
    request.reference = reference;
    if dated {
        request.timestamp = Some(Timestamp(DATED_AT));
    }
    request
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelPosting {
    source: String,
    destination: String,
    amount: Milli,
    asset: String,
}

#[derive(Debug, Clone)]
struct ModelTx {
    ledger: String,
    postings: Vec<ModelPosting>,
    reverts: Option<u64>,
    reverted_by: Option<u64>,
    metadata: Metadata,
}

/// A reference's first use, in canonical form (amounts compare by value).
#[derive(Debug, Clone, PartialEq, Eq)]
enum UsedBy {
    Post {
        postings: Vec<ModelPosting>,
        timestamp: Option<i64>,
    },
    Revert {
        id: u64,
        force: bool,
    },
}

/// Per (account, asset) a transaction touches: (pre input, pre output, post input, post
/// output).
type Changes = BTreeMap<(String, String), (Milli, Milli, Milli, Milli)>;

/// What the model expects of a post or revert.
#[derive(Debug)]
enum Expect {
    Posted {
        id: u64,
        ledger: String,
        postings: Vec<ModelPosting>,
        reverts: Option<u64>,
        changes: Changes,
        posting_seqs: BTreeMap<String, u64>,
    },
    /// The original receipt of this id again.
    Replayed {
        id: u64,
    },
    Rejected {
        code: &'static str,
    },
}

/// An overdraft policy other than the default (none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Bounded(Milli),
    Unbounded,
}

#[derive(Default)]
struct Model {
    seq_next: u64,
    /// (ledger, account, asset) -> (input, output).
    volumes: BTreeMap<(String, String, String), (Milli, Milli)>,
    policies: BTreeMap<(String, String, String), Policy>,
    /// Known accounts, (ledger, account) -> posting sequence.
    accounts: BTreeMap<(String, String), u64>,
    account_metadata: BTreeMap<(String, String), Metadata>,
    references: BTreeMap<(String, String), (u64, UsedBy)>,
    txs: BTreeMap<u64, ModelTx>,
    receipts: BTreeMap<u64, Receipt>,
    posts_sent: Vec<PostRequest>,
    crash_posts: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            seq_next: 2,
            ..Model::default()
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.seq_next;
        self.seq_next += 1;
        seq
    }

    /// The transaction an operation names: one of the model's, or (rarely, or when there is
    /// none) a raw id that may be no transaction at all.
    fn target_id(&self, target: u8) -> u64 {
        let ids: Vec<u64> = self.txs.keys().copied().collect();
        if target < 224 && !ids.is_empty() {
            ids[usize::from(target) % ids.len()]
        } else {
            u64::from(target % 32)
        }
    }

    fn tx_in(&self, ledger: &str, id: u64) -> Option<&ModelTx> {
        self.txs.get(&id).filter(|tx| tx.ledger == ledger)
    }

    fn floor(&self, ledger: &str, account: &str, asset: &str) -> Option<Milli> {
        if account == ACCOUNTS[0] {
            return None;
        }
        let key = (ledger.to_string(), account.to_string(), asset.to_string());
        match self.policies.get(&key) {
            None => Some(0),
            Some(Policy::Bounded(limit)) => Some(-limit),
            Some(Policy::Unbounded) => None,
        }
    }

    /// The form checks of every posting, in order, before anything else.
    fn check_postings(postings: &[Posting]) -> Result<Vec<ModelPosting>, &'static str> {
        if postings.is_empty() {
            return Err("EMPTY_POSTINGS");
        }
        let mut checked = Vec::new();
        for posting in postings {
            let amount = to_milli(posting.amount);
            let scale = ASSETS
                .iter()
                .find(|(name, _)| *name == posting.asset)
                .map(|(_, scale)| *scale)
                .unwrap();
            if posting.source == posting.destination || amount <= 0 {
                return Err("INVALID_INPUT");
            }
            if too_precise(amount, scale) {
                return Err("AMOUNT_PRECISION");
            }
            checked.push(ModelPosting {
                source: posting.source.clone(),
                destination: posting.destination.clone(),
                amount,
                asset: posting.asset.clone(),
            });
        }
        Ok(checked)
    }

    /// Runs postings in order against running volumes: the changes, or the rejection. Each
    /// posting checks its source's new volumes, then (when enforced) its source's floor, then
    /// its destination's new volumes.
    fn effects(
        &self,
        ledger: &str,
        postings: &[ModelPosting],
        enforce: bool,
    ) -> Result<Changes, &'static str> {
        let mut changes = Changes::new();
        for posting in postings {
            let asset = &posting.asset;
            for account in [&posting.source, &posting.destination] {
                let key = (ledger.to_string(), account.clone(), asset.clone());
                let (input, output) = self.volumes.get(&key).copied().unwrap_or_default();
                changes
                    .entry((account.clone(), asset.clone()))
                    .or_insert((input, output, input, output));
            }
            let source_key = (posting.source.clone(), asset.clone());
            let (_, _, input, output) = changes[&source_key];
            let output_after = output + posting.amount;
            if !fits(output_after) || !fits(input - output_after) {
                return Err("OVERFLOW");
            }
            let floor = self.floor(ledger, &posting.source, asset);
            if enforce && floor.is_some_and(|floor| input - output_after < floor) {
                return Err("INSUFFICIENT_FUNDS");
            }
            let destination_key = (posting.destination.clone(), asset.clone());
            let (_, _, input, output) = changes[&destination_key];
            let input_after = input + posting.amount;
            if !fits(input_after) || !fits(input_after - output) {
                return Err("OVERFLOW");
            }
            changes.get_mut(&source_key).unwrap().3 = output_after;
            changes.get_mut(&destination_key).unwrap().2 = input_after;
        }
        Ok(changes)
    }

    fn posting_seqs_after(&self, ledger: &str, postings: &[ModelPosting]) -> BTreeMap<String, u64> {
        let mut seqs = BTreeMap::new();
        for posting in postings {
            for account in [&posting.source, &posting.destination] {
                let key = (ledger.to_string(), account.clone());
                let now = self.accounts.get(&key).copied().unwrap_or(0);
                *seqs.entry(account.clone()).or_insert(now) += 1;
            }
        }
        seqs
    }

    fn commit_tx(&mut self, ledger: &str, changes: &Changes, seqs: &BTreeMap<String, u64>) {
        for ((account, asset), (_, _, input, output)) in changes {
            let key = (ledger.to_string(), account.clone(), asset.clone());
            self.volumes.insert(key, (*input, *output));
        }
        for (account, seq) in seqs {
            self.accounts
                .insert((ledger.to_string(), account.clone()), *seq);
        }
    }

    fn reference_use(
        &self,
        ledger: &str,
        reference: Option<&String>,
        used_by: &UsedBy,
    ) -> Option<Expect> {
        let key = (ledger.to_string(), reference?.clone());
        let (id, first) = self.references.get(&key)?;
        Some(if first == used_by {
            Expect::Replayed { id: *id }
        } else {
            Expect::Rejected {
                code: "IDEMPOTENCY_CONFLICT",
            }
        })
    }

    fn post(&mut self, request: &PostRequest) -> Expect {
        let ledger = request.ledger.clone();
        let postings = match Model::check_postings(&request.postings) {
            Ok(postings) => postings,
            Err(code) => return Expect::Rejected { code },
        };
        let used_by = UsedBy::Post {
            postings: postings.clone(),
            timestamp: request.timestamp.map(|at| at.0),
        };
        if let Some(expect) = self.reference_use(&ledger, request.reference.as_ref(), &used_by) {
            return expect;
        }
        self.transact(
            ledger,
            postings,
            None,
            request.reference.clone(),
            used_by,
            true,
        )
    }

    fn revert(&mut self, request: &RevertRequest) -> Expect {
        let ledger = request.ledger.clone();
        let used_by = UsedBy::Revert {
            id: request.id,
            force: request.force,
        };
        if let Some(expect) = self.reference_use(&ledger, request.reference.as_ref(), &used_by) {
            return expect;
        }
        let Some(original) = self.tx_in(&ledger, request.id) else {
            return Expect::Rejected {
                code: "TRANSACTION_NOT_FOUND",
            };
        };
        if original.reverted_by.is_some() {
            return Expect::Rejected {
                code: "ALREADY_REVERTED",
            };
        }
        let postings: Vec<ModelPosting> = original
            .postings
            .iter()
            .rev()
            .map(|posting| ModelPosting {
                source: posting.destination.clone(),
                destination: posting.source.clone(),
                amount: posting.amount,
                asset: posting.asset.clone(),
            })
            .collect();
        let reference = request.reference.clone();
        let expect = self.transact(
            ledger,
            postings,
            Some(request.id),
            reference,
            used_by,
            !request.force,
        );
        if let Expect::Posted { id, .. } = expect {
            self.txs.get_mut(&request.id).unwrap().reverted_by = Some(id);
        }
        expect
    }

    /// Checks the effects of an accepted request and, if they pass, commits it.
    fn transact(
        &mut self,
        ledger: String,
        postings: Vec<ModelPosting>,
        reverts: Option<u64>,
        reference: Option<String>,
        used_by: UsedBy,
        enforce: bool,
    ) -> Expect {
        let changes = match self.effects(&ledger, &postings, enforce) {
            Ok(changes) => changes,
            Err(code) => return Expect::Rejected { code },
        };
        let posting_seqs = self.posting_seqs_after(&ledger, &postings);
        let id = self.take_seq();
        self.commit_tx(&ledger, &changes, &posting_seqs);
        if let Some(reference) = reference {
            self.references
                .insert((ledger.clone(), reference), (id, used_by));
        }
        let tx = ModelTx {
            ledger: ledger.clone(),
            postings: postings.clone(),
            reverts,
            reverted_by: None,
            metadata: Metadata::new(),
        };
        self.txs.insert(id, tx);
        Expect::Posted {
            id,
            ledger,
            postings,
            reverts,
            changes,
            posting_seqs,
        }
    }

    /// Merges `metadata` into the account's, unless the new keys or the merged map pass the
    /// bounds.
    fn set_account_metadata(
        &mut self,
        ledger: &str,
        account: &str,
        metadata: Metadata,
    ) -> Result<(), &'static str> {
        let target = (ledger.to_string(), account.to_string());
        let mut merged = self
            .account_metadata
            .get(&target)
            .cloned()
            .unwrap_or_default();
        merged.extend(metadata.clone());
        if metadata_too_large(&metadata) || metadata_too_large(&merged) {
            return Err("METADATA_TOO_LARGE");
        }
        self.account_metadata.insert(target.clone(), merged);
        self.accounts.entry(target).or_insert(0);
        Ok(())
    }

    fn balances(&self, ledger: &str) -> BTreeMap<String, BTreeMap<String, Milli>> {
        let mut balances: BTreeMap<String, BTreeMap<String, Milli>> = BTreeMap::new();
        for ((row_ledger, account, asset), (input, output)) in &self.volumes {
            if row_ledger == ledger {
                balances
                    .entry(account.clone())
                    .or_default()
                    .insert(asset.clone(), input - output);
            }
        }
        balances
    }
}

/// The bounds on one metadata map, as the ledger checks them: a value over 4096 bytes, or
/// keys and values over 16 KiB in all.
fn metadata_too_large(metadata: &Metadata) -> bool {
    let total: usize = metadata
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    metadata.values().any(|value| value.len() > 4096) || total > 16 * 1024
}

// ---------------------------------------------------------------------------------------------
// The ledger under test.

/// The ledger on its simulated disk.
struct Subject {
    fs: SimFs,
    ledger: Option<Ledger>,
    clock: Arc<AtomicI64>,
}

impl Subject {
    /// Small segments and frequent checkpoints, so that short runs roll and checkpoint; no
    /// checkpoint by time, so that a run does not depend on how fast it goes.
    fn options(&self) -> LedgerOptions {
        let clock = self.clock.clone();
        LedgerOptions {
            segment_bytes: 4096,
            checkpoint_groups: 5,
            checkpoint_interval: Duration::from_secs(24 * 3600),
            clock: Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
            ..LedgerOptions::default()
        }
    }

    fn create() -> Subject {
        let fs = SimFs::new(7);
        fs.create_dir_all(Path::new(STORE)).unwrap();
        let mut subject = Subject {
            fs,
            ledger: None,
            clock: Arc::new(AtomicI64::new(1_800_000_000_000_000)),
        };
        let vfs = Arc::new(subject.fs.clone());
        let ledger = Ledger::create_with(vfs, Path::new(STORE), subject.options()).unwrap();
        subject.ledger = Some(ledger);
        subject
    }

    fn ledger(&self) -> &Ledger {
        self.ledger.as_ref().unwrap()
    }

    /// Opens the store on `fs`, twice: the second open must find nothing left to do.
    fn reopen_on(&mut self, fs: SimFs) {
        self.ledger = None;
        self.fs = fs;
        let open =
            || Ledger::open_with(Arc::new(self.fs.clone()), Path::new(STORE), self.options());
        let first = open().unwrap_or_else(|error| panic!("reopen failed: {error}"));
        let head = first.head();
        let difference = first.state_difference().unwrap();
        assert_eq!(difference, None, "state differs from a replay after reopen");
        drop(first);
        let second = open().unwrap_or_else(|error| panic!("second reopen failed: {error}"));
        assert_eq!(second.head(), head, "a second open moved the head");
        let cuts = &second.open_report().log_recovery.cuts;
        assert!(cuts.is_empty(), "a second open cut again: {cuts:?}");
        self.ledger = Some(second);
    }
}

// ---------------------------------------------------------------------------------------------
// Running and comparing.

fn step(subject: &mut Subject, model: &mut Model, op: &Op) {
    match op {
        Op::Post {
            ledger,
            postings,
            reference,
            dated,
        } => {
            let request = post_request(*ledger, postings, reference.map(reference_name), *dated);
            post_and_compare(subject, model, request);
        }
        Op::Repeat { pick } | Op::Conflict { pick } => {
            if model.posts_sent.is_empty() {
                return;
            }
            let mut request = model.posts_sent[usize::from(*pick) % model.posts_sent.len()].clone();
            if let (Op::Conflict { .. }, Some(first)) = (op, request.postings.first_mut()) {
                let amount = first.amount;
                first.amount = amount
                    .checked_add(Decimal::ONE)
                    .unwrap_or(amount - Decimal::ONE);
            }
            post_and_compare(subject, model, request);
        }
        Op::Revert {
            ledger,
            target,
            force,
            reference,
        } => {
            let mut request = RevertRequest::new(ledger_name(*ledger), model.target_id(*target));
            request.force = *force;
            request.reference = reference.map(reference_name);
            let expect = model.revert(&request);
            let result = subject.ledger().revert(request);
            compare_receipt(model, expect, result);
        }
        Op::SetAccountMetadata {
            ledger,
            account,
            key,
            value,
        } => {
            set_account_metadata(subject, model, *ledger, *account, *key, *value);
        }
        Op::DeleteAccountMetadata {
            ledger,
            account,
            key,
        } => {
            delete_account_metadata(subject, model, *ledger, *account, *key);
        }
        Op::SetTransactionMetadata {
            ledger,
            target,
            key,
            value,
        } => {
            set_transaction_metadata(subject, model, *ledger, *target, *key, *value);
        }
        Op::DeleteTransactionMetadata {
            ledger,
            target,
            key,
        } => {
            let (ledger, id, key) = (
                ledger_name(*ledger),
                model.target_id(*target),
                key_name(*key),
            );
            let expect = match model.txs.get_mut(&id).filter(|tx| tx.ledger == ledger) {
                None => Err("TRANSACTION_NOT_FOUND"),
                Some(tx) => match tx.metadata.remove(&key) {
                    None => Err("METADATA_KEY_NOT_FOUND"),
                    Some(_) => Ok(()),
                },
            };
            let result = subject
                .ledger()
                .delete_transaction_metadata(ledger, id, &key);
            compare_committed(model, expect, result);
        }
        Op::SetOverdraft {
            ledger,
            account,
            asset,
            policy,
            limit,
        } => set_overdraft(subject, model, *ledger, *account, *asset, *policy, *limit),
        Op::Reopen => {
            subject.ledger().close().unwrap();
            let fs = subject.fs.clone();
            subject.reopen_on(fs);
            check_everything(model, subject.ledger());
        }
        Op::ProcessCrash => {
            let image = subject.fs.process_crash_image();
            subject.reopen_on(image);
            check_everything(model, subject.ledger());
        }
        Op::PowerLoss { seed } => {
            power_loss_during_a_write(subject, model, *seed);
            check_everything(model, subject.ledger());
        }
        Op::CrashDuringPost {
            ledger,
            postings,
            steps,
            power_loss,
            seed,
        } => {
            crash_during_post(
                subject,
                model,
                *ledger,
                postings,
                (*steps, *power_loss, *seed),
            );
            check_everything(model, subject.ledger());
        }
    }
}

fn post_and_compare(subject: &Subject, model: &mut Model, request: PostRequest) {
    model.posts_sent.push(request.clone());
    let expect = model.post(&request);
    let result = subject.ledger().post(request);
    compare_receipt(model, expect, result);
}

fn set_account_metadata(
    subject: &Subject,
    model: &mut Model,
    ledger: u8,
    account: u8,
    key: u8,
    value: u8,
) {
    let (ledger, account) = (ledger_name(ledger), account_name(account));
    let metadata = Metadata::from([(key_name(key), value_text(value))]);
    let expect = model.set_account_metadata(ledger, account, metadata.clone());
    let result = subject
        .ledger()
        .set_account_metadata(ledger, account, metadata);
    compare_committed(model, expect, result);
    check_account(model, subject.ledger(), ledger, account);
}

fn delete_account_metadata(subject: &Subject, model: &mut Model, ledger: u8, account: u8, key: u8) {
    let (ledger, account, key) = (ledger_name(ledger), account_name(account), key_name(key));
    let target = (ledger.to_string(), account.to_string());
    let present = model
        .account_metadata
        .get_mut(&target)
        .is_some_and(|metadata| metadata.remove(&key).is_some());
    let result = subject
        .ledger()
        .delete_account_metadata(ledger, account, &key);
    compare_committed(
        model,
        present.then_some(()).ok_or("METADATA_KEY_NOT_FOUND"),
        result,
    );
    check_account(model, subject.ledger(), ledger, account);
}

/// Power is lost as an account metadata write makes its first mutating call (see
/// `Op::PowerLoss`). Whether the write is in the image decides the model too: the head moved
/// by one (the write, whole) or not at all, and a write that was acknowledged must be there.
fn power_loss_during_a_write(subject: &mut Subject, model: &mut Model, seed: u8) {
    let (ledger, account) = (LEDGERS[0], ACCOUNTS[3]);
    let metadata = Metadata::from([("x".to_string(), "y".to_string())]);
    let head_before = subject.ledger().head().seq;
    subject.fs.crash_at_step(subject.fs.steps() + 1);
    let acknowledged = subject
        .ledger()
        .set_account_metadata(ledger, account, metadata.clone())
        .is_ok();
    let image = subject.fs.power_loss_image(u64::from(seed));
    subject.reopen_on(image);
    let head_after = subject.ledger().head().seq;
    let landed = head_after == head_before + 1;
    assert!(
        landed || head_after == head_before,
        "a power loss moved the head {head_before} -> {head_after}"
    );
    assert!(landed || !acknowledged, "an acknowledged write was lost");
    if landed {
        let expect = model.set_account_metadata(ledger, account, metadata);
        assert_eq!(expect, Ok(()), "a write the model refuses is in the state");
        model.take_seq();
    }
}

fn set_transaction_metadata(
    subject: &Subject,
    model: &mut Model,
    ledger: u8,
    target: u8,
    key: u8,
    value: u8,
) {
    let (ledger, id) = (ledger_name(ledger), model.target_id(target));
    let metadata = Metadata::from([(key_name(key), value_text(value))]);
    // The new keys alone are checked before the transaction is looked up; the merged map after.
    let expect = if metadata_too_large(&metadata) {
        Err("METADATA_TOO_LARGE")
    } else {
        match model.txs.get_mut(&id).filter(|tx| tx.ledger == ledger) {
            None => Err("TRANSACTION_NOT_FOUND"),
            Some(tx) => {
                let mut merged = tx.metadata.clone();
                merged.extend(metadata.clone());
                if metadata_too_large(&merged) {
                    Err("METADATA_TOO_LARGE")
                } else {
                    tx.metadata = merged;
                    Ok(())
                }
            }
        }
    };
    let result = subject
        .ledger()
        .set_transaction_metadata(ledger, id, metadata);
    compare_committed(model, expect, result);
}

#[allow(clippy::too_many_arguments, reason = "the fields of one operation")]
fn set_overdraft(
    subject: &Subject,
    model: &mut Model,
    ledger: u8,
    account: u8,
    asset: u8,
    policy: u8,
    limit: AmountSpec,
) {
    let (ledger, account, (asset, scale)) =
        (ledger_name(ledger), account_name(account), asset_of(asset));
    let limit = limit.decimal();
    let policy = match policy % 3 {
        0 => Overdraft::None,
        1 => Overdraft::Bounded(limit),
        _ => Overdraft::Unbounded,
    };
    let expect = if account == ACCOUNTS[0] {
        Err("WORLD_POLICY")
    } else if matches!(policy, Overdraft::Bounded(_)) && too_precise(to_milli(limit), scale) {
        Err("AMOUNT_PRECISION")
    } else {
        let key = (ledger.to_string(), account.to_string(), asset.to_string());
        match policy {
            Overdraft::None => model.policies.remove(&key),
            Overdraft::Bounded(limit) => {
                model.policies.insert(key, Policy::Bounded(to_milli(limit)))
            }
            Overdraft::Unbounded => model.policies.insert(key, Policy::Unbounded),
        };
        model
            .accounts
            .entry((ledger.to_string(), account.to_string()))
            .or_insert(0);
        Ok(())
    };
    let result = subject
        .ledger()
        .set_overdraft(ledger, account, asset, policy);
    compare_committed(model, expect, result);
}

/// A post with a fresh reference, cut short by a crash `steps` mutating calls in: retrying it
/// after reopening settles it (the original receipt if it reached the log, a new post if not),
/// so that either way the model posts it once. A post acknowledged before the crash must
/// replay.
fn crash_during_post(
    subject: &mut Subject,
    model: &mut Model,
    ledger: u8,
    postings: &[PostingSpec],
    (steps, power_loss, seed): (u8, bool, u8),
) {
    model.crash_posts += 1;
    let reference = format!("crash-{}", model.crash_posts);
    let request = post_request(ledger, postings, Some(reference), false);
    subject
        .fs
        .crash_at_step(subject.fs.steps() + u64::from(steps) + 1);
    let first = subject.ledger().post(request.clone());
    if !subject.fs.crashed() {
        // The post finished (or was refused) before the crash point: an ordinary post.
        subject.fs.crash_at_step(u64::MAX);
        model.posts_sent.push(request.clone());
        let expect = model.post(&request);
        compare_receipt(model, expect, first);
        return;
    }
    let image = if power_loss {
        subject.fs.power_loss_image(u64::from(seed))
    } else {
        subject.fs.process_crash_image()
    };
    subject.reopen_on(image);
    let retry = subject.ledger().post(request.clone());
    if let Ok(acknowledged) = &first {
        let replayed = retry.as_ref().unwrap_or_else(|error| {
            panic!("a post acknowledged before a crash failed on retry: {error}")
        });
        assert!(
            replayed.replayed,
            "a post acknowledged before a crash was lost"
        );
        assert_eq!(replayed.id, acknowledged.id);
    }
    let retry = retry.map(|mut receipt| {
        receipt.replayed = false;
        receipt
    });
    model.posts_sent.push(request.clone());
    let expect = model.post(&request);
    compare_receipt(model, expect, retry);
}

fn compare_receipt(model: &mut Model, expect: Expect, result: Result<Receipt, Error>) {
    match (expect, result) {
        (
            Expect::Posted {
                id,
                ledger,
                postings,
                reverts,
                changes,
                posting_seqs,
            },
            Ok(receipt),
        ) => {
            assert!(!receipt.replayed, "a new transaction came back replayed");
            assert_eq!(receipt.id, id, "transaction id");
            assert_eq!(receipt.ledger, ledger);
            assert_eq!(receipt.reverts, reverts);
            let actual: Vec<ModelPosting> = receipt
                .postings
                .iter()
                .map(|p| ModelPosting {
                    source: p.source.clone(),
                    destination: p.destination.clone(),
                    amount: to_milli(p.amount),
                    asset: p.asset.clone(),
                })
                .collect();
            assert_eq!(actual, postings, "postings of transaction {id}");
            compare_volumes(&receipt, &changes);
            assert_eq!(
                receipt.posting_seqs, posting_seqs,
                "posting sequences of {id}"
            );
            model.receipts.insert(id, receipt);
        }
        (Expect::Replayed { id }, Ok(receipt)) => {
            assert!(receipt.replayed, "a repeated request was posted again");
            let mut original = model.receipts[&id].clone();
            original.replayed = true;
            assert_eq!(
                receipt, original,
                "a replayed receipt differs from the original"
            );
        }
        (Expect::Rejected { code }, Err(error)) => assert_eq!(error.code(), code, "{error}"),
        (expect, result) => panic!("model expected {expect:?}, ledger gave {result:?}"),
    }
}

fn compare_volumes(receipt: &Receipt, changes: &Changes) {
    let mut overdrafts = Vec::new();
    for ((account, asset), (pre_in, pre_out, post_in, post_out)) in changes {
        let pre = &receipt.pre_commit_volumes[account][asset];
        let post = &receipt.post_commit_volumes[account][asset];
        let actual = (pre.input, pre.output, post.input, post.output);
        let expected = (
            to_decimal(*pre_in),
            to_decimal(*pre_out),
            to_decimal(*post_in),
            to_decimal(*post_out),
        );
        assert_eq!(actual, expected, "volumes of {account} in {asset}");
        assert_eq!(post.balance, to_decimal(post_in - post_out));
        if post_in - post_out < 0 && account != ACCOUNTS[0] {
            overdrafts.push((
                account.clone(),
                asset.clone(),
                to_decimal(post_in - post_out),
            ));
        }
    }
    let touched: usize = receipt
        .post_commit_volumes
        .values()
        .map(BTreeMap::len)
        .sum();
    assert_eq!(touched, changes.len(), "accounts the receipt lists");
    let flagged: Vec<_> = receipt
        .overdrafts
        .iter()
        .map(|flag| (flag.account.clone(), flag.asset.clone(), flag.balance))
        .collect();
    assert_eq!(flagged, overdrafts, "overdraft flags");
}

fn compare_committed(
    model: &mut Model,
    expect: Result<(), &'static str>,
    result: Result<folio::Committed, Error>,
) {
    match (expect, result) {
        (Ok(()), Ok(committed)) => assert_eq!(committed.seq, model.take_seq(), "entry seq"),
        (Err(code), Err(error)) => assert_eq!(error.code(), code, "{error}"),
        (expect, result) => panic!("model expected {expect:?}, ledger gave {result:?}"),
    }
}

/// Balances agree with the model, sum to zero per ledger and asset, and the head is the
/// model's last seq.
fn check_balances(model: &Model, ledger: &Ledger) {
    for name in LEDGERS {
        let balances = ledger.balances(name, "").unwrap();
        let actual: BTreeMap<String, BTreeMap<String, Milli>> = balances
            .iter()
            .map(|(account, by_asset)| {
                let by_asset = by_asset
                    .iter()
                    .map(|(a, b)| (a.clone(), to_milli(*b)))
                    .collect();
                (account.clone(), by_asset)
            })
            .collect();
        assert_eq!(actual, model.balances(name), "balances of ledger {name}");
        for (asset, _) in ASSETS {
            let sum: Milli = actual
                .values()
                .filter_map(|by_asset| by_asset.get(asset))
                .sum();
            assert_eq!(sum, 0, "balances of {asset} in {name} do not sum to zero");
        }
    }
    assert_eq!(ledger.head().seq, model.seq_next - 1, "entry count");
}

/// Every account (volumes, metadata, policies, posting sequence) and every transaction
/// (metadata, revert links) agree with the model. (Whether the state equals a replay of the
/// log is checked after each reopen and at the end: the replay is the costly part.)
fn check_everything(model: &Model, ledger: &Ledger) {
    check_balances(model, ledger);
    for name in LEDGERS {
        for account in ACCOUNTS {
            check_account(model, ledger, name, account);
        }
    }
    for (id, tx) in &model.txs {
        let receipt = ledger.transaction(&tx.ledger, *id).unwrap();
        let receipt = receipt.unwrap_or_else(|| panic!("transaction {id} is missing"));
        assert_eq!(
            receipt.metadata, tx.metadata,
            "metadata of transaction {id}"
        );
        assert_eq!(receipt.reverted_by, tx.reverted_by, "reverted_by of {id}");
        assert_eq!(receipt.reverts, tx.reverts, "reverts of {id}");
        // Read back from the log, the receipt is the one the post returned, but for what
        // changed since: metadata and the revert link.
        let mut returned = model.receipts[id].clone();
        returned.metadata = tx.metadata.clone();
        returned.reverted_by = tx.reverted_by;
        assert_eq!(receipt, returned, "transaction {id} reads back differently");
        let other = LEDGERS.iter().find(|name| **name != tx.ledger).unwrap();
        assert_eq!(
            ledger.transaction(other, *id).unwrap(),
            None,
            "{id} in {other}"
        );
    }
}

fn check_account(model: &Model, ledger: &Ledger, name: &str, account: &str) {
    let target = (name.to_string(), account.to_string());
    let view = ledger.account(name, account).unwrap();
    let Some(posting_seq) = model.accounts.get(&target) else {
        assert_eq!(view, None, "{name} {account} should be unknown");
        return;
    };
    let view = view.unwrap_or_else(|| panic!("{name} {account} is missing"));
    assert_eq!(
        view.posting_seq, *posting_seq,
        "posting sequence of {name} {account}"
    );
    let metadata = model
        .account_metadata
        .get(&target)
        .cloned()
        .unwrap_or_default();
    assert_eq!(view.metadata, metadata, "metadata of {name} {account}");
    let policies: BTreeMap<String, Policy> = model
        .policies
        .iter()
        .filter(|((l, a, _), _)| *l == name && *a == account)
        .map(|((_, _, asset), policy)| (asset.clone(), *policy))
        .collect();
    let actual: BTreeMap<String, Policy> = view
        .overdrafts
        .iter()
        .map(|(asset, policy)| {
            let policy = match policy {
                Overdraft::Bounded(limit) => Policy::Bounded(to_milli(*limit)),
                Overdraft::Unbounded => Policy::Unbounded,
                Overdraft::None => panic!("a policy of none is stored for {account}"),
            };
            (asset.clone(), policy)
        })
        .collect();
    assert_eq!(actual, policies, "policies of {name} {account}");
    for (asset, volumes) in &view.volumes {
        let key = (name.to_string(), account.to_string(), asset.clone());
        let (input, output) = model.volumes[&key];
        assert_eq!(
            (to_milli(volumes.input), to_milli(volumes.output)),
            (input, output)
        );
    }
}
