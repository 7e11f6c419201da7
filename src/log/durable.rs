//! The durable head (`docs/format.md` section 11): a 60-byte file `log/durable-head` in which the
//! writer says, after each `fdatasync`, how far the log is durable. A reader in another process
//! reads no entry past it: the active segment may hold a batch that is written but not yet
//! durable (the pipelined commit writes it before its sync returns), and a reader that showed
//! it would show what a power cut could still take back. The file is never synced: it only
//! speaks to readers while its writer lives, and a writer's open writes it afresh. Its flag
//! says whether a writer has the log open: after a clean close every record is durable, and a
//! reader reads (and reports the damage of) the whole log.

use std::path::Path;
use std::sync::Arc;

use super::Head;
use super::format::Hash;
use super::vfs::{OpenMode, Vfs, VfsFile};

/// Name of the durable-head file inside `log/`.
pub const DURABLE_HEAD_NAME: &str = "durable-head";
/// First bytes of the file (F-80).
pub const DURABLE_HEAD_MAGIC: [u8; 8] = *b"FOLIODUR";
/// Version of its layout (F-80).
pub const DURABLE_HEAD_VERSION: u32 = 1;
/// Length of the file (F-80).
pub const DURABLE_HEAD_BYTES: usize = 60;

/// The `flags` bit set while a writer has the log open (F-80).
pub const FLAG_WRITER_OPEN: u32 = 1;

/// What the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableHead {
    /// The last durable entry.
    pub head: Head,
    /// A writer has the log open (or died with it open): records past `head` may not be
    /// durable.
    pub writer_open: bool,
}

/// Encodes a durable head: `{ magic 8 | version u32 | flags u32 | seq u64 | block_hash 32 |
/// crc32 u32 }`, little-endian.
pub fn encode(durable: DurableHead) -> [u8; DURABLE_HEAD_BYTES] {
    let DurableHead { head, writer_open } = durable;
    let mut bytes = [0u8; DURABLE_HEAD_BYTES];
    bytes[0..8].copy_from_slice(&DURABLE_HEAD_MAGIC);
    bytes[8..12].copy_from_slice(&DURABLE_HEAD_VERSION.to_le_bytes());
    let flags = if writer_open { FLAG_WRITER_OPEN } else { 0 };
    bytes[12..16].copy_from_slice(&flags.to_le_bytes());
    bytes[16..24].copy_from_slice(&head.seq.to_le_bytes());
    bytes[24..56].copy_from_slice(&head.block_hash);
    let crc = crc32fast::hash(&bytes[..56]);
    bytes[56..60].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes a durable head; `None` unless it is exactly [`DURABLE_HEAD_BYTES`] long, with the
/// magic, a crc that holds, version 1 and no flag but [`FLAG_WRITER_OPEN`] (F-80).
pub fn decode(bytes: &[u8]) -> Option<DurableHead> {
    let bytes: &[u8; DURABLE_HEAD_BYTES] = bytes.try_into().ok()?;
    let crc = u32::from_le_bytes(bytes[56..60].try_into().ok()?);
    if bytes[0..8] != DURABLE_HEAD_MAGIC || crc32fast::hash(&bytes[..56]) != crc {
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let flags = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
    if version != DURABLE_HEAD_VERSION || flags & !FLAG_WRITER_OPEN != 0 {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    let block_hash: Hash = bytes[24..56].try_into().ok()?;
    Some(DurableHead {
        head: Head { seq, block_hash },
        writer_open: flags & FLAG_WRITER_OPEN != 0,
    })
}

/// The writer's handle on the file: opened (created if missing) by a read-write open.
#[derive(Debug)]
pub(super) struct DurableHeadFile {
    file: Arc<dyn VfsFile>,
}

impl DurableHeadFile {
    /// Opens or creates `log/durable-head`; `None` when it cannot be (then readers bound what
    /// they read by the state's watermark alone, F-81).
    pub(super) fn open(vfs: &dyn Vfs, log_dir: &Path) -> Option<DurableHeadFile> {
        let path = log_dir.join(DURABLE_HEAD_NAME);
        let file = match vfs.open(&path, OpenMode::Write) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                vfs.open(&path, OpenMode::CreateNew).ok()?
            }
            Err(_) => return None,
        };
        Some(DurableHeadFile { file })
    }

    /// Says that the log is durable up to `head`, and whether its writer still has it open.
    /// One positional write of the whole file, not synced; best effort: a reader of a stale
    /// file reads less, never more (F-81).
    pub(super) fn publish(&self, head: Head, writer_open: bool) {
        let durable = DurableHead { head, writer_open };
        let _ = self.file.write_all_at(&encode(durable), 0);
    }
}

/// Reads `log/durable-head`: `Ok(None)` when there is none (a store no writer of this version
/// has opened), the head when it decodes. A file that does not decode is read again a few times
/// (a reader may catch the writer's write halfway), then taken as absent.
pub fn read(vfs: &dyn Vfs, store_dir: &Path) -> Option<DurableHead> {
    let path = store_dir.join(super::LOG_DIR_NAME).join(DURABLE_HEAD_NAME);
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let file = vfs.open(&path, OpenMode::Read).ok()?;
        let mut bytes = [0u8; DURABLE_HEAD_BYTES];
        if file.len().ok()? != DURABLE_HEAD_BYTES as u64 {
            continue;
        }
        if file.read_exact_at(&mut bytes, 0).is_err() {
            continue;
        }
        if let Some(head) = decode(&bytes) {
            return Some(head);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_head_decodes_to_what_was_encoded_and_any_flipped_byte_is_refused() {
        let head = Head {
            seq: 1_234_567,
            block_hash: [7u8; 32],
        };
        for writer_open in [false, true] {
            let durable = DurableHead { head, writer_open };
            assert_eq!(decode(&encode(durable)), Some(durable));
        }
        let bytes = encode(DurableHead {
            head,
            writer_open: true,
        });
        for at in 0..DURABLE_HEAD_BYTES {
            let mut damaged = bytes;
            damaged[at] ^= 0x01;
            assert_eq!(decode(&damaged), None, "byte {at} flipped");
        }
        assert_eq!(decode(&bytes[..59]), None);
    }
}
