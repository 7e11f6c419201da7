//! A deterministic ledger workload for the crash and fault suites: posts (with references),
//! reverts, metadata and policy changes and deliberate rejections, across segment rolls and
//! redb checkpoints, then a close. It records what each operation returned, so that a check
//! after a crash knows what was acknowledged.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{Ledger, LedgerOptions, Overdraft, PostRequest, Posting, Receipt, RevertRequest};
use rust_decimal::Decimal;

pub const STORE: &str = "/store";
pub const LEDGER: &str = "main";

/// Options that make a small workload roll segments and checkpoint redb often.
pub fn options() -> LedgerOptions {
    let clock = Arc::new(AtomicI64::new(1_800_000_000_000_000));
    LedgerOptions {
        segment_bytes: 4096,
        checkpoint_groups: 6,
        clock: Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
        ..LedgerOptions::default()
    }
}

/// One operation of the workload.
#[derive(Debug, Clone)]
pub enum Op {
    Post(PostRequest),
    Revert(RevertRequest),
    SetMetadata {
        account: String,
        key: String,
        value: String,
    },
    SetOverdraft {
        account: String,
        policy: Overdraft,
    },
}

/// What an operation returned.
#[derive(Debug, Clone)]
pub enum Outcome {
    Receipt(Receipt),
    /// A metadata or policy entry: its seq and block hash.
    Entry(u64, [u8; 32]),
    /// A rejection (bad input or a business rule): nothing may be written.
    Rejected(String),
}

/// What a run acknowledged before it stopped.
#[derive(Debug, Default)]
pub struct Trace {
    pub outcomes: Vec<(Op, Outcome)>,
    /// The operation that was running when the store failed, if one was.
    pub in_flight: Option<Op>,
    pub closed: bool,
}

fn cents(amount: u64) -> Decimal {
    Decimal::new(amount as i64, 2)
}

fn post(reference: String, postings: Vec<(&str, &str, u64)>) -> Op {
    let postings = postings
        .into_iter()
        .map(|(source, destination, amount)| Posting {
            source: source.into(),
            destination: destination.into(),
            amount: cents(amount),
            asset: "USD/2".into(),
        })
        .collect();
    Op::Post(PostRequest::new(LEDGER, postings).with_reference(reference))
}

/// The operations, in order: `count` steps of a till's day. Reverts name the ids that the
/// posts will get (seq = id; entry 1 is the store's creation).
pub fn operations(count: u64) -> Vec<Op> {
    let tills = ["till:1", "till:2", "till:3"];
    let mut ops = Vec::new();
    for n in 0..count {
        let till = tills[(n % 3) as usize];
        let op = match n % 10 {
            0..=4 => post(
                format!("sale-{n}"),
                vec![("world", till, 100 + n * 7 % 900)],
            ),
            5 => post(
                format!("fee-{n}"),
                vec![("world", "card", 500), ("card", "fees", 15)],
            ),
            6 => Op::SetMetadata {
                account: till.into(),
                key: "shift".into(),
                value: format!("s{n}"),
            },
            7 => post(format!("drop-{n}"), vec![(till, "bank", 50_000 + n)]), // often rejected
            8 => Op::Revert(RevertRequest {
                reference: Some(format!("refund-{n}")),
                ..RevertRequest::new(LEDGER, 2 + n / 2)
            }),
            _ => Op::SetOverdraft {
                account: till.into(),
                policy: Overdraft::Bounded(cents(1000 * (n % 4))),
            },
        };
        ops.push(op);
    }
    ops
}

/// Runs one operation.
pub fn apply(ledger: &Ledger, op: &Op) -> Result<Outcome, folio::Error> {
    let result = match op {
        Op::Post(request) => ledger.post(request.clone()).map(Outcome::Receipt),
        Op::Revert(request) => ledger.revert(request.clone()).map(Outcome::Receipt),
        Op::SetMetadata {
            account,
            key,
            value,
        } => ledger
            .set_account_metadata(
                LEDGER,
                account,
                BTreeMap::from([(key.clone(), value.clone())]),
            )
            .map(|c| Outcome::Entry(c.seq, c.block_hash)),
        Op::SetOverdraft { account, policy } => ledger
            .set_overdraft(LEDGER, account, "USD/2", *policy)
            .map(|c| Outcome::Entry(c.seq, c.block_hash)),
    };
    match result {
        Err(error) if error.is_rejection() => Ok(Outcome::Rejected(error.code().to_string())),
        other => other,
    }
}

/// A fresh simulated disk with the store's directory.
pub fn new_disk(seed: u64) -> SimFs {
    let fs = SimFs::new(seed);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    fs
}

pub fn create(fs: &SimFs) -> Result<Ledger, folio::Error> {
    Ledger::create_with(Arc::new(fs.clone()), Path::new(STORE), options())
}

pub fn open(fs: &SimFs) -> Result<Ledger, folio::Error> {
    Ledger::open_with(Arc::new(fs.clone()), Path::new(STORE), options())
}

/// Creates the store and runs the operations until the end (then closes) or the first store
/// failure.
pub fn run(fs: &SimFs, ops: &[Op]) -> Trace {
    let mut trace = Trace::default();
    let Ok(ledger) = create(fs) else { return trace };
    for op in ops {
        match apply(&ledger, op) {
            Ok(outcome) => trace.outcomes.push((op.clone(), outcome)),
            Err(_) => {
                trace.in_flight = Some(op.clone());
                return trace;
            }
        }
    }
    trace.closed = ledger.close().is_ok();
    trace
}
