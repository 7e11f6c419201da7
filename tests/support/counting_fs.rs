//! A file system that counts the bytes read from each file, over any other (the simulated disk
//! or the real one): what a test of "this reads only that" measures.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use folio::log::vfs::{FileBytes, LockGuard, OpenMode, Vfs, VfsFile};

/// Bytes read so far, per file.
type ReadBytes = Arc<Mutex<BTreeMap<PathBuf, u64>>>;

/// A `Vfs` that counts, per path, the bytes read through `read_exact_at` and `read_all`.
#[derive(Debug, Clone)]
pub struct CountingFs {
    inner: Arc<dyn Vfs>,
    read_bytes: ReadBytes,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn VfsFile>,
    path: PathBuf,
    read_bytes: ReadBytes,
}

impl CountingFs {
    pub fn new(inner: Arc<dyn Vfs>) -> CountingFs {
        CountingFs {
            inner,
            read_bytes: Arc::default(),
        }
    }

    /// Forgets what was counted.
    pub fn clear(&self) {
        self.read_bytes.lock().unwrap().clear();
    }

    /// The bytes read from each file since the last `clear`.
    pub fn read_bytes(&self) -> BTreeMap<PathBuf, u64> {
        self.read_bytes.lock().unwrap().clone()
    }
}

impl CountingFile {
    fn count(&self, bytes: u64) {
        *self
            .read_bytes
            .lock()
            .unwrap()
            .entry(self.path.clone())
            .or_default() += bytes;
    }
}

impl VfsFile for CountingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.count(buf.len() as u64);
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.allocate(len_bytes)
    }
    fn read_all(&self) -> io::Result<FileBytes> {
        let bytes = self.inner.read_all()?;
        self.count(bytes.len() as u64);
        Ok(bytes)
    }
}

impl Vfs for CountingFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(CountingFile {
            inner: self.inner.open(path, mode)?,
            path: path.to_path_buf(),
            read_bytes: self.read_bytes.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.inner.lock(path)
    }
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.inner.lock_shared(path)
    }
}
