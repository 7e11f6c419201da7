//! Comparing a state with a replay: rebuild the state of entries `1..=seq` into an in-memory
//! redb, then walk both table by table in key order, byte for byte, and report the first row
//! that differs.

use redb::{Key, ReadOnlyTable, ReadableTable, Value};

use crate::Error;
use crate::log::Log;
use crate::replay;
use crate::state::catchup::Applier;
use crate::state::{ReadTables, State, StateError};

/// The first difference between an expected (replayed) state and an actual one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDifference {
    pub table: &'static str,
    /// The row's key, as text.
    pub key: String,
    /// What differs: a row missing, a row extra, or its value.
    pub detail: String,
}

/// Rebuilds, in memory, the state of entries `1..=seq_to`.
pub fn replay_state(log: &Log, seq_to: u64, progress: &mut dyn FnMut(u64)) -> Result<State, Error> {
    let state = State::in_memory()?;
    let mut applier = Applier::new(&state);
    replay::drive(log, 1, seq_to, &mut applier, progress)?;
    Ok(state)
}

/// Compares two snapshots of state, every table.
pub fn diff_states(
    expected: &ReadTables,
    actual: &ReadTables,
) -> Result<Option<StateDifference>, Error> {
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
        diff_table("history", &expected.history, &actual.history)?,
        diff_table("consumers", &expected.consumers, &actual.consumers)?,
    ];
    Ok(differences.into_iter().flatten().next())
}

type Row = (Vec<u8>, Vec<u8>, String);

fn next_row<K: Key + 'static, V: Value + 'static>(
    rows: &mut redb::Range<'_, K, V>,
) -> Result<Option<Row>, StateError> {
    let Some(item) = rows.next() else {
        return Ok(None);
    };
    let (key, value) = item?;
    let key_value = key.value();
    let key_bytes = K::as_bytes(&key_value).as_ref().to_vec();
    let value_bytes = V::as_bytes(&value.value()).as_ref().to_vec();
    Ok(Some((key_bytes, value_bytes, format!("{key_value:?}"))))
}

fn diff_table<K: Key + 'static, V: Value + 'static>(
    table: &'static str,
    expected: &ReadOnlyTable<K, V>,
    actual: &ReadOnlyTable<K, V>,
) -> Result<Option<StateDifference>, Error> {
    let mut expected_rows = expected.iter().map_err(StateError::from)?;
    let mut actual_rows = actual.iter().map_err(StateError::from)?;
    loop {
        let difference = match (next_row(&mut expected_rows)?, next_row(&mut actual_rows)?) {
            (None, None) => return Ok(None),
            (Some(want), Some(have)) if want.0 == have.0 && want.1 == have.1 => continue,
            (Some(want), Some(have)) if want.0 == have.0 => (want.2, "value differs from replay"),
            (Some(want), Some(have)) => {
                // Keys are in the same order in both: the smaller one is the odd one out.
                if want.0 < have.0 {
                    (want.2, "row missing from state")
                } else {
                    (have.2, "row in state but not in replay")
                }
            }
            (Some(want), None) => (want.2, "row missing from state"),
            (None, Some(have)) => (have.2, "row in state but not in replay"),
        };
        let (key, detail) = difference;
        return Ok(Some(StateDifference {
            table,
            key,
            detail: detail.to_string(),
        }));
    }
}
