//! Model-based test: random sequences of file operations run both on a mounted
//! vault and on a plain directory; after every operation the outcomes
//! (success, or the exact errno) and any data read must agree, and after each
//! sequence the two trees must be identical (names, kinds, sizes, contents).
//!
//! One mount serves the whole run; each case works in a fresh subdirectory
//! that starts with a small tree (dirs d, e, d/e; files a, d/a).
//! At the end the vault is remounted and every case's tree compared again.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use common::{pattern, TestVault};

const MAX_OFFSET: u64 = 300 * 1024;
const MAX_LEN: usize = 70 * 1024;

/// Paths operations pick from: some exist as files, some as directories,
/// some are nested, so operations collide in interesting ways.
const PATHS: &[&str] = &["a", "b", "d", "e", "d/a", "d/b", "d/e", "e/a", "d/e/a"];

#[derive(Clone, Debug)]
enum Op {
    /// open(O_WRONLY|O_CREAT) + pwrite.
    Write {
        path: usize,
        offset: u64,
        len: usize,
        seed: u64,
    },
    /// open(O_WRONLY|O_CREAT|O_TRUNC) + write.
    Replace {
        path: usize,
        len: usize,
        seed: u64,
    },
    /// open(O_WRONLY|O_APPEND|O_CREAT) + write.
    Append {
        path: usize,
        len: usize,
        seed: u64,
    },
    /// open(O_CREAT|O_EXCL).
    CreateNew {
        path: usize,
    },
    /// open(O_WRONLY) + ftruncate.
    Truncate {
        path: usize,
        size: u64,
    },
    Rename {
        from: usize,
        to: usize,
    },
    /// link(2): a second name for a file.
    Link {
        from: usize,
        to: usize,
    },
    Unlink {
        path: usize,
    },
    Mkdir {
        path: usize,
    },
    Rmdir {
        path: usize,
    },
    /// open(O_RDONLY) + pread.
    Read {
        path: usize,
        offset: u64,
        len: usize,
    },
    /// stat: kind and size.
    Stat {
        path: usize,
    },
    /// readdir of a directory: the sorted names.
    List {
        path: usize,
    },
    /// open(O_RDWR) kept open across later operations (replacing the held one).
    Hold {
        path: usize,
    },
    /// pwrite through the held descriptor.
    WriteHeld {
        offset: u64,
        len: usize,
        seed: u64,
    },
    /// pread and fstat through the held descriptor.
    ReadHeld {
        offset: u64,
        len: usize,
    },
    /// ftruncate through the held descriptor.
    TruncateHeld {
        size: u64,
    },
    /// close the held descriptor.
    Close,
}

fn path_idx() -> impl Strategy<Value = usize> {
    0..PATHS.len()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path_idx(), 0..MAX_OFFSET, 1..MAX_LEN, any::<u64>())
            .prop_map(|(path, offset, len, seed)| Op::Write { path, offset, len, seed }),
        1 => (path_idx(), 0..MAX_LEN, any::<u64>())
            .prop_map(|(path, len, seed)| Op::Replace { path, len, seed }),
        2 => (path_idx(), 1..MAX_LEN, any::<u64>())
            .prop_map(|(path, len, seed)| Op::Append { path, len, seed }),
        1 => path_idx().prop_map(|path| Op::CreateNew { path }),
        2 => (path_idx(), 0..MAX_OFFSET).prop_map(|(path, size)| Op::Truncate { path, size }),
        2 => (path_idx(), path_idx()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (path_idx(), path_idx()).prop_map(|(from, to)| Op::Link { from, to }),
        1 => path_idx().prop_map(|path| Op::Unlink { path }),
        2 => path_idx().prop_map(|path| Op::Mkdir { path }),
        1 => path_idx().prop_map(|path| Op::Rmdir { path }),
        3 => (path_idx(), 0..MAX_OFFSET, 1..MAX_LEN)
            .prop_map(|(path, offset, len)| Op::Read { path, offset, len }),
        1 => path_idx().prop_map(|path| Op::Stat { path }),
        1 => path_idx().prop_map(|path| Op::List { path }),
        3 => path_idx().prop_map(|path| Op::Hold { path }),
        2 => (0..MAX_OFFSET, 1..MAX_LEN, any::<u64>())
            .prop_map(|(offset, len, seed)| Op::WriteHeld { offset, len, seed }),
        2 => (0..MAX_OFFSET, 1..MAX_LEN).prop_map(|(offset, len)| Op::ReadHeld { offset, len }),
        1 => (0..MAX_OFFSET).prop_map(|size| Op::TruncateHeld { size }),
        1 => Just(Op::Close),
    ]
}

/// What an operation returned, comparable across the two filesystems.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Data(Vec<u8>),
    Stat { dir: bool, size: u64, nlink: u64 },
    Names(Vec<String>),
    Err(String),
}

fn err(e: io::Error) -> Outcome {
    Outcome::Err(match e.raw_os_error() {
        Some(n) => common::errno_name(n),
        None => format!("{e:?}"),
    })
}

/// pread until `len` bytes or end of file.
fn pread(f: &fs::File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = f.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// No descriptor held: the same outcome on both sides.
fn not_held() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

fn apply(root: &Path, held: &mut Option<fs::File>, op: &Op) -> Outcome {
    let p = |i: usize| root.join(PATHS[i]);
    let r: io::Result<Outcome> = (|| match *op {
        Op::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(p(path))?;
            f.write_all_at(&pattern(seed, len), offset)?;
            Ok(Outcome::Ok)
        }
        Op::Replace { path, len, seed } => {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p(path))?;
            f.write_all(&pattern(seed, len))?;
            Ok(Outcome::Ok)
        }
        Op::Append { path, len, seed } => {
            let mut f = OpenOptions::new().append(true).create(true).open(p(path))?;
            f.write_all(&pattern(seed, len))?;
            Ok(Outcome::Ok)
        }
        Op::CreateNew { path } => {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p(path))?;
            Ok(Outcome::Ok)
        }
        Op::Truncate { path, size } => {
            OpenOptions::new()
                .write(true)
                .open(p(path))?
                .set_len(size)?;
            Ok(Outcome::Ok)
        }
        Op::Rename { from, to } => fs::rename(p(from), p(to)).map(|_| Outcome::Ok),
        Op::Link { from, to } => fs::hard_link(p(from), p(to)).map(|_| Outcome::Ok),
        Op::Unlink { path } => fs::remove_file(p(path)).map(|_| Outcome::Ok),
        Op::Mkdir { path } => fs::create_dir(p(path)).map(|_| Outcome::Ok),
        Op::Rmdir { path } => fs::remove_dir(p(path)).map(|_| Outcome::Ok),
        Op::Read { path, offset, len } => {
            let f = fs::File::open(p(path))?;
            Ok(Outcome::Data(pread(&f, offset, len)?))
        }
        Op::Stat { path } => {
            let m = fs::metadata(p(path))?;
            Ok(Outcome::Stat {
                dir: m.is_dir(),
                size: if m.is_dir() { 0 } else { m.len() },
                nlink: if m.is_dir() { 0 } else { m.nlink() },
            })
        }
        Op::List { path } => common::names_in(&p(path)).map(Outcome::Names),
        Op::Hold { path } => {
            *held = None;
            *held = Some(OpenOptions::new().read(true).write(true).open(p(path))?);
            Ok(Outcome::Ok)
        }
        Op::WriteHeld { offset, len, seed } => {
            let f = held.as_ref().ok_or_else(not_held)?;
            f.write_all_at(&pattern(seed, len), offset)?;
            Ok(Outcome::Ok)
        }
        Op::ReadHeld { offset, len } => {
            let f = held.as_ref().ok_or_else(not_held)?;
            let size = f.metadata()?.len();
            let mut data = pread(f, offset, len)?;
            data.extend_from_slice(&size.to_le_bytes());
            Ok(Outcome::Data(data))
        }
        Op::TruncateHeld { size } => {
            held.as_ref().ok_or_else(not_held)?.set_len(size)?;
            Ok(Outcome::Ok)
        }
        Op::Close => {
            *held = None;
            Ok(Outcome::Ok)
        }
    })();
    r.unwrap_or_else(err)
}

/// A short description of an outcome for failure messages (no megabytes).
fn brief(o: &Outcome) -> String {
    match o {
        Outcome::Data(d) => format!("Data({} bytes, hash {})", d.len(), hash(d)),
        other => format!("{other:?}"),
    }
}

fn hash(d: &[u8]) -> String {
    blake3::hash(d).to_hex()[..16].to_string()
}

/// Every entry under `root`: relative path → (is_dir, size, content hash).
fn snapshot(root: &Path) -> BTreeMap<String, (bool, u64, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (bool, u64, String)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                out.insert(rel, (true, 0, String::new()));
                walk(root, &path, out);
            } else {
                let data = fs::read(&path).unwrap_or_else(|e| panic!("read {rel}: {e}"));
                assert_eq!(data.len() as u64, m.len(), "{rel}: stat size vs bytes read");
                out.insert(rel, (false, m.len(), hash(&data)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// How many operations succeeded and failed, to show the mix is useful.
#[derive(Default)]
struct Stats {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

impl Stats {
    fn count(&self, o: &Outcome) {
        match o {
            Outcome::Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
            _ => self.ok.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn run_case(
    mnt: &Path,
    plain: &Path,
    ops: &[Op],
    stats: &Stats,
    dead: &Mutex<Option<String>>,
) -> Result<(), TestCaseError> {
    let (mut held_m, mut held_p) = (None, None);
    // A starting tree, so that most operations have something to work on.
    for root in [mnt, plain] {
        for d in ["d", "e", "d/e"] {
            fs::create_dir(root.join(d))
                .map_err(|e| TestCaseError::fail(format!("setup mkdir {d}: {e}")))?;
        }
        for (f, len) in [("a", 1000), ("d/a", 70_000)] {
            fs::write(root.join(f), pattern(len as u64, len))
                .map_err(|e| TestCaseError::fail(format!("setup write {f}: {e}")))?;
        }
    }
    for (i, op) in ops.iter().enumerate() {
        let want = apply(plain, &mut held_p, op);
        let got = apply(mnt, &mut held_m, op);
        stats.count(&want);
        if got == err(io::Error::from_raw_os_error(libc::ENOTCONN)) {
            // The daemon is gone: shrinking on a dead mount means nothing, so
            // keep the sequence that killed it and report it after the run.
            *dead.lock().unwrap() = Some(format!(
                "the mount daemon died (ENOTCONN) at op {i} of this sequence:\n{:#?}",
                &ops[..=i]
            ));
            return Ok(());
        }
        prop_assert!(
            got == want,
            "op {i} {op:?}: the mount gave {} but a plain directory gave {}",
            brief(&got),
            brief(&want)
        );
    }
    drop((held_m, held_p));
    let (got, want) = (snapshot(mnt), snapshot(plain));
    prop_assert_eq!(got, want, "trees differ after {} ops", ops.len());
    Ok(())
}

#[test]
fn mount_behaves_like_a_plain_directory() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let plain_root = v.ws.dir("plain");
    let m = v.mount("alice");

    let cases = std::env::var("COFFER_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = AtomicUsize::new(0);
    let stats = Stats::default();
    let case_dirs = Mutex::new(Vec::<PathBuf>::new());
    let dead = Mutex::new(None::<String>);
    let last = Mutex::new(Vec::<Op>::new());
    let result = runner.run(&prop::collection::vec(op(), 1..=30), |ops| {
        if dead.lock().unwrap().is_some() {
            return Ok(());
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("case-{n:04}");
        let (mdir, pdir) = (m.join(&name), plain_root.join(&name));
        if let Err(e) = fs::create_dir(&mdir) {
            if e.raw_os_error() == Some(libc::ENOTCONN) {
                // The previous case killed the daemon without this noticing it.
                *dead.lock().unwrap() = Some(format!(
                    "the mount daemon died (ENOTCONN) during or right after this sequence:\n{:#?}",
                    last.lock().unwrap()
                ));
                return Ok(());
            }
            return Err(TestCaseError::fail(format!("mkdir {name}: {e}")));
        }
        *last.lock().unwrap() = ops.clone();
        fs::create_dir(&pdir).unwrap();
        case_dirs.lock().unwrap().push(PathBuf::from(&name));
        run_case(&mdir, &pdir, &ops, &stats, &dead)
    });
    if let Some(report) = dead.lock().unwrap().take() {
        panic!("{report}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} cases: {} operations succeeded, {} failed (on both sides alike)",
        counter.load(Ordering::Relaxed),
        stats.ok.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );

    // Everything written survives a remount.
    m.unmount();
    let m = v.mount("alice");
    for name in case_dirs.lock().unwrap().iter() {
        assert_eq!(
            snapshot(&m.join(name)),
            snapshot(&plain_root.join(name)),
            "{} differs after remount",
            name.display()
        );
    }
}
