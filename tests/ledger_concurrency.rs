//! Concurrency of one shared `Ledger` handle on the real disk: eight threads post single-posting
//! transactions, half through accounts every thread touches and half through their own, some
//! with `post_batch`. Every acknowledged transaction is in the store exactly once; each
//! account's receipts chain (one's post-commit volumes are the next one's pre-commit volumes,
//! its posting sequence counts up by one), as they would in a sequential execution; balances
//! equal a sequential sum and every asset sums to zero, before and after a close and reopen.
//! A reference posted by two threads at once yields one transaction and one replayed receipt.

#![allow(clippy::unwrap_used, reason = "a test fails on any error")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Barrier;

use folio::{Ledger, PostRequest, Posting, Receipt, Volumes};
use rust_decimal::Decimal;

const THREADS: usize = 8;
const POSTS_PER_THREAD: usize = 300;
/// Requests per `post_batch` call of the batching threads.
const BATCH_LEN: usize = 12;
const LEDGER: &str = "main";
const ASSET: &str = "USD/2";

/// One planned single-posting transaction; the amount in cents.
#[derive(Debug, Clone)]
struct Planned {
    reference: String,
    source: String,
    destination: String,
    cents: i64,
}

impl Planned {
    fn request(&self) -> PostRequest {
        let amount = format!("{}.{:02}", self.cents / 100, self.cents % 100);
        let posting = Posting::new(&self.source, &self.destination, &amount, ASSET).unwrap();
        PostRequest::new(LEDGER, vec![posting]).with_reference(&self.reference)
    }

    fn amount(&self) -> Decimal {
        Decimal::new(self.cents, 2)
    }
}

/// Amounts from 0.01 to 500.00, varied by thread and position.
fn cents(thread: usize, n: usize) -> i64 {
    1 + ((thread * 7_919 + n * 104_729) % 50_000) as i64
}

/// Thread `thread`'s transactions, in the order it posts them. Every other one goes through the
/// hot accounts (`shared:hot`, `shared:sink`); the rest through the thread's own account. A
/// thread only ever moves out of `shared:hot` at most what it put in two steps before, so the
/// drains succeed in every interleaving and the final balances do not depend on timing.
fn plan(thread: usize) -> Vec<Planned> {
    let private = format!("private:{thread}");
    let shared_out = if thread.is_multiple_of(2) {
        "shared:a"
    } else {
        "shared:b"
    };
    (0..POSTS_PER_THREAD)
        .map(|n| {
            let drain = || (cents(thread, n - 2) / 2).max(1);
            let (source, destination, cents) = match n % 4 {
                0 => ("world", "shared:hot", cents(thread, n)),
                1 => ("world", private.as_str(), cents(thread, n)),
                2 => ("shared:hot", "shared:sink", drain()),
                _ => (private.as_str(), shared_out, drain()),
            };
            Planned {
                reference: format!("t{thread}-n{n}"),
                source: source.to_string(),
                destination: destination.to_string(),
                cents,
            }
        })
        .collect()
}

/// Posts a thread's plan: even threads one `post` at a time, odd ones in `post_batch` calls.
fn run(ledger: &Ledger, thread: usize, planned: &[Planned]) -> Vec<Receipt> {
    if thread.is_multiple_of(2) {
        return planned
            .iter()
            .map(|planned| ledger.post(planned.request()).unwrap())
            .collect();
    }
    let mut receipts = Vec::with_capacity(planned.len());
    for chunk in planned.chunks(BATCH_LEN) {
        let requests = chunk.iter().map(Planned::request).collect();
        for result in ledger.post_batch(requests) {
            receipts.push(result.unwrap());
        }
    }
    receipts
}

/// Balances a sequential execution of every plan leaves.
fn sequential_balances(planned: &[Planned]) -> BTreeMap<String, Decimal> {
    let mut balances: BTreeMap<String, Decimal> = BTreeMap::new();
    for planned in planned {
        *balances.entry(planned.source.clone()).or_default() -= planned.amount();
        *balances.entry(planned.destination.clone()).or_default() += planned.amount();
    }
    balances
}

/// Per account, its receipts in id order chain as in a sequential execution.
fn assert_receipts_chain(acknowledged: &[(Planned, Receipt)], final_balances: &BalanceMap) {
    let mut by_account: BTreeMap<&str, Vec<&Receipt>> = BTreeMap::new();
    for (planned, receipt) in acknowledged {
        by_account.entry(&planned.source).or_default().push(receipt);
        by_account
            .entry(&planned.destination)
            .or_default()
            .push(receipt);
    }
    for (account, mut receipts) in by_account {
        receipts.sort_by_key(|receipt| receipt.id);
        let mut volumes = Volumes::default();
        for (index, receipt) in receipts.iter().enumerate() {
            assert_eq!(
                receipt.pre_commit_volumes[account][ASSET], volumes,
                "{account}: transaction {} does not start where the one before ended",
                receipt.id
            );
            volumes = receipt.post_commit_volumes[account][ASSET];
            assert_eq!(receipt.posting_seqs[account], index as u64 + 1, "{account}");
        }
        assert_eq!(volumes.balance, final_balances[account][ASSET], "{account}");
    }
}

type BalanceMap = BTreeMap<String, BTreeMap<String, Decimal>>;

/// Everything acknowledged is in the store once, and the balances are the sequential ones.
fn assert_store_holds(ledger: &Ledger, acknowledged: &[(Planned, Receipt)]) {
    let mut ids = BTreeSet::new();
    for (planned, receipt) in acknowledged {
        let stored = ledger
            .transaction_by_reference(LEDGER, &planned.reference)
            .unwrap()
            .unwrap_or_else(|| panic!("{} is missing", planned.reference));
        assert_eq!(stored.id, receipt.id, "{}", planned.reference);
        assert_eq!(stored.block_hash, receipt.block_hash);
        assert!(!stored.replayed);
        assert_eq!(stored.postings.len(), 1);
        let posting = &stored.postings[0];
        assert_eq!(
            (posting.source.as_str(), posting.destination.as_str()),
            (planned.source.as_str(), planned.destination.as_str())
        );
        assert_eq!(posting.amount, planned.amount());
        assert!(ids.insert(stored.id), "id {} used twice", stored.id);
    }
    let stats = ledger.stats().unwrap();
    assert_eq!(stats.transactions, acknowledged.len() as u64);
    // Entry 1 creates the store; every other entry is one of the transactions.
    assert_eq!(stats.entries, acknowledged.len() as u64 + 1);
    assert_eq!(stats.watermark, stats.entries);

    let planned: Vec<Planned> = acknowledged.iter().map(|(p, _)| p.clone()).collect();
    let expected = sequential_balances(&planned);
    let actual = ledger.balances(LEDGER, "").unwrap();
    let actual_flat: BTreeMap<String, Decimal> = actual
        .iter()
        .map(|(account, assets)| (account.clone(), assets[ASSET]))
        .collect();
    assert_eq!(actual_flat, expected);
    assert_sums_to_zero(&actual);
    assert_history_pages(ledger, acknowledged, "shared:hot");
    assert_receipts_chain(acknowledged, &actual);
}

fn assert_sums_to_zero(balances: &BalanceMap) {
    let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
    for assets in balances.values() {
        for (asset, balance) in assets {
            *sums.entry(asset).or_default() += balance;
        }
    }
    assert!(!sums.is_empty());
    for (asset, sum) in sums {
        assert_eq!(sum, Decimal::ZERO, "{asset} does not sum to zero");
    }
}

/// The account's history, read in pages, lists exactly the transactions that touched it.
fn assert_history_pages(ledger: &Ledger, acknowledged: &[(Planned, Receipt)], account: &str) {
    let expected: Vec<u64> = {
        let mut ids: Vec<u64> = acknowledged
            .iter()
            .filter(|(p, _)| p.source == account || p.destination == account)
            .map(|(_, receipt)| receipt.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    };
    let mut listed = Vec::new();
    let mut before = None;
    loop {
        let page = ledger.history(LEDGER, account, 1000, before).unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        listed.extend(page.iter().map(|receipt| receipt.id));
    }
    assert_eq!(listed, expected);
}

fn post_concurrently(ledger: &Ledger) -> Vec<(Planned, Receipt)> {
    let start = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (ledger, start) = (ledger.clone(), &start);
                scope.spawn(move || {
                    let planned = plan(thread);
                    start.wait();
                    let receipts = run(&ledger, thread, &planned);
                    planned.into_iter().zip(receipts).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    })
}

fn reopen(store: &Path, ledger: Ledger) -> Ledger {
    ledger.close().unwrap();
    drop(ledger);
    let ledger = Ledger::open(store).unwrap();
    // close made the state durable: nothing is left to apply from the log.
    assert_eq!(ledger.open_report().entries_caught_up, 0);
    ledger
}

#[test]
fn eight_threads_posting_to_hot_and_private_accounts_keep_every_transaction_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ledger = Ledger::create(&store).unwrap();
    let acknowledged = post_concurrently(&ledger);
    assert_eq!(acknowledged.len(), THREADS * POSTS_PER_THREAD);
    assert!(acknowledged.iter().all(|(_, receipt)| !receipt.replayed));
    assert_store_holds(&ledger, &acknowledged);
    let head = ledger.head();

    let ledger = reopen(&store, ledger);
    assert_eq!(ledger.head(), head);
    assert_store_holds(&ledger, &acknowledged);
    assert!(ledger.verify(&[(head.seq, head.block_hash)]).unwrap().ok);
    ledger.close().unwrap();
}

#[test]
fn dropping_without_close_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ledger = Ledger::create(&store).unwrap();
    let acknowledged = post_concurrently(&ledger);
    let head = ledger.head();
    drop(ledger);
    let ledger = Ledger::open(&store).unwrap();
    assert_eq!(ledger.head(), head);
    assert_store_holds(&ledger, &acknowledged);
    ledger.close().unwrap();
}

/// References shared by a pair of threads: `p{pair}-n{n}`.
const PAIRS: usize = THREADS / 2;
const REFERENCES_PER_PAIR: usize = 160;
/// References each thread posts between two meetings at the barrier.
const ROUND_LEN: usize = 8;

fn shared_plan(pair: usize) -> Vec<Planned> {
    (0..REFERENCES_PER_PAIR)
        .map(|n| Planned {
            reference: format!("p{pair}-n{n}"),
            source: "world".to_string(),
            destination: if n % 2 == 0 {
                "shared:hot".to_string()
            } else {
                format!("private:{pair}")
            },
            cents: cents(pair, n),
        })
        .collect()
}

/// Every thread posts its pair's references; the two threads of a pair meet at a barrier
/// before each round, so each reference is in flight from both at once. Even threads use
/// `post`, odd ones `post_batch`.
fn post_each_reference_twice(ledger: &Ledger) -> Vec<(Planned, Receipt)> {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (ledger, barrier) = (ledger.clone(), &barrier);
                scope.spawn(move || {
                    let planned = shared_plan(thread / 2);
                    let mut receipts = Vec::new();
                    for round in planned.chunks(ROUND_LEN) {
                        barrier.wait();
                        if thread.is_multiple_of(2) {
                            for planned in round {
                                receipts.push(ledger.post(planned.request()).unwrap());
                            }
                        } else {
                            let requests = round.iter().map(Planned::request).collect();
                            for result in ledger.post_batch(requests) {
                                receipts.push(result.unwrap());
                            }
                        }
                    }
                    planned.into_iter().zip(receipts).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    })
}

#[test]
fn a_reference_posted_by_two_threads_at_once_is_one_transaction_and_one_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ledger = Ledger::create(&store).unwrap();
    let results = post_each_reference_twice(&ledger);
    assert_eq!(results.len(), THREADS * REFERENCES_PER_PAIR);

    let mut by_reference: BTreeMap<String, Vec<Receipt>> = BTreeMap::new();
    for (planned, receipt) in &results {
        by_reference
            .entry(planned.reference.clone())
            .or_default()
            .push(receipt.clone());
    }
    assert_eq!(by_reference.len(), PAIRS * REFERENCES_PER_PAIR);
    let mut originals = Vec::new();
    for (reference, receipts) in &by_reference {
        let [a, b] = receipts.as_slice() else {
            panic!("{reference}: {} results", receipts.len())
        };
        let (original, replay) = match (a.replayed, b.replayed) {
            (false, true) => (a, b),
            (true, false) => (b, a),
            flags => panic!("{reference}: replayed flags {flags:?}, expected one of each"),
        };
        assert_eq!(original.id, replay.id, "{reference}");
        assert_eq!(original.block_hash, replay.block_hash, "{reference}");
        // The replay is the original receipt, flag aside.
        let mut unflagged = replay.clone();
        unflagged.replayed = false;
        assert_eq!(&unflagged, original, "{reference}");
        originals.push(original.clone());
    }

    let acknowledged: Vec<(Planned, Receipt)> = (0..PAIRS)
        .flat_map(shared_plan)
        .map(|planned| {
            let receipt = by_reference[&planned.reference]
                .iter()
                .find(|receipt| !receipt.replayed)
                .cloned()
                .unwrap();
            (planned, receipt)
        })
        .collect();
    assert_store_holds(&ledger, &acknowledged);

    // Idempotency outlives the handle: after a reopen the references still replay.
    let ledger = reopen(&store, ledger);
    assert_store_holds(&ledger, &acknowledged);
    for (planned, receipt) in acknowledged.iter().step_by(37) {
        let again = ledger.post(planned.request()).unwrap();
        assert!(again.replayed);
        assert_eq!(
            (again.id, again.block_hash),
            (receipt.id, receipt.block_hash)
        );
    }
    assert_eq!(
        ledger.stats().unwrap().transactions,
        acknowledged.len() as u64
    );
    ledger.close().unwrap();
}

/// Between checkpoints the state commits without an fsync; every read must still see each
/// write that returned before it (from any thread's handle), and a drop without `close` must
/// lose nothing: the next open applies the groups past the last checkpoint again from the log.
/// (`tests/ledger_interleavings.rs` forces the reads into other threads' groups.)
#[test]
fn reads_see_every_acknowledged_write_and_a_drop_between_checkpoints_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let options = || folio::LedgerOptions {
        checkpoint_groups: 1_000,
        checkpoint_interval: std::time::Duration::from_secs(3_600),
        ..folio::LedgerOptions::default()
    };
    let vfs = || std::sync::Arc::new(folio::log::vfs::RealFs);
    let writer = Ledger::create_with(vfs(), &store, options()).unwrap();
    let reader = writer.clone();
    let mut expected = Decimal::ZERO;
    for n in 0..50i64 {
        let posting = Posting::new("world", "till:1", &format!("{n}.25"), ASSET).unwrap();
        let request = PostRequest::new(LEDGER, vec![posting]).with_reference(format!("r{n}"));
        let receipt = writer.post(request).unwrap();
        expected += Decimal::new(n * 100 + 25, 2);
        let seen = std::thread::scope(|scope| {
            scope
                .spawn(|| reader.balance(LEDGER, "till:1").unwrap()[ASSET])
                .join()
                .unwrap()
        });
        assert_eq!(seen, expected, "after post {n}");
        let found = reader.transaction(LEDGER, receipt.id).unwrap().unwrap();
        assert_eq!(found.block_hash, receipt.block_hash);
    }
    // Some groups are only in the log now: post without reading, then drop without close.
    for n in 50..60i64 {
        let posting = Posting::new("world", "till:1", "1", ASSET).unwrap();
        writer
            .post(PostRequest::new(LEDGER, vec![posting]).with_reference(format!("r{n}")))
            .unwrap();
        expected += Decimal::ONE;
    }
    drop(reader);
    drop(writer);
    // (redb makes its non-durable commits durable when the handle drops, so what the open
    // catches up depends on redb; the crash suites cover what a crash takes.)
    let reopened = Ledger::open_with(vfs(), &store, options()).unwrap();
    assert_eq!(reopened.balance(LEDGER, "till:1").unwrap()[ASSET], expected);
    assert!(reopened.verify(&[]).unwrap().ok);
}
