//! Shared harness for the integration tests that mount real vaults through the
//! `coffer` binary: a temporary workspace, members with identity files, a vault
//! made with `coffer keygen/init/user add`, and a `Mount` guard that always
//! unmounts (even when the test panics) and waits for the daemon to exit.
//!
//! Every command runs with its own `XDG_STATE_HOME` (one per member, inside the
//! test's workspace), `COFFER_TEST_FAST_KDF=1`, and without inheriting
//! `COFFER_IDENTITY` or `COFFER_PASSPHRASE`, so tests never share state.
//!
//! `COFFER_BIN` overrides the binary under test (default: the one cargo built).

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Plaintext chunk size of a vault (64 KiB, docs/FORMAT.md).
pub const CHUNK: usize = 64 * 1024;

/// How long any single CLI command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns true when mount tests can run here (root and /dev/fuse); otherwise
/// prints why the test is skipped.
pub fn fuse_available() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dev = Path::new("/dev/fuse").exists();
    if root && dev {
        return true;
    }
    eprintln!("skipping: /dev/fuse not available or not root");
    false
}

/// Skips the calling test (returns early) when FUSE cannot be used here.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if !$crate::common::fuse_available() {
            return;
        }
    };
}

/// The coffer binary under test.
pub fn coffer_bin() -> PathBuf {
    match std::env::var_os("COFFER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_coffer")),
    }
}

/// The result of one command: exit code (-1 when killed by a signal), stdout, stderr.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics with the full output unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    /// Asserts the documented error shape: exit `code`, and one line on stderr
    /// saying what went wrong (no panic, no backtrace).
    #[track_caller]
    pub fn expect_error(&self, code: i32) {
        assert_eq!(self.code, code, "wrong exit code: {self:#?}");
        let msg = self.stderr.trim();
        assert!(!msg.is_empty(), "no error message on stderr: {self:#?}");
        assert_eq!(
            msg.lines().count(),
            1,
            "the error message should be one line: {self:#?}"
        );
        assert!(
            !msg.contains("panicked") && !msg.contains("RUST_BACKTRACE"),
            "a panic instead of an error message: {self:#?}"
        );
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name unique in this process (for files under a shared directory).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `cmd` to completion with stdout/stderr captured through files (so a
/// daemon that inherits them cannot keep the call waiting), killing it after
/// `timeout`.
pub fn run_captured(mut cmd: Command, scratch: &Path, timeout: Duration) -> Out {
    let tag = unique("out");
    let out_path = scratch.join(format!("{tag}.stdout"));
    let err_path = scratch.join(format!("{tag}.stderr"));
    let out_file = fs::File::create(&out_path).expect("create stdout capture file");
    let err_file = fs::File::create(&err_path).expect("create stderr capture file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::from(err_file));
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for command") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command timed out after {timeout:?}: {desc}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = Out {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    out
}

/// A temporary directory holding everything one test creates.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("coffer-test-")
            .tempdir()
            .expect("create temp workspace");
        fs::create_dir(dir.path().join("scratch")).unwrap();
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn scratch(&self) -> PathBuf {
        self.path().join("scratch")
    }

    /// A fresh empty directory in the workspace.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// A command running the coffer binary with the test environment.
    /// `state` is the XDG_STATE_HOME to use (per member, per test).
    pub fn command(&self, state: &Path) -> Command {
        let mut cmd = Command::new(coffer_bin());
        cmd.env("XDG_STATE_HOME", state)
            .env("COFFER_TEST_FAST_KDF", "1")
            .env("HOME", self.path())
            .env_remove("COFFER_IDENTITY")
            .env_remove("COFFER_PASSPHRASE")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs coffer with `args` (and extra environment), returning its outcome.
    pub fn coffer<I, S>(&self, state: &Path, args: I, envs: &[(&str, &str)]) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(state);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_captured(cmd, &self.scratch(), COMMAND_TIMEOUT)
    }

    /// The state directory used for commands not run as a particular member.
    pub fn default_state(&self) -> PathBuf {
        self.path().join("state-default")
    }

    /// `coffer keygen` for `name`: without a passphrase, or protected by `passphrase`.
    pub fn keygen(&self, name: &str, passphrase: Option<&str>) -> Member {
        let key = self.path().join(format!("{name}.key"));
        let state = self.path().join(format!("state-{name}"));
        fs::create_dir_all(&state).unwrap();
        let mut args: Vec<OsString> = vec![
            "keygen".into(),
            "--out".into(),
            key.clone().into(),
            "--name".into(),
            name.into(),
        ];
        let mut envs = Vec::new();
        match passphrase {
            None => args.push("--no-passphrase".into()),
            Some(p) => envs.push(("COFFER_PASSPHRASE", p)),
        }
        let out = self.coffer(&state, &args, &envs).ok();
        let pubkey = out
            .stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_else(|| panic!("keygen printed no public key: {out:#?}"))
            .to_string();
        assert!(key.is_file(), "keygen wrote no identity file: {out:#?}");
        Member {
            name: name.to_string(),
            key,
            pubkey,
            state,
            passphrase: passphrase.map(str::to_string),
        }
    }
}

/// One person: an identity file, its public key, and their machine state dir.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub key: PathBuf,
    pub pubkey: String,
    pub state: PathBuf,
    pub passphrase: Option<String>,
}

impl Member {
    fn envs(&self) -> Vec<(&str, &str)> {
        match &self.passphrase {
            Some(p) => vec![("COFFER_PASSPHRASE", p.as_str())],
            None => Vec::new(),
        }
    }
}

/// A vault created through the CLI, with its members.
pub struct TestVault {
    pub ws: Workspace,
    pub root: PathBuf,
    pub members: Vec<Member>,
}

impl TestVault {
    /// Keygens every name (no passphrase), inits the vault as the first, and
    /// adds the others with `coffer user add`.
    pub fn new(names: &[&str]) -> TestVault {
        assert!(!names.is_empty());
        let ws = Workspace::new();
        let members: Vec<Member> = names.iter().map(|n| ws.keygen(n, None)).collect();
        let root = ws.path().join("vault");
        let admin = &members[0];
        ws.coffer(
            &admin.state,
            [
                OsStr::new("init"),
                root.as_os_str(),
                OsStr::new("--identity"),
                admin.key.as_os_str(),
            ],
            &[],
        )
        .ok();
        let tv = TestVault { ws, root, members };
        for m in &tv.members[1..] {
            tv.add_member(m).ok();
        }
        tv
    }

    /// `coffer user add VAULT NAME PUBKEY` run by the admin (first member).
    pub fn add_member(&self, m: &Member) -> Out {
        let admin = &self.members[0];
        self.as_member(
            admin,
            [
                OsStr::new("user"),
                OsStr::new("add"),
                self.root.as_os_str(),
                OsStr::new(&m.name),
                OsStr::new(&m.pubkey),
            ],
        )
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Runs coffer as `m` (its state dir, `--identity` appended, its passphrase).
    pub fn as_member<I, S>(&self, m: &Member, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        all.push("--identity".into());
        all.push(m.key.clone().into());
        self.ws.coffer(&m.state, &all, &m.envs())
    }

    /// A new, empty mountpoint directory.
    pub fn mountpoint(&self, hint: &str) -> PathBuf {
        let p = self.ws.path().join(unique(&format!("mnt-{hint}")));
        fs::create_dir(&p).unwrap();
        p
    }

    /// Mounts the vault as `who` (background mode); panics if that fails.
    pub fn mount(&self, who: &str) -> Mount {
        self.mount_with(who, &[])
    }

    /// Mounts with extra arguments (e.g. `--read-only`).
    pub fn mount_with(&self, who: &str, extra: &[&str]) -> Mount {
        let m = self.member(who).clone();
        let mnt = self.mountpoint(who);
        match self.try_mount(&m, &mnt, extra) {
            Ok(mount) => mount,
            Err(out) => panic!("coffer mount failed: {out:#?}"),
        }
    }

    /// Runs `coffer mount` for `m` at `mnt`; on success returns the guard.
    /// Checks that the mount is live when the command returns.
    pub fn try_mount(&self, m: &Member, mnt: &Path, extra: &[&str]) -> Result<Mount, Out> {
        let mut args: Vec<OsString> = vec![
            "mount".into(),
            self.root.clone().into(),
            mnt.to_path_buf().into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let out = self.as_member(m, &args);
        if out.code != 0 {
            assert!(
                !is_mounted(mnt),
                "coffer mount failed but left a mount behind: {out:#?}"
            );
            return Err(out);
        }
        // The guard exists before the check, so a failed check still unmounts.
        let guard = Mount::adopt(mnt, self.ws.scratch(), m.state.clone(), None);
        assert!(
            is_mounted(mnt),
            "coffer mount returned 0 but {} is not mounted: {out:#?}",
            mnt.display()
        );
        Ok(guard)
    }

    /// Starts `coffer mount --foreground` as a child process and waits until the
    /// mount is live. The guard owns the child (see `Mount::daemon`).
    pub fn mount_foreground(&self, who: &str, log: &Path) -> Mount {
        let m = self.member(who).clone();
        let mnt = self.mountpoint(who);
        let mut cmd = self.ws.command(&m.state);
        cmd.arg("mount")
            .arg(&self.root)
            .arg(&mnt)
            .arg("--foreground")
            .arg("--identity")
            .arg(&m.key)
            .envs(m.envs())
            .stdin(Stdio::null())
            .stdout(Stdio::from(fs::File::create(log).unwrap()))
            .stderr(Stdio::from(
                fs::OpenOptions::new().append(true).open(log).unwrap(),
            ));
        let child = cmd.spawn().expect("spawn coffer mount --foreground");
        let mut guard = Mount::adopt(&mnt, self.ws.scratch(), m.state.clone(), Some(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&mnt) {
            if let Some(st) = guard.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "coffer mount --foreground exited ({st}) before mounting; log:\n{}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "coffer mount --foreground did not mount within 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        guard
    }

    /// Total bytes allocated on disk under the vault directory.
    pub fn backing_usage(&self) -> u64 {
        fn walk(p: &Path, acc: &mut u64) {
            let Ok(m) = fs::symlink_metadata(p) else {
                return;
            };
            *acc += m.blocks() * 512;
            if m.is_dir() {
                for e in fs::read_dir(p).unwrap().flatten() {
                    walk(&e.path(), acc);
                }
            }
        }
        let mut acc = 0;
        walk(&self.root, &mut acc);
        acc
    }
}

/// Whether `path` is a mountpoint right now (per /proc/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let want = escape_mount_path(path);
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn escape_mount_path(path: &Path) -> String {
    let mut s = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => s.push_str(&format!("\\{b:03o}")),
            _ => s.push(b as char),
        }
    }
    s
}

/// PIDs of processes (other than us) whose command line contains `mnt`:
/// the daemon serving that mountpoint.
fn daemons_for(mnt: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let needle = mnt.as_os_str().as_bytes();
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|arg| arg == needle)
            && cmdline.split(|b| *b == 0).any(|arg| arg == b"mount")
        {
            pids.push(pid);
        }
    }
    pids
}

fn pid_alive(pid: i32) -> bool {
    // A zombie still has /proc/PID but its stat says state Z.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// A live mount. Dropping it unmounts (`coffer unmount`, then `umount`, then
/// `umount -l` as the last resort) and waits for the daemon to exit.
pub struct Mount {
    path: PathBuf,
    scratch: PathBuf,
    state: PathBuf,
    daemons: Vec<i32>,
    /// The daemon, when started in the foreground by the test.
    pub child: Option<Child>,
    done: bool,
}

impl Mount {
    pub fn adopt(mnt: &Path, scratch: PathBuf, state: PathBuf, child: Option<Child>) -> Mount {
        let daemons = if child.is_some() {
            Vec::new()
        } else {
            daemons_for(mnt)
        };
        Mount {
            path: mnt.to_path_buf(),
            scratch,
            state,
            daemons,
            child,
            done: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the mount.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Unmounts now, asserting that a clean `coffer unmount` works.
    pub fn unmount(mut self) {
        let mut cmd = Command::new(coffer_bin());
        cmd.arg("unmount")
            .arg(&self.path)
            .env("XDG_STATE_HOME", &self.state)
            .env("COFFER_TEST_FAST_KDF", "1");
        let out = run_captured(cmd, &self.scratch, COMMAND_TIMEOUT);
        assert_eq!(out.code, 0, "coffer unmount failed: {out:#?}");
        assert!(
            !is_mounted(&self.path),
            "still mounted after coffer unmount"
        );
        self.finish();
    }

    /// Kills the foreground daemon with SIGKILL (a crash), then detaches the
    /// dead mount with `umount -l`.
    pub fn crash(&mut self) {
        let child = self
            .child
            .as_mut()
            .expect("crash() needs a foreground mount");
        child.kill().expect("kill -9 the daemon");
        let _ = child.wait();
        lazy_unmount(&self.path);
        self.done = true;
    }

    /// Best effort: unmount by every means, then wait for the daemon.
    fn teardown(&mut self) {
        if is_mounted(&self.path) {
            let mut cmd = Command::new(coffer_bin());
            cmd.arg("unmount")
                .arg(&self.path)
                .env("XDG_STATE_HOME", &self.state);
            let _ = run_captured(cmd, &self.scratch, Duration::from_secs(20));
        }
        for _ in 0..3 {
            if !is_mounted(&self.path) {
                break;
            }
            let _ = Command::new("umount")
                .arg(&self.path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
        if is_mounted(&self.path) {
            lazy_unmount(&self.path);
        }
        self.finish();
    }

    /// Waits up to 10 s for the daemon to exit, then kills it.
    fn finish(&mut self) {
        self.done = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(child) = self.child.as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("warning: coffer daemon did not exit after unmount; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        for &pid in &self.daemons {
            while pid_alive(pid) {
                if Instant::now() > deadline {
                    eprintln!(
                        "warning: coffer daemon {pid} did not exit after unmount; killing it"
                    );
                    // SAFETY: plain syscall on a pid this test started (found by its mountpoint).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.done {
            self.teardown();
        }
    }
}

/// `umount -l`: detach a mount whose daemon is gone or stuck.
pub fn lazy_unmount(path: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The errno of an io::Error (panics if it has none).
#[track_caller]
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("io error without errno: {e:?}"))
}

/// fallocate(2) on `f`: the errno on failure.
pub fn fallocate(f: &fs::File, mode: i32, offset: i64, len: i64) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor `f` holds open.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset, len) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// Asserts that `r` failed with exactly `want` (an errno).
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, want: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {} but it succeeded ({v:?})",
            errno_name(want)
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(want),
            "{what}: expected {}, got {e:?}",
            errno_name(want)
        ),
    }
}

pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODATA => "ENODATA",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ERANGE => "ERANGE",
        libc::EXDEV => "EXDEV",
        _ => "",
    };
    format!("{name}({e})")
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sorted names in a directory (without "." and "..").
pub fn names_in(dir: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Every place under `root` where `needle` appears: in a file or symlink name,
/// a symlink target, file content, or an extended attribute name or value.
pub fn find_plaintext(root: &Path, needle: &[u8]) -> Vec<String> {
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
    fn walk(p: &Path, needle: &[u8], hits: &mut Vec<String>) {
        let m = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(_) => return,
        };
        if let Some(n) = p.file_name() {
            if contains(n.as_bytes(), needle) {
                hits.push(format!("name: {}", p.display()));
            }
        }
        for (name, value) in xattrs(p) {
            if contains(name.as_bytes(), needle) || contains(&value, needle) {
                hits.push(format!("xattr {name:?} on {}", p.display()));
            }
        }
        if m.file_type().is_symlink() {
            if let Ok(t) = fs::read_link(p) {
                if contains(t.as_os_str().as_bytes(), needle) {
                    hits.push(format!("symlink target: {}", p.display()));
                }
            }
        } else if m.is_dir() {
            for e in fs::read_dir(p).unwrap().flatten() {
                walk(&e.path(), needle, hits);
            }
        } else if m.is_file() && file_contains(p, needle) {
            hits.push(format!("content: {}", p.display()));
        }
    }
    let mut hits = Vec::new();
    walk(root, needle, &mut hits);
    hits
}

/// Streams a file looking for `needle`, skipping holes cheaply is not needed:
/// the tests keep files that are scanned small.
fn file_contains(p: &Path, needle: &[u8]) -> bool {
    use std::io::Read;
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        if carry.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        let keep = needle.len().saturating_sub(1).min(carry.len());
        carry.drain(..carry.len() - keep);
    }
}

/// Extended attributes of `p` (not following symlinks): (name, value).
pub fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = llistxattr(p) else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter_map(|n| {
            let v = lgetxattr(p, &n).ok()?;
            Some((n, v))
        })
        .collect()
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

/// setxattr(2) with `flags` (0, XATTR_CREATE or XATTR_REPLACE).
pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let (cp, cn) = (cpath(p), cstr(name));
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_with(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(buf.as_mut_ptr().cast(), buf.len());
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew meanwhile
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

/// getxattr(2).
pub fn getxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (cp, cn) = (cpath(p), cstr(name));
    // SAFETY: valid strings; the buffer pointer/length pair comes from get_with.
    get_with(|buf, len| unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf, len) })
}

fn lgetxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (cp, cn) = (cpath(p), cstr(name));
    // SAFETY: as above.
    get_with(|buf, len| unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf, len) })
}

fn split_names(raw: Vec<u8>) -> Vec<String> {
    let mut v: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    v
}

/// listxattr(2), names sorted.
pub fn listxattr(p: &Path) -> io::Result<Vec<String>> {
    let cp = cpath(p);
    // SAFETY: as above.
    get_with(|buf, len| unsafe { libc::listxattr(cp.as_ptr(), buf.cast(), len) }).map(split_names)
}

fn llistxattr(p: &Path) -> io::Result<Vec<String>> {
    let cp = cpath(p);
    // SAFETY: as above.
    get_with(|buf, len| unsafe { libc::llistxattr(cp.as_ptr(), buf.cast(), len) }).map(split_names)
}

/// removexattr(2).
pub fn removexattr(p: &Path, name: &str) -> io::Result<()> {
    let (cp, cn) = (cpath(p), cstr(name));
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs an external tool (in `dir`), panicking with its output unless it exits 0.
#[track_caller]
pub fn tool(dir: &Path, program: &str, args: &[&OsStr]) -> Out {
    let out = try_tool(dir, program, args);
    assert_eq!(out.code, 0, "{program} {args:?} failed: {out:#?}");
    out
}

/// Runs an external tool (in `dir`) and returns its outcome.
pub fn try_tool(dir: &Path, program: &str, args: &[&OsStr]) -> Out {
    assert!(
        which(program),
        "{program} is not installed (the mount tests need it; scripts/setup.sh installs it)"
    );
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    run_captured(cmd, &std::env::temp_dir(), Duration::from_secs(300))
}

/// Runs an external tool (in `dir`) with extra environment.
pub fn try_tool_env(dir: &Path, program: &str, args: &[&OsStr], envs: &[(&str, &OsStr)]) -> Out {
    assert!(
        which(program),
        "{program} is not installed (the mount tests need it; scripts/setup.sh installs it)"
    );
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run_captured(cmd, &std::env::temp_dir(), Duration::from_secs(300))
}

/// Whether `program` is on PATH.
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
