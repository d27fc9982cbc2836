//! Sharing through real mounts of three members: grant, delegation, refused
//! escalation, update, revoke --update, rotate, revoke (delegates keep access),
//! an updater revoking the creator, directory defaults, lazy revoke + migrate,
//! and the bad-input errors of the sharing commands.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

fn can_read(p: &Path) -> bool {
    fs::read(p).is_ok()
}

/// Waits (up to 1 s, the promise) until `f` holds.
#[track_caller]
fn within_a_second(what: &str, mut f: impl FnMut() -> bool) {
    assert!(
        eventually(Duration::from_millis(1500), || f().then_some(())).is_some(),
        "{what}: not within a second"
    );
}

#[test]
fn full_sharing_flow_across_three_mounts() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob", "carol"]);
    let (alice, bob, carol) = (
        v.member("alice").clone(),
        v.member("bob").clone(),
        v.member("carol").clone(),
    );
    let a = v.mount("alice");
    let b = v.mount("bob");
    let c = v.mount("carol");
    let plan = a.join("plan.txt");
    fs::write(&plan, b"v1 of the plan\n").unwrap();
    within_a_second("bob sees the name", || b.join("plan.txt").exists());

    // Denied without a grant.
    assert_errno(
        fs::read(b.join("plan.txt")),
        libc::EACCES,
        "bob before any grant",
    );

    // Grant read: bob reads within a second.
    v.as_member(&alice, ["grant", plan.to_str().unwrap(), "bob", "--read"])
        .ok();
    within_a_second("bob reads after the grant", || {
        can_read(&b.join("plan.txt"))
    });
    assert_eq!(fs::read(b.join("plan.txt")).unwrap(), b"v1 of the plan\n");
    // A reader cannot write.
    assert_errno(
        fs::OpenOptions::new().write(true).open(b.join("plan.txt")),
        libc::EACCES,
        "bob opens for writing with read only",
    );

    // Delegation: bob passes read to carol, but cannot pass update.
    let bob_path = b.join("plan.txt");
    v.as_member(
        &bob,
        ["grant", bob_path.to_str().unwrap(), "carol", "--read"],
    )
    .ok();
    within_a_second("carol reads via bob", || can_read(&c.join("plan.txt")));
    v.as_member(
        &bob,
        ["grant", bob_path.to_str().unwrap(), "carol", "--update"],
    )
    .expect_error(3);

    // Grant update: bob writes, alice and carol read bob's version.
    v.as_member(&alice, ["grant", plan.to_str().unwrap(), "bob", "--update"])
        .ok();
    within_a_second("bob may write", || {
        fs::OpenOptions::new()
            .write(true)
            .open(b.join("plan.txt"))
            .is_ok()
    });
    fs::write(b.join("plan.txt"), b"v2 by bob\n").unwrap();
    within_a_second("alice sees bob's write", || {
        fs::read(&plan).ok().as_deref() == Some(b"v2 by bob\n")
    });
    within_a_second("carol sees bob's write", || {
        fs::read(c.join("plan.txt")).ok().as_deref() == Some(b"v2 by bob\n")
    });

    // revoke --update: bob reads but cannot write.
    v.as_member(
        &alice,
        ["revoke", plan.to_str().unwrap(), "bob", "--update"],
    )
    .ok();
    within_a_second("bob loses update", || {
        fs::OpenOptions::new()
            .write(true)
            .open(b.join("plan.txt"))
            .is_err()
    });
    assert_eq!(fs::read(b.join("plan.txt")).unwrap(), b"v2 by bob\n");

    // Rotate: ciphertext changes, everyone still reads.
    let backing_files = |root: &Path| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for e in fs::read_dir(root.join("tree")).unwrap().flatten() {
            if e.file_type().unwrap().is_file() && !e.file_name().to_string_lossy().starts_with('.')
            {
                out.push(fs::read(e.path()).unwrap());
            }
        }
        out
    };
    let before = backing_files(&v.root);
    v.as_member(&alice, ["rotate", plan.to_str().unwrap()]).ok();
    let after = backing_files(&v.root);
    assert_ne!(before, after, "rotate must change the stored ciphertext");
    for m in [&a, &b, &c] {
        within_a_second("reads after rotate", || {
            fs::read(m.join("plan.txt")).ok().as_deref() == Some(b"v2 by bob\n")
        });
    }

    // Revoke bob: he loses access, carol (his delegate) keeps it.
    v.as_member(&alice, ["revoke", plan.to_str().unwrap(), "bob"])
        .ok();
    within_a_second("bob loses read", || !can_read(&b.join("plan.txt")));
    assert_errno(
        fs::read(b.join("plan.txt")),
        libc::EACCES,
        "bob after revoke",
    );
    assert_eq!(fs::read(c.join("plan.txt")).unwrap(), b"v2 by bob\n");

    // `access` shows who holds what and who granted it.
    let out = v
        .as_member(&alice, ["access", plan.to_str().unwrap(), "--json"])
        .ok();
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let members = j["members"].as_array().unwrap();
    assert!(members
        .iter()
        .any(|m| m["name"] == "carol" && m["granted_by"] == "bob"));
    assert!(!members.iter().any(|m| m["name"] == "bob"));
    assert!(j["epoch"].as_u64().unwrap() >= 2);

    // The whole vault verifies.
    v.as_member(&alice, ["verify", v.root.to_str().unwrap()])
        .ok();
    let _ = carol;
}

#[test]
fn updater_revokes_creator_directory_defaults_and_lazy_migrate() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob", "carol"]);
    let (alice, bob) = (v.member("alice").clone(), v.member("bob").clone());
    let a = v.mount("alice");
    let b = v.mount("bob");
    let c = v.mount("carol");

    // Directory defaults: files created later in team/ are shared too.
    fs::create_dir(a.join("team")).unwrap();
    fs::write(a.join("team/old.txt"), b"before the grant").unwrap();
    v.as_member(
        &alice,
        [
            "grant",
            a.join("team").to_str().unwrap(),
            "bob",
            "--update",
            "-r",
        ],
    )
    .ok();
    fs::write(a.join("team/new.txt"), b"after the grant").unwrap();
    within_a_second("bob reads old and new", || {
        can_read(&b.join("team/old.txt")) && can_read(&b.join("team/new.txt"))
    });
    assert_errno(
        fs::read(c.join("team/new.txt")),
        libc::EACCES,
        "carol has no default grant",
    );

    // An updater (bob) revokes the creator (alice) lazily, then migrates.
    let big = pattern(7, 5 * CHUNK + 100);
    fs::write(a.join("team/big.bin"), &big).unwrap();
    within_a_second("bob reads big", || {
        fs::read(b.join("team/big.bin")).ok() == Some(big.clone())
    });
    v.as_member(
        &bob,
        [
            "revoke",
            b.join("team/big.bin").to_str().unwrap(),
            "alice",
            "--lazy",
        ],
    )
    .ok();
    within_a_second("alice is out at once", || {
        !can_read(&a.join("team/big.bin"))
    });
    assert_eq!(
        fs::read(b.join("team/big.bin")).unwrap(),
        big,
        "bob reads old-epoch chunks"
    );
    let out = v
        .as_member(&bob, ["migrate", v.root.to_str().unwrap(), "--json"])
        .ok();
    let last = out.stdout.trim().lines().last().unwrap().to_string();
    let j: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(j["migrated"], 1, "{last}");
    assert_eq!(j["total_left"], 0, "{last}");
    let again = v
        .as_member(&bob, ["migrate", v.root.to_str().unwrap(), "--json"])
        .ok();
    assert!(again.stdout.contains("\"migrated\":0"));
    assert_eq!(fs::read(b.join("team/big.bin")).unwrap(), big);
}

#[test]
fn sharing_bad_input_changes_nothing() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let (alice, bob) = (v.member("alice").clone(), v.member("bob").clone());
    let a = v.mount("alice");
    fs::write(a.join("f"), b"x").unwrap();
    let f = a.join("f");
    // Unknown user: exit 2.
    v.as_member(&alice, ["grant", f.to_str().unwrap(), "mallory", "--read"])
        .expect_error(2);
    // Path outside any vault: exit 2.
    v.as_member(&alice, ["grant", "/etc/hostname", "bob", "--read"])
        .expect_error(2);
    // Missing file in a vault: exit 2.
    v.as_member(
        &alice,
        ["grant", a.join("nope").to_str().unwrap(), "bob", "--read"],
    )
    .expect_error(2);
    // Grant on a file you cannot read: exit 3.
    let b = v.mount("bob");
    within_a_second("bob sees f", || b.join("f").exists());
    v.as_member(
        &bob,
        ["grant", b.join("f").to_str().unwrap(), "bob", "--read"],
    )
    .expect_error(3);
    // Revoking someone else without update: exit 3.
    v.as_member(&bob, ["revoke", b.join("f").to_str().unwrap(), "alice"])
        .expect_error(3);
    // Nothing changed: bob still cannot read, alice still can.
    assert_errno(
        fs::read(b.join("f")),
        libc::EACCES,
        "bob after refused commands",
    );
    assert_eq!(fs::read(&f).unwrap(), b"x");
    let out = v
        .as_member(&alice, ["access", f.to_str().unwrap(), "--json"])
        .ok();
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(j["members"].as_array().unwrap().len(), 1);
}

/// A new file's sidecar is written by its first commit: when the kernel
/// releases it (after `close` returns), or by the mount's flusher while it is
/// held open (docs/FORMAT.md, "Created, not yet written"). Commands and other
/// mounts right after the create wait for that first version instead of
/// failing.
#[test]
fn commands_and_other_mounts_right_after_a_create() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let alice = v.member("alice").clone();
    let a = v.mount("alice");
    let b = v.mount("bob");
    for i in 0..5 {
        let p = a.join(format!("touched-{i}"));
        fs::File::create(&p).unwrap();
        v.as_member(&alice, ["grant", p.to_str().unwrap(), "bob", "--read"])
            .ok();
    }
    for i in 0..5 {
        assert_eq!(fs::read(b.join(format!("touched-{i}"))).unwrap(), b"");
    }
    // Files created in `shared` start readable by bob. One held open with
    // content (no process is started meanwhile: an exec would close a copy of
    // the descriptor and so commit it): bob's open waits for the flusher.
    fs::create_dir(a.join("shared")).unwrap();
    let shared = a.join("shared");
    v.as_member(
        &alice,
        ["grant", shared.to_str().unwrap(), "bob", "--read", "-r"],
    )
    .ok();
    within_a_second("bob sees the directory", || b.join("shared").exists());
    let mut f = fs::File::create(shared.join("held")).unwrap();
    std::io::Write::write_all(&mut f, b"still open").unwrap();
    // The first open already succeeds (no EACCES for a file whose access list
    // is a moment away); its size reaches bob's kernel within a second.
    if let Err(e) = fs::read(b.join("shared/held")) {
        panic!("bob opening a file held open by alice: {e}");
    }
    within_a_second("bob reads the held-open file", || {
        fs::read(b.join("shared/held")).is_ok_and(|got| got == b"still open")
    });
    drop(f);
}
