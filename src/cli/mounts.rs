//! The system mount table as the CLI needs it: is a path a mountpoint, is it a
//! coffer mount, and unmounting one with the tools the system has.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The filesystem type coffer mounts show in the mount table where the subtype
/// is passed on (fusermount); direct mounts by root show plain `fuse`.
pub const FSTYPE: &str = "fuse.coffer";
/// The prefix of the source (fsname) of a coffer mount: `coffer:<vault path>`.
pub const SOURCE_PREFIX: &str = "coffer:";

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    /// The per-mount options include `ro` (a read-only mount or bind mount).
    pub read_only: bool,
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo path fields.
fn unescape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Parses mountinfo (see proc(5)); paths are bytes, as the kernel has them.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let sep = line.windows(3).position(|w| w == b" - ")?;
            let (left, right) = (&line[..sep], &line[sep + 3..]);
            let mut fields = left.split(|&b| b == b' ').skip(4);
            let mount_point = fields.next()?;
            let read_only = fields
                .next()
                .is_some_and(|opts| opts.split(|&b| b == b',').any(|o| o == b"ro"));
            let mut r = right.split(|&b| b == b' ');
            let fstype = r.next()?;
            let source = r.next().unwrap_or(b"");
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
                fstype: String::from_utf8_lossy(fstype).into_owned(),
                source: String::from_utf8_lossy(&unescape(source)).into_owned(),
                read_only,
            })
        })
        .collect()
}

/// The current mount table, or None where /proc is unavailable.
pub fn mount_table() -> Option<Vec<MountEntry>> {
    std::fs::read("/proc/self/mountinfo")
        .ok()
        .map(|t| parse_mountinfo(&t))
}

/// The absolute, symlink-free form of `path`. Tolerates a dead FUSE mount at the
/// last component (stat fails with ENOTCONN there) by resolving only its parent.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let name = path.file_name().ok_or_else(|| {
                Error::BadInput(format!("{} is not a usable path", path.display()))
            })?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let parent = std::fs::canonicalize(parent).map_err(|e| Error::io(parent, e))?;
            Ok(parent.join(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BadInput(format!(
            "{} does not exist",
            path.display()
        ))),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl MountEntry {
    /// Whether this is a coffer mount.
    pub fn is_coffer(&self) -> bool {
        self.fstype == FSTYPE
            || (self.fstype.starts_with("fuse") && self.source.starts_with(SOURCE_PREFIX))
    }
}

/// The mount whose mountpoint is exactly `resolved` (the last one if stacked).
pub fn entry_at(resolved: &Path) -> Option<MountEntry> {
    mount_table()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == resolved)
}

/// Whether `resolved` (absolute, symlink-free) lies on a read-only mount: the
/// innermost mount containing it has `ro` among its per-mount options.
pub fn on_read_only_mount(resolved: &Path) -> bool {
    mount_table()
        .and_then(|t| {
            // max_by_key keeps the last of equals: the top of stacked mounts.
            t.into_iter()
                .filter(|m| resolved.starts_with(&m.mount_point))
                .max_by_key(|m| m.mount_point.components().count())
        })
        .is_some_and(|m| m.read_only)
}

/// Whether something is mounted at `resolved` (an absolute, resolved path).
pub fn is_mountpoint(resolved: &Path) -> bool {
    if let Some(table) = mount_table() {
        return table.iter().any(|m| m.mount_point == resolved);
    }
    // No /proc: a mountpoint sits on another device than its parent (or is `/`).
    let parent = resolved.parent().unwrap_or(resolved);
    match (std::fs::metadata(resolved), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || a.ino() == b.ino(),
        (Err(e), _) => e.raw_os_error() == Some(libc::ENOTCONN),
        _ => false,
    }
}

/// Unmounts `mnt`: `umount`, then `fusermount3 -u`, then `fusermount -u` (the
/// latter work for the user who mounted without root). `lazy` detaches a busy mount.
pub fn unmount(mnt: &Path, lazy: bool) -> Result<()> {
    let attempts: [(&str, &[&str]); 3] = if lazy {
        [
            ("umount", &["-l"]),
            ("fusermount3", &["-u", "-z"]),
            ("fusermount", &["-u", "-z"]),
        ]
    } else {
        [
            ("umount", &[]),
            ("fusermount3", &["-u"]),
            ("fusermount", &["-u"]),
        ]
    };
    let mut messages = Vec::new();
    for (program, flags) in attempts {
        let out = match Command::new(program).args(flags).arg(mnt).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                messages.push(format!("{program}: {e}"));
                continue;
            }
        };
        if out.status.success() {
            log::info!("unmounted {} with {program}", mnt.display());
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        log::debug!("{program} {}: {text}", mnt.display());
        messages.push(text);
    }
    if messages.iter().any(|m| m.contains("busy")) {
        return Err(Error::Other(format!(
            "{} is busy: a process still uses files in it; close them (see `fuser -vm {}`) and retry",
            mnt.display(),
            mnt.display()
        )));
    }
    Err(Error::Other(format!(
        "could not unmount {}: {}",
        mnt.display(),
        messages
            .last()
            .map(String::as_str)
            .unwrap_or("no umount or fusermount program found")
    )))
}

/// Whether process `pid` is still running (a zombie counts as exited).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status.lines().any(|l| {
            l.strip_prefix("State:")
                .and_then(|st| st.split_whitespace().next())
                .is_some_and(|st| st == "Z" || st == "X")
        }),
        Err(_) => false,
    }
}

/// Waits up to `timeout` for the process named in `pid_file` to exit. Returns
/// false if it is still running then; true if it exited or there was none.
pub fn wait_for_exit(pid_file: &Path, timeout: std::time::Duration) -> bool {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return true;
    };
    let deadline = std::time::Instant::now() + timeout;
    while is_running(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:40 / /tmp/my\\040mnt rw,nosuid,nodev,relatime shared:30 - fuse.coffer coffer:/tmp/v rw,user_id=0,group_id=0
46 22 0:41 / /proc rw shared:2 - proc proc rw
";

    #[test]
    fn parses_mountinfo_with_escapes() {
        let t = parse_mountinfo(SAMPLE.as_bytes());
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].mount_point, PathBuf::from("/tmp/my mnt"));
        assert_eq!(t[1].fstype, FSTYPE);
        assert_eq!(t[1].source, "coffer:/tmp/v");
        assert_eq!(t[0].mount_point, PathBuf::from("/"));
        assert!(!t[0].read_only);
        let ro = parse_mountinfo(b"50 22 8:1 /v /srv/v ro,relatime shared:1 - ext4 /dev/sda1 rw");
        assert!(ro[0].read_only);
        assert!(t[1].is_coffer());
        assert!(!t[0].is_coffer());
        let direct = parse_mountinfo(b"42 27 0:39 / /m rw - fuse coffer:/v rw,user_id=0");
        assert!(direct[0].is_coffer());
    }

    #[test]
    fn root_is_a_mountpoint_and_a_fresh_dir_is_not() {
        assert!(is_mountpoint(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        let resolved = resolve(dir.path()).unwrap();
        assert!(!is_mountpoint(&resolved));
    }

    #[test]
    fn waits_only_for_running_processes() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none.pid");
        assert!(wait_for_exit(&none, std::time::Duration::ZERO));
        let me = dir.path().join("me.pid");
        std::fs::write(&me, format!("{}\n", std::process::id())).unwrap();
        assert!(!wait_for_exit(&me, std::time::Duration::from_millis(30)));
    }

    #[test]
    fn resolve_reports_missing_paths_as_bad_input() {
        let err = resolve(Path::new("/nonexistent/coffer/path")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
