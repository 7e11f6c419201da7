//! Folio against its peers, SQLite and redb, at the same durability (a transaction is
//! acknowledged only once an fsync made it durable), and against the limits of the machine.
//! One run measures every workload on every peer, interleaved (folio, sqlite, redb, folio, ...;
//! `--runs` rounds, 3 by default) and prints the medians with the ratios Folio/peer; the same
//! figures, with every sample, go to a JSON file. `docs/performance.md` describes the workloads,
//! the peers' schemas, what differs between them, and how to read the table.
//!
//! Run: `cargo bench --bench compare --features peers -- [--quick] [--runs N] [--json PATH]
//! [--only WORKLOAD[,WORKLOAD...]] [--peers PEER[,PEER...]]`. `--quick` is a smoke run of about a
//! minute; a full run about half an hour on a 2-core VM. Cargo builds the `folio` binary that the
//! `post_cli` workload runs. Stores live under `target/tmp` (real disk: tmpfs would fake fsync).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops on any error"
)]

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use folio::log::vfs::{OpenMode, RealFs, Vfs, VfsFile};
use folio::{Ledger, LedgerOptions, PostRequest, Posting};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn StdError + Send + Sync>>;

/// The ledger every workload posts into.
const LEDGER: &str = "main";
/// The asset of every posting.
const ASSET: &str = "USD/2";
/// The account with unbounded overdraft in Folio; the peers skip its overdraft check too.
const WORLD: &str = "world";
/// The one funded account that every transaction of the hot-account workload debits.
const HOT: &str = "till:1";
/// Destination accounts: `users:00000` to `users:09999`.
const ACCOUNTS: usize = 10_000;
/// Threads of the concurrent workloads.
const THREADS: usize = 8;
/// Page cache of every peer: Folio's state cache is 64 MiB, so redb and SQLite get as much.
const CACHE_BYTES: usize = 64 << 20;
/// Bytes of one record in the append limits.
const APPEND_RECORD_BYTES: usize = 256;
/// Bytes of one record in the hashing limit.
const HASH_RECORD_BYTES: usize = 200;
/// Every workload, by its `--only` name, in the order a run measures them.
const STEPS: [(&str, Step); 10] = [
    ("limits", Bench::limits),
    ("commit_each", Bench::commit_each),
    ("bulk", Bench::bulk),
    ("post_cli", Bench::post_cli),
    ("concurrent", Bench::concurrent),
    ("hot", Bench::hot),
    ("reads", Bench::reads),
    ("replay", Bench::replay),
    ("reopen", Bench::reopen),
    ("scale", Bench::scale),
];

type Step = fn(&mut Bench) -> Result<()>;

fn main() -> std::process::ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match raw.first().map(String::as_str) {
        Some("--child-writer") => child_writer(&raw[1..]),
        _ => compare(&raw),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compare: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn compare(raw: &[String]) -> Result<()> {
    let args = Args::parse(raw)?;
    let mut bench = Bench::new(args)?;
    bench.run()?;
    bench.report()
}

// ---------------------------------------------------------------------------------------------
// Command line and sizes.

struct Args {
    quick: bool,
    runs: usize,
    json_path: PathBuf,
    only: Option<Vec<String>>,
    /// The peers to run, in `Peer::ALL` order (`--peers folio,sqlite`; all by default).
    peers: Vec<Peer>,
    /// Transactions of the `scale` workload's store (`--scale-entries N`; its size by default).
    scale_entries: Option<usize>,
}

/// `--only a,b`: names checked against the workloads.
fn workload_names(text: &str) -> Result<Vec<String>> {
    let names: Vec<String> = text.split(',').map(str::to_string).collect();
    let known: Vec<&str> = STEPS.iter().map(|(step, _)| *step).collect();
    match names.iter().find(|name| !known.contains(&name.as_str())) {
        Some(bad) => Err(format!("unknown workload {bad:?}; one of {known:?}").into()),
        None => Ok(names),
    }
}

/// `--peers folio,sqlite`: the peers named, in `Peer::ALL` order.
fn peer_list(text: &str) -> Result<Vec<Peer>> {
    let names: Vec<&str> = text.split(',').collect();
    if let Some(bad) = names.iter().find(|name| Peer::named(name).is_none()) {
        return Err(format!("unknown peer {bad:?}; one of folio, sqlite, redb").into());
    }
    let peers = Peer::ALL
        .into_iter()
        .filter(|peer| names.contains(&peer.name()));
    Ok(peers.collect())
}

impl Args {
    fn parse(raw: &[String]) -> Result<Args> {
        let mut args = Args {
            quick: false,
            runs: 3,
            json_path: PathBuf::new(),
            only: None,
            peers: Peer::ALL.to_vec(),
            scale_entries: None,
        };
        let mut json_path = None;
        let mut words = raw.iter();
        while let Some(word) = words.next() {
            let mut value = || words.next().ok_or(format!("{word} needs a value"));
            match word.as_str() {
                "--quick" => args.quick = true,
                "--runs" => args.runs = value()?.parse()?,
                "--json" => json_path = Some(PathBuf::from(value()?)),
                "--only" => args.only = Some(workload_names(value()?)?),
                "--peers" => args.peers = peer_list(value()?)?,
                "--scale-entries" => args.scale_entries = Some(value()?.parse()?),
                // Cargo passes `--bench` to every bench binary.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?}").into()),
            }
        }
        if args.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        // A smoke run never overwrites the figures of a full one.
        let default_name = if args.quick {
            "compare-quick.json"
        } else {
            "compare.json"
        };
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        args.json_path = json_path.unwrap_or_else(|| target.join(default_name));
        Ok(args)
    }

    fn selected(&self, workload: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == workload))
    }
}

/// How much each workload does; `--quick` shrinks everything for a smoke run.
#[derive(Debug, Clone, serde::Serialize)]
struct Sizes {
    commit_each_tx: usize,
    bulk_tx: usize,
    concurrent_tx: usize,
    hot_bulk_tx: usize,
    reads_seconds: f64,
    reopen_tail_entries: usize,
    append_ops: usize,
    bandwidth_mib: usize,
    hash_records: usize,
    scale_tx: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                commit_each_tx: 100,
                bulk_tx: 50_000,
                concurrent_tx: 240,
                hot_bulk_tx: 10_000,
                reads_seconds: 0.75,
                reopen_tail_entries: 20_000,
                append_ops: 100,
                bandwidth_mib: 32,
                hash_records: 500_000,
                scale_tx: 20_000,
            }
        } else {
            Sizes {
                commit_each_tx: 5_000,
                bulk_tx: 1_000_000,
                concurrent_tx: 16_000,
                hot_bulk_tx: 200_000,
                reads_seconds: 10.0,
                reopen_tail_entries: 100_000,
                append_ops: 2_000,
                bandwidth_mib: 512,
                hash_records: 5_000_000,
                scale_tx: 1_000_000,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The workload's transactions: one posting each, a unique reference each.

/// One transaction as every peer receives it.
struct Tx {
    reference: String,
    source: &'static str,
    destination: String,
    amount_cents: i64,
}

/// Transactions `from..to` of a workload: from `source` to `users:<k mod 10,000>`, with the
/// reference `<prefix><k>` (unique within a store as long as prefixes differ).
fn transactions(source: &'static str, prefix: &str, from: usize, to: usize) -> Vec<Tx> {
    (from..to)
        .map(|k| Tx {
            reference: format!("{prefix}{k}"),
            source,
            destination: account_name(k % ACCOUNTS),
            amount_cents: 100 + (k % 900) as i64,
        })
        .collect()
}

fn account_name(index: usize) -> String {
    format!("users:{index:05}")
}

/// The request that funds the hot account with far more than any workload spends.
fn funding() -> Tx {
    Tx {
        reference: "fund-hot".to_string(),
        source: WORLD,
        destination: HOT.to_string(),
        amount_cents: 1_000_000_000_000,
    }
}

fn amount_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The bytes the peers chain: what Folio's entry also commits to (ledger, reference,
/// timestamp, postings), length-prefixed, little-endian.
fn tx_bytes(tx: &Tx, timestamp_us: i64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(96);
    for text in [LEDGER, &tx.reference] {
        bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    bytes.extend_from_slice(&timestamp_us.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    for text in [tx.source, &tx.destination, ASSET] {
        bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    bytes.extend_from_slice(&tx.amount_cents.to_le_bytes());
    bytes
}

/// `blake3(previous_hash || tx_bytes)`: the peers' hash chain.
fn chain_hash(previous: &[u8; 32], tx: &Tx, timestamp_us: i64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher.update(&tx_bytes(tx, timestamp_us));
    *hasher.finalize().as_bytes()
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

// ---------------------------------------------------------------------------------------------
// The peers: one trait, three implementations.

/// An open store of one peer.
trait Store: Send + Sync {
    /// A handle for one thread: Folio a clone of the `Ledger`, SQLite its own connection, redb
    /// a reference to the shared `Database`.
    fn session(&self) -> Result<Box<dyn Session>>;
    /// Makes everything durable and closes the store (never timed).
    fn close(self: Box<Self>) -> Result<()>;
}

/// One thread's handle on a store.
trait Session: Send {
    /// Posts one transaction in its own durable commit; an error if it was not posted.
    fn post(&mut self, tx: &Tx) -> Result<()>;
    /// Posts transactions in one durable commit; returns how many were posted (a duplicate
    /// reference or an overdraft skips one transaction, not the batch, as in Folio).
    fn post_batch(&mut self, txs: &[Tx]) -> Result<usize>;
    /// The balance of an account in `USD/2`, in cents.
    fn balance(&mut self, account: &str) -> Result<i64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Folio,
    Sqlite,
    Redb,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::Folio, Peer::Sqlite, Peer::Redb];

    fn name(self) -> &'static str {
        match self {
            Peer::Folio => "folio",
            Peer::Sqlite => "sqlite",
            Peer::Redb => "redb",
        }
    }

    fn named(name: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|peer| peer.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Creates a new store of this peer inside the empty directory `dir`.
    fn create(self, dir: &Path) -> Result<Box<dyn Store>> {
        Ok(match self {
            Peer::Folio => Box::new(FolioStore::create(dir)?),
            Peer::Sqlite => Box::new(SqliteStore::create(dir)?),
            Peer::Redb => Box::new(RedbStore::create(dir)?),
        })
    }
}

// Folio ---------------------------------------------------------------------------------------

struct FolioStore {
    ledger: Ledger,
}

impl FolioStore {
    fn create(dir: &Path) -> Result<FolioStore> {
        let options = LedgerOptions::default();
        let ledger = Ledger::create_with(Arc::new(RealFs), &dir.join("folio"), options)?;
        Ok(FolioStore { ledger })
    }
}

impl Store for FolioStore {
    fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(FolioSession {
            ledger: self.ledger.clone(),
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.ledger.close()?)
    }
}

struct FolioSession {
    ledger: Ledger,
}

fn folio_request(tx: &Tx) -> Result<PostRequest> {
    let amount = amount_text(tx.amount_cents);
    let posting = Posting::new(tx.source, tx.destination.as_str(), &amount, ASSET)?;
    Ok(PostRequest::new(LEDGER, vec![posting]).with_reference(tx.reference.as_str()))
}

impl Session for FolioSession {
    fn post(&mut self, tx: &Tx) -> Result<()> {
        let receipt = self.ledger.post(folio_request(tx)?)?;
        if receipt.replayed {
            return Err(format!("folio: {} was a replay", tx.reference).into());
        }
        Ok(())
    }

    fn post_batch(&mut self, txs: &[Tx]) -> Result<usize> {
        let requests = txs.iter().map(folio_request).collect::<Result<Vec<_>>>()?;
        let mut posted = 0;
        for result in self.ledger.post_batch(requests) {
            if !result?.replayed {
                posted += 1;
            }
        }
        Ok(posted)
    }

    fn balance(&mut self, account: &str) -> Result<i64> {
        let balances = self.ledger.balance(LEDGER, account)?;
        let Some(balance) = balances.get(ASSET) else {
            return Ok(0);
        };
        let cents = (*balance * Decimal::ONE_HUNDRED).trunc();
        Ok(cents.to_i64().ok_or("folio: a balance past i64 cents")?)
    }
}

// SQLite --------------------------------------------------------------------------------------

const SQLITE_SCHEMA: &str = "
    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY,
        ledger TEXT NOT NULL,
        reference TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        hash BLOB NOT NULL,
        UNIQUE (ledger, reference)
    );
    CREATE TABLE postings (
        tx_id INTEGER NOT NULL REFERENCES transactions (id),
        position INTEGER NOT NULL,
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        amount INTEGER NOT NULL,
        asset TEXT NOT NULL,
        PRIMARY KEY (tx_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE balances (
        ledger TEXT NOT NULL,
        account TEXT NOT NULL,
        asset TEXT NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        PRIMARY KEY (ledger, account, asset)
    ) WITHOUT ROWID;
";

struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    fn create(dir: &Path) -> Result<SqliteStore> {
        let path = dir.join("peer.sqlite");
        sqlite_connect(&path)?.execute_batch(SQLITE_SCHEMA)?;
        Ok(SqliteStore { path })
    }
}

/// A connection at Folio's durability: WAL, and an fsync of the WAL at every commit.
fn sqlite_connect(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path)?;
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    if mode != "wal" || synchronous != 2 {
        return Err(format!("sqlite: journal_mode {mode}, synchronous {synchronous}").into());
    }
    connection.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))?;
    connection.busy_timeout(Duration::from_secs(60))?;
    Ok(connection)
}

impl Store for SqliteStore {
    fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(SqliteSession {
            connection: sqlite_connect(&self.path)?,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

struct SqliteSession {
    connection: Connection,
}

impl SqliteSession {
    /// One write transaction (`BEGIN IMMEDIATE`: writers queue on the lock up front rather than
    /// fail on an upgrade) for all of `txs`.
    fn write(&mut self, txs: &[Tx]) -> Result<usize> {
        let db = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<Vec<u8>> = db
            .prepare_cached("SELECT hash FROM transactions ORDER BY id DESC LIMIT 1")?
            .query_row([], |row| row.get(0))
            .optional()?;
        let mut previous = [0u8; 32];
        if let Some(last) = last {
            previous.copy_from_slice(&last);
        }
        let mut posted = 0;
        for tx in txs {
            if sqlite_apply(&db, tx, &mut previous)? {
                posted += 1;
            }
        }
        db.commit()?;
        Ok(posted)
    }
}

fn sqlite_balance(db: &Connection, account: &str) -> Result<i64> {
    let balance = db
        .prepare_cached(
            "SELECT input - output FROM balances WHERE ledger = ?1 AND account = ?2 AND asset = ?3",
        )?
        .query_row(params![LEDGER, account, ASSET], |row| row.get(0))
        .optional()?;
    Ok(balance.unwrap_or(0))
}

/// Checks the reference and the overdraft, then inserts the rows and moves both balances.
/// Returns whether the transaction was posted.
fn sqlite_apply(db: &Connection, tx: &Tx, previous: &mut [u8; 32]) -> Result<bool> {
    let seen = db
        .prepare_cached("SELECT 1 FROM transactions WHERE ledger = ?1 AND reference = ?2")?
        .exists(params![LEDGER, tx.reference])?;
    if seen || (tx.source != WORLD && sqlite_balance(db, tx.source)? < tx.amount_cents) {
        return Ok(false);
    }
    let timestamp = now_us();
    let hash = chain_hash(previous, tx, timestamp);
    db.prepare_cached(
        "INSERT INTO transactions (ledger, reference, timestamp, hash) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![LEDGER, tx.reference, timestamp, &hash[..]])?;
    let id = db.last_insert_rowid();
    db.prepare_cached(
        "INSERT INTO postings (tx_id, position, source, destination, amount, asset)
         VALUES (?1, 0, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id,
        tx.source,
        tx.destination,
        tx.amount_cents,
        ASSET
    ])?;
    let mut upsert = db.prepare_cached(
        "INSERT INTO balances (ledger, account, asset, input, output) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (ledger, account, asset)
         DO UPDATE SET input = input + excluded.input, output = output + excluded.output",
    )?;
    upsert.execute(params![LEDGER, tx.source, ASSET, 0, tx.amount_cents])?;
    upsert.execute(params![LEDGER, tx.destination, ASSET, tx.amount_cents, 0])?;
    *previous = hash;
    Ok(true)
}

impl Session for SqliteSession {
    fn post(&mut self, tx: &Tx) -> Result<()> {
        match self.write(std::slice::from_ref(tx))? {
            1 => Ok(()),
            _ => Err(format!("sqlite: {} was not posted", tx.reference).into()),
        }
    }

    fn post_batch(&mut self, txs: &[Tx]) -> Result<usize> {
        self.write(txs)
    }

    fn balance(&mut self, account: &str) -> Result<i64> {
        sqlite_balance(&self.connection, account)
    }
}

// redb ----------------------------------------------------------------------------------------

/// id -> (ledger, reference, timestamp_us, hash).
const REDB_TRANSACTIONS: TableDefinition<u64, (&str, &str, i64, &[u8; 32])> =
    TableDefinition::new("transactions");
/// (ledger, reference) -> id: the unique index.
const REDB_REFERENCES: TableDefinition<(&str, &str), u64> = TableDefinition::new("references");
/// (tx_id, position) -> (source, destination, amount, asset).
const REDB_POSTINGS: TableDefinition<(u64, u32), (&str, &str, i64, &str)> =
    TableDefinition::new("postings");
/// (ledger, account, asset) -> (input, output).
const REDB_BALANCES: TableDefinition<(&str, &str, &str), (i64, i64)> =
    TableDefinition::new("balances");

struct RedbStore {
    db: Arc<Database>,
}

impl RedbStore {
    fn create(dir: &Path) -> Result<RedbStore> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("peer.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(REDB_TRANSACTIONS)?;
        txn.open_table(REDB_REFERENCES)?;
        txn.open_table(REDB_POSTINGS)?;
        txn.open_table(REDB_BALANCES)?;
        txn.commit()?;
        Ok(RedbStore { db: Arc::new(db) })
    }
}

impl Store for RedbStore {
    fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(RedbSession {
            db: self.db.clone(),
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

struct RedbSession {
    db: Arc<Database>,
}

/// The open tables of one redb write transaction, and where its chain stands.
struct RedbWrite<'txn> {
    transactions: redb::Table<'txn, u64, (&'static str, &'static str, i64, &'static [u8; 32])>,
    references: redb::Table<'txn, (&'static str, &'static str), u64>,
    postings: redb::Table<'txn, (u64, u32), (&'static str, &'static str, i64, &'static str)>,
    balances: redb::Table<'txn, (&'static str, &'static str, &'static str), (i64, i64)>,
    id_next: u64,
    previous: [u8; 32],
}

impl RedbWrite<'_> {
    fn balance(&self, account: &str) -> Result<i64> {
        let row = self.balances.get((LEDGER, account, ASSET))?;
        Ok(row.map_or(0, |row| {
            let (input, output) = row.value();
            input - output
        }))
    }

    fn add(&mut self, account: &str, input: i64, output: i64) -> Result<()> {
        let (old_input, old_output) = self
            .balances
            .get((LEDGER, account, ASSET))?
            .map_or((0, 0), |row| row.value());
        let row = (old_input + input, old_output + output);
        self.balances.insert((LEDGER, account, ASSET), row)?;
        Ok(())
    }

    /// Same steps as `sqlite_apply`.
    fn apply(&mut self, tx: &Tx) -> Result<bool> {
        let seen = self
            .references
            .get((LEDGER, tx.reference.as_str()))?
            .is_some();
        if seen || (tx.source != WORLD && self.balance(tx.source)? < tx.amount_cents) {
            return Ok(false);
        }
        let timestamp = now_us();
        let hash = chain_hash(&self.previous, tx, timestamp);
        let id = self.id_next;
        let row = (LEDGER, tx.reference.as_str(), timestamp, &hash);
        self.transactions.insert(id, row)?;
        self.references
            .insert((LEDGER, tx.reference.as_str()), id)?;
        let posting = (tx.source, tx.destination.as_str(), tx.amount_cents, ASSET);
        self.postings.insert((id, 0), posting)?;
        self.add(tx.source, 0, tx.amount_cents)?;
        self.add(&tx.destination, tx.amount_cents, 0)?;
        self.id_next += 1;
        self.previous = hash;
        Ok(true)
    }
}

impl RedbSession {
    /// One write transaction, `Durability::Immediate`, for all of `txs`.
    fn write(&mut self, txs: &[Tx]) -> Result<usize> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut posted = 0;
        {
            let transactions = txn.open_table(REDB_TRANSACTIONS)?;
            let (id_next, previous) = match transactions.last()? {
                Some((id, row)) => (id.value() + 1, *row.value().3),
                None => (1, [0u8; 32]),
            };
            let mut write = RedbWrite {
                transactions,
                references: txn.open_table(REDB_REFERENCES)?,
                postings: txn.open_table(REDB_POSTINGS)?,
                balances: txn.open_table(REDB_BALANCES)?,
                id_next,
                previous,
            };
            for tx in txs {
                if write.apply(tx)? {
                    posted += 1;
                }
            }
        }
        txn.commit()?;
        Ok(posted)
    }
}

impl Session for RedbSession {
    fn post(&mut self, tx: &Tx) -> Result<()> {
        match self.write(std::slice::from_ref(tx))? {
            1 => Ok(()),
            _ => Err(format!("redb: {} was not posted", tx.reference).into()),
        }
    }

    fn post_batch(&mut self, txs: &[Tx]) -> Result<usize> {
        self.write(txs)
    }

    fn balance(&mut self, account: &str) -> Result<i64> {
        let read = self.db.begin_read()?;
        let table = read.open_table(REDB_BALANCES)?;
        let row = table.get((LEDGER, account, ASSET))?;
        Ok(row.map_or(0, |row| {
            let (input, output) = row.value();
            input - output
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Results: samples per (workload, metric, peer), medians, the table and the JSON.

/// What a row compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every peer ran it.
    Peers,
    /// Only Folio has it (its CLI, replay, verify, reopen).
    FolioOnly,
    /// A limit of the machine, no database involved.
    Machine,
}

struct Row {
    workload: String,
    metric: String,
    scope: Scope,
    /// Samples per peer, in `Peer::ALL` order (a machine limit uses the first).
    samples: [Vec<f64>; 3],
}

#[derive(Default)]
struct Results {
    rows: Vec<Row>,
}

impl Results {
    fn record(&mut self, scope: Scope, workload: &str, metric: &str, peer: Peer, value: f64) {
        eprintln!(
            "  {workload:<34} {metric:<26} {:<6} {}",
            peer.name(),
            figure(value)
        );
        let found = self
            .rows
            .iter()
            .position(|row| row.workload == workload && row.metric == metric);
        let at = found.unwrap_or_else(|| {
            self.rows.push(Row {
                workload: workload.to_string(),
                metric: metric.to_string(),
                scope,
                samples: Default::default(),
            });
            self.rows.len() - 1
        });
        self.rows[at].samples[peer.index()].push(value);
    }
}

fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        length if length % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

/// A figure with as many decimals as it needs to show three significant digits.
fn figure(value: f64) -> String {
    match value.abs() {
        magnitude if magnitude >= 100.0 => format!("{value:.0}"),
        magnitude if magnitude >= 10.0 => format!("{value:.1}"),
        magnitude if magnitude >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), figure)
}

fn ratio(folio: Option<f64>, peer: Option<f64>) -> Option<f64> {
    match (folio, peer) {
        (Some(folio), Some(peer)) if peer != 0.0 => Some(folio / peer),
        _ => None,
    }
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let at = ((sorted.len().saturating_sub(1)) as f64 * quantile).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Resets the process's peak RSS (`/proc/self/clear_refs`, Linux 4.0+): whether it worked.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak RSS (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// The bench: workloads, each interleaving the peers run by run.

struct Bench {
    args: Args,
    sizes: Sizes,
    /// Where every store is made (under `target/tmp`, on the real disk).
    root: PathBuf,
    results: Results,
    /// A Folio store of the bulk workload (batches of 1,000), kept for replay and verify.
    bulk_store: Option<tempfile::TempDir>,
    started: Instant,
}

impl Bench {
    fn new(args: Args) -> Result<Bench> {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare");
        std::fs::create_dir_all(&root)?;
        let fs_type = fs_type(&root).unwrap_or_else(|| "unknown".to_string());
        if fs_type == "tmpfs" || fs_type == "ramfs" {
            eprintln!(
                "warning: {} is on {fs_type}: fsync costs nothing there",
                root.display()
            );
        }
        eprintln!("stores under {} ({fs_type})", root.display());
        Ok(Bench {
            sizes: Sizes::new(args.quick),
            args,
            root,
            results: Results::default(),
            bulk_store: None,
            started: Instant::now(),
        })
    }

    fn fresh_dir(&self) -> Result<tempfile::TempDir> {
        Ok(tempfile::tempdir_in(&self.root)?)
    }

    fn run(&mut self) -> Result<()> {
        for (name, step) in STEPS {
            if self.args.selected(name) {
                eprintln!("[{:>6.1}s] {name}", self.started.elapsed().as_secs_f64());
                step(self)?;
            }
        }
        eprintln!("[{:>6.1}s] done", self.started.elapsed().as_secs_f64());
        Ok(())
    }

    fn peers(&self) -> Vec<Peer> {
        self.args.peers.clone()
    }

    fn record(&mut self, workload: &str, metric: &str, peer: Peer, value: f64) {
        self.results
            .record(Scope::Peers, workload, metric, peer, value);
    }

    fn record_folio(&mut self, workload: &str, metric: &str, value: f64) {
        self.results
            .record(Scope::FolioOnly, workload, metric, Peer::Folio, value);
    }

    fn record_limit(&mut self, workload: &str, metric: &str, value: f64) {
        self.results
            .record(Scope::Machine, workload, metric, Peer::Folio, value);
    }
}

/// Workload 1: one transaction per durable commit, one thread.
impl Bench {
    fn commit_each(&mut self) -> Result<()> {
        let count = self.sizes.commit_each_tx;
        let workload = "1 commit each (1 thread)";
        for _ in 0..self.args.runs {
            for peer in self.peers() {
                let dir = self.fresh_dir()?;
                let store = peer.create(dir.path())?;
                let mut session = store.session()?;
                let txs = transactions(WORLD, "t", 0, count);
                let mut latencies = Vec::with_capacity(count);
                let started = Instant::now();
                for tx in &txs {
                    let one = Instant::now();
                    session.post(tx)?;
                    latencies.push(one.elapsed());
                }
                let seconds = started.elapsed().as_secs_f64();
                drop(session);
                store.close()?;
                latencies.sort();
                self.record(workload, "tx/s", peer, count as f64 / seconds);
                self.record(workload, "p50 ms", peer, ms(percentile(&latencies, 0.50)));
                self.record(workload, "p99 ms", peer, ms(percentile(&latencies, 0.99)));
            }
        }
        Ok(())
    }
}

/// Posts `count` transactions from `source` in batches of `batch`, one durable commit per
/// batch; returns the seconds spent inside `post_batch` (making the batches is not timed).
fn post_batches(
    session: &mut dyn Session,
    source: &'static str,
    prefix: &str,
    count: usize,
    batch: usize,
) -> Result<f64> {
    let mut elapsed = Duration::ZERO;
    for from in (0..count).step_by(batch) {
        let txs = transactions(source, prefix, from, (from + batch).min(count));
        let started = Instant::now();
        let posted = session.post_batch(&txs)?;
        elapsed += started.elapsed();
        if posted != txs.len() {
            return Err(format!("{} of {} transactions posted", posted, txs.len()).into());
        }
    }
    Ok(elapsed.as_secs_f64())
}

/// Workload 2: bulk, in batches of 100 and of 1,000; and Folio's CLI on a JSON Lines file.
impl Bench {
    fn bulk(&mut self) -> Result<()> {
        let count = self.sizes.bulk_tx;
        let rss_tracked = reset_peak_rss();
        for batch in [100, 1000] {
            let workload = format!("2 bulk, batches of {batch}");
            for run in 0..self.args.runs {
                for peer in self.peers() {
                    let dir = self.fresh_dir()?;
                    let store = peer.create(dir.path())?;
                    let mut session = store.session()?;
                    reset_peak_rss();
                    let seconds = post_batches(&mut *session, WORLD, "t", count, batch)?;
                    let rss = peak_rss_mib();
                    drop(session);
                    store.close()?;
                    self.record(&workload, "tx/s", peer, count as f64 / seconds);
                    if let (1000, true, Some(rss)) = (batch, rss_tracked, rss) {
                        self.record(&workload, "peak RSS MiB", peer, rss);
                    }
                    if batch == 1000 && peer == Peer::Folio && run + 1 == self.args.runs {
                        self.bulk_store = Some(dir);
                    }
                }
            }
        }
        Ok(())
    }

    /// `folio post --store DIR FILE` as a subprocess, the store created beforehand; the time
    /// includes starting the process, opening the store and parsing the JSON.
    fn post_cli(&mut self) -> Result<()> {
        let count = self.sizes.bulk_tx;
        let workload = "2 bulk, `folio post` JSON Lines";
        for _ in 0..self.args.runs {
            let dir = self.fresh_dir()?;
            let store = dir.path().join("folio");
            Ledger::create(&store)?.close()?;
            let input = dir.path().join("input.jsonl");
            write_json_lines(&input, count)?;
            let started = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_folio"))
                .arg("--store")
                .arg(&store)
                .arg("post")
                .arg(&input)
                .stdout(Stdio::null())
                .status()?;
            let seconds = started.elapsed().as_secs_f64();
            if !status.success() {
                return Err(format!("folio post exited with {status}").into());
            }
            self.record_folio(workload, "tx/s", count as f64 / seconds);
        }
        Ok(())
    }
}

fn write_json_lines(path: &Path, count: usize) -> Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for from in (0..count).step_by(1000) {
        for tx in transactions(WORLD, "t", from, (from + 1000).min(count)) {
            let line = json!({
                "ledger": LEDGER,
                "reference": tx.reference,
                "postings": [{
                    "source": tx.source,
                    "destination": tx.destination,
                    "amount": amount_text(tx.amount_cents),
                    "asset": ASSET,
                }],
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// What a concurrent run measured.
struct Concurrent {
    tx_per_second: f64,
    p99: Duration,
}

/// `THREADS` threads, each with its own session, each posting `count / THREADS` single
/// transactions from `source`; the clock runs from a common start to the last one's end.
fn concurrent_run(store: &dyn Store, source: &'static str, count: usize) -> Result<Concurrent> {
    let per_thread = count / THREADS;
    let sessions = (0..THREADS)
        .map(|_| store.session())
        .collect::<Result<Vec<_>>>()?;
    let barrier = Barrier::new(THREADS + 1);
    let (elapsed, latencies) = std::thread::scope(|scope| -> Result<_> {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(thread, mut session)| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<Vec<Duration>> {
                    let from = thread * per_thread;
                    let txs = transactions(source, "c", from, from + per_thread);
                    let mut latencies = Vec::with_capacity(per_thread);
                    barrier.wait();
                    for tx in &txs {
                        let one = Instant::now();
                        session.post(tx)?;
                        latencies.push(one.elapsed());
                    }
                    Ok(latencies)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(per_thread * THREADS);
        for handle in handles {
            let joined = handle.join().map_err(|_| "a posting thread panicked")?;
            latencies.extend(joined?);
        }
        Ok((started.elapsed(), latencies))
    })?;
    let mut latencies = latencies;
    latencies.sort();
    Ok(Concurrent {
        tx_per_second: (per_thread * THREADS) as f64 / elapsed.as_secs_f64(),
        p99: percentile(&latencies, 0.99),
    })
}

/// Workloads 3 and 4: concurrent writers; every transaction debiting one account.
impl Bench {
    fn concurrent(&mut self) -> Result<()> {
        let count = self.sizes.concurrent_tx;
        let workload = format!("3 concurrent ({THREADS} threads)");
        for _ in 0..self.args.runs {
            for peer in self.peers() {
                let dir = self.fresh_dir()?;
                let store = peer.create(dir.path())?;
                let measured = concurrent_run(&*store, WORLD, count)?;
                store.close()?;
                self.record(&workload, "tx/s", peer, measured.tx_per_second);
                self.record(&workload, "p99 ms", peer, ms(measured.p99));
            }
        }
        Ok(())
    }

    fn hot(&mut self) -> Result<()> {
        let (count_bulk, count_concurrent) = (self.sizes.hot_bulk_tx, self.sizes.concurrent_tx);
        let workload_bulk = format!("4 hot {HOT}, batches of 1000");
        let workload_concurrent = format!("4 hot {HOT}, {THREADS} threads");
        for _ in 0..self.args.runs {
            for peer in self.peers() {
                let dir = self.fresh_dir()?;
                let store = peer.create(dir.path())?;
                let mut session = store.session()?;
                session.post(&funding())?;
                let seconds = post_batches(&mut *session, HOT, "h", count_bulk, 1000)?;
                let measured = concurrent_run(&*store, HOT, count_concurrent)?;
                drop(session);
                store.close()?;
                self.record(&workload_bulk, "tx/s", peer, count_bulk as f64 / seconds);
                let workload = &workload_concurrent;
                self.record(workload, "tx/s", peer, measured.tx_per_second);
                self.record(workload, "p99 ms", peer, ms(measured.p99));
            }
        }
        Ok(())
    }
}

/// What a reads run measured.
struct Reads {
    reads_per_second: f64,
    writer_tx_per_second: f64,
    /// Latency of one balance read while the writers post: the 99th and 99.9th percentiles
    /// and the worst.
    read_p99: Duration,
    read_p999: Duration,
    read_max: Duration,
}

/// Writer threads of the reads workload, and the batch each posts: the load under which the
/// issue 12 review saw Folio's reads wait for the writers (p99 14-19 ms).
const READS_WRITERS: usize = 4;
const READS_WRITER_BATCH: usize = 500;

/// Funds the 10,000 accounts, then reads balances of random accounts on this thread for
/// `seconds` while [`READS_WRITERS`] threads post batches of [`READS_WRITER_BATCH`].
fn reads_run(store: &dyn Store, seconds: f64) -> Result<Reads> {
    post_batches(&mut *store.session()?, WORLD, "p", ACCOUNTS, 1000)?;
    let mut writers = (0..READS_WRITERS)
        .map(|_| store.session())
        .collect::<Result<Vec<_>>>()?;
    let mut reader = store.session()?;
    let accounts: Vec<String> = (0..ACCOUNTS).map(account_name).collect();
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let duration = Duration::from_secs_f64(seconds);
    std::thread::scope(|scope| -> Result<Reads> {
        let posting: Vec<_> = writers
            .iter_mut()
            .enumerate()
            .map(|(thread, writer)| {
                let (stop, written) = (&stop, &written);
                scope.spawn(move || -> Result<()> {
                    let mut from = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let prefix = format!("w{thread}-{from}-");
                        let batch = READS_WRITER_BATCH;
                        post_batches(&mut **writer, WORLD, &prefix, batch, batch)?;
                        written.fetch_add(batch as u64, Ordering::Relaxed);
                        from += batch;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut random = SplitMix64(7);
        let (started, mut reads) = (Instant::now(), 0u64);
        let mut latencies = Vec::new();
        let read = (|| -> Result<()> {
            while started.elapsed() < duration {
                let account = &accounts[(random.next() % ACCOUNTS as u64) as usize];
                let asked = Instant::now();
                if reader.balance(account)? <= 0 {
                    return Err(format!("{account} should have been funded").into());
                }
                latencies.push(asked.elapsed());
                reads += 1;
            }
            Ok(())
        })();
        latencies.sort_unstable();
        let elapsed = started.elapsed().as_secs_f64();
        let written = written.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        for writer in posting {
            writer.join().map_err(|_| "a writer thread panicked")??;
        }
        read?;
        Ok(Reads {
            reads_per_second: reads as f64 / elapsed,
            writer_tx_per_second: written as f64 / elapsed,
            read_p99: percentile(&latencies, 0.99),
            read_p999: percentile(&latencies, 0.999),
            read_max: latencies.last().copied().unwrap_or_default(),
        })
    })
}

/// A small, seedable random number generator (SplitMix64): no dependency needed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Workload 5: reads under a writer.
impl Bench {
    fn reads(&mut self) -> Result<()> {
        let workload = "5 reads, 4 writers (batches of 500)";
        for _ in 0..self.args.runs {
            for peer in self.peers() {
                let dir = self.fresh_dir()?;
                let store = peer.create(dir.path())?;
                let measured = reads_run(&*store, self.sizes.reads_seconds)?;
                store.close()?;
                self.record(workload, "balance reads/s", peer, measured.reads_per_second);
                self.record(workload, "writer tx/s", peer, measured.writer_tx_per_second);
                let p99_us = measured.read_p99.as_secs_f64() * 1e6;
                self.record(workload, "read p99 µs", peer, p99_us);
                let p999_us = measured.read_p999.as_secs_f64() * 1e6;
                self.record(workload, "read p99.9 µs", peer, p999_us);
                self.record(workload, "read max ms", peer, ms(measured.read_max));
            }
        }
        Ok(())
    }
}

/// Workload 6 (Folio only): rebuilding the state from the log, verifying the store, and
/// reopening after a kill.
impl Bench {
    /// The bulk workload's Folio store, or (under `--only`) one made the same way.
    fn take_bulk_store(&mut self) -> Result<tempfile::TempDir> {
        if let Some(dir) = self.bulk_store.take() {
            return Ok(dir);
        }
        eprintln!(
            "  making a bulk store of {} transactions for replay",
            self.sizes.bulk_tx
        );
        let dir = self.fresh_dir()?;
        let store = Peer::Folio.create(dir.path())?;
        post_batches(&mut *store.session()?, WORLD, "t", self.sizes.bulk_tx, 1000)?;
        store.close()?;
        Ok(dir)
    }

    fn replay(&mut self) -> Result<()> {
        let dir = self.take_bulk_store()?;
        let store = dir.path().join("folio");
        let workload = format!("6 replay of the bulk store ({} tx)", self.sizes.bulk_tx);
        for _ in 0..self.args.runs {
            let started = Instant::now();
            let applied = folio::replay::rebuild_state(Arc::new(RealFs), &store, &mut |_, _| {})?;
            let seconds = started.elapsed().as_secs_f64();
            self.record_folio(
                &workload,
                "rebuild state entries/s",
                applied as f64 / seconds,
            );
            let started = Instant::now();
            let report =
                folio::verify::verify_store(Arc::new(RealFs), &store, &[], &mut |_, _| {})?;
            let seconds = started.elapsed().as_secs_f64();
            if !report.ok {
                return Err(format!("verify failed: {:?}", report.first_failure).into());
            }
            self.record_folio(
                &workload,
                "verify entries/s",
                report.entries as f64 / seconds,
            );
        }
        Ok(())
    }

    /// A child process posts the tail with checkpoints disabled (so the state's redb commits,
    /// all `Durability::None`, are never made durable) and is killed with SIGKILL; the parent
    /// then times `Ledger::open_with`, which replays the tail into the state.
    fn reopen(&mut self) -> Result<()> {
        let tail = self.sizes.reopen_tail_entries;
        let workload = "6 reopen after SIGKILL";
        for _ in 0..self.args.runs {
            let dir = self.fresh_dir()?;
            let store = dir.path().join("folio");
            kill_a_writer(&store, tail)?;
            let started = Instant::now();
            let ledger = Ledger::open_with(Arc::new(RealFs), &store, LedgerOptions::default())?;
            let seconds = started.elapsed().as_secs_f64();
            let caught_up = ledger.open_report().entries_caught_up;
            ledger.close()?;
            if caught_up < tail as u64 {
                return Err(format!("only {caught_up} entries past the watermark").into());
            }
            self.record_folio(workload, "entries past watermark", caught_up as f64);
            self.record_folio(workload, "open s", seconds);
            self.record_folio(workload, "catch-up entries/s", caught_up as f64 / seconds);
        }
        Ok(())
    }
}

impl Bench {
    /// A store as a till keeps it for years: a demo store (`folio demo`) of `scale_tx`
    /// transactions, or `--scale-entries N`; then what the commands an operator and an auditor
    /// run on it cost, each a `folio` process: wall time and peak RSS.
    fn scale(&mut self) -> Result<()> {
        let transactions = self.args.scale_entries.unwrap_or(self.sizes.scale_tx);
        let dir = self.fresh_dir()?;
        let store = dir.path().join("folio");
        let store_arg = store.to_string_lossy().to_string();
        let count = transactions.to_string();
        folio_process(&["demo", "--store", &store_arg, "--transactions", &count])?;
        let head = folio_process(&["head", "--store", &store_arg, "--json"])?;
        let head: serde_json::Value = serde_json::from_slice(&head.stdout)?;
        let entries = head["seq"].as_f64().ok_or("no seq in folio head --json")?;
        let now = folio::Timestamp::now().0;
        let day_micros = 86_400_000_000;
        let from = folio::Timestamp(now - day_micros).to_rfc3339();
        let to = folio::Timestamp(now + 60_000_000).to_rfc3339();
        let workload = format!("7 scale, demo store of {transactions} tx");
        let commands: [(&str, Vec<&str>); 5] = [
            ("head", vec!["head"]),
            ("balance", vec!["balance", "--ledger", "pos", "till:1:cash"]),
            (
                "statement (1 account, 1 day)",
                vec![
                    "statement",
                    "--ledger",
                    "pos",
                    "bank:main",
                    "--from",
                    &from,
                    "--to",
                    &to,
                ],
            ),
            ("trial balance", vec!["trial-balance", "--ledger", "pos"]),
            ("verify", vec!["verify"]),
        ];
        for _ in 0..self.args.runs {
            for (name, args) in &commands {
                let mut full = args.clone();
                full.extend(["--store", store_arg.as_str(), "--format", "json"]);
                if matches!(*name, "head" | "balance" | "verify") {
                    // These take --json rather than --format.
                    full.truncate(full.len() - 2);
                    full.push("--json");
                }
                let run = folio_process(&full)?;
                self.record_folio(&workload, &format!("{name} s"), run.seconds);
                self.record_folio(&workload, &format!("{name} peak RSS MiB"), run.peak_rss_mib);
                if *name == "verify" {
                    self.record_folio(&workload, "verify entries/s", entries / run.seconds);
                }
            }
        }
        Ok(())
    }
}

/// What one `folio` process did.
struct FolioRun {
    stdout: Vec<u8>,
    seconds: f64,
    peak_rss_mib: f64,
}

/// Runs the `folio` binary with `args` to its end; its wall time and peak RSS (`wait4`'s
/// `ru_maxrss`, the child's own). A failure is an error with its stderr.
fn folio_process(args: &[&str]) -> Result<FolioRun> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // stderr on a thread of its own, so that neither pipe fills while the other is read.
    let stderr_reader = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut bytes);
            bytes
        })
    });
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_end(&mut out, &mut stdout)?;
    }
    let stderr = stderr_reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills; the pid is our own child's, not
    // waited for before (std's `Child` is dropped without a wait).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if waited != pid {
        return Err(format!("wait4 on folio {args:?} failed").into());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(format!("folio {args:?} failed ({status}): {stderr}").into());
    }
    Ok(FolioRun {
        stdout,
        seconds,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// Runs this binary as `--child-writer STORE COUNT`, waits for it to say it posted, and kills
/// it (SIGKILL: no destructor, no close, no checkpoint).
fn kill_a_writer(store: &Path, count: usize) -> Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child-writer")
        .arg(store)
        .arg(count.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the child writer")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    child.kill()?;
    child.wait()?;
    if !line.starts_with("posted") {
        return Err(format!("the child writer said {line:?}").into());
    }
    Ok(())
}

/// The child side of `kill_a_writer`: creates the store, posts `COUNT` transactions in batches
/// of 1,000 with checkpoints disabled, says so, and waits to be killed.
fn child_writer(raw: &[String]) -> Result<()> {
    let [store, count] = raw else {
        return Err("usage: --child-writer STORE COUNT".into());
    };
    let count: usize = count.parse()?;
    let options = LedgerOptions {
        checkpoint_groups: u32::MAX,
        checkpoint_interval: Duration::MAX,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::create_with(Arc::new(RealFs), Path::new(store), options)?;
    let mut session = FolioSession {
        ledger: ledger.clone(),
    };
    post_batches(&mut session, WORLD, "t", count, 1000)?;
    let watermark = ledger.watermark()?.seq;
    println!(
        "posted {count}, head {}, watermark {watermark}",
        ledger.head().seq
    );
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------------------------
// The limits of the machine: what no store on this disk and CPU can beat.

#[derive(Debug, Clone, Copy)]
enum AppendFile {
    /// An empty file that grows with every append (each fdatasync also journals the size).
    Growing,
    /// Reserved with `posix_fallocate` (through Folio's own `RealFs`), as Folio's segments are:
    /// unwritten extents, converted as they are written.
    Fallocated,
    /// Written with zeros and synced beforehand: an append only overwrites data blocks.
    ZeroFilled,
}

impl AppendFile {
    fn name(self) -> &'static str {
        match self {
            AppendFile::Growing => "growing file",
            AppendFile::Fallocated => "fallocated file",
            AppendFile::ZeroFilled => "zero-filled file",
        }
    }
}

/// Latency of each of `ops` appends of a 256-byte record, each followed by `fdatasync`.
fn append_latencies(dir: &Path, kind: AppendFile, ops: usize) -> Result<Vec<Duration>> {
    let file: Arc<dyn VfsFile> = RealFs.open(&dir.join("append.bin"), OpenMode::CreateNew)?;
    let length_bytes = (ops * APPEND_RECORD_BYTES) as u64;
    match kind {
        AppendFile::Growing => {}
        AppendFile::Fallocated => file.allocate(length_bytes)?,
        AppendFile::ZeroFilled => file.write_all_at(&vec![0u8; length_bytes as usize], 0)?,
    }
    file.sync_data()?;
    RealFs.sync_dir(dir)?;
    let record = [0xa5u8; APPEND_RECORD_BYTES];
    let mut latencies = Vec::with_capacity(ops);
    for index in 0..ops {
        let started = Instant::now();
        file.write_all_at(&record, (index * APPEND_RECORD_BYTES) as u64)?;
        file.sync_data()?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

/// Sequential writes of 1 MiB, each followed by `fdatasync`, into a growing file: MiB/s.
fn bandwidth_mib_per_second(dir: &Path, mib: usize) -> Result<f64> {
    let file = RealFs.open(&dir.join("bandwidth.bin"), OpenMode::CreateNew)?;
    let chunk: Vec<u8> = (0..1 << 20).map(|at| (at % 251) as u8).collect();
    let started = Instant::now();
    for index in 0..mib {
        file.write_all_at(&chunk, (index as u64) << 20)?;
        file.sync_data()?;
    }
    Ok(mib as f64 / started.elapsed().as_secs_f64())
}

/// Chained blake3 over 200-byte records on one core: `hash = blake3(hash || record)`.
fn chained_hashes_per_second(records: usize) -> f64 {
    let record = [0x5au8; HASH_RECORD_BYTES];
    let mut hash = [0u8; 32];
    let started = Instant::now();
    for _ in 0..records {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&hash);
        hasher.update(&record);
        hash = *hasher.finalize().as_bytes();
    }
    let seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(hash);
    records as f64 / seconds
}

impl Bench {
    fn limits(&mut self) -> Result<()> {
        let ops = self.sizes.append_ops;
        for _ in 0..self.args.runs {
            for kind in [
                AppendFile::Fallocated,
                AppendFile::Growing,
                AppendFile::ZeroFilled,
            ] {
                let dir = self.fresh_dir()?;
                let started = Instant::now();
                let mut latencies = append_latencies(dir.path(), kind, ops)?;
                let seconds = started.elapsed().as_secs_f64();
                latencies.sort();
                let workload = format!("append 256 B + fdatasync, {}", kind.name());
                self.record_limit(&workload, "ops/s", ops as f64 / seconds);
                let p50 = percentile(&latencies, 0.50).as_secs_f64() * 1e6;
                self.record_limit(&workload, "p50 µs", p50);
                let p99 = percentile(&latencies, 0.99).as_secs_f64() * 1e6;
                self.record_limit(&workload, "p99 µs", p99);
            }
            let dir = self.fresh_dir()?;
            let bandwidth = bandwidth_mib_per_second(dir.path(), self.sizes.bandwidth_mib)?;
            self.record_limit("sequential write, fdatasync every MiB", "MiB/s", bandwidth);
            let hashes = chained_hashes_per_second(self.sizes.hash_records);
            self.record_limit("chained blake3, 200 B records, 1 core", "records/s", hashes);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

impl Bench {
    fn report(&self) -> Result<()> {
        let label = if self.args.quick {
            "quick smoke run"
        } else {
            "full run"
        };
        let runs = self.args.runs;
        let rows = &self.results.rows;
        if rows.iter().any(|row| row.scope != Scope::Machine) {
            println!("\nFolio and its peers ({label}, median of {runs} runs)\n");
            print_peer_table(rows);
        }
        if rows.iter().any(|row| row.scope == Scope::Machine) {
            println!("\nLimits of this machine (median of {runs} runs)\n");
            print_limit_table(rows);
        }
        let document = self.json_document();
        if let Some(parent) = self.args.json_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(
            &self.args.json_path,
            serde_json::to_string_pretty(&document)?,
        )?;
        println!();
        println!("figures written to {}", self.args.json_path.display());
        Ok(())
    }

    fn json_document(&self) -> Value {
        let rows: Vec<Value> = self.results.rows.iter().map(row_json).collect();
        json!({
            "quick": self.args.quick,
            "runs": self.args.runs,
            "sizes": self.sizes,
            "machine": machine_json(&self.root),
            "seconds_total": self.started.elapsed().as_secs_f64(),
            "rows": rows,
        })
    }
}

fn medians(row: &Row) -> [Option<f64>; 3] {
    [
        median(&row.samples[0]),
        median(&row.samples[1]),
        median(&row.samples[2]),
    ]
}

fn print_peer_table(rows: &[Row]) {
    let header = [
        "workload",
        "metric",
        "folio",
        "sqlite",
        "redb",
        "folio/sqlite",
        "folio/redb",
    ];
    let mut lines = vec![header.map(str::to_string).to_vec()];
    for row in rows.iter().filter(|row| row.scope != Scope::Machine) {
        let [folio, sqlite, redb] = medians(row);
        lines.push(vec![
            row.workload.clone(),
            row.metric.clone(),
            cell(folio),
            cell(sqlite),
            cell(redb),
            cell(ratio(folio, sqlite)),
            cell(ratio(folio, redb)),
        ]);
    }
    print_markdown(&lines);
}

fn print_limit_table(rows: &[Row]) {
    let mut lines = vec![vec![
        "limit".to_string(),
        "metric".to_string(),
        "value".to_string(),
    ]];
    for row in rows.iter().filter(|row| row.scope == Scope::Machine) {
        let value = median(&row.samples[0]);
        lines.push(vec![row.workload.clone(), row.metric.clone(), cell(value)]);
    }
    print_markdown(&lines);
}

/// Prints rows as a Markdown table, columns padded; text left, figures right.
fn print_markdown(lines: &[Vec<String>]) {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|at| {
            lines
                .iter()
                .map(|line| line[at].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let render = |line: &[String]| {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(at, (text, &width))| match at {
                0 | 1 => format!("{text:<width$}"),
                _ => format!("{text:>width$}"),
            })
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    for (at, line) in lines.iter().enumerate() {
        println!("{}", render(line));
        if at == 0 {
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(column, &width)| match column {
                    0 | 1 => "-".repeat(width),
                    _ => format!("{}:", "-".repeat(width.saturating_sub(1))),
                })
                .collect();
            println!("| {} |", rule.join(" | "));
        }
    }
}

fn row_json(row: &Row) -> Value {
    let [folio, sqlite, redb] = medians(row);
    let scope = match row.scope {
        Scope::Peers => "peers",
        Scope::FolioOnly => "folio",
        Scope::Machine => {
            return json!({
                "workload": row.workload,
                "metric": row.metric,
                "scope": "machine",
                "value": folio,
                "samples": row.samples[0],
            });
        }
    };
    let samples: BTreeMap<&str, &Vec<f64>> = Peer::ALL
        .iter()
        .map(|peer| (peer.name(), &row.samples[peer.index()]))
        .filter(|(_, samples)| !samples.is_empty())
        .collect();
    json!({
        "workload": row.workload,
        "metric": row.metric,
        "scope": scope,
        "folio": folio,
        "sqlite": sqlite,
        "redb": redb,
        "folio_over_sqlite": ratio(folio, sqlite),
        "folio_over_redb": ratio(folio, redb),
        "samples": samples,
    })
}

fn machine_json(root: &Path) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string());
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
        "cpu_model": cpu_model,
        "store_fs": fs_type(root),
        "store_dir": root.display().to_string(),
    })
}

/// The type of the file system holding `path` (the longest mount point above it).
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, kind)| kind)
}
