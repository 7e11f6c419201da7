//! `folio demo`: a newcomer's first run. Simulates a point-of-sale day across four tills (cash
//! and card sales, card fees, refunds as reverts, cash drops to the bank, an idempotent retry,
//! a rejected overdraft), verifies the store, prints the end-of-day books, and writes the day's
//! statement of a till and the ledger's journal into the demo directory (`docs/reports.md`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::json;

use super::output::{CliError, outln, print_json, progress_bar};
use super::query::print_balances_table;
use crate::domain::model::Timestamp;
use crate::domain::request::hex;
use crate::report::render::{Format, write_statement};
use crate::report::{StatementRequest, statement, write_journal};
use crate::{Ledger, PostRequest, Posting, RevertRequest};

/// Marks a directory as a demo store that `folio demo` may replace.
const DEMO_MARKER: &str = "FOLIO_DEMO";
const LEDGER: &str = "pos";
const ASSET: &str = "EUR/2";
const TILLS: u64 = 4;
const REQUESTS_PER_BATCH: u64 = 1000;

/// A small seeded generator: the demo is the same day every time.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// What happened during the day.
#[derive(Default)]
struct Tally {
    posted: u64,
    rejected: u64,
    refunds: u64,
    replayed: u64,
}

fn cents(amount: u64) -> Decimal {
    Decimal::new(amount as i64, 2)
}

fn posting(source: &str, destination: &str, amount: Decimal) -> Posting {
    Posting {
        source: source.into(),
        destination: destination.into(),
        amount,
        asset: ASSET.into(),
    }
}

/// The n-th request of the day.
fn request(dice: &mut Dice, n: u64) -> PostRequest {
    let till = format!("till:{}", 1 + dice.below(TILLS));
    let roll = dice.below(100);
    let amount = cents(200 + dice.below(7800));
    let (postings, kind) = if roll < 55 {
        (
            vec![posting("world", &format!("{till}:cash"), amount)],
            "cash-sale",
        )
    } else if roll < 99 {
        // The acquirer keeps 1.5%: the fee leaves card clearing for the fees account.
        let fee = (amount * Decimal::new(15, 3)).round_dp(2).max(cents(1));
        (
            vec![
                posting("world", "card:clearing", amount),
                posting("card:clearing", "fees:card", fee),
            ],
            "card-sale",
        )
    } else {
        (
            vec![posting(&format!("{till}:cash"), "bank:main", cents(50_000))],
            "cash-drop",
        )
    };
    PostRequest::new(LEDGER, postings)
        .with_reference(format!("pos-{n}"))
        .with_metadata("kind", kind)
        .with_metadata("till", till)
}

/// Prepares the demo directory: refuses to touch anything that is not an earlier demo store.
fn prepare(dir: &Path) -> Result<(), CliError> {
    let io = |error: std::io::Error| CliError::io(format!("{}: {error}", dir.display()));
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io)?.next().is_none();
        if !empty && !dir.join(DEMO_MARKER).exists() {
            let message = format!(
                "{} exists and is not a demo store; not overwriting it",
                dir.display()
            );
            return Err(CliError {
                exit: 2,
                code: "STORE_EXISTS".into(),
                message,
            });
        }
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    Ok(())
}

pub(super) fn demo(dir: &Path, transactions: u64, json: bool) -> Result<u8, CliError> {
    prepare(dir)?;
    let ledger = Ledger::create(dir)?;
    std::fs::write(
        dir.join(DEMO_MARKER),
        "a store made by `folio demo`; it may replace it\n",
    )
    .map_err(|error| CliError::io(error.to_string()))?;
    let day_start = Timestamp::now();
    let mut dice = Dice(2026);
    let mut tally = Tally::default();
    let bar = progress_bar(transactions, "a day at the tills");
    let started = Instant::now();
    let mut sent = 0;
    while sent < transactions {
        let count = REQUESTS_PER_BATCH.min(transactions - sent);
        let batch: Vec<PostRequest> = (sent..sent + count)
            .map(|n| request(&mut dice, n))
            .collect();
        let mut sales = Vec::new();
        for result in ledger.post_batch(batch) {
            match result {
                Ok(receipt) => {
                    tally.posted += 1;
                    sales.push(receipt.id);
                }
                Err(error) if error.is_rejection() => tally.rejected += 1,
                Err(error) => return Err(error.into()),
            }
        }
        // About one sale in a hundred comes back for a refund.
        for id in sales.iter().filter(|_| dice.below(100) == 0) {
            let refund = RevertRequest {
                reference: Some(format!("refund-{id}")),
                ..RevertRequest::new(LEDGER, *id)
            };
            match ledger.revert(refund) {
                Ok(_) => tally.refunds += 1,
                Err(error) if error.is_rejection() => tally.rejected += 1,
                Err(error) => return Err(error.into()),
            }
        }
        sent += count;
        bar.set_position(sent);
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    finale(&ledger, &mut tally, &mut dice)?;
    let report = ledger.verify(&[])?;
    let balances = ledger.balances(LEDGER, "")?;
    let files = write_reports(&ledger, dir, &balances, day_start)?;
    let head = ledger.head();
    ledger.close()?;
    let per_second = (tally.posted + tally.refunds) as f64 / seconds.max(1e-9);
    if json {
        print_json(&json!({
            "store": dir.display().to_string(),
            "posted": tally.posted, "refunds": tally.refunds, "rejected": tally.rejected, "replayed": tally.replayed,
            "transactions_per_second": per_second.round(),
            "verify": report,
            "head": { "seq": head.seq, "block_hash": hex(&head.block_hash) },
            "reports": {
                "statement_account": files.account,
                "statement": files.statement.as_ref().map(|path| path.display().to_string()),
                "journal": files.journal.display().to_string(),
            },
        }))?;
    } else {
        outln!(
            "A day at {TILLS} tills in {}: {} sales and drops posted, {} refunds, {} rejected, {} replayed",
            dir.display(),
            tally.posted,
            tally.refunds,
            tally.rejected,
            tally.replayed
        )?;
        outln!("{per_second:.0} transactions/s ({seconds:.2}s)\n")?;
        outln!("End-of-day balances ({LEDGER}):")?;
        print_balances_table(&balances)?;
        let verdict = if report.ok { "OK" } else { "FAILED" };
        outln!(
            "\nverify: {verdict} ({} entries, state matches a replay of the log)",
            report.entries
        )?;
        outln!("head digest: {}:{}", head.seq, hex(&head.block_hash))?;
        if let (Some(account), Some(path)) = (&files.account, &files.statement) {
            outln!(
                "\nthe day's statement of {account} (CSV): {}",
                path.display()
            )?;
        }
        outln!(
            "the journal of {LEDGER} (try: hledger -f {0} balance): {0}",
            files.journal.display()
        )?;
        outln!(
            "\nTry: folio balances --store {} --ledger {LEDGER}",
            dir.display()
        )?;
    }
    Ok(if report.ok { 0 } else { 1 })
}

/// The end of the day: a till retries a sale it already sent (replayed, not posted twice), and
/// a cash drop larger than the till holds is refused.
fn finale(ledger: &Ledger, tally: &mut Tally, dice: &mut Dice) -> Result<(), CliError> {
    let mut retry_dice = Dice(2026);
    let first = request(&mut retry_dice, 0);
    match ledger.post(first) {
        Ok(receipt) if receipt.replayed => tally.replayed += 1,
        Ok(_) => tally.posted += 1,
        Err(error) if error.is_rejection() => tally.rejected += 1,
        Err(error) => return Err(error.into()),
    }
    let till = format!("till:{}:cash", 1 + dice.below(TILLS));
    let too_much = PostRequest::new(
        LEDGER,
        vec![posting(&till, "bank:main", cents(100_000_000))],
    );
    match ledger.post(too_much) {
        Err(error) if error.is_rejection() => tally.rejected += 1,
        Ok(_) => tally.posted += 1,
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Where the demo wrote its reports.
struct ReportFiles {
    /// The account of the statement: a till's cash drawer (none if no till was used).
    account: Option<String>,
    statement: Option<PathBuf>,
    journal: PathBuf,
}

/// Writes the day's statement of the first till's cash drawer (CSV) and the ledger's journal
/// into the demo directory. The day is the UTC day the demo started on, to the end of the UTC
/// day it ends on (a demo run across midnight covers both days).
fn write_reports(
    ledger: &Ledger,
    dir: &Path,
    balances: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, Decimal>>,
    day_start: Timestamp,
) -> Result<ReportFiles, CliError> {
    const DAY_US: i64 = 86_400_000_000;
    let account = balances
        .keys()
        .find(|account| account.starts_with("till:"))
        .cloned();
    let mut statement_path = None;
    if let Some(account) = &account {
        let request = StatementRequest {
            ledger: LEDGER.to_string(),
            account: account.clone(),
            from: Timestamp(day_start.0.div_euclid(DAY_US) * DAY_US),
            to: Timestamp((Timestamp::now().0.div_euclid(DAY_US) + 1) * DAY_US),
            asset: None,
        };
        let path = dir.join(format!("statement-{}.csv", account.replace(':', "-")));
        write_statement(&statement(ledger, &request)?, Format::Csv, Some(&path))?;
        statement_path = Some(path);
    }
    let journal = dir.join(format!("{LEDGER}.journal"));
    let io = |error: std::io::Error| CliError::io(format!("{}: {error}", journal.display()));
    let file = std::fs::File::create(&journal).map_err(io)?;
    write_journal(ledger.log(), LEDGER, std::io::BufWriter::new(file))?;
    Ok(ReportFiles {
        account,
        statement: statement_path,
        journal,
    })
}
