//! Tamper detection: on a store of a few thousand entries, every alteration of its files is
//! caught by verify. Each of at least 10,000 byte positions spread over all log segments
//! (headers, frames, payloads) is flipped, one at a time, on a copy; the log is truncated at
//! random offsets (caught with `--expect-head`); segments are deleted and reordered; values in
//! `state.redb` are edited (caught as a state/replay mismatch naming the table, accounts'
//! timelines and day totals included). The detection rate must be 100%.
//! `FOLIO_TAMPER_FLIPS=N` changes the number of flips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

mod support {
    pub mod workload;
}

use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio::log::Hash;
use folio::log::sim::SimFs;
use folio::log::vfs::Vfs;
use folio::state::tables::WriteTables;
use redb::ReadableTable;
use support::workload::{self, STORE};

/// A closed store of `entries` entries on the simulated disk, and its head.
fn build_store(entries: u64) -> (SimFs, (u64, Hash)) {
    let fs = workload::new_disk(9);
    let ledger = workload::create(&fs).unwrap();
    let mut sent = 0;
    while ledger.head().seq < entries {
        let batch: Vec<folio::PostRequest> = (0..100)
            .map(|n| {
                let till = format!("till:{}", (sent + n) % 7);
                let posting = folio::Posting::new("world", till, "1.25", "USD/2").unwrap();
                folio::PostRequest::new("main", vec![posting])
                    .with_reference(format!("r{}", sent + n))
            })
            .collect();
        sent += 100;
        for result in ledger.post_batch(batch) {
            result.unwrap();
        }
    }
    let head = ledger.head();
    ledger.close().unwrap();
    (fs, (head.seq, head.block_hash))
}

fn segments(fs: &SimFs) -> Vec<PathBuf> {
    let dir = Path::new(STORE).join("log");
    let mut names: Vec<String> = fs
        .list(&dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names.into_iter().map(|name| dir.join(name)).collect()
}

/// Whether verify catches what was done to `copy`.
fn detected(copy: &SimFs, head: (u64, Hash)) -> bool {
    match folio::verify::verify_store(
        Arc::new(copy.clone()),
        Path::new(STORE),
        &[head],
        &mut |_, _| {},
    ) {
        Ok(report) => !report.ok,
        Err(_) => true, // verification refused to run on it: not a pass either
    }
}

fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn every_flipped_log_byte_is_detected() {
    let flips: u64 = std::env::var("FOLIO_TAMPER_FLIPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let (fs, head) = build_store(3000);
    let files: Vec<(PathBuf, Vec<u8>)> = segments(&fs)
        .into_iter()
        .map(|path| {
            let bytes = fs.file_bytes(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(files.len() >= 5, "the store spans several segments");
    let total: u64 = files.iter().map(|(_, bytes)| bytes.len() as u64).sum();
    let (mut made, mut caught, mut headers) = (0u64, 0u64, 0u64);
    let mut rng = 7u64;
    // Evenly spread positions over the concatenated segments, each nudged at random within its
    // stride, plus every byte of every header.
    let stride = (total / flips).max(1);
    let mut positions: Vec<u64> = (0..flips)
        .map(|i| (i * stride + next_random(&mut rng) % stride).min(total - 1))
        .collect();
    let mut base = 0;
    for (_, bytes) in &files {
        positions.extend(base..base + 64);
        base += bytes.len() as u64;
    }
    for position in positions {
        let mut offset = position;
        let (path, bytes) = files
            .iter()
            .find(|(_, bytes)| {
                let inside = offset < bytes.len() as u64;
                if !inside {
                    offset -= bytes.len() as u64;
                }
                inside
            })
            .unwrap();
        let copy = fs.process_crash_image();
        let mut damaged = bytes.clone();
        damaged[offset as usize] ^= 1 << (next_random(&mut rng) % 8);
        copy.set_file_bytes(path, damaged);
        made += 1;
        headers += u64::from(offset < 64);
        if detected(&copy, head) {
            caught += 1;
        } else {
            panic!("a flip at {} offset {offset} passed verify", path.display());
        }
    }
    println!(
        "log flips detected: {caught} of {made} ({headers} in segment headers), over {} segments, {total} bytes",
        files.len()
    );
    assert!(made >= flips);
}

#[test]
fn truncations_deletions_and_reorderings_are_detected() {
    let (fs, head) = build_store(2000);
    let files = segments(&fs);
    let mut rng = 11u64;
    let (mut made, mut caught) = (0u64, 0u64);
    for _ in 0..200 {
        let path = &files[(next_random(&mut rng) % files.len() as u64) as usize];
        let bytes = fs.file_bytes(path).unwrap();
        let cut = next_random(&mut rng) % bytes.len() as u64;
        let copy = fs.process_crash_image();
        copy.set_file_bytes(path, bytes[..cut as usize].to_vec());
        made += 1;
        assert!(
            detected(&copy, head),
            "truncating {} at {cut} passed",
            path.display()
        );
        caught += 1;
    }
    for path in &files {
        let copy = fs.process_crash_image();
        copy.remove(path).unwrap();
        made += 1;
        assert!(detected(&copy, head), "deleting {} passed", path.display());
        caught += 1;
    }
    for pair in files.windows(2) {
        let copy = fs.process_crash_image();
        let temporary = pair[0].with_extension("tmp");
        copy.rename(&pair[0], &temporary).unwrap();
        copy.rename(&pair[1], &pair[0]).unwrap();
        copy.rename(&temporary, &pair[1]).unwrap();
        made += 1;
        assert!(
            detected(&copy, head),
            "swapping {} and {} passed",
            pair[0].display(),
            pair[1].display()
        );
        caught += 1;
    }
    println!("truncations, deletions and reorderings detected: {caught} of {made}");
}

/// Edits one row of one table in the copy's state.redb through redb itself.
fn edit_state(copy: &SimFs, edit: usize, rng: &mut u64) {
    let (state, _) = folio::state::State::open(copy, Path::new(STORE), false).unwrap();
    let txn = state.begin_write(true).unwrap();
    {
        let mut tables = WriteTables::open(&txn).unwrap();
        let n = next_random(rng);
        let till = format!("till:{}", n % 7);
        match edit % 9 {
            0 => {
                let row = folio::state::tables::VolumesRow {
                    input: folio::ledger::entry::Dec(rust_decimal::Decimal::new(
                        (n % 1000) as i64 + 1,
                        2,
                    )),
                    output: Default::default(),
                };
                tables
                    .volumes
                    .insert(
                        ("main", till.as_str(), "USD/2"),
                        &folio::ledger::entry::encode(&row).unwrap()[..],
                    )
                    .unwrap();
            }
            1 => {
                tables
                    .accounts
                    .insert(("main", till.as_str()), n % 5)
                    .unwrap();
            }
            2 => {
                tables
                    .references
                    .remove(("main", format!("r{}", n % 1500).as_str()))
                    .unwrap();
            }
            3 => {
                // A run of one seq that no transaction of the till has.
                tables
                    .history
                    .insert(("main", till.as_str(), 1_000_000 + n % 100), &[][..])
                    .unwrap();
            }
            4 => {
                // The run holding transaction `id` of its till, written back without it.
                let id = 2 + n % 1500;
                let account = format!("till:{}", (id - 2) % 7);
                let (first, seqs) = {
                    let mut runs = tables
                        .history
                        .range(("main", account.as_str(), 0)..=("main", account.as_str(), id))
                        .unwrap();
                    let (key, value) = runs.next_back().unwrap().unwrap();
                    let first = key.value().2;
                    (
                        first,
                        folio::state::history::decode_run(first, value.value()).unwrap(),
                    )
                };
                assert!(seqs.contains(&id), "the run from {first} holds {id}");
                tables
                    .history
                    .remove(("main", account.as_str(), first))
                    .unwrap();
                let kept: Vec<u64> = seqs.into_iter().filter(|seq| *seq != id).collect();
                if let Some(&new_first) = kept.first() {
                    let bytes = folio::state::history::encode_run(&kept);
                    tables
                        .history
                        .insert(("main", account.as_str(), new_first), &bytes[..])
                        .unwrap();
                }
            }
            5 => edit_timeline_row(&mut tables, &till, n),
            6 => edit_day_total(&mut tables, &till, n),
            7 => {
                let row =
                    folio::ledger::entry::encode(&folio::ledger::entry::OverdraftCode::Unbounded)
                        .unwrap();
                tables
                    .policies
                    .insert(("main", till.as_str(), "USD/2"), &row[..])
                    .unwrap();
            }
            _ => {
                let meta =
                    std::collections::BTreeMap::from([("edited".to_string(), n.to_string())]);
                let row = folio::ledger::entry::encode(&meta).unwrap();
                tables
                    .account_metadata
                    .insert(("main", till.as_str()), &row[..])
                    .unwrap();
            }
        }
    }
    txn.commit().unwrap();
}

/// Adds a cent to the first change of one of the till's timeline runs (the `n`-th, wrapping).
fn edit_timeline_row(tables: &mut WriteTables<'_>, till: &str, n: u64) {
    use folio::state::timeline::{decode_run, encode_run};
    let ((hour, first), mut rows) = {
        let runs: Vec<_> = tables
            .timeline
            .range(("main", till, i64::MIN, 0)..=("main", till, i64::MAX, u64::MAX))
            .unwrap()
            .map(|run| run.unwrap())
            .collect();
        let (key, value) = &runs[n as usize % runs.len()];
        let (_, _, hour, first) = key.value();
        (
            (hour, first),
            decode_run(hour, first, value.value()).unwrap(),
        )
    };
    rows[0].changes[0].1 += rust_decimal::Decimal::new(1, 2);
    tables
        .timeline
        .insert(("main", till, hour, first), &encode_run(hour, &rows)[..])
        .unwrap();
}

/// Adds a cent to one of the till's day totals.
fn edit_day_total(tables: &mut WriteTables<'_>, till: &str, n: u64) {
    use folio::state::timeline::{decode_day_total, encode_decimal};
    let (day, total) = {
        let mut rows = tables
            .day_totals
            .range(("main", till, "USD/2", i64::MIN)..=("main", till, "USD/2", i64::MAX))
            .unwrap();
        let (key, value) = rows.next().unwrap().unwrap();
        (key.value().3, decode_day_total(value.value()).unwrap())
    };
    let mut bytes = Vec::new();
    encode_decimal(
        total + rust_decimal::Decimal::new(1 + n as i64 % 100, 2),
        &mut bytes,
    );
    tables
        .day_totals
        .insert(("main", till, "USD/2", day), &bytes[..])
        .unwrap();
}

/// What verify reports of the copy.
fn first_failure(copy: &SimFs, head: (u64, Hash)) -> Option<folio::verify::Failure> {
    let vfs = Arc::new(copy.clone());
    let report = folio::verify::verify_store(vfs, Path::new(STORE), &[head], &mut |_, _| {});
    report.unwrap().first_failure
}

#[test]
fn an_edited_timeline_row_or_day_total_is_named_by_verify() {
    let (fs, head) = build_store(300);
    let mut rng = 3u64;
    for (edit, table) in [(5, "account_timeline"), (6, "account_days")] {
        let copy = fs.process_crash_image();
        edit_state(&copy, edit, &mut rng);
        let failure = first_failure(&copy, head).expect("verify passed an edited state");
        assert_eq!(failure.kind, "state_mismatch");
        assert!(
            failure.detail.contains(&format!("table {table} row")),
            "{}",
            failure.detail
        );
    }
    assert_eq!(first_failure(&fs.process_crash_image(), head), None);
}

#[test]
fn edits_to_state_values_are_detected() {
    let (fs, head) = build_store(1500);
    let mut rng = 5u64;
    let (mut made, mut caught) = (0u64, 0u64);
    for edit in 0..90 {
        let copy = fs.process_crash_image();
        edit_state(&copy, edit, &mut rng);
        made += 1;
        assert!(detected(&copy, head), "state edit {edit} passed verify");
        caught += 1;
    }
    println!("state edits detected: {caught} of {made}");
}
