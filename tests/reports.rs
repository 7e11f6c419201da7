//! Reports, run as the real binary (`docs/reports.md`): a statement's opening balance plus its
//! movements is its closing balance in every asset, with back-dated transactions, reverts and
//! later metadata changes, in every format; a trial balance sums to zero and `--at` leaves out
//! later transactions; the journal export, read by hledger and ledger-cli, gives every account
//! the balance `folio balances` gives, on the demo's data (reverts included) and in the years
//! ledger-cli does not read, and shows no tag the ledger's metadata does not hold; `--out`
//! replaces a report only with a whole one. hledger and ledger-cli must be installed (`.ci/run`
//! installs them): without them the journal tests fail, they never pass silently.

#![allow(clippy::unwrap_used, reason = "a test fails on any error")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use assert_cmd::Command;
use folio::{Ledger, Overdraft, PostRequest, Posting, RevertRequest, Timestamp};
use rust_decimal::Decimal;
use serde_json::Value;

fn folio() -> Command {
    let mut command = Command::cargo_bin("folio").unwrap();
    command.env_remove("FOLIO_STORE");
    command
}

/// Runs folio with args, returning (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let output = folio().args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), stdout, stderr)
}

/// Runs folio and parses its stdout as one JSON object; the command must succeed.
fn run_json(args: &[&str]) -> Value {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

fn dec(value: &Value) -> Decimal {
    Decimal::from_str(value.as_str().unwrap()).unwrap()
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn s(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.parent().unwrap().join(name)
    }
}

/// Ids of the transactions of [`books`].
struct Ids {
    b: u64,
    c: u64,
    e: u64,
}

/// Ledger `shop`, account `till:1`, posted in this log order:
/// A 2026-01-10 +100.00 EUR/2 (metadata kind=sale, later deleted);
/// B 2026-02-05 +50.00 EUR/2 (reverted later, at the time the test runs);
/// C 2026-02-10 -30.00 EUR/2 to bank (metadata note set later, with a comma);
/// D 2026-02-20 +2.5 USD and +7 USD (no declared scale), two postings;
/// E 2026-01-15 (back-dated) +20.00 EUR/2 and +1000 JPY/0;
/// F 2026-03-05 +5.00 EUR/2;
/// and in ledger `other` +1.00 EUR/2 to till:1, which no report of `shop` may count.
fn books() -> (Store, Ids) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    let post = |time: &str, postings: Vec<Posting>, reference: &str| {
        let request = PostRequest::new("shop", postings)
            .with_timestamp(at(time))
            .with_reference(reference);
        ledger.post(request).unwrap().id
    };
    let p = |source: &str, destination: &str, amount: &str, asset: &str| {
        Posting::new(source, destination, amount, asset).unwrap()
    };
    let a = ledger
        .post(
            PostRequest::new("shop", vec![p("world", "till:1", "100.00", "EUR/2")])
                .with_timestamp(at("2026-01-10T09:00:00Z"))
                .with_reference("a")
                .with_metadata("kind", "sale"),
        )
        .unwrap()
        .id;
    let b = post(
        "2026-02-05T09:00:00Z",
        vec![p("world", "till:1", "50.00", "EUR/2")],
        "b",
    );
    let c = post(
        "2026-02-10T09:00:00Z",
        vec![p("till:1", "bank", "30.00", "EUR/2")],
        "c",
    );
    post(
        "2026-02-20T09:00:00Z",
        vec![
            p("world", "till:1", "2.5", "USD"),
            p("world", "till:1", "7", "USD"),
        ],
        "d",
    );
    let e = post(
        "2026-01-15T09:00:00Z",
        vec![
            p("world", "till:1", "20.00", "EUR/2"),
            p("world", "till:1", "1000", "JPY/0"),
        ],
        "e",
    );
    post(
        "2026-03-05T09:00:00Z",
        vec![p("world", "till:1", "5.00", "EUR/2")],
        "f",
    );
    let other = PostRequest::new("other", vec![p("world", "till:1", "1.00", "EUR/2")]);
    ledger.post(other).unwrap();
    ledger.revert(RevertRequest::new("shop", b)).unwrap();
    let note = BTreeMap::from([("note".to_string(), "counted, twice".to_string())]);
    ledger.set_transaction_metadata("shop", c, note).unwrap();
    ledger
        .delete_transaction_metadata("shop", a, "kind")
        .unwrap();
    ledger.close().unwrap();
    (Store { _dir: dir, path }, Ids { b, c, e })
}

/// Checks one asset part of a statement's JSON: opening + in - out = closing, the running
/// balance, and effective order.
fn check_part(part: &Value) {
    let opening = dec(&part["opening"]);
    let mut running = opening;
    let (mut total_in, mut total_out) = (Decimal::ZERO, Decimal::ZERO);
    let mut last_time = String::new();
    for movement in part["movements"].as_array().unwrap() {
        running += dec(&movement["in"]) - dec(&movement["out"]);
        total_in += dec(&movement["in"]);
        total_out += dec(&movement["out"]);
        assert_eq!(dec(&movement["balance"]), running, "{movement}");
        let time = movement["timestamp"].as_str().unwrap().to_string();
        assert!(time >= last_time, "movements in effective order");
        last_time = time;
    }
    assert_eq!(dec(&part["in"]), total_in);
    assert_eq!(dec(&part["out"]), total_out);
    assert_eq!(opening + total_in - total_out, dec(&part["closing"]));
    assert_eq!(running, dec(&part["closing"]));
}

fn part<'a>(statement: &'a Value, asset: &str) -> &'a Value {
    statement["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|part| part["asset"] == asset)
        .unwrap_or_else(|| panic!("no {asset} in {statement}"))
}

fn statement_json(store: &Store, from: &str, to: &str) -> Value {
    run_json(&[
        "statement",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "till:1",
        "--from",
        from,
        "--to",
        to,
        "--format",
        "json",
    ])
}

#[test]
fn statement_opening_plus_movements_is_closing_with_backdated_entries_and_reverts() {
    let (store, ids) = books();
    // February: A and the back-dated E are before it, F after it.
    let february = statement_json(&store, "2026-02-01", "2026-03-01");
    for part in february["assets"].as_array().unwrap() {
        check_part(part);
    }
    let eur = part(&february, "EUR/2");
    assert_eq!(dec(&eur["opening"]), Decimal::from(120));
    assert_eq!(dec(&eur["closing"]), Decimal::from(140));
    let movements = eur["movements"].as_array().unwrap();
    assert_eq!(movements.len(), 2);
    assert_eq!(movements[0]["id"], ids.b);
    assert_eq!(movements[1]["id"], ids.c);
    assert_eq!(movements[1]["counterparties"], serde_json::json!(["bank"]));
    assert_eq!(movements[1]["metadata"]["note"], "counted, twice");
    let usd = part(&february, "USD");
    assert_eq!(dec(&usd["closing"]), Decimal::from_str("9.5").unwrap());
    assert_eq!(
        usd["movements"].as_array().unwrap().len(),
        1,
        "one row per tx and asset"
    );
    let jpy = part(&february, "JPY/0");
    assert_eq!(dec(&jpy["opening"]), Decimal::from(1000));
    assert!(jpy["movements"].as_array().unwrap().is_empty());

    // Everything: the back-dated E sorts before B, the revert of B comes last, and the
    // closing balance is the account's balance (the other ledger not counted).
    let all = statement_json(&store, "2026-01-01", "2100-01-01T00:00:00Z");
    let eur = part(&all, "EUR/2");
    check_part(eur);
    let ids_in_order: Vec<u64> = eur["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|movement| movement["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids_in_order[1], ids.e);
    let revert = eur["movements"].as_array().unwrap().last().unwrap();
    assert_eq!(revert["reverts"], ids.b);
    assert_eq!(dec(&revert["out"]), Decimal::from(50));
    let balance = run_json(&[
        "balance",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "till:1",
        "--json",
    ]);
    for (asset, amount) in balance["balances"].as_object().unwrap() {
        assert_eq!(dec(&part(&all, asset)["closing"]), dec(amount), "{asset}");
    }
    assert_eq!(dec(&eur["closing"]), Decimal::from(95));

    // --asset keeps one part; the bounds: from is inclusive, to exclusive.
    let only = run_json(&[
        "statement",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "till:1",
        "--from",
        "2026-02-05T09:00:00Z",
        "--to",
        "2026-02-10T09:00:00Z",
        "--asset",
        "EUR/2",
        "--json",
    ]);
    assert_eq!(only["assets"].as_array().unwrap().len(), 1);
    let movements = only["assets"][0]["movements"].as_array().unwrap();
    assert_eq!(movements.len(), 1);
    assert_eq!(movements[0]["id"], ids.b);
}

#[test]
fn statement_formats_say_the_same_and_xlsx_is_a_workbook() {
    let (store, _) = books();
    let args = |format: &'static str| {
        vec![
            "statement",
            "--store",
            store.s(),
            "--ledger",
            "shop",
            "till:1",
            "--from",
            "2026-02-01",
            "--to",
            "2026-03-01",
            "--format",
            format,
        ]
    };
    let (code, table, stderr) = run(&args("table"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table.contains("opening") && table.contains("closing"),
        "{table}"
    );
    assert!(
        table.contains("140.00"),
        "amounts at the declared scale: {table}"
    );

    let (code, csv_text, _) = run(&args("csv"));
    assert_eq!(code, 0);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "kind");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let closing_eur = rows
        .iter()
        .find(|row| &row[0] == "closing" && &row[1] == "EUR/2")
        .unwrap();
    assert_eq!(&closing_eur[7], "140.00");
    let note = rows.iter().find(|row| row[10].contains("counted")).unwrap();
    let metadata: Value = serde_json::from_str(&note[10]).unwrap();
    assert_eq!(metadata["note"], "counted, twice");

    // --out writes a file, the same text as stdout.
    let out = store.file("statement.csv");
    let mut with_out = args("csv");
    with_out.extend(["--out", out.to_str().unwrap()]);
    assert_eq!(run(&with_out).0, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), csv_text);

    let xlsx = store.file("statement.xlsx");
    let mut with_out = args("xlsx");
    with_out.extend(["--out", xlsx.to_str().unwrap()]);
    let (code, _, stderr) = run(&with_out);
    assert_eq!(code, 0, "{stderr}");
    let bytes = std::fs::read(&xlsx).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"), "an xlsx is a zip");
    let names = String::from_utf8_lossy(&bytes);
    assert!(names.contains("xl/workbook.xml") && names.contains("xl/worksheets/sheet1.xml"));

    // xlsx on a terminal is a usage error.
    let (code, _, stderr) = run(&args("xlsx"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("USAGE"), "{stderr}");
}

#[test]
fn statement_refuses_bad_bounds_and_unknown_accounts() {
    let (store, _) = books();
    let statement = |account: &str, from: &str, to: &str| {
        run(&[
            "statement",
            "--store",
            store.s(),
            "--ledger",
            "shop",
            account,
            "--from",
            from,
            "--to",
            to,
            "--json",
        ])
    };
    let (code, stdout, _) = statement("till:1", "2026-03-01", "2026-02-01");
    assert_eq!(code, 1);
    assert!(stdout.contains("INVALID_INPUT"), "{stdout}");
    let (code, stdout, _) = statement("till:1", "yesterday", "2026-02-01");
    assert_eq!(code, 1);
    assert!(stdout.contains("INVALID_INPUT"), "{stdout}");
    let (code, stdout, _) = statement("till:9", "2026-01-01", "2026-02-01");
    assert_eq!(code, 1);
    assert!(stdout.contains("ACCOUNT_NOT_FOUND"), "{stdout}");
}

fn trial(store: &Store, extra: &[&str]) -> Value {
    let mut args = vec![
        "trial-balance",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "--json",
    ];
    args.extend(extra);
    run_json(&args)
}

#[test]
fn trial_balance_sums_to_zero_and_at_leaves_out_later_transactions() {
    let (store, _) = books();
    let now = trial(&store, &[]);
    let balances = run_json(&[
        "balances",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "--json",
    ]);
    assert_eq!(
        now["accounts"], balances["accounts"],
        "the same balances as `balances`"
    );
    for total in now["totals"].as_object().unwrap().values() {
        assert!(dec(total).is_zero(), "{now}");
    }
    assert_eq!(now["totals"].as_object().unwrap().len(), 3);

    // At the end of 2026-01-15 (inclusive): A and the back-dated E only.
    let january = trial(&store, &["--at", "2026-01-15T09:00:00Z"]);
    assert_eq!(
        dec(&january["accounts"]["till:1"]["EUR/2"]),
        Decimal::from(120)
    );
    assert_eq!(
        dec(&january["accounts"]["till:1"]["JPY/0"]),
        Decimal::from(1000)
    );
    assert_eq!(
        dec(&january["accounts"]["world"]["EUR/2"]),
        Decimal::from(-120)
    );
    assert!(january["accounts"].get("bank").is_none(), "C is later");
    assert!(
        january["accounts"]["till:1"].get("USD").is_none(),
        "D is later"
    );
    for total in january["totals"].as_object().unwrap().values() {
        assert!(dec(total).is_zero());
    }
    let before = trial(&store, &["--at", "2026-01-15T08:59:59Z"]);
    assert_eq!(
        dec(&before["accounts"]["till:1"]["EUR/2"]),
        Decimal::from(100)
    );

    // A prefix lists its accounts; the totals are their net position.
    let tills = trial(&store, &["--prefix", "till"]);
    assert_eq!(tills["accounts"].as_object().unwrap().len(), 1);
    assert_eq!(dec(&tills["totals"]["EUR/2"]), Decimal::from(95));

    let (code, csv_text, _) = run(&[
        "trial-balance",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "--format",
        "csv",
    ]);
    assert_eq!(code, 0);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let totals: Vec<csv::StringRecord> = reader
        .records()
        .map(Result::unwrap)
        .filter(|row| &row[0] == "total")
        .collect();
    assert_eq!(totals.len(), 3);
    let xlsx = store.file("trial.xlsx");
    let (code, _, stderr) = run(&[
        "trial-balance",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "--format",
        "xlsx",
        "--out",
        xlsx.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read(&xlsx).unwrap().starts_with(b"PK"));
}

/// Two mints of 40000000000.000000000000000001 TOK/18 (29 significant digits each: two of
/// them pass a `Decimal`'s 96 bits), to `holder:a` from `world` and to `holder:b` from an
/// unbounded `issuer`. The ledger accepts both: no volume or balance passes the bound.
fn mints() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    let amount = "40000000000.000000000000000001";
    ledger
        .set_overdraft("mint", "issuer", "TOK/18", Overdraft::Unbounded)
        .unwrap();
    for (source, holder) in [("world", "holder:a"), ("issuer", "holder:b")] {
        let posting = Posting::new(source, holder, amount, "TOK/18").unwrap();
        ledger
            .post(PostRequest::new("mint", vec![posting]))
            .unwrap();
    }
    ledger.close().unwrap();
    Store { _dir: dir, path }
}

#[test]
fn trial_balance_totals_every_accepted_book_even_past_the_largest_decimal() {
    let store = mints();
    let args = |extra: &[&'static str]| {
        let mut args = vec!["trial-balance", "--store", store.s(), "--ledger", "mint"];
        args.extend(extra);
        args
    };
    // Summed in account order, holder:a + holder:b passes the largest Decimal; the total
    // of the whole ledger is still zero.
    let all = run_json(&args(&["--json"]));
    assert_eq!(all["totals"]["TOK/18"], "0", "{all}");
    assert_eq!(
        all["accounts"]["holder:b"]["TOK/18"],
        "40000000000.000000000000000001"
    );
    // The net position of the holders is itself past a Decimal, and written exactly.
    let holders = run_json(&args(&["--prefix", "holder", "--json"]));
    let expected = "80000000000.000000000000000002";
    assert_eq!(holders["totals"]["TOK/18"], expected, "{holders}");
    let (code, csv_text, stderr) = run(&args(&["--prefix", "holder", "--format", "csv"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        csv_text.contains(&format!("total,,TOK/18,{expected}\n")),
        "{csv_text}"
    );
    let (code, table, stderr) = run(&args(&["--prefix", "holder"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains(expected), "{table}");
    let xlsx = store.file("holders.xlsx");
    let mut with_out = args(&["--prefix", "holder", "--format", "xlsx", "--out"]);
    with_out.push(xlsx.to_str().unwrap());
    let (code, _, stderr) = run(&with_out);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised_and_amounts_stay_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    let references = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "plain"];
    // `-evil` is a valid address (segments of letters, digits, '_' and '-').
    ledger
        .set_overdraft("shop", "-evil", "EUR/2", Overdraft::Unbounded)
        .unwrap();
    for reference in references {
        let posting = Posting::new("-evil", "till:1", "1.50", "EUR/2").unwrap();
        let request = PostRequest::new("shop", vec![posting])
            .with_reference(reference)
            .with_metadata("note", "=HYPERLINK(\"http://x\")");
        ledger.post(request).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    let store = path.to_str().unwrap();
    let statement = |account: &str| {
        let args = [
            "statement",
            "--store",
            store,
            "--ledger",
            "shop",
            "--from",
            "2000-01-01",
            "--to",
            "9999-12-31",
            "--format",
            "csv",
            // `-evil` would read as a flag.
            "--",
            account,
        ];
        let (code, text, stderr) = run(&args);
        assert_eq!(code, 0, "{stderr}");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        rows.into_iter()
            .filter(|row| &row[0] == "movement")
            .collect::<Vec<_>>()
    };
    let till = statement("till:1");
    let written: Vec<&str> = till.iter().map(|row| &row[8]).collect();
    assert_eq!(written, ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "plain"]);
    for row in &till {
        assert_eq!(&row[4], "'-evil", "a counterparty is text from users too");
        assert!(
            row[10].starts_with('{'),
            "metadata is a JSON object: {:?}",
            &row[10]
        );
    }
    // The account's own negative amounts are numbers Folio wrote: left as they are.
    let evil = statement("-evil");
    assert_eq!(&evil[0][7], "-1.50");
    assert_eq!(&evil[4][7], "-7.50");
    let (code, text, stderr) = run(&[
        "trial-balance",
        "--store",
        store,
        "--ledger",
        "shop",
        "--format",
        "csv",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("balance,'-evil,EUR/2,-7.50\n"), "{text}");
    assert!(text.contains("balance,till:1,EUR/2,7.50\n"), "{text}");
}

/// `hledger -f JOURNAL balance` as (account, commodity) -> balance, zero balances left out.
fn hledger_balances(journal: &Path) -> BTreeMap<(String, String), Decimal> {
    let output = std::process::Command::new("hledger")
        .args([
            "-f",
            journal.to_str().unwrap(),
            "balance",
            "--flat",
            "--no-total",
            "-E",
        ])
        .args(["-O", "csv", "--layout=bare"])
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "hledger is needed to check the journal export and could not be run ({error}): \
                 install it (apt-get install hledger; .ci/run does)"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hledger refused the journal: {stderr}"
    );
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let mut balances = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let amount = Decimal::from_str(&row[2]).unwrap();
        if !amount.is_zero() {
            balances.insert((row[0].to_string(), row[1].to_string()), amount);
        }
    }
    balances
}

/// `folio balances --json` as (account, asset) -> balance, zero balances left out.
fn folio_balances(store: &str, ledger: &str) -> BTreeMap<(String, String), Decimal> {
    let balances = run_json(&["balances", "--store", store, "--ledger", ledger, "--json"]);
    let mut flat = BTreeMap::new();
    for (account, by_asset) in balances["accounts"].as_object().unwrap() {
        for (asset, amount) in by_asset.as_object().unwrap() {
            if !dec(amount).is_zero() {
                flat.insert((account.clone(), asset.clone()), dec(amount));
            }
        }
    }
    flat
}

#[test]
fn hledger_reads_the_demo_journal_with_the_balances_folio_gives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo");
    let demo = run_json(&[
        "demo",
        "--store",
        path.to_str().unwrap(),
        "--transactions",
        "3000",
        "--json",
    ]);
    assert!(
        demo["refunds"].as_u64().unwrap() > 0,
        "the demo's data include reverts"
    );
    // The demo wrote its journal and the day's statement where it said.
    let journal = PathBuf::from(demo["reports"]["journal"].as_str().unwrap());
    let statement = PathBuf::from(demo["reports"]["statement"].as_str().unwrap());
    let account = demo["reports"]["statement_account"].as_str().unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.contains("folio-reverts:"),
        "reverts are in the journal"
    );
    let expected = folio_balances(path.to_str().unwrap(), "pos");
    assert_eq!(hledger_balances(&journal), expected);
    // The day's statement closes at the account's balance (every demo entry is today's).
    let mut reader = csv::Reader::from_path(&statement).unwrap();
    let closing = reader
        .records()
        .map(Result::unwrap)
        .find(|row| &row[0] == "closing")
        .unwrap();
    let key = (account.to_string(), "EUR/2".to_string());
    assert_eq!(Decimal::from_str(&closing[7]).unwrap(), expected[&key]);

    // `export --format journal` writes the same journal.
    let (code, exported, stderr) = run(&[
        "export",
        "--store",
        path.to_str().unwrap(),
        "--ledger",
        "pos",
        "--format",
        "journal",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(exported, text);
}

#[test]
fn hledger_reads_every_asset_and_awkward_metadata_of_a_journal_export() {
    let (store, _) = books();
    let (code, journal, stderr) = run(&[
        "export",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "--format",
        "journal",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        journal.contains("\"EUR/2\"") && journal.contains(" USD\n"),
        "{journal}"
    );
    assert!(
        journal.contains("note: \"counted\\u002c twice\""),
        "{journal}"
    );
    let file = store.file("shop.journal");
    std::fs::write(&file, &journal).unwrap();
    assert_eq!(hledger_balances(&file), folio_balances(store.s(), "shop"));

    // --ledger is required for a journal and refused for events.
    let (code, _, _) = run(&["export", "--store", store.s(), "--format", "journal"]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&[
        "export",
        "--store",
        store.s(),
        "--ledger",
        "shop",
        "--format",
        "events",
    ]);
    assert_eq!(code, 2);
}

/// `ledger -f JOURNAL register` summed as (account, commodity) -> balance, zero balances left
/// out: ledger-cli (Debian's `ledger`, 3.3) must read the journal too.
fn ledger_cli_balances(journal: &Path) -> BTreeMap<(String, String), Decimal> {
    let output = std::process::Command::new("ledger")
        .args(["-f", journal.to_str().unwrap(), "register", "--format"])
        .arg("%(account)\t%(commodity(amount))\t%(quantity(amount))\n")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "ledger-cli is needed to check the journal export and could not be run \
                 ({error}): install it (apt-get install ledger; .ci/run does)"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ledger-cli refused the journal: {stderr}"
    );
    let mut balances: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let key = (
            fields[0].to_string(),
            fields[1].trim_matches('"').to_string(),
        );
        *balances.entry(key).or_default() += Decimal::from_str(fields[2]).unwrap();
    }
    balances.retain(|_, amount| !amount.is_zero());
    balances
}

/// The tags `TOOL -f JOURNAL tags` finds (hledger and ledger-cli both have the command).
fn tags(tool: &str, journal: &Path) -> Vec<String> {
    let output = std::process::Command::new(tool)
        .args(["-f", journal.to_str().unwrap(), "tags"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{tool} refused the journal: {stderr}"
    );
    let mut tags: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

/// Writes ledger `shop` of `store` as a journal with `--out`, and returns its path and text.
fn journal_file(store: &Store) -> (PathBuf, String) {
    let file = store.file("shop.journal");
    let out = file.to_str().unwrap();
    let args = ["export", "--store", store.s(), "--ledger", "shop"];
    let (code, stdout, stderr) = run(&[&args[..], &["--format", "journal", "--out", out]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    (file, text)
}

#[test]
fn metadata_keys_that_cannot_be_tags_are_comments_in_which_no_tool_finds_a_tag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let ledger = Ledger::create(&path).unwrap();
    let posting = Posting::new("world", "till:1", "1.00", "EUR/2").unwrap();
    let mut request = PostRequest::new("shop", vec![posting]).with_metadata("kind", "sale");
    for key in ["my key", "a:b", "a,b", "q\"k"] {
        request = request.with_metadata(key, "v0, or: v1");
    }
    ledger.post(request).unwrap();
    ledger.close().unwrap();
    drop(ledger); // the handle holds the store's lock until dropped
    let store = Store { _dir: dir, path };
    let (file, text) = journal_file(&store);
    let expected = ["folio-id", "folio-timestamp", "kind"];
    assert_eq!(tags("hledger", &file), expected, "{text}");
    assert_eq!(tags("ledger", &file), expected, "{text}");
    assert!(
        text.contains("; folio-metadata [\"my key\",\"v0, or\\u003a v1\"]\n"),
        "{text}"
    );
    // Each awkward pair reads back exactly as JSON.
    let pairs: Vec<Vec<String>> = text
        .lines()
        .filter_map(|line| line.strip_prefix("    ; folio-metadata "))
        .map(|pair| serde_json::from_str(pair).unwrap())
        .collect();
    let keys: Vec<&str> = pairs.iter().map(|pair| pair[0].as_str()).collect();
    assert_eq!(keys, ["a,b", "a:b", "my key", "q\"k"]);
    assert!(pairs.iter().all(|pair| pair[1] == "v0, or: v1"));
}

#[test]
fn a_transaction_before_1400_is_in_a_journal_that_hledger_and_ledger_cli_both_read() {
    let (store, _) = books();
    let ledger = Ledger::open(&store.path).unwrap();
    for time in [
        "0001-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ] {
        let posting = Posting::new("world", "till:1", "3.00", "EUR/2").unwrap();
        let request = PostRequest::new("shop", vec![posting]).with_timestamp(at(time));
        ledger.post(request).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger); // the handle holds the store's lock until dropped
    let (file, text) = journal_file(&store);
    let expected = folio_balances(store.s(), "shop");
    assert_eq!(ledger_cli_balances(&file), expected);
    assert_eq!(hledger_balances(&file), expected);
    // The day ledger-cli reads, with the exact instant in its tag.
    assert!(text.contains("1400-01-01 * tx"), "{text}");
    assert!(
        text.contains("; folio-timestamp: 0001-01-01T00:00:00Z\n"),
        "{text}"
    );
    assert!(text.contains("9999-12-31 * tx"), "{text}");
}

/// Runs folio with `args` under a file size limit of `limit_bytes` with SIGXFSZ ignored, so
/// that a write past the limit fails with EFBIG as a write to a full disk fails.
fn run_with_file_size_limit(args: &[&str], limit_bytes: u64) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_folio"));
    command.args(args).env_remove("FOLIO_STORE");
    // SAFETY: between fork and exec the closure only calls async-signal-safe functions.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: limit_bytes,
                rlim_max: limit_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), stderr)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn out_keeps_the_old_report_when_the_new_one_cannot_be_written_whole() {
    let (store, _) = books();
    let (file, good) = journal_file(&store);
    let dir = file.parent().unwrap().to_path_buf();
    let before = names(&dir);
    // The journal (read-only: the store is not written) is longer than 1000 bytes: its write
    // fails past them, as on a full disk.
    assert!(good.len() > 1000);
    let out = file.to_str().unwrap();
    let (code, stderr) = run_with_file_size_limit(
        &[
            "export",
            "--store",
            store.s(),
            "--ledger",
            "shop",
            "--format",
            "journal",
            "--out",
            out,
        ],
        1000,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("writing {out}: ")), "{stderr}");
    assert!(stderr.contains("(IO)"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), good);
    assert_eq!(names(&dir), before, "no temporary file is left behind");
}

#[test]
fn out_replaces_csv_and_xlsx_reports_whole_and_leaves_nothing_else() {
    let (store, _) = books();
    let dir = store.path.parent().unwrap().to_path_buf();
    for (format, name) in [
        ("csv", "trial.csv"),
        ("xlsx", "trial.xlsx"),
        ("json", "trial.json"),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, "an old report, longer than the new one ".repeat(500)).unwrap();
        let out = file.to_str().unwrap();
        let args = ["trial-balance", "--store", store.s(), "--ledger", "shop"];
        let (code, _, stderr) = run(&[&args[..], &["--format", format, "--out", out]].concat());
        assert_eq!(code, 0, "{stderr}");
        let written = std::fs::read(&file).unwrap();
        match format {
            "xlsx" => assert!(written.starts_with(b"PK"), "a zip"),
            "csv" => assert!(written.starts_with(b"kind,account,asset,balance\n")),
            _ => assert!(serde_json::from_slice::<Value>(&written).is_ok()),
        }
    }
    assert_eq!(
        names(&dir),
        ["store", "trial.csv", "trial.json", "trial.xlsx"]
    );
}
