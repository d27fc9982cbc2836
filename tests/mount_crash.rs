//! Crash safety: `kill -9` of the mount daemon in the middle of a write storm.
//! After a remount (no manual repair), fsync'ed data is there, and every chunk
//! of the stormed file reads, without EIO, as one of the versions written.
//!
//! Every write fills whole 64 KiB chunks with one byte value (the pass number),
//! so each chunk can be checked against the passes that wrote it.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{pattern, TestVault, CHUNK};

const TRIALS: u32 = 5;
/// Chunks the storm file starts with (all written in pass 1).
const BASE_CHUNKS: usize = 8;
/// The storm stops appending at this many chunks (and keeps overwriting).
const MAX_CHUNKS: usize = 40;

/// What the storm writer did, for the checks after the crash.
#[derive(Default)]
struct StormLog {
    /// For each chunk index, the pass numbers that wrote (or began writing) it.
    writers: Vec<Vec<u8>>,
    /// The file size after the last pass whose fsync returned.
    synced_len: u64,
}

/// One pass: overwrite every chunk in place with `pass`, then append one chunk.
/// Every third pass ends with fsync, every fifth reopens the file.
fn storm(
    path: PathBuf,
    stop: Arc<AtomicBool>,
    synced_pass: Arc<AtomicU32>,
    log: Arc<Mutex<StormLog>>,
) {
    let open = || OpenOptions::new().write(true).open(&path);
    let Ok(mut f) = open() else { return };
    let mut chunks = BASE_CHUNKS;
    for pass in 2u8..=250 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let buf = vec![pass; CHUNK];
        let grow = chunks < MAX_CHUNKS;
        {
            let mut l = log.lock().unwrap();
            for w in l.writers.iter_mut().take(chunks) {
                w.push(pass);
            }
            if grow {
                l.writers.push(vec![pass]);
            }
        }
        // Overwrite every chunk once, starting at a different chunk each pass
        // and going down on odd passes (a rotation, so each chunk exactly once).
        let start = pass as usize * 5;
        for k in 0..chunks {
            let idx = if pass % 2 == 1 {
                (start + chunks - k) % chunks
            } else {
                (start + k) % chunks
            };
            if f.write_all_at(&buf, (idx * CHUNK) as u64).is_err() {
                return;
            }
        }
        if grow {
            if f.write_all_at(&buf, (chunks * CHUNK) as u64).is_err() {
                return;
            }
            chunks += 1;
        }
        if pass % 3 == 0 {
            if f.sync_all().is_err() {
                return;
            }
            synced_pass.store(pass as u32, Ordering::SeqCst);
            log.lock().unwrap().synced_len = (chunks * CHUNK) as u64;
        }
        if pass % 5 == 0 {
            drop(f);
            f = match open() {
                Ok(f) => f,
                Err(_) => return,
            };
        }
    }
}

/// Reads a whole file, mapping errors to a message with the errno.
fn read_all(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| {
        format!(
            "reading {}: {e} (errno {:?})",
            p.display(),
            e.raw_os_error()
        )
    })
}

#[test]
fn kill_9_during_a_write_storm() {
    require_fuse!();
    let started = Instant::now();
    let v = TestVault::new(&["alice"]);
    // Files from earlier trials, with the content they must keep.
    let mut durable: Vec<(String, Vec<u8>)> = Vec::new();

    for trial in 0..TRIALS {
        let log_path = v.ws.path().join(format!("daemon-{trial}.log"));
        let mut m = v.mount_foreground("alice", &log_path);

        // 1. Durable data: a multi-chunk file, fsync'ed; then a partial
        //    in-place overwrite of it, fsync'ed too.
        let dname = format!("durable-{trial}.bin");
        let mut want = pattern(u64::from(trial), 3 * CHUNK + 100);
        // Kept open on purpose: the crash comes while it is still open.
        let durable_fd = {
            let mut f = File::create(m.join(&dname)).unwrap();
            f.write_all(&want).unwrap();
            f.sync_all().unwrap();
            let patch = pattern(1000 + u64::from(trial), CHUNK);
            f.write_all_at(&patch, CHUNK as u64 / 2).unwrap();
            f.sync_all().unwrap();
            want[CHUNK / 2..CHUNK / 2 + CHUNK].copy_from_slice(&patch);
            f
        };
        durable.push((dname, want));

        // 2. The storm file: BASE_CHUNKS chunks of pass 1, fsync'ed.
        let sname = format!("storm-{trial}.bin");
        let spath = m.join(&sname);
        {
            let mut f = File::create(&spath).unwrap();
            f.write_all(&vec![1u8; BASE_CHUNKS * CHUNK]).unwrap();
            f.sync_all().unwrap();
        }
        let log = Arc::new(Mutex::new(StormLog {
            writers: vec![vec![1u8]; BASE_CHUNKS],
            synced_len: (BASE_CHUNKS * CHUNK) as u64,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let synced_pass = Arc::new(AtomicU32::new(1));
        let writer = {
            let (stop, synced_pass, log) = (stop.clone(), synced_pass.clone(), log.clone());
            std::thread::spawn(move || storm(spath, stop, synced_pass, log))
        };

        // 3. Kill the daemon mid-storm, at a different moment each trial.
        std::thread::sleep(Duration::from_millis(150 + 170 * u64::from(trial)));
        m.crash();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("storm writer thread");
        drop(durable_fd);
        drop(m);
        let daemon_log = fs::read_to_string(&log_path).unwrap_or_default();

        // 4. Remount with no repair step and check.
        let m = v.mount("alice");
        for (name, data) in &durable {
            let got = read_all(&m.join(name)).unwrap_or_else(|e| {
                panic!("trial {trial}: fsync'ed file unreadable after kill -9: {e}\n{daemon_log}")
            });
            assert!(
                got == *data,
                "trial {trial}: fsync'ed file {name} changed after kill -9 \
                 (len {} vs {})",
                got.len(),
                data.len()
            );
        }
        let got = read_all(&m.join(&sname))
            .unwrap_or_else(|e| panic!("trial {trial}: storm file after kill -9: {e}"));
        let log = log.lock().unwrap();
        let synced = synced_pass.load(Ordering::SeqCst) as u8;
        check_storm(trial, &got, &log, synced);
        let passes = got.chunks(CHUNK).map(|c| c[0]).max().unwrap_or(0);
        eprintln!(
            "trial {trial}: storm file {} chunks, newest pass {passes}, last fsync'ed pass {synced}",
            got.len() / CHUNK
        );
        drop(log);

        // 5. The file keeps working: append and overwrite, read back.
        {
            let f = OpenOptions::new().write(true).open(m.join(&sname)).unwrap();
            f.write_all_at(&vec![251u8; CHUNK], got.len() as u64)
                .unwrap();
            f.write_all_at(&vec![252u8; CHUNK], 0).unwrap();
        }
        let after = read_all(&m.join(&sname)).unwrap();
        assert_eq!(after.len(), got.len() + CHUNK);
        assert!(after[..CHUNK].iter().all(|b| *b == 252));
        assert!(after[got.len()..].iter().all(|b| *b == 251));
        assert!(after[CHUNK..got.len()] == got[CHUNK..]);
        m.unmount();
    }
    eprintln!("{TRIALS} crash trials in {:?}", started.elapsed());
}

/// A database-like pattern: each pass overwrites two of 12 chunks and fsyncs.
/// Such small synced commits carry the new chunks in the sidecar and leave
/// their slot writes unsynced (FORMAT.md, "Pending chunks"). Kill the daemon
/// mid-way: after a remount every chunk is uniform, holds a pass that wrote it,
/// and is no older than the newest fsync'ed pass that wrote it; then `verify`
/// exits 0.
#[test]
fn kill_9_during_small_synced_overwrites() {
    require_fuse!();
    const CHUNKS: usize = 12;
    let v = TestVault::new(&["alice"]);
    for trial in 0..3u32 {
        let log_path = v.ws.path().join(format!("daemon-small-{trial}.log"));
        let mut m = v.mount_foreground("alice", &log_path);
        let name = format!("db-{trial}.bin");
        let path = m.join(&name);
        {
            let mut f = File::create(&path).unwrap();
            f.write_all(&vec![1u8; CHUNKS * CHUNK]).unwrap();
            f.sync_all().unwrap();
        }
        // Per chunk: (pass, whether its fsync returned) for every pass that
        // began writing it.
        let log = Arc::new(Mutex::new(vec![vec![(1u8, true)]; CHUNKS]));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, log, path) = (stop.clone(), log.clone(), path.clone());
            std::thread::spawn(move || {
                let Ok(f) = OpenOptions::new().write(true).open(&path) else {
                    return;
                };
                for pass in 2u8..=250 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let idxs = [
                        (pass as usize * 7) % CHUNKS,
                        (pass as usize * 5 + 3) % CHUNKS,
                    ];
                    for idx in idxs {
                        log.lock().unwrap()[idx].push((pass, false));
                        if f.write_all_at(&vec![pass; CHUNK], (idx * CHUNK) as u64)
                            .is_err()
                        {
                            return;
                        }
                    }
                    if f.sync_all().is_err() {
                        return;
                    }
                    for idx in idxs {
                        for w in log.lock().unwrap()[idx].iter_mut() {
                            if w.0 == pass {
                                w.1 = true;
                            }
                        }
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(200 + 250 * u64::from(trial)));
        m.crash();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread");
        drop(m);
        let daemon_log = fs::read_to_string(&log_path).unwrap_or_default();

        let m = v.mount("alice");
        let got = read_all(&m.join(&name))
            .unwrap_or_else(|e| panic!("trial {trial}: after kill -9: {e}\n{daemon_log}"));
        assert_eq!(got.len(), CHUNKS * CHUNK, "trial {trial}: length");
        let log = log.lock().unwrap();
        for (idx, chunk) in got.chunks(CHUNK).enumerate() {
            let v = chunk[0];
            assert!(
                chunk.iter().all(|b| *b == v),
                "trial {trial}: chunk {idx} mixes versions"
            );
            let passes: Vec<u8> = log[idx].iter().map(|w| w.0).collect();
            assert!(
                passes.contains(&v),
                "trial {trial}: chunk {idx} holds {v}, which no pass wrote there ({passes:?})"
            );
            let newest_synced = log[idx].iter().filter(|w| w.1).map(|w| w.0).max().unwrap();
            assert!(
                v >= newest_synced,
                "trial {trial}: chunk {idx} holds pass {v}, older than its fsync'ed pass {newest_synced}"
            );
        }
        eprintln!(
            "trial {trial}: newest pass {}",
            got.chunks(CHUNK).map(|c| c[0]).max().unwrap()
        );
        drop(log);
        m.unmount();
    }
    let out = v.as_member(
        v.member("alice"),
        [std::ffi::OsStr::new("verify"), v.root.as_os_str()],
    );
    assert_eq!(out.code, 0, "verify: {}{}", out.stdout, out.stderr);
}

/// A new file's sidecar is written by its first commit (docs/FORMAT.md,
/// "Created, not yet written"). Kill the daemon while files are held open
/// after create (written or not, committed by the flusher or not): after a
/// remount each reads as empty or as what was written, never EIO or EACCES,
/// takes new writes, and `verify` finds nothing wrong. Files closed before the
/// crash keep their content.
#[test]
fn kill_9_while_files_are_being_created() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let log_path = v.ws.path().join("daemon-create.log");
    let mut m = v.mount_foreground("alice", &log_path);
    for i in 0..20u64 {
        fs::write(m.join(format!("closed-{i}")), pattern(i, 5000)).unwrap();
    }
    File::create(m.join("closed-empty")).unwrap();
    let mut held = Vec::new();
    for i in 0..6u64 {
        let mut f = File::create(m.join(format!("held-{i}"))).unwrap();
        if i % 2 == 0 {
            f.write_all(&pattern(100 + i, 70_000)).unwrap();
        }
        held.push(f);
    }
    m.crash();
    drop(held);
    drop(m);
    let daemon_log = fs::read_to_string(&log_path).unwrap_or_default();

    let m = v.mount("alice");
    for i in 0..20u64 {
        let got = read_all(&m.join(format!("closed-{i}"))).unwrap();
        assert!(got == pattern(i, 5000), "closed-{i} changed\n{daemon_log}");
    }
    assert_eq!(read_all(&m.join("closed-empty")).unwrap(), b"");
    for i in 0..6u64 {
        let p = m.join(format!("held-{i}"));
        let got = read_all(&p).unwrap_or_else(|e| panic!("held-{i} after kill -9: {e}"));
        let written = if i % 2 == 0 {
            pattern(100 + i, 70_000)
        } else {
            Vec::new()
        };
        assert!(
            got.is_empty() || got == written,
            "held-{i}: {} bytes, neither empty nor what was written",
            got.len()
        );
        fs::write(&p, b"after the crash").unwrap();
        assert_eq!(read_all(&p).unwrap(), b"after the crash");
    }
    m.unmount();
    let out = v.as_member(
        v.member("alice"),
        [std::ffi::OsStr::new("verify"), v.root.as_os_str()],
    );
    assert_eq!(
        out.code, 0,
        "verify after the crash: {}{}",
        out.stdout, out.stderr
    );
}

/// Each chunk is uniform, holds a pass that wrote that chunk, and is no older
/// than the last pass whose fsync returned; the file is no shorter than it was
/// at that fsync and a whole number of chunks long.
fn check_storm(trial: u32, got: &[u8], log: &StormLog, synced: u8) {
    assert_eq!(
        got.len() % CHUNK,
        0,
        "trial {trial}: storm file length {} is not whole chunks",
        got.len()
    );
    assert!(
        got.len() as u64 >= log.synced_len,
        "trial {trial}: storm file is {} bytes, shorter than the {} fsync'ed",
        got.len(),
        log.synced_len
    );
    assert!(
        got.len() / CHUNK <= log.writers.len(),
        "trial {trial}: storm file has {} chunks but only {} were ever written",
        got.len() / CHUNK,
        log.writers.len()
    );
    for (idx, chunk) in got.chunks(CHUNK).enumerate() {
        let v = chunk[0];
        if let Some(pos) = chunk.iter().position(|b| *b != v) {
            panic!(
                "trial {trial}: chunk {idx} mixes versions: byte 0 is {v}, byte {pos} is {}",
                chunk[pos]
            );
        }
        assert!(
            log.writers[idx].contains(&v),
            "trial {trial}: chunk {idx} holds {v}, which no pass wrote there (writers: {:?})",
            log.writers[idx]
        );
        // Chunks that existed at the last fsync must be at least that new.
        if (idx as u64) * (CHUNK as u64) < log.synced_len {
            assert!(
                v >= synced,
                "trial {trial}: chunk {idx} holds pass {v}, older than the fsync'ed pass {synced}"
            );
        }
    }
}

/// `kill -9` of `coffer rotate` and of `coffer migrate` part-way through a
/// re-encryption: the file reads as before (old epoch, new epoch or a mix, the
/// same plaintext), `coffer verify` exits 0, and a rerun completes the job.
#[test]
fn kill_9_during_rotate_and_migrate() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let alice = v.member("alice");
    let data = pattern(77, 48 << 20);
    {
        let m = v.mount("alice");
        fs::write(m.join("big.bin"), &data).unwrap();
        m.unmount();
    }
    let root = v.root.to_str().unwrap().to_string();
    let spawn = |args: &[&str]| {
        let mut cmd = v.ws.command(&alice.state);
        cmd.args(args)
            .arg("--identity")
            .arg(&alice.key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().expect("spawn coffer")
    };
    for trial in 0..4u64 {
        let mut child = if trial % 2 == 0 {
            spawn(&["rotate", "--vault", &root, "/big.bin"])
        } else {
            v.as_member(
                alice,
                ["grant", "--vault", &root, "/big.bin", "bob", "--read"],
            )
            .ok();
            v.as_member(
                alice,
                ["revoke", "--vault", &root, "/big.bin", "bob", "--lazy"],
            )
            .ok();
            spawn(&["migrate", &root])
        };
        std::thread::sleep(Duration::from_millis(60 + 90 * trial));
        let _ = child.kill();
        let _ = child.wait();
        v.as_member(alice, ["verify", &root]).ok();
        let m = v.mount("alice");
        let got = read_all(&m.join("big.bin"))
            .unwrap_or_else(|e| panic!("trial {trial}: unreadable after kill -9: {e}"));
        assert!(got == data, "trial {trial}: content changed after kill -9");
        m.unmount();
    }
    // Whatever was left on an old epoch, a rerun finishes it.
    v.as_member(alice, ["migrate", &root]).ok();
    v.as_member(alice, ["rotate", "--vault", &root, "/big.bin"])
        .ok();
    v.as_member(alice, ["verify", &root]).ok();
    let m = v.mount("alice");
    assert!(read_all(&m.join("big.bin")).unwrap() == data);
    m.unmount();
}

/// Every file under `dir` whose name ends in `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_ending(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

/// A re-encryption cut inside its slot writes after its commit point (`rotate`
/// made to abort there, one chunk new up to a page boundary and old after it,
/// as a `kill -9` inside `write` leaves it): its journal holds how to redo the
/// chunks, not the chunks (a few KiB for 48 of them); another member reads the
/// file as before on both sides of the cut, `verify` passes, and a writable
/// open completes the job (journal gone, every chunk on the new key).
#[test]
fn a_reencryption_cut_mid_write_is_redone_from_its_journal() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob"]);
    let (alice, bob) = (v.member("alice"), v.member("bob"));
    let root = v.root.to_str().unwrap();
    let data = pattern(5, 3 << 20);
    {
        let m = v.mount("alice");
        fs::write(m.join("big.bin"), &data).unwrap();
        m.unmount();
    }
    v.as_member(
        alice,
        ["grant", "--vault", root, "/big.bin", "bob", "--read"],
    )
    .ok();
    let content: Vec<PathBuf> = files_ending(&v.root.join("tree"), "")
        .into_iter()
        .filter(|p| !p.ends_with(".coffer-dir"))
        .collect();
    assert_eq!(content.len(), 1, "{content:?}");
    let content = &content[0];
    let before = fs::read(content).unwrap();

    let cut_after = (1u64 << 20) + 1000;
    let out =
        v.ws.command(&alice.state)
            .args(["rotate", "--vault", root, "/big.bin", "--identity"])
            .arg(&alice.key)
            .env("COFFER_TEST_CRASH_AFTER_SLOT_BYTES", cut_after.to_string())
            .output()
            .unwrap();
    assert!(!out.status.success(), "the rotate was to be cut: {out:?}");
    let journals = files_ending(&v.root.join("meta"), ".journal");
    assert_eq!(
        journals.len(),
        1,
        "an interrupted re-encryption leaves its journal"
    );
    let journal = fs::read(&journals[0]).unwrap();
    assert!(journal.starts_with(b"CFRK"), "a re-encryption journal");
    assert!(
        journal.len() < 8192,
        "{} bytes: chunks were copied",
        journal.len()
    );
    // The cut is where it was asked for: new slots before it, old ones after.
    let cut = fs::read(content).unwrap();
    assert_eq!(cut.len(), before.len());
    assert_ne!(cut[..4096 * 4], before[..4096 * 4]);
    assert_eq!(cut[(2 << 20)..], before[(2 << 20)..]);

    {
        let m = v.mount("bob");
        assert!(
            read_all(&m.join("big.bin")).unwrap() == data,
            "bob reads as before"
        );
        m.unmount();
    }
    v.as_member(bob, ["verify", root]).ok();
    {
        let m = v.mount("alice");
        assert!(
            read_all(&m.join("big.bin")).unwrap() == data,
            "alice reads as before"
        );
        m.unmount();
    }
    assert!(!journals[0].exists(), "completed: the journal goes");
    let done = fs::read(content).unwrap();
    assert_ne!(
        done[(2 << 20)..],
        before[(2 << 20)..],
        "the tail is re-encrypted too"
    );
    v.as_member(alice, ["verify", root]).ok();
    let m = v.mount("bob");
    assert!(read_all(&m.join("big.bin")).unwrap() == data);
    m.unmount();
}

/// An access change cut short inside its sidecar write (the older of the
/// sidecar's two copies part overwritten, as a `kill -9` inside `write`
/// leaves it) leaves the version before in force: the grant did not happen,
/// members read the file as before, `verify` passes and names the torn copy,
/// and the next change goes through. Fails if a reader took the torn copy or
/// could not fall back to the intact one.
#[test]
fn a_sidecar_write_cut_short_leaves_the_version_before() {
    require_fuse!();
    let v = TestVault::new(&["alice", "bob", "carol"]);
    let (alice, bob) = (v.member("alice"), v.member("bob"));
    let root = v.root.to_str().unwrap();
    let data = pattern(6, 200_000);
    {
        let m = v.mount("alice");
        fs::write(m.join("doc.bin"), &data).unwrap();
        m.unmount();
    }
    // The first sidecar has one copy; this grant writes the second.
    v.as_member(
        alice,
        ["grant", "--vault", root, "/doc.bin", "bob", "--read"],
    )
    .ok();
    for cut in [0usize, 40, 300, 600] {
        let out =
            v.ws.command(&alice.state)
                .args(["grant", "--vault", root, "/doc.bin", "carol", "--read"])
                .arg("--identity")
                .arg(&alice.key)
                .env("COFFER_TEST_CRASH_IN_SIDECAR_COPY", cut.to_string())
                .output()
                .unwrap();
        assert!(!out.status.success(), "the grant was to be cut: {out:?}");
        let access = v
            .as_member(bob, ["access", "--vault", root, "/doc.bin"])
            .ok();
        assert!(
            access.stdout.contains("bob") && !access.stdout.contains("carol"),
            "cut after {cut} bytes: the grant must not count: {access:#?}"
        );
        let verified = v.as_member(bob, ["verify", root]).ok();
        if cut >= 32 {
            assert!(
                verified.stdout.contains("interrupted write")
                    || verified.stderr.contains("interrupted write"),
                "cut after {cut} bytes: verify should name the torn copy: {verified:#?}"
            );
        }
    }
    {
        let m = v.mount("bob");
        assert!(
            fs::read(m.join("doc.bin")).unwrap() == data,
            "bob reads as before"
        );
        m.unmount();
    }
    v.as_member(
        alice,
        ["grant", "--vault", root, "/doc.bin", "carol", "--read"],
    )
    .ok();
    let m = v.mount("carol");
    assert!(fs::read(m.join("doc.bin")).unwrap() == data);
    m.unmount();
    v.as_member(alice, ["verify", root]).ok();
}
