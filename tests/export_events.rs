//! `folio export --format events`: every entry after `--since` becomes at most one Formance
//! ledger event, in log order, whose payload validates against Formance's published schema
//! (`tests/vectors/formance-events/`), whose envelope carries the entry's seq and hashes (the
//! chain and the head digest check out), whose amounts and volumes are exact integers of the
//! asset's smallest unit agreeing with `folio balance`, and which is the same bytes whenever the
//! entry is exported. The store is never changed (a torn tail is left alone), and a closed pipe
//! ends the export quietly.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod support {
    pub mod binary;
    pub mod every_entry;
}

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use support::binary::{folio, run, serial};
use support::every_entry::every_entry;

use folio::{Ledger, LedgerError, LedgerOptions, Overdraft, PostRequest, Posting, RevertRequest};
use folio::{Timestamp, log::vfs::RealFs};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// `folio export` of `store` after `since`: (exit code, lines, stderr).
fn export(store: &Path, since: Option<u64>) -> (i32, Vec<String>, String) {
    let since = since.map(|seq| seq.to_string());
    let mut args = vec![
        "export",
        "--store",
        store.to_str().unwrap(),
        "--format",
        "events",
    ];
    if let Some(since) = &since {
        args.extend(["--since", since.as_str()]);
    }
    let (code, stdout, stderr) = run(&args);
    (code, stdout.lines().map(str::to_string).collect(), stderr)
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn posting(source: &str, target: &str, amount: &str, asset: &str) -> Posting {
    Posting::new(source, target, amount, asset).unwrap()
}

/// The books the tests export, and where each kind of entry landed.
struct Books {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store_id: String,
    /// Seqs of the entries that have no event (the store's creation, an overdraft policy).
    silent: Vec<u64>,
    /// block_hash of the overdraft entry, which the next event's previous_hash must name.
    overdraft_hash: String,
    head: u64,
}

/// 1 store created; 2 a sale of 12.50 USD/2; 3 EUR/2, JPY and BTC/8 to two accounts; 4 an
/// overdraft policy; 5 a spend into it; 6 the revert of 3; 7-8 account metadata set, deleted;
/// 9-10 transaction metadata set, deleted; 11 an unscaled asset in a second ledger; 12 a post.
fn books() -> Books {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    let at = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
    let sale = PostRequest::new("main", vec![posting("world", "till:1", "12.50", "USD/2")])
        .with_reference("sale-1")
        .with_timestamp(at)
        .with_metadata("k", "v");
    assert_eq!(ledger.post(sale).unwrap().id, 2);
    let mixed = vec![
        posting("world", "till:1", "20.00", "EUR/2"),
        posting("world", "wallet", "1500", "JPY"),
        posting("world", "wallet", "0.00012345", "BTC/8"),
    ];
    assert_eq!(ledger.post(PostRequest::new("main", mixed)).unwrap().id, 3);
    let limit = Overdraft::Bounded(Decimal::new(5, 0));
    let policy = ledger
        .set_overdraft("main", "till:1", "USD/2", limit)
        .unwrap();
    assert_eq!(policy.seq, 4);
    let spend = vec![posting("till:1", "bank", "15.00", "USD/2")];
    assert_eq!(ledger.post(PostRequest::new("main", spend)).unwrap().id, 5);
    let mut revert = RevertRequest::new("main", 3);
    revert.reference = Some("undo-3".into());
    assert_eq!(ledger.revert(revert).unwrap().id, 6);
    let owner = BTreeMap::from([("owner".to_string(), "ana".to_string())]);
    ledger
        .set_account_metadata("main", "till:1", owner)
        .unwrap();
    ledger
        .delete_account_metadata("main", "till:1", "owner")
        .unwrap();
    let note = BTreeMap::from([("note".to_string(), "checked".to_string())]);
    ledger.set_transaction_metadata("main", 2, note).unwrap();
    ledger
        .delete_transaction_metadata("main", 2, "note")
        .unwrap();
    let points = vec![posting("world", "wallet", "7", "POINTS")];
    assert_eq!(
        ledger.post(PostRequest::new("shop", points)).unwrap().id,
        11
    );
    let last = vec![posting("world", "till:2", "1.00", "EUR/2")];
    assert_eq!(ledger.post(PostRequest::new("main", last)).unwrap().id, 12);
    let store_id = ledger
        .store_id()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let overdraft_hash = policy
        .block_hash
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ledger.close().unwrap();
    Books {
        _dir: dir,
        path,
        store_id,
        silent: vec![1, 4],
        overdraft_hash,
        head: 12,
    }
}

/// A schema from `tests/vectors/formance-events/`, patched for what its file cannot say.
fn schema(name: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/tests/vectors/formance-events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let defs = schema["$defs"].as_object_mut().unwrap();
    // The files are generated from Go types, and two of them do not survive the generation
    // (the vectors' README): `Int` is Go's big integer, an integer of the asset's smallest
    // unit on the wire, generated as an empty object; `Time` is an RFC 3339 string, generated
    // so in CommittedTransactions.json and as an empty object elsewhere. Only these two
    // definitions are replaced, with stricter ones (an integer, a date-time string); every
    // object keeps its `additionalProperties: false` and `required` lists.
    if defs.contains_key("Int") {
        defs.insert("Int".into(), json!({ "type": "integer" }));
    }
    if defs.contains_key("Time") {
        defs.insert(
            "Time".into(),
            json!({ "type": "string", "format": "date-time" }),
        );
    }
    // RevertedTransaction.json requires `revertedAt` on both transactions, although the revert
    // transaction is not reverted: Formance's Go type (`RevertedAt *time.Time` with tag
    // `json:"revertedAt"`, no omitempty) writes `null` there, and so does Folio, rather than
    // a time that would mark the revert itself as reverted. The revert transaction gets its
    // own copy of the definition that requires exactly that `null`: stricter, not looser.
    if name == "RevertedTransaction" {
        let mut revert = defs["Transaction"].clone();
        revert["properties"]["revertedAt"] = json!({ "type": "null" });
        defs.insert("RevertTransaction".into(), revert);
        schema["$defs"]["RevertedTransaction"]["properties"]["revertTransaction"] =
            json!({ "$ref": "#/$defs/RevertTransaction" });
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

struct Schemas(BTreeMap<&'static str, jsonschema::Validator>);

impl Schemas {
    fn load() -> Schemas {
        Schemas(BTreeMap::from([
            ("COMMITTED_TRANSACTIONS", schema("CommittedTransactions")),
            ("REVERTED_TRANSACTION", schema("RevertedTransaction")),
            ("SAVED_METADATA", schema("SavedMetadata")),
            ("DELETED_METADATA", schema("DeletedMetadata")),
        ]))
    }

    /// The schema errors of an event's payload, checked against the schema its type names.
    fn errors(&self, event: &Value) -> Vec<String> {
        let validator = &self.0[event["type"].as_str().unwrap()];
        validator
            .iter_errors(&event["payload"])
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect()
    }
}

#[test]
fn every_payload_validates_against_its_formance_schema() {
    let _serial = serial();
    let books = books();
    let (code, lines, stderr) = export(&books.path, None);
    assert_eq!(code, 0, "{stderr}");
    let events = parse(&lines);
    let schemas = Schemas::load();
    let mut types = std::collections::BTreeSet::new();
    for event in &events {
        let errors = schemas.errors(event);
        assert!(errors.is_empty(), "seq {}: {errors:?}", event["seq"]);
        types.insert(event["type"].as_str().unwrap().to_string());
    }
    assert_eq!(types.len(), 4, "every event type is exercised: {types:?}");
}

#[test]
fn the_patched_schemas_still_refuse_what_formance_would() {
    let _serial = serial();
    let books = books();
    let (_, lines, _) = export(&books.path, None);
    let events = parse(&lines);
    let schemas = Schemas::load();
    let committed = events.iter().find(|e| e["seq"] == 2).unwrap().clone();
    let revert = events.iter().find(|e| e["seq"] == 6).unwrap().clone();
    let payload = "/payload";
    let tx = "/payload/transactions/0";
    let cases: Vec<(&Value, String, Value)> = vec![
        (&committed, format!("{payload}/seq"), json!(2)),
        (&committed, format!("{tx}/seq"), json!(2)),
        (&committed, format!("{tx}/postings/0/amount"), json!("1250")),
        (&committed, format!("{tx}/postings/0/amount"), json!(12.5)),
        (&committed, format!("{tx}/timestamp"), json!("yesterday")),
        (
            &committed,
            format!("{tx}/postCommitVolumes/till:1/USD~12/extra"),
            json!(0),
        ),
        (
            &revert,
            "/payload/revertTransaction/revertedAt".into(),
            json!("2026-11-22T10:00:00Z"),
        ),
        (
            &revert,
            "/payload/revertedTransaction/revertedAt".into(),
            Value::Null,
        ),
        (
            &revert,
            "/payload/revertedTransaction/reverted".into(),
            json!(true),
        ),
    ];
    for (event, pointer, value) in cases {
        let mut bad = event.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/");
        bad.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key, value.clone());
        assert!(
            !schemas.errors(&bad).is_empty(),
            "{pointer} = {value} was accepted"
        );
    }
    let mut missing = committed.clone();
    missing["payload"]
        .as_object_mut()
        .unwrap()
        .remove("accountMetadata");
    assert!(!schemas.errors(&missing).is_empty());
}

#[test]
fn the_envelope_carries_seq_hashes_and_store_id_and_chains_to_the_head() {
    let _serial = serial();
    let books = books();
    let (_, lines, _) = export(&books.path, None);
    let events = parse(&lines);
    let keys = [
        "app",
        "block_hash",
        "date",
        "payload",
        "previous_hash",
        "seq",
        "store_id",
        "type",
        "version",
    ];
    for event in &events {
        let mut found: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        found.sort_unstable();
        assert_eq!(found, keys);
        assert_eq!(
            (event["app"].as_str(), event["version"].as_str()),
            (Some("folio"), Some("v1"))
        );
        assert_eq!(event["store_id"], books.store_id.as_str());
        for hash in ["block_hash", "previous_hash"] {
            let hex = event[hash].as_str().unwrap();
            assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        chrono::DateTime::parse_from_rfc3339(event["date"].as_str().unwrap()).unwrap();
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=books.head)
        .filter(|seq| !books.silent.contains(seq))
        .collect();
    assert_eq!(
        seqs, expected,
        "one event per entry, in log order, none for silent kinds"
    );
    for pair in events.windows(2) {
        if pair[1]["seq"].as_u64().unwrap() == pair[0]["seq"].as_u64().unwrap() + 1 {
            assert_eq!(pair[1]["previous_hash"], pair[0]["block_hash"]);
        }
    }
    let after_policy = events.iter().find(|e| e["seq"] == 5).unwrap();
    assert_eq!(after_policy["previous_hash"], books.overdraft_hash.as_str());
    let (code, stdout, _) = run(&["head", "--store", books.path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let head: Value = serde_json::from_str(stdout.trim()).unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (&last["seq"], &last["block_hash"]),
        (&head["seq"], &head["block_hash"])
    );
}

#[test]
fn amounts_are_integers_of_the_smallest_unit() {
    let _serial = serial();
    let books = books();
    let (_, lines, _) = export(&books.path, None);
    let events = parse(&lines);
    let postings = |seq: u64| {
        let event = events.iter().find(|e| e["seq"] == seq).unwrap();
        event["payload"]["transactions"][0]["postings"].clone()
    };
    assert_eq!(postings(2)[0]["amount"], json!(1250), "12.50 USD/2");
    assert_eq!(postings(2)[0]["asset"], "USD/2");
    let mixed: Vec<(Value, Value)> = postings(3)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["asset"].clone(), p["amount"].clone()))
        .collect();
    assert_eq!(
        mixed,
        vec![
            (json!("EUR/2"), json!(2000)),
            (json!("JPY"), json!(1500)),
            (json!("BTC/8"), json!(12345)),
        ]
    );
    assert_eq!(
        postings(11)[0]["amount"],
        json!(7),
        "an unscaled asset has scale 0"
    );
    assert!(
        lines[0].contains(r#""amount":1250,"#),
        "a JSON number, not a string"
    );
}

#[test]
fn each_event_type_carries_the_entry_as_formance_shapes_it() {
    let _serial = serial();
    let books = books();
    let (_, lines, _) = export(&books.path, None);
    let events = parse(&lines);
    let at = |seq: u64| events.iter().find(|e| e["seq"] == seq).unwrap();
    let sale = &at(2)["payload"];
    assert_eq!(sale["ledger"], "main");
    assert_eq!(sale["accountMetadata"], json!({}));
    let tx = &sale["transactions"][0];
    assert_eq!((&tx["id"], &tx["reference"]), (&json!(2), &json!("sale-1")));
    assert_eq!(tx["timestamp"], "2026-11-22T10:00:00Z");
    assert_eq!(
        (&tx["metadata"], &tx["reverted"]),
        (&json!({"k": "v"}), &json!(false))
    );
    assert_eq!(at(2)["date"], tx["insertedAt"]);
    assert!(tx.get("revertedAt").is_none());

    let revert = &at(6);
    assert_eq!(revert["type"], "REVERTED_TRANSACTION");
    let reverted = &revert["payload"]["revertedTransaction"];
    let reversal = &revert["payload"]["revertTransaction"];
    assert_eq!((&reverted["id"], &reversal["id"]), (&json!(3), &json!(6)));
    assert_eq!(reversal["reference"], "undo-3");
    assert_eq!(reverted["revertedAt"], reversal["insertedAt"]);
    assert_eq!(reversal["revertedAt"], Value::Null);
    assert_eq!(
        reverted["postings"],
        at(3)["payload"]["transactions"][0]["postings"]
    );
    // The postings reversed, in reverse order (as Formance reverses them too).
    let mut undone = reverted["postings"].as_array().unwrap().clone();
    undone.reverse();
    for posting in &mut undone {
        let source = posting["source"].clone();
        posting["source"] = posting["destination"].clone();
        posting["destination"] = source;
    }
    assert_eq!(reversal["postings"], json!(undone));

    let main = |target_type: &str, target_id: Value, rest: Value| {
        let mut payload = json!({ "ledger": "main", "targetType": target_type });
        payload["targetId"] = target_id;
        payload
            .as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        payload
    };
    let till = || json!("till:1");
    let expected = [
        (
            7,
            "SAVED_METADATA",
            main("ACCOUNT", till(), json!({ "metadata": { "owner": "ana" } })),
        ),
        (
            8,
            "DELETED_METADATA",
            main("ACCOUNT", till(), json!({ "key": "owner" })),
        ),
        // A transaction id is a string where saved (the schema's type), an integer where
        // deleted (what Formance writes).
        (
            9,
            "SAVED_METADATA",
            main(
                "TRANSACTION",
                json!("2"),
                json!({ "metadata": { "note": "checked" } }),
            ),
        ),
        (
            10,
            "DELETED_METADATA",
            main("TRANSACTION", json!(2), json!({ "key": "note" })),
        ),
    ];
    for (seq, kind, payload) in expected {
        assert_eq!(
            (at(seq)["type"].as_str().unwrap(), &at(seq)["payload"]),
            (kind, &payload)
        );
    }
    assert_eq!(at(11)["payload"]["ledger"], "shop");
}

#[test]
fn since_gives_exactly_the_entries_after_it_byte_for_byte() {
    let _serial = serial();
    let books = books();
    let (_, all, _) = export(&books.path, None);
    let seq_of = |line: &String| {
        serde_json::from_str::<Value>(line).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    for since in 0..=books.head {
        let (code, lines, stderr) = export(&books.path, Some(since));
        assert_eq!(code, 0, "--since {since}: {stderr}");
        let expected: Vec<String> = all.iter().filter(|l| seq_of(l) > since).cloned().collect();
        assert_eq!(lines, expected, "--since {since}");
    }
    let beyond = (books.head + 1).to_string();
    let store = books.path.to_str().unwrap();
    let (code, stdout, stderr) = run(&[
        "export", "--store", store, "--since", &beyond, "--format", "events", "--json",
    ]);
    assert_eq!(
        code, 2,
        "a reader ahead of the log reads another history: {stderr}"
    );
    let error: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(error["error"]["code"], "SEQ_OUT_OF_RANGE");
}

#[test]
fn a_revert_of_a_revert_is_exported_as_the_issue_wrote_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("rr");
    let store = store.to_str().unwrap();
    assert_eq!(run(&["init", "--store", store]).0, 0);
    let line = json!({"ledger": "main", "postings": [
        {"source": "world", "destination": "a", "amount": "1", "asset": "USD/2"}
    ]});
    let posted = folio()
        .args(["post", "--store", store])
        .write_stdin(format!("{line}\n"))
        .output()
        .unwrap();
    assert_eq!(posted.status.code(), Some(0));
    for id in ["2", "3", "4"] {
        let (code, _, stderr) = run(&["revert", "--store", store, "--ledger", "main", id]);
        assert_eq!(code, 0, "revert {id}: {stderr}");
    }
    let (code, lines, stderr) = export(Path::new(store), None);
    assert_eq!(code, 0, "{stderr}");
    let events = parse(&lines);
    let shape: Vec<(u64, &str, Value)> = events
        .iter()
        .map(|event| {
            let reverted = event["payload"]["revertedTransaction"]["id"].clone();
            (
                event["seq"].as_u64().unwrap(),
                event["type"].as_str().unwrap(),
                reverted,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (2, "COMMITTED_TRANSACTIONS", Value::Null),
            (3, "REVERTED_TRANSACTION", json!(2)),
            (4, "REVERTED_TRANSACTION", json!(3)),
            (5, "REVERTED_TRANSACTION", json!(4)),
        ]
    );
    let schemas = Schemas::load();
    for event in &events {
        let errors = schemas.errors(event);
        assert!(errors.is_empty(), "seq {}: {errors:?}", event["seq"]);
    }
    // The revert reverted is carried as its own entry recorded it: its postings point back.
    let second = &events[2]["payload"];
    assert_eq!(
        second["revertedTransaction"]["postings"],
        events[1]["payload"]["revertTransaction"]["postings"]
    );
    assert_eq!(
        second["revertTransaction"]["postings"],
        events[0]["payload"]["transactions"][0]["postings"]
    );
}

#[test]
fn every_kind_of_entry_and_every_revert_chain_exports_and_validates() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let books = every_entry(&path);
    let (code, lines, stderr) = export(&path, None);
    assert_eq!(code, 0, "no accepted entry stops the export: {stderr}");
    let events = parse(&lines);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=books.head)
        .filter(|seq| !books.silent.contains(seq))
        .collect();
    assert_eq!(
        seqs, expected,
        "an event for every entry of a kind that has one"
    );
    let schemas = Schemas::load();
    let mut types = std::collections::BTreeSet::new();
    for event in &events {
        let errors = schemas.errors(event);
        assert!(errors.is_empty(), "seq {}: {errors:?}", event["seq"]);
        types.insert(event["type"].as_str().unwrap().to_string());
    }
    assert_eq!(types.len(), 4, "{types:?}");
    for (revert, original) in &books.reverts {
        let event = events.iter().find(|e| e["seq"] == *revert).unwrap();
        assert_eq!(event["type"], "REVERTED_TRANSACTION", "seq {revert}");
        let payload = &event["payload"];
        assert_eq!(payload["revertedTransaction"]["id"], *original);
        assert_eq!(payload["revertTransaction"]["id"], *revert);
    }
    let timestamps: Vec<&str> = events
        .iter()
        .filter_map(|e| e["payload"]["transactions"][0]["timestamp"].as_str())
        .collect();
    assert!(
        timestamps.contains(&"0000-01-01T00:00:00Z"),
        "{timestamps:?}"
    );
    assert!(
        timestamps.contains(&"9999-12-31T23:59:59.999999Z"),
        "{timestamps:?}"
    );
    // Every --since gives the same events, byte for byte.
    for since in [books.head / 2, books.head - 1] {
        let (code, tail, _) = export(&path, Some(since));
        assert_eq!(code, 0);
        assert_eq!(tail[..], lines[lines.len() - tail.len()..]);
    }
}

#[test]
fn a_time_outside_years_0000_to_9999_is_refused_when_posted_so_export_never_meets_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    let sale = || PostRequest::new("main", vec![posting("world", "a", "1", "USD/2")]);
    for micros in [
        i64::MAX,
        i64::MIN,
        Timestamp::MAX.0 + 1,
        Timestamp::MIN.0 - 1,
    ] {
        let error = ledger
            .post(sale().with_timestamp(Timestamp(micros)))
            .unwrap_err();
        assert_eq!(error.code(), "INVALID_INPUT", "{micros}: {error}");
        assert!(
            matches!(
                error,
                folio::Error::Ledger(LedgerError::InvalidInput {
                    field: "timestamp",
                    ..
                })
            ),
            "{micros}: {error:?}"
        );
    }
    assert_eq!(ledger.head().seq, 1, "nothing was written");
    ledger.close().unwrap();
    drop(ledger);
    // A clock that reports an extreme: every write is refused, naming the clock.
    for extreme in [i64::MAX, i64::MIN] {
        let options = LedgerOptions {
            clock: std::sync::Arc::new(move || extreme),
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open_with(std::sync::Arc::new(RealFs), &path, options).unwrap();
        let error = ledger.post(sale()).unwrap_err();
        assert!(
            matches!(
                error,
                folio::Error::Ledger(LedgerError::InvalidInput { field: "clock", .. })
            ),
            "{error:?}"
        );
        let metadata = BTreeMap::from([("k".to_string(), "v".to_string())]);
        assert!(ledger.set_account_metadata("main", "a", metadata).is_err());
        assert_eq!(ledger.head().seq, 1, "nothing was written");
        ledger.close().unwrap();
    }
    // Through the CLI: an offset that takes the time into the year 10000 is refused, naming
    // the field; the line is not posted.
    let store = path.to_str().unwrap();
    let line = json!({"ledger": "main", "timestamp": "9999-12-31T23:59:59-23:59", "postings": [
        {"source": "world", "destination": "a", "amount": "1", "asset": "USD/2"}
    ]});
    let output = folio()
        .args(["post", "--store", store, "--json"])
        .write_stdin(format!("{line}\n"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("timestamp"), "{stdout}");
    assert!(!stdout.contains("+10000"), "{stdout}");
    let (code, lines, stderr) = export(&path, None);
    assert_eq!((code, lines.len()), (0, 0), "{stderr}");
}

/// A decimal string of `folio balance` in the asset's smallest unit.
fn units(amount: &str, asset: &str) -> i128 {
    let scale = asset
        .split_once('/')
        .map_or(0, |(_, s)| s.parse::<u32>().unwrap());
    let value: Decimal = amount.parse().unwrap();
    let scaled = value * Decimal::from(10i64.pow(scale));
    assert!(scaled.fract().is_zero(), "{amount} {asset}");
    scaled.mantissa() / 10i128.pow(scaled.scale())
}

#[test]
fn pre_and_post_volumes_chain_and_end_at_folio_balance() {
    let _serial = serial();
    let books = books();
    let (_, lines, _) = export(&books.path, None);
    // (ledger, account, asset) -> (input, output) after the last transaction seen.
    let mut volumes: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    for event in parse(&lines) {
        let (ledger, tx) = match event["type"].as_str().unwrap() {
            "COMMITTED_TRANSACTIONS" => (
                &event["payload"]["ledger"],
                &event["payload"]["transactions"][0],
            ),
            "REVERTED_TRANSACTION" => (
                &event["payload"]["ledger"],
                &event["payload"]["revertTransaction"],
            ),
            _ => continue,
        };
        let ledger = ledger.as_str().unwrap();
        let flat = |field: &str| {
            let mut out = Vec::new();
            for (account, by_asset) in tx[field].as_object().into_iter().flatten() {
                for (asset, v) in by_asset.as_object().unwrap() {
                    let key = (ledger.to_string(), account.clone(), asset.clone());
                    let pair = (v["input"].as_i64().unwrap(), v["output"].as_i64().unwrap());
                    if let Some(balance) = v.get("balance") {
                        assert_eq!(balance.as_i64().unwrap(), pair.0 - pair.1);
                    }
                    out.push((key, pair));
                }
            }
            out
        };
        for (key, pre) in flat("preCommitVolumes") {
            let before = volumes.get(&key).copied().unwrap_or((0, 0));
            assert_eq!(pre, before, "seq {}: pre volumes of {key:?}", event["seq"]);
        }
        volumes.extend(flat("postCommitVolumes"));
    }
    let store = books.path.to_str().unwrap();
    let mut accounts: BTreeMap<(String, String), BTreeMap<String, i128>> = BTreeMap::new();
    for ((ledger, account, asset), (input, output)) in &volumes {
        let by_asset = accounts
            .entry((ledger.clone(), account.clone()))
            .or_default();
        by_asset.insert(asset.clone(), i128::from(input - output));
    }
    for ((ledger, account), exported) in accounts {
        let args = [
            "balance", "--store", store, "--ledger", &ledger, &account, "--json",
        ];
        let (code, stdout, _) = run(&args);
        assert_eq!(code, 0);
        let shown: Value = serde_json::from_str(stdout.trim()).unwrap();
        let balances: BTreeMap<String, i128> = shown["balances"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(asset, amount)| (asset.clone(), units(amount.as_str().unwrap(), asset)))
            .collect();
        assert_eq!(balances, exported, "{ledger} {account}");
    }
    let till = (
        "main".to_string(),
        "till:1".to_string(),
        "USD/2".to_string(),
    );
    assert_eq!(volumes[&till], (1250, 1500));
}

#[test]
fn an_amount_without_an_integer_form_stops_the_export_after_the_lines_before_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    for (amount, asset) in [("1.00", "USD/2"), ("0.5", "POINTS"), ("2.00", "USD/2")] {
        let request = PostRequest::new("main", vec![posting("world", "a", amount, asset)]);
        ledger.post(request).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    let store = path.to_str().unwrap();
    let (code, stdout, stderr) = run(&["export", "--store", store, "--format", "events", "--json"]);
    assert_eq!(code, 1, "{stderr}");
    let lines = parse(&stdout.lines().map(str::to_string).collect::<Vec<_>>());
    assert_eq!(
        lines.len(),
        2,
        "the event of entry 2, then the error: {stdout}"
    );
    assert_eq!(lines[0]["seq"], 2);
    assert_eq!(lines[1]["error"]["code"], "NOT_EXPORTABLE");
    let message = lines[1]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("entry 3") && message.contains("0.5 POINTS"),
        "{message}"
    );
    let (code, lines, _) = export(&path, Some(3));
    assert_eq!(
        (code, parse(&lines)[0]["seq"].clone()),
        (0, json!(4)),
        "later entries export"
    );
}

/// Every file of the store and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn export_changes_nothing_and_reads_beside_a_writer() {
    let _serial = serial();
    let books = books();
    let before = snapshot(&books.path);
    assert_eq!(export(&books.path, None).0, 0);
    assert_eq!(export(&books.path, Some(5)).0, 0);
    assert!(before == snapshot(&books.path), "the store's files changed");
    let (_, all, _) = export(&books.path, None);
    let held = Ledger::open(&books.path).unwrap();
    let (code, lines, stderr) = export(&books.path, None);
    assert_eq!((code, lines), (0, all), "{stderr}");
    held.close().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = export(empty.path(), None);
    assert_eq!(code, 2);
    assert!(stderr.contains("NOT_A_STORE"), "{stderr}");
    assert!(
        !empty.path().join("LOCK").exists(),
        "nothing written into a foreign directory"
    );
}

#[test]
fn the_library_writes_the_same_events_from_an_open_ledger() {
    let _serial = serial();
    let books = books();
    let (_, lines, _) = export(&books.path, None);
    let ledger = Ledger::open(&books.path).unwrap();
    let mut out = Vec::new();
    let summary = folio::export::export_log(ledger.log(), 0, &mut out, &mut |_, _| {}).unwrap();
    ledger.close().unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), lines.join("\n") + "\n");
    assert_eq!(
        (summary.entries, summary.events, summary.head),
        (12, 10, 12)
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_export_quietly() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    // About 2 MB of events: far more than a pipe buffers.
    let requests = (0..3000)
        .map(|_| PostRequest::new("main", vec![posting("world", "till:1", "1.00", "USD/2")]))
        .collect();
    assert!(ledger.post_batch(requests).iter().all(Result::is_ok));
    ledger.close().unwrap();
    drop(ledger);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "export",
            "--store",
            path.to_str().unwrap(),
            "--format",
            "events",
        ])
        .env_remove("FOLIO_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains(r#""seq":2"#), "{first}");
    drop(reader);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_torn_tail_is_noted_and_left_alone() {
    let _serial = serial();
    let books = books();
    let (_, all, _) = export(&books.path, None);
    let segment = books.path.join("log").join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    // What a crash in the middle of an append leaves: bytes of a record that never completed.
    bytes.extend_from_slice(&[0x5a; 9]);
    std::fs::write(&segment, &bytes).unwrap();
    let (code, lines, stderr) = export(&books.path, None);
    assert_eq!((code, lines), (0, all), "{stderr}");
    assert!(stderr.contains("torn write after entry 12"), "{stderr}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the tail is the next open's to cut"
    );
}
