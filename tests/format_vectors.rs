//! The on-disk format is pinned by checked-in vectors (`docs/format.md`, section 9): the code
//! writes exactly their bytes, reads them back as the specification says, and the
//! specification alone (offsets, the crc, the hash input, the body layout, written out here
//! independently of the crate) explains every byte of them. The annotated hex dump in the
//! document is the two-entry vector, byte for byte.
//!
//! `FOLIO_WRITE_VECTORS=1 cargo test --release --test format_vectors` rewrites the vectors
//! and the dump in `docs/format.md` from what the code produces. A vector that changes is a
//! format change, and needs a format version bump (F-61). The vectors of an older version
//! (`tests/vectors/v2/`), which the code no longer writes, are never rewritten: every version
//! the build reads must still open, read back and replay exactly as its specification says.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails on any error"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use folio::ledger::entry::{
    self, AccountMetadataDeleted, AccountMetadataSet, ConsumerAcked, Dec, EntryBody, EventSkipped,
    OverdraftCode, OverdraftSet, PostingEntry, PostingSeq, StoreCreated, TransactionEntry,
    TransactionMetadataDeleted, TransactionMetadataSet, VolumeChange,
};
use folio::log::format;
use folio::log::sim::SimFs;
use folio::log::vfs::{OpenMode, Vfs};
use folio::log::{HASH_ZERO, Hash, LOG_DIR_NAME, Log, LogOptions};
use folio::state::StateOpened;
use folio::{Ledger, LedgerOptions, PostRequest, Posting, Timestamp};
use rust_decimal::Decimal;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const WRITE_ENV: &str = "FOLIO_WRITE_VECTORS";
const STORE: &str = "/store";
/// The smallest segment size: the vectors fit in one segment either way, and `close` trims.
const SEGMENT_BYTES: u64 = 4096;

/// The hash input's domain tag of each version read, spelled out from the specification
/// (F-11, F-60), not the crate.
fn spec_domain_tag(version: u32) -> &'static [u8] {
    match version {
        2 => b"folio-entry-v2",
        3 => b"folio-entry-v3",
        other => panic!("F-03: version {other} is not one the specification describes"),
    }
}

/// The version new segments are written in (section 8).
const SPEC_VERSION: u32 = 3;

/// A fixed store id whose bytes are easy to spot in a dump: `00 11 22 .. ff`.
const STORE_ID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
/// 2026-01-01T00:00:00Z in microseconds.
const CREATED_AT: i64 = 1_767_225_600_000_000;
/// 2026-01-01T09:00:00Z in microseconds: the transaction's given timestamp.
const TX_TIMESTAMP: i64 = 1_767_258_000_000_000;
/// 2026-01-01T09:00:01.5Z in microseconds: when the ledger recorded the transaction.
const INSERTED_AT: i64 = 1_767_258_001_500_000;

/// One checked-in vector: a store's log holding a single segment.
#[derive(Debug, Clone, Copy)]
struct Vector {
    name: &'static str,
    /// The format version it is written in: the current one, or an older one still read.
    version: u32,
    /// The entries, one inner slice per append (batch).
    batches: fn() -> Vec<Vec<EntryBody>>,
}

const TWO_ENTRIES: Vector = Vector {
    name: "two_entries",
    version: SPEC_VERSION,
    batches: two_entries,
};
const EVERY_KIND: Vector = Vector {
    name: "every_kind",
    version: SPEC_VERSION,
    batches: every_kind,
};
/// The vectors of version 2, as version 2 wrote them (frozen: the code writes version 3).
const V2_TWO_ENTRIES: Vector = Vector {
    name: "two_entries",
    version: 2,
    batches: two_entries,
};
const V2_EVERY_KIND: Vector = Vector {
    name: "every_kind",
    version: 2,
    batches: every_kind_v2,
};
/// Every vector the build must read, of every version.
const ALL: [Vector; 4] = [TWO_ENTRIES, EVERY_KIND, V2_TWO_ENTRIES, V2_EVERY_KIND];

impl Vector {
    /// `tests/vectors/<name>/log/00000000000000000001.seg` for the current version,
    /// `tests/vectors/v<version>/<name>/log/...` for an older one.
    fn path(&self) -> PathBuf {
        let mut dir = Path::new(MANIFEST_DIR).join("tests/vectors");
        if self.version != SPEC_VERSION {
            dir = dir.join(format!("v{}", self.version));
        }
        dir.join(self.name)
            .join(LOG_DIR_NAME)
            .join(format::segment_name(1))
    }

    fn bodies(&self) -> Vec<EntryBody> {
        (self.batches)().into_iter().flatten().collect()
    }

    /// The checked-in bytes (written first, from the code, in write mode).
    fn bytes(&self) -> &'static [u8] {
        static CELLS: [OnceLock<Vec<u8>>; 4] = [const { OnceLock::new() }; 4];
        let index = ALL
            .iter()
            .position(|v| v.name == self.name && v.version == self.version)
            .unwrap();
        CELLS[index].get_or_init(|| {
            if write_mode() && self.version == SPEC_VERSION {
                write_vectors();
            }
            std::fs::read(self.path()).unwrap_or_else(|error| {
                panic!("{}: {error}; run with {WRITE_ENV}=1", self.path().display())
            })
        })
    }
}

fn write_mode() -> bool {
    std::env::var_os(WRITE_ENV).is_some_and(|value| value == "1")
}

/// Rewrites both vectors and the dump in `docs/format.md` (write mode only, once).
fn write_vectors() {
    static WRITTEN: OnceLock<()> = OnceLock::new();
    WRITTEN.get_or_init(|| {
        for vector in [TWO_ENTRIES, EVERY_KIND] {
            let path = vector.path();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, build_segment(vector)).unwrap();
        }
        let dump = annotated_dump(&build_segment(TWO_ENTRIES));
        let doc = std::fs::read_to_string(doc_path()).unwrap();
        let (before, _, after) = split_block(&doc, DUMP_BEGIN, DUMP_END);
        let doc = format!("{before}{DUMP_BEGIN}\n```text\n{dump}```\n{DUMP_END}{after}");
        std::fs::write(doc_path(), doc).unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// The entries of the vectors.

fn two_entries() -> Vec<Vec<EntryBody>> {
    vec![vec![store_created()], vec![sale()]]
}

fn store_created() -> EntryBody {
    EntryBody::StoreCreated(StoreCreated {
        store_id: STORE_ID,
        created_at: CREATED_AT,
    })
}

fn dec(text: &str) -> Dec {
    Dec(Decimal::from_str(text).unwrap())
}

fn volume(account: &str, asset: &str, pre: [&str; 2], post: [&str; 2]) -> VolumeChange {
    VolumeChange {
        account: account.into(),
        asset: asset.into(),
        pre_input: dec(pre[0]),
        pre_output: dec(pre[1]),
        post_input: dec(post[0]),
        post_output: dec(post[1]),
    }
}

fn posting(source: &str, destination: &str, amount: &str, asset: &str) -> PostingEntry {
    PostingEntry {
        source: source.into(),
        destination: destination.into(),
        amount: dec(amount),
        asset: asset.into(),
    }
}

fn posting_seq(account: &str, posting_seq: u64) -> PostingSeq {
    PostingSeq {
        account: account.into(),
        posting_seq,
    }
}

fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// What `Ledger::post` writes for [`sale_request`] on a new store.
fn sale() -> EntryBody {
    EntryBody::Transaction(TransactionEntry {
        ledger: "main".into(),
        reference: Some("sale-1".into()),
        timestamp: TX_TIMESTAMP,
        timestamp_given: true,
        inserted_at: INSERTED_AT,
        postings: vec![posting("world", "till:1", "12.5", "USD/2")],
        metadata: metadata(&[("note", "vector")]),
        reverts: None,
        forced: false,
        volumes: vec![
            volume("till:1", "USD/2", ["0", "0"], ["12.5", "0"]),
            volume("world", "USD/2", ["0", "0"], ["0", "12.5"]),
        ],
        posting_seqs: vec![posting_seq("till:1", 1), posting_seq("world", 1)],
    })
}

fn sale_request() -> PostRequest {
    let postings = vec![Posting::new("world", "till:1", "12.50", "USD/2").unwrap()];
    PostRequest::new("main", postings)
        .with_reference("sale-1")
        .with_timestamp(Timestamp(TX_TIMESTAMP))
        .with_metadata("note", "vector")
}

const MAIN: &str = "main";
const ALICE: &str = "users:alice";

/// `INSERTED_AT` plus whole seconds.
fn at(seconds: i64) -> i64 {
    INSERTED_AT + seconds * 1_000_000
}

/// One entry of every kind (and every overdraft code), forming a history the ledger replays:
/// entry 1 alone, then one batch of eleven: version 2's ten, then a consumer skipping entry 2
/// (F-58).
fn every_kind() -> Vec<Vec<EntryBody>> {
    let mut batches = every_kind_v2();
    batches[1].push(EntryBody::EventSkipped(EventSkipped {
        consumer: "backup".into(),
        seq: 2,
        reason: "sent by hand".into(),
        inserted_at: at(11),
    }));
    batches
}

/// Version 2's `every_kind`: every kind that version has, entry 1 alone, then a batch of ten.
fn every_kind_v2() -> Vec<Vec<EntryBody>> {
    let policy = |seconds: i64, policy: OverdraftCode| {
        EntryBody::OverdraftSet(OverdraftSet {
            ledger: MAIN.into(),
            account: ALICE.into(),
            asset: "EUR/2".into(),
            policy,
            inserted_at: at(seconds),
        })
    };
    let batch = vec![
        order(),
        EntryBody::AccountMetadataSet(AccountMetadataSet {
            ledger: MAIN.into(),
            account: ALICE.into(),
            metadata: metadata(&[("tier", "gold")]),
            inserted_at: at(2),
        }),
        EntryBody::AccountMetadataDeleted(AccountMetadataDeleted {
            ledger: MAIN.into(),
            account: ALICE.into(),
            key: "tier".into(),
            inserted_at: at(3),
        }),
        EntryBody::TransactionMetadataSet(TransactionMetadataSet {
            ledger: MAIN.into(),
            id: 2,
            metadata: metadata(&[("shipped", "yes")]),
            inserted_at: at(4),
        }),
        EntryBody::TransactionMetadataDeleted(TransactionMetadataDeleted {
            ledger: MAIN.into(),
            id: 2,
            key: "shipped".into(),
            inserted_at: at(5),
        }),
        policy(6, OverdraftCode::Bounded(dec("50"))),
        policy(7, OverdraftCode::Unbounded),
        policy(8, OverdraftCode::None),
        refund(),
        // An outbox consumer acknowledging everything before it (format version 2).
        EntryBody::ConsumerAcked(ConsumerAcked {
            consumer: "central".into(),
            seq: 10,
            inserted_at: at(10),
        }),
    ];
    vec![vec![store_created()], batch]
}

/// Entry 2 of `every_kind`: two postings, two metadata keys, a reference.
fn order() -> EntryBody {
    EntryBody::Transaction(TransactionEntry {
        ledger: MAIN.into(),
        reference: Some("order-7".into()),
        timestamp: at(1),
        timestamp_given: false,
        inserted_at: at(1),
        postings: vec![
            posting("world", ALICE, "100", "EUR/2"),
            posting(ALICE, "fees", "0.25", "EUR/2"),
        ],
        metadata: metadata(&[("channel", "web"), ("order", "7")]),
        reverts: None,
        forced: false,
        volumes: vec![
            volume("fees", "EUR/2", ["0", "0"], ["0.25", "0"]),
            volume(ALICE, "EUR/2", ["0", "0"], ["100", "0.25"]),
            volume("world", "EUR/2", ["0", "0"], ["0", "100"]),
        ],
        posting_seqs: vec![
            posting_seq("fees", 1),
            posting_seq(ALICE, 2),
            posting_seq("world", 1),
        ],
    })
}

/// The last entry of `every_kind`: a forced revert of entry 2.
fn refund() -> EntryBody {
    EntryBody::Transaction(TransactionEntry {
        ledger: MAIN.into(),
        reference: None,
        timestamp: at(9),
        timestamp_given: false,
        inserted_at: at(9),
        postings: vec![
            posting("fees", ALICE, "0.25", "EUR/2"),
            posting(ALICE, "world", "100", "EUR/2"),
        ],
        metadata: BTreeMap::new(),
        reverts: Some(2),
        forced: true,
        volumes: vec![
            volume("fees", "EUR/2", ["0.25", "0"], ["0.25", "0.25"]),
            volume(ALICE, "EUR/2", ["100", "0.25"], ["100.25", "100.25"]),
            volume("world", "EUR/2", ["0", "100"], ["100", "100"]),
        ],
        posting_seqs: vec![
            posting_seq("fees", 2),
            posting_seq(ALICE, 4),
            posting_seq("world", 2),
        ],
    })
}

// ---------------------------------------------------------------------------------------------
// Building with the code, and opening with the code.

fn segment_path() -> PathBuf {
    Path::new(STORE)
        .join(LOG_DIR_NAME)
        .join(format::segment_name(1))
}

fn log_options(read_only: bool) -> LogOptions {
    LogOptions {
        segment_bytes: SEGMENT_BYTES,
        read_only,
        ..LogOptions::default()
    }
}

/// The segment the code writes for the vector's batches: create, append each batch, close.
fn build_segment(vector: Vector) -> Vec<u8> {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    let log = Log::create(Arc::new(fs.clone()), Path::new(STORE), log_options(false)).unwrap();
    for batch in (vector.batches)() {
        let bodies: Vec<Vec<u8>> = batch
            .iter()
            .map(|body| entry::encode(body).unwrap())
            .collect();
        log.append(&bodies).unwrap();
    }
    log.close().unwrap();
    fs.file_bytes(&segment_path()).unwrap()
}

/// A simulated disk holding `bytes` as the only segment of the store at [`STORE`].
fn disk_with_segment(bytes: &[u8]) -> SimFs {
    let fs = SimFs::new(2);
    fs.create_dir_all(&Path::new(STORE).join(LOG_DIR_NAME))
        .unwrap();
    drop(fs.open(&segment_path(), OpenMode::CreateNew).unwrap());
    assert!(fs.set_file_bytes(&segment_path(), bytes.to_vec()));
    fs
}

fn open_log(fs: &SimFs, read_only: bool) -> Log {
    Log::open(
        Arc::new(fs.clone()),
        Path::new(STORE),
        log_options(read_only),
    )
    .unwrap()
}

fn fixed_clock(at: i64) -> LedgerOptions {
    LedgerOptions {
        segment_bytes: SEGMENT_BYTES,
        clock: Arc::new(move || at),
        ..LedgerOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The specification, written out independently of the crate: a walker over a segment's bytes
// that checks every rule it can on the way and labels every byte.

/// A run of bytes of the file and what it is; a heading when `len` is zero.
#[derive(Debug)]
struct Field {
    offset: usize,
    len: usize,
    label: String,
}

/// What the walker read of one record.
#[derive(Debug, Clone)]
struct SpecRecord {
    offset: usize,
    crc32: u32,
    seq: u64,
    batch_first_seq: u64,
    previous_hash: Hash,
    block_hash: Hash,
    body: Vec<u8>,
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    fields: Vec<Field>,
    /// The segment's version, from its header.
    version: u32,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Walker {
            bytes,
            at: 0,
            fields: Vec::new(),
            version: 0,
        }
    }

    fn heading(&mut self, text: String) {
        self.fields.push(Field {
            offset: self.at,
            len: 0,
            label: text,
        });
    }

    /// Takes `len` bytes as one field, labelled by `label` once their value is known.
    fn take(&mut self, len: usize) -> &'a [u8] {
        let end = self.at + len;
        assert!(
            end <= self.bytes.len(),
            "field at {} runs past the end",
            self.at
        );
        let taken = &self.bytes[self.at..end];
        self.fields.push(Field {
            offset: self.at,
            len,
            label: String::new(),
        });
        self.at = end;
        taken
    }

    fn label(&mut self, text: String) {
        self.fields.last_mut().unwrap().label = text;
    }

    fn u32(&mut self, name: &str) -> u32 {
        let value = u32::from_le_bytes(self.take(4).try_into().unwrap());
        self.label(format!("{name} = {value}"));
        value
    }

    fn u64(&mut self, name: &str) -> u64 {
        let value = u64::from_le_bytes(self.take(8).try_into().unwrap());
        self.label(format!("{name} = {value}"));
        value
    }

    fn i64(&mut self, name: &str) -> i64 {
        let value = i64::from_le_bytes(self.take(8).try_into().unwrap());
        self.label(format!("{name} = {value}"));
        value
    }

    fn hash(&mut self, name: &str) -> Hash {
        let value: Hash = self.take(32).try_into().unwrap();
        let zero = if value == HASH_ZERO {
            " (all zeros)"
        } else {
            ""
        };
        self.label(format!("{name}{zero}"));
        value
    }

    // -- The segment header (section 3) and records (section 4).

    fn header(&mut self) -> (u64, Hash) {
        self.heading("segment header (64 bytes)".into());
        let magic = self.take(8);
        assert_eq!(magic, b"FOLIOSEG", "F-02");
        self.label("magic = \"FOLIOSEG\"".into());
        self.version = self.u32("version");
        assert!([2, 3].contains(&self.version), "F-03");
        assert_eq!(self.u32("header_bytes"), 64, "F-04");
        let first_seq = self.u64("first_seq");
        assert!(first_seq >= 1, "F-07");
        let previous_hash = self.hash("previous_hash");
        if first_seq == 1 {
            assert_eq!(previous_hash, HASH_ZERO, "F-08");
        }
        assert_eq!(self.u32("reserved"), 0, "F-05");
        let crc = u32::from_le_bytes(self.take(4).try_into().unwrap());
        self.label(format!("crc32 of bytes 0..60 = 0x{crc:08x}"));
        assert_eq!(crc, crc32fast::hash(&self.bytes[0..60]), "F-06");
        assert_eq!(self.at, 64);
        (first_seq, previous_hash)
    }

    fn record(&mut self, number: usize) -> SpecRecord {
        let offset = self.at;
        let length = u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().unwrap());
        self.heading(format!(
            "record {number} at offset {offset}: {} bytes",
            8 + length as usize
        ));
        self.u32("length (bytes after the crc)");
        assert!((80..=80 + (1 << 20)).contains(&length), "F-21");
        let crc32 = u32::from_le_bytes(self.take(4).try_into().unwrap());
        self.label(format!(
            "crc32 of the {length} bytes that follow = 0x{crc32:08x}"
        ));
        let payload = &self.bytes[self.at..self.at + length as usize];
        assert_eq!(
            crc32,
            crc32fast::hash(payload),
            "F-20: the crc covers the payload"
        );
        let seq = self.u64("seq");
        let batch_first_seq = self.u64("batch_first_seq");
        let previous_hash = self.hash("previous_hash");
        let block_hash = self.hash("block_hash");
        let body_at = self.at;
        let body_end = offset + 8 + length as usize;
        let body = self.bytes[body_at..body_end].to_vec();
        self.heading(format!("body: {} bytes", body.len()));
        self.entry_body();
        assert_eq!(self.at, body_end, "F-51: the body is exactly one EntryBody");
        SpecRecord {
            offset,
            crc32,
            seq,
            batch_first_seq,
            previous_hash,
            block_hash,
            body,
        }
    }

    // -- Entry bodies (section 7): bincode 2, little-endian, fixed-width integers.

    fn string(&mut self, name: &str) -> String {
        let len = self.u64(&format!("{name}: length")) as usize;
        if len == 0 {
            return String::new();
        }
        let text = std::str::from_utf8(self.take(len)).expect("F-55: strings are UTF-8");
        let text = text.to_string();
        self.label(format!("{name} = {text:?}"));
        text
    }

    fn option_tag(&mut self, name: &str) -> bool {
        let tag = self.take(1)[0];
        assert!(tag <= 1, "F-55: an option tag is 0 or 1");
        self.label(format!(
            "{name}: {}",
            if tag == 1 { "Some" } else { "None" }
        ));
        tag == 1
    }

    fn bool(&mut self, name: &str) -> bool {
        let value = self.take(1)[0];
        assert!(value <= 1, "F-55: a bool is 0 or 1");
        self.label(format!("{name} = {}", value == 1));
        value == 1
    }

    fn dec(&mut self, name: &str) {
        let mantissa = i128::from_le_bytes(self.take(16).try_into().unwrap());
        self.label(format!("{name}: mantissa = {mantissa}"));
        let scale = u32::from_le_bytes(self.take(4).try_into().unwrap());
        assert!(scale <= 28, "F-52: scale at most 28");
        assert!(
            mantissa.unsigned_abs() < 1 << 96,
            "F-52: mantissa within 96 bits"
        );
        assert!(scale == 0 || mantissa % 10 != 0, "F-52: no trailing zero");
        let value = Decimal::from_i128_with_scale(mantissa, scale);
        self.label(format!("{name}: scale = {scale} (value {value})"));
    }

    fn metadata(&mut self, name: &str) {
        let entries = self.u64(&format!("{name}: entries"));
        let mut previous: Option<String> = None;
        for _ in 0..entries {
            let key = self.string(&format!("{name}: key"));
            assert!(
                previous.is_none_or(|p| p < key),
                "F-54: keys sorted, unique"
            );
            self.string(&format!("{name}[{key:?}]"));
            previous = Some(key);
        }
    }

    fn entry_body(&mut self) {
        let kinds = [
            "StoreCreated",
            "Transaction",
            "AccountMetadataSet",
            "AccountMetadataDeleted",
            "TransactionMetadataSet",
            "TransactionMetadataDeleted",
            "OverdraftSet",
            "ConsumerAcked",
            "EventSkipped",
        ];
        let variant = u32::from_le_bytes(self.take(4).try_into().unwrap());
        let kind = kinds.get(variant as usize).expect("F-53: a known variant");
        assert!(
            variant < 8 || self.version >= 3,
            "F-53: kind 8 from version 3 on"
        );
        self.label(format!("variant = {variant}: {kind}"));
        match variant {
            0 => {
                self.take(16);
                self.label("store_id".into());
                self.i64("created_at");
            }
            1 => self.transaction(),
            2 => {
                self.string("ledger");
                self.string("account");
                self.metadata("metadata");
                self.i64("inserted_at");
            }
            3 => {
                self.string("ledger");
                self.string("account");
                self.string("key");
                self.i64("inserted_at");
            }
            4 => {
                self.string("ledger");
                self.u64("id");
                self.metadata("metadata");
                self.i64("inserted_at");
            }
            5 => {
                self.string("ledger");
                self.u64("id");
                self.string("key");
                self.i64("inserted_at");
            }
            7 => {
                self.string("consumer");
                self.u64("seq");
                self.i64("inserted_at");
            }
            8 => {
                self.string("consumer");
                self.u64("seq");
                self.string("reason");
                self.i64("inserted_at");
            }
            _ => {
                self.string("ledger");
                self.string("account");
                self.string("asset");
                let code = self.u32("policy: variant");
                assert!(code <= 2, "F-53: an overdraft code is 0, 1 or 2");
                if code == 1 {
                    self.dec("policy: limit");
                }
                self.i64("inserted_at");
            }
        }
    }

    fn transaction(&mut self) {
        self.string("ledger");
        if self.option_tag("reference") {
            self.string("reference");
        }
        self.i64("timestamp");
        self.bool("timestamp_given");
        self.i64("inserted_at");
        let postings = self.u64("postings: count");
        for index in 0..postings {
            let name = format!("postings[{index}]");
            self.string(&format!("{name}.source"));
            self.string(&format!("{name}.destination"));
            self.dec(&format!("{name}.amount"));
            self.string(&format!("{name}.asset"));
        }
        self.metadata("metadata");
        if self.option_tag("reverts") {
            self.u64("reverts");
        }
        self.bool("forced");
        let volumes = self.u64("volumes: count");
        for index in 0..volumes {
            let name = format!("volumes[{index}]");
            self.string(&format!("{name}.account"));
            self.string(&format!("{name}.asset"));
            for side in ["pre_input", "pre_output", "post_input", "post_output"] {
                self.dec(&format!("{name}.{side}"));
            }
        }
        let seqs = self.u64("posting_seqs: count");
        for index in 0..seqs {
            self.string(&format!("posting_seqs[{index}].account"));
            self.u64(&format!("posting_seqs[{index}].posting_seq"));
        }
    }
}

/// The block hash by the specification: `blake3(tag || seq u64 LE || previous_hash || body)`,
/// the tag that of the segment's version.
fn spec_block_hash(version: u32, seq: u64, previous_hash: &Hash, body: &[u8]) -> Hash {
    let mut input = Vec::new();
    input.extend_from_slice(spec_domain_tag(version));
    input.extend_from_slice(&seq.to_le_bytes());
    input.extend_from_slice(previous_hash);
    input.extend_from_slice(body);
    *blake3::hash(&input).as_bytes()
}

/// Walks a whole trimmed segment by the specification, checking the chain (F-10..F-13).
fn walk_segment(bytes: &[u8]) -> (Vec<SpecRecord>, Vec<Field>) {
    let mut walker = Walker::new(bytes);
    let (first_seq, header_previous) = walker.header();
    let mut records: Vec<SpecRecord> = Vec::new();
    while walker.at < bytes.len() {
        let record = walker.record(records.len() + 1);
        let previous = records.last();
        let expected_seq = previous.map_or(first_seq, |p| p.seq + 1);
        assert_eq!(record.seq, expected_seq, "F-10");
        let expected_previous = previous.map_or(header_previous, |p| p.block_hash);
        assert_eq!(record.previous_hash, expected_previous, "F-12");
        let recomputed = spec_block_hash(
            walker.version,
            record.seq,
            &record.previous_hash,
            &record.body,
        );
        assert_eq!(record.block_hash, recomputed, "F-11");
        let starts_batch = record.batch_first_seq == record.seq;
        let continues = previous.is_some_and(|p| p.batch_first_seq == record.batch_first_seq);
        assert!(starts_batch || continues, "F-13");
        records.push(record);
    }
    (records, walker.fields)
}

/// The annotated hex dump of a segment, as embedded in `docs/format.md`: one field per line
/// (16 bytes at most; longer fields continue on unlabelled lines), headings as `#` lines.
fn annotated_dump(bytes: &[u8]) -> String {
    let (_, fields) = walk_segment(bytes);
    let mut out = String::new();
    for field in &fields {
        if field.len == 0 {
            out.push_str(&format!("# {}\n", field.label));
            continue;
        }
        let run = &bytes[field.offset..field.offset + field.len];
        for (index, chunk) in run.chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let offset = field.offset + index * 16;
            let line = format!("{offset:04x}  {:<47}", hex.join(" "));
            if index == 0 {
                out.push_str(&format!("{line}  # {}\n", field.label));
            } else {
                out.push_str(&format!("{}\n", line.trim_end()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The document.

const DUMP_BEGIN: &str =
    "<!-- vector two_entries: begin (generated by tests/format_vectors.rs) -->";
const DUMP_END: &str = "<!-- vector two_entries: end -->";
const CONSTANTS_BEGIN: &str = "<!-- constants: begin -->";
const CONSTANTS_END: &str = "<!-- constants: end -->";
const DEC_BEGIN: &str = "<!-- decimal examples: begin -->";
const DEC_END: &str = "<!-- decimal examples: end -->";
const DEC_REFUSED_BEGIN: &str = "<!-- refused decimals: begin -->";
const DEC_REFUSED_END: &str = "<!-- refused decimals: end -->";

fn doc_path() -> PathBuf {
    Path::new(MANIFEST_DIR).join("docs/format.md")
}

fn doc() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        // In write mode the dumps are rewritten first.
        TWO_ENTRIES.bytes();
        summary_vector();
        std::fs::read_to_string(doc_path()).unwrap()
    })
}

/// Splits `text` around the one block between `begin` and `end` (markers excluded).
fn split_block<'t>(text: &'t str, begin: &str, end: &str) -> (&'t str, &'t str, &'t str) {
    assert_eq!(text.matches(begin).count(), 1, "exactly one {begin}");
    assert_eq!(text.matches(end).count(), 1, "exactly one {end}");
    let start = text.find(begin).unwrap();
    let stop = text.find(end).unwrap();
    assert!(start < stop, "{begin} comes before {end}");
    (
        &text[..start],
        &text[start + begin.len()..stop],
        &text[stop + end.len()..],
    )
}

/// The bytes of a dump: each line is `offset  hex bytes  # label`; `#` lines and the code
/// fence are skipped, and every offset must be where the previous line ended.
fn parse_dump(block: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in block.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("```") {
            continue;
        }
        let data = line.split('#').next().unwrap();
        let mut tokens = data.split_whitespace();
        let offset = usize::from_str_radix(tokens.next().unwrap(), 16)
            .unwrap_or_else(|_| panic!("a dump line starts with its offset: {line:?}"));
        assert_eq!(
            offset,
            bytes.len(),
            "dump line at the wrong offset: {line:?}"
        );
        for token in tokens {
            assert_eq!(token.len(), 2, "a byte is two hex digits: {line:?}");
            bytes.push(u8::from_str_radix(token, 16).unwrap());
        }
    }
    bytes
}

/// The rows of a markdown table: cells trimmed, backticks removed, header and rule skipped.
fn table_rows(block: &str) -> Vec<Vec<String>> {
    block
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect()
}

fn parse_hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn the_code_writes_exactly_the_checked_in_vectors() {
    for vector in [TWO_ENTRIES, EVERY_KIND] {
        let built = build_segment(vector);
        assert!(
            built == vector.bytes(),
            "the code no longer writes tests/vectors/{}: the on-disk format changed. If that is \
             intended, bump FORMAT_VERSION and regenerate with {WRITE_ENV}=1 (docs/format.md, \
             section 8)",
            vector.name
        );
    }
}

#[test]
fn the_vectors_of_every_version_read_open_and_read_back_entry_by_entry() {
    for vector in ALL {
        let bytes = vector.bytes();
        let (spec, _) = walk_segment(bytes);
        let fs = disk_with_segment(bytes);
        let log = open_log(&fs, true);
        assert!(
            log.recovery_report().cuts.is_empty(),
            "{}: nothing to cut",
            vector.name
        );
        let bodies = vector.bodies();
        let head = log.head();
        assert_eq!(head.seq, bodies.len() as u64);
        assert_eq!(head.block_hash, spec.last().unwrap().block_hash);
        let entries: Vec<_> = log.iter_from(1).map(Result::unwrap).collect();
        assert_eq!(entries.len(), bodies.len());
        for ((entry, body), record) in entries.iter().zip(&bodies).zip(&spec) {
            assert_eq!(entry.seq, record.seq);
            assert_eq!(entry.version, vector.version, "F-03");
            assert_eq!(entry.batch_first_seq, record.batch_first_seq);
            assert_eq!(entry.previous_hash, record.previous_hash);
            assert_eq!(entry.block_hash, record.block_hash);
            assert_eq!(entry.body, record.body);
            assert_eq!(&entry::decode::<EntryBody>(&entry.body).unwrap(), body);
            assert_eq!(log.read(entry.seq).unwrap(), *entry);
        }
    }
}

#[test]
fn the_two_entry_vector_holds_the_documented_entries() {
    let (records, _) = walk_segment(TWO_ENTRIES.bytes());
    let summary: Vec<_> = records
        .iter()
        .map(|r| (r.offset, r.seq, r.batch_first_seq, r.body.len()))
        .collect();
    // Offsets and sizes as section 9 of docs/format.md describes them: two batches of one.
    let first_len = 8 + 80 + 28;
    assert_eq!(summary, [(64, 1, 1, 28), (64 + first_len, 2, 2, 424)]);
    assert_eq!(records[0].previous_hash, HASH_ZERO);
    assert_eq!(records[1].previous_hash, records[0].block_hash);
    assert_eq!(TWO_ENTRIES.bytes().len(), 64 + first_len + 8 + 80 + 424);
}

#[test]
fn the_header_fields_lie_at_the_documented_offsets() {
    let bytes = TWO_ENTRIES.bytes();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(&bytes[0..8], b"FOLIOSEG");
    assert_eq!(u32_at(8), SPEC_VERSION, "version");
    let v2 = V2_TWO_ENTRIES.bytes();
    assert_eq!(v2[8..12], 2u32.to_le_bytes(), "version of the v2 vector");
    assert_eq!(u32_at(12), 64, "header_bytes");
    assert_eq!(
        u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        1,
        "first_seq"
    );
    assert_eq!(
        bytes[24..56],
        [0u8; 32],
        "previous_hash of the first segment"
    );
    assert_eq!(u32_at(56), 0, "reserved");
    assert_eq!(
        u32_at(60),
        crc32fast::hash(&bytes[0..60]),
        "crc32 of bytes 0..60"
    );
}

#[test]
fn every_crc_and_block_hash_recomputes_from_the_specification_alone() {
    for vector in ALL {
        let bytes = vector.bytes();
        // The walker asserts each rule as it goes; here the same, spelled out for a reader.
        let (records, _) = walk_segment(bytes);
        let mut previous = HASH_ZERO;
        for record in &records {
            let at = record.offset;
            let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let stored_crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
            assert_eq!(stored_crc, record.crc32);
            assert_eq!(crc32fast::hash(&bytes[at + 8..at + 8 + length]), stored_crc);
            assert_eq!(length, 80 + record.body.len());
            let mut hasher = blake3::Hasher::new();
            hasher.update(format!("folio-entry-v{}", vector.version).as_bytes());
            hasher.update(&record.seq.to_le_bytes());
            hasher.update(&previous);
            hasher.update(&record.body);
            assert_eq!(*hasher.finalize().as_bytes(), record.block_hash);
            previous = record.block_hash;
        }
    }
}

#[test]
fn the_hex_dump_in_the_document_is_the_two_entry_vector() {
    let (_, block, _) = split_block(doc(), DUMP_BEGIN, DUMP_END);
    assert!(
        parse_dump(block) == TWO_ENTRIES.bytes(),
        "the dump in docs/format.md differs from tests/vectors/two_entries; regenerate both \
         with {WRITE_ENV}=1"
    );
}

#[test]
fn reopening_and_closing_a_vector_leaves_its_bytes_unchanged() {
    // An open without an append leaves a segment of an older version as it is (F-40).
    for vector in ALL {
        let fs = disk_with_segment(vector.bytes());
        for _ in 0..2 {
            let log = open_log(&fs, false);
            assert!(log.recovery_report().cuts.is_empty());
            // Open preallocates: the tail reads as zeros, "no record yet" (F-22, F-41).
            let grown = fs.file_bytes(&segment_path()).unwrap();
            assert_eq!(grown.len() as u64, SEGMENT_BYTES);
            assert!(grown[vector.bytes().len()..].iter().all(|b| *b == 0));
            log.close().unwrap();
            assert!(fs.file_bytes(&segment_path()).unwrap() == vector.bytes());
        }
    }
}

#[test]
fn the_ledger_writes_the_vector_transaction_byte_for_byte() {
    assert_eq!(
        Timestamp::parse("2026-01-01T00:00:00Z").unwrap().0,
        CREATED_AT
    );
    assert_eq!(
        Timestamp::parse("2026-01-01T09:00:00Z").unwrap().0,
        TX_TIMESTAMP
    );
    assert_eq!(
        Timestamp::parse("2026-01-01T09:00:01.5Z").unwrap().0,
        INSERTED_AT
    );
    let fs = SimFs::new(3);
    let ledger = Ledger::create_with(
        Arc::new(fs.clone()),
        Path::new(STORE),
        fixed_clock(INSERTED_AT),
    )
    .unwrap();
    let receipt = ledger.post(sale_request()).unwrap();
    assert_eq!(receipt.id, 2);
    let written = ledger.log().read(2).unwrap().body;
    assert_eq!(entry::decode::<EntryBody>(&written).unwrap(), sale());
    assert!(written == entry::encode(&sale()).unwrap());
    ledger.close().unwrap();
}

#[test]
fn the_ledger_opens_the_vectors_and_replays_them() {
    let clock = Arc::new(AtomicI64::new(at(60)));
    let options = LedgerOptions {
        clock: Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
        ..fixed_clock(0)
    };
    let expected = [
        (TWO_ENTRIES, "till:1", "USD/2", "12.5"),
        (EVERY_KIND, ALICE, "EUR/2", "0"),
        (V2_TWO_ENTRIES, "till:1", "USD/2", "12.5"),
        (V2_EVERY_KIND, ALICE, "EUR/2", "0"),
    ];
    for (vector, account, asset, balance) in expected {
        // No state.redb: the ledger rebuilds it from the log, checking each entry's effects.
        let fs = disk_with_segment(vector.bytes());
        let ledger = Ledger::open_with(Arc::new(fs), Path::new(STORE), options.clone()).unwrap();
        let report = ledger.open_report();
        assert!(matches!(report.state, StateOpened::Rebuilt { .. }));
        assert_eq!(report.entries_caught_up, vector.bodies().len() as u64);
        assert_eq!(ledger.store_id(), STORE_ID);
        let balances = ledger.balance(MAIN, account).unwrap();
        assert_eq!(balances[asset], Decimal::from_str(balance).unwrap());
        ledger.close().unwrap();
    }
}

/// F-40: a writer never appends to a segment of an older version: the first append to a
/// version 2 log seals its segment (untouched, the close trims it as a roll does) and rolls to
/// a version 3 one, and the chain runs on across the boundary (F-08, F-12).
#[test]
fn the_first_append_to_a_version_2_log_rolls_to_a_version_3_segment() {
    let fs = disk_with_segment(V2_TWO_ENTRIES.bytes());
    let log = open_log(&fs, false);
    let head = log.head();
    let appended = log.append(&[b"opaque".to_vec()]).unwrap();
    assert_eq!(appended[0].previous_hash, head.block_hash, "F-12");
    let names = log.segment_names();
    assert_eq!(names, [format::segment_name(1), format::segment_name(3)]);
    log.close().unwrap();
    drop(log);
    assert!(fs.file_bytes(&segment_path()).unwrap() == V2_TWO_ENTRIES.bytes());
    let second = Path::new(STORE).join(LOG_DIR_NAME).join(&names[1]);
    let second = fs.file_bytes(&second).unwrap();
    assert_eq!(second[8..12], 3u32.to_le_bytes(), "F-03");
    let log = open_log(&fs, true);
    let versions: Vec<(u64, u32)> = log
        .iter_from(1)
        .map(|entry| entry.map(|entry| (entry.seq, entry.version)).unwrap())
        .collect();
    assert_eq!(versions, [(1, 2), (2, 2), (3, 3)]);
    let third = log.read(3).unwrap();
    let tag_v3 = spec_block_hash(3, 3, &third.previous_hash, b"opaque");
    assert_eq!(
        third.block_hash, tag_v3,
        "F-11: hashed with the tag of its segment"
    );
}

/// F-40: a version 2 segment without records (a log just rolled, or never written) takes
/// the current header in place, since a new segment would have its name.
#[test]
fn a_version_2_segment_without_records_takes_the_version_3_header_in_place() {
    let fs = disk_with_segment(&V2_TWO_ENTRIES.bytes()[..format::HEADER_BYTES]);
    let log = open_log(&fs, false);
    assert_eq!(log.head().seq, 0);
    log.append(&[b"first".to_vec()]).unwrap();
    assert_eq!(log.segment_names(), [format::segment_name(1)]);
    log.close().unwrap();
    drop(log);
    let bytes = fs.file_bytes(&segment_path()).unwrap();
    assert_eq!(bytes[8..12], 3u32.to_le_bytes(), "F-03");
    let log = open_log(&fs, true);
    let entry = log.read(1).unwrap();
    assert_eq!((entry.version, entry.body), (3, b"first".to_vec()));
}

/// F-40, A3: a crash at any step of the first append to a version 2 log (its roll, or the
/// header written again in place when it holds no record) leaves a log that opens with its
/// version 2 entries, and the new entry too when its append returned; opening again changes
/// nothing.
#[test]
fn a_crash_at_any_step_of_the_first_append_to_a_version_2_log_leaves_a_log_that_opens() {
    let with_records = V2_TWO_ENTRIES.bytes();
    let without = &with_records[..format::HEADER_BYTES];
    let bodies: Vec<Vec<u8>> = V2_TWO_ENTRIES
        .bodies()
        .iter()
        .map(|body| entry::encode(body).unwrap())
        .collect();
    for (bytes, before) in [(with_records, &bodies[..]), (without, &bodies[..0])] {
        for step in 1.. {
            let fs = disk_with_segment(bytes);
            for dir in ["/", STORE, "/store/log"] {
                fs.sync_dir(Path::new(dir)).unwrap();
            }
            let log = open_log(&fs, false);
            fs.crash_at_step(fs.steps() + step);
            let acknowledged = log.append(&[b"after".to_vec()]).is_ok();
            let _ = log.close();
            drop(log);
            for image in [fs.power_loss_image(step), fs.process_crash_image()] {
                for _ in 0..2 {
                    let log = open_log(&image, false);
                    let read: Vec<Vec<u8>> =
                        log.iter_from(1).map(|entry| entry.unwrap().body).collect();
                    assert_eq!(&read[..before.len()], before, "step {step}");
                    let appended = &read[before.len()..];
                    assert!(appended.len() <= 1, "step {step}");
                    assert!(!acknowledged || appended == [b"after"], "step {step}");
                    log.close().unwrap();
                }
            }
            if !fs.crashed() {
                // The roll makes a file, syncs it and the directory, trims the old segment;
                // the header in place is a write and a sync.
                assert!(step > 2, "the append took only {step} steps");
                break;
            }
        }
    }
}

/// F-53: an `EventSkipped` (kind 8, version 3) in a segment of version 2 was not written by a
/// ledger of that version: the log frames and chains it, and the ledger refuses its body.
#[test]
fn an_event_skipped_entry_in_a_version_2_segment_is_refused() {
    let mut bytes = V2_EVERY_KIND.bytes().to_vec();
    let (records, _) = walk_segment(&bytes);
    let last = records.last().unwrap();
    let body = entry::encode(&EntryBody::EventSkipped(EventSkipped {
        consumer: "backup".into(),
        seq: 2,
        reason: "sent by hand".into(),
        inserted_at: at(11),
    }))
    .unwrap();
    let seq = last.seq + 1;
    let fixed = format::RecordFixed {
        seq,
        batch_first_seq: seq,
        previous_hash: last.block_hash,
        block_hash: spec_block_hash(2, seq, &last.block_hash, &body),
    };
    format::encode_record(&mut bytes, &fixed, &body);
    let fs = disk_with_segment(&bytes);
    let log = open_log(&fs, true);
    assert_eq!(log.read(seq).unwrap().version, 2);
    drop(log);
    let error = Ledger::open_with(Arc::new(fs), Path::new(STORE), fixed_clock(at(60)))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(error.code(), "BAD_ENTRY", "{error}");
    assert!(error.to_string().contains("version 3"), "{error}");
}

#[test]
fn the_documented_constants_are_the_code_constants() {
    let (_, block, _) = split_block(doc(), CONSTANTS_BEGIN, CONSTANTS_END);
    let code: BTreeMap<&str, u64> = [
        ("FORMAT_VERSION", u64::from(format::FORMAT_VERSION)),
        ("HEADER_BYTES", format::HEADER_BYTES as u64),
        ("FRAME_PREFIX_BYTES", format::FRAME_PREFIX_BYTES as u64),
        ("PAYLOAD_FIXED_BYTES", format::PAYLOAD_FIXED_BYTES as u64),
        ("BODY_BYTES_MAX", format::BODY_BYTES_MAX as u64),
        ("RECORD_BYTES_MAX", format::RECORD_BYTES_MAX as u64),
        ("BATCH_ENTRIES_MAX", format::BATCH_ENTRIES_MAX as u64),
        ("BATCH_BYTES_MAX", format::BATCH_BYTES_MAX as u64),
        ("SEGMENT_BYTES_MIN", format::SEGMENT_BYTES_MIN),
        ("SEGMENT_BYTES_MAX", format::SEGMENT_BYTES_MAX),
        ("SEGMENT_BYTES_DEFAULT", format::SEGMENT_BYTES_DEFAULT),
        ("SEGMENT_FILE_BYTES_MAX", format::SEGMENT_FILE_BYTES_MAX),
        ("SEGMENT_NAME_DIGITS", format::SEGMENT_NAME_DIGITS as u64),
    ]
    .into_iter()
    .collect();
    let documented: BTreeMap<String, u64> = table_rows(block)
        .into_iter()
        .map(|row| (row[0].clone(), row[1].parse().unwrap()))
        .collect();
    let documented: BTreeMap<&str, u64> = documented
        .iter()
        .map(|(name, value)| (name.as_str(), *value))
        .collect();
    assert_eq!(documented, code);
    assert_eq!(&format::SEGMENT_MAGIC, b"FOLIOSEG");
    assert_eq!(format::HASH_DOMAIN_TAG, spec_domain_tag(SPEC_VERSION));
    // F-60: the versions read, oldest first, each with its tag; the last is written.
    let read: Vec<(u32, &[u8])> = format::FORMAT_VERSIONS_READ
        .iter()
        .map(|version| (version.number, &version.domain_tag[..]))
        .collect();
    assert_eq!(read, [2, 3].map(|v| (v, spec_domain_tag(v))));
    // F-60: the tag names the version.
    let tag = format!("folio-entry-v{}", format::FORMAT_VERSION);
    assert_eq!(format::HASH_DOMAIN_TAG, tag.as_bytes());
    assert_eq!(format::HASH_ZERO, [0u8; 32]);
    assert_eq!(format::segment_name(1), "00000000000000000001.seg");
}

#[test]
fn the_documented_decimal_encodings_are_the_code_encodings() {
    let (_, block, _) = split_block(doc(), DEC_BEGIN, DEC_END);
    let rows = table_rows(block);
    assert!(rows.len() >= 5);
    for row in rows {
        let [text, mantissa, scale, hex] = &row[..] else {
            panic!("a decimal example has four cells: {row:?}")
        };
        let bytes = parse_hex(hex);
        assert_eq!(entry::encode(&dec(text)).unwrap(), bytes, "{text}");
        assert_eq!(
            bytes[..16],
            mantissa.parse::<i128>().unwrap().to_le_bytes(),
            "{text}"
        );
        assert_eq!(
            bytes[16..],
            scale.parse::<u32>().unwrap().to_le_bytes(),
            "{text}"
        );
        assert_eq!(entry::decode::<Dec>(&bytes).unwrap(), dec(text), "{text}");
    }
    let (_, block, _) = split_block(doc(), DEC_REFUSED_BEGIN, DEC_REFUSED_END);
    let rows = table_rows(block);
    assert!(rows.len() >= 3);
    for row in rows {
        let mantissa: i128 = row[0].parse().unwrap();
        let scale: u32 = row[1].parse().unwrap();
        let mut bytes = mantissa.to_le_bytes().to_vec();
        bytes.extend_from_slice(&scale.to_le_bytes());
        assert!(entry::decode::<Dec>(&bytes).is_err(), "{row:?} decoded");
    }
}

/// F-54: a body whose bytes are not the canonical encoding of its value is refused, even though
/// bincode alone would decode it: here an account's metadata with its two keys swapped, and
/// with one key repeated (whose first value a plain decode would silently drop).
#[test]
fn a_body_that_is_not_in_canonical_form_is_refused() {
    let body = |pairs: &[(&str, &str)]| {
        let mut bytes = entry::encode(&EntryBody::AccountMetadataSet(AccountMetadataSet {
            ledger: "main".into(),
            account: "till:1".into(),
            metadata: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
            inserted_at: 7,
        }))
        .unwrap();
        // The map is the last field but one: its entries sit right before the 8-byte
        // `inserted_at`. Each is (u64 length, bytes) twice: 8 + 1 + 8 + 1 = 18 bytes.
        let map_at = bytes.len() - 8 - 2 * 18;
        let mut at = map_at;
        for (key, value) in pairs {
            for text in [key, value] {
                bytes[at..at + 8].copy_from_slice(&(text.len() as u64).to_le_bytes());
                bytes[at + 8..at + 8 + text.len()].copy_from_slice(text.as_bytes());
                at += 8 + text.len();
            }
        }
        bytes
    };
    let canonical = body(&[("a", "1"), ("b", "2")]);
    assert!(entry::decode::<EntryBody>(&canonical).is_ok());
    for pairs in [[("b", "2"), ("a", "1")], [("a", "1"), ("a", "2")]] {
        let bytes = body(&pairs);
        assert_ne!(bytes, canonical);
        let error = entry::decode::<EntryBody>(&bytes).unwrap_err();
        assert!(
            error.to_string().contains("canonical"),
            "{pairs:?}: {error}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The summary vector (section 10): a log whose first segment a roll sealed, with the summary
// the roll wrote, checked by a reader written from the specification alone.

/// A segment size that seals the first segment after more than two index strides of records.
const SUMMARY_SEGMENT_BYTES: u64 = 16 * 1024;
/// Entries of the summary vector: `StoreCreated`, then `ConsumerAcked` entries of 35 bytes.
const SUMMARY_ENTRIES: u64 = 140;
const SUMMARY_DUMP_BEGIN: &str =
    "<!-- vector summary: begin (generated by tests/format_vectors.rs) -->";
const SUMMARY_DUMP_END: &str = "<!-- vector summary: end -->";
/// The stride of the sparse index, from the specification (F-70).
const SPEC_INDEX_STRIDE: usize = 64;

fn summary_vector_dir() -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests/vectors/summary/log")
}

/// The files of the summary vector: the sealed segment, its summary, the active segment, and
/// the durable head the writer published (section 11).
fn summary_vector_names() -> [String; 4] {
    [
        format::segment_name(1),
        folio::log::summary::summary_name(1),
        format::segment_name(132),
        folio::log::durable::DURABLE_HEAD_NAME.to_string(),
    ]
}

/// Entry 1, then consumer `central` acknowledging each entry before its own, in batches of 10.
fn summary_vector_batches() -> Vec<Vec<EntryBody>> {
    let acked = |seq: u64| {
        EntryBody::ConsumerAcked(ConsumerAcked {
            consumer: "central".into(),
            seq: seq - 1,
            inserted_at: at(seq as i64),
        })
    };
    let mut batches = vec![vec![store_created()]];
    let mut seq = 2;
    while seq <= SUMMARY_ENTRIES {
        let last = (seq + 9).min(SUMMARY_ENTRIES);
        batches.push((seq..=last).map(acked).collect());
        seq = last + 1;
    }
    batches
}

/// The files the code writes for the summary vector, by name.
fn build_summary_vector() -> BTreeMap<String, Vec<u8>> {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(STORE)).unwrap();
    let options = LogOptions {
        segment_bytes: SUMMARY_SEGMENT_BYTES,
        ..LogOptions::default()
    };
    let log = Log::create(Arc::new(fs.clone()), Path::new(STORE), options).unwrap();
    for batch in summary_vector_batches() {
        let bodies: Vec<Vec<u8>> = batch.iter().map(|b| entry::encode(b).unwrap()).collect();
        log.append(&bodies).unwrap();
    }
    log.close().unwrap();
    let log_dir = Path::new(STORE).join(LOG_DIR_NAME);
    let mut names = fs.list(&log_dir).unwrap();
    names.sort();
    assert_eq!(
        names,
        summary_vector_names(),
        "one roll, one summary, one durable head"
    );
    names
        .into_iter()
        .map(|name| {
            let bytes = fs.file_bytes(&log_dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// The checked-in files of the summary vector (written first, from the code, in write mode).
fn summary_vector() -> &'static BTreeMap<String, Vec<u8>> {
    static FILES: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        if write_mode() {
            let built = build_summary_vector();
            std::fs::create_dir_all(summary_vector_dir()).unwrap();
            for (name, bytes) in &built {
                std::fs::write(summary_vector_dir().join(name), bytes).unwrap();
            }
            let dump = summary_dump(&built[&folio::log::summary::summary_name(1)]);
            let doc = std::fs::read_to_string(doc_path()).unwrap();
            let (before, _, after) = split_block(&doc, SUMMARY_DUMP_BEGIN, SUMMARY_DUMP_END);
            let doc = format!(
                "{before}{SUMMARY_DUMP_BEGIN}\n```text\n{dump}```\n{SUMMARY_DUMP_END}{after}"
            );
            let dump = durable_head_dump(&built[folio::log::durable::DURABLE_HEAD_NAME]);
            let (before, _, after) = split_block(&doc, DURABLE_DUMP_BEGIN, DURABLE_DUMP_END);
            let doc = format!(
                "{before}{DURABLE_DUMP_BEGIN}\n```text\n{dump}```\n{DURABLE_DUMP_END}{after}"
            );
            std::fs::write(doc_path(), doc).unwrap();
        }
        summary_vector_names()
            .into_iter()
            .map(|name| {
                let path = summary_vector_dir().join(&name);
                let bytes = std::fs::read(&path).unwrap_or_else(|error| {
                    panic!("{}: {error}; run with {WRITE_ENV}=1", path.display())
                });
                (name, bytes)
            })
            .collect()
    })
}

/// A summary as the specification lays it out (F-70), read without the crate.
#[derive(Debug)]
struct SpecSummary {
    segment_version: u32,
    first_seq: u64,
    records: u64,
    end_bytes: u64,
    file_bytes: u64,
    previous_hash: Hash,
    hash_last: Hash,
    index: Vec<u32>,
}

/// The fields of a summary: (offset, size, label), then one `index[i]` per point and the crc.
fn summary_fields(bytes: &[u8]) -> Vec<(usize, usize, String)> {
    let count = u32::from_le_bytes(bytes[116..120].try_into().unwrap()) as usize;
    let mut fields: Vec<(usize, usize, String)> = [
        (0, 8, "magic = \"FOLIOSUM\""),
        (8, 4, "version"),
        (12, 4, "segment_version"),
        (16, 8, "first_seq"),
        (24, 8, "records"),
        (32, 8, "end_bytes"),
        (40, 8, "file_bytes"),
        (48, 32, "previous_hash"),
        (80, 32, "hash_last"),
        (112, 4, "index_stride"),
        (116, 4, "index_count"),
    ]
    .into_iter()
    .map(|(offset, size, label)| (offset, size, label.to_string()))
    .collect();
    for point in 0..count {
        let label = format!(
            "index[{point}]: offset of record {}",
            point * SPEC_INDEX_STRIDE
        );
        fields.push((120 + 4 * point, 4, label));
    }
    fields.push((
        120 + 4 * count,
        4,
        "crc32 of every byte before it".to_string(),
    ));
    fields
}

/// Parses a summary by the specification, checking F-70 on the way.
fn spec_summary(bytes: &[u8]) -> SpecSummary {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let hash_at = |at: usize| -> Hash { bytes[at..at + 32].try_into().unwrap() };
    assert_eq!(&bytes[0..8], b"FOLIOSUM", "F-70: magic");
    let crc_at = bytes.len() - 4;
    assert_eq!(
        u32_at(crc_at),
        crc32fast::hash(&bytes[..crc_at]),
        "F-70: crc"
    );
    assert_eq!(u32_at(8), 1, "F-70: summary version");
    assert_eq!(u32_at(112) as usize, SPEC_INDEX_STRIDE, "F-70: stride");
    let count = u32_at(116) as usize;
    assert_eq!(bytes.len(), 124 + 4 * count, "F-70: length");
    SpecSummary {
        segment_version: u32_at(12),
        first_seq: u64_at(16),
        records: u64_at(24),
        end_bytes: u64_at(32),
        file_bytes: u64_at(40),
        previous_hash: hash_at(48),
        hash_last: hash_at(80),
        index: (0..count).map(|point| u32_at(120 + 4 * point)).collect(),
    }
}

/// The annotated dump of a summary, as embedded in `docs/format.md`.
fn summary_dump(bytes: &[u8]) -> String {
    fields_dump(bytes, summary_fields(bytes))
}

/// A dump of `bytes` cut into `fields` (offset, size, label): each field's first line labelled,
/// with its value when it is a u32 or a u64 past offset 0.
fn fields_dump(bytes: &[u8], fields: Vec<(usize, usize, String)>) -> String {
    let mut out = String::new();
    for (offset, size, label) in fields {
        let run = &bytes[offset..offset + size];
        let value = match size {
            4 => format!(" = {}", u32::from_le_bytes(run.try_into().unwrap())),
            8 if offset > 0 => format!(" = {}", u64::from_le_bytes(run.try_into().unwrap())),
            _ => String::new(),
        };
        for (index, chunk) in run.chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let line = format!("{:04x}  {:<47}", offset + index * 16, hex.join(" "));
            if index == 0 {
                out.push_str(&format!("{line}  # {label}{value}\n"));
            } else {
                out.push_str(&format!("{}\n", line.trim_end()));
            }
        }
    }
    out
}

#[test]
fn the_code_writes_exactly_the_checked_in_summary_vector() {
    assert!(
        build_summary_vector() == *summary_vector(),
        "the code no longer writes tests/vectors/summary: the summary format changed (F-70). \
         If that is intended, bump SUMMARY_VERSION and regenerate with {WRITE_ENV}=1"
    );
}

#[test]
fn the_summary_vector_describes_its_segment_as_the_specification_says() {
    let files = summary_vector();
    let [segment_name, summary_name, next_name, _] = summary_vector_names();
    let segment = &files[&segment_name];
    let summary = spec_summary(&files[&summary_name]);
    let (records, _) = walk_segment(segment);
    let header_previous: Hash = segment[24..56].try_into().unwrap();
    let segment_version = u32::from_le_bytes(segment[8..12].try_into().unwrap());
    assert_eq!(
        summary.segment_version, segment_version,
        "F-70: segment_version"
    );
    assert_eq!(summary.first_seq, 1, "F-70: first_seq");
    assert_eq!(summary.records, records.len() as u64, "F-70: records");
    assert!(
        summary.records > 2 * SPEC_INDEX_STRIDE as u64,
        "the index has three points"
    );
    assert_eq!(
        summary.end_bytes,
        segment.len() as u64,
        "F-70: end_bytes (trimmed)"
    );
    assert_eq!(summary.file_bytes, segment.len() as u64, "F-70: file_bytes");
    assert_eq!(
        summary.previous_hash, header_previous,
        "F-70: previous_hash"
    );
    assert_eq!(
        summary.hash_last,
        records.last().unwrap().block_hash,
        "F-70: hash_last"
    );
    let every_64th: Vec<u32> = records
        .iter()
        .step_by(SPEC_INDEX_STRIDE)
        .map(|record| record.offset as u32)
        .collect();
    assert_eq!(summary.index, every_64th, "F-70: index");
    // F-71: the next segment continues the chain the summary describes.
    let next = &files[&next_name];
    let next_first = u64::from_le_bytes(next[16..24].try_into().unwrap());
    assert_eq!(next_first, summary.first_seq + summary.records);
    assert_eq!(next[24..56], summary.hash_last);
}

#[test]
fn the_summary_dump_in_the_document_is_the_summary_vector() {
    let summary = &summary_vector()[&folio::log::summary::summary_name(1)];
    let (_, block, _) = split_block(doc(), SUMMARY_DUMP_BEGIN, SUMMARY_DUMP_END);
    assert!(
        parse_dump(block) == *summary,
        "docs/format.md section 10 dump"
    );
    assert_eq!(
        block.trim(),
        format!("```text\n{}```", summary_dump(summary)).trim()
    );
}

#[test]
fn the_summary_vector_opens_and_reads_back_every_entry() {
    let fs = SimFs::new(2);
    let log_dir = Path::new(STORE).join(LOG_DIR_NAME);
    fs.create_dir_all(&log_dir).unwrap();
    for (name, bytes) in summary_vector() {
        drop(fs.open(&log_dir.join(name), OpenMode::CreateNew).unwrap());
        assert!(fs.set_file_bytes(&log_dir.join(name), bytes.clone()));
    }
    let options = LogOptions {
        segment_bytes: SUMMARY_SEGMENT_BYTES,
        read_only: true,
        ..LogOptions::default()
    };
    let log = Log::open(Arc::new(fs.clone()), Path::new(STORE), options).unwrap();
    assert_eq!(log.head().seq, SUMMARY_ENTRIES);
    let bodies: Vec<EntryBody> = summary_vector_batches().into_iter().flatten().collect();
    for (seq, body) in (1..=SUMMARY_ENTRIES).zip(&bodies) {
        let entry = log.read(seq).unwrap();
        assert_eq!(&entry::decode::<EntryBody>(&entry.body).unwrap(), body);
    }
    log.check_sealed().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The durable head (section 11), as the writer of the summary vector left it.

const DURABLE_DUMP_BEGIN: &str =
    "<!-- vector durable-head: begin (generated by tests/format_vectors.rs) -->";
const DURABLE_DUMP_END: &str = "<!-- vector durable-head: end -->";

fn durable_head_dump(bytes: &[u8]) -> String {
    let fields = [
        (0, 8, "magic = \"FOLIODUR\""),
        (8, 4, "version"),
        (12, 4, "flags"),
        (16, 8, "seq"),
        (24, 32, "block_hash"),
        (56, 4, "crc32 of every byte before it"),
    ];
    let fields = fields
        .into_iter()
        .map(|(offset, size, label)| (offset, size, label.to_string()))
        .collect();
    fields_dump(bytes, fields)
}

#[test]
fn the_durable_head_vector_decodes_as_the_specification_says() {
    let files = summary_vector();
    let bytes = &files[folio::log::durable::DURABLE_HEAD_NAME];
    assert_eq!(bytes.len(), 60, "F-80: 60 bytes");
    assert_eq!(&bytes[0..8], b"FOLIODUR", "F-80: magic");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        1,
        "F-80: version"
    );
    assert_eq!(
        u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
        0,
        "F-81: a closed log's writer_open flag is clear"
    );
    let crc = u32::from_le_bytes(bytes[56..60].try_into().unwrap());
    assert_eq!(crc32fast::hash(&bytes[..56]), crc, "F-80: crc32");
    // F-81: the head the writer left is the log's last entry.
    let [_, _, active_name, _] = summary_vector_names();
    let (records, _) = walk_segment(&files[&active_name]);
    let last = records.last().unwrap();
    assert_eq!(
        u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        SUMMARY_ENTRIES
    );
    assert_eq!(
        bytes[24..56],
        last.block_hash,
        "F-81: block_hash of the last entry"
    );
    let durable = folio::log::durable::decode(bytes).unwrap();
    assert!(!durable.writer_open);
    assert_eq!(durable.head.seq, SUMMARY_ENTRIES);
    assert_eq!(durable.head.block_hash, last.block_hash);
}

#[test]
fn the_durable_head_dump_in_the_document_is_the_vector() {
    let bytes = &summary_vector()[folio::log::durable::DURABLE_HEAD_NAME];
    let (_, block, _) = split_block(doc(), DURABLE_DUMP_BEGIN, DURABLE_DUMP_END);
    assert!(
        parse_dump(block) == *bytes,
        "docs/format.md section 11 dump"
    );
    assert_eq!(
        block.trim(),
        format!("```text\n{}```", durable_head_dump(bytes)).trim()
    );
}
