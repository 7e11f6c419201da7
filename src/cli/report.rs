//! Report commands (`docs/reports.md`): `statement`, `trial-balance`, and `export --format
//! journal`. They parse flags, open the store and hand over to [`crate::report`], which builds,
//! checks and renders; nothing here computes a balance.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::output::CliError;
use crate::Ledger;
use crate::log::vfs::RealFs;
use crate::report::render::{self, Format};
use crate::report::{self as reports, ReportError, StatementRequest};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ReportFormat {
    /// Aligned columns.
    Table,
    /// One JSON object.
    Json,
    /// CSV with a header row.
    Csv,
    /// An Excel workbook (needs --out).
    Xlsx,
}

/// `folio statement`.
#[derive(Debug, clap::Args)]
pub(super) struct StatementArgs {
    #[arg(long)]
    ledger: String,
    account: String,
    /// Start, inclusive: RFC 3339, or a date YYYY-MM-DD (midnight UTC).
    #[arg(long)]
    from: String,
    /// End, exclusive: RFC 3339, or a date YYYY-MM-DD (midnight UTC).
    #[arg(long)]
    to: String,
    /// Only this asset.
    #[arg(long)]
    asset: Option<String>,
    /// Output format (default: table, or json with --json).
    #[arg(long, value_enum)]
    format: Option<ReportFormat>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `folio trial-balance`.
#[derive(Debug, clap::Args)]
pub(super) struct TrialBalanceArgs {
    #[arg(long)]
    ledger: String,
    /// Count transactions with an effective timestamp at or before T (default: all).
    #[arg(long)]
    at: Option<String>,
    /// Only accounts whose address starts with P.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Output format (default: table, or json with --json).
    #[arg(long, value_enum)]
    format: Option<ReportFormat>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl From<ReportError> for CliError {
    fn from(error: ReportError) -> Self {
        CliError {
            exit: if error.is_rejection() { 1 } else { 2 },
            code: error.code().to_string(),
            message: error.to_string(),
        }
    }
}

fn format_of(
    format: Option<ReportFormat>,
    json: bool,
    out: Option<&Path>,
) -> Result<Format, CliError> {
    let format = match format {
        Some(ReportFormat::Table) => Format::Table,
        Some(ReportFormat::Json) => Format::Json,
        Some(ReportFormat::Csv) => Format::Csv,
        Some(ReportFormat::Xlsx) => Format::Xlsx,
        None if json => Format::Json,
        None => Format::Table,
    };
    if format == Format::Xlsx && out.is_none() {
        return Err(CliError::usage("--format xlsx needs --out FILE"));
    }
    Ok(format)
}

/// A report written to stdout whose reader went away (`| head`) is not an error.
fn written(result: Result<(), ReportError>) -> Result<u8, CliError> {
    match result {
        Err(error) if error.is_broken_pipe() => Ok(0),
        Err(error) => Err(error.into()),
        Ok(()) => Ok(0),
    }
}

pub(super) fn statement(store: &Path, args: StatementArgs, json: bool) -> Result<u8, CliError> {
    let format = format_of(args.format, json, args.out.as_deref())?;
    let request = StatementRequest {
        ledger: args.ledger,
        account: args.account,
        from: reports::parse_time("from", &args.from)?,
        to: reports::parse_time("to", &args.to)?,
        asset: args.asset,
    };
    let ledger = Ledger::open_reader(store)?;
    let statement = reports::statement(&ledger, &request);
    ledger.close()?;
    written(render::write_statement(
        &statement?,
        format,
        args.out.as_deref(),
    ))
}

pub(super) fn trial_balance(
    store: &Path,
    args: TrialBalanceArgs,
    json: bool,
) -> Result<u8, CliError> {
    let format = format_of(args.format, json, args.out.as_deref())?;
    let at = match &args.at {
        Some(text) => Some(reports::parse_time("at", text)?),
        None => None,
    };
    let ledger = Ledger::open_reader(store)?;
    let trial = reports::trial_balance(&ledger, &args.ledger, at, &args.prefix);
    ledger.close()?;
    written(render::write_trial_balance(
        &trial?,
        format,
        args.out.as_deref(),
    ))
}

/// `folio export --format journal`: the ledger's journal on stdout, or in `out`, which is
/// replaced only once the whole journal is written.
pub(super) fn journal(
    store: &Path,
    ledger: Option<&str>,
    since: u64,
    out: Option<&Path>,
) -> Result<u8, CliError> {
    let Some(ledger) = ledger else {
        return Err(CliError::usage("--format journal needs --ledger L"));
    };
    if since != 0 {
        return Err(CliError::usage(
            "--since is for --format events; a journal holds the whole ledger",
        ));
    }
    let written = match out {
        Some(path) => reports::file::write_replacing(path, |file| {
            match reports::journal::write_store_journal(Arc::new(RealFs), store, ledger, file) {
                Ok(_) => Ok(()),
                // The journal writer names no file; this one is --out.
                Err(ReportError::Write { source, .. }) => Err(ReportError::Write {
                    path: path.to_path_buf(),
                    source,
                }),
                Err(error) => Err(error),
            }
        }),
        None => {
            let stdout = std::io::BufWriter::new(std::io::stdout().lock());
            reports::journal::write_store_journal(Arc::new(RealFs), store, ledger, stdout).map(drop)
        }
    };
    match written {
        Ok(()) => Ok(0),
        Err(error) if error.is_broken_pipe() => Ok(0),
        Err(error) => Err(error.into()),
    }
}
