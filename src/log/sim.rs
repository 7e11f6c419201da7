//! A simulated, deterministic file system for crash and fault tests.
//!
//! Each file has a live image (what reads see) and a durable image (what survives a power
//! loss); `sync_data` copies live to durable, `sync_dir` makes a directory's creations,
//! renames and removals durable. Every mutating call is one numbered *step*. The simulation
//! can crash at a chosen step, then hand out power-loss images (the durable image plus a
//! seeded random subset of the unsynced writes, torn at 512-byte sectors) or the process-crash
//! image (every write kept); it can fail a chosen call once or from then on (I/O error or
//! ENOSPC), and flip a bit in what a read returns. Directory creation is durable at once (a
//! simplification: tests start from an existing store directory). It can also run out of
//! space (a budget of free bytes that growing files use up), and turn read-only, as a store
//! that this process may only read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::vfs::{FileBytes, LockGuard, OpenMode, Vfs, VfsFile};

/// Sector size at which unsynced writes tear in a power-loss image.
pub const SECTOR_BYTES: u64 = 512;

/// Kinds of mutating calls, to aim a fault at one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Write,
    Sync,
    SetLen,
    Allocate,
    Create,
    Remove,
    Rename,
    SyncDir,
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// `EIO`.
    Io,
    /// `ENOSPC`.
    NoSpace,
    /// `EIO` from a sync that, as Linux does after a failed writeback, marks the file's dirty
    /// pages clean: the writes it failed to sync stay visible to reads (the page cache) but
    /// never become durable, not even by a later successful sync, unless written again.
    IoDropsDirty,
}

/// A fault: the `nth` matching call (1-based, counted from when it is armed) fails; with
/// `persist`, every matching call after it fails too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Only calls of this kind count and fail; `None` for every mutating call.
    pub op: Option<OpKind>,
    pub nth: u64,
    pub persist: bool,
    pub error: FaultError,
}

/// A simulated file system; clones share the same files.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug, Clone, Default)]
struct Namespace {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, u64>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Create(PathBuf, u64),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct FileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug)]
struct SimState {
    live: Namespace,
    durable: Namespace,
    pending_dir_ops: Vec<DirOp>,
    files: HashMap<u64, FileData>,
    next_file_id: u64,
    steps: u64,
    crash_at_step: Option<u64>,
    crashed: bool,
    fault: Option<(Fault, u64)>,
    flips_pending: u64,
    rng: u64,
    /// Locks held; not part of any image (a crash releases them).
    locks: BTreeSet<PathBuf>,
    /// Shared locks held, by path: how many holders.
    shared_locks: BTreeMap<PathBuf, usize>,
    /// Bytes files may still grow by; `None` for no limit.
    free_bytes: Option<u64>,
    /// Whether opening for writing, creating, removing and renaming are refused
    /// (`PermissionDenied`), as for a user who may only read the files.
    read_only: bool,
    /// The fault that just failed a sync was `IoDropsDirty`.
    fault_drops_dirty: bool,
}

impl SimFs {
    /// An empty file system whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        let state = SimState {
            live: Namespace::default(),
            durable: Namespace::default(),
            pending_dir_ops: Vec::new(),
            files: HashMap::new(),
            next_file_id: 1,
            steps: 0,
            crash_at_step: None,
            crashed: false,
            fault: None,
            flips_pending: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            locks: BTreeSet::new(),
            shared_locks: BTreeMap::new(),
            free_bytes: None,
            read_only: false,
            fault_drops_dirty: false,
        };
        SimFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mutating calls made so far.
    pub fn steps(&self) -> u64 {
        self.state().steps
    }

    /// The mutating call numbered `step` (1-based, counting from the file system's creation)
    /// does not happen: it and every later call fail, as if the process had died there.
    pub fn crash_at_step(&self, step: u64) {
        self.state().crash_at_step = Some(step);
    }

    /// Whether a crash point was reached.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Arms a fault (replacing any armed one).
    pub fn inject(&self, fault: Fault) {
        self.state().fault = Some((fault, 0));
    }

    /// Disarms any fault.
    pub fn clear_fault(&self) {
        self.state().fault = None;
    }

    /// Limits how many more bytes files may grow by (`None`: no limit). A write, length change
    /// or allocation past it fails with `ENOSPC` and changes nothing; shrinking or removing a
    /// file gives its bytes back. Overwriting bytes a file already has needs no space.
    pub fn set_free_bytes(&self, free_bytes: Option<u64>) {
        self.state().free_bytes = free_bytes;
    }

    /// Makes the file system read-only to this process (or writable again): opening a file
    /// for writing, creating, removing or renaming one fails with `PermissionDenied`, as do
    /// writes through files opened before. Reads, locks and syncs work.
    pub fn set_read_only(&self, read_only: bool) {
        self.state().read_only = read_only;
    }

    /// The next `reads` read calls each return their bytes with one random bit flipped.
    pub fn flip_next_reads(&self, reads: u64) {
        self.state().flips_pending = reads;
    }

    /// What a power loss leaves: the durable image, plus a random prefix of the unsynced
    /// directory changes and a random subset of the unsynced writes, torn at sector bounds.
    pub fn power_loss_image(&self, seed: u64) -> SimFs {
        let state = self.state();
        let mut rng = seed ^ 0xD1B5_4A32_D192_ED03;
        let mut namespace = state.durable.clone();
        let kept_dir_ops =
            (next_random(&mut rng) % (state.pending_dir_ops.len() as u64 + 1)) as usize;
        for op in &state.pending_dir_ops[..kept_dir_ops] {
            apply_dir_op(&mut namespace, op);
        }
        let mut files = HashMap::new();
        for id in namespace.files.values() {
            let Some(data) = state.files.get(id) else {
                continue;
            };
            let mut bytes = data.durable.clone();
            for op in &data.pending {
                apply_file_op_torn(&mut bytes, op, &mut rng);
            }
            files.insert(
                *id,
                FileData {
                    live: bytes.clone(),
                    durable: bytes,
                    pending: Vec::new(),
                },
            );
        }
        Self::from_image(namespace, files, state.next_file_id, seed)
    }

    /// What a process crash leaves: every write that was made, synced or not.
    pub fn process_crash_image(&self) -> SimFs {
        let state = self.state();
        let mut files = HashMap::new();
        for id in state.live.files.values() {
            let Some(data) = state.files.get(id) else {
                continue;
            };
            let live = data.live.clone();
            files.insert(
                *id,
                FileData {
                    durable: live.clone(),
                    live,
                    pending: Vec::new(),
                },
            );
        }
        Self::from_image(state.live.clone(), files, state.next_file_id, state.rng)
    }

    fn from_image(
        namespace: Namespace,
        files: HashMap<u64, FileData>,
        next: u64,
        seed: u64,
    ) -> SimFs {
        let fs = SimFs::new(seed);
        {
            let mut state = fs.state();
            state.live = namespace.clone();
            state.durable = namespace;
            state.files = files;
            state.next_file_id = next;
        }
        fs
    }

    /// A copy of a file's live bytes (for tests that inspect or tamper).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let id = state.live.files.get(path)?;
        state.files.get(id).map(|data| data.live.clone())
    }

    /// Replaces a file's bytes, live and durable, outside of any step count (for tamper tests).
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) -> bool {
        let mut state = self.state();
        let Some(id) = state.live.files.get(path).copied() else {
            return false;
        };
        let Some(data) = state.files.get_mut(&id) else {
            return false;
        };
        *data = FileData {
            live: bytes.clone(),
            durable: bytes,
            pending: Vec::new(),
        };
        true
    }
}

impl SimState {
    /// Counts one mutating call and decides whether it may happen.
    fn step(&mut self, op: OpKind) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_error());
        }
        self.steps += 1;
        if self.crash_at_step == Some(self.steps) {
            self.crashed = true;
            return Err(crashed_error());
        }
        let Some((fault, seen)) = self.fault.as_mut() else {
            return Ok(());
        };
        if fault.op.is_some_and(|kind| kind != op) {
            return Ok(());
        }
        *seen += 1;
        let hit = *seen == fault.nth || (fault.persist && *seen > fault.nth);
        if !hit {
            return Ok(());
        }
        self.fault_drops_dirty = op == OpKind::Sync && fault.error == FaultError::IoDropsDirty;
        let error = match fault.error {
            FaultError::Io | FaultError::IoDropsDirty => io::Error::from_raw_os_error(libc::EIO),
            FaultError::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
        };
        if !fault.persist {
            self.fault = None;
        }
        Err(error)
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.crashed {
            Err(crashed_error())
        } else {
            Ok(())
        }
    }

    fn maybe_flip(&mut self, bytes: &mut [u8]) {
        if self.flips_pending == 0 || bytes.is_empty() {
            return;
        }
        self.flips_pending -= 1;
        let bit = next_random(&mut self.rng) % (bytes.len() as u64 * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    }

    /// Accounts for a file's live length changing to `len_bytes`: growth uses free space (or
    /// fails with `ENOSPC`), shrinking gives it back.
    fn resize_space(&mut self, id: u64, len_bytes: u64) -> io::Result<()> {
        let old_bytes = self.file_mut(id)?.live.len() as u64;
        let Some(free) = self.free_bytes.as_mut() else {
            return Ok(());
        };
        if len_bytes > old_bytes {
            let needed = len_bytes - old_bytes;
            if needed > *free {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            *free -= needed;
        } else {
            *free += old_bytes - len_bytes;
        }
        Ok(())
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(io::ErrorKind::PermissionDenied.into())
        } else {
            Ok(())
        }
    }

    fn file_mut(&mut self, id: u64) -> io::Result<&mut FileData> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash: the process is gone")
}

fn next_random(state: &mut u64) -> u64 {
    // splitmix64: tiny, seeded, and good enough to pick subsets.
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn apply_dir_op(namespace: &mut Namespace, op: &DirOp) {
    match op {
        DirOp::Create(path, id) => {
            namespace.files.insert(path.clone(), *id);
        }
        DirOp::Remove(path) => {
            namespace.files.remove(path);
        }
        DirOp::Rename(from, to) => {
            if let Some(id) = namespace.files.remove(from) {
                namespace.files.insert(to.clone(), id);
            }
        }
    }
}

fn dir_op_parent(op: &DirOp) -> Option<&Path> {
    match op {
        DirOp::Create(path, _) | DirOp::Remove(path) | DirOp::Rename(_, path) => path.parent(),
    }
}

fn write_into(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset as usize..end].copy_from_slice(data);
}

/// Applies an operation whole (a successful sync).
fn apply_file_op(bytes: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::SetLen(len) => bytes.resize(*len as usize, 0),
        FileOp::Write { offset, data } => write_into(bytes, *offset, data),
    }
}

/// Applies an unsynced operation to a power-loss image: each sector of a write survives or
/// not at random, as does a length change.
fn apply_file_op_torn(bytes: &mut Vec<u8>, op: &FileOp, rng: &mut u64) {
    match op {
        FileOp::SetLen(len) => {
            if next_random(rng) % 2 == 0 {
                bytes.resize(*len as usize, 0);
            }
        }
        FileOp::Write { offset, data } => {
            let end = offset + data.len() as u64;
            let mut at = *offset;
            while at < end {
                let sector_end = ((at / SECTOR_BYTES) + 1) * SECTOR_BYTES;
                let chunk_end = sector_end.min(end);
                if next_random(rng) % 2 == 0 {
                    let from = (at - offset) as usize;
                    let to = (chunk_end - offset) as usize;
                    write_into(bytes, at, &data[from..to]);
                }
                at = chunk_end;
            }
        }
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.check_alive()?;
        if !state.live.dirs.contains(dir) {
            state.check_writable()?;
        }
        for ancestor in dir.ancestors() {
            state.live.dirs.insert(ancestor.to_path_buf());
            state.durable.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.state();
        state.check_alive()?;
        Ok(state.live.dirs.contains(path) || state.live.files.contains_key(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        state.check_alive()?;
        if !state.live.dirs.contains(dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let children = state.live.files.keys().chain(state.live.dirs.iter());
        let names = children
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| {
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .collect();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut state = self.state();
        if mode != OpenMode::Read {
            state.check_writable()?;
        }
        let existing = state.live.files.get(path).copied();
        let id = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => return Err(io::ErrorKind::AlreadyExists.into()),
            (OpenMode::CreateNew, None) => {
                let parent_exists = path
                    .parent()
                    .is_some_and(|dir| state.live.dirs.contains(dir));
                if !parent_exists {
                    state.check_alive()?;
                    return Err(io::ErrorKind::NotFound.into());
                }
                state.step(OpKind::Create)?;
                let id = state.next_file_id;
                state.next_file_id += 1;
                state.files.insert(id, FileData::default());
                state.live.files.insert(path.to_path_buf(), id);
                state
                    .pending_dir_ops
                    .push(DirOp::Create(path.to_path_buf(), id));
                id
            }
            (_, Some(id)) => {
                state.check_alive()?;
                id
            }
            (_, None) => return Err(io::ErrorKind::NotFound.into()),
        };
        let writable = mode != OpenMode::Read;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            id,
            writable,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.check_writable()?;
        let Some(id) = state.live.files.get(path).copied() else {
            state.check_alive()?;
            return Err(io::ErrorKind::NotFound.into());
        };
        state.step(OpKind::Remove)?;
        state.resize_space(id, 0)?;
        state.live.files.remove(path);
        state
            .pending_dir_ops
            .push(DirOp::Remove(path.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.check_writable()?;
        if !state.live.files.contains_key(from) {
            state.check_alive()?;
            return Err(io::ErrorKind::NotFound.into());
        }
        state.step(OpKind::Rename)?;
        let op = DirOp::Rename(from.to_path_buf(), to.to_path_buf());
        apply_dir_op(&mut state.live, &op);
        state.pending_dir_ops.push(op);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.step(OpKind::SyncDir)?;
        let pending = std::mem::take(&mut state.pending_dir_ops);
        for op in pending {
            if dir_op_parent(&op) == Some(dir) {
                apply_dir_op(&mut state.durable, &op);
            } else {
                state.pending_dir_ops.push(op);
            }
        }
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut state = self.state();
        state.check_alive()?;
        if state.shared_locks.contains_key(path) || !state.locks.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            shared: false,
        }))
    }

    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut state = self.state();
        state.check_alive()?;
        if state.locks.contains(path) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        *state.shared_locks.entry(path.to_path_buf()).or_default() += 1;
        Ok(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            shared: true,
        }))
    }
}

#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
    shared: bool,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.fs.state();
        if !self.shared {
            state.locks.remove(&self.path);
            return;
        }
        if let Some(holders) = state.shared_locks.get_mut(&self.path) {
            *holders -= 1;
            if *holders == 0 {
                state.shared_locks.remove(&self.path);
            }
        }
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    id: u64,
    writable: bool,
}

impl SimFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::ErrorKind::PermissionDenied.into())
        }
    }

    /// One mutating call: counted as a step, refused on a read-only file system, and, when
    /// `len_bytes` gives the file's length after it, charged against the free space.
    fn mutate(
        &self,
        op: OpKind,
        len_bytes: impl FnOnce(u64) -> Option<u64>,
        change: impl FnOnce(&mut FileData),
    ) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.fs.state();
        state.check_writable()?;
        let stepped = state.step(op);
        if let Err(error) = stepped {
            if std::mem::take(&mut state.fault_drops_dirty) {
                // The failed writeback marked the pages clean: what was pending is lost to
                // the disk, though reads still see it.
                state.file_mut(self.id)?.pending.clear();
            }
            return Err(error);
        }
        let old_bytes = state.file_mut(self.id)?.live.len() as u64;
        if let Some(len_bytes) = len_bytes(old_bytes) {
            state.resize_space(self.id, len_bytes)?;
        }
        change(state.file_mut(self.id)?);
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut state = self.fs.state();
        state.check_alive()?;
        Ok(state.file_mut(self.id)?.live.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.state();
        state.check_alive()?;
        let live = &state.file_mut(self.id)?.live;
        let end = offset as usize + buf.len();
        let Some(source) = live.get(offset as usize..end) else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        buf.copy_from_slice(source);
        state.maybe_flip(buf);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        self.mutate(
            OpKind::Write,
            |old| Some(old.max(end)),
            |data| {
                write_into(&mut data.live, offset, buf);
                data.pending.push(FileOp::Write {
                    offset,
                    data: buf.to_vec(),
                });
            },
        )
    }

    fn sync_data(&self) -> io::Result<()> {
        self.mutate(
            OpKind::Sync,
            |_| None,
            |data| {
                // The pending operations, not the live image: a write whose sync failed and
                // that was dropped (`IoDropsDirty`) stays out of the durable image.
                for op in std::mem::take(&mut data.pending) {
                    apply_file_op(&mut data.durable, &op);
                }
            },
        )
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.mutate(
            OpKind::SetLen,
            |_| Some(len_bytes),
            |data| {
                data.live.resize(len_bytes as usize, 0);
                data.pending.push(FileOp::SetLen(len_bytes));
            },
        )
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.mutate(
            OpKind::Allocate,
            |old| Some(old.max(len_bytes)),
            |data| {
                if (data.live.len() as u64) < len_bytes {
                    data.live.resize(len_bytes as usize, 0);
                    data.pending.push(FileOp::SetLen(len_bytes));
                }
            },
        )
    }

    fn read_all(&self) -> io::Result<FileBytes> {
        let mut state = self.fs.state();
        state.check_alive()?;
        let mut bytes = state.file_mut(self.id)?.live.clone();
        state.maybe_flip(&mut bytes);
        Ok(FileBytes::Owned(bytes))
    }
}
