//! Model-based test of the ledger: random sequences of posts, repeated and conflicting
//! references, reverts, account and transaction metadata, policy changes, reopens and crashes
//! (through the simulated disk, under both the log and redb) run against the ledger and
//! against a plain in-memory model. At every step results, receipts, errors and balances agree;
//! after every reopen the state equals a replay of the log; per ledger and asset, balances sum
//! to zero. The model and the checks are the ledger oracle (`tests/support/oracle.rs`), which
//! the `ledger_ops` fuzz target also runs: this file only draws the operations.

mod support {
    pub mod oracle;
}

use proptest::prelude::*;
use support::oracle::{self, ACCOUNTS, AmountSpec, EUR, Op, PostingSpec, USD};

/// `ACCOUNTS.len()`, as the account picks are drawn.
const ACCOUNT_PICKS: u8 = ACCOUNTS.len() as u8;

/// `cents` (up to 50.00) of USD/2 or of EUR (no declared scale), so that a drawn amount is
/// always in the asset's precision.
fn posting_strategy() -> impl Strategy<Value = PostingSpec> + Clone {
    // world is a frequent source so that money flows in.
    let source = prop_oneof![3 => Just(0u8), 2 => 0..ACCOUNT_PICKS];
    let asset = prop_oneof![Just(USD), Just(EUR)];
    (source, 0..ACCOUNT_PICKS, 1u16..5000, asset).prop_map(|(source, destination, cents, asset)| {
        PostingSpec::between(source, destination, cents_of(cents), asset)
    })
}

fn cents_of(cents: u16) -> AmountSpec {
    AmountSpec {
        units: cents,
        scale: 2,
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let postings = proptest::collection::vec(posting_strategy(), 1..4);
    let ledger = 0..2u8;
    let account = 0..ACCOUNT_PICKS;
    let key = 0u8..3;
    let asset = prop_oneof![Just(USD), Just(EUR)];
    // Posts use references 0 to 11 and reverts 12 to 15, so that a revert's reference repeats
    // only a revert's (the fuzzer mixes them).
    prop_oneof![
        8 => (ledger.clone(), postings.clone(), proptest::option::of(0u8..12), any::<bool>())
            .prop_map(|(ledger, postings, reference, dated)| Op::Post { ledger, postings, reference, dated }),
        2 => any::<u8>().prop_map(|pick| Op::Repeat { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Conflict { pick }),
        3 => (ledger.clone(), any::<u8>(), any::<bool>(), proptest::option::of(12u8..16))
            .prop_map(|(ledger, target, force, reference)| Op::Revert { ledger, target, force, reference }),
        2 => (ledger.clone(), account.clone(), key.clone(), any::<u8>())
            .prop_map(|(ledger, account, key, value)| Op::SetAccountMetadata { ledger, account, key, value }),
        1 => (ledger.clone(), account.clone(), key.clone())
            .prop_map(|(ledger, account, key)| Op::DeleteAccountMetadata { ledger, account, key }),
        1 => (ledger.clone(), any::<u8>(), key.clone(), any::<u8>())
            .prop_map(|(ledger, target, key, value)| Op::SetTransactionMetadata { ledger, target, key, value }),
        1 => (ledger.clone(), any::<u8>(), key)
            .prop_map(|(ledger, target, key)| Op::DeleteTransactionMetadata { ledger, target, key }),
        2 => (ledger.clone(), account, asset, 0u8..3, 0u16..3000)
            .prop_map(|(ledger, account, asset, policy, limit)| Op::SetOverdraft { ledger, account, asset, policy, limit: cents_of(limit) }),
        1 => Just(Op::Reopen),
        1 => Just(Op::ProcessCrash),
        1 => any::<u8>().prop_map(|seed| Op::PowerLoss { seed }),
        1 => (ledger, postings, 0u8..7, prop_oneof![3 => Just(true), 1 => Just(false)], any::<u8>())
            .prop_map(|(ledger, postings, steps, power_loss, seed)| Op::CrashDuringPost { ledger, postings, steps, power_loss, seed }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_the_model_at_every_step(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        oracle::run(&ops);
    }
}

#[test]
fn a_day_of_every_action_agrees_with_the_model() {
    // A fixed sequence that touches every operation at least once, so a regression shows
    // without depending on what proptest happens to draw.
    let pay = |source, destination, cents, asset| {
        PostingSpec::between(source, destination, cents_of(cents), asset)
    };
    let post = |ledger, postings: Vec<PostingSpec>, reference: Option<u8>| Op::Post {
        ledger,
        postings,
        reference,
        dated: false,
    };
    let revert = |ledger, target, force, reference| Op::Revert {
        ledger,
        target,
        force,
        reference,
    };
    oracle::run(&[
        post(0, vec![pay(0, 1, 5000, USD)], Some(1)),
        post(0, vec![pay(1, 3, 2000, USD), pay(1, 4, 100, USD)], Some(2)),
        Op::Repeat { pick: 0 },
        Op::Conflict { pick: 1 },
        post(0, vec![pay(1, 3, 9999, USD)], None),
        Op::SetOverdraft {
            ledger: 0,
            account: 1,
            asset: USD,
            policy: 1,
            limit: cents_of(10000),
        },
        post(0, vec![pay(1, 3, 9999, USD)], None),
        revert(0, 0, false, Some(13)),
        revert(0, 0, false, Some(13)),
        Op::SetAccountMetadata {
            ledger: 1,
            account: 2,
            key: 0,
            value: 1,
        },
        Op::DeleteAccountMetadata {
            ledger: 1,
            account: 2,
            key: 0,
        },
        Op::DeleteAccountMetadata {
            ledger: 1,
            account: 2,
            key: 0,
        },
        Op::SetTransactionMetadata {
            ledger: 0,
            target: 1,
            key: 0,
            value: 1,
        },
        Op::DeleteTransactionMetadata {
            ledger: 0,
            target: 1,
            key: 0,
        },
        Op::SetOverdraft {
            ledger: 1,
            account: 0,
            asset: EUR,
            policy: 2,
            limit: cents_of(0),
        },
        Op::Reopen,
        Op::ProcessCrash,
        Op::PowerLoss { seed: 3 },
        Op::CrashDuringPost {
            ledger: 1,
            postings: vec![pay(0, 2, 700, EUR)],
            steps: 1,
            power_loss: true,
            seed: 9,
        },
        revert(1, 0, true, None),
    ]);
}
