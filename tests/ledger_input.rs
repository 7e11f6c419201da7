//! Bad input and broken business rules: every rejected write returns its typed `LedgerError`
//! variant and its stable `Error::code()`, counts as a rejection, and leaves the store exactly
//! as it was (same head, same statistics, same balances, accounts and transactions). Also the
//! JSON shape of requests: unknown fields, amounts as numbers and missing postings are refused;
//! the documented shape is accepted.

#![allow(clippy::unwrap_used, reason = "a test fails on any error")]
#![allow(
    clippy::result_large_err,
    reason = "the closures return the public API's own `Result<_, folio::Error>`"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use folio::ledger::model::{
    ACCOUNT_BYTES_MAX, LEDGER_NAME_BYTES_MAX, METADATA_BYTES_MAX, METADATA_ENTRIES_MAX,
    METADATA_KEY_BYTES_MAX, METADATA_VALUE_BYTES_MAX, POSTINGS_PER_TRANSACTION_MAX,
    REFERENCE_BYTES_MAX,
};
use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::{
    AccountView, Error, Head, Ledger, LedgerError, LedgerOptions, LedgerStats, Metadata, Overdraft,
    PostRequest, Posting, Receipt, RevertRequest, Timestamp,
};
use rust_decimal::Decimal;
use tempfile::TempDir;

const ASSET: &str = "USD/2";

/// A store with a little history: `main` has a sale of 100.00 to `till:1` (reference
/// `sale-1`, metadata `channel`), `till:1` has metadata `owner`; `other` has its own sale.
struct Fixture {
    dir: TempDir,
    ledger: Ledger,
    sale: Receipt,
    other_sale: Receipt,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    let sale = ledger
        .post(
            PostRequest::new("main", vec![posting("world", "till:1", "100.00")])
                .with_reference("sale-1")
                .with_metadata("channel", "card"),
        )
        .unwrap();
    let other_sale = ledger
        .post(PostRequest::new(
            "other",
            vec![posting("world", "till:9", "5")],
        ))
        .unwrap();
    let owner = Metadata::from([("owner".to_string(), "ann".to_string())]);
    ledger
        .set_account_metadata("main", "till:1", owner)
        .unwrap();
    Fixture {
        dir,
        ledger,
        sale,
        other_sale,
    }
}

fn posting(source: &str, destination: &str, amount: &str) -> Posting {
    Posting::new(source, destination, amount, ASSET).unwrap()
}

fn post_one(source: &str, destination: &str, amount: &str, asset: &str) -> PostRequest {
    let posting = Posting::new(source, destination, amount, asset).unwrap();
    PostRequest::new("main", vec![posting])
}

/// Everything a rejected write must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: Head,
    stats: LedgerStats,
    balances: BTreeMap<String, BTreeMap<String, BTreeMap<String, Decimal>>>,
    till: Option<AccountView>,
    sale: Option<Receipt>,
}

impl Fixture {
    fn snapshot(&self) -> Snapshot {
        let ledger = &self.ledger;
        let balances = ledger
            .ledgers()
            .unwrap()
            .into_iter()
            .map(|name| {
                let balances = ledger.balances(&name, "").unwrap();
                (name, balances)
            })
            .collect();
        Snapshot {
            head: ledger.head(),
            stats: ledger.stats().unwrap(),
            balances,
            till: ledger.account("main", "till:1").unwrap(),
            sale: ledger.transaction("main", self.sale.id).unwrap(),
        }
    }

    /// Runs a write that must be rejected; checks it changed nothing and had the code.
    fn rejects<T: std::fmt::Debug>(
        &self,
        code: &str,
        write: impl FnOnce(&Ledger) -> Result<T, Error>,
    ) -> LedgerError {
        let before = self.snapshot();
        let error = match write(&self.ledger) {
            Ok(accepted) => panic!("accepted, expected {code}: {accepted:?}"),
            Err(error) => error,
        };
        assert_eq!(error.code(), code, "{error}");
        assert!(error.is_rejection(), "{error}");
        assert_eq!(
            self.snapshot(),
            before,
            "the rejected write changed the store"
        );
        match error {
            Error::Ledger(error) => error,
            other => panic!("not a ledger error: {other:?}"),
        }
    }

    /// A post that must fail with `InvalidInput` on `field`.
    fn rejects_field(&self, field: &str, request: PostRequest) {
        let error = self.rejects("INVALID_INPUT", |l| l.post(request.clone()));
        match error {
            LedgerError::InvalidInput { field: found, .. } => {
                assert_eq!(found, field, "{request:?}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bad_ledger_names_are_invalid_input() {
    let f = fixture();
    let long = "l".repeat(LEDGER_NAME_BYTES_MAX + 1);
    for name in [
        "",
        "main shop",
        "main:shop",
        "café",
        "a/b",
        "tab\t",
        long.as_str(),
    ] {
        let mut request = post_one("world", "till:1", "1", ASSET);
        request.ledger = name.to_string();
        f.rejects_field("ledger", request);
    }
    // The longest name is fine.
    let longest = "l".repeat(LEDGER_NAME_BYTES_MAX);
    let mut request = post_one("world", "till:1", "1", ASSET);
    request.ledger = longest.clone();
    f.ledger.post(request).unwrap();
    assert!(f.ledger.ledgers().unwrap().contains(&longest));
    // Reads check the name too.
    let error = f.ledger.balances("main shop", "").unwrap_err();
    assert_eq!(error.code(), "INVALID_INPUT");
}

#[test]
fn bad_account_addresses_are_invalid_input_naming_source_or_destination() {
    let f = fixture();
    let long = format!("a:{}", "b".repeat(ACCOUNT_BYTES_MAX - 1));
    let bad = [
        "",
        ":a",
        "a:",
        "a::b",
        "a b",
        "a/b",
        "a.b",
        "é",
        "till:1\n",
        long.as_str(),
    ];
    for address in bad {
        f.rejects_field("destination", post_one("world", address, "1", ASSET));
        f.rejects_field("source", post_one(address, "till:1", "1", ASSET));
    }
    let error = f.rejects("INVALID_INPUT", |l| {
        l.set_account_metadata("main", "a::b", Metadata::from([("k".into(), "v".into())]))
    });
    assert!(matches!(
        error,
        LedgerError::InvalidInput {
            field: "account",
            ..
        }
    ));
    // The longest address is fine.
    let longest = format!("a:{}", "b".repeat(ACCOUNT_BYTES_MAX - 2));
    f.ledger
        .post(post_one("world", &longest, "1", ASSET))
        .unwrap();
}

#[test]
fn zero_and_negative_amounts_are_invalid_input() {
    let f = fixture();
    for amount in ["0", "0.00", "-0", "-5", "-0.01"] {
        let request = post_one("world", "till:1", amount, ASSET);
        let error = f.rejects("INVALID_INPUT", |l| l.post(request));
        match error {
            LedgerError::InvalidInput { field, reason, .. } => {
                assert_eq!(field, "amount");
                assert_eq!(reason, "must be greater than zero");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn amounts_that_are_not_plain_decimal_strings_are_refused_when_built() {
    for text in [
        "1e3", "", ".5", "5.", "1.2.3", " 1", "+1", "1,00", "0x10", "NaN",
    ] {
        let error = Error::from(Posting::new("world", "till:1", text, ASSET).unwrap_err());
        assert_eq!(error.code(), "INVALID_INPUT", "{text:?}");
        assert!(
            matches!(
                error,
                Error::Ledger(LedgerError::InvalidInput {
                    field: "amount",
                    ..
                })
            ),
            "{text:?}"
        );
    }
}

#[test]
fn an_amount_more_precise_than_its_asset_is_amount_precision() {
    let f = fixture();
    let error = f.rejects("AMOUNT_PRECISION", |l| {
        l.post(post_one("world", "till:1", "12.345", ASSET))
    });
    assert_eq!(
        error,
        LedgerError::AmountPrecision {
            amount: "12.345".to_string(),
            asset: ASSET.to_string(),
            scale: 2,
        }
    );
    let error = f.rejects("AMOUNT_PRECISION", |l| {
        l.post(post_one("world", "till:1", "1.5", "JPY/0"))
    });
    assert!(matches!(
        error,
        LedgerError::AmountPrecision { scale: 0, .. }
    ));
    // Trailing zeros are not precision: 12.500 is 12.5.
    let receipt = f
        .ledger
        .post(post_one("world", "till:1", "12.500", ASSET))
        .unwrap();
    assert_eq!(receipt.postings[0].amount.to_string(), "12.5");
    // An asset without a declared scale takes any precision.
    f.ledger
        .post(post_one("world", "till:1", "0.123456789", "BTC"))
        .unwrap();
}

#[test]
fn bad_assets_are_invalid_input() {
    let f = fixture();
    let long = "A".repeat(17);
    for asset in [
        "",
        "usd",
        "Usd",
        "USD/",
        "USD/02",
        "USD/19",
        "USD/-1",
        "1USD",
        "USD/2/3",
        "US D",
        "€",
        long.as_str(),
    ] {
        f.rejects_field("asset", post_one("world", "till:1", "1", asset));
    }
    let error = f.rejects("INVALID_INPUT", |l| {
        l.set_overdraft("main", "till:1", "usd", Overdraft::Unbounded)
    });
    assert!(matches!(
        error,
        LedgerError::InvalidInput { field: "asset", .. }
    ));
}

#[test]
fn a_transaction_without_postings_is_empty_postings() {
    let f = fixture();
    let error = f.rejects("EMPTY_POSTINGS", |l| {
        l.post(PostRequest::new("main", vec![]))
    });
    assert_eq!(error, LedgerError::EmptyPostings);
}

#[test]
fn more_than_a_thousand_postings_is_too_many_postings() {
    let f = fixture();
    let postings = |count: usize| -> Vec<Posting> {
        (0..count)
            .map(|i| posting("world", &format!("many:{i}"), "0.01"))
            .collect()
    };
    let request = PostRequest::new("main", postings(POSTINGS_PER_TRANSACTION_MAX + 1));
    let error = f.rejects("TOO_MANY_POSTINGS", |l| l.post(request));
    assert_eq!(
        error,
        LedgerError::TooManyPostings {
            count: 1001,
            max: 1000
        }
    );
    let receipt = f
        .ledger
        .post(PostRequest::new(
            "main",
            postings(POSTINGS_PER_TRANSACTION_MAX),
        ))
        .unwrap();
    assert_eq!(receipt.postings.len(), 1000);
}

#[test]
fn an_entry_over_the_log_body_bound_is_entry_too_large() {
    let f = fixture();
    // 1,000 postings between 2,000 distinct 256-byte addresses: about 1.8 MB encoded.
    let name = |side: &str, i: usize| format!("{side}:{i:04}:{}", "x".repeat(249));
    assert_eq!(name("s", 0).len(), ACCOUNT_BYTES_MAX);
    let fund: Vec<Posting> = (0..1000)
        .map(|i| posting("world", &name("s", i), "1"))
        .collect();
    f.ledger.post(PostRequest::new("main", fund)).unwrap();
    let spend: Vec<Posting> = (0..1000)
        .map(|i| posting(&name("s", i), &name("d", i), "1"))
        .collect();
    let request = PostRequest::new("main", spend);
    let error = f.rejects("ENTRY_TOO_LARGE", |l| l.post(request));
    assert!(matches!(
        error,
        LedgerError::EntryTooLarge { max: 1_048_576, .. }
    ));
}

fn metadata_of(entries: impl IntoIterator<Item = (String, String)>) -> Metadata {
    entries.into_iter().collect()
}

#[test]
fn oversized_metadata_is_metadata_too_large() {
    let f = fixture();
    let too_many =
        metadata_of((0..=METADATA_ENTRIES_MAX).map(|i| (format!("k{i}"), "v".to_string())));
    let long_value = metadata_of([("k".to_string(), "v".repeat(METADATA_VALUE_BYTES_MAX + 1))]);
    // Five values under the value bound, over the map bound together.
    let too_big = metadata_of((0..5).map(|i| (format!("k{i}"), "v".repeat(4000))));
    let cases = [
        (too_many, "more than 64 keys"),
        (long_value, "a value over 4096 bytes"),
        (too_big, "over 16 KiB in all"),
    ];
    for (metadata, expected) in cases {
        let mut request = post_one("world", "till:1", "1", ASSET);
        request.metadata = metadata.clone();
        let error = f.rejects("METADATA_TOO_LARGE", |l| l.post(request));
        assert_eq!(error, LedgerError::MetadataTooLarge { reason: expected });
        let error = f.rejects("METADATA_TOO_LARGE", |l| {
            l.set_account_metadata("main", "till:1", metadata.clone())
        });
        assert_eq!(error, LedgerError::MetadataTooLarge { reason: expected });
        let error = f.rejects("METADATA_TOO_LARGE", |l| {
            l.set_transaction_metadata("main", f.sale.id, metadata.clone())
        });
        assert_eq!(error, LedgerError::MetadataTooLarge { reason: expected });
        let mut revert = RevertRequest::new("main", f.sale.id);
        revert.metadata = metadata;
        let error = f.rejects("METADATA_TOO_LARGE", |l| l.revert(revert));
        assert_eq!(error, LedgerError::MetadataTooLarge { reason: expected });
    }
}

#[test]
fn metadata_at_its_bounds_is_accepted() {
    let f = fixture();
    let at_entries =
        metadata_of((0..METADATA_ENTRIES_MAX).map(|i| (format!("k{i}"), "v".to_string())));
    let at_value = metadata_of([("k".to_string(), "v".repeat(METADATA_VALUE_BYTES_MAX))]);
    // Keys and values add up to exactly 16 KiB.
    let at_total = metadata_of((0..4).map(|i| (format!("k{i}"), "v".repeat(4094))));
    let total: usize = at_total.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(total, METADATA_BYTES_MAX);
    // One account each: an account's metadata is one map, bounded as a whole.
    for (i, metadata) in [at_entries, at_value, at_total].into_iter().enumerate() {
        f.ledger
            .set_account_metadata("main", &format!("bounded:{i}"), metadata)
            .unwrap();
    }
}

/// The bounds are those of a map, and an account's metadata is one map: a `set` that would
/// take the merged map past 64 keys must be refused (two sets of 64 different keys may not
/// leave an account with 128).
#[test]
fn metadata_bounds_hold_for_the_merged_map_of_an_account() {
    let f = fixture();
    let first = metadata_of((0..METADATA_ENTRIES_MAX).map(|i| (format!("a{i}"), "v".into())));
    let second = metadata_of((0..METADATA_ENTRIES_MAX).map(|i| (format!("b{i}"), "v".into())));
    let outcome = f
        .ledger
        .set_account_metadata("main", "bounded", first)
        .and_then(|_| f.ledger.set_account_metadata("main", "bounded", second));
    let keys = f
        .ledger
        .account("main", "bounded")
        .unwrap()
        .map_or(0, |account| account.metadata.len());
    assert!(
        keys <= METADATA_ENTRIES_MAX,
        "the account holds {keys} metadata keys (second set: {:?})",
        outcome.map(|_| ()).map_err(|error| error.code())
    );
}

#[test]
fn bad_metadata_keys_are_invalid_input() {
    let f = fixture();
    let long = "k".repeat(METADATA_KEY_BYTES_MAX + 1);
    for key in ["", "a\nb", long.as_str()] {
        let request = post_one("world", "till:1", "1", ASSET).with_metadata(key, "v");
        f.rejects_field("metadata key", request);
    }
    let error = f.rejects("INVALID_INPUT", |l| {
        l.set_account_metadata("main", "till:1", Metadata::new())
    });
    assert!(matches!(
        error,
        LedgerError::InvalidInput {
            field: "metadata",
            ..
        }
    ));
}

#[test]
fn bad_references_are_invalid_input() {
    let f = fixture();
    let long = "r".repeat(REFERENCE_BYTES_MAX + 1);
    for reference in ["", "line\nbreak", "nul\0", long.as_str()] {
        let request = post_one("world", "till:1", "1", ASSET).with_reference(reference);
        f.rejects_field("reference", request);
    }
    let mut revert = RevertRequest::new("main", f.sale.id);
    revert.reference = Some(long.clone());
    let error = f.rejects("INVALID_INPUT", |l| l.revert(revert));
    assert!(matches!(
        error,
        LedgerError::InvalidInput {
            field: "reference",
            ..
        }
    ));
    let longest = "r".repeat(REFERENCE_BYTES_MAX);
    f.ledger
        .post(post_one("world", "till:1", "1", ASSET).with_reference(&longest))
        .unwrap();
}

#[test]
fn reverting_an_unknown_or_foreign_transaction_is_transaction_not_found() {
    let f = fixture();
    // An id past the head, entry 1 (the store's creation, not a transaction), a metadata
    // entry, and a transaction of another ledger.
    let metadata_seq = f.ledger.head().seq;
    for id in [9_999, 1, metadata_seq, f.other_sale.id] {
        let error = f.rejects("TRANSACTION_NOT_FOUND", |l| {
            l.revert(RevertRequest::new("main", id))
        });
        assert_eq!(
            error,
            LedgerError::TransactionNotFound {
                ledger: "main".to_string(),
                id
            }
        );
    }
    let error = f.rejects("TRANSACTION_NOT_FOUND", |l| {
        let metadata = Metadata::from([("k".to_string(), "v".to_string())]);
        l.set_transaction_metadata("main", f.other_sale.id, metadata)
    });
    assert!(matches!(error, LedgerError::TransactionNotFound { .. }));
}

#[test]
fn reverting_twice_is_already_reverted() {
    let f = fixture();
    let revert = f
        .ledger
        .revert(RevertRequest::new("main", f.sale.id))
        .unwrap();
    assert_eq!(revert.reverts, Some(f.sale.id));
    let error = f.rejects("ALREADY_REVERTED", |l| {
        l.revert(RevertRequest::new("main", f.sale.id))
    });
    assert_eq!(
        error,
        LedgerError::AlreadyReverted {
            id: f.sale.id,
            reverted_by: revert.id
        }
    );
}

#[test]
fn a_revert_that_would_overdraw_needs_force() {
    let f = fixture();
    f.ledger
        .post(PostRequest::new(
            "main",
            vec![posting("till:1", "bank", "60")],
        ))
        .unwrap();
    let error = f.rejects("INSUFFICIENT_FUNDS", |l| {
        l.revert(RevertRequest::new("main", f.sale.id))
    });
    assert!(
        matches!(error, LedgerError::InsufficientFunds { ref account, .. } if account == "till:1")
    );
    let mut forced = RevertRequest::new("main", f.sale.id);
    forced.force = true;
    let receipt = f.ledger.revert(forced).unwrap();
    assert_eq!(receipt.overdrafts.len(), 1);
    assert_eq!(receipt.overdrafts[0].account, "till:1");
    assert_eq!(receipt.overdrafts[0].balance, Decimal::new(-60, 0));
}

#[test]
fn deleting_an_absent_metadata_key_is_metadata_key_not_found() {
    let f = fixture();
    let error = f.rejects("METADATA_KEY_NOT_FOUND", |l| {
        l.delete_account_metadata("main", "till:1", "colour")
    });
    assert_eq!(
        error,
        LedgerError::MetadataKeyNotFound {
            target: "account till:1".to_string(),
            key: "colour".to_string()
        }
    );
    let error = f.rejects("METADATA_KEY_NOT_FOUND", |l| {
        l.delete_account_metadata("main", "never:used", "owner")
    });
    assert!(matches!(error, LedgerError::MetadataKeyNotFound { .. }));
    let error = f.rejects("METADATA_KEY_NOT_FOUND", |l| {
        l.delete_transaction_metadata("main", f.sale.id, "colour")
    });
    assert_eq!(
        error,
        LedgerError::MetadataKeyNotFound {
            target: format!("transaction {}", f.sale.id),
            key: "colour".to_string()
        }
    );
    // Present keys delete fine.
    f.ledger
        .delete_account_metadata("main", "till:1", "owner")
        .unwrap();
    f.ledger
        .delete_transaction_metadata("main", f.sale.id, "channel")
        .unwrap();
}

#[test]
fn setting_the_overdraft_of_world_is_world_policy() {
    let f = fixture();
    for policy in [
        Overdraft::None,
        Overdraft::Unbounded,
        Overdraft::Bounded(Decimal::new(10, 0)),
    ] {
        let error = f.rejects("WORLD_POLICY", |l| {
            l.set_overdraft("main", "world", ASSET, policy)
        });
        assert_eq!(error, LedgerError::WorldPolicy);
    }
}

#[test]
fn bad_overdraft_limits_are_refused() {
    let f = fixture();
    let error = f.rejects("INVALID_INPUT", |l| {
        l.set_overdraft(
            "main",
            "till:1",
            ASSET,
            Overdraft::Bounded(Decimal::new(-1, 0)),
        )
    });
    assert!(matches!(
        error,
        LedgerError::InvalidInput {
            field: "overdraft",
            ..
        }
    ));
    let error = f.rejects("AMOUNT_PRECISION", |l| {
        l.set_overdraft(
            "main",
            "till:1",
            ASSET,
            Overdraft::Bounded(Decimal::new(1, 3)),
        )
    });
    assert!(matches!(
        error,
        LedgerError::AmountPrecision { scale: 2, .. }
    ));
    assert!("-5".parse::<Overdraft>().is_err());
    assert!("lots".parse::<Overdraft>().is_err());
    assert_eq!(
        "unbounded".parse::<Overdraft>().unwrap(),
        Overdraft::Unbounded
    );
}

#[test]
fn insufficient_funds_names_account_asset_balance_and_shortfall() {
    let f = fixture();
    let error = f.rejects("INSUFFICIENT_FUNDS", |l| {
        l.post(post_one("till:1", "bank", "150", ASSET))
    });
    assert_eq!(
        error,
        LedgerError::InsufficientFunds {
            ledger: "main".to_string(),
            account: "till:1".to_string(),
            asset: ASSET.to_string(),
            balance: "100".to_string(),
            amount: "150".to_string(),
            shortfall: "50".to_string(),
        }
    );
    let message = error.to_string();
    for part in ["till:1", ASSET, "100", "150", "50"] {
        assert!(message.contains(part), "{message}");
    }
    // Under a bounded overdraft the shortfall is measured from the floor.
    f.ledger
        .set_overdraft(
            "main",
            "till:1",
            ASSET,
            Overdraft::Bounded(Decimal::new(20, 0)),
        )
        .unwrap();
    let error = f.rejects("INSUFFICIENT_FUNDS", |l| {
        l.post(post_one("till:1", "bank", "150", ASSET))
    });
    assert!(
        matches!(error, LedgerError::InsufficientFunds { ref shortfall, .. } if shortfall == "30")
    );
    // An account never used holds nothing.
    let error = f.rejects("INSUFFICIENT_FUNDS", |l| {
        l.post(post_one("ghost", "bank", "0.01", ASSET))
    });
    assert!(matches!(error, LedgerError::InsufficientFunds { ref balance, .. } if balance == "0"));
}

#[test]
fn insufficient_funds_is_checked_against_running_balances() {
    let f = fixture();
    // The second posting finds what the first one left: 40, not 100.
    let request = PostRequest::new(
        "main",
        vec![
            posting("till:1", "bank", "60"),
            posting("till:1", "bank", "60"),
        ],
    );
    let error = f.rejects("INSUFFICIENT_FUNDS", |l| l.post(request));
    assert!(matches!(
        error,
        LedgerError::InsufficientFunds { ref balance, ref shortfall, .. }
            if balance == "40" && shortfall == "20"
    ));
    // Order matters: spending before receiving fails, receiving first succeeds.
    let spend_first = PostRequest::new(
        "main",
        vec![
            posting("till:2", "bank", "50"),
            posting("world", "till:2", "50"),
        ],
    );
    f.rejects("INSUFFICIENT_FUNDS", |l| l.post(spend_first));
    let receive_first = PostRequest::new(
        "main",
        vec![
            posting("world", "till:2", "50"),
            posting("till:2", "bank", "50"),
        ],
    );
    f.ledger.post(receive_first).unwrap();
}

/// A volume is a `Decimal` of at most 96 bits of mantissa. A sum that needs more must be
/// refused as `OVERFLOW`, never rounded (`Decimal::checked_add` rounds rather than failing,
/// which would make the cents of this posting vanish from `rich`'s balance).
#[test]
fn a_volume_that_cannot_be_held_exactly_is_overflow_not_rounded() {
    let f = fixture();
    let huge = "1000000000000000000000000000";
    f.ledger
        .post(post_one("world", "rich", huge, ASSET))
        .unwrap();
    let result = f.ledger.post(post_one("world", "rich", "0.01", ASSET));
    let balance = f.ledger.balance("main", "rich").unwrap()[ASSET];
    match result {
        Err(error) => assert_eq!(error.code(), "OVERFLOW", "{error}"),
        Ok(receipt) => assert_eq!(
            balance.to_string(),
            format!("{huge}.01"),
            "transaction {} was accepted but rounded away",
            receipt.id
        ),
    }
}

/// Two postings whose running sums cannot be held exactly (and whose rounded steps would
/// differ from their rounded total): validation and `apply` must agree, so this is a plain
/// `OVERFLOW` rejection that leaves the ledger usable, never a `STORAGE` failure that poisons
/// it.
#[test]
fn an_unrepresentable_sum_is_a_rejection_and_does_not_poison_the_ledger() {
    let f = fixture();
    f.ledger
        .post(post_one(
            "world",
            "rich",
            "1000000000000000000000000000",
            ASSET,
        ))
        .unwrap();
    let request = PostRequest::new(
        "main",
        vec![
            posting("world", "rich", "0.05"),
            posting("world", "rich", "0.05"),
        ],
    );
    let error = f.rejects("OVERFLOW", |l| l.post(request));
    assert!(matches!(error, LedgerError::Overflow { .. }), "{error:?}");
    f.ledger
        .post(post_one("world", "till:1", "1", ASSET))
        .unwrap();
}

#[test]
fn a_posting_to_its_own_source_is_invalid_input() {
    let f = fixture();
    let request = post_one("till:1", "till:1", "1", ASSET);
    let error = f.rejects("INVALID_INPUT", |l| l.post(request));
    assert!(matches!(
        error,
        LedgerError::InvalidInput { field: "destination", ref value, .. } if value == "till:1"
    ));
    f.rejects_field("destination", post_one("world", "world", "1", ASSET));
}

#[test]
fn a_reused_reference_with_another_request_names_the_first_differing_field() {
    let f = fixture();
    let original = || {
        PostRequest::new("main", vec![posting("world", "till:1", "100.00")])
            .with_reference("sale-1")
            .with_metadata("channel", "card")
    };
    // The same request, with the amount written differently, replays.
    let mut same = original();
    same.postings[0] = posting("world", "till:1", "100");
    let replayed = f.ledger.post(same).unwrap();
    assert!(replayed.replayed);
    assert_eq!(
        (replayed.id, replayed.block_hash),
        (f.sale.id, f.sale.block_hash)
    );

    let mut amount = original();
    amount.postings[0] = posting("world", "till:1", "100.01");
    let mut destination = original();
    destination.postings[0] = posting("world", "till:2", "100.00");
    let mut count = original();
    count.postings.push(posting("world", "till:2", "1"));
    let timestamp = original().with_timestamp(Timestamp::parse("2026-11-22T10:00:00Z").unwrap());
    let metadata = original().with_metadata("channel", "cash");
    let cases = [
        (amount, "postings[0].amount"),
        (destination, "postings[0].destination"),
        (count, "number of postings"),
        (timestamp, "timestamp"),
        (metadata, "metadata"),
    ];
    for (request, field) in cases {
        let error = f.rejects("IDEMPOTENCY_CONFLICT", |l| l.post(request));
        assert_eq!(
            error,
            LedgerError::IdempotencyConflict {
                ledger: "main".to_string(),
                reference: "sale-1".to_string(),
                original_id: f.sale.id,
                field: field.to_string(),
            }
        );
    }
    let mut revert = RevertRequest::new("main", f.sale.id);
    revert.reference = Some("sale-1".to_string());
    let error = f.rejects("IDEMPOTENCY_CONFLICT", |l| l.revert(revert));
    assert!(matches!(
        error,
        LedgerError::IdempotencyConflict { ref field, .. } if field == "kind (a post and a revert)"
    ));
    // References are per ledger: the same one in another ledger is a new transaction.
    let mut elsewhere = original();
    elsewhere.ledger = "other".to_string();
    assert!(!f.ledger.post(elsewhere).unwrap().replayed);
}

#[test]
fn a_closed_handle_refuses_writes() {
    let f = fixture();
    f.ledger.close().unwrap();
    let error = f
        .ledger
        .post(post_one("world", "till:1", "1", ASSET))
        .unwrap_err();
    assert_eq!(error.code(), "CLOSED");
    assert!(matches!(error, Error::Ledger(LedgerError::Closed)));
    assert!(!error.is_rejection());
}

#[test]
fn a_store_in_use_or_not_a_store_refuses_to_open() {
    let f = fixture();
    let error = Ledger::open(f.ledger.dir()).unwrap_err();
    assert_eq!(error.code(), "STORE_IN_USE");
    let error = Ledger::create(f.ledger.dir()).unwrap_err();
    assert_eq!(error.code(), "STORE_EXISTS");
    let error = Ledger::open(f.dir.path().join("missing")).unwrap_err();
    assert_eq!(error.code(), "NOT_A_STORE");
}

/// A failed open must not change the directory it was pointed at (a `LOCK` file left in an
/// empty directory would make `create` refuse it as `STORE_EXISTS`).
#[test]
fn opening_an_empty_directory_leaves_it_empty_for_create() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let error = Ledger::open(&empty).unwrap_err();
    assert_eq!(error.code(), "NOT_A_STORE");
    let left: Vec<_> = std::fs::read_dir(&empty)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    let created = Ledger::create(&empty).map_err(|error| error.code());
    assert!(
        created.is_ok(),
        "create after a failed open: {:?}; the open left {left:?} behind",
        created.err()
    );
}

/// Verify and replay pointed at a directory that is not a store refuse it and leave it as it
/// was: they check for the log before taking the store's lock, whose file would otherwise be
/// left behind.
#[test]
fn verify_and_replay_of_an_empty_directory_leave_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let vfs: Arc<dyn folio::log::vfs::Vfs> = Arc::new(folio::log::vfs::RealFs);
    let verified = folio::verify::verify_store(vfs.clone(), dir.path(), &[], &mut |_, _| {});
    assert_eq!(Error::from(verified.unwrap_err()).code(), "NOT_A_STORE");
    let rebuilt = folio::replay::rebuild_state(vfs, dir.path(), &mut |_, _| {});
    assert_eq!(Error::from(rebuilt.unwrap_err()).code(), "NOT_A_STORE");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A crash inside `create` acknowledged nothing, so the directory must be usable afterwards:
/// either `open` finishes the store or `create` starts again, at every crash step of `create`
/// (including after the log directory is made but before its first segment is durable).
#[test]
fn a_create_interrupted_by_a_crash_can_be_finished_or_redone() {
    let store = Path::new("/store");
    // Small segments: the simulated disk holds them in memory.
    let options = || LedgerOptions {
        segment_bytes: 64 << 10,
        ..LedgerOptions::default()
    };
    let dry = SimFs::new(7);
    Ledger::create_with(Arc::new(dry.clone()), store, options())
        .unwrap()
        .close()
        .unwrap();
    let mut stuck = Vec::new();
    for step in 1..=dry.steps() {
        let fs = SimFs::new(7);
        fs.crash_at_step(step);
        drop(Ledger::create_with(Arc::new(fs.clone()), store, options()));
        for (kind, image) in [
            ("process crash", fs.process_crash_image()),
            ("power loss", fs.power_loss_image(step)),
        ] {
            let vfs: Arc<dyn Vfs> = Arc::new(image);
            let open = Ledger::open_with(vfs.clone(), store, options());
            let Err(open_error) = open else { continue };
            match Ledger::create_with(vfs, store, options()) {
                Ok(_) => {}
                Err(create_error) => stuck.push(format!(
                    "step {step} ({kind}): open {}, create {}",
                    open_error.code(),
                    create_error.code()
                )),
            }
        }
    }
    assert!(
        stuck.is_empty(),
        "directories neither openable nor creatable: {stuck:#?}"
    );
}

// The JSON shape of requests.

const DOCUMENTED: &str = r#"{"ledger":"main","reference":"sale-1","timestamp":"2026-11-22T10:00:00Z","postings":[{"source":"world","destination":"till:1","amount":"12.50","asset":"USD/2"}],"metadata":{"k":"v"}}"#;

#[test]
fn the_documented_request_shape_is_accepted() {
    let request: PostRequest = serde_json::from_str(DOCUMENTED).unwrap();
    assert_eq!(request.ledger, "main");
    assert_eq!(request.reference.as_deref(), Some("sale-1"));
    assert_eq!(
        request.timestamp,
        Some(Timestamp::parse("2026-11-22T10:00:00Z").unwrap())
    );
    assert_eq!(request.postings, vec![posting("world", "till:1", "12.50")]);
    assert_eq!(request.postings[0].amount.to_string(), "12.50");
    assert_eq!(request.metadata, Metadata::from([("k".into(), "v".into())]));
    // It serializes back to the same shape.
    let again: serde_json::Value = serde_json::to_value(&request).unwrap();
    let documented: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap();
    assert_eq!(again, documented);
    // Only ledger and postings are required.
    let minimal = r#"{"ledger":"main","postings":[{"source":"world","destination":"till:1","amount":"1","asset":"USD/2"}]}"#;
    let minimal: PostRequest = serde_json::from_str(minimal).unwrap();
    assert_eq!((minimal.reference, minimal.timestamp), (None, None));

    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path().join("store")).unwrap();
    let receipt = ledger.post(request).unwrap();
    assert_eq!(receipt.postings[0].amount.to_string(), "12.5");
    assert_eq!(receipt.timestamp.to_rfc3339(), "2026-11-22T10:00:00Z");
    ledger.close().unwrap();
}

#[test]
fn malformed_request_json_is_refused() {
    let with = |from: &str, to: &str| {
        assert!(DOCUMENTED.contains(from));
        DOCUMENTED.replacen(from, to, 1)
    };
    let cases = [
        (
            "an unknown field",
            with(r#""ledger":"main""#, r#""ledger":"main","extra":1"#),
        ),
        (
            "an unknown posting field",
            with(r#""asset":"USD/2""#, r#""asset":"USD/2","memo":"x""#),
        ),
        (
            "a number amount",
            with(r#""amount":"12.50""#, r#""amount":12.50"#),
        ),
        (
            "an integer amount",
            with(r#""amount":"12.50""#, r#""amount":12"#),
        ),
        (
            "an exponent amount",
            with(r#""amount":"12.50""#, r#""amount":"1.25e1""#),
        ),
        (
            "missing postings",
            r#"{"ledger":"main","reference":"sale-1"}"#.to_string(),
        ),
        ("missing ledger", with(r#""ledger":"main","#, "")),
        (
            "a timestamp without offset",
            with("2026-11-22T10:00:00Z", "2026-11-22T10:00:00"),
        ),
        (
            "a number metadata value",
            with(r#"{"k":"v"}"#, r#"{"k":1}"#),
        ),
    ];
    for (what, json) in cases {
        let result = serde_json::from_str::<PostRequest>(&json);
        assert!(result.is_err(), "{what} was accepted: {json}");
    }
    let error =
        serde_json::from_str::<PostRequest>(&with(r#""amount":"12.50""#, r#""amount":12.5"#))
            .unwrap_err()
            .to_string();
    assert!(error.contains("expected a string"), "{error}");
    let error = serde_json::from_str::<PostRequest>(r#"{"ledger":"main"}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing field `postings`"), "{error}");
    let error = serde_json::from_str::<RevertRequest>(r#"{"ledger":"main","id":2,"why":"x"}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `why`"), "{error}");
}
