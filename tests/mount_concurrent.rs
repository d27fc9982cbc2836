//! Two mounts of one vault working at the same time, as two members and as one
//! member mounted twice: creates, writes and renames from both sides at once lose
//! nothing and show in the other mount within a second; two writers hammering the
//! same chunks of one file leave, per chunk, one writer's version (never a torn or
//! unreadable file); `coffer verify` is clean afterwards.

mod common;

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const FILES_PER_SIDE: usize = 40;
const SHARED_CHUNKS: usize = 4;

/// The bytes side `side` writes into chunk `chunk` on round `round`: a chunk is
/// whole when it is one (side, round) pattern from start to end.
fn chunk_fill(side: u8, round: u32, chunk: usize) -> Vec<u8> {
    let tag = format!("[{side}:{round}:{chunk}]");
    tag.bytes().cycle().take(common::CHUNK).collect()
}

/// One side's storm: creates, writes and renames its own files, and rewrites
/// whole chunks of the shared file, all while the other side does the same.
fn storm(mnt: PathBuf, side: u8, deadline: Instant) -> Vec<(String, Vec<u8>)> {
    let mut mine = Vec::new();
    let shared = OpenOptions::new()
        .write(true)
        .open(mnt.join("shared.bin"))
        .expect("open the shared file");
    for i in 0..FILES_PER_SIDE {
        let round = i as u32;
        let name = format!("side{side}-{i}.txt");
        let body = pattern(u64::from(side) * 1000 + i as u64, 100 + i * 997);
        fs::write(mnt.join(&name), &body).expect("create and write");
        if i % 3 == 0 {
            let renamed = format!("side{side}-{i}-renamed.txt");
            fs::rename(mnt.join(&name), mnt.join(&renamed)).expect("rename");
            mine.push((renamed, body));
        } else {
            mine.push((name, body));
        }
        // A whole-chunk rewrite of the shared file, sometimes made durable.
        let chunk = (i + usize::from(side)) % SHARED_CHUNKS;
        shared
            .write_all_at(
                &chunk_fill(side, round, chunk),
                (chunk * common::CHUNK) as u64,
            )
            .expect("write a chunk of the shared file");
        if i % 5 == 0 {
            shared.sync_data().expect("fsync the shared file");
        }
        if Instant::now() > deadline {
            break;
        }
    }
    mine
}

fn check_shared(path: &Path) {
    let bytes = fs::read(path).expect("the shared file stays readable");
    assert_eq!(bytes.len(), SHARED_CHUNKS * common::CHUNK, "size kept");
    for (i, chunk) in bytes.chunks(common::CHUNK).enumerate() {
        let zero = chunk.iter().all(|b| *b == 0);
        let whole = (0..2u8).any(|side| {
            (0..FILES_PER_SIDE as u32).any(|round| chunk == chunk_fill(side, round, i).as_slice())
        });
        assert!(
            zero || whole,
            "chunk {i} of {} is torn: starts {:?}",
            path.display(),
            String::from_utf8_lossy(&chunk[..32])
        );
    }
}

fn run_two_mounts(a: &Mount, b: &Mount) {
    fs::write(
        a.join("shared.bin"),
        vec![0u8; SHARED_CHUNKS * common::CHUNK],
    )
    .unwrap();
    assert!(
        eventually(Duration::from_millis(1500), || {
            (fs::metadata(b.join("shared.bin")).ok()?.len()
                == (SHARED_CHUNKS * common::CHUNK) as u64)
                .then_some(())
        })
        .is_some(),
        "the shared file did not reach the second mount"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
    let ta = std::thread::spawn(move || storm(pa, 0, deadline));
    let tb = std::thread::spawn(move || storm(pb, 1, deadline));
    let made_by_a = ta.join().expect("side 0 storm");
    let made_by_b = tb.join().expect("side 1 storm");

    // Nothing lost, and each side sees the other's files within a second.
    for (mount, made) in [
        (b, &made_by_a),
        (a, &made_by_b),
        (a, &made_by_a),
        (b, &made_by_b),
    ] {
        for (name, body) in made {
            let p = mount.join(name);
            let seen = eventually(Duration::from_millis(1500), || {
                fs::read(&p).ok().filter(|got| got == body)
            });
            assert!(seen.is_some(), "{} is missing or differs", p.display());
        }
    }
    let names = names_in(a.path()).unwrap();
    assert_eq!(
        names.len(),
        1 + made_by_a.len() + made_by_b.len(),
        "{names:?}"
    );
    for m in [a, b] {
        check_shared(&m.join("shared.bin"));
    }
    // Both mounts agree on the shared file once the last commits are in.
    assert!(
        eventually(Duration::from_millis(1500), || {
            (fs::read(a.join("shared.bin")).ok()? == fs::read(b.join("shared.bin")).ok()?)
                .then_some(())
        })
        .is_some(),
        "the two mounts disagree on the shared file"
    );
}

fn verify_clean(v: &TestVault, who: &str) {
    let out = v.as_member(v.member(who), [OsStr::new("verify"), v.root.as_os_str()]);
    assert_eq!(out.code, 0, "verify after the storm: {out:#?}");
}

#[test]
fn two_members_creating_writing_renaming_at_once() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let a = v.mount("alice");
    // bob may update everything created at the root from now on...
    v.as_member(
        v.member("alice"),
        [
            OsStr::new("grant"),
            a.path().as_os_str(),
            OsStr::new("bob"),
            OsStr::new("--update"),
            OsStr::new("-r"),
        ],
    )
    .ok();
    let b = v.mount("bob");
    // ...and alice what bob creates there (the defaults hold both).
    v.as_member(
        v.member("bob"),
        [
            OsStr::new("grant"),
            b.path().as_os_str(),
            OsStr::new("alice"),
            OsStr::new("--update"),
            OsStr::new("-r"),
        ],
    )
    .ok();
    run_two_mounts(&a, &b);
    a.unmount();
    b.unmount();
    verify_clean(&v, "alice");
    verify_clean(&v, "bob");
}

#[test]
fn one_member_mounted_twice_creating_writing_renaming_at_once() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let a = v.mount("alice");
    let b = v.mount("alice");
    run_two_mounts(&a, &b);
    a.unmount();
    b.unmount();
    verify_clean(&v, "alice");
}

/// Open a file, let go of every other handle on it at the same moment (the
/// last release of a file used to drop its open state while another open of it
/// was picking that state up), unlink it, then write and read through the fd
/// that is still open: the write and the read work, the content is the file's
/// with the write on top, and the close commits nothing anywhere (POSIX: an
/// unlinked file lives while it is open). Four threads, several hundred rounds
/// each: session 7's build failed this in 2–20 of 8,000 rounds (`ENOENT` from
/// the read, then `EIO` from the close).
#[test]
fn unlinked_while_open_reads_and_writes_while_other_handles_close() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let root = m.path().to_path_buf();
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let dir = root.join(format!("w{w}"));
            std::thread::spawn(move || {
                fs::create_dir(&dir).unwrap();
                let mut failures = Vec::new();
                for i in 0..600u64 {
                    let p = dir.join(format!("f{}", i % 7));
                    let body = pattern(w * 10_000 + i, [10, 5000, 70_000][(i % 3) as usize]);
                    fs::write(&p, &body).unwrap();
                    // A handle that closes while the next one opens.
                    let reader = std::thread::spawn({
                        let p = p.clone();
                        move || drop(fs::read(&p))
                    });
                    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
                    reader.join().unwrap();
                    fs::remove_file(&p).unwrap();
                    let result = f
                        .write_all_at(b"after unlink", 0)
                        .and_then(|()| {
                            let mut got = vec![0u8; body.len() + 20];
                            let n = f.read_at(&mut got, 0)?;
                            got.truncate(n);
                            Ok(got)
                        })
                        .map(|got| {
                            let mut want = body.clone();
                            want.resize(want.len().max(12), 0);
                            want[..12].copy_from_slice(b"after unlink");
                            got == want
                        })
                        .and_then(|same| f.sync_all().map(|()| same));
                    match result {
                        Ok(true) => {}
                        Ok(false) => failures.push(format!("{}: content differs", p.display())),
                        Err(e) => failures.push(format!("{}: {e}", p.display())),
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    m.unmount();
    verify_clean(&v, "alice");
}

/// Reads of one file run without the file's lock (`OpenFile::plan_read`),
/// several at once: from three threads past the kernel's cache (`O_DIRECT`),
/// while a writer rewrites and syncs every chunk, each read must give whole
/// chunks, each of one version and at its place. (The exact interleaving of a
/// plan, a commit and the plan's run is pinned by
/// `tests/file_io.rs::a_read_planned_before_a_commit_yields_whole_chunks_after_it`.)
#[test]
fn reads_racing_commits_see_whole_chunks() {
    use std::os::unix::fs::OpenOptionsExt;
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let path = m.join("racing.bin");
    let chunks = 6;
    let mut first = Vec::new();
    for i in 0..chunks {
        first.extend(chunk_fill(0, 0, i));
    }
    fs::write(&path, &first).unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            let mut round = 1u32;
            while Instant::now() < deadline {
                for i in 0..chunks {
                    let body = chunk_fill(1, round, i);
                    f.write_all_at(&body, (i * common::CHUNK) as u64).unwrap();
                }
                f.sync_all().unwrap();
                round += 1;
            }
            round
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&path)
                    .unwrap();
                let mut reads = 0u32;
                // Two chunks per read, as the kernel's read-ahead asks.
                let mut buf = vec![0u8; 2 * common::CHUNK];
                while Instant::now() < deadline {
                    let at = ((reads as usize + t) % (chunks - 1)) * common::CHUNK;
                    f.read_exact_at(&mut buf, at as u64).unwrap();
                    for (k, got) in buf.chunks(common::CHUNK).enumerate() {
                        let i = at / common::CHUNK + k;
                        let tag_end = got.iter().position(|b| *b == b']').unwrap_or(0) + 1;
                        let tag = String::from_utf8_lossy(&got[..tag_end]).into_owned();
                        let whole = got.starts_with(b"[")
                            && tag.ends_with(&format!(":{i}]"))
                            && got
                                == tag
                                    .bytes()
                                    .cycle()
                                    .take(common::CHUNK)
                                    .collect::<Vec<u8>>()
                                    .as_slice();
                        assert!(whole, "chunk {i} torn or misplaced, starts {tag:?}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let rounds = writer.join().unwrap();
    let reads: u32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(
        rounds > 2 && reads > 10,
        "{rounds} write rounds, {reads} reads"
    );
    m.unmount();
    verify_clean(&v, "alice");
}
