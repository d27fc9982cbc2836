//! Two copies of a vault changed apart and merged by a file-level sync (rsync
//! both ways; a Syncthing-style merge that leaves conflict copies): nothing is
//! lost, the fork is reported as a fork (not as corruption), and `coffer fork`
//! keeps one side or both.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// One machine: a member's identity with its own state directory.
struct Machine<'a> {
    v: &'a TestVault,
    who: Member,
    state: PathBuf,
}

impl<'a> Machine<'a> {
    fn new(v: &'a TestVault, who: &str, label: &str) -> Machine<'a> {
        let state = v.ws.dir(&format!("state-{label}"));
        Machine {
            v,
            who: v.member(who).clone(),
            state,
        }
    }

    fn coffer(&self, args: &[&OsStr]) -> Out {
        let mut all: Vec<&OsStr> = args.to_vec();
        all.push(OsStr::new("--identity"));
        all.push(self.who.key.as_os_str());
        self.v.ws.coffer(&self.state, &all, &[])
    }

    fn mount(&self, root: &Path) -> Mount {
        let mnt = self.v.mountpoint(&self.who.name);
        self.coffer(&[OsStr::new("mount"), root.as_os_str(), mnt.as_os_str()])
            .ok();
        Mount::adopt(&mnt, self.v.ws.scratch(), self.state.clone(), None)
    }

    fn verify(&self, root: &Path) -> Out {
        self.coffer(&[OsStr::new("verify"), root.as_os_str()])
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let out = try_tool(
        Path::new("/"),
        "cp",
        &[OsStr::new("-a"), from.as_os_str(), to.as_os_str()],
    );
    assert_eq!(out.code, 0, "{out:#?}");
}

/// `rsync -au` one way: changed files by size and mtime, never replacing a file
/// that is newer on the receiving side, no deletions (a two-way sync, twice).
fn rsync(from: &Path, to: &Path) {
    let src = format!("{}/", from.display());
    let dst = format!("{}/", to.display());
    let out = try_tool(
        Path::new("/"),
        "rsync",
        &[OsStr::new("-au"), OsStr::new(&src), OsStr::new(&dst)],
    );
    assert_eq!(out.code, 0, "{out:#?}");
}

fn files_under(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(root.join(rel)).unwrap().flatten() {
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files_under(root, &r, out);
        } else {
            out.push(r);
        }
    }
}

/// A two-way merge as Syncthing does it: a file only one side has is copied to
/// the other; a file both changed is taken from the side that changed it last,
/// and the other side's version is kept beside it on both sides as
/// `stem.sync-conflict-20261128-101500-TESTDEV.ext`.
fn sync_with_conflict_copies(a: &Path, b: &Path, base: &Path) {
    let mut all = Vec::new();
    files_under(a, Path::new(""), &mut all);
    files_under(b, Path::new(""), &mut all);
    all.sort();
    all.dedup();
    for rel in all {
        let (pa, pb, po) = (a.join(&rel), b.join(&rel), base.join(&rel));
        let (ca, cb) = (fs::read(&pa).ok(), fs::read(&pb).ok());
        let orig = fs::read(&po).ok();
        let put = |p: &Path, bytes: &[u8]| {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        };
        match (ca, cb) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), None) => put(&pb, &x),
            (None, Some(y)) => put(&pa, &y),
            (Some(x), Some(y)) => {
                let changed_a = orig.as_deref() != Some(&x[..]);
                let changed_b = orig.as_deref() != Some(&y[..]);
                let (winner, loser) = match (changed_a, changed_b) {
                    (true, false) => (x, None),
                    (false, true) => (y, None),
                    _ => {
                        let ma = fs::metadata(&pa).unwrap().modified().unwrap();
                        let mb = fs::metadata(&pb).unwrap().modified().unwrap();
                        if mb >= ma {
                            (y, Some(x))
                        } else {
                            (x, Some(y))
                        }
                    }
                };
                put(&pa, &winner);
                put(&pb, &winner);
                if let Some(loser) = loser {
                    let name = rel.file_name().unwrap().to_string_lossy().into_owned();
                    let copy = match name.rfind('.') {
                        Some(i) if i > 0 => format!(
                            "{}.sync-conflict-20261128-101500-TESTDEV{}",
                            &name[..i],
                            &name[i..]
                        ),
                        _ => format!("{name}.sync-conflict-20261128-101500-TESTDEV"),
                    };
                    put(&a.join(&rel).with_file_name(&copy), &loser);
                    put(&b.join(&rel).with_file_name(&copy), &loser);
                }
            }
            (None, None) => {}
        }
    }
}

fn read_eio(p: &Path) {
    let r = fs::read(p);
    assert_errno(r, libc::EIO, &format!("read {}", p.display()));
}

#[test]
fn rsync_merge_of_two_members_edits_is_reported_as_a_fork_and_resolved() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let (a_root, b_root) = (v.ws.path().join("copy-a"), v.ws.path().join("copy-b"));
    let alice = Machine::new(&v, "alice", "alice-laptop");
    let bob = Machine::new(&v, "bob", "bob-laptop");
    {
        let m = alice.mount(&v.root);
        fs::write(m.join("shared.txt"), b"base\n").unwrap();
        alice
            .coffer(&[
                OsStr::new("grant"),
                m.join("shared.txt").as_os_str(),
                OsStr::new("bob"),
                OsStr::new("--update"),
            ])
            .ok();
        m.unmount();
    }
    {
        // Both machines have seen the base state.
        let m = bob.mount(&v.root);
        assert_eq!(fs::read(m.join("shared.txt")).unwrap(), b"base\n");
        m.unmount();
    }
    copy_tree(&v.root, &a_root);
    copy_tree(&v.root, &b_root);
    // rsync -u compares mtimes in whole seconds: keep each side's changes in a
    // later second than the last, so "newer" means what it says.
    std::thread::sleep(Duration::from_millis(1100));
    {
        let m = alice.mount(&a_root);
        fs::write(m.join("shared.txt"), b"alice's edit\n").unwrap();
        fs::write(m.join("only-alice.txt"), b"new on A\n").unwrap();
        m.unmount();
    }
    std::thread::sleep(Duration::from_millis(1100));
    {
        let m = bob.mount(&b_root);
        fs::write(m.join("shared.txt"), b"bob's edit!\n").unwrap();
        fs::write(m.join("only-bob.txt"), b"new on B\n").unwrap();
        m.unmount();
    }
    rsync(&b_root, &a_root);
    rsync(&a_root, &b_root);

    // Not corruption: a fork, named as such, exit 4; nothing else is wrong.
    let out = bob.verify(&b_root);
    out.expect_error(4);
    assert!(out.stdout.contains("FORK  /shared.txt"), "{out:#?}");
    assert!(out.stdout.contains("forked at content version"), "{out:#?}");
    assert!(!out.stdout.contains("FAIL"), "{out:#?}");
    assert!(out.stderr.contains("fork"), "{out:#?}");

    // alice's machine saw her own version 3; the vault now holds bob's: EIO
    // there (with a log line), never a silent switch.
    {
        let m = alice.mount(&a_root);
        read_eio(&m.join("shared.txt"));
        assert_eq!(fs::read(m.join("only-alice.txt")).unwrap(), b"new on A\n");
        m.unmount();
    }
    let out = alice.verify(&a_root);
    out.expect_error(4);
    assert!(out.stdout.contains("FORK  /shared.txt"), "{out:#?}");

    // Nothing lost that the sync kept: both new files are there.
    let m = bob.mount(&b_root);
    assert_eq!(fs::read(m.join("only-bob.txt")).unwrap(), b"new on B\n");
    assert!(m.join("only-alice.txt").exists());
    // The sync kept bob's (newer) version, which his machine saw: it reads.
    assert_eq!(fs::read(m.join("shared.txt")).unwrap(), b"bob's edit!\n");
    // Nothing to keep "both" of: the sync kept one version only.
    let both = bob.coffer(&[
        OsStr::new("fork"),
        OsStr::new("resolve"),
        m.join("shared.txt").as_os_str(),
        OsStr::new("--keep"),
        OsStr::new("both"),
    ]);
    both.expect_error(2);
    assert!(both.stderr.contains("no conflict copy"), "{both:#?}");
    // The settlement's sidecar has the size of the one alice's copy holds: in
    // the same second as bob's edit, `rsync -u` would take them as equal.
    std::thread::sleep(Duration::from_millis(1100));
    bob.coffer(&[
        OsStr::new("fork"),
        OsStr::new("resolve"),
        m.join("shared.txt").as_os_str(),
        OsStr::new("--keep"),
        OsStr::new("current"),
    ])
    .ok();
    assert_eq!(
        eventually(Duration::from_secs(2), || fs::read(m.join("shared.txt"))
            .ok())
        .unwrap(),
        b"bob's edit!\n"
    );
    m.unmount();
    let out = bob.verify(&b_root);
    assert_eq!(out.code, 0, "{out:#?}");

    // The settlement syncs back; alice's machine accepts it as clean too.
    rsync(&b_root, &a_root);
    let out = alice.verify(&a_root);
    assert_eq!(out.code, 0, "{out:#?}");
    let m = alice.mount(&a_root);
    assert_eq!(fs::read(m.join("shared.txt")).unwrap(), b"bob's edit!\n");
    m.unmount();
}

#[test]
fn conflict_copies_from_one_member_on_two_machines_keep_both_sides() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let base = v.ws.path().join("base");
    let (a_root, b_root) = (v.ws.path().join("copy-a"), v.ws.path().join("copy-b"));
    let desk = Machine::new(&v, "alice", "desk");
    let laptop = Machine::new(&v, "alice", "laptop");
    {
        let m = desk.mount(&v.root);
        fs::create_dir(m.join("notes")).unwrap();
        fs::write(m.join("notes/todo.txt"), b"1. base\n").unwrap();
        m.unmount();
    }
    {
        let m = laptop.mount(&v.root);
        assert_eq!(fs::read(m.join("notes/todo.txt")).unwrap(), b"1. base\n");
        m.unmount();
    }
    copy_tree(&v.root, &base);
    copy_tree(&v.root, &a_root);
    copy_tree(&v.root, &b_root);
    {
        let m = desk.mount(&a_root);
        fs::write(m.join("notes/todo.txt"), b"1. base\n2. from the desk\n").unwrap();
        m.unmount();
    }
    std::thread::sleep(Duration::from_millis(50));
    {
        let m = laptop.mount(&b_root);
        fs::write(m.join("notes/todo.txt"), b"1. base\n2. from the laptop\n").unwrap();
        m.unmount();
    }
    sync_with_conflict_copies(&a_root, &b_root, &base);

    // The desk lost the race: its history of alice forked, and conflict copies
    // sit beside the file. All reported as forks, none as corruption.
    let out = desk.verify(&a_root);
    out.expect_error(4);
    assert!(out.stdout.contains("FORK"), "{out:#?}");
    assert!(out.stdout.contains("conflict copy"), "{out:#?}");
    assert!(!out.stdout.contains("FAIL"), "{out:#?}");
    let status = desk.coffer(&[OsStr::new("fork"), OsStr::new("status"), a_root.as_os_str()]);
    status.expect_error(4);
    assert!(
        status.stdout.contains("history of alice forked"),
        "{status:#?}"
    );

    // The desk continues from the vault's history, then keeps both versions.
    let acc = desk.coffer(&[OsStr::new("fork"), OsStr::new("accept"), a_root.as_os_str()]);
    assert_eq!(acc.code, 0, "{acc:#?}");
    assert!(acc.stdout.contains("history of alice"), "{acc:#?}");
    let res = desk.coffer(&[
        OsStr::new("fork"),
        OsStr::new("resolve"),
        OsStr::new("notes/todo.txt"),
        OsStr::new("--keep"),
        OsStr::new("both"),
        OsStr::new("--vault"),
        a_root.as_os_str(),
    ]);
    assert_eq!(res.code, 0, "{res:#?}");
    assert!(res.stdout.contains("todo (fork 1).txt"), "{res:#?}");
    let out = desk.verify(&a_root);
    assert_eq!(out.code, 0, "{out:#?}");
    let m = desk.mount(&a_root);
    assert_eq!(
        fs::read(m.join("notes/todo.txt")).unwrap(),
        b"1. base\n2. from the laptop\n"
    );
    assert_eq!(
        fs::read(m.join("notes/todo (fork 1).txt")).unwrap(),
        b"1. base\n2. from the desk\n"
    );
    m.unmount();

    // The settled vault syncs to the laptop, which finds it clean.
    let out = try_tool(
        Path::new("/"),
        "rsync",
        &[
            OsStr::new("-a"),
            OsStr::new("--checksum"), // within one second, sizes and mtimes may not differ
            OsStr::new("--delete"),
            OsStr::new(&format!("{}/", a_root.display())),
            OsStr::new(&format!("{}/", b_root.display())),
        ],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let out = laptop.verify(&b_root);
    assert_eq!(out.code, 0, "{out:#?}");
}
