//! The `folio` command line: thin clap commands over the library (`docs/cli.md`). It holds no
//! accounting logic. Exit codes, error codes and JSON shapes are a contract that scripts rely
//! on: 0 success; 1 the operation ran and found a failure (a rejected transaction, a failed
//! verification); 2 usage errors, I/O errors, a store that cannot be opened.

mod audit;
mod demo;
mod output;
mod post;
mod query;
mod report;
mod skip;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::Error;
pub use output::CliError;

/// Folio: an embedded double-entry ledger with a verifiable, hash-chained log.
#[derive(Debug, Parser)]
#[command(name = "folio", version, about)]
pub struct Cli {
    /// The store's directory.
    #[arg(long, global = true, env = "FOLIO_STORE")]
    store: Option<PathBuf>,
    /// Print JSON (one object, or JSON Lines for streams) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a store.
    Init,
    /// Post transactions read as JSON Lines from FILE or stdin.
    Post {
        /// File of JSON Lines requests; `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
    /// Revert a transaction: post its postings reversed.
    Revert {
        #[arg(long)]
        ledger: String,
        #[arg(value_parser = number::<u64>)]
        id: u64,
        /// Post even if an account goes below its overdraft policy.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        reference: Option<String>,
    },
    /// One account's balances.
    Balance {
        #[arg(long)]
        ledger: String,
        account: String,
    },
    /// Every account's balances (optionally those whose address starts with a prefix).
    Balances {
        #[arg(long)]
        ledger: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// A transaction by id or by reference.
    Tx {
        #[arg(long)]
        ledger: String,
        #[arg(
            required_unless_present = "reference",
            conflicts_with = "reference",
            value_parser = number::<u64>
        )]
        id: Option<u64>,
        #[arg(long)]
        reference: Option<String>,
    },
    /// An account's transactions, newest first.
    History {
        #[arg(long)]
        ledger: String,
        account: String,
        #[arg(long, default_value_t = 100, value_parser = number::<usize>)]
        limit: usize,
        /// Continue after this id (the last id of the previous page): older transactions.
        #[arg(long, value_parser = number::<u64>)]
        after: Option<u64>,
    },
    /// Show an account, or change its overdraft policy or metadata.
    Account {
        #[arg(long)]
        ledger: String,
        account: String,
        #[command(subcommand)]
        action: AccountAction,
    },
    /// The log's head digest: `{"seq":N,"block_hash":"..."}`.
    Head,
    /// Verify the store without changing it: the log's chain and the state against a replay.
    Verify {
        /// An earlier head digest `SEQ:HASH` that must still hold (repeatable).
        #[arg(long = "expect-head", value_name = "SEQ:HASH")]
        expect_head: Vec<String>,
    },
    /// Rebuild the state from the log (or, with --out, a new store as of an entry).
    Replay {
        /// Rebuild only up to this entry (with --out): 1 to the head.
        #[arg(long, value_parser = number::<u64>)]
        to_seq: Option<u64>,
        /// Make a new store in this directory instead of replacing the state.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export entries as JSON Lines.
    Export {
        /// Only entries after this seq.
        #[arg(long, default_value_t = 0, value_parser = number::<u64>)]
        since: u64,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The ledger to export (journal only: events export every ledger).
        #[arg(long)]
        ledger: Option<String>,
        /// Write the journal to this file instead of stdout (journal only).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// An account's statement over a period: opening, movements, closing.
    Statement(report::StatementArgs),
    /// Every account's balance per asset at a time, with totals per asset.
    TrialBalance(report::TrialBalanceArgs),
    /// Entries, segments, bytes, ledgers, accounts, watermark.
    Stats,
    /// Outbox consumers: their cursors and lag (events not yet acknowledged).
    Consumers,
    /// Push a consumer's events to an HTTP receiver or a NATS JetStream stream, acking each
    /// delivered batch.
    Sync(sync::SyncArgs),
    /// Skip a consumer's next entry with an event, which it cannot receive, recording why: its
    /// cursor moves past it.
    Skip {
        #[arg(long)]
        consumer: String,
        /// The entry to skip: the consumer's next entry with an event.
        #[arg(long, value_parser = number::<u64>)]
        seq: u64,
        /// Why, recorded in the log: 1 to 1024 bytes, no control characters.
        #[arg(long)]
        reason: String,
    },
    /// Simulate a point-of-sale day on a demo store, verify it, and print the books.
    Demo {
        /// Transactions to simulate.
        #[arg(long, default_value_t = 100_000, value_parser = number::<u64>)]
        transactions: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// Formance ledger events.
    Events,
    /// An hledger / ledger-cli journal of one ledger (needs --ledger).
    Journal,
}

#[derive(Debug, Subcommand)]
enum AccountAction {
    /// Set the overdraft policy in one asset: none, unbounded, or a limit.
    SetOverdraft {
        policy: String,
        #[arg(long)]
        asset: String,
    },
    /// Set one metadata key.
    SetMetadata { key: String, value: String },
    /// Delete one metadata key.
    DeleteMetadata { key: String },
    /// Show volumes, metadata, policies and posting sequence.
    Show,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return parse_failed(&error),
    };
    let json = cli.json;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            error.print(json);
            ExitCode::from(error.exit)
        }
    }
}

/// `--help` and `--version` print as clap prints them (exit 0); every other parse error is a
/// `USAGE` error printed like any other error, as JSON too when `--json` was given.
fn parse_failed(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        // A reader that went away (`folio --help | head -1`) is not an error.
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let error = match error.kind() {
        // A bare `folio`: clap would print the whole help as the "error".
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            CliError::usage("no command given; usage: folio [OPTIONS] <COMMAND> (see folio --help)")
        }
        _ => CliError::from_clap(error),
    };
    error.print(json_requested(std::env::args_os().skip(1)));
    ExitCode::from(error.exit)
}

/// Whether the raw arguments ask for `--json` (a global flag, so anywhere before a `--`), for
/// a command line that clap could not parse.
fn json_requested(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// Runs one command; `Ok` carries the exit code (0, or 1 when the command found a failure).
fn run(cli: Cli) -> Result<u8, CliError> {
    let json = cli.json;
    let store = || cli.store.clone().ok_or_else(CliError::missing_store);
    match cli.command {
        Command::Init => query::init(&store()?, json),
        Command::Post { file } => post::post(&store()?, file.as_deref(), json),
        Command::Revert {
            ledger,
            id,
            force,
            reference,
        } => query::revert(&store()?, &ledger, id, force, reference, json),
        Command::Balance { ledger, account } => query::balance(&store()?, &ledger, &account, json),
        Command::Balances { ledger, prefix } => query::balances(&store()?, &ledger, &prefix, json),
        Command::Tx {
            ledger,
            id,
            reference,
        } => query::tx(&store()?, &ledger, id, reference, json),
        Command::History {
            ledger,
            account,
            limit,
            after,
        } => query::history(&store()?, &ledger, &account, limit, after, json),
        Command::Account {
            ledger,
            account,
            action,
        } => query::account(&store()?, &ledger, &account, action, json),
        Command::Head => query::head(&store()?, json),
        Command::Verify { expect_head } => audit::verify(&store()?, &expect_head, json),
        Command::Replay { to_seq, out } => audit::replay(&store()?, to_seq, out, json),
        Command::Export {
            since,
            format,
            ledger,
            out,
        } => match (format, ledger) {
            (ExportFormat::Events, None) if out.is_none() => audit::export(&store()?, since),
            (ExportFormat::Events, _) => Err(CliError::usage(
                "--ledger and --out are for --format journal; events export every ledger to stdout",
            )),
            (ExportFormat::Journal, ledger) => {
                report::journal(&store()?, ledger.as_deref(), since, out.as_deref())
            }
        },
        Command::Statement(args) => report::statement(&store()?, args, json),
        Command::TrialBalance(args) => report::trial_balance(&store()?, args, json),
        Command::Stats => query::stats(&store()?, json),
        Command::Consumers => sync::consumers(&store()?, json),
        Command::Sync(args) => sync::sync(&store()?, args, json),
        Command::Skip {
            consumer,
            seq,
            reason,
        } => skip::skip(&store()?, &consumer, seq, &reason, json),
        Command::Demo { transactions } => {
            let dir = cli
                .store
                .clone()
                .unwrap_or_else(|| PathBuf::from("folio-demo"));
            demo::demo(&dir, transactions, json)
        }
    }
}

/// The one grammar of a number in an argument (an id, a seq, a count): decimal digits only, so
/// `+7`, `1_000` or ` 7` are refused rather than read as 7 by one command and refused by another.
fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err("must be a number written with the digits 0-9 only".to_string());
    }
    text.parse()
        .map_err(|_| "is too large a number for this argument".to_string())
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        CliError::of(&error)
    }
}
