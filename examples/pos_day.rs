//! A day at a small shop with three tills, on a fresh store: cash and card sales, card fees, a
//! refund, a cash drop to the bank, an overdraft policy, a retried request and a refused one,
//! then the end-of-day balances and the head digest an auditor writes down.
//!
//! Run with `cargo run --example pos_day [STORE_DIR]` (default: a temporary directory).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an example stops on any error"
)]

use std::path::PathBuf;

use folio::ledger::request::hex;
use folio::{Ledger, Overdraft, PostRequest, Posting, Receipt, RevertRequest};
use rust_decimal::Decimal;

const BOOKS: &str = "shop";
const USD: &str = "USD/2";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A cash sale: the money comes from outside the books (`world`) into the till's drawer.
fn cash_sale(reference: &str, till: &str, amount: &str) -> Result<PostRequest> {
    let posting = Posting::new("world", till, amount, USD)?;
    Ok(PostRequest::new(BOOKS, vec![posting])
        .with_reference(reference)
        .with_metadata("payment", "cash"))
}

/// A card sale: the card acquirer owes us the amount and keeps a 1.5% fee, in one transaction.
fn card_sale(reference: &str, till: &str, amount: &str) -> Result<PostRequest> {
    let sale = Posting::new("world", "acquirer:owed", amount, USD)?;
    let fee = (sale.amount * Decimal::new(15, 3)).round_dp(2);
    let postings = vec![
        sale,
        Posting::new("acquirer:owed", "fees:card", &fee.to_string(), USD)?,
    ];
    Ok(PostRequest::new(BOOKS, postings)
        .with_reference(reference)
        .with_metadata("payment", "card")
        .with_metadata("till", till))
}

fn show(what: &str, receipt: &Receipt) {
    let moves: Vec<String> = receipt
        .postings
        .iter()
        .map(|p| format!("{} -> {} {:.2}", p.source, p.destination, p.amount))
        .collect();
    let replayed = receipt.replayed.then_some("  (replayed: true)");
    let moves = moves.join(", ");
    println!(
        "  #{:<3} {what:<30} {moves}{}",
        receipt.id,
        replayed.unwrap_or_default()
    );
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pos_day: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| temp.path().join("books"), PathBuf::from);
    let ledger = Ledger::create(&dir)?;
    println!("Created a new store in {}\n", dir.display());

    println!("All amounts are in USD/2: US dollars with at most 2 decimal places.");
    println!("Morning: till:2 may go 20.00 below zero (it lends change to the others).");
    let limit = Overdraft::Bounded(Decimal::new(20, 0));
    ledger.set_overdraft(BOOKS, "till:2", USD, limit)?;

    println!("Sales (durable on disk when `post` returns; #id is the entry's place in the log):");
    let sales = [
        ("sale-001", "till:1", "cash", "12.50"),
        ("sale-002", "till:1", "card", "40.00"),
        ("sale-003", "till:2", "cash", "8.99"),
        ("sale-004", "till:3", "card", "129.90"),
        ("sale-005", "till:3", "cash", "64.00"),
        ("sale-006", "till:1", "cash", "55.25"),
    ];
    let mut receipts = Vec::new();
    for (reference, till, payment, amount) in sales {
        let request = match payment {
            "cash" => cash_sale(reference, till, amount)?,
            _ => card_sale(reference, till, amount)?,
        };
        let receipt = ledger.post(request)?;
        show(&format!("{payment} sale {reference} at {till}"), &receipt);
        receipts.push(receipt);
    }

    println!("\nThe network dropped sale-005's answer; the till sends the same request again:");
    let retry = ledger.post(cash_sale("sale-005", "till:3", "64.00")?)?;
    show("retry of sale-005", &retry);
    println!(
        "        the same transaction #{}: no second sale",
        receipts[4].id
    );

    println!("\nA customer returns the card purchase sale-004: revert it, fee included.");
    let refund = ledger.revert(RevertRequest::new(BOOKS, receipts[3].id))?;
    show("refund of sale-004", &refund);

    println!("\nTill 2 hands out 25.00 of change: it goes below zero, as its policy allows.");
    let change = Posting::new("till:2", "till:1", "25.00", USD)?;
    let lent = ledger.post(PostRequest::new(BOOKS, vec![change]).with_reference("change-1"))?;
    show("change from till:2", &lent);
    for flag in &lent.overdrafts {
        println!("        overdraft: {} at {:.2}", flag.account, flag.balance);
    }

    println!("\nTill 3 tries to pay out 100.00 it does not have (no overdraft allowed):");
    let payout = Posting::new("till:3", "supplier:milk", "100.00", USD)?;
    match ledger.post(PostRequest::new(BOOKS, vec![payout])) {
        Ok(receipt) => println!("  unexpectedly accepted as #{}", receipt.id),
        Err(error) => println!("  refused, {}: {error}", error.code()),
    }

    println!("\nEnd of day: the cash in till 1 is carried to the bank.");
    let cash = ledger.balance(BOOKS, "till:1")?[USD];
    let drop = Posting::new("till:1", "bank:main", &cash.to_string(), USD)?;
    let dropped = ledger.post(PostRequest::new(BOOKS, vec![drop]).with_reference("drop-1"))?;
    show("cash drop from till:1", &dropped);

    println!("\nEnd-of-day balances (world is everything outside the shop's books):");
    println!("  {:<16} {:<6} {:>10}", "ACCOUNT", "ASSET", "BALANCE");
    let mut total = Decimal::ZERO;
    for (account, assets) in ledger.balances(BOOKS, "")? {
        for (asset, balance) in assets {
            println!("  {account:<16} {asset:<6} {:>10}", format!("{balance:.2}"));
            total += balance;
        }
    }
    println!("  {:<16} {:<6} {:>10}", "(sum)", USD, format!("{total:.2}"));
    assert!(total.is_zero(), "double entry: every asset sums to zero");

    let head = ledger.head();
    println!("\nHead digest (write it down; `folio verify --expect-head` checks it later):");
    println!("  {}:{}", head.seq, hex(&head.block_hash));
    let report = ledger.verify(&[(head.seq, head.block_hash)])?;
    println!("Verified {} log entries: {}", report.entries, report.ok);
    ledger.close()?;
    println!("Closed the store.");
    Ok(())
}
