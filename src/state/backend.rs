//! redb's storage backend over the file seam, so that the state file sits on the same
//! (real or simulated) disk as the log, and crash tests cover both at once; and the memory
//! overlay that lets redb open a state file this process may only read.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::log::vfs::{FileBytes, VfsFile};

/// A redb [`redb::StorageBackend`] over one [`VfsFile`], with a fence: once the flag it
/// shares is set, every write, length change and sync fails, so that redb writes nothing more
/// to the file (not even the header its close would write). The ledger sets it when the state
/// holds commits whose entries may never reach the log (`State::fence`).
#[derive(Debug)]
pub struct VfsBackend {
    file: Arc<dyn VfsFile>,
    fenced: Arc<AtomicBool>,
}

impl VfsBackend {
    pub fn new(file: Arc<dyn VfsFile>, fenced: Arc<AtomicBool>) -> VfsBackend {
        VfsBackend { file, fenced }
    }

    fn check_fence(&self) -> Result<(), io::Error> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(io::Error::other(
                "the state is fenced: it holds commits whose log entries failed",
            ));
        }
        Ok(())
    }
}

impl redb::StorageBackend for VfsBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check_fence()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.check_fence()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check_fence()?;
        self.file.write_all_at(data, offset)
    }
}

/// Size of the pieces in which [`MemoryOverlay`] keeps what was written.
const OVERLAY_PAGE_BYTES: u64 = 4096;

/// A file that this process may only read, made writable in memory: reads see the file under
/// whatever was written since, writes and length changes stay in memory and are gone with the
/// overlay, and syncs do nothing. redb runs on it to open a state file of a store that is
/// read-only to this process: its recovery and the catch-up of entries past the watermark
/// happen as usual, and nothing reaches the disk. Memory grows with the pages written only.
#[derive(Debug)]
pub struct MemoryOverlay {
    base: Arc<dyn VfsFile>,
    layer: Mutex<Layer>,
}

#[derive(Debug)]
struct Layer {
    /// Written pages, by index; each `OVERLAY_PAGE_BYTES` long.
    pages: BTreeMap<u64, Vec<u8>>,
    len_bytes: u64,
    /// Bytes of `base` still seen where no page was written; never more than `len_bytes`, so
    /// that a file cut short and grown again reads zeros past the cut.
    base_visible_bytes: u64,
}

impl MemoryOverlay {
    pub fn new(base: Arc<dyn VfsFile>) -> io::Result<MemoryOverlay> {
        let len_bytes = base.len()?;
        let layer = Layer {
            pages: BTreeMap::new(),
            len_bytes,
            base_visible_bytes: len_bytes,
        };
        Ok(MemoryOverlay {
            base,
            layer: Mutex::new(layer),
        })
    }

    fn layer(&self) -> MutexGuard<'_, Layer> {
        self.layer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads `out.len()` bytes at `offset` of the file under the overlay, zeros past what of
    /// it is still visible.
    fn read_base(&self, layer: &Layer, out: &mut [u8], offset: u64) -> io::Result<()> {
        out.fill(0);
        let end = (offset + out.len() as u64).min(layer.base_visible_bytes);
        if end > offset {
            self.base
                .read_exact_at(&mut out[..(end - offset) as usize], offset)?;
        }
        Ok(())
    }
}

/// Splits `offset..offset + len` at page bounds: (page index, offset in page, offset in the
/// range, length) for each piece.
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
    let end = offset + len as u64;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page = at / OVERLAY_PAGE_BYTES;
        let in_page = (at % OVERLAY_PAGE_BYTES) as usize;
        let piece = (OVERLAY_PAGE_BYTES - at % OVERLAY_PAGE_BYTES).min(end - at) as usize;
        let item = (page, in_page, (at - offset) as usize, piece);
        at += piece as u64;
        Some(item)
    })
}

impl VfsFile for MemoryOverlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.layer().len_bytes)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let layer = self.layer();
        if offset + buf.len() as u64 > layer.len_bytes {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for (page, in_page, at, len) in pieces(offset, buf.len()) {
            let out = &mut buf[at..at + len];
            match layer.pages.get(&page) {
                Some(bytes) => out.copy_from_slice(&bytes[in_page..in_page + len]),
                None => self.read_base(&layer, out, offset + at as u64)?,
            }
        }
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut layer = self.layer();
        for (page, in_page, at, len) in pieces(offset, buf.len()) {
            if !layer.pages.contains_key(&page) {
                let mut bytes = vec![0u8; OVERLAY_PAGE_BYTES as usize];
                self.read_base(&layer, &mut bytes, page * OVERLAY_PAGE_BYTES)?;
                layer.pages.insert(page, bytes);
            }
            if let Some(bytes) = layer.pages.get_mut(&page) {
                bytes[in_page..in_page + len].copy_from_slice(&buf[at..at + len]);
            }
        }
        layer.len_bytes = layer.len_bytes.max(offset + buf.len() as u64);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        let mut layer = self.layer();
        if len_bytes < layer.len_bytes {
            layer.base_visible_bytes = layer.base_visible_bytes.min(len_bytes);
            let first_gone = len_bytes.div_ceil(OVERLAY_PAGE_BYTES);
            layer.pages.split_off(&first_gone);
            let in_page = (len_bytes % OVERLAY_PAGE_BYTES) as usize;
            if in_page > 0
                && let Some(bytes) = layer.pages.get_mut(&(len_bytes / OVERLAY_PAGE_BYTES))
            {
                bytes[in_page..].fill(0);
            }
        }
        layer.len_bytes = len_bytes;
        Ok(())
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        let mut layer = self.layer();
        layer.len_bytes = layer.len_bytes.max(len_bytes);
        Ok(())
    }

    fn read_all(&self) -> io::Result<FileBytes> {
        let mut bytes = vec![0u8; self.len()? as usize];
        self.read_exact_at(&mut bytes, 0)?;
        Ok(FileBytes::Owned(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::sim::SimFs;
    use crate::log::vfs::{OpenMode, Vfs};
    use std::path::Path;

    #[test]
    fn an_overlay_reads_its_writes_over_the_file_and_never_writes_the_file() {
        let fs = SimFs::new(1);
        fs.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/f");
        let file = fs.open(path, OpenMode::CreateNew).unwrap();
        let original: Vec<u8> = (0..10_000u32).map(|n| n as u8).collect();
        file.write_all_at(&original, 0).unwrap();
        let overlay = MemoryOverlay::new(fs.open(path, OpenMode::Read).unwrap()).unwrap();
        overlay.write_all_at(&[0xAA; 5000], 3000).unwrap();
        overlay.write_all_at(&[0xBB; 10], 12_000).unwrap();
        let mut expected = original.clone();
        expected[3000..8000].fill(0xAA);
        expected.resize(12_010, 0);
        expected[12_000..].fill(0xBB);
        assert_eq!(&overlay.read_all().unwrap()[..], &expected[..]);
        // Cut short and grown again: zeros past the cut, from the file as from the pages.
        overlay.set_len(2000).unwrap();
        overlay.set_len(9000).unwrap();
        expected.truncate(2000);
        expected.resize(9000, 0);
        assert_eq!(&overlay.read_all().unwrap()[..], &expected[..]);
        overlay.sync_data().unwrap();
        assert_eq!(fs.file_bytes(path).unwrap(), original);
    }
}
