//! Rendering of statements and trial balances (`docs/reports.md`, "Formats"): an aligned text
//! table, one JSON object, CSV (through `csv`), or an XLSX workbook (through
//! `rust_xlsxwriter`). Table, CSV and XLSX share one grid of rows, so they say the same thing;
//! JSON keeps amounts as canonical decimal strings, as every other JSON of the CLI does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use super::file::{write_replacing, write_text};
use super::journal::fixed;
use super::trial::Total;
use super::{ReportError, Statement, TrialBalance};
use crate::domain::model;

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    Xlsx,
}

/// Largest significant digits written to a spreadsheet as a number: spreadsheets keep 15
/// significant digits, so an amount with more is written as text rather than rounded. Trailing
/// zeros of a whole number are not significant: `100000000000000000000` is one digit, exact as
/// a double and shown exactly.
const XLSX_SIGNIFICANT_MAX: i128 = 999_999_999_999_999;

/// Rows of an xlsx sheet (Excel's limit), the header row included.
pub const XLSX_ROWS_MAX: usize = 1_048_576;

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    /// Text, some of it from users (references, metadata, account names): neutralised in CSV
    /// ([`csv_safe`]).
    Text(String),
    Id(u64),
    /// An amount and its asset (for the declared scale).
    Amount(Decimal, String),
    /// A total past the largest `Decimal`, and its asset.
    Total(Total, String),
    Empty,
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Id(id) => id.to_string(),
            Cell::Amount(amount, asset) => at_scale(*amount, asset),
            Cell::Total(total, asset) => {
                match model::parse_asset(asset).ok().and_then(|spec| spec.scale) {
                    Some(scale) => total.to_string_at_scale(scale),
                    None => total.to_string(),
                }
            }
            Cell::Empty => String::new(),
        }
    }

    /// The cell as CSV writes it: text neutralised against formula injection; numbers, which
    /// Folio writes itself (`-12.50`), as they are, so that a spreadsheet still reads them as
    /// numbers.
    fn csv_text(&self) -> String {
        match self {
            Cell::Text(text) => csv_safe(text),
            _ => self.text(),
        }
    }

    /// A trial balance's total: an amount where a `Decimal` holds it, else wide.
    fn total(total: &Total, asset: &str) -> Cell {
        match total.to_decimal() {
            Some(amount) => Cell::Amount(amount, asset.to_string()),
            None => Cell::Total(*total, asset.to_string()),
        }
    }
}

/// Characters that make a spreadsheet read a cell as a formula when they begin it (OWASP,
/// "CSV Injection"): `=`, `+`, `-`, `@`, tab and carriage return.
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell that a spreadsheet will not evaluate: one beginning with a formula trigger
/// gets a leading `'`, as OWASP recommends and spreadsheet exports do (a spreadsheet shows
/// the rest as text; the quote is visible in a plain reader). Other text is unchanged.
pub fn csv_safe(text: &str) -> String {
    if text.starts_with(FORMULA_TRIGGERS) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// An amount at its asset's declared scale (`12.50` of `EUR/2`); canonical without one.
pub fn at_scale(amount: Decimal, asset: &str) -> String {
    match model::parse_asset(asset).ok().and_then(|spec| spec.scale) {
        Some(scale) => fixed(amount, scale),
        None => amount.to_string(),
    }
}

/// A header and rows: what table, CSV and XLSX are made from.
struct Grid {
    /// Lines above the table (the table format only).
    title: Vec<String>,
    sheet: &'static str,
    header: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
}

/// Writes a statement in `format` to `out` (stdout when `None`; XLSX needs a file).
pub fn write_statement(
    statement: &Statement,
    format: Format,
    out: Option<&Path>,
) -> Result<(), ReportError> {
    match format {
        Format::Json => write_text(out, &format!("{}\n", statement_json(statement))),
        _ => write_grid(&statement_grid(statement), format, out),
    }
}

/// Writes a trial balance in `format` to `out` (stdout when `None`; XLSX needs a file).
pub fn write_trial_balance(
    trial: &TrialBalance,
    format: Format,
    out: Option<&Path>,
) -> Result<(), ReportError> {
    match format {
        Format::Json => write_text(out, &format!("{}\n", trial_json(trial))),
        _ => write_grid(&trial_grid(trial), format, out),
    }
}

fn amounts<T: ToString>(map: &BTreeMap<String, T>) -> BTreeMap<&String, String> {
    map.iter()
        .map(|(asset, amount)| (asset, amount.to_string()))
        .collect()
}

/// A decimal's canonical string, `12.5` for 12.50: JSON says an amount the same way however
/// it was summed.
fn canonical(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// The statement's JSON (`docs/reports.md`, "statement").
pub fn statement_json(statement: &Statement) -> Value {
    let assets: Vec<Value> = statement
        .assets
        .iter()
        .map(|part| {
            let movements: Vec<Value> = part
                .movements
                .iter()
                .map(|movement| {
                    json!({
                        "id": movement.id,
                        "timestamp": movement.timestamp.to_rfc3339(),
                        "inserted_at": movement.inserted_at.to_rfc3339(),
                        "counterparties": movement.counterparties,
                        "in": canonical(movement.amount_in),
                        "out": canonical(movement.amount_out),
                        "balance": canonical(movement.balance),
                        "reference": movement.reference,
                        "reverts": movement.reverts,
                        "metadata": movement.metadata,
                    })
                })
                .collect();
            json!({
                "asset": part.asset,
                "opening": canonical(part.opening),
                "in": canonical(part.total_in),
                "out": canonical(part.total_out),
                "closing": canonical(part.closing),
                "movements": movements,
            })
        })
        .collect();
    json!({
        "ledger": statement.ledger,
        "account": statement.account,
        "from": statement.from.to_rfc3339(),
        "to": statement.to.to_rfc3339(),
        "head_seq": statement.head_seq,
        "assets": assets,
    })
}

/// The trial balance's JSON (`docs/reports.md`, "trial-balance").
pub fn trial_json(trial: &TrialBalance) -> Value {
    let accounts: BTreeMap<&String, BTreeMap<&String, String>> = trial
        .accounts
        .iter()
        .map(|(account, by_asset)| (account, amounts(by_asset)))
        .collect();
    json!({
        "ledger": trial.ledger,
        "at": trial.at.map(|at| at.to_rfc3339()),
        "prefix": trial.prefix,
        "head_seq": trial.head_seq,
        "accounts": accounts,
        "totals": amounts(&trial.totals),
    })
}

const STATEMENT_HEADER: &[&str] = &[
    "kind",
    "asset",
    "id",
    "timestamp",
    "counterparties",
    "in",
    "out",
    "balance",
    "reference",
    "reverts",
    "metadata",
];

fn statement_grid(statement: &Statement) -> Grid {
    let mut rows = Vec::new();
    for part in &statement.assets {
        let amount = |value: Decimal| Cell::Amount(value, part.asset.clone());
        let asset = || Cell::Text(part.asset.clone());
        rows.push(vec![
            Cell::Text("opening".into()),
            asset(),
            Cell::Empty,
            Cell::Text(statement.from.to_rfc3339()),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
            amount(part.opening),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
        ]);
        for movement in &part.movements {
            let metadata = serde_json::to_string(&movement.metadata).unwrap_or_default();
            rows.push(vec![
                Cell::Text("movement".into()),
                asset(),
                Cell::Id(movement.id),
                Cell::Text(movement.timestamp.to_rfc3339()),
                Cell::Text(movement.counterparties.join(" ")),
                amount(movement.amount_in),
                amount(movement.amount_out),
                amount(movement.balance),
                Cell::Text(movement.reference.clone().unwrap_or_default()),
                movement.reverts.map_or(Cell::Empty, Cell::Id),
                if movement.metadata.is_empty() {
                    Cell::Empty
                } else {
                    Cell::Text(metadata)
                },
            ]);
        }
        rows.push(vec![
            Cell::Text("closing".into()),
            asset(),
            Cell::Empty,
            Cell::Text(statement.to.to_rfc3339()),
            Cell::Empty,
            amount(part.total_in),
            amount(part.total_out),
            amount(part.closing),
            Cell::Empty,
            Cell::Empty,
            Cell::Empty,
        ]);
    }
    let title = vec![
        format!(
            "Statement of {} in ledger {}: from {} (inclusive) to {} (exclusive), log head {}",
            statement.account, statement.ledger, statement.from, statement.to, statement.head_seq
        ),
        "checked: opening + in - out = closing, in every asset".to_string(),
        String::new(),
    ];
    Grid {
        title,
        sheet: "Statement",
        header: STATEMENT_HEADER,
        rows,
    }
}

fn trial_grid(trial: &TrialBalance) -> Grid {
    let mut rows = Vec::new();
    for (account, by_asset) in &trial.accounts {
        for (asset, balance) in by_asset {
            rows.push(vec![
                Cell::Text("balance".into()),
                Cell::Text(account.clone()),
                Cell::Text(asset.clone()),
                Cell::Amount(*balance, asset.clone()),
            ]);
        }
    }
    for (asset, total) in &trial.totals {
        rows.push(vec![
            Cell::Text("total".into()),
            Cell::Empty,
            Cell::Text(asset.clone()),
            Cell::total(total, asset),
        ]);
    }
    let at = trial
        .at
        .map_or_else(|| "every transaction".to_string(), |at| format!("at {at}"));
    let scope = if trial.prefix.is_empty() {
        "all accounts (totals are zero)".to_string()
    } else {
        format!(
            "accounts under {:?} (totals: their net position)",
            trial.prefix
        )
    };
    Grid {
        title: vec![
            format!(
                "Trial balance of ledger {}, {at}, {scope}, log head {}",
                trial.ledger, trial.head_seq
            ),
            String::new(),
        ],
        sheet: "Trial balance",
        header: &["kind", "account", "asset", "balance"],
        rows,
    }
}

fn write_grid(grid: &Grid, format: Format, out: Option<&Path>) -> Result<(), ReportError> {
    match format {
        Format::Xlsx => {
            let path = out.ok_or_else(|| ReportError::InvalidInput {
                field: "format",
                value: "xlsx".into(),
                reason: "needs --out FILE (a workbook is not written to a terminal)",
            })?;
            write_xlsx(grid, path)
        }
        Format::Csv => write_text(out, &csv_text(grid, out)?),
        Format::Table | Format::Json => write_text(out, &table_text(grid)),
    }
}

fn table_text(grid: &Grid) -> String {
    let cells: Vec<Vec<String>> = grid
        .rows
        .iter()
        .map(|row| row.iter().map(Cell::text).collect())
        .collect();
    let mut widths: Vec<usize> = grid.header.iter().map(|title| title.len()).collect();
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text: String = grid.title.iter().map(|line| format!("{line}\n")).collect();
    let header: Vec<String> = grid
        .header
        .iter()
        .map(|title| title.to_uppercase())
        .collect();
    for row in std::iter::once(&header).chain(&cells) {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(padded.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn csv_text(grid: &Grid, out: Option<&Path>) -> Result<String, ReportError> {
    let error = |detail: String| ReportError::Write {
        path: out.map_or_else(|| PathBuf::from("<stdout>"), Path::to_path_buf),
        source: std::io::Error::other(detail),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(grid.header)
        .map_err(|e| error(e.to_string()))?;
    for row in &grid.rows {
        writer
            .write_record(row.iter().map(Cell::csv_text))
            .map_err(|e| error(e.to_string()))?;
    }
    let bytes = writer.into_inner().map_err(|e| error(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| error(e.to_string()))
}

/// The spreadsheet number format of an asset: its declared decimals, else general.
fn number_format(asset: &str) -> String {
    match model::parse_asset(asset).ok().and_then(|spec| spec.scale) {
        Some(0) => "0".to_string(),
        Some(scale) => format!("0.{}", "0".repeat(scale as usize)),
        None => "General".to_string(),
    }
}

/// Whether `amount` is a spreadsheet number that shows exactly: at most 15 significant digits
/// (a double holds any such decimal so that 15 digits give it back).
fn exact_in_a_spreadsheet(amount: Decimal) -> bool {
    let mut significant = amount.normalize().mantissa().abs();
    while significant != 0 && significant % 10 == 0 {
        significant /= 10;
    }
    significant <= XLSX_SIGNIFICANT_MAX
}

/// Refuses a sheet past Excel's rows before anything is built or written.
fn check_xlsx_rows(grid: &Grid) -> Result<(), ReportError> {
    if grid.rows.len() >= XLSX_ROWS_MAX {
        return Err(ReportError::TooLarge {
            what: "xlsx sheet (data rows below its header)",
            max: XLSX_ROWS_MAX - 1,
        });
    }
    Ok(())
}

fn write_xlsx(grid: &Grid, path: &Path) -> Result<(), ReportError> {
    use rust_xlsxwriter::{Format as XlsxFormat, Workbook, XlsxError};
    check_xlsx_rows(grid)?;
    let error = |error: XlsxError| ReportError::Xlsx {
        path: path.to_path_buf(),
        detail: error.to_string(),
    };
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name(grid.sheet).map_err(error)?;
    let bold = XlsxFormat::new().set_bold();
    for (col, title) in (0u16..).zip(grid.header) {
        sheet
            .write_string_with_format(0, col, *title, &bold)
            .map_err(error)?;
    }
    let mut formats: BTreeMap<String, XlsxFormat> = BTreeMap::new();
    for (row, cells) in (1u32..).zip(&grid.rows) {
        for (col, cell) in (0u16..).zip(cells) {
            match cell {
                Cell::Empty => {}
                Cell::Id(id) => {
                    // A u32 is exact as a spreadsheet number; a larger id goes as text.
                    match u32::try_from(*id) {
                        Ok(small) => sheet.write_number(row, col, small).map_err(error)?,
                        Err(_) => sheet
                            .write_string(row, col, id.to_string())
                            .map_err(error)?,
                    };
                }
                // A string cell is never evaluated: text needs no neutralising here.
                Cell::Text(text) => {
                    sheet.write_string(row, col, text.as_str()).map_err(error)?;
                }
                Cell::Total(..) => {
                    sheet.write_string(row, col, cell.text()).map_err(error)?;
                }
                Cell::Amount(amount, asset) => {
                    let exact = exact_in_a_spreadsheet(*amount);
                    match amount.to_f64().filter(|_| exact) {
                        Some(number) => {
                            let format = formats.entry(asset.clone()).or_insert_with(|| {
                                XlsxFormat::new().set_num_format(number_format(asset))
                            });
                            sheet
                                .write_number_with_format(row, col, number, format)
                                .map_err(error)?;
                        }
                        None => {
                            sheet.write_string(row, col, cell.text()).map_err(error)?;
                        }
                    }
                }
            }
        }
    }
    sheet.set_freeze_panes(1, 0).map_err(error)?;
    sheet.autofit();
    write_replacing(path, |file| workbook.save_to_writer(file).map_err(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn xlsx_counts_significant_digits_so_an_exact_large_amount_stays_a_number() {
        let exact = |text: &str| exact_in_a_spreadsheet(Decimal::from_str(text).unwrap());
        assert!(exact("100000000000000000000"));
        assert!(exact("-123456789012345000000"));
        assert!(exact("999999999999999"));
        assert!(exact("0.000000000000000000000000001"));
        assert!(exact("12.50"));
        assert!(!exact("1000000000000001"));
        assert!(!exact("100000000000000000001"));
        assert!(!exact("0.1234567890123456"));
    }

    #[test]
    fn an_xlsx_sheet_past_excels_rows_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trial.xlsx");
        // Empty rows cost nothing; the last one holds a cell past Excel's last row.
        let mut rows = vec![Vec::new(); XLSX_ROWS_MAX - 1];
        rows.push(vec![Cell::Text("balance".into())]);
        let grid = Grid {
            title: Vec::new(),
            sheet: "Trial balance",
            header: &["kind"],
            rows,
        };
        let error = write_xlsx(&grid, &path).unwrap_err();
        assert_eq!(error.code(), "REPORT_TOO_LARGE", "{error}");
        assert!(error.is_rejection());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // One row fewer is a sheet Excel takes.
        let mut grid = grid;
        grid.rows.remove(0);
        write_xlsx(&grid, &path).unwrap();
        assert!(path.exists());
    }
}
