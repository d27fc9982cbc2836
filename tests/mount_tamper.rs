//! Tampering seen through a mount: a modified chunk gives EIO and a log line
//! naming the file, never wrong data; `coffer verify` exits 4 naming it; a
//! rolled-back file is refused.

mod common;

use std::fs;

use common::*;

fn content_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root.join("tree")).unwrap().flatten() {
        if e.file_type().unwrap().is_file() && !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn flipped_chunk_is_eio_with_a_log_line_and_verify_names_it() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let alice = v.member("alice").clone();
    let data = pattern(3, 3 * CHUNK);
    {
        let m = v.mount("alice");
        fs::write(m.join("victim.bin"), &data).unwrap();
        fs::write(m.join("bystander.txt"), b"fine").unwrap();
    }
    // Flip one byte inside chunk 1 of the victim's content file.
    let victim = content_files(&v.root)
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() > 100_000)
        .unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let at = 32 + CHUNK + 40 + 1000;
    bytes[at] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();

    let log = v.ws.path().join("daemon.log");
    let m = v.mount_foreground("alice", &log);
    let got = fs::read(m.join("victim.bin"));
    assert_errno(got, libc::EIO, "reading a tampered file");
    // Chunk 0 is intact and still reads.
    let mut f = fs::File::open(m.join("victim.bin")).unwrap();
    let mut first = vec![0u8; 100];
    std::io::Read::read_exact(&mut f, &mut first).unwrap();
    assert_eq!(first, data[..100]);
    assert_eq!(fs::read(m.join("bystander.txt")).unwrap(), b"fine");
    drop(f);
    m.unmount();
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("victim.bin") && text.contains("EIO"),
        "log must name the file: {text}"
    );

    let out = v.as_member(&alice, ["verify", v.root.to_str().unwrap()]);
    out.expect_error(4);
    assert!(
        out.stdout.contains("victim.bin"),
        "verify must name the file: {out:?}"
    );
    assert!(!out.stdout.contains("bystander.txt"), "{out:?}");
}

#[test]
fn rolled_back_file_is_refused_by_the_mount_and_verify() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let alice = v.member("alice").clone();
    let old_copy = v.ws.path().join("old");
    {
        let m = v.mount("alice");
        fs::write(m.join("ledger"), b"balance: 100").unwrap();
    }
    // Keep a copy of the whole vault as it is now (an attacker's snapshot).
    copy_tree(&v.root, &old_copy);
    {
        let m = v.mount("alice");
        fs::write(m.join("ledger"), b"balance: 5").unwrap();
    }
    // Replace the file's content and sidecar with the snapshot's.
    fs::remove_dir_all(v.root.join("tree")).unwrap();
    fs::remove_dir_all(v.root.join("meta")).unwrap();
    copy_tree(&old_copy.join("tree"), &v.root.join("tree"));
    copy_tree(&old_copy.join("meta"), &v.root.join("meta"));
    let m = v.mount("alice");
    let got = fs::read(m.join("ledger"));
    assert!(
        got.as_deref().ok() != Some(&b"balance: 100"[..]),
        "a rollback must not be served"
    );
    assert_errno(got, libc::EIO, "reading a rolled-back file");
    m.unmount();
    let out = v.as_member(&alice, ["verify", v.root.to_str().unwrap()]);
    out.expect_error(4);
    assert!(out.stdout.contains("rolled back"), "{out:?}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&e.path(), &t);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &t).unwrap();
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// A FIFO planted in place of a file's sidecar: the mount answers EIO at once
/// (opening a FIFO would otherwise wait for a writer forever, holding a worker
/// thread) and logs the file; the other files read; `verify` exits 4 naming
/// what it found.
#[test]
fn a_fifo_in_place_of_a_sidecar_is_eio_not_a_hang() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let alice = v.member("alice").clone();
    {
        let m = v.mount("alice");
        fs::write(m.join("victim.txt"), b"secret").unwrap();
        fs::write(m.join("bystander.txt"), b"fine").unwrap();
    }
    let mut sidecars = Vec::new();
    for content in content_files(&v.root) {
        let header = fs::read(&content).unwrap();
        let id = coffer::format::data::DataHeader::decode(&header)
            .unwrap()
            .file_id;
        sidecars.push(
            v.root
                .join("meta")
                .join(coffer::crypto::hex(&id[..1]))
                .join(format!("{}.meta", coffer::crypto::hex(&id))),
        );
    }
    assert_eq!(sidecars.len(), 2);
    let log = v.ws.path().join("daemon.log");
    let m = v.mount_foreground("alice", &log);
    let (victim, bystander) = (m.join("victim.txt"), m.join("bystander.txt"));
    // Under the live mount, as an attacker with access to the storage would.
    fs::remove_file(&sidecars[0]).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&sidecars[0])
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send((fs::read(&victim), fs::read(&bystander)));
    });
    let (a, b) = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a read through the mount hung on the FIFO");
    // One of the two files lost its sidecar: that one is EIO, the other reads.
    let (eio, fine, fine_text) = match (&a, &b) {
        (Err(_), Ok(_)) => (a, b, &b"fine"[..]),
        (Ok(_), Err(_)) => (b, a, &b"secret"[..]),
        _ => panic!("exactly one file must fail: {a:?} {b:?}"),
    };
    assert_errno(eio, libc::EIO, "reading a file whose sidecar is a FIFO");
    assert_eq!(fine.unwrap(), fine_text);
    m.unmount();
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("not a regular file"),
        "the log must say what is wrong: {text}"
    );
    let out = v.as_member(&alice, ["verify", v.root.to_str().unwrap()]);
    out.expect_error(4);
    assert!(out.stdout.contains("not a regular file"), "{out:?}");
}
