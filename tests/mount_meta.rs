//! Metadata fast paths of the mount (issue 6): files removed through the mount
//! are freed in the background yet leave nothing behind, and the history the
//! mount applies to itself (without reading it back) stays what `verify` reads.

mod common;

use std::fs;
use std::time::Duration;

use common::{eventually, pattern, TestVault};

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Backing files of one kind (`.meta` sidecars) anywhere under `dir`.
fn count_suffix(dir: &std::path::Path, suffix: &str) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += count_suffix(&p, suffix);
        } else if p.to_string_lossy().ends_with(suffix) {
            n += 1;
        }
    }
    n
}

#[test]
fn removed_files_are_freed_in_the_background_and_leave_nothing() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let log = v.ws.path().join("meta.log");
    let m = v.mount_foreground("alice", &log);
    let pid = m.child.as_ref().unwrap().id();
    fs::create_dir(m.join("d")).unwrap();
    fs::create_dir(m.join("keep")).unwrap();
    fs::write(m.join("keep/k"), b"kept").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = fd_count(pid);
    for i in 0..400 {
        let p = m.join(format!("d/f{i}"));
        fs::write(&p, pattern(i, 1024)).unwrap();
    }
    // Renames over existing files free the replaced file the same way.
    for i in 0..50 {
        fs::rename(m.join(format!("d/f{i}")), m.join(format!("d/f{}", i + 50))).unwrap();
    }
    for i in 0..20 {
        fs::create_dir(m.join(format!("d/sub{i}"))).unwrap();
    }
    fs::remove_dir_all(m.join("d")).unwrap();
    assert!(!m.join("d").exists());
    // The descriptors held for the deferred frees all get closed.
    let settled = eventually(Duration::from_secs(15), || {
        (fd_count(pid) <= baseline + 4).then_some(())
    });
    assert!(
        settled.is_some(),
        "daemon fds: {baseline} before, {} after removing 400 files",
        fd_count(pid)
    );
    // Only the kept file's sidecar is left.
    assert_eq!(count_suffix(&v.root.join("meta"), ".meta"), 1);
    assert_eq!(fs::read(m.join("keep/k")).unwrap(), b"kept");
    m.unmount();
    let alice = v.member("alice").clone();
    v.as_member(&alice, ["verify", v.root.to_str().unwrap()])
        .ok();
}

#[test]
fn history_applied_in_memory_matches_what_other_mounts_read() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let a = v.mount("alice");
    // Creates, renames (one append each) and deletes through alice's mount,
    // interleaved with opens that check the bindings against the history.
    for i in 0..30 {
        fs::write(a.join(format!("f{i}")), pattern(i, 100)).unwrap();
    }
    for i in 0..10 {
        fs::rename(a.join(format!("f{i}")), a.join(format!("g{i}"))).unwrap();
        assert_eq!(fs::read(a.join(format!("g{i}"))).unwrap(), pattern(i, 100));
    }
    // Over an existing file: the replaced one is deleted in the same append.
    fs::rename(a.join("g0"), a.join("f20")).unwrap();
    for i in 21..25 {
        fs::remove_file(a.join(format!("f{i}"))).unwrap();
    }
    assert_eq!(fs::read(a.join("f20")).unwrap(), pattern(0, 100));
    // A second mount of the same identity appends to the same log.
    let a2 = v.mount("alice");
    fs::write(a2.join("from-second"), b"2").unwrap();
    fs::rename(a2.join("g1"), a2.join("h1")).unwrap();
    // The first mount sees them (its index catches up on the other writer).
    let seen = eventually(Duration::from_secs(3), || {
        fs::read(a.join("h1"))
            .ok()
            .filter(|d| *d == pattern(1, 100))
    });
    assert!(seen.is_some(), "rename by the second mount not visible");
    fs::write(a.join("after"), b"x").unwrap();
    fs::rename(a.join("after"), a.join("after2")).unwrap();
    assert_eq!(fs::read(a2.join("from-second")).unwrap(), b"2");
    a2.unmount();
    a.unmount();
    let alice = v.member("alice").clone();
    v.as_member(&alice, ["verify", v.root.to_str().unwrap()])
        .ok();
}
