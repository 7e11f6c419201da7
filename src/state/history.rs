//! Accounts' histories as runs (state schema 2): the seqs of the transactions that touched an
//! account, written as one row per account per write transaction instead of one row per
//! transaction and account. A group of a thousand transactions to one till writes one row
//! for the till, not a thousand.
//!
//! A run's key is `(ledger, account, first seq)`; its value is the LEB128 deltas from each seq
//! to the next (empty for a run of one). Runs of one account never overlap, and a later run's
//! first seq is above every seq of the earlier ones, so the runs in key order are the history
//! in seq order. How the seqs are cut into runs depends on how entries were grouped into write
//! transactions, so two states are compared by their seqs ([`diff_runs`]), not by their rows.

use std::collections::HashMap;

use redb::{ReadableTable, Table};

use super::error::StateError;

/// The history table's key: (ledger, account, the run's first seq).
pub type RunKey<'a> = (&'a str, &'a str, u64);

/// Seqs appended to accounts' histories during one write transaction, not yet written.
#[derive(Debug, Default)]
pub struct PendingRuns {
    /// ledger -> account -> its new seqs, ascending. Nested so that a push looks both names
    /// up borrowed, without building a key.
    runs: HashMap<String, HashMap<String, Vec<u64>>>,
}

impl PendingRuns {
    /// Appends `seq` to the account's history; seqs come in ascending order.
    pub fn push(&mut self, ledger: &str, account: &str, seq: u64) {
        if !self.runs.contains_key(ledger) {
            self.runs.insert(ledger.to_string(), HashMap::new());
        }
        let Some(accounts) = self.runs.get_mut(ledger) else {
            unreachable!("the ledger's map was just made");
        };
        match accounts.get_mut(account) {
            Some(seqs) => {
                debug_assert!(seqs.last().is_none_or(|last| *last < seq));
                seqs.push(seq);
            }
            None => {
                accounts.insert(account.to_string(), vec![seq]);
            }
        }
    }

    /// Forgets every pending seq: for a write transaction that was dropped.
    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// Writes one run per account and forgets them.
    pub fn flush(
        &mut self,
        table: &mut Table<'_, RunKey<'static>, &'static [u8]>,
    ) -> Result<(), StateError> {
        for (ledger, accounts) in self.runs.drain() {
            for (account, seqs) in accounts {
                let Some(&first) = seqs.first() else {
                    continue;
                };
                let key = (ledger.as_str(), account.as_str(), first);
                let replaced = table.insert(key, &encode_run(&seqs)[..])?;
                // Every seq is pushed once, in order: a run starting at a seq some run already
                // starts at means an entry was applied twice.
                assert!(
                    replaced.is_none(),
                    "two history runs of {account} in {ledger} start at seq {first}"
                );
            }
        }
        Ok(())
    }
}

/// A run's value: the LEB128 deltas between consecutive seqs (the first is in the key).
pub fn encode_run(seqs: &[u64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(seqs.len() * 2);
    for pair in seqs.windows(2) {
        let mut delta = pair[1] - pair[0];
        loop {
            let low = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
    }
    bytes
}

/// The seqs of a run whose first seq is `first`, ascending.
pub fn decode_run(first: u64, bytes: &[u8]) -> Result<Vec<u64>, StateError> {
    let bad = |detail: &str| StateError::BadRow {
        table: "history",
        detail: format!("the run from seq {first}: {detail}"),
    };
    let mut seqs = vec![first];
    let mut delta = 0u64;
    let mut shift = 0u32;
    for &byte in bytes {
        if shift > 63 {
            return Err(bad("a delta runs past 64 bits"));
        }
        delta |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 != 0 {
            shift += 7;
            continue;
        }
        let last = seqs[seqs.len() - 1];
        let next = last
            .checked_add(delta)
            .filter(|next| *next > last)
            .ok_or_else(|| bad("seqs do not ascend"))?;
        seqs.push(next);
        (delta, shift) = (0, 0);
    }
    if shift != 0 {
        return Err(bad("the last delta is cut short"));
    }
    Ok(seqs)
}

/// An account's seqs below `before`, newest first, at most `limit`: reads the runs from the
/// newest back, so a page costs its own length and one run, not the whole history.
pub fn page<T>(
    table: &T,
    ledger: &str,
    account: &str,
    before: u64,
    limit: usize,
) -> Result<Vec<u64>, StateError>
where
    T: ReadableTable<RunKey<'static>, &'static [u8]>,
{
    let mut seqs = Vec::with_capacity(limit.min(1024));
    if limit == 0 {
        return Ok(seqs);
    }
    for row in table
        .range((ledger, account, 0)..(ledger, account, before))?
        .rev()
    {
        let (key, value) = row?;
        let run = decode_run(key.value().2, value.value())?;
        for seq in run.into_iter().rev().filter(|seq| *seq < before) {
            seqs.push(seq);
            if seqs.len() == limit {
                return Ok(seqs);
            }
        }
    }
    Ok(seqs)
}

/// Every (ledger, account, seq) of a history table, in key order (for comparing two states).
pub fn all_seqs<'t, T>(
    table: &'t T,
) -> Result<impl Iterator<Item = Result<(String, String, u64), StateError>> + 't, StateError>
where
    T: ReadableTable<RunKey<'static>, &'static [u8]>,
{
    let rows = table.iter()?;
    Ok(rows.flat_map(|row| {
        let seqs = row.map_err(StateError::from).and_then(|(key, value)| {
            let (ledger, account, first) = key.value();
            let run = decode_run(first, value.value())?;
            Ok(run
                .into_iter()
                .map(|seq| Ok((ledger.to_string(), account.to_string(), seq)))
                .collect::<Vec<_>>())
        });
        match seqs {
            Ok(seqs) => seqs,
            Err(error) => vec![Err(error)],
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_through_their_encoding() {
        for seqs in [
            vec![7],
            vec![1, 2, 3],
            vec![5, 133, 134, 20_000, u64::MAX / 2, u64::MAX],
        ] {
            let bytes = encode_run(&seqs);
            assert_eq!(decode_run(seqs[0], &bytes).unwrap(), seqs);
        }
        assert_eq!(encode_run(&[1, 2, 3]), vec![1, 1]);
        assert_eq!(encode_run(&[1, 130]), vec![0x81, 0x01]);
    }

    #[test]
    fn a_damaged_run_is_a_typed_error_not_a_panic() {
        for bytes in [&[0x80][..], &[0][..], &[0xff; 11][..]] {
            assert!(matches!(
                decode_run(1, bytes),
                Err(StateError::BadRow { .. })
            ));
        }
        // A delta that would pass u64::MAX.
        assert!(decode_run(u64::MAX - 1, &[2]).is_err());
    }
}
