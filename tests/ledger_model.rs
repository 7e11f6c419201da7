//! Model-based test of the ledger: random sequences of posts, repeated and conflicting
//! references, reverts, metadata and policy changes, reopens and crashes (through the simulated
//! disk, under both the log and redb) run against the ledger and against a plain in-memory
//! model. At every step results, receipts, errors and balances agree; after every reopen the
//! state equals a replay of the log; per ledger and asset, balances sum to zero.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{
    Error, Ledger, LedgerOptions, Overdraft, PostRequest, Posting, Receipt, RevertRequest,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

const STORE: &str = "/store";
const LEDGERS: [&str; 2] = ["main", "shop"];
const ACCOUNTS: [&str; 5] = ["world", "till:1", "till:2", "bank", "fees:card"];
const ASSETS: [&str; 2] = ["USD/2", "EUR"];

type PostingSpec = (usize, usize, u32, usize);

#[derive(Debug, Clone)]
enum Action {
    Post {
        ledger: usize,
        postings: Vec<PostingSpec>,
        reference: Option<u8>,
        dated: bool,
    },
    /// Sends an earlier post request again, unchanged.
    Repeat {
        pick: usize,
    },
    /// Sends an earlier post request again with its first amount changed.
    Conflict {
        pick: usize,
    },
    Revert {
        ledger: usize,
        pick: usize,
        force: bool,
        reference: Option<u8>,
    },
    SetMeta {
        ledger: usize,
        account: usize,
        key: u8,
        value: u8,
    },
    DeleteMeta {
        ledger: usize,
        account: usize,
        key: u8,
    },
    SetPolicy {
        ledger: usize,
        account: usize,
        asset: usize,
        policy: u8,
        limit: u32,
    },
    Reopen,
    /// Power loss while idle: redb loses what it had not checkpointed.
    CrashIdle {
        seed: u64,
    },
    /// Power loss during a post with a reference, settled by retrying it after reopening.
    CrashDuringPost {
        ledger: usize,
        postings: Vec<PostingSpec>,
        steps: u8,
        seed: u64,
    },
}

fn posting_strategy() -> impl Strategy<Value = PostingSpec> + Clone {
    // world is a frequent source so that money flows in; amounts up to 50.00.
    let source = prop_oneof![3 => Just(0usize), 2 => 0..ACCOUNTS.len()];
    (source, 0..ACCOUNTS.len(), 1u32..5000, 0..ASSETS.len())
}

fn action_strategy() -> impl Strategy<Value = Action> {
    let postings = proptest::collection::vec(posting_strategy(), 1..4);
    prop_oneof![
        8 => (0..2usize, postings.clone(), proptest::option::of(0u8..12), any::<bool>())
            .prop_map(|(ledger, postings, reference, dated)| Action::Post { ledger, postings, reference, dated }),
        2 => any::<usize>().prop_map(|pick| Action::Repeat { pick }),
        1 => any::<usize>().prop_map(|pick| Action::Conflict { pick }),
        3 => (0..2usize, any::<usize>(), any::<bool>(), proptest::option::of(12u8..16))
            .prop_map(|(ledger, pick, force, reference)| Action::Revert { ledger, pick, force, reference }),
        2 => (0..2usize, 0..ACCOUNTS.len(), 0u8..3, any::<u8>())
            .prop_map(|(ledger, account, key, value)| Action::SetMeta { ledger, account, key, value }),
        1 => (0..2usize, 0..ACCOUNTS.len(), 0u8..3)
            .prop_map(|(ledger, account, key)| Action::DeleteMeta { ledger, account, key }),
        2 => (0..2usize, 0..ACCOUNTS.len(), 0..ASSETS.len(), 0u8..3, 0u32..3000)
            .prop_map(|(ledger, account, asset, policy, limit)| Action::SetPolicy { ledger, account, asset, policy, limit }),
        1 => Just(Action::Reopen),
        1 => any::<u64>().prop_map(|seed| Action::CrashIdle { seed }),
        1 => (0..2usize, postings, 1u8..8, any::<u64>())
            .prop_map(|(ledger, postings, steps, seed)| Action::CrashDuringPost { ledger, postings, steps, seed }),
    ]
}

fn amount(cents: u32) -> Decimal {
    Decimal::new(i64::from(cents), 2).normalize()
}

fn request(
    ledger: usize,
    postings: &[PostingSpec],
    reference: Option<String>,
    dated: bool,
) -> PostRequest {
    let postings = postings
        .iter()
        .map(|&(source, destination, cents, asset)| Posting {
            source: ACCOUNTS[source].to_string(),
            destination: ACCOUNTS[destination].to_string(),
            amount: amount(cents),
            asset: ASSETS[asset].to_string(),
        })
        .collect();
    let mut request = PostRequest::new(LEDGERS[ledger], postings);
    request.reference = reference;
    if dated {
        request.timestamp = Some(folio::Timestamp::parse("2026-01-01T08:00:00Z").unwrap());
    }
    request
}

/// What the model expects of an operation.
#[derive(Debug, PartialEq)]
enum Expect {
    /// A new transaction with this id and these volumes (account -> asset -> (before, after)).
    Posted {
        id: u64,
        volumes: BTreeMap<(String, String), (Decimal, Decimal, Decimal, Decimal)>,
    },
    /// The original receipt of this id again.
    Replayed {
        id: u64,
    },
    Rejected {
        code: &'static str,
    },
}

#[derive(Debug, Clone)]
struct ModelTx {
    ledger: String,
    postings: Vec<(String, String, Decimal, String)>,
    reverted_by: Option<u64>,
}

/// A reference's first use: the transaction and the request as given.
#[derive(Debug, Clone, PartialEq)]
enum UsedBy {
    Post(PostRequest),
    Revert { id: u64, force: bool },
}

#[derive(Default)]
struct Model {
    seq_next: u64,
    volumes: BTreeMap<(String, String, String), (Decimal, Decimal)>,
    policies: BTreeMap<(String, String, String), Overdraft>,
    references: BTreeMap<(String, String), (u64, UsedBy)>,
    txs: BTreeMap<u64, ModelTx>,
    metadata: BTreeMap<(String, String), BTreeMap<String, String>>,
    receipts: BTreeMap<u64, Receipt>,
    posts_sent: Vec<PostRequest>,
}

impl Model {
    fn new() -> Model {
        Model {
            seq_next: 2,
            ..Model::default()
        }
    }

    fn floor(&self, ledger: &str, account: &str, asset: &str) -> Option<Decimal> {
        if account == "world" {
            return None;
        }
        let key = (ledger.to_string(), account.to_string(), asset.to_string());
        self.policies.get(&key).copied().unwrap_or_default().floor()
    }

    /// Runs postings against running balances; the volume changes, or the rejection.
    fn effects(
        &self,
        ledger: &str,
        postings: &[(String, String, Decimal, String)],
        enforce: bool,
    ) -> Result<BTreeMap<(String, String), (Decimal, Decimal, Decimal, Decimal)>, &'static str>
    {
        // Every posting's form is checked before any balance.
        if postings
            .iter()
            .any(|(source, destination, _, _)| source == destination)
        {
            return Err("INVALID_INPUT");
        }
        let mut changes: BTreeMap<(String, String), (Decimal, Decimal, Decimal, Decimal)> =
            BTreeMap::new();
        for (source, destination, amount, asset) in postings {
            for account in [source, destination] {
                let key = (account.clone(), asset.clone());
                let now = self
                    .volumes
                    .get(&(ledger.to_string(), account.clone(), asset.clone()));
                let (input, output) = now.copied().unwrap_or_default();
                changes.entry(key).or_insert((input, output, input, output));
            }
            let source_change = &changes[&(source.clone(), asset.clone())];
            let balance_after = source_change.2 - (source_change.3 + amount);
            if enforce
                && self
                    .floor(ledger, source, asset)
                    .is_some_and(|floor| balance_after < floor)
            {
                return Err("INSUFFICIENT_FUNDS");
            }
            if let Some(change) = changes.get_mut(&(source.clone(), asset.clone())) {
                change.3 += amount;
            }
            if let Some(change) = changes.get_mut(&(destination.clone(), asset.clone())) {
                change.2 += amount;
            }
        }
        Ok(changes)
    }

    fn commit_volumes(
        &mut self,
        ledger: &str,
        changes: &BTreeMap<(String, String), (Decimal, Decimal, Decimal, Decimal)>,
    ) {
        for ((account, asset), (_, _, input, output)) in changes {
            self.volumes.insert(
                (ledger.to_string(), account.clone(), asset.clone()),
                (*input, *output),
            );
        }
    }

    fn post(&mut self, request: &PostRequest) -> Expect {
        let ledger = request.ledger.clone();
        // Input is checked before the reference is looked up.
        if request.postings.iter().any(|p| p.source == p.destination) {
            return Expect::Rejected {
                code: "INVALID_INPUT",
            };
        }
        if let Some(reference) = &request.reference
            && let Some((id, used_by)) = self.references.get(&(ledger.clone(), reference.clone()))
        {
            return if *used_by == UsedBy::Post(request.clone()) {
                Expect::Replayed { id: *id }
            } else {
                Expect::Rejected {
                    code: "IDEMPOTENCY_CONFLICT",
                }
            };
        }
        let postings: Vec<(String, String, Decimal, String)> = request
            .postings
            .iter()
            .map(|p| {
                (
                    p.source.clone(),
                    p.destination.clone(),
                    p.amount,
                    p.asset.clone(),
                )
            })
            .collect();
        let changes = match self.effects(&ledger, &postings, true) {
            Ok(changes) => changes,
            Err(code) => return Expect::Rejected { code },
        };
        let id = self.take_seq();
        self.commit_volumes(&ledger, &changes);
        if let Some(reference) = &request.reference {
            self.references.insert(
                (ledger.clone(), reference.clone()),
                (id, UsedBy::Post(request.clone())),
            );
        }
        self.txs.insert(
            id,
            ModelTx {
                ledger,
                postings,
                reverted_by: None,
            },
        );
        Expect::Posted {
            id,
            volumes: changes,
        }
    }

    fn revert(&mut self, request: &RevertRequest) -> Expect {
        let ledger = request.ledger.clone();
        let used_by = UsedBy::Revert {
            id: request.id,
            force: request.force,
        };
        if let Some(reference) = &request.reference
            && let Some((id, used)) = self.references.get(&(ledger.clone(), reference.clone()))
        {
            return if *used == used_by {
                Expect::Replayed { id: *id }
            } else {
                Expect::Rejected {
                    code: "IDEMPOTENCY_CONFLICT",
                }
            };
        }
        let Some(original) = self
            .txs
            .get(&request.id)
            .filter(|tx| tx.ledger == ledger)
            .cloned()
        else {
            return Expect::Rejected {
                code: "TRANSACTION_NOT_FOUND",
            };
        };
        if original.reverted_by.is_some() {
            return Expect::Rejected {
                code: "ALREADY_REVERTED",
            };
        }
        let postings: Vec<_> = original
            .postings
            .iter()
            .rev()
            .map(|(s, d, a, asset)| (d.clone(), s.clone(), *a, asset.clone()))
            .collect();
        let changes = match self.effects(&ledger, &postings, !request.force) {
            Ok(changes) => changes,
            Err(code) => return Expect::Rejected { code },
        };
        let id = self.take_seq();
        self.commit_volumes(&ledger, &changes);
        if let Some(reference) = &request.reference {
            self.references
                .insert((ledger.clone(), reference.clone()), (id, used_by));
        }
        if let Some(tx) = self.txs.get_mut(&request.id) {
            tx.reverted_by = Some(id);
        }
        self.txs.insert(
            id,
            ModelTx {
                ledger,
                postings,
                reverted_by: None,
            },
        );
        Expect::Posted {
            id,
            volumes: changes,
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.seq_next;
        self.seq_next += 1;
        seq
    }

    fn balances(&self, ledger: &str) -> BTreeMap<String, BTreeMap<String, Decimal>> {
        let mut balances: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
        for ((row_ledger, account, asset), (input, output)) in &self.volumes {
            if row_ledger == ledger {
                balances
                    .entry(account.clone())
                    .or_default()
                    .insert(asset.clone(), (input - output).normalize());
            }
        }
        balances
    }
}

/// The ledger under test on its simulated disk.
struct Subject {
    fs: SimFs,
    ledger: Option<Ledger>,
    clock: Arc<AtomicI64>,
}

impl Subject {
    fn options(&self) -> LedgerOptions {
        let clock = self.clock.clone();
        LedgerOptions {
            segment_bytes: 8192,
            checkpoint_groups: 7,
            clock: Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
            ..LedgerOptions::default()
        }
    }

    fn create() -> Subject {
        let fs = SimFs::new(11);
        fs.create_dir_all(Path::new(STORE)).unwrap();
        let mut subject = Subject {
            fs,
            ledger: None,
            clock: Arc::new(AtomicI64::new(1_800_000_000_000_000)),
        };
        let ledger = Ledger::create_with(
            Arc::new(subject.fs.clone()),
            Path::new(STORE),
            subject.options(),
        )
        .unwrap();
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
        assert_eq!(
            first.state_difference().unwrap(),
            None,
            "state differs from a replay after reopen"
        );
        drop(first);
        let second = open().unwrap();
        assert_eq!(second.head(), head);
        assert!(
            second.open_report().log_recovery.cuts.is_empty(),
            "second open cut again"
        );
        self.ledger = Some(second);
    }

    fn crash(&mut self, seed: u64) {
        self.fs.crash_at_step(self.fs.steps() + 1);
        // Any write reaches the crash point; the image is what a power loss leaves.
        let _ = self.ledger().set_account_metadata(
            "main",
            "bank",
            BTreeMap::from([("x".into(), "y".into())]),
        );
        let image = self.fs.power_loss_image(seed);
        self.reopen_on(image);
    }
}

fn check_result(model: &mut Model, expect: Expect, result: Result<Receipt, Error>) {
    match (expect, result) {
        (Expect::Posted { id, volumes }, Ok(receipt)) => {
            assert!(!receipt.replayed);
            assert_eq!(receipt.id, id);
            for ((account, asset), (pre_in, pre_out, post_in, post_out)) in &volumes {
                let pre = &receipt.pre_commit_volumes[account][asset];
                let post = &receipt.post_commit_volumes[account][asset];
                assert_eq!(
                    (pre.input, pre.output),
                    (*pre_in, *pre_out),
                    "pre volumes of {account} {asset}"
                );
                assert_eq!(
                    (post.input, post.output),
                    (*post_in, *post_out),
                    "post volumes of {account} {asset}"
                );
                assert_eq!(post.balance, post.input - post.output);
            }
            let touched: usize = receipt
                .post_commit_volumes
                .values()
                .map(BTreeMap::len)
                .sum();
            assert_eq!(touched, volumes.len());
            model.receipts.insert(id, receipt);
        }
        (Expect::Replayed { id }, Ok(receipt)) => {
            assert!(receipt.replayed);
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

fn check_state(model: &Model, ledger: &Ledger) {
    for name in LEDGERS {
        let balances = ledger.balances(name, "").unwrap();
        assert_eq!(balances, model.balances(name), "balances of ledger {name}");
        for asset in ASSETS {
            let sum: Decimal = balances
                .values()
                .filter_map(|by_asset| by_asset.get(asset))
                .sum();
            assert_eq!(
                sum,
                Decimal::ZERO,
                "balances of {asset} in {name} do not sum to zero"
            );
        }
    }
    assert_eq!(ledger.head().seq, model.seq_next - 1, "entry count");
}

fn run(actions: Vec<Action>) {
    let mut subject = Subject::create();
    let mut model = Model::new();
    for action in actions {
        step(&mut subject, &mut model, action);
        check_state(&model, subject.ledger());
    }
    assert_eq!(subject.ledger().state_difference().unwrap(), None);
    subject.ledger().close().unwrap();
}

fn step(subject: &mut Subject, model: &mut Model, action: Action) {
    match action {
        Action::Post {
            ledger,
            postings,
            reference,
            dated,
        } => {
            let request = request(
                ledger,
                &postings,
                reference.map(|r| format!("ref-{r}")),
                dated,
            );
            model.posts_sent.push(request.clone());
            let expect = model.post(&request);
            check_result(model, expect, subject.ledger().post(request));
        }
        Action::Repeat { pick } | Action::Conflict { pick } if !model.posts_sent.is_empty() => {
            let mut request = model.posts_sent[pick % model.posts_sent.len()].clone();
            if matches!(action, Action::Conflict { .. }) {
                request.postings[0].amount += Decimal::ONE;
            }
            let expect = model.post(&request);
            check_result(model, expect, subject.ledger().post(request));
        }
        Action::Repeat { .. } | Action::Conflict { .. } => {}
        Action::Revert {
            ledger,
            pick,
            force,
            reference,
        } => {
            let ids: Vec<u64> = model.txs.keys().copied().collect();
            let id = if ids.is_empty() {
                999
            } else {
                ids[pick % ids.len()]
            };
            let mut request = RevertRequest::new(LEDGERS[ledger], id);
            request.force = force;
            request.reference = reference.map(|r| format!("ref-{r}"));
            let expect = model.revert(&request);
            check_result(model, expect, subject.ledger().revert(request));
        }
        Action::SetMeta {
            ledger,
            account,
            key,
            value,
        } => {
            let (ledger, account) = (LEDGERS[ledger], ACCOUNTS[account]);
            let metadata = BTreeMap::from([(format!("k{key}"), format!("v{value}"))]);
            let seq = model.take_seq();
            let committed = subject
                .ledger()
                .set_account_metadata(ledger, account, metadata.clone())
                .unwrap();
            assert_eq!(committed.seq, seq);
            model
                .metadata
                .entry((ledger.into(), account.into()))
                .or_default()
                .extend(metadata);
            let view = subject.ledger().account(ledger, account).unwrap().unwrap();
            assert_eq!(
                view.metadata,
                model.metadata[&(ledger.to_string(), account.to_string())]
            );
        }
        Action::DeleteMeta {
            ledger,
            account,
            key,
        } => {
            let (ledger, account, key) = (LEDGERS[ledger], ACCOUNTS[account], format!("k{key}"));
            let present = model
                .metadata
                .get_mut(&(ledger.into(), account.into()))
                .is_some_and(|metadata| metadata.remove(&key).is_some());
            let result = subject
                .ledger()
                .delete_account_metadata(ledger, account, &key);
            if present {
                assert_eq!(result.unwrap().seq, model.take_seq());
            } else {
                assert_eq!(result.unwrap_err().code(), "METADATA_KEY_NOT_FOUND");
            }
        }
        Action::SetPolicy {
            ledger,
            account,
            asset,
            policy,
            limit,
        } => {
            let (ledger, account, asset) = (LEDGERS[ledger], ACCOUNTS[account], ASSETS[asset]);
            let policy = match policy {
                0 => Overdraft::None,
                1 => Overdraft::Bounded(amount(limit)),
                _ => Overdraft::Unbounded,
            };
            let result = subject
                .ledger()
                .set_overdraft(ledger, account, asset, policy);
            if account == "world" {
                assert_eq!(result.unwrap_err().code(), "WORLD_POLICY");
            } else {
                assert_eq!(result.unwrap().seq, model.take_seq());
                model
                    .policies
                    .insert((ledger.into(), account.into(), asset.into()), policy);
            }
        }
        Action::Reopen => {
            subject.ledger().close().unwrap();
            let fs = subject.fs.clone();
            subject.reopen_on(fs);
        }
        Action::CrashIdle { seed } => {
            // The metadata write that hits the crash point was never acknowledged; whether it
            // is in the image decides the model too.
            let head_before = subject.ledger().head().seq;
            subject.crash(seed);
            absorb_unacknowledged_metadata(subject, model, head_before);
        }
        Action::CrashDuringPost {
            ledger,
            postings,
            steps,
            seed,
        } => {
            crash_during_post(subject, model, ledger, &postings, steps, seed);
        }
    }
}

/// A crash hit a metadata write (`main`/`bank`, `x`=`y`) that may or may not have landed.
fn absorb_unacknowledged_metadata(subject: &Subject, model: &mut Model, head_before: u64) {
    let head_after = subject.ledger().head().seq;
    assert!(
        head_after == head_before || head_after == head_before + 1,
        "{head_before} -> {head_after}"
    );
    if head_after == head_before + 1 {
        model.take_seq();
        let metadata = BTreeMap::from([("x".to_string(), "y".to_string())]);
        model
            .metadata
            .entry(("main".into(), "bank".into()))
            .or_default()
            .extend(metadata);
    }
}

fn crash_during_post(
    subject: &mut Subject,
    model: &mut Model,
    ledger: usize,
    postings: &[PostingSpec],
    steps: u8,
    seed: u64,
) {
    let reference = format!("crash-{}", model.seq_next);
    let request = request(ledger, postings, Some(reference), false);
    subject
        .fs
        .crash_at_step(subject.fs.steps() + u64::from(steps));
    let first = subject.ledger().post(request.clone());
    let crashed = subject.fs.crashed();
    if !crashed {
        // The post finished before the crash point: an ordinary post.
        subject.fs.crash_at_step(u64::MAX);
        model.posts_sent.push(request.clone());
        let expect = model.post(&request);
        check_result(model, expect, first);
        return;
    }
    let image = subject.fs.power_loss_image(seed);
    subject.reopen_on(image);
    // Retrying with the same reference settles the outcome: the original receipt if the post
    // reached the log, a fresh post otherwise; either way the model posts it once.
    let retry = subject.ledger().post(request.clone()).map(|mut receipt| {
        receipt.replayed = false;
        receipt
    });
    model.posts_sent.push(request.clone());
    let expect = model.post(&request);
    check_result(model, expect, retry);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_the_model_at_every_step(actions in proptest::collection::vec(action_strategy(), 1..60)) {
        run(actions);
    }
}

#[test]
fn a_day_of_every_action_agrees_with_the_model() {
    // A fixed sequence that touches every action at least once, so a regression shows without
    // depending on what proptest happens to draw.
    let post = |ledger, postings: Vec<PostingSpec>, reference: Option<u8>| Action::Post {
        ledger,
        postings,
        reference,
        dated: false,
    };
    run(vec![
        post(0, vec![(0, 1, 5000, 0)], Some(1)),
        post(0, vec![(1, 3, 2000, 0), (1, 4, 100, 0)], Some(2)),
        Action::Repeat { pick: 0 },
        Action::Conflict { pick: 1 },
        post(0, vec![(1, 3, 9999, 0)], None),
        Action::SetPolicy {
            ledger: 0,
            account: 1,
            asset: 0,
            policy: 1,
            limit: 10000,
        },
        post(0, vec![(1, 3, 9999, 0)], None),
        Action::Revert {
            ledger: 0,
            pick: 0,
            force: false,
            reference: Some(13),
        },
        Action::Revert {
            ledger: 0,
            pick: 0,
            force: false,
            reference: Some(13),
        },
        Action::SetMeta {
            ledger: 1,
            account: 2,
            key: 0,
            value: 1,
        },
        Action::DeleteMeta {
            ledger: 1,
            account: 2,
            key: 0,
        },
        Action::DeleteMeta {
            ledger: 1,
            account: 2,
            key: 0,
        },
        Action::SetPolicy {
            ledger: 1,
            account: 0,
            asset: 1,
            policy: 2,
            limit: 0,
        },
        Action::Reopen,
        Action::CrashIdle { seed: 3 },
        Action::CrashDuringPost {
            ledger: 1,
            postings: vec![(0, 2, 700, 1)],
            steps: 2,
            seed: 9,
        },
        Action::Revert {
            ledger: 1,
            pick: 0,
            force: true,
            reference: None,
        },
    ]);
}
