//! Faults around a live mount: a full backing directory, a read-only backing
//! directory, the vault deleted under the daemon, a busy mountpoint, a vault of
//! a newer format, and the daemon's resource use (file descriptors and memory
//! after many files). Every failure must be a clean errno in the mount or a
//! one-line error with the documented exit code in the CLI: never a panic, a
//! hang, or a corrupted vault.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{errno_name, is_mounted, pattern, Member, Out, TestVault, Workspace};

/// Runs a system command (mount, umount), panicking unless it exits 0.
#[track_caller]
fn sys(program: &str, args: &[&OsStr]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kernel mount made by the test (tmpfs or bind); unmounted on drop.
struct SysMount {
    path: PathBuf,
}

impl SysMount {
    /// A tmpfs of `size` (e.g. "8m") on the fresh directory `path`.
    fn tmpfs(path: &Path, size: &str) -> SysMount {
        fs::create_dir_all(path).unwrap();
        let opt = format!("size={size},mode=0755");
        sys(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("tmpfs"),
                OsStr::new("-o"),
                OsStr::new(&opt),
                OsStr::new("tmpfs"),
                path.as_os_str(),
            ],
        );
        SysMount {
            path: path.to_path_buf(),
        }
    }

    /// A read-only bind mount of `src` on the fresh directory `path`.
    fn read_only_bind(src: &Path, path: &Path) -> SysMount {
        fs::create_dir_all(path).unwrap();
        sys(
            "mount",
            &[OsStr::new("--bind"), src.as_os_str(), path.as_os_str()],
        );
        let guard = SysMount {
            path: path.to_path_buf(),
        };
        sys(
            "mount",
            &[
                OsStr::new("-o"),
                OsStr::new("remount,bind,ro"),
                path.as_os_str(),
            ],
        );
        guard
    }
}

impl Drop for SysMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            common::lazy_unmount(&self.path);
        }
    }
}

/// Every regular file under `root` (relative path -> bytes), to show that a
/// refused command changed nothing.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &path, out);
            } else {
                let data = if ft.is_file() {
                    fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), data);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[track_caller]
fn assert_unchanged(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) {
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(before), names(after), "{what}: files changed");
    for (k, v) in before {
        assert!(after[k] == *v, "{what}: {} changed", k.display());
    }
}

fn verify(v: &TestVault, who: &str) -> Out {
    v.as_member(v.member(who), [OsStr::new("verify"), v.root.as_os_str()])
}

/// A vault for `names` whose directory is `root` (which must not exist yet or
/// be empty); keys and state live in a fresh workspace.
fn vault_at(root: &Path, names: &[&str]) -> TestVault {
    let ws = Workspace::new();
    let members: Vec<Member> = names.iter().map(|n| ws.keygen(n, None)).collect();
    ws.coffer(
        &members[0].state,
        [
            OsStr::new("init"),
            root.as_os_str(),
            OsStr::new("--identity"),
            members[0].key.as_os_str(),
        ],
        &[],
    )
    .ok();
    let v = TestVault {
        ws,
        root: root.to_path_buf(),
        members,
    };
    for m in &v.members[1..] {
        v.add_member(m).ok();
    }
    v
}

/// Writes `data` to `path` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Runs `f` on another thread and fails the test if it has not returned
/// within `limit` (a hung FUSE request).
#[track_caller]
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?} (hung)"))
}

/// The daemon's process id (the foreground child).
fn daemon_pid(m: &common::Mount) -> u32 {
    m.child.as_ref().expect("foreground mount").id()
}

fn pid_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

fn errno_of_last() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// A `/proc/PID/status` line's value in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/PID/status")
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

#[test]
fn full_backing_directory_is_enospc_and_recovers() {
    require_fuse!();
    let outer = tempfile::Builder::new()
        .prefix("coffer-full-")
        .tempdir()
        .unwrap();
    let small = SysMount::tmpfs(&outer.path().join("small"), "8m");
    let root = small.path.join("vault");
    let v = vault_at(&root, &["alice", "bob"]);
    let log = v.ws.path().join("full.log");
    let m = v.mount_foreground("alice", &log);
    let pid = daemon_pid(&m);

    // Files written (and fsynced) before the disk fills.
    let kept: Vec<(PathBuf, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                m.join(format!("keep-{i}")),
                pattern(i, 100_000 + i as usize),
            )
        })
        .collect();
    for (p, d) in &kept {
        write_synced(p, d).unwrap();
    }

    // Fill the backing directory through the mount.
    let big = m.join("big");
    let chunk = pattern(99, 256 * 1024);
    let err = within(Duration::from_secs(120), "filling the disk", {
        let big = big.clone();
        move || -> io::Error {
            let mut written = 0usize;
            let mut f = match fs::File::create(&big) {
                Ok(f) => f,
                Err(e) => return e,
            };
            loop {
                if let Err(e) = f.write_all(&chunk) {
                    return e;
                }
                written += chunk.len();
                if written > 64 << 20 {
                    panic!(
                        "wrote {written} bytes into an 8 MiB backing directory without an error"
                    );
                }
                if written % (1 << 20) == 0 {
                    if let Err(e) = f.sync_all() {
                        return e;
                    }
                }
            }
        }
    });
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "filling the backing directory: expected ENOSPC, got {err:?}"
    );
    assert!(pid_alive(pid), "the daemon died when the disk filled");

    // More writes keep failing cleanly; nothing written before is damaged.
    let more = write_synced(&m.join("more"), &pattern(5, 1 << 20));
    match more {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::ENOSPC),
            "write on a full disk: {}",
            errno_name(e.raw_os_error().unwrap_or(0))
        ),
        Ok(()) => panic!("a 1 MiB write succeeded on a full 8 MiB disk"),
    }
    // fallocate reserves the backing blocks, so a full disk refuses it there
    // (not at a later write), and a refused one leaves the size as it was.
    {
        let f = fs::OpenOptions::new().write(true).open(&kept[2].0).unwrap();
        for (mode, what) in [(0, "growing"), (libc::FALLOC_FL_KEEP_SIZE, "keep-size")] {
            assert_eq!(
                common::fallocate(&f, mode, 0, 4 << 20),
                Err(libc::ENOSPC),
                "a {what} fallocate of 4 MiB on a full disk"
            );
        }
        drop(f);
        assert_eq!(
            fs::metadata(&kept[2].0).unwrap().len(),
            kept[2].1.len() as u64
        );
    }
    for (p, d) in &kept {
        assert!(
            fs::read(p).unwrap() == *d,
            "{} changed after the disk filled",
            p.display()
        );
    }

    // A grant fits in the room its sidecar keeps (the older copy is
    // overwritten in place, the log has blocks reserved): it works on a full disk.
    v.as_member(
        v.member("alice"),
        [
            OsStr::new("grant"),
            kept[0].0.as_os_str(),
            OsStr::new("bob"),
            OsStr::new("--read"),
        ],
    )
    .ok();
    // A rotation's re-encryption needs new space (its journal): exit 5, one
    // line, no content file touched. Its first step, the new key epoch, fits
    // in place and stays recorded, as after `revoke --lazy`; the rotation
    // after space is freed (below) finishes the re-encryption.
    let contents = |mut s: BTreeMap<PathBuf, Vec<u8>>| {
        s.retain(|p, _| p.starts_with("tree"));
        s
    };
    let before = contents(snapshot(&root));
    let out = v.as_member(
        v.member("alice"),
        [OsStr::new("rotate"), kept[1].0.as_os_str()],
    );
    out.expect_error(5);
    assert!(
        out.stderr.contains("space"),
        "the message should say the disk is full: {out:#?}"
    );
    assert_unchanged(&before, &contents(snapshot(&root)), "rotate on a full disk");
    assert!(fs::read(&kept[1].0).unwrap() == kept[1].1);

    // Freeing space makes the mount work again.
    let _ = fs::remove_file(m.join("more"));
    fs::remove_file(&big).unwrap();
    let fresh = pattern(7, 300_000);
    let mut last = None;
    common::eventually(Duration::from_secs(10), || {
        let r = write_synced(&m.join("after"), &fresh);
        last = r.as_ref().err().map(|e| e.to_string());
        r.ok()
    })
    .unwrap_or_else(|| panic!("writing after space was freed: {last:?}"));
    assert_eq!(fs::read(m.join("after")).unwrap(), fresh);
    for (p, d) in &kept {
        assert!(fs::read(p).unwrap() == *d);
    }
    // And the refused rotation now works.
    v.as_member(
        v.member("alice"),
        [OsStr::new("rotate"), kept[1].0.as_os_str()],
    )
    .ok();
    m.unmount();
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("panicked"),
        "daemon panicked:\n{log_text}"
    );
    let out = verify(&v, "alice");
    assert_eq!(out.code, 0, "verify after a full disk: {out:#?}");
    drop(v);
    drop(small);
}

#[test]
fn read_only_backing_directory_reads_and_refuses_writes() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    {
        let m = v.mount("alice");
        fs::write(m.join("a.txt"), b"alpha").unwrap();
        fs::create_dir(m.join("d")).unwrap();
        fs::write(m.join("d/b.bin"), pattern(3, 200_000)).unwrap();
        m.unmount();
    }
    let before = snapshot(&v.root);
    let ro_root = v.ws.path().join("vault-ro");
    let ro = SysMount::read_only_bind(&v.root, &ro_root);
    let rv = TestVault {
        ws: Workspace::new(),
        root: ro_root.clone(),
        members: v.members.clone(),
    };

    // A read-only mount of it works and reads.
    {
        let m = rv.mount_with("alice", &["--read-only"]);
        assert_eq!(fs::read(m.join("a.txt")).unwrap(), b"alpha");
        assert!(fs::read(m.join("d/b.bin")).unwrap() == pattern(3, 200_000));
        let e = fs::write(m.join("new.txt"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e:?}");
        m.unmount();
    }

    // A read-write mount: either refused up front with exit 5, or it reads
    // and every write fails with EROFS/EACCES.
    let alice = rv.member("alice").clone();
    let mnt = rv.mountpoint("rw");
    match rv.try_mount(&alice, &mnt, &[]) {
        Err(out) => out.expect_error(5),
        Ok(m) => {
            assert_eq!(fs::read(m.join("a.txt")).unwrap(), b"alpha");
            let clean = |r: io::Result<()>, what: &str| match r {
                Ok(()) => panic!("{what} succeeded on a read-only backing directory"),
                Err(e) => assert!(
                    matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)),
                    "{what}: expected EROFS or EACCES, got {e:?}"
                ),
            };
            clean(fs::write(m.join("new.txt"), b"x"), "create");
            clean(
                fs::OpenOptions::new()
                    .write(true)
                    .open(m.join("a.txt"))
                    .and_then(|mut f| {
                        f.write_all(b"overwrite")?;
                        f.sync_all()
                    }),
                "overwrite",
            );
            clean(fs::create_dir(m.join("nd")), "mkdir");
            clean(fs::remove_file(m.join("a.txt")), "unlink");
            clean(fs::rename(m.join("a.txt"), m.join("z.txt")), "rename");
            assert_eq!(fs::read(m.join("a.txt")).unwrap(), b"alpha");
            m.unmount();
        }
    }

    // CLI changes: exit 5, one line.
    let out = rv.as_member(
        &alice,
        [
            OsStr::new("grant"),
            OsStr::new("a.txt"),
            OsStr::new("bob"),
            OsStr::new("--read"),
            OsStr::new("--vault"),
            ro_root.as_os_str(),
        ],
    );
    out.expect_error(5);
    let carol = rv.ws.keygen("carol", None);
    rv.add_member(&carol).expect_error(5);
    // Verify reads only.
    let out = verify(&rv, "alice");
    assert_eq!(out.code, 0, "verify of a read-only vault: {out:#?}");

    drop(ro);
    assert_unchanged(&before, &snapshot(&v.root), "read-only backing directory");
    assert_eq!(verify(&v, "alice").code, 0);
}

#[test]
fn vault_deleted_under_a_live_mount() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let log = v.ws.path().join("deleted.log");
    let m = v.mount_foreground("alice", &log);
    let pid = daemon_pid(&m);
    fs::write(m.join("f.txt"), b"before").unwrap();
    fs::create_dir(m.join("d")).unwrap();
    fs::write(m.join("d/g.txt"), pattern(1, 150_000)).unwrap();
    let mut open = fs::File::open(m.join("d/g.txt")).unwrap();

    fs::remove_dir_all(&v.root).unwrap();

    let mnt = m.path().to_path_buf();
    let results = within(
        Duration::from_secs(60),
        "operations on a deleted vault",
        move || {
            let mut buf = Vec::new();
            vec![
                ("create", fs::write(mnt.join("new.txt"), b"x")),
                ("mkdir", fs::create_dir(mnt.join("nd"))),
                ("read", fs::read(mnt.join("f.txt")).map(|_| ())),
                ("stat", fs::metadata(mnt.join("d/g.txt")).map(|_| ())),
                ("readdir", fs::read_dir(&mnt).map(|d| d.for_each(drop))),
                ("unlink", fs::remove_file(mnt.join("f.txt"))),
                ("rename", fs::rename(mnt.join("d"), mnt.join("e"))),
                ("read open file", open.read_to_end(&mut buf).map(|_| ())),
                (
                    "readdir again",
                    fs::read_dir(&mnt).map(|d| d.for_each(drop)),
                ),
            ]
        },
    );
    for (what, r) in &results {
        if let Err(e) = r {
            let code = e.raw_os_error().unwrap_or(0);
            assert!(
                matches!(code, libc::EIO | libc::ENOENT),
                "{what} on a deleted vault: expected EIO or ENOENT, got {}",
                errno_name(code)
            );
        }
    }
    let (_, create) = &results[0];
    assert!(
        create.is_err(),
        "creating a file in a deleted vault succeeded"
    );
    assert!(pid_alive(pid), "the daemon died when its vault was deleted");
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("panicked"),
        "daemon panicked:\n{log_text}"
    );
    within(Duration::from_secs(60), "unmount", move || m.unmount());
}

#[test]
fn busy_mountpoint_is_exit_2() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let m = v.mount("alice");
    fs::write(m.join("x"), b"still here").unwrap();
    // The same mountpoint again, as the same member and as another.
    for who in ["alice", "bob"] {
        let member = v.member(who).clone();
        let out = v.as_member(
            &member,
            [
                OsStr::new("mount"),
                v.root.as_os_str(),
                m.path().as_os_str(),
            ],
        );
        out.expect_error(2);
        assert!(out.stderr.contains("busy"), "{out:#?}");
    }
    assert!(is_mounted(m.path()));
    assert_eq!(fs::read(m.join("x")).unwrap(), b"still here");
    m.unmount();
}

/// The daemon holds content keys and the identity seed: a crash must not
/// write them to a core file.
#[test]
fn daemon_writes_no_core_dumps() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let log = v.ws.path().join("core.log");
    let m = v.mount_foreground("alice", &log);
    let limits = fs::read_to_string(format!("/proc/{}/limits", daemon_pid(&m))).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core size line in /proc/PID/limits");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(fields[4..6], ["0", "0"], "soft and hard limit: {core}");
}

#[test]
fn file_descriptors_return_to_baseline() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let log = v.ws.path().join("fd.log");
    let m = v.mount_foreground("alice", &log);
    let pid = daemon_pid(&m);
    fs::write(m.join("f"), b"content").unwrap();
    fs::create_dir(m.join("d")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = fd_count(pid);

    for i in 0..10_000 {
        let mut f = fs::File::open(m.join("f")).unwrap();
        if i % 10 == 0 {
            let mut s = Vec::new();
            f.read_to_end(&mut s).unwrap();
            assert_eq!(s, b"content");
        }
    }
    // isatty (an ioctl) on a file: ENOTTY, quietly (Python does it on every open).
    {
        use std::os::fd::AsRawFd;
        let f = fs::File::open(m.join("f")).unwrap();
        // SAFETY: isatty on an fd this test owns.
        assert_eq!(unsafe { libc::isatty(f.as_raw_fd()) }, 0);
        assert_eq!(errno_of_last(), libc::ENOTTY);
    }
    for i in 0..2_000 {
        let p = m.join(format!("d/t{}", i % 7));
        fs::write(&p, b"tmp").unwrap();
        fs::remove_file(&p).unwrap();
    }
    for i in 0..200 {
        let d = m.join(format!("dd{i}"));
        fs::create_dir(&d).unwrap();
        fs::remove_dir(&d).unwrap();
    }
    // Give the flusher a moment to close what it closes lazily.
    let settled = common::eventually(Duration::from_secs(15), || {
        let n = fd_count(pid);
        (n <= baseline + 8).then_some(n)
    });
    let now = fd_count(pid);
    assert!(
        settled.is_some(),
        "daemon fds: {baseline} before, {now} after 10k open/close and 2k create/unlink"
    );
    eprintln!("daemon fds: {baseline} before, {now} after");
    m.unmount();
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("Not Implemented"),
        "the daemon logged unimplemented requests:\n{log_text}"
    );
}

#[test]
fn daemon_memory_is_bounded_after_10k_files() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let log = v.ws.path().join("rss.log");
    let m = v.mount_foreground("alice", &log);
    let pid = daemon_pid(&m);
    let start = rss_kib(pid);
    let files = 10_000;
    for d in 0..20 {
        fs::create_dir(m.join(format!("d{d}"))).unwrap();
    }
    let path = |i: usize| m.join(format!("d{}/file-with-a-longish-name-{i}", i % 20));
    for i in 0..files {
        fs::write(path(i), pattern(i as u64, 100 + i % 3000)).unwrap();
    }
    for i in 0..files {
        let got = fs::read(path(i)).unwrap();
        assert!(got == pattern(i as u64, 100 + i % 3000), "file {i}");
    }
    for d in 0..20 {
        assert_eq!(
            fs::read_dir(m.join(format!("d{d}"))).unwrap().count(),
            files / 20
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let end = rss_kib(pid);
    eprintln!("daemon VmRSS: {start} KiB at start, {end} KiB after {files} files");
    // Measured ~16.5 MiB (session 6: one compact history record per id, a
    // verified-sidecar cache of 512, one malloc arena; 21.5 before). Issue
    // 6's 32 MiB is for a whole benchmark run; this step gets 24.
    assert!(
        end <= 24 * 1024,
        "daemon VmRSS {end} KiB after touching {files} files (limit 24 MiB)"
    );
    // A grant of the whole tree puts 10,000 entries in alice's log; the mount
    // reads them on its next open, a window at a time (it held them all at
    // once before: peak 30 MiB here, 17.5 now).
    v.as_member(
        v.member("alice"),
        [
            std::ffi::OsStr::new("grant"),
            m.path().as_os_str(),
            std::ffi::OsStr::new("bob"),
            std::ffi::OsStr::new("--read"),
            std::ffi::OsStr::new("-r"),
        ],
    )
    .ok();
    assert_eq!(fs::read(path(1)).unwrap(), pattern(1, 101));
    let meta = fs::metadata(path(0)).unwrap();
    assert_eq!(meta.size(), 100);
    let peak = status_kib(pid, "VmHWM:");
    eprintln!("daemon VmHWM after the grant: {peak} KiB");
    assert!(
        peak <= 24 * 1024,
        "daemon peak RSS {peak} KiB over 10,000 files and a grant of them all (limit 24 MiB)"
    );
    m.unmount();
}

/// The bytes of the (single) member's log checkpoint in a vault, if any.
fn log_checkpoint(vault: &Path) -> Option<Vec<u8>> {
    let p = fs::read_dir(vault.join("log"))
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "head"))?;
    fs::read(p).ok()
}

/// Until the signed checkpoint of a member's log covers an entry, every other
/// process checks that entry's signature again (a `grant -r` right after a copy
/// spent half its CPU on it). The mount checkpoints once a burst of entries is
/// over, not only every ~5 s.
#[test]
fn a_burst_of_history_entries_is_checkpointed_once_it_is_over() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let head = || log_checkpoint(&v.root);
    // Let the mount settle, then a burst: 300 files, ~900 entries.
    std::thread::sleep(Duration::from_millis(600));
    let before = head();
    for i in 0..300u64 {
        fs::write(m.join(format!("f{i}")), pattern(i, 100)).unwrap();
    }
    let started = std::time::Instant::now();
    let renewed = common::eventually(Duration::from_secs(6), || {
        let now = head();
        (now.is_some() && now != before).then_some(started.elapsed())
    });
    let took = renewed.expect("no new checkpoint after the burst");
    eprintln!("checkpoint {took:?} after the burst");
    assert!(
        took <= Duration::from_millis(2000),
        "the checkpoint came {took:?} after the burst (the periodic one is every ~5 s)"
    );
    m.unmount();
}

/// A long burst is checkpointed while it lasts (every flusher tick with 256+
/// unchecked entries), not only once it is over: a command run in the middle
/// of a long copy checks few of its entries' signatures one by one. The ~5 s
/// periodic save can renew the checkpoint at most once in the 3 s burst.
#[test]
fn a_long_burst_of_history_entries_is_checkpointed_while_it_lasts() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let head = || log_checkpoint(&v.root);
    std::thread::sleep(Duration::from_millis(600));
    let mut seen = vec![head()];
    let started = std::time::Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        fs::write(m.join(format!("f{i}")), pattern(i, 100)).unwrap();
        i += 1;
        if i % 20 == 0 {
            let now = head();
            if now != *seen.last().unwrap() {
                seen.push(now);
            }
        }
    }
    let renewed = seen.len() - 1;
    eprintln!("{i} files, {renewed} new checkpoints during the burst");
    assert!(
        renewed >= 2,
        "{renewed} checkpoint(s) while {i} files were written over 3 s"
    );
    m.unmount();
}

/// A large sequential write streams whole chunks to the content file instead of
/// holding megabytes of plaintext until a commit (FORMAT.md, "Streamed
/// chunks"): the daemon's peak grows by little over 256 MiB written, and the
/// file reads back whole, in this mount and in a second one.
#[test]
fn a_large_sequential_write_holds_little_plaintext() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let log = v.ws.path().join("seq.log");
    let m = v.mount_foreground("alice", &log);
    let pid = daemon_pid(&m);
    // Warm up: fuser's request buffers, the allocator, a first commit.
    fs::write(m.join("warm"), pattern(1, 200 << 10)).unwrap();
    let before = status_kib(pid, "VmHWM:");
    let piece = pattern(2, 1 << 20);
    let mut h = blake3::Hasher::new();
    {
        let mut f = File::create(m.join("big")).unwrap();
        for i in 0..256u32 {
            let mut p = piece.clone();
            p[..4].copy_from_slice(&i.to_le_bytes());
            f.write_all(&p).unwrap();
            h.update(&p);
        }
        f.sync_all().unwrap();
    }
    let peak = status_kib(pid, "VmHWM:");
    eprintln!("daemon VmHWM {before} KiB before, {peak} KiB after 256 MiB written");
    let read_back = |path: &Path| {
        let mut h = blake3::Hasher::new();
        let mut f = File::open(path).unwrap();
        std::io::copy(&mut f, &mut h).unwrap();
        h.finalize()
    };
    assert_eq!(read_back(&m.join("big")), h.finalize());
    // Measured +1.6 MiB; +5.4 to +7.1 MiB when 4 MiB of plaintext waited for
    // each commit (session 6's binary fails this).
    assert!(
        peak <= before + 3584,
        "daemon peak grew from {before} to {peak} KiB over a 256 MiB sequential write"
    );
    m.unmount();
    let m = v.mount("alice");
    assert_eq!(read_back(&m.join("big")), h.finalize());
    m.unmount();
}

#[test]
fn newer_vault_format_is_exit_2_and_says_upgrade() {
    require_fuse!();
    use coffer::format::{self, Signed, VaultConfig};
    let v = TestVault::new(&["alice"]);
    {
        let m = v.mount("alice");
        fs::write(m.join("a"), b"a").unwrap();
        m.unmount();
    }
    let cfg_path = v.root.join("coffer.vault");
    let bytes = fs::read(&cfg_path).unwrap();
    let mut signed: Signed<VaultConfig> =
        format::decode_file(format::VAULT_CONFIG, &bytes).unwrap();
    // The body starts with format_version as a postcard varint (1 byte for 1..127).
    assert_eq!(signed.body[0], format::FORMAT_VERSION as u8);
    signed.body[0] = format::FORMAT_VERSION as u8 + 1;
    fs::write(
        &cfg_path,
        format::encode_file(format::VAULT_CONFIG, &signed),
    )
    .unwrap();
    let before = snapshot(&v.root);

    let alice = v.member("alice").clone();
    let mnt = v.mountpoint("newer");
    let out = match v.try_mount(&alice, &mnt, &[]) {
        Ok(_) => panic!("mounting a vault of a newer format succeeded"),
        Err(out) => out,
    };
    let check = |out: &Out, what: &str| {
        out.expect_error(2);
        assert!(
            out.stderr.contains("upgrade coffer"),
            "{what}: the message should say to upgrade coffer: {out:#?}"
        );
    };
    check(&out, "mount");
    check(&verify(&v, "alice"), "verify");
    check(
        &v.as_member(
            &alice,
            [
                OsStr::new("grant"),
                OsStr::new("a"),
                OsStr::new("alice"),
                OsStr::new("--read"),
                OsStr::new("--vault"),
                v.root.as_os_str(),
            ],
        ),
        "grant",
    );
    let carol = v.ws.keygen("carol", None);
    check(&v.add_member(&carol), "user add");
    assert_unchanged(&before, &snapshot(&v.root), "a newer vault");
}
