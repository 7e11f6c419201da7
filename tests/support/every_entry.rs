//! A store holding every kind of entry the ledger accepts and every shape of revert chain: a
//! revert of a revert of a revert, a forced revert and its revert, a chain in a second ledger,
//! metadata on a revert, times at both ends of the storable range, and an amount near the top
//! of what an event can carry. `tests/export_events.rs` exports it and `tests/sync_http.rs`
//! syncs it: no entry of it may stop either.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::collections::BTreeMap;
use std::path::Path;

use folio::{Ledger, Overdraft, PostRequest, Posting, RevertRequest, Timestamp};

/// What the store holds.
pub struct EveryEntry {
    /// The last seq.
    pub head: u64,
    /// Seqs of the entries without an event: the store's creation, overdraft policies, acks.
    pub silent: Vec<u64>,
    /// (revert, the transaction it reverts), in log order.
    pub reverts: Vec<(u64, u64)>,
}

fn post(name: &str, postings: &[(&str, &str, &str, &str)]) -> PostRequest {
    let postings = postings
        .iter()
        .map(|(source, target, amount, asset)| {
            Posting::new(*source, *target, amount, *asset).unwrap()
        })
        .collect();
    PostRequest::new(name, postings)
}

fn metadata(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_string(), value.to_string())])
}

/// Builds the store at `path`.
pub fn every_entry(path: &Path) -> EveryEntry {
    let ledger = Ledger::create(path).unwrap();
    let mut silent = vec![1];
    let mut reverts = Vec::new();
    let mut revert = |ledger: &Ledger, request: RevertRequest| {
        let original = request.id;
        let id = ledger.revert(request).unwrap().id;
        reverts.push((id, original));
        id
    };
    // Posts at both ends of the storable range, with a reference and metadata.
    let first = post("main", &[("world", "till:1", "12.50", "USD/2")])
        .with_timestamp(Timestamp::MIN)
        .with_reference("first")
        .with_metadata("k", "v");
    let first = ledger.post(first).unwrap().id;
    let last = post("main", &[("world", "till:2", "1500", "JPY")]).with_timestamp(Timestamp::MAX);
    ledger.post(last).unwrap();
    // Several assets in one transaction; ETH/18 whose volumes, once the chain below moved it
    // back and forth, come near the top of a 128-bit smallest unit (2 * 10^37).
    let mixed = post(
        "main",
        &[
            ("world", "wallet", "0.00012345", "BTC/8"),
            ("world", "wallet", "10000000000000000000", "ETH/18"),
            ("wallet", "till:1", "0.0001", "BTC/8"),
        ],
    );
    let mixed = ledger.post(mixed).unwrap().id;
    // A revert of a revert of a revert, the middle one with a reference and metadata.
    let once = revert(&ledger, RevertRequest::new("main", mixed));
    let mut twice = RevertRequest::new("main", once);
    twice.reference = Some("undo-undo".into());
    twice.metadata = metadata("why", "mistake");
    let twice = revert(&ledger, twice);
    let thrice = revert(&ledger, RevertRequest::new("main", twice));
    // Metadata set and deleted on a revert, and on an account.
    ledger
        .set_transaction_metadata("main", thrice, metadata("note", "checked"))
        .unwrap();
    ledger
        .delete_transaction_metadata("main", thrice, "note")
        .unwrap();
    ledger
        .set_account_metadata("main", "till:1", metadata("owner", "ana"))
        .unwrap();
    ledger
        .delete_account_metadata("main", "till:1", "owner")
        .unwrap();
    // A forced revert (it takes till:1 below its policy), then its revert.
    silent.push(
        ledger
            .set_overdraft("main", "till:1", "USD/2", Overdraft::None)
            .unwrap()
            .seq,
    );
    let spend = post("main", &[("till:1", "bank", "12.50", "USD/2")]);
    ledger.post(spend).unwrap();
    let mut forced = RevertRequest::new("main", first);
    forced.force = true;
    let forced = revert(&ledger, forced);
    revert(&ledger, RevertRequest::new("main", forced));
    // A chain in a second ledger, in an asset without a scale.
    let points = post("shop", &[("world", "member:7", "7", "POINTS")]);
    let points = ledger.post(points).unwrap().id;
    let undone = revert(&ledger, RevertRequest::new("shop", points));
    revert(&ledger, RevertRequest::new("shop", undone));
    // An outbox consumer's ack, then one more post after it.
    silent.push(ledger.ack("audit", 3).unwrap().unwrap().seq);
    let after = post("main", &[("world", "till:1", "0.01", "USD/2")]);
    ledger.post(after).unwrap();
    let head = ledger.head().seq;
    ledger.close().unwrap();
    EveryEntry {
        head,
        silent,
        reverts,
    }
}
