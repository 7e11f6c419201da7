//! Statements from the accounts' timelines (`docs/reports.md`, "How a statement is computed"): over random
//! back-dated transactions in several assets, posted one by one and in batches, with reverts
//! and later metadata changes, every statement (any account, any period, midnight or not, one
//! asset or all) equals the statement computed the old way, by walking the whole log: the same
//! opening and closing balances, totals and movements. Most posts land in a few hours, so an
//! hour holds several runs whose entries interleave in time. The state, timelines included,
//! equals a replay of the log (which cuts the timelines into other runs), and a reopened store
//! says the same.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod workload;
}

use std::collections::BTreeMap;

use folio::domain::entry::EntryBody;
use folio::report::{ReportError, Statement, StatementRequest, statement};
use folio::{Ledger, PostRequest, Posting, RevertRequest, Timestamp};
use proptest::prelude::*;
use rust_decimal::Decimal;

const LEDGER: &str = "main";
const ACCOUNTS: [&str; 4] = ["world", "till:a", "till:b", "bank"];
const ASSETS: [&str; 3] = ["EUR/2", "USD", "JPY/0"];
const HOUR_US: i64 = 3_600_000_000;
/// 2026-01-01T00:00:00Z: day 0 of the drawn timestamps.
const EPOCH_US: i64 = 1_767_225_600_000_000;

/// Postings: (source, destination, amount in cents, asset), by index.
type Postings = Vec<(usize, usize, i64, usize)>;

#[derive(Debug, Clone)]
enum Op {
    /// Postings at `minute` minutes after the epoch.
    Post { minute: i64, postings: Postings },
    /// Several posts in one batch (one write transaction).
    Batch(Vec<(i64, Postings)>),
    /// Reverts the pick-th transaction posted so far (at the time the test runs).
    Revert(usize),
    /// Tags the pick-th transaction posted so far.
    Tag(usize),
}

fn postings() -> impl Strategy<Value = Postings> {
    // World is a frequent source so that money flows in; others may be refused (overdraft).
    let source = prop_oneof![3 => Just(0usize), 2 => 0..ACCOUNTS.len()];
    proptest::collection::vec(
        (source, 0..ACCOUNTS.len(), 1i64..50_000, 0..ASSETS.len()),
        1..4,
    )
}

fn op() -> impl Strategy<Value = Op> {
    // Ten days, so periods of a day, of hours and of several days all come up; most in a few
    // hours of the first day, so that an hour holds several runs (posts and batches) whose
    // entries interleave in time.
    let minute = prop_oneof![3 => 0i64..240, 1 => 0i64..14_400];
    prop_oneof![
        6 => (minute.clone(), postings())
            .prop_map(|(minute, postings)| Op::Post { minute, postings }),
        2 => proptest::collection::vec((minute, postings()), 1..8).prop_map(Op::Batch),
        2 => any::<usize>().prop_map(Op::Revert),
        1 => any::<usize>().prop_map(Op::Tag),
    ]
}

fn request(minute: i64, postings: &[(usize, usize, i64, usize)]) -> Option<PostRequest> {
    let postings: Vec<Posting> = postings
        .iter()
        .filter(|(source, destination, _, _)| source != destination)
        .map(|&(source, destination, cents, asset)| {
            let amount = Decimal::new(cents, 2);
            let amount = match ASSETS[asset] {
                "JPY/0" => amount.trunc().max(Decimal::ONE),
                _ => amount,
            };
            Posting {
                source: ACCOUNTS[source].into(),
                destination: ACCOUNTS[destination].into(),
                amount,
                asset: ASSETS[asset].into(),
            }
        })
        .collect();
    let time = Timestamp(EPOCH_US + minute * 60_000_000);
    (!postings.is_empty()).then(|| PostRequest::new(LEDGER, postings).with_timestamp(time))
}

/// Runs the operations; returns the ids posted. Refusals (overdrafts) are part of the draw.
fn run(ledger: &Ledger, ops: &[Op]) -> Vec<u64> {
    let mut ids = Vec::new();
    for op in ops {
        match op {
            Op::Post { minute, postings } => {
                if let Some(request) = request(*minute, postings)
                    && let Ok(receipt) = ledger.post(request)
                {
                    ids.push(receipt.id);
                }
            }
            Op::Batch(posts) => {
                let requests: Vec<PostRequest> = posts
                    .iter()
                    .filter_map(|(minute, postings)| request(*minute, postings))
                    .collect();
                for receipt in ledger.post_batch(requests).into_iter().flatten() {
                    ids.push(receipt.id);
                }
            }
            Op::Revert(pick) if !ids.is_empty() => {
                let revert = RevertRequest {
                    force: true,
                    ..RevertRequest::new(LEDGER, ids[pick % ids.len()])
                };
                if let Ok(receipt) = ledger.revert(revert) {
                    ids.push(receipt.id);
                }
            }
            Op::Tag(pick) if !ids.is_empty() => {
                let note = BTreeMap::from([("note".to_string(), format!("{pick}"))]);
                ledger
                    .set_transaction_metadata(LEDGER, ids[pick % ids.len()], note)
                    .unwrap();
            }
            Op::Revert(_) | Op::Tag(_) => {}
        }
    }
    ids
}

/// One asset of a statement computed the old way.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    opening: Decimal,
    closing: Decimal,
    /// (id, timestamp, in, out, counterparties), in effective order.
    movements: Vec<(u64, i64, Decimal, Decimal, Vec<String>)>,
}

/// The statement by walking every entry of the log (what statements did before timelines):
/// `None` when no posting ever touched the account.
fn walk_the_log(ledger: &Ledger, request: &StatementRequest) -> Option<BTreeMap<String, Expected>> {
    let mut parts: BTreeMap<String, Expected> = BTreeMap::new();
    let mut touched = false;
    for seq in 1..=ledger.head().seq {
        let entry = ledger.log().read(seq).unwrap();
        let EntryBody::Transaction(tx) = folio::replay::decode_body(&entry).unwrap() else {
            continue;
        };
        // asset -> (in, out, counterparties)
        let mut effect: BTreeMap<String, (Decimal, Decimal, Vec<String>)> = BTreeMap::new();
        for posting in &tx.postings {
            if posting.destination == request.account {
                let slot = effect.entry(posting.asset.clone()).or_default();
                slot.0 += posting.amount.0;
                slot.2.push(posting.source.clone());
            }
            if posting.source == request.account {
                let slot = effect.entry(posting.asset.clone()).or_default();
                slot.1 += posting.amount.0;
                slot.2.push(posting.destination.clone());
            }
        }
        touched |= !effect.is_empty();
        for (asset, (amount_in, amount_out, mut counterparties)) in effect {
            if request.asset.as_ref().is_some_and(|only| *only != asset) {
                continue;
            }
            let part = parts.entry(asset).or_default();
            let net = amount_in - amount_out;
            if tx.timestamp < request.from.0 {
                part.opening += net;
            }
            if tx.timestamp < request.to.0 {
                part.closing += net;
            }
            if (request.from.0..request.to.0).contains(&tx.timestamp) {
                counterparties.sort();
                counterparties.dedup();
                let movement = (seq, tx.timestamp, amount_in, amount_out, counterparties);
                part.movements.push(movement);
            }
        }
    }
    if let Some(asset) = &request.asset {
        parts.entry(asset.clone()).or_default();
    }
    for part in parts.values_mut() {
        part.movements
            .sort_by_key(|movement| (movement.1, movement.0));
    }
    touched.then_some(parts)
}

/// The statement as the same shape, checking its own sums on the way.
fn as_expected(ledger: &Ledger, statement: &Statement) -> BTreeMap<String, Expected> {
    let mut parts = BTreeMap::new();
    for part in &statement.assets {
        let mut running = part.opening;
        let mut movements = Vec::new();
        for movement in &part.movements {
            running += movement.amount_in - movement.amount_out;
            assert_eq!(movement.balance, running);
            let receipt = ledger.transaction(LEDGER, movement.id).unwrap().unwrap();
            assert_eq!(movement.metadata, receipt.metadata, "metadata as of now");
            assert_eq!(movement.reverts, receipt.reverts);
            movements.push((
                movement.id,
                movement.timestamp.0,
                movement.amount_in,
                movement.amount_out,
                movement.counterparties.clone(),
            ));
        }
        assert_eq!(running, part.closing);
        assert_eq!(part.opening + part.total_in - part.total_out, part.closing);
        let expected = Expected {
            opening: part.opening,
            closing: part.closing,
            movements,
        };
        parts.insert(part.asset.clone(), expected);
    }
    parts
}

/// Periods over the drawn days and beyond: whole days, hours cut mid-hour, several days, and
/// one to the far future that holds the reverts (posted at the time the test runs).
fn periods() -> Vec<(i64, i64)> {
    let day = 24 * HOUR_US;
    let mut periods = vec![
        (EPOCH_US - day, EPOCH_US),
        (EPOCH_US - 400 * day, EPOCH_US + 400_000 * day),
        (EPOCH_US + 3 * day, EPOCH_US + 6 * day + 5 * HOUR_US),
        (EPOCH_US + 9 * day, EPOCH_US + 1000 * day),
    ];
    // Inside and across the first hours, where most posts land.
    let minute = 60_000_000;
    for (from, to) in [
        (90, 150),
        (30, 31),
        (2, 239),
        (60, 120),
        (61, 62),
        (119, 181),
    ] {
        periods.push((EPOCH_US + from * minute, EPOCH_US + to * minute));
    }
    for n in 0..10 {
        periods.push((EPOCH_US + n * day, EPOCH_US + (n + 1) * day));
        let from = EPOCH_US + n * day + (3 * n + 1) * HOUR_US + 120_000_000;
        periods.push((from, from + (n + 2) * HOUR_US));
    }
    periods
}

/// Every statement agrees with walking the log.
fn check_statements(ledger: &Ledger) {
    for account in ACCOUNTS {
        for (from, to) in periods() {
            for asset in [None, Some("EUR/2"), Some("GBP")] {
                let request = StatementRequest {
                    ledger: LEDGER.into(),
                    account: account.into(),
                    from: Timestamp(from),
                    to: Timestamp(to),
                    asset: asset.map(String::from),
                };
                let expected = walk_the_log(ledger, &request);
                match (statement(ledger, &request), expected) {
                    (Ok(found), Some(expected)) => {
                        assert_eq!(as_expected(ledger, &found), expected, "{request:?}");
                        assert_eq!(found.head_seq, ledger.head().seq);
                    }
                    (Err(ReportError::AccountNotFound { .. }), None) => {}
                    (found, expected) => {
                        panic!("{request:?}: {found:?}, expected {expected:?}")
                    }
                }
            }
        }
    }
}

fn check(ops: &[Op]) {
    let fs = support::workload::new_disk(3);
    let ledger = support::workload::create(&fs).unwrap();
    run(&ledger, ops);
    check_statements(&ledger);
    assert_eq!(ledger.state_difference().unwrap(), None);
    ledger.close().unwrap();
    drop(ledger);
    let ledger = support::workload::open(&fs).unwrap();
    check_statements(&ledger);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn statements_from_timelines_equal_statements_from_walking_the_log(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        check(&ops);
    }
}

#[test]
fn a_day_of_back_dated_posts_reverts_and_tags_agrees_with_walking_the_log() {
    // A fixed draw, so a regression shows without depending on what proptest draws.
    let sale = |minute, to, cents, asset| Op::Post {
        minute,
        postings: vec![(0, to, cents, asset)],
    };
    check(&[
        sale(30 * 60 + 5, 1, 10_000, 0),
        sale(5 * 60, 1, 2_550, 0),
        Op::Batch(vec![
            (31 * 60 + 2, vec![(0, 2, 700, 1), (0, 2, 300, 2)]),
            (29 * 60, vec![(1, 3, 5_000, 0), (0, 1, 1, 0)]),
            (30 * 60 + 1, vec![(1, 2, 100, 0), (2, 1, 100, 0)]),
        ]),
        Op::Revert(0),
        Op::Tag(1),
        sale(30 * 60 + 2, 1, 99, 2),
        sale(239 * 60 + 59, 2, 99, 2),
        Op::Revert(3),
        sale(0, 3, 1, 1),
    ]);
}
