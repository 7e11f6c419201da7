//! redb's storage backend over the file seam, so that the state file sits on the same
//! (real or simulated) disk as the log, and crash tests cover both at once.

use std::io;
use std::sync::Arc;

use crate::log::vfs::VfsFile;

/// A redb [`redb::StorageBackend`] over one [`VfsFile`].
#[derive(Debug)]
pub struct VfsBackend {
    file: Arc<dyn VfsFile>,
}

impl VfsBackend {
    pub fn new(file: Arc<dyn VfsFile>) -> VfsBackend {
        VfsBackend { file }
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
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write_all_at(data, offset)
    }
}
