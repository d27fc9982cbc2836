//! The tamper matrix at the library level: for every kind of file a vault holds,
//! {flip a bit, truncate, delete, swap with another of its kind, replace with an
//! older copy} must make `verify` fail and name the file, and reading must give
//! an integrity error or the right data, never wrong data.

use std::path::{Path, PathBuf};

use coffer::crypto::Identity;
use coffer::format::Right;
use coffer::store::Durability;
use coffer::vault::verify::VerifyOptions;
use coffer::vault::Vault;

/// Tests here set XDG_STATE_HOME (per-machine state); run them one at a time.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Fixture {
    dir: tempfile::TempDir,
}

const A: &[u8] = b"alpha file contents";

fn b_content() -> Vec<u8> {
    (0..150_000u32).map(|i| (i % 251) as u8).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            copy_dir(&e.path(), &t);
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &t).unwrap();
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

impl Fixture {
    /// A vault with two files (a: small, b: three chunks) plus older copies of
    /// their content and sidecars, and this machine's state having seen them.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::env::set_var("XDG_STATE_HOME", &state);
        let root = dir.path().join("vault");
        let v = Vault::init(&root, Identity::from_seed([21; 32]), "alice").unwrap();
        v.add_member("bob", Identity::from_seed([22; 32]).public())
            .unwrap();
        let tree = v.paths.tree();
        let id = v.read_dir_record(&tree).unwrap().dir_id;
        let a = tree.join(v.encrypt_name(&id, "a.txt".as_ref()).unwrap().name);
        let b = tree.join(v.encrypt_name(&id, "b.bin".as_ref()).unwrap().name);
        let mut fa = v.create_file(&a, 0o644, "a.txt".into()).unwrap();
        // What the mount does on create: bind the entry to its file id in the history.
        v.record_link(fa.file_id, &tree, a.file_name().unwrap(), true)
            .unwrap();
        fa.write(&v, 0, b"old alpha").unwrap();
        fa.commit(&v, Durability::Lazy).unwrap();
        let mut fb = v.create_file(&b, 0o644, "b.bin".into()).unwrap();
        v.record_link(fb.file_id, &tree, b.file_name().unwrap(), true)
            .unwrap();
        fb.write(&v, 0, &vec![9u8; 150_000]).unwrap();
        fb.commit(&v, Durability::Lazy).unwrap();
        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::copy(&a, old.join("a")).unwrap();
        std::fs::copy(&b, old.join("b")).unwrap();
        std::fs::copy(v.paths.sidecar(&fa.file_id), old.join("a.meta")).unwrap();
        std::fs::copy(v.paths.sidecar(&fb.file_id), old.join("b.meta")).unwrap();
        std::fs::copy(
            v.paths
                .log()
                .join(format!("{}.log", v.me.member_id().to_hex())),
            old.join("log"),
        )
        .unwrap();
        fa.truncate(&v, 0).unwrap();
        fa.write(&v, 0, A).unwrap();
        fa.commit(&v, Durability::Lazy).unwrap();
        fb.write(&v, 0, &b_content()).unwrap();
        fb.commit(&v, Durability::Lazy).unwrap();
        fa.grant(&v, &v.find_member("bob").unwrap(), Right::Read)
            .unwrap();
        drop((fa, fb));
        std::fs::copy(
            v.paths
                .log()
                .join(format!("{}.log", v.me.member_id().to_hex())),
            old.join("log.new"),
        )
        .unwrap();
        let report = v.verify(&|_, _| {});
        assert!(
            report.ok(),
            "fresh vault must verify: {:?}",
            report.failures
        );
        drop(v);
        Fixture { dir }
    }

    /// A copy of the fixture to damage, with its own machine state.
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        copy_dir(self.dir.path(), d.path());
        (d, PathBuf::new())
    }
}

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    old: PathBuf,
    state: PathBuf,
}

impl Case {
    fn new(f: &Fixture) -> Case {
        let (d, _) = f.copy();
        Case {
            root: d.path().join("vault"),
            old: d.path().join("old"),
            state: d.path().join("state"),
            _dir: d,
        }
    }

    fn open(&self, seed: u8) -> Result<Vault, coffer::Error> {
        std::env::set_var("XDG_STATE_HOME", &self.state);
        Vault::open(&self.root, Identity::from_seed([seed; 32]), true)
    }

    fn file(&self, name: &str) -> PathBuf {
        let v = self.open(21).unwrap();
        let tree = v.paths.tree();
        let id = v.read_dir_record(&tree).unwrap().dir_id;
        tree.join(v.encrypt_name(&id, name.as_ref()).unwrap().name)
    }

    fn sidecar(&self, name: &str) -> PathBuf {
        let v = self.open(21).unwrap();
        let id = v.read_file_id(&self.file(name)).unwrap();
        v.paths.sidecar(&id)
    }

    /// verify must fail; returns the report's text.
    fn expect_failure(&self, what: &str) -> String {
        let v = match self.open(21) {
            Ok(v) => v,
            Err(e) => {
                assert_eq!(
                    e.exit_code(),
                    4,
                    "{what}: opening failed with a non-integrity error: {e}"
                );
                return e.to_string();
            }
        };
        let r = v.verify(&|_, _| {});
        assert!(!r.ok(), "{what}: verify did not notice");
        let text = format!("{:?}", r.failures);
        // --deep finds the same failures (it only adds decryption); files the
        // history lists are reported in no fixed order.
        let deep = v.verify_with(VerifyOptions { deep: true }, &|_, _| {});
        let sorted = |f: &[coffer::vault::verify::Finding]| {
            let mut f: Vec<String> = f.iter().map(|f| format!("{f:?}")).collect();
            f.sort();
            f
        };
        assert_eq!(
            sorted(&deep.failures),
            sorted(&r.failures),
            "{what}: verify --deep reports otherwise"
        );
        // Reading must never give wrong data.
        let tree = v.paths.tree();
        for (name, good) in [("a.txt", A.to_vec()), ("b.bin", b_content())] {
            // With the root's directory record damaged, no name resolves.
            let Ok(dir) = v.read_dir_record(&tree) else {
                break;
            };
            let p = tree.join(v.encrypt_name(&dir.dir_id, name.as_ref()).unwrap().name);
            if let Ok(mut f) = v.open_file_readonly(&p, name.into()) {
                let size = f.size();
                if let Ok(data) = f.read(0, size as usize) {
                    assert!(
                        data == good,
                        "{what}: {name} read back wrong data ({} bytes)",
                        data.len()
                    );
                }
            }
        }
        text
    }
}

fn flip(p: &Path, at: usize) {
    let mut b = std::fs::read(p).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

fn truncate(p: &Path) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..b.len() / 2]).unwrap();
}

#[test]
fn content_files() {
    let _serial = serial();
    let f = Fixture::new();
    for (what, act) in [
        ("flip a bit in b's chunk 1", 0),
        ("truncate b", 1),
        ("delete b", 2),
        ("swap a and b", 3),
        ("older copy of b", 4),
    ] {
        let c = Case::new(&f);
        let (a, b) = (c.file("a.txt"), c.file("b.bin"));
        match act {
            0 => flip(&b, 32 + 65_576 + 100),
            1 => truncate(&b),
            2 => std::fs::remove_file(&b).unwrap(),
            3 => {
                let tmp = a.with_extension("x");
                std::fs::rename(&a, &tmp).unwrap();
                std::fs::rename(&b, &a).unwrap();
                std::fs::rename(&tmp, &b).unwrap();
            }
            _ => std::fs::copy(c.old.join("b"), &b).map(|_| ()).unwrap(),
        }
        let text = c.expect_failure(what);
        assert!(
            text.contains("b.bin") || text.contains("file "),
            "{what}: report does not name the file: {text}"
        );
    }
}

#[test]
fn sidecars() {
    let _serial = serial();
    let f = Fixture::new();
    for (what, act) in [
        ("flip a bit in b's sidecar", 0),
        ("truncate b's sidecar", 1),
        ("delete b's sidecar", 2),
        ("swap a's and b's sidecars", 3),
        ("older copy of b's sidecar", 4),
    ] {
        let c = Case::new(&f);
        let (sa, sb) = (c.sidecar("a.txt"), c.sidecar("b.bin"));
        match act {
            0 => flip(&sb, 200),
            1 => truncate(&sb),
            2 => std::fs::remove_file(&sb).unwrap(),
            3 => {
                let (x, y) = (std::fs::read(&sa).unwrap(), std::fs::read(&sb).unwrap());
                std::fs::write(&sa, y).unwrap();
                std::fs::write(&sb, x).unwrap();
            }
            _ => std::fs::copy(c.old.join("b.meta"), &sb)
                .map(|_| ())
                .unwrap(),
        }
        let text = c.expect_failure(what);
        assert!(
            text.contains("b.bin"),
            "{what}: report does not name b.bin: {text}"
        );
    }
}

#[test]
fn older_sidecar_and_content_pair_is_a_rollback() {
    let _serial = serial();
    // A consistent older pair verifies cryptographically; the history and this
    // machine's state catch it.
    let f = Fixture::new();
    let c = Case::new(&f);
    std::fs::copy(c.old.join("b"), c.file("b.bin")).unwrap();
    std::fs::copy(c.old.join("b.meta"), c.sidecar("b.bin")).unwrap();
    let text = c.expect_failure("older pair");
    assert!(text.contains("rolled back"), "{text}");
    // Even on a machine that never saw the vault, the signed history catches it.
    let fresh_state = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_STATE_HOME", fresh_state.path());
    let v = Vault::open(&c.root, Identity::from_seed([21; 32]), true).unwrap();
    let r = v.verify(&|_, _| {});
    assert!(!r.ok() && format!("{:?}", r.failures).contains("history records version"));
}

#[test]
fn records_and_logs() {
    let _serial = serial();
    let f = Fixture::new();
    let me = Identity::from_seed([21; 32]).member_id().to_hex();
    let bob = Identity::from_seed([22; 32]).member_id().to_hex();
    for (what, act) in [
        ("flip the root dir record", 0),
        ("flip bob's member record", 1),
        ("flip a log entry", 2),
        ("truncate the log below its checkpoint", 3),
        ("older log", 4),
        ("flip the checkpoint", 5),
        ("delete the log", 6),
        ("swap two history entries", 7),
    ] {
        let c = Case::new(&f);
        let log = c.root.join("log").join(format!("{me}.log"));
        match act {
            0 => flip(&c.root.join("tree/.coffer-dir"), 8),
            1 => flip(&c.root.join(format!("members/{bob}.member")), 60),
            2 => flip(&log, 40),
            3 => truncate(&log),
            4 => std::fs::copy(c.old.join("log"), &log).map(|_| ()).unwrap(),
            5 => flip(&c.root.join("log").join(format!("{me}.head")), 30),
            6 => std::fs::remove_file(&log).unwrap(),
            _ => swap_first_two_records(&log),
        }
        c.expect_failure(what);
    }
}

/// Reorders the first two records of a history log (each `u32 len || body`
/// after the 6-byte header), leaving every record itself intact.
fn swap_first_two_records(log: &Path) {
    let b = std::fs::read(log).unwrap();
    let h = coffer::history::log::LOG_HEADER_LEN;
    let len_at = |pos: usize| u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize + 4;
    let (l1, l2) = (len_at(h), len_at(h + len_at(h)));
    let mut out = b[..h].to_vec();
    out.extend_from_slice(&b[h + l1..h + l1 + l2]);
    out.extend_from_slice(&b[h..h + l1]);
    out.extend_from_slice(&b[h + l1 + l2..]);
    std::fs::write(log, out).unwrap();
}

#[test]
fn bob_cannot_read_and_sees_integrity_not_plaintext() {
    let _serial = serial();
    let f = Fixture::new();
    let c = Case::new(&f);
    std::env::set_var("XDG_STATE_HOME", c.state.join("bob"));
    let v = Vault::open(&c.root, Identity::from_seed([22; 32]), true).unwrap();
    let b = c.file("b.bin");
    let mut fb = v.open_file_readonly(&b, "b.bin".into()).unwrap();
    assert!(!fb.can_read(&v));
    assert!(fb.read(0, 10).is_err());
    let a = c.file("a.txt");
    let mut fa = v.open_file_readonly(&a, "a.txt".into()).unwrap();
    assert_eq!(fa.read(0, 100).unwrap(), A);
}

/// A FIFO planted where the vault keeps a file would hold whoever opens it
/// until someone opens its other end: a mount's worker thread, `verify`. Each
/// must instead fail at once with an integrity failure naming what it found.
#[test]
fn a_fifo_where_a_file_belongs_is_reported_not_waited_on() {
    let _serial = serial();
    let f = Fixture::new();
    let me = Identity::from_seed([21; 32]).member_id().to_hex();
    let bob = Identity::from_seed([22; 32]).member_id().to_hex();
    for what in [
        "b's sidecar",
        "b's content file",
        "the history log",
        "the log checkpoint",
        "bob's member record",
        "the root directory record",
    ] {
        let c = Case::new(&f);
        let target = match what {
            "b's sidecar" => c.sidecar("b.bin"),
            "b's content file" => c.file("b.bin"),
            "the history log" => c.root.join("log").join(format!("{me}.log")),
            "the log checkpoint" => c.root.join("log").join(format!("{me}.head")),
            "bob's member record" => c.root.join(format!("members/{bob}.member")),
            _ => c.root.join("tree/.coffer-dir"),
        };
        std::fs::remove_file(&target).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&target)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", target.display());
        // On a thread, so that a regression fails the test instead of hanging it.
        let (done, result) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let text = c.expect_failure(what);
            done.send(text).unwrap();
        });
        let text = match result.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(text) => text,
            // The check itself failed: show its panic.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(worker.join().unwrap_err())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("{what}: a FIFO in its place blocked verify or a read for 60 s")
            }
        };
        // A FIFO in the tree is a special file of the tree (never opened as
        // content): b is then missing from the tree the history describes.
        let expected = match what {
            "b's content file" => "deleted outside coffer",
            // Records that do not load are reported by name, whatever the cause.
            "bob's member record" => "member record fails verification",
            _ => "not a regular file",
        };
        assert!(
            text.contains(expected),
            "{what}: the report does not say what is wrong: {text}"
        );
    }
}
