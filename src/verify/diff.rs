//! Comparing a state with a replay: rebuild the state of entries `1..=seq` into an in-memory
//! redb, then walk both table by table in key order, byte for byte, and report the first row
//! that differs.

use redb::{Key, ReadOnlyTable, ReadableTable, Value};

use super::VerifyError;
use crate::log::LogReader;
use crate::replay::{self, Applier};
use crate::state::{ReadTables, State, StateError, history, timeline};

/// The first difference between an expected (replayed) state and an actual one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDifference {
    pub table: &'static str,
    /// The row's key, as text.
    pub key: String,
    /// What differs: a row missing, a row extra, or its value.
    pub detail: String,
}

/// Rebuilds the state of entries `1..=seq_to` into a scratch state (`State::scratch`: a
/// temporary file, in memory bounded by redb's cache).
pub fn replay_state(
    log: &LogReader,
    seq_to: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<State, VerifyError> {
    let state = State::scratch()?;
    let mut applier = Applier::new(&state, log);
    replay::drive(log, 1, seq_to, &mut applier, progress)?;
    Ok(state)
}

/// Compares two snapshots of state, every table.
pub fn diff_states(
    expected: &ReadTables,
    actual: &ReadTables,
) -> Result<Option<StateDifference>, VerifyError> {
    let differences = [
        diff_table("meta", &expected.meta, &actual.meta)?,
        diff_table("ledgers", &expected.ledgers, &actual.ledgers)?,
        diff_table("volumes", &expected.volumes, &actual.volumes)?,
        diff_table("accounts", &expected.accounts, &actual.accounts)?,
        diff_table(
            "account_metadata",
            &expected.account_metadata,
            &actual.account_metadata,
        )?,
        diff_table("policies", &expected.policies, &actual.policies)?,
        diff_table("references", &expected.references, &actual.references)?,
        diff_table("transactions", &expected.transactions, &actual.transactions)?,
        diff_history(expected, actual)?,
        diff_timeline(expected, actual)?,
        diff_table("account_days", &expected.day_totals, &actual.day_totals)?,
        diff_table("consumers", &expected.consumers, &actual.consumers)?,
    ];
    Ok(differences.into_iter().flatten().next())
}

/// Compares the histories seq by seq: how they are cut into runs depends on how the entries
/// were grouped into write transactions, which a replay does differently from the ledger.
fn diff_history(
    expected: &ReadTables,
    actual: &ReadTables,
) -> Result<Option<StateDifference>, VerifyError> {
    let mut expected_seqs = history::all_seqs(&expected.history)?;
    let mut actual_seqs = history::all_seqs(&actual.history)?;
    loop {
        let (key, detail) = match (
            expected_seqs.next().transpose()?,
            actual_seqs.next().transpose()?,
        ) {
            (None, None) => return Ok(None),
            (Some(want), Some(have)) if want == have => continue,
            (Some(want), Some(have)) if want < have => (want, "row missing from state"),
            (Some(_), Some(have)) | (None, Some(have)) => (have, "row in state but not in replay"),
            (Some(want), None) => (want, "row missing from state"),
        };
        return Ok(Some(StateDifference {
            table: "history",
            key: format!("{key:?}"),
            detail: detail.to_string(),
        }));
    }
}

/// Compares the timelines entry by entry, in (ledger, account, hour, seq) order: how they are
/// cut into runs depends on how entries were grouped into write transactions.
fn diff_timeline(
    expected: &ReadTables,
    actual: &ReadTables,
) -> Result<Option<StateDifference>, VerifyError> {
    let mut expected_entries = timeline::TimelineEntries::new(&expected.timeline)?;
    let mut actual_entries = timeline::TimelineEntries::new(&actual.timeline)?;
    let order = |(ledger, account, hour, row): &timeline::TimelineEntry| {
        (ledger.clone(), account.clone(), *hour, row.seq)
    };
    let text = |(ledger, account, _, row): &timeline::TimelineEntry| {
        format!(
            "({ledger:?}, {account:?}, {}, {})",
            row.timestamp_us, row.seq
        )
    };
    loop {
        let want = expected_entries.next().transpose()?;
        let have = actual_entries.next().transpose()?;
        let (entry, detail) = match (&want, &have) {
            (None, None) => return Ok(None),
            (Some(want), Some(have)) if order(want) == order(have) => {
                if want.3 == have.3 {
                    continue;
                }
                (want, "value differs from replay")
            }
            (Some(want), Some(have)) if order(want) < order(have) => {
                (want, "row missing from state")
            }
            (Some(_), Some(have)) | (None, Some(have)) => (have, "row in state but not in replay"),
            (Some(want), None) => (want, "row missing from state"),
        };
        return Ok(Some(StateDifference {
            table: "account_timeline",
            key: text(entry),
            detail: detail.to_string(),
        }));
    }
}

fn diff_table<K: Key + 'static, V: Value + 'static>(
    table: &'static str,
    expected: &ReadOnlyTable<K, V>,
    actual: &ReadOnlyTable<K, V>,
) -> Result<Option<StateDifference>, VerifyError> {
    let mut expected_rows = expected.iter().map_err(StateError::from)?;
    let mut actual_rows = actual.iter().map_err(StateError::from)?;
    // Rows are compared as bytes, and a key is formatted only for the difference reported:
    // formatting every key cost more than the comparison.
    let text_of = |key: &redb::AccessGuard<'_, K>| format!("{:?}", key.value());
    loop {
        let want = expected_rows.next().transpose().map_err(StateError::from)?;
        let have = actual_rows.next().transpose().map_err(StateError::from)?;
        let (key, detail) = match (&want, &have) {
            (None, None) => return Ok(None),
            (Some((want_key, want_value)), Some((have_key, have_value))) => {
                let (want_key_value, have_key_value) = (want_key.value(), have_key.value());
                let want_key_bytes = K::as_bytes(&want_key_value);
                let have_key_bytes = K::as_bytes(&have_key_value);
                let (want_key_bytes, have_key_bytes) =
                    (want_key_bytes.as_ref(), have_key_bytes.as_ref());
                if want_key_bytes == have_key_bytes {
                    let (want_value, have_value) = (want_value.value(), have_value.value());
                    if V::as_bytes(&want_value).as_ref() == V::as_bytes(&have_value).as_ref() {
                        continue;
                    }
                    (text_of(want_key), "value differs from replay")
                } else if K::compare(want_key_bytes, have_key_bytes).is_lt() {
                    // Keys come in the same order from both: the smaller one is the odd one.
                    (text_of(want_key), "row missing from state")
                } else {
                    (text_of(have_key), "row in state but not in replay")
                }
            }
            (Some((want_key, _)), None) => (text_of(want_key), "row missing from state"),
            (None, Some((have_key, _))) => (text_of(have_key), "row in state but not in replay"),
        };
        return Ok(Some(StateDifference {
            table,
            key,
            detail: detail.to_string(),
        }));
    }
}
