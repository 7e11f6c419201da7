//! A ledger as an hledger / ledger-cli journal (`docs/reports.md`, "Journal"): one transaction
//! per transaction entry in log order (reverts are transactions of their own), dated by the
//! UTC day of the effective timestamp, each folio posting written as two journal postings
//! (destination +amount, source -amount). Amounts are written exactly, at the asset's declared
//! scale; folio's asset names are kept as commodity symbols (quoted when hledger needs it),
//! so that `hledger balance` reproduces `folio balances` account for account.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::PathBuf;

use rust_decimal::Decimal;

use super::{ReportError, ReportSink, walk};
use crate::domain::entry::{EntryBody, TransactionEntry};
use crate::domain::model::{self, Metadata, Timestamp};
use crate::domain::request::hex;
use crate::log::{Entry, Log, LogReader};
use crate::replay;

/// What a journal export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalSummary {
    /// Journal transactions written (posted transactions and reverts).
    pub transactions: u64,
    /// The log's head the journal covers.
    pub head_seq: u64,
}

/// Writes ledger `ledger_name` of `log` as a journal to `out`, then flushes it. Two walks of
/// the log: the first gathers the final metadata of the transactions whose metadata changed
/// after they were posted (usually few), the second writes every transaction.
pub fn write_journal<W: Write>(
    log: &LogReader,
    ledger_name: &str,
    out: W,
) -> Result<JournalSummary, ReportError> {
    model::check_ledger_name(ledger_name).map_err(crate::Error::from)?;
    let mut changes = MetadataChanges {
        log,
        ledger: ledger_name,
        changed: BTreeMap::new(),
        assets: BTreeSet::new(),
    };
    walk(log, &mut changes)?;
    let mut writer = JournalWriter {
        ledger: ledger_name,
        changed: changes.changed,
        out,
        transactions: 0,
        text: String::new(),
    };
    let head = log.head();
    writer.header(&head, &changes.assets)?;
    let head_seq = walk(log, &mut writer)?;
    writer.out.flush().map_err(write_error)?;
    Ok(JournalSummary {
        transactions: writer.transactions,
        head_seq,
    })
}

/// Writes a store's ledger as a journal without changing the store, as `export --format
/// events` does: opens the log for reading beside a writer that may hold the store (up to the
/// durable head it published; a torn tail is neither cut nor written) and needs no state.
pub fn write_store_journal<W: Write>(
    vfs: std::sync::Arc<dyn crate::log::vfs::Vfs>,
    dir: &std::path::Path,
    ledger_name: &str,
    out: W,
) -> Result<JournalSummary, ReportError> {
    let wait = crate::store::READERS_WAIT_DEFAULT;
    let _pin = crate::store::pin_for_reading(&*vfs, dir, wait).map_err(crate::Error::from)?;
    let log = Log::open_reader(vfs, dir, 0).map_err(crate::Error::from)?;
    write_journal(&log, ledger_name, out)
}

fn write_error(source: io::Error) -> ReportError {
    ReportError::Write {
        path: PathBuf::from("<journal output>"),
        source,
    }
}

/// First walk: the final metadata of every transaction changed after it was posted, and the
/// assets the ledger uses (for the commodity directives).
struct MetadataChanges<'a> {
    log: &'a LogReader,
    ledger: &'a str,
    changed: BTreeMap<u64, Metadata>,
    assets: BTreeSet<String>,
}

impl MetadataChanges<'_> {
    /// The transaction's metadata so far: its latest change, or as it was posted.
    fn current(&mut self, id: u64) -> Result<&mut Metadata, ReportError> {
        if !self.changed.contains_key(&id) {
            let body = replay::decode_body(&self.log.read(id).map_err(crate::Error::from)?)?;
            let EntryBody::Transaction(tx) = body else {
                return Err(ReportError::Inconsistent {
                    detail: format!("a metadata change names entry {id}, not a transaction"),
                });
            };
            self.changed.insert(id, tx.metadata);
        }
        Ok(self.changed.entry(id).or_default())
    }
}

impl ReportSink for MetadataChanges<'_> {
    fn entry(&mut self, _entry: &Entry, body: &EntryBody) -> Result<(), ReportError> {
        if body.ledger() != Some(self.ledger) {
            return Ok(());
        }
        match body {
            EntryBody::Transaction(tx) => {
                for posting in &tx.postings {
                    if !self.assets.contains(&posting.asset) {
                        self.assets.insert(posting.asset.clone());
                    }
                }
            }
            EntryBody::TransactionMetadataSet(set) => {
                self.current(set.id)?.extend(set.metadata.clone());
            }
            EntryBody::TransactionMetadataDeleted(deleted) => {
                self.current(deleted.id)?.remove(&deleted.key);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Second walk: writes each transaction of the ledger.
struct JournalWriter<'a, W: Write> {
    ledger: &'a str,
    changed: BTreeMap<u64, Metadata>,
    out: W,
    transactions: u64,
    /// One transaction's text, reused.
    text: String,
}

impl<W: Write> JournalWriter<'_, W> {
    fn header(&mut self, head: &crate::Head, assets: &BTreeSet<String>) -> Result<(), ReportError> {
        let mut text = format!(
            "; folio journal of ledger {}, log head {}:{}\n\
             ; dates are UTC days of effective timestamps; folio-timestamp has the instant\n\
             decimal-mark .\n\n",
            self.ledger,
            head.seq,
            hex(&head.block_hash)
        );
        for asset in assets {
            let symbol = commodity_symbol(asset);
            // A declared scale fixes the display precision; without one hledger infers it.
            // hledger wants a decimal mark in the sample amount, even at scale 0 (`1000.`).
            match model::parse_asset(asset).ok().and_then(|spec| spec.scale) {
                Some(0) => text.push_str(&format!("commodity 1000. {symbol}\n")),
                Some(scale) => text.push_str(&format!(
                    "commodity {} {symbol}\n",
                    fixed(Decimal::new(1000, 0), scale)
                )),
                None => text.push_str(&format!("commodity {symbol}\n")),
            }
        }
        text.push('\n');
        self.out.write_all(text.as_bytes()).map_err(write_error)
    }

    fn transaction(&mut self, id: u64, tx: &TransactionEntry) -> Result<(), ReportError> {
        let metadata = self.changed.get(&id).unwrap_or(&tx.metadata);
        let text = &mut self.text;
        text.clear();
        let description = match tx.reverts {
            Some(original) => format!("tx {id} reverts tx {original}"),
            None => format!("tx {id}"),
        };
        text.push_str(&format!(
            "{} * {description}\n",
            journal_date(Timestamp(tx.timestamp))
        ));
        text.push_str(&format!("    ; folio-id: {id}\n"));
        text.push_str(&format!(
            "    ; folio-timestamp: {}\n",
            Timestamp(tx.timestamp)
        ));
        if let Some(reference) = &tx.reference {
            text.push_str(&format!(
                "    ; folio-reference: {}\n",
                tag_value(reference)
            ));
        }
        if let Some(original) = tx.reverts {
            text.push_str(&format!("    ; folio-reverts: {original}\n"));
        }
        for (key, value) in metadata {
            text.push_str(&metadata_line(key, value));
        }
        for posting in &tx.postings {
            let amount = journal_amount(posting.amount.0, &posting.asset);
            text.push_str(&format!("    {}  {amount}\n", posting.destination));
            text.push_str(&format!("    {}  -{amount}\n", posting.source));
        }
        text.push('\n');
        self.out
            .write_all(self.text.as_bytes())
            .map_err(write_error)?;
        self.transactions += 1;
        Ok(())
    }
}

impl<W: Write> ReportSink for JournalWriter<'_, W> {
    fn entry(&mut self, entry: &Entry, body: &EntryBody) -> Result<(), ReportError> {
        match body {
            EntryBody::Transaction(tx) if tx.ledger == self.ledger => {
                self.transaction(entry.seq, tx)
            }
            _ => Ok(()),
        }
    }
}

/// The earliest date ledger-cli reads ("Year is out of valid range: 1400..9999"); hledger
/// reads it too. The ledger's own years go back to 0000 (`Timestamp::MIN`).
const JOURNAL_DATE_MIN: &str = "1400-01-01";

/// A transaction's journal date: the UTC day of its effective timestamp, or
/// [`JOURNAL_DATE_MIN`] for a day before it, so that both hledger and ledger-cli read every
/// journal the ledger can hold (the instant stays exact in the `folio-timestamp` tag). The
/// years after 1400 are up to 9999 (`Timestamp::MAX`), which both read.
fn journal_date(timestamp: Timestamp) -> String {
    let instant = timestamp.to_rfc3339();
    let day = instant.get(..10).unwrap_or(&instant);
    // `YYYY-MM-DD` compares as text in date order (the ledger's years have 4 digits).
    if day < JOURNAL_DATE_MIN {
        JOURNAL_DATE_MIN.to_string()
    } else {
        day.to_string()
    }
}

/// The commodity symbol of an asset: the asset itself, bare when it is letters only (`USD`),
/// else in double quotes (`"USD/2"`, `"B2B"`), which is how hledger takes a symbol holding
/// digits or `/`. Asset grammar (`[A-Z][A-Z0-9]*(/[0-9]+)?`) never needs escaping inside.
pub fn commodity_symbol(asset: &str) -> String {
    if asset.bytes().all(|byte| byte.is_ascii_alphabetic()) {
        asset.to_string()
    } else {
        format!("\"{asset}\"")
    }
}

/// An amount at exactly `scale` decimal places (it never has more: the ledger refuses them).
pub fn fixed(amount: Decimal, scale: u32) -> String {
    let mut scaled = amount;
    if scaled.scale() < scale {
        scaled.rescale(scale);
    }
    scaled.to_string()
}

/// `12.50 "EUR/2"`: the amount at the asset's declared scale (canonical without one).
fn journal_amount(amount: Decimal, asset: &str) -> String {
    let text = match model::parse_asset(asset).ok().and_then(|spec| spec.scale) {
        Some(scale) => fixed(amount, scale),
        None => amount.to_string(),
    };
    format!("{text} {}", commodity_symbol(asset))
}

/// Whether a tag name or value can be written as it is: hledger ends a tag name at `:` or
/// whitespace and a value at `,` or the end of the line.
fn plain(text: &str, is_name: bool) -> bool {
    !text.is_empty()
        && text.trim() == text
        && !text.chars().any(|c| {
            c.is_control() || c == ',' || c == '"' || (is_name && (c == ':' || c.is_whitespace()))
        })
}

/// A tag value: as it is when plain, else a JSON string with `,` escaped as `\u002c` (still
/// valid JSON, and one tag value to hledger), which gives the exact value back.
fn tag_value(value: &str) -> String {
    if plain(value, false) {
        return value.to_string();
    }
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace(',', "\\u002c")
}

/// One metadata pair as a comment line of the transaction: a tag `key: value` when the key
/// can be a tag name, else a plain comment `folio-metadata ["key","value"]`, a JSON array with
/// every `:` escaped as `\u003a`. hledger and ledger-cli both take `word:` in a comment as a
/// tag, so the line holds no `:` at all (a JSON object would need one between key and value),
/// and the array gives the exact pair back.
fn metadata_line(key: &str, value: &str) -> String {
    if plain(key, true) {
        format!("    ; {key}: {}\n", tag_value(value))
    } else {
        let pair = serde_json::json!([key, value])
            .to_string()
            .replace(':', "\\u003a");
        format!("    ; folio-metadata {pair}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts_take_the_declared_scale_and_symbols_quote_digits() {
        let amount = Decimal::from_str("12.5").unwrap();
        assert_eq!(journal_amount(amount, "EUR/2"), "12.50 \"EUR/2\"");
        assert_eq!(journal_amount(amount, "USD"), "12.5 USD");
        assert_eq!(journal_amount(Decimal::from(7), "JPY/0"), "7 \"JPY/0\"");
        assert_eq!(journal_amount(amount, "B2B"), "12.5 \"B2B\"");
    }

    #[test]
    fn awkward_metadata_stays_one_exact_tag_or_a_comment() {
        assert_eq!(metadata_line("till", "till:3"), "    ; till: till:3\n");
        assert_eq!(
            metadata_line("note", "a, b"),
            "    ; note: \"a\\u002c b\"\n"
        );
        assert_eq!(
            metadata_line("my key", "v"),
            "    ; folio-metadata [\"my key\",\"v\"]\n"
        );
        assert_eq!(
            metadata_line("a:b", "c:d"),
            "    ; folio-metadata [\"a\\u003ab\",\"c\\u003ad\"]\n"
        );
    }

    #[test]
    fn a_day_before_1400_is_written_as_the_first_day_ledger_cli_reads() {
        let day = |text: &str| journal_date(Timestamp::parse(text).unwrap());
        assert_eq!(day("0001-01-01T00:00:00Z"), "1400-01-01");
        assert_eq!(day("1399-12-31T23:59:59Z"), "1400-01-01");
        assert_eq!(day("1400-01-01T00:00:00Z"), "1400-01-01");
        assert_eq!(day("2026-11-22T23:00:00-02:00"), "2026-11-23");
        assert_eq!(day("9999-12-31T23:59:59Z"), "9999-12-31");
        assert_eq!(journal_date(Timestamp::MIN), "1400-01-01");
    }
}
