//! The `post_request` and `ledger_ops` fuzz targets' checks, run over their checked-in seed
//! corpora (`fuzz/corpus_seed/post_request/`, `fuzz/corpus_seed/ledger_ops/`) on every
//! `cargo test`: every JSON line is refused, or round-trips and posts to a receipt or a typed
//! rejection; every operation sequence agrees with the in-memory model at every step.
//!
//! The named seeds are generated here: `write_seed_corpus` (ignored) rewrites them, and a test
//! checks that the files still hold what the generator makes (for `ledger_ops`, that they
//! decode to the intended operations). Files the fuzzer found worth keeping sit beside them.
//! Inputs the fuzzer found to fail stay here as named tests.

#![allow(clippy::unwrap_used, reason = "a test fails on any error")]

mod support {
    pub mod oracle;
    pub mod post_request_check;
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{Ledger, LedgerOptions, PostRequest, Posting};
use rust_decimal::Decimal;
use support::oracle::{self, AmountSpec, JPY, Op, PostingSpec, USD};
use support::post_request_check::{self as request_check, Outcome};

const POST_REQUEST_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus_seed/post_request");
const LEDGER_OPS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus_seed/ledger_ops");

fn files_in(dir: &str) -> BTreeMap<String, Vec<u8>> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|error| panic!("read {dir}: {error}"));
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(name, std::fs::read(&path).unwrap());
    }
    files
}

// ---------------------------------------------------------------------------------------------
// post_request

/// A valid posting, as JSON.
const SALE: &str = r#"{"source":"world","destination":"till:1","amount":"12.50","asset":"USD/2"}"#;

/// A request to `main` with these postings (JSON objects) and `rest` (more fields, each after
/// a comma).
fn line(postings: &str, rest: &str) -> Vec<u8> {
    format!(r#"{{"ledger":"main","postings":[{postings}]{rest}}}"#).into_bytes()
}

/// Each named seed, its bytes, and what it comes to (each input posts into a fresh ledger).
fn post_request_seeds() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    use Outcome::{NotUtf8, Posted, Refused, Rejected};
    let posting = |amount: &str, asset: &str| {
        format!(
            r#"{{"source":"world","destination":"till:1","amount":{amount},"asset":"{asset}"}}"#
        )
    };
    let nested = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    vec![
        ("documented", line(SALE, ""), Posted),
        (
            "every_field",
            line(
                SALE,
                r#","reference":"sale-1","timestamp":"2026-11-22T10:00:00Z","metadata":{"till":"1"}"#,
            ),
            Posted,
        ),
        (
            "fields_reordered",
            format!(r#"{{"postings":[{SALE}],"ledger":"main"}}"#).into_bytes(),
            Posted,
        ),
        (
            "whitespace_around",
            format!(" \t{{ \"ledger\" : \"main\" , \"postings\" : [ {SALE} ] }}\r\n").into_bytes(),
            Posted,
        ),
        (
            "two_postings",
            line(&format!("{SALE},{}", posting(r#""0.01""#, "JPY")), ""),
            Posted,
        ),
        ("null_reference", line(SALE, r#","reference":null"#), Posted),
        (
            "timestamp_with_offset",
            line(SALE, r#","timestamp":"2026-11-22T10:00:00.123456+05:30""#),
            Posted,
        ),
        (
            "timestamp_leap_second",
            line(SALE, r#","timestamp":"2016-12-31T23:59:60Z""#),
            Posted,
        ),
        (
            "timestamp_nanoseconds",
            line(SALE, r#","timestamp":"2026-11-22T10:00:00.000000001Z""#),
            Refused,
        ),
        (
            "timestamp_not_rfc3339",
            line(SALE, r#","timestamp":"22/11/2026""#),
            Refused,
        ),
        (
            "amount_largest",
            line(&posting(r#""79228162514264337593543950335""#, "USD"), ""),
            Posted,
        ),
        (
            "amount_past_largest",
            line(&posting(r#""79228162514264337593543950336""#, "USD"), ""),
            Refused,
        ),
        (
            "amount_28_places",
            line(&posting(r#""0.0000000000000000000000000001""#, "USD"), ""),
            Posted,
        ),
        (
            "amount_as_number",
            line(&posting("12.5", "USD/2"), ""),
            Refused,
        ),
        (
            "amount_huge_number",
            line(&posting("1e400", "USD/2"), ""),
            Refused,
        ),
        (
            "amount_exponent_string",
            line(&posting(r#""1e3""#, "USD/2"), ""),
            Refused,
        ),
        (
            "amount_plus_sign",
            line(&posting(r#""+1""#, "USD/2"), ""),
            Refused,
        ),
        (
            "amount_zero",
            line(&posting(r#""0.00""#, "USD/2"), ""),
            Rejected("INVALID_INPUT"),
        ),
        (
            "amount_negative",
            line(&posting(r#""-5""#, "USD/2"), ""),
            Rejected("INVALID_INPUT"),
        ),
        (
            "amount_too_precise",
            line(&posting(r#""1.005""#, "USD/2"), ""),
            Rejected("AMOUNT_PRECISION"),
        ),
        (
            "asset_lowercase",
            line(&posting(r#""1""#, "usd"), ""),
            Rejected("INVALID_INPUT"),
        ),
        ("empty_postings", line("", ""), Rejected("EMPTY_POSTINGS")),
        (
            "same_source_and_destination",
            line(
                r#"{"source":"bank","destination":"bank","amount":"1","asset":"EUR"}"#,
                "",
            ),
            Rejected("INVALID_INPUT"),
        ),
        (
            "insufficient_funds",
            line(
                r#"{"source":"till:1","destination":"bank","amount":"1","asset":"EUR"}"#,
                "",
            ),
            Rejected("INSUFFICIENT_FUNDS"),
        ),
        (
            "unicode_account",
            line(
                r#"{"source":"world","destination":"caisse:é","amount":"1","asset":"EUR"}"#,
                "",
            ),
            Rejected("INVALID_INPUT"),
        ),
        (
            "unicode_metadata",
            line(SALE, r#","metadata":{"note":"café ☕ \u00e9\ud83d\ude00"}"#),
            Posted,
        ),
        (
            "escaped_ledger_name",
            br#"{"ledger":"m\u0061in","postings":[]}"#.to_vec(),
            Rejected("EMPTY_POSTINGS"),
        ),
        (
            "lone_surrogate",
            line(SALE, r#","reference":"\ud800""#),
            Refused,
        ),
        (
            "control_character_reference",
            line(SALE, r#","reference":"a\u0007b""#),
            Rejected("INVALID_INPUT"),
        ),
        (
            "missing_postings",
            br#"{"ledger":"main"}"#.to_vec(),
            Refused,
        ),
        (
            "missing_ledger",
            format!(r#"{{"postings":[{SALE}]}}"#).into_bytes(),
            Refused,
        ),
        (
            "missing_amount",
            line(
                r#"{"source":"world","destination":"till:1","asset":"EUR"}"#,
                "",
            ),
            Refused,
        ),
        ("unknown_field", line(SALE, r#","memo":"x""#), Refused),
        (
            "unknown_posting_field",
            line(
                r#"{"source":"world","destination":"bank","amount":"1","asset":"EUR","fee":"0"}"#,
                "",
            ),
            Refused,
        ),
        (
            "duplicate_field",
            line(SALE, r#","ledger":"shop""#),
            Refused,
        ),
        (
            "postings_an_object",
            format!(r#"{{"ledger":"main","postings":{SALE}}}"#).into_bytes(),
            Refused,
        ),
        (
            "ledger_a_number",
            format!(r#"{{"ledger":7,"postings":[{SALE}]}}"#).into_bytes(),
            Refused,
        ),
        (
            "metadata_number_value",
            line(SALE, r#","metadata":{"till":1}"#),
            Refused,
        ),
        (
            "deep_nesting",
            line(SALE, &format!(r#","metadata":{{"a":{nested}}}"#)),
            Refused,
        ),
        (
            "trailing_garbage",
            [line(SALE, ""), b"}".to_vec()].concat(),
            Refused,
        ),
        (
            "two_lines",
            [line(SALE, ""), b"\n".to_vec(), line(SALE, "")].concat(),
            Refused,
        ),
        ("empty", Vec::new(), Refused),
        ("an_array", b"[]".to_vec(), Refused),
        (
            "not_utf8",
            [b"{\"ledger\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat(),
            NotUtf8,
        ),
    ]
}

#[test]
fn every_post_request_seed_passes_the_check() {
    let seeds = files_in(POST_REQUEST_DIR);
    assert!(
        seeds.len() >= post_request_seeds().len(),
        "seeds missing: {:?}",
        seeds.keys()
    );
    for (name, bytes) in &seeds {
        let outcome = std::panic::catch_unwind(|| request_check::check_post_request(bytes));
        assert!(outcome.is_ok(), "seed {name} failed the check");
    }
}

#[test]
fn each_named_post_request_seed_comes_to_its_expected_outcome() {
    let files = files_in(POST_REQUEST_DIR);
    for (name, bytes, expected) in post_request_seeds() {
        let file = files
            .get(name)
            .unwrap_or_else(|| panic!("seed {name} missing"));
        assert_eq!(
            *file, bytes,
            "seed {name} on disk differs from the generator"
        );
        let outcome = request_check::check_post_request(&bytes);
        assert_eq!(outcome, expected, "seed {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// ledger_ops: encoding operations into the bytes `arbitrary` decodes them from.

/// Writes a value as the bytes that `arbitrary` (1.x) decodes back into it: integers little-
/// endian, `bool` one byte, `Option` a bool then the value, a collection each element after a
/// `true` byte and a `false` byte at the end, an enum its variant as a `u32` (decoded as
/// `(u32 * variants) >> 32`) then its fields in order. `ledger_ops_seeds_decode_to_their
/// operations` pins this against the real decoder.
trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(value) = self {
            value.encode(out);
        }
    }
}

impl<T: Encode> Encode for [T] {
    fn encode(&self, out: &mut Vec<u8>) {
        for value in self {
            true.encode(out);
            value.encode(out);
        }
        false.encode(out);
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_slice().encode(out);
    }
}

/// The smallest `u32` that `(u32 * count) >> 32` maps to `index`.
fn variant(out: &mut Vec<u8>, index: u64, count: u64) {
    let tag = u32::try_from((index << 32).div_ceil(count)).unwrap();
    out.extend(tag.to_le_bytes());
}

impl Encode for AmountSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        self.units.encode(out);
        self.scale.encode(out);
    }
}

impl Encode for PostingSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        self.source.encode(out);
        self.destination.encode(out);
        self.amount.encode(out);
        self.asset.encode(out);
    }
}

/// How many variants `Op` has: `encode` below lists each once, in declaration order.
const OP_VARIANTS: u64 = 13;

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut tag = |index| variant(out, index, OP_VARIANTS);
        match self {
            Op::Post {
                ledger,
                postings,
                reference,
                dated,
            } => {
                tag(0);
                (ledger, postings, reference, dated).encode(out);
            }
            Op::Repeat { pick } => {
                tag(1);
                pick.encode(out);
            }
            Op::Conflict { pick } => {
                tag(2);
                pick.encode(out);
            }
            Op::Revert {
                ledger,
                target,
                force,
                reference,
            } => {
                tag(3);
                (ledger, target, force, reference).encode(out);
            }
            Op::SetAccountMetadata {
                ledger,
                account,
                key,
                value,
            } => {
                tag(4);
                (ledger, account, key, value).encode(out);
            }
            Op::DeleteAccountMetadata {
                ledger,
                account,
                key,
            } => {
                tag(5);
                (ledger, account, key).encode(out);
            }
            Op::SetTransactionMetadata {
                ledger,
                target,
                key,
                value,
            } => {
                tag(6);
                (ledger, target, key, value).encode(out);
            }
            Op::DeleteTransactionMetadata {
                ledger,
                target,
                key,
            } => {
                tag(7);
                (ledger, target, key).encode(out);
            }
            Op::SetOverdraft {
                ledger,
                account,
                asset,
                policy,
                limit,
            } => {
                tag(8);
                (ledger, account, asset, policy).encode(out);
                limit.encode(out);
            }
            Op::Reopen => tag(9),
            Op::ProcessCrash => tag(10),
            Op::PowerLoss { seed } => {
                tag(11);
                seed.encode(out);
            }
            Op::CrashDuringPost {
                ledger,
                postings,
                steps,
                power_loss,
                seed,
            } => {
                tag(12);
                (ledger, postings, steps, power_loss).encode(out);
                seed.encode(out);
            }
        }
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

impl<A: Encode, B: Encode, C: Encode> Encode for (A, B, C) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
        self.2.encode(out);
    }
}

impl<A: Encode, B: Encode, C: Encode, D: Encode> Encode for (A, B, C, D) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
        self.2.encode(out);
        self.3.encode(out);
    }
}

/// The bytes a sequence of operations decodes from.
fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    ops.encode(&mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// ledger_ops: the named seeds.

const MAIN: u8 = 0;
const SHOP: u8 = 1;
const WORLD: u8 = 0;
const TILL_1: u8 = 1;
const TILL_2: u8 = 2;
const BANK: u8 = 3;
const FEES: u8 = 4;

/// `units / 10^scale` of `asset` from account index `source` to `destination`.
fn pay(source: u8, destination: u8, units: u16, scale: u8, asset: u8) -> PostingSpec {
    PostingSpec::between(source, destination, AmountSpec { units, scale }, asset)
}

/// `HUGE[pick]` of `asset`.
fn pay_huge(source: u8, destination: u8, pick: u16, asset: u8) -> PostingSpec {
    PostingSpec {
        amount: AmountSpec {
            units: pick,
            scale: oracle::HUGE_SCALE_MIN,
        },
        ..pay(source, destination, 0, 0, asset)
    }
}

fn post(ledger: u8, postings: Vec<PostingSpec>, reference: Option<u8>) -> Op {
    Op::Post {
        ledger,
        postings,
        reference,
        dated: false,
    }
}

fn revert(ledger: u8, target: u8, force: bool, reference: Option<u8>) -> Op {
    Op::Revert {
        ledger,
        target,
        force,
        reference,
    }
}

fn policy(ledger: u8, account: u8, asset: u8, policy: u8, units: u16, scale: u8) -> Op {
    Op::SetOverdraft {
        ledger,
        account,
        asset,
        policy,
        limit: AmountSpec { units, scale },
    }
}

fn account_meta(ledger: u8, account: u8, key: u8, value: u8) -> Op {
    Op::SetAccountMetadata {
        ledger,
        account,
        key,
        value,
    }
}

/// Funds `till:1` and `till:2` in both ledgers and assets.
fn funded() -> Vec<Op> {
    let mut ops = Vec::new();
    for ledger in [MAIN, SHOP] {
        ops.push(post(
            ledger,
            vec![
                pay(WORLD, TILL_1, 10_000, 2, USD),
                pay(WORLD, TILL_2, 5_000, 2, USD),
                pay(WORLD, TILL_1, 900, 0, JPY),
            ],
            None,
        ));
    }
    ops
}

fn ledger_ops_seeds() -> Vec<(&'static str, Vec<Op>)> {
    let with_funds = |more: Vec<Op>| [funded(), more].concat();
    vec![
        ("empty", Vec::new()),
        ("every_op_once", every_op_once()),
        (
            "references_replay_and_conflict",
            with_funds(vec![
                post(MAIN, vec![pay(TILL_1, BANK, 500, 2, USD)], Some(1)),
                post(MAIN, vec![pay(TILL_1, BANK, 500, 2, USD)], Some(1)),
                post(MAIN, vec![pay(TILL_1, BANK, 5, 0, USD)], Some(1)),
                post(MAIN, vec![pay(TILL_1, BANK, 501, 2, USD)], Some(1)),
                post(SHOP, vec![pay(TILL_1, BANK, 500, 2, USD)], Some(1)),
                Op::Repeat { pick: 3 },
                Op::Conflict { pick: 3 },
                Op::Post {
                    ledger: MAIN,
                    postings: vec![pay(TILL_1, BANK, 1, 0, USD)],
                    reference: Some(2),
                    dated: true,
                },
                Op::Post {
                    ledger: MAIN,
                    postings: vec![pay(TILL_1, BANK, 1, 0, USD)],
                    reference: Some(2),
                    dated: false,
                },
                revert(MAIN, 2, false, Some(1)),
                revert(MAIN, 2, false, Some(3)),
                revert(MAIN, 2, false, Some(3)),
                revert(MAIN, 2, true, Some(3)),
                post(MAIN, vec![pay(WORLD, BANK, 7, 0, USD)], Some(3)),
                post(MAIN, vec![pay(WORLD, BANK, 9, 9, USD)], Some(4)),
                Op::Repeat { pick: 9 },
            ]),
        ),
        (
            "reverts_forced_and_refused",
            with_funds(vec![
                post(MAIN, vec![pay(TILL_1, BANK, 9_000, 2, USD)], None),
                revert(MAIN, 0, false, None),
                revert(MAIN, 0, true, None),
                revert(MAIN, 0, true, None),
                revert(MAIN, 3, false, None),
                revert(SHOP, 0, false, None),
                revert(SHOP, 224 + 1, false, None),
                revert(MAIN, 224 + 31, true, None),
                revert(SHOP, 1, false, Some(5)),
                revert(SHOP, 1, true, Some(5)),
                revert(SHOP, 4, false, None),
                revert(SHOP, 5, false, None),
            ]),
        ),
        (
            "overdraft_policies",
            with_funds(vec![
                post(MAIN, vec![pay(TILL_2, BANK, 6_000, 2, USD)], None),
                policy(MAIN, TILL_2, USD, 1, 500, 1),
                post(MAIN, vec![pay(TILL_2, BANK, 6_000, 2, USD)], None),
                post(MAIN, vec![pay(TILL_2, BANK, 6_000, 2, USD)], None),
                policy(MAIN, TILL_2, USD, 2, 0, 0),
                post(MAIN, vec![pay(TILL_2, BANK, 60_000, 1, USD)], None),
                policy(MAIN, TILL_2, USD, 0, 0, 0),
                post(MAIN, vec![pay(TILL_2, BANK, 1, 2, USD)], None),
                policy(MAIN, TILL_2, USD, 1, 0, 0),
                policy(MAIN, TILL_2, JPY, 1, 15, 1),
                policy(MAIN, TILL_2, JPY, 1, 1500, 2),
                policy(MAIN, BANK, USD, 1, 1, 3),
                policy(MAIN, WORLD, USD, 2, 0, 0),
                policy(SHOP, FEES, JPY, 1, 1, oracle::HUGE_SCALE_MIN),
                post(SHOP, vec![pay(FEES, BANK, 3, 0, JPY)], None),
                post(
                    SHOP,
                    vec![pay(TILL_1, FEES, 1, 0, JPY), pay(FEES, BANK, 2, 0, JPY)],
                    None,
                ),
            ]),
        ),
        (
            "huge_amounts_overflow",
            vec![
                post(MAIN, vec![pay_huge(WORLD, TILL_1, 0, USD)], None),
                post(MAIN, vec![pay_huge(WORLD, TILL_1, 0, USD)], None),
                post(MAIN, vec![pay(WORLD, TILL_2, 1, 2, USD)], None),
                post(MAIN, vec![pay_huge(TILL_1, BANK, 0, USD)], None),
                post(MAIN, vec![pay_huge(BANK, TILL_1, 3, USD)], None),
                post(MAIN, vec![pay_huge(WORLD, TILL_2, 1, USD)], None),
                post(MAIN, vec![pay_huge(WORLD, TILL_2, 1, JPY)], None),
                post(
                    MAIN,
                    vec![
                        pay_huge(WORLD, TILL_2, 2, JPY),
                        pay_huge(WORLD, TILL_2, 2, JPY),
                    ],
                    None,
                ),
                post(
                    SHOP,
                    vec![
                        pay_huge(WORLD, TILL_2, 4, USD),
                        pay(TILL_2, BANK, 1, 2, USD),
                    ],
                    None,
                ),
                post(SHOP, vec![pay(WORLD, TILL_2, 1, 1, USD)], None),
                post(SHOP, vec![pay_huge(WORLD, TILL_2, 4, USD)], None),
                revert(MAIN, 0, false, None),
                revert(MAIN, 0, true, None),
                Op::Conflict { pick: 0 },
                Op::Conflict { pick: 1 },
            ],
        ),
        (
            "transaction_totals_overflow",
            vec![
                post(MAIN, vec![pay(WORLD, TILL_1, 5, 1, USD)], None),
                post(
                    MAIN,
                    vec![
                        pay(WORLD, TILL_1, 5, 1, USD),
                        pay_huge(WORLD, TILL_1, 2, USD),
                    ],
                    None,
                ),
            ],
        ),
        (
            "amount_forms",
            with_funds(vec![
                post(MAIN, vec![pay(WORLD, TILL_1, 0, 2, USD)], None),
                post(MAIN, vec![pay(TILL_1, TILL_1, 1, 0, USD)], None),
                post(MAIN, vec![pay(WORLD, TILL_1, 15, 1, JPY)], None),
                post(MAIN, vec![pay(WORLD, TILL_1, 1, 3, USD)], None),
                post(MAIN, vec![pay(WORLD, TILL_1, 5_000, 3, JPY)], None),
                post(MAIN, vec![pay(WORLD, TILL_1, 1_230, 3, USD)], None),
                post(
                    MAIN,
                    vec![pay(WORLD, BANK, 1, 0, USD), pay(TILL_1, TILL_1, 1, 0, USD)],
                    None,
                ),
                post(
                    MAIN,
                    vec![pay(WORLD, BANK, 1, 3, USD), pay(TILL_1, BANK, 0, 0, USD)],
                    None,
                ),
                post(MAIN, Vec::new(), None),
                post(
                    MAIN,
                    vec![
                        pay(TILL_1, BANK, 1, 0, USD),
                        pay(BANK, FEES, 1, 0, USD),
                        pay(FEES, TILL_1, 1, 0, USD),
                    ],
                    Some(6),
                ),
                Op::Repeat { pick: 9 },
            ]),
        ),
        (
            "account_metadata_bounds",
            vec![
                account_meta(MAIN, TILL_1, 0, 1),
                account_meta(MAIN, TILL_1, 0, 2),
                account_meta(MAIN, TILL_1, 1, 252),
                account_meta(MAIN, TILL_1, 1, 253),
                account_meta(MAIN, TILL_1, 2, 252),
                account_meta(MAIN, TILL_1, 3, 252),
                account_meta(MAIN, TILL_1, 0, 252),
                Op::DeleteAccountMetadata {
                    ledger: MAIN,
                    account: TILL_1,
                    key: 1,
                },
                account_meta(MAIN, TILL_1, 0, 252),
                Op::DeleteAccountMetadata {
                    ledger: MAIN,
                    account: TILL_1,
                    key: 1,
                },
                Op::DeleteAccountMetadata {
                    ledger: SHOP,
                    account: TILL_1,
                    key: 0,
                },
                account_meta(SHOP, WORLD, 0, 0),
                Op::DeleteAccountMetadata {
                    ledger: SHOP,
                    account: WORLD,
                    key: 0,
                },
                Op::Reopen,
            ],
        ),
        (
            "transaction_metadata",
            with_funds(vec![
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 0,
                    value: 0,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 1,
                    value: 252,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 2,
                    value: 252,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 3,
                    value: 252,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 3,
                    value: 255,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 0,
                    value: 252,
                },
                Op::SetTransactionMetadata {
                    ledger: SHOP,
                    target: 0,
                    key: 0,
                    value: 0,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 224 + 1,
                    key: 0,
                    value: 0,
                },
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 224 + 3,
                    key: 0,
                    value: 255,
                },
                Op::DeleteTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 1,
                },
                Op::DeleteTransactionMetadata {
                    ledger: MAIN,
                    target: 0,
                    key: 1,
                },
                Op::DeleteTransactionMetadata {
                    ledger: SHOP,
                    target: 0,
                    key: 0,
                },
                revert(MAIN, 0, true, Some(7)),
                Op::SetTransactionMetadata {
                    ledger: MAIN,
                    target: 2,
                    key: 0,
                    value: 9,
                },
                Op::Repeat { pick: 0 },
                revert(MAIN, 0, true, Some(7)),
                Op::ProcessCrash,
            ]),
        ),
        (
            "reopen_after_each_op",
            with_funds(interleave(&every_op_once(), Op::Reopen)),
        ),
        (
            "process_crash_after_each_op",
            with_funds(interleave(&every_op_once(), Op::ProcessCrash)),
        ),
        (
            "power_loss_after_each_op",
            with_funds(interleave(&every_op_once(), Op::PowerLoss { seed: 5 })),
        ),
        (
            "crash_during_post_each_step",
            crash_during_post_each_step(false),
        ),
        (
            "power_loss_during_post_each_step",
            crash_during_post_each_step(true),
        ),
        (
            "two_ledgers",
            with_funds(vec![
                post(MAIN, vec![pay(TILL_1, BANK, 100, 2, USD)], Some(8)),
                post(SHOP, vec![pay(TILL_1, BANK, 100, 2, USD)], Some(8)),
                post(SHOP, vec![pay(TILL_1, BANK, 200, 2, USD)], Some(8)),
                revert(SHOP, 2, false, None),
                revert(MAIN, 3, false, None),
                account_meta(MAIN, BANK, 0, 0),
                Op::DeleteAccountMetadata {
                    ledger: SHOP,
                    account: BANK,
                    key: 0,
                },
                policy(SHOP, BANK, USD, 2, 0, 0),
                post(MAIN, vec![pay(BANK, FEES, 100, 1, USD)], None),
                post(SHOP, vec![pay(BANK, FEES, 100, 1, USD)], None),
            ]),
        ),
    ]
}

fn every_op_once() -> Vec<Op> {
    vec![
        post(MAIN, vec![pay(WORLD, TILL_1, 5_000, 2, USD)], Some(1)),
        post(
            MAIN,
            vec![
                pay(TILL_1, BANK, 2_000, 2, USD),
                pay(TILL_1, FEES, 100, 2, USD),
            ],
            Some(2),
        ),
        Op::Repeat { pick: 0 },
        Op::Conflict { pick: 1 },
        post(MAIN, vec![pay(TILL_1, BANK, 9_999, 2, USD)], None),
        policy(MAIN, TILL_1, USD, 1, 10_000, 2),
        post(MAIN, vec![pay(TILL_1, BANK, 9_999, 2, USD)], None),
        revert(MAIN, 0, false, Some(13)),
        revert(MAIN, 0, false, Some(13)),
        account_meta(SHOP, TILL_2, 0, 1),
        Op::DeleteAccountMetadata {
            ledger: SHOP,
            account: TILL_2,
            key: 0,
        },
        Op::DeleteAccountMetadata {
            ledger: SHOP,
            account: TILL_2,
            key: 0,
        },
        Op::SetTransactionMetadata {
            ledger: MAIN,
            target: 1,
            key: 0,
            value: 1,
        },
        Op::DeleteTransactionMetadata {
            ledger: MAIN,
            target: 1,
            key: 0,
        },
        policy(SHOP, WORLD, JPY, 2, 0, 0),
        Op::Reopen,
        Op::ProcessCrash,
        Op::PowerLoss { seed: 3 },
        Op::CrashDuringPost {
            ledger: SHOP,
            postings: vec![pay(WORLD, TILL_2, 700, 0, JPY)],
            steps: 2,
            power_loss: true,
            seed: 9,
        },
        revert(SHOP, 0, true, None),
    ]
}

/// `ops` with `between` after each, up to the operation bound.
fn interleave(ops: &[Op], between: Op) -> Vec<Op> {
    let mut out: Vec<Op> = ops
        .iter()
        .flat_map(|op| [op.clone(), between.clone()])
        .collect();
    out.truncate(oracle::OPS_MAX - funded().len());
    out
}

/// A post cut by a crash at each of its first mutating calls in turn, each settled by a retry.
fn crash_during_post_each_step(power_loss: bool) -> Vec<Op> {
    let mut ops = funded();
    for steps in 0..(oracle::OPS_MAX - ops.len()) as u8 {
        ops.push(Op::CrashDuringPost {
            ledger: steps % 2,
            postings: vec![pay(TILL_1, BANK, 1 + u16::from(steps), 2, USD)],
            steps,
            power_loss,
            seed: steps,
        });
    }
    ops
}

#[test]
fn every_ledger_ops_seed_passes_the_check() {
    let seeds = files_in(LEDGER_OPS_DIR);
    assert!(
        seeds.len() >= ledger_ops_seeds().len(),
        "seeds missing: {:?}",
        seeds.keys()
    );
    for (name, bytes) in &seeds {
        let outcome = std::panic::catch_unwind(|| oracle::check_ledger_ops(bytes));
        assert!(outcome.is_ok(), "seed {name} failed the check");
    }
}

#[test]
fn ledger_ops_seeds_decode_to_their_operations() {
    let files = files_in(LEDGER_OPS_DIR);
    for (name, ops) in ledger_ops_seeds() {
        assert!(
            ops.len() <= oracle::OPS_MAX,
            "seed {name} has too many operations"
        );
        let bytes = encode_ops(&ops);
        assert_eq!(
            oracle::decode(&bytes),
            ops,
            "seed {name} does not round-trip"
        );
        let file = files
            .get(name)
            .unwrap_or_else(|| panic!("seed {name} missing"));
        assert_eq!(
            *file, bytes,
            "seed {name} on disk differs from the generator"
        );
    }
}

/// Regenerates both seed corpora:
/// `cargo test --test fuzz_corpus_ledger -- --ignored write_seed_corpus`. Deterministic, so a
/// rerun changes no file unless a generator changed; files of other names (kept fuzzer finds)
/// are left alone.
#[test]
#[ignore = "writes fuzz/corpus_seed/post_request/ and fuzz/corpus_seed/ledger_ops/"]
fn write_seed_corpus() {
    let write = |dir: &str, name: &str, bytes: &[u8]| {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    for (name, bytes, _) in post_request_seeds() {
        write(POST_REQUEST_DIR, name, &bytes);
    }
    for (name, ops) in ledger_ops_seeds() {
        write(LEDGER_OPS_DIR, name, &encode_ops(&ops));
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions.

/// A ledger on a fresh simulated disk.
fn bare_ledger() -> Ledger {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/store")).unwrap();
    Ledger::create_with(Arc::new(fs), Path::new("/store"), LedgerOptions::default()).unwrap()
}

/// `amount` of USD (undeclared scale) from world to `till:1`.
fn from_world(amount: &str) -> Posting {
    Posting::new("world", "till:1", amount, "USD").unwrap()
}

/// Found by the `ledger_ops` model (seed `transaction_totals_overflow`): `till:1` holds 0.5,
/// then one transaction brings it 0.5 and 1e28. Every volume it leads to fits a `Decimal`
/// exactly (`till:1` input 1e28 + 1, world output the same); the ledger once refused it with
/// `OVERFLOW` because `TransactionEntry::check_volume_changes` summed each account's amounts
/// (0.5 + 1e28, which needs 30 digits) before adding them to the volumes.
#[test]
fn transaction_whose_volumes_all_fit_is_not_refused_as_overflow() {
    let ledger = bare_ledger();
    ledger
        .post(PostRequest::new("main", vec![from_world("0.5")]))
        .unwrap();
    let postings = vec![
        from_world("0.5"),
        from_world("10000000000000000000000000000"),
    ];
    let result = ledger.post(PostRequest::new("main", postings));
    assert!(result.is_ok(), "refused: {:?}", result.err());
    let expected: Decimal = "10000000000000000000000000001".parse().unwrap();
    assert_eq!(ledger.balance("main", "till:1").unwrap()["USD"], expected);
    assert_eq!(ledger.balance("main", "world").unwrap()["USD"], -expected);
}
