//! Backing `stat` → FUSE attributes. Regular-file sizes come from the chunk
//! layout (no sidecar read), or from the open state while a file has unwritten data.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use super::Inner;

pub fn kind_of(m: &Metadata) -> FileType {
    let t = m.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH - Duration::new((-secs) as u64, 0) + Duration::from_nanos(nsecs as u64)
    }
}

/// Plaintext length of a symlink target from its encoded length (base64url of
/// a 16-byte SIV plus the target), without decrypting.
fn symlink_len(stored: u64) -> u64 {
    (stored * 3 / 4).saturating_sub(crate::crypto::names::SIV_LEN as u64)
}

impl Inner {
    pub fn attr_of(&self, ino: u64, m: &Metadata) -> FileAttr {
        let kind = kind_of(m);
        let mut mtime = time(m.mtime(), m.mtime_nsec());
        let mut ctime = time(m.ctime(), m.ctime_nsec());
        let size = match kind {
            FileType::RegularFile => {
                let open = crate::lock(&self.open).get(&ino).cloned();
                match open {
                    Some(st) => {
                        let f = crate::lock(&st.file);
                        // Written here, not committed yet: the content file's
                        // times move only at the commit.
                        if let Some(at) = f.modified_at() {
                            mtime = mtime.max(at);
                            ctime = ctime.max(at);
                        }
                        f.size()
                    }
                    None => self.vault.layout().plain_len(m.len()),
                }
            }
            FileType::Symlink => symlink_len(m.len()),
            _ => m.len(),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: m.blocks(),
            atime: time(m.atime(), m.atime_nsec()),
            mtime,
            ctime,
            crtime: time(m.ctime(), m.ctime_nsec()),
            kind,
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev() as u32,
            blksize: 1 << self.vault.chunk_log2().min(17),
            flags: 0,
        }
    }
}
