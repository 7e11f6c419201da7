//! Commands that create a store, read the books, or make one change: init, revert, balance,
//! balances, tx, history, account, head, stats.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::AccountAction;
use super::output::{CliError, note, outln, print_json, print_table};
use crate::domain::request::hex;
use crate::{Committed, Ledger, LedgerError, Receipt, RevertRequest};

/// Opens a store for a command, telling stderr when its state had to be rebuilt from the log
/// (missing, damaged, or of another schema: the first open after an upgrade takes longer).
pub(super) fn open(store: &Path) -> Result<Ledger, CliError> {
    noted(Ledger::open(store)?)
}

/// Opens a store for a command that only reads it: beside a writer that may hold it, and
/// without writing anything (`Ledger::open_reader`).
pub(super) fn open_reader(store: &Path) -> Result<Ledger, CliError> {
    noted(Ledger::open_reader(store)?)
}

fn noted(ledger: Ledger) -> Result<Ledger, CliError> {
    if let crate::state::StateOpened::Rebuilt { reason } = &ledger.open_report().state {
        let entries = ledger.open_report().entries_caught_up;
        note(format_args!(
            "folio: the state was rebuilt from the log ({entries} entries): {reason}"
        ));
    }
    Ok(ledger)
}

pub(super) fn init(store: &Path, json: bool) -> Result<u8, CliError> {
    let ledger = Ledger::create(store)?;
    let head = ledger.head();
    ledger.close()?;
    if json {
        print_json(
            &json!({ "store": store.display().to_string(), "store_id": hex_id(&ledger.store_id()), "head": head_json(&head) }),
        )?;
    } else {
        outln!(
            "created store {} (id {})",
            store.display(),
            hex_id(&ledger.store_id())
        )?;
    }
    Ok(0)
}

pub(super) fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn head_json(head: &crate::Head) -> serde_json::Value {
    json!({ "seq": head.seq, "block_hash": hex(&head.block_hash) })
}

/// Prints a receipt as JSON or as a short human summary.
pub(super) fn print_receipt(receipt: &Receipt, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(receipt);
    }
    let replayed = if receipt.replayed { " (replayed)" } else { "" };
    let reference = receipt
        .reference
        .as_deref()
        .map(|r| format!(" ref {r}"))
        .unwrap_or_default();
    outln!(
        "tx {}{reference}{replayed} in {} at {}",
        receipt.id,
        receipt.ledger,
        receipt.timestamp
    )?;
    for posting in &receipt.postings {
        outln!(
            "  {} -> {}  {} {}",
            posting.source,
            posting.destination,
            posting.amount,
            posting.asset
        )?;
    }
    outln!("  block_hash {}", hex(&receipt.block_hash))
}

pub(super) fn revert(
    store: &Path,
    ledger_name: &str,
    id: u64,
    force: bool,
    reference: Option<String>,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = open(store)?;
    let mut request = RevertRequest::new(ledger_name, id);
    request.force = force;
    request.reference = reference;
    let receipt = ledger.revert(request);
    ledger.close()?;
    print_receipt(&receipt?, json)?;
    Ok(0)
}

pub(super) fn balance(
    store: &Path,
    ledger_name: &str,
    account: &str,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let balances = ledger.balance(ledger_name, account)?;
    ledger.close()?;
    if json {
        let balances: BTreeMap<&String, String> =
            balances.iter().map(|(a, b)| (a, b.to_string())).collect();
        print_json(&json!({ "ledger": ledger_name, "account": account, "balances": balances }))?;
    } else {
        let rows: Vec<Vec<String>> = balances
            .iter()
            .map(|(asset, amount)| vec![asset.clone(), amount.to_string()])
            .collect();
        print_table(&["ASSET", "BALANCE"], &rows)?;
    }
    Ok(0)
}

pub(super) fn balances(
    store: &Path,
    ledger_name: &str,
    prefix: &str,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let accounts = ledger.balances(ledger_name, prefix)?;
    ledger.close()?;
    if json {
        let accounts: BTreeMap<&String, BTreeMap<&String, String>> = accounts
            .iter()
            .map(|(account, by_asset)| {
                (
                    account,
                    by_asset.iter().map(|(a, b)| (a, b.to_string())).collect(),
                )
            })
            .collect();
        print_json(&json!({ "ledger": ledger_name, "accounts": accounts }))?;
    } else {
        print_balances_table(&accounts)?;
    }
    Ok(0)
}

pub(super) fn print_balances_table(
    accounts: &BTreeMap<String, BTreeMap<String, rust_decimal::Decimal>>,
) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for (account, by_asset) in accounts {
        for (asset, amount) in by_asset {
            rows.push(vec![account.clone(), asset.clone(), amount.to_string()]);
        }
    }
    print_table(&["ACCOUNT", "ASSET", "BALANCE"], &rows)
}

pub(super) fn tx(
    store: &Path,
    ledger_name: &str,
    id: Option<u64>,
    reference: Option<String>,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let found = match (id, &reference) {
        (_, Some(reference)) => ledger.transaction_by_reference(ledger_name, reference)?,
        (Some(id), None) => ledger.transaction(ledger_name, id)?,
        (None, None) => return Err(CliError::usage("give an id or --reference")),
    };
    ledger.close()?;
    let Some(receipt) = found else {
        let what = reference.map_or_else(
            || format!("transaction {}", id.unwrap_or(0)),
            |r| format!("reference {r:?}"),
        );
        let error = CliError {
            exit: 1,
            code: "TRANSACTION_NOT_FOUND".into(),
            message: format!("{what} not found in ledger {ledger_name}"),
        };
        return Err(error);
    };
    print_receipt(&receipt, json)?;
    Ok(0)
}

pub(super) fn history(
    store: &Path,
    ledger_name: &str,
    account: &str,
    limit: usize,
    after: Option<u64>,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let page = ledger.history(ledger_name, account, limit, after)?;
    ledger.close()?;
    if json {
        for receipt in &page {
            print_json(receipt)?;
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = page
        .iter()
        .map(|receipt| {
            let change: Vec<String> =
                receipt
                    .post_commit_volumes
                    .get(account)
                    .map_or_else(Vec::new, |by_asset| {
                        by_asset
                            .iter()
                            .map(|(asset, volumes)| format!("{} {asset}", volumes.balance))
                            .collect()
                    });
            vec![
                receipt.id.to_string(),
                receipt.timestamp.to_string(),
                receipt.reference.clone().unwrap_or_default(),
                change.join(", "),
            ]
        })
        .collect();
    print_table(&["ID", "TIMESTAMP", "REFERENCE", "BALANCE AFTER"], &rows)?;
    Ok(0)
}

pub(super) fn account(
    store: &Path,
    ledger_name: &str,
    account: &str,
    action: AccountAction,
    json: bool,
) -> Result<u8, CliError> {
    let ledger = match action {
        AccountAction::Show => open_reader(store)?,
        _ => open(store)?,
    };
    let committed: Result<Committed, crate::Error> = match action {
        AccountAction::Show => {
            let view = ledger.account(ledger_name, account)?;
            ledger.close()?;
            return show_account(view, ledger_name, account, json);
        }
        AccountAction::SetOverdraft { policy, asset } => {
            let policy = policy
                .parse()
                .map_err(|error: LedgerError| CliError::of(&error.into()))?;
            ledger.set_overdraft(ledger_name, account, &asset, policy)
        }
        AccountAction::SetMetadata { key, value } => {
            ledger.set_account_metadata(ledger_name, account, BTreeMap::from([(key, value)]))
        }
        AccountAction::DeleteMetadata { key } => {
            ledger.delete_account_metadata(ledger_name, account, &key)
        }
    };
    ledger.close()?;
    let committed = committed?;
    if json {
        print_json(&committed)?;
    } else {
        outln!(
            "entry {} block_hash {}",
            committed.seq,
            hex(&committed.block_hash)
        )?;
    }
    Ok(0)
}

fn show_account(
    view: Option<crate::AccountView>,
    ledger_name: &str,
    account: &str,
    json: bool,
) -> Result<u8, CliError> {
    let Some(view) = view else {
        let message = format!("account {account} has never been used in ledger {ledger_name}");
        return Err(CliError {
            exit: 1,
            code: "ACCOUNT_NOT_FOUND".into(),
            message,
        });
    };
    if json {
        print_json(&view)?;
        return Ok(0);
    }
    outln!(
        "account {} in {} (postings: {})",
        view.address,
        view.ledger,
        view.posting_seq
    )?;
    let rows: Vec<Vec<String>> = view
        .volumes
        .iter()
        .map(|(asset, volumes)| {
            let policy = view
                .overdrafts
                .get(asset)
                .map_or_else(|| "none".to_string(), ToString::to_string);
            vec![
                asset.clone(),
                volumes.input.to_string(),
                volumes.output.to_string(),
                volumes.balance.to_string(),
                policy,
            ]
        })
        .collect();
    print_table(&["ASSET", "INPUT", "OUTPUT", "BALANCE", "OVERDRAFT"], &rows)?;
    for (key, value) in &view.metadata {
        outln!("  {key} = {value}")?;
    }
    Ok(0)
}

pub(super) fn head(store: &Path, json: bool) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let head = ledger.head();
    ledger.close()?;
    if json {
        print_json(&head_json(&head))?;
    } else {
        outln!("{}:{}", head.seq, hex(&head.block_hash))?;
    }
    Ok(0)
}

pub(super) fn stats(store: &Path, json: bool) -> Result<u8, CliError> {
    let ledger = open_reader(store)?;
    let stats = ledger.stats()?;
    ledger.close()?;
    if json {
        print_json(&json!({
            "entries": stats.entries,
            "segments": stats.segments,
            "bytes": stats.log_bytes,
            "ledgers": stats.ledgers,
            "accounts": stats.accounts,
            "transactions": stats.transactions,
            "watermark": stats.watermark,
        }))?;
    } else {
        let rows = vec![
            vec!["entries".to_string(), stats.entries.to_string()],
            vec!["segments".to_string(), stats.segments.to_string()],
            vec!["log bytes".to_string(), stats.log_bytes.to_string()],
            vec!["ledgers".to_string(), stats.ledgers.to_string()],
            vec!["accounts".to_string(), stats.accounts.to_string()],
            vec!["transactions".to_string(), stats.transactions.to_string()],
            vec!["watermark".to_string(), stats.watermark.to_string()],
        ];
        print_table(&["STAT", "VALUE"], &rows)?;
    }
    Ok(0)
}
