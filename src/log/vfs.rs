//! The file seam: every byte the log (and, through an adapter, redb) reads or writes goes
//! through [`Vfs`] and [`VfsFile`], so that tests can swap the real file system for the
//! simulated one in [`super::sim`], which crashes, fails and flips bits on command.
//!
//! [`RealFs`] is the production implementation: positional I/O, `fdatasync`,
//! `posix_fallocate`, and `memmap2` for sealed segments.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, reads only.
    Read,
    /// Existing file, reads and writes.
    Write,
    /// A new file that must not exist yet, reads and writes.
    CreateNew,
}

/// A directory tree of files: the operations the log needs from a file system.
pub trait Vfs: Debug + Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Names of the entries of `dir` (not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive, advisory lock named by `path` (a file, created if missing) for as
    /// long as the guard lives; fails with `ErrorKind::WouldBlock` while another holds it.
    /// A process that may not write the file (or create it) still locks an existing one, opened
    /// for reading: the lock guards reads of a read-only store as well.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
    /// Takes a shared lock named by `path`, as [`Vfs::lock`] takes an exclusive one: any number
    /// of shared holders, none while an exclusive one holds it (`WouldBlock`). A file system
    /// without shared locks takes an exclusive one instead (readers then exclude each other).
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.lock(path)
    }
}

/// Whether an error says this process may not write a file that it may be able to read: its
/// permissions, or a read-only mount.
pub fn is_not_writable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Whether an error says the disk (or the user's quota) is full.
pub fn is_no_space(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
}

/// Holds a lock taken with [`Vfs::lock`]; dropping it releases the lock.
pub trait LockGuard: Debug + Send + Sync {}

/// One open file.
pub trait VfsFile: Debug + Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data, and its size, are durable when this returns Ok.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Reserves blocks so that the file is at least `len_bytes` long, reading as zeros past
    /// its old end, with no size change left for a later `fdatasync` to journal.
    fn allocate(&self, len_bytes: u64) -> io::Result<()>;
    /// The whole file's bytes: a read-only map on a real file system. Only called on files that
    /// are never truncated while the returned bytes live (sealed segments).
    fn read_all(&self) -> io::Result<FileBytes>;
}

/// The bytes of a whole file, mapped or read.
#[derive(Debug)]
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Vfs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::Write => {
                options.write(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true);
            }
        }
        Ok(Arc::new(RealFile {
            file: options.open(path)?,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        real_lock(path, libc::LOCK_EX)
    }

    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        real_lock(path, libc::LOCK_SH)
    }
}

/// `flock`s the file at `path` (created if missing) without waiting: `kind` is `LOCK_EX` or
/// `LOCK_SH`.
fn real_lock(path: &Path, kind: libc::c_int) -> io::Result<Box<dyn LockGuard>> {
    use std::os::fd::AsRawFd;
    let writable = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    let file = match writable {
        // flock needs no write access: a read-only user locks the file it may only read.
        Err(error) if is_not_writable(&error) => File::open(path).map_err(|_| error)?,
        opened => opened?,
    };
    // SAFETY: plain syscall on a descriptor we own. flock locks belong to the open file
    // description, so a second open in this same process conflicts too.
    let rc = unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        return Err(error);
    }
    Ok(Box::new(RealLock { _file: file }))
}

#[derive(Debug)]
struct RealLock {
    _file: File,
}

impl LockGuard for RealLock {}

#[derive(Debug)]
struct RealFile {
    file: File,
}

impl VfsFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        if self.len()? >= len_bytes {
            return Ok(());
        }
        allocate(&self.file, len_bytes)
    }

    fn read_all(&self) -> io::Result<FileBytes> {
        if self.len()? == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the log maps only sealed segments, which it never writes or truncates again
        // while it runs, and holds an exclusive lock on the store against other Folio writers.
        // A file changed under the map by something else is outside the contract (and its
        // checksums would catch what it changed).
        let map = unsafe { memmap2::Mmap::map(&self.file)? };
        Ok(FileBytes::Mapped(map))
    }
}

#[cfg(target_os = "linux")]
fn allocate(file: &File, len_bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(len_bytes) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: plain syscall on a descriptor we own; it reads no memory of ours.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // File systems without fallocate (tmpfs on old kernels, some FUSE): fall back to a
        // sparse extension; durability holds, only the fsync speed-up is lost.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len_bytes),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(file: &File, len_bytes: u64) -> io::Result<()> {
    file.set_len(len_bytes)
}
