//! POSIX behaviour of a mounted vault, checked through syscalls as users meet
//! it: data at chunk boundaries, truncate, sparse files past 4 GiB and
//! SEEK_DATA/SEEK_HOLE, O_APPEND,
//! rename flavours, directories, links, metadata, xattrs, statfs, fsync,
//! unlinked-but-open files, name lengths, shared mmap, persistence, secrecy of
//! the backing directory, and read-only mounts.

mod common;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use common::{
    assert_errno, errno_name, fallocate, getxattr, listxattr, names_in, pattern, removexattr,
    setxattr, Mount, TestVault, CHUNK,
};

fn vault() -> TestVault {
    TestVault::new(&["alice"])
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Reads `len` bytes at `offset` through a fresh descriptor.
fn read_at(p: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = File::open(p).unwrap();
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = f.read_at(&mut buf[got..], offset + got as u64).unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    buf
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Compares two byte strings, reporting the first difference instead of
/// dumping megabytes.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: contents differ (got {} bytes, want {}); first difference at byte {first} \
         (chunk {}, offset {} in it)",
        got.len(),
        want.len(),
        first / CHUNK,
        first % CHUNK
    );
}

#[test]
fn create_read_write_basics() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("hello.txt");
    fs::write(&p, b"hello, world\n").unwrap();
    assert_eq!(read(&p), b"hello, world\n");
    assert_eq!(fs::metadata(&p).unwrap().len(), 13);
    assert!(fs::metadata(&p).unwrap().is_file());

    // An empty file reads as empty.
    File::create(m.join("empty")).unwrap();
    assert_eq!(read(&m.join("empty")), b"");
    assert_eq!(fs::metadata(m.join("empty")).unwrap().len(), 0);

    // Exclusive create of an existing name, opening a missing one.
    let excl = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map(|_| ());
    assert_errno(excl, libc::EEXIST, "O_CREAT|O_EXCL on an existing file");
    assert_errno(
        File::open(m.join("missing")),
        libc::ENOENT,
        "open of a missing file",
    );
    assert_errno(
        fs::read(m.join("missing/dir/file")),
        libc::ENOENT,
        "open below a missing directory",
    );
    assert_errno(
        File::create(m.join("hello.txt/x")),
        libc::ENOTDIR,
        "create below a regular file",
    );

    // O_TRUNC on open replaces the content.
    fs::write(&p, b"short").unwrap();
    assert_eq!(read(&p), b"short");

    // Read and write through one O_RDWR descriptor, with seeks.
    let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b" and more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "short and more");
    drop(f);
    assert_eq!(read(&p), b"short and more");
}

#[test]
fn multi_chunk_writes_straddling_chunk_boundaries() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("big.bin");
    let len = 5 * CHUNK + 1234;
    let mut model = pattern(1, len);
    fs::write(&p, &model).unwrap();
    assert_same(&read(&p), &model, "after the first write");

    // (offset, length) of overwrites: across one boundary, spanning a whole chunk
    // and into two neighbours, exactly one aligned chunk, single bytes at the
    // edges of a chunk, one inside, and one that runs past the end (grows).
    let writes: &[(usize, usize)] = &[
        (CHUNK - 10, 20),
        (2 * CHUNK - 1, CHUNK + 2),
        (4 * CHUNK, CHUNK),
        (CHUNK, 1),
        (3 * CHUNK - 1, 1),
        (3 * CHUNK + 100, 1000),
        (len - 5, CHUNK),
    ];
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    for (i, &(off, n)) in writes.iter().enumerate() {
        let data = pattern(100 + i as u64, n);
        f.write_all_at(&data, off as u64).unwrap();
        if model.len() < off + n {
            model.resize(off + n, 0);
        }
        model[off..off + n].copy_from_slice(&data);
        // Visible through another descriptor before this one is closed.
        assert_same(
            &read_at(&p, off as u64, n),
            &data,
            &format!("write {i} read back before close"),
        );
    }
    drop(f);
    assert_eq!(fs::metadata(&p).unwrap().len(), model.len() as u64);
    assert_same(&read(&p), &model, "after the overwrites");

    // Reads that straddle boundaries, through pread.
    for &(off, n) in &[
        (CHUNK - 1, 2),
        (CHUNK - 3000, 6000),
        (0, 3 * CHUNK + 7),
        (model.len() - 1, 10),
    ] {
        assert_same(
            &read_at(&p, off as u64, n),
            &model[off..(off + n).min(model.len())],
            &format!("pread({off}, {n})"),
        );
    }

    // And all of it after a remount.
    m.unmount();
    let m = v.mount("alice");
    assert_same(&read(&m.join("big.bin")), &model, "after remount");
}

#[test]
fn read_inside_a_file_grown_by_a_pending_write() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("grown.bin");
    fs::write(&p, vec![b'a'; 5000]).unwrap();
    // Extend the file with a write far past its end and, before anything
    // commits it, read the gap inside the old last chunk (past byte 5000).
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.write_all_at(b"x", 2 * CHUNK as u64).unwrap();
    let mut buf = vec![1u8; 100];
    f.read_exact_at(&mut buf, 40_000)
        .expect("read in the gap of a file grown by a write");
    assert!(buf.iter().all(|b| *b == 0), "the gap reads as zeros");
    drop(f);
    let mut want = vec![b'a'; 5000];
    want.resize(2 * CHUNK, 0);
    want.push(b'x');
    assert_same(&read(&p), &want, "after close");
}

#[test]
fn large_file_past_the_dirty_limit() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("large.bin");
    // 40 MiB through one descriptor, in odd-sized writes: more than the
    // daemon keeps in memory before committing on its own.
    let data = pattern(77, 40 * 1024 * 1024 + 12345);
    {
        let mut f = File::create(&p).unwrap();
        for piece in data.chunks(1_000_003) {
            f.write_all(piece).unwrap();
        }
        // Overwrite across a boundary near the start while the rest is pending.
        f.write_all_at(b"EARLY", CHUNK as u64 - 2).unwrap();
    }
    let mut want = data;
    want[CHUNK - 2..CHUNK + 3].copy_from_slice(b"EARLY");
    assert_eq!(fs::metadata(&p).unwrap().len(), want.len() as u64);
    assert_same(&read(&p), &want, "large file");
    m.unmount();
    let m = v.mount("alice");
    assert_same(
        &read(&m.join("large.bin")),
        &want,
        "large file after remount",
    );
}

#[test]
fn concurrent_writers_in_one_mount() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let shared = m.join("shared.bin");
    File::create(&shared)
        .unwrap()
        .set_len(8 * CHUNK as u64)
        .unwrap();
    // Four threads: each writes its own file, and its own chunks of a shared file.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (m, shared) = (&m, &shared);
            s.spawn(move || {
                let own = m.join(format!("own-{t}.bin"));
                let data = pattern(t, 3 * CHUNK + 11);
                for _ in 0..5 {
                    fs::write(&own, &data).unwrap();
                    assert_same(&read(&own), &data, "own file");
                }
                let f = OpenOptions::new().write(true).open(shared).unwrap();
                for round in 0..5u8 {
                    for c in [t, t + 4] {
                        let fill = vec![t as u8 * 16 + round; CHUNK];
                        f.write_all_at(&fill, c * CHUNK as u64).unwrap();
                    }
                }
            });
        }
    });
    let got = read(&shared);
    assert_eq!(got.len(), 8 * CHUNK);
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        let t = (i % 4) as u8;
        assert!(
            chunk.iter().all(|b| *b == t * 16 + 4),
            "chunk {i} of the shared file holds {:?}..., not writer {t}'s last round",
            &chunk[..8]
        );
    }
    for t in 0..4u64 {
        assert_same(
            &read(&m.join(format!("own-{t}.bin"))),
            &pattern(t, 3 * CHUNK + 11),
            "own file",
        );
    }
}

#[test]
fn truncate_grow_and_shrink() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("t.bin");
    let orig = pattern(7, 3 * CHUNK + 100);
    fs::write(&p, &orig).unwrap();

    // Shrink into the middle of chunk 1 through ftruncate.
    let cut = CHUNK + 5;
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(cut as u64).unwrap();
    assert_eq!(f.metadata().unwrap().len(), cut as u64);
    drop(f);
    assert_same(&read(&p), &orig[..cut], "after shrinking");

    // Grow again: the old bytes past the cut must not come back.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(3 * CHUNK as u64).unwrap();
    drop(f);
    let mut want = orig[..cut].to_vec();
    want.resize(3 * CHUNK, 0);
    assert_same(&read(&p), &want, "after growing");

    // truncate(2) by path, with no descriptor open: shrink to a chunk boundary,
    // then grow past the old end.
    let cp = cpath(&p);
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::truncate(cp.as_ptr(), CHUNK as i64) }, 0);
    assert_eq!(fs::metadata(&p).unwrap().len(), CHUNK as u64);
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::truncate(cp.as_ptr(), 4 * CHUNK as i64 + 3) },
        0
    );
    want.truncate(CHUNK);
    want.resize(4 * CHUNK + 3, 0);
    assert_same(&read(&p), &want, "after truncate(2)");

    // Shrink to a few bytes, write past the end: the gap reads as zeros.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(10).unwrap();
    f.write_all_at(b"tail", 2 * CHUNK as u64 + 1).unwrap();
    drop(f);
    want.truncate(10);
    want.resize(2 * CHUNK + 1, 0);
    want.extend_from_slice(b"tail");
    assert_same(&read(&p), &want, "after a write past a shrunk end");

    // Truncate to zero, then O_TRUNC on an open.
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(read(&p), b"");
    fs::write(&p, b"again").unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(read(&p), b"");

    m.unmount();
    let m = v.mount("alice");
    assert_eq!(fs::metadata(m.join("t.bin")).unwrap().len(), 0);
}

#[test]
fn sparse_file_past_4_gib() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("sparse.bin");
    const FIVE_GIB: u64 = 5 << 30;
    let before = v.backing_usage();
    {
        let mut f = File::create(&p).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(FIVE_GIB)).unwrap();
        f.write_all(b"x").unwrap();
        f.sync_all().unwrap();
    }
    assert_eq!(fs::metadata(&p).unwrap().len(), FIVE_GIB + 1);

    // `mid`: whether "mid" has been written at 4 GiB + 1 yet.
    let check = |p: &Path, mid: bool| {
        assert_eq!(read_at(p, 0, 4), b"head");
        assert_eq!(read_at(p, FIVE_GIB, 10), b"x", "the byte at 5 GiB");
        // Holes read as zeros: around 4 GiB, mid-file, just before the end.
        for off in [
            4,
            CHUNK as u64 - 2,
            (4 << 30) - 10,
            3 << 30,
            FIVE_GIB - 70_000,
        ] {
            let mut got = read_at(p, off, 70_000);
            assert_eq!(got.len(), 70_000, "short read at {off}");
            let at = (4u64 << 30) + 1;
            if mid && off < at && at < off + 70_000 {
                let i = (at - off) as usize;
                assert_eq!(&got[i..i + 3], b"mid");
                got[i..i + 3].fill(0);
            }
            if let Some(i) = got.iter().position(|b| *b != 0) {
                let n = got.iter().filter(|b| **b != 0).count();
                panic!(
                    "hole at {off} is not zeros: {n} non-zero bytes, the first at {} ({:?})",
                    off + i as u64,
                    &got[i..(i + 16).min(got.len())]
                );
            }
        }
    };
    check(&p, false);

    // Writing into the hole past 4 GiB works, and only there.
    {
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(b"mid", (4 << 30) + 1).unwrap();
    }
    assert_eq!(read_at(&p, (4 << 30) - 1, 6), b"\0\0mid\0");

    let used = v.backing_usage() - before;
    assert!(
        used < 16 << 20,
        "a 5 GiB sparse file should take little space in the vault, took {used} bytes"
    );

    m.unmount();
    let m = v.mount("alice");
    let p = m.join("sparse.bin");
    assert_eq!(fs::metadata(&p).unwrap().len(), FIVE_GIB + 1);
    check(&p, true);
    assert_eq!(read_at(&p, (4 << 30) - 1, 6), b"\0\0mid\0");
}

#[test]
fn o_append() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("log.txt");
    fs::write(&p, b"abc").unwrap();
    let append = || OpenOptions::new().append(true).open(&p).unwrap();
    let mut a = append();
    let mut b = append();
    a.write_all(b"1").unwrap();
    b.write_all(b"22").unwrap();
    a.write_all(b"333").unwrap();
    // Another descriptor extends the file; appends still go to the end.
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(b"XY", 9)
        .unwrap();
    b.write_all(b"4").unwrap();
    drop((a, b));
    assert_eq!(read(&p), b"abc122333XY4");

    // O_APPEND with O_CREAT on a new file; and appends of whole chunks.
    let q = m.join("chunks.bin");
    let mut want = Vec::new();
    for i in 0..3 {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&q)
            .unwrap();
        let data = pattern(i, CHUNK + 17);
        f.write_all(&data).unwrap();
        want.extend_from_slice(&data);
    }
    assert_same(&read(&q), &want, "appended chunks");
}

#[test]
fn rename_variants() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");

    // Over an existing file, with the replaced file still open.
    fs::write(m.join("a"), b"content of a").unwrap();
    fs::write(m.join("b"), b"content of b").unwrap();
    let old_b = File::open(m.join("b")).unwrap();
    fs::rename(m.join("a"), m.join("b")).unwrap();
    assert_eq!(read(&m.join("b")), b"content of a");
    assert_errno(
        fs::metadata(m.join("a")),
        libc::ENOENT,
        "old name after rename",
    );
    assert_eq!(names_in(m.path()).unwrap(), ["b"]);
    let mut s = Vec::new();
    (&old_b).read_to_end(&mut s).unwrap();
    assert_eq!(s, b"content of b", "the replaced file, still open");
    drop(old_b);

    // Across directories, to a new name.
    fs::create_dir(m.join("d1")).unwrap();
    fs::create_dir(m.join("d2")).unwrap();
    let big = pattern(3, 2 * CHUNK + 9);
    fs::write(m.join("d1/f"), &big).unwrap();
    fs::rename(m.join("d1/f"), m.join("d2/g")).unwrap();
    assert_same(&read(&m.join("d2/g")), &big, "moved across directories");
    assert!(names_in(&m.join("d1")).unwrap().is_empty());
    assert_eq!(names_in(&m.join("d2")).unwrap(), ["g"]);

    // A directory with contents, to a new name and into another directory.
    fs::create_dir_all(m.join("tree/sub/deeper")).unwrap();
    fs::write(m.join("tree/top.txt"), b"top").unwrap();
    fs::write(m.join("tree/sub/deeper/leaf.txt"), b"leaf").unwrap();
    fs::rename(m.join("tree"), m.join("d2/moved")).unwrap();
    assert_eq!(read(&m.join("d2/moved/top.txt")), b"top");
    assert_eq!(read(&m.join("d2/moved/sub/deeper/leaf.txt")), b"leaf");
    assert_errno(fs::metadata(m.join("tree")), libc::ENOENT, "old dir name");
    // New entries in the moved directory work.
    fs::write(m.join("d2/moved/sub/new.txt"), b"new").unwrap();
    assert_eq!(
        names_in(&m.join("d2/moved/sub")).unwrap(),
        ["deeper", "new.txt"]
    );

    // Over an empty directory works; over a non-empty one does not.
    fs::create_dir(m.join("empty")).unwrap();
    fs::create_dir(m.join("full")).unwrap();
    fs::write(m.join("full/x"), b"x").unwrap();
    fs::create_dir(m.join("src")).unwrap();
    fs::write(m.join("src/s"), b"s").unwrap();
    fs::rename(m.join("src"), m.join("empty")).unwrap();
    assert_eq!(read(&m.join("empty/s")), b"s");
    assert_errno(
        fs::rename(m.join("empty"), m.join("full")),
        libc::ENOTEMPTY,
        "rename over a non-empty directory",
    );
    assert_errno(
        fs::rename(m.join("b"), m.join("full")),
        libc::EISDIR,
        "rename a file over a directory",
    );
    assert_errno(
        fs::rename(m.join("full"), m.join("b")),
        libc::ENOTDIR,
        "rename a directory over a file",
    );
    assert_errno(
        fs::rename(m.join("nothing"), m.join("b")),
        libc::ENOENT,
        "rename of a missing name",
    );

    // Everything survives a remount.
    m.unmount();
    let m = v.mount("alice");
    assert_eq!(read(&m.join("b")), b"content of a");
    assert_same(&read(&m.join("d2/g")), &big, "after remount");
    assert_eq!(read(&m.join("d2/moved/sub/deeper/leaf.txt")), b"leaf");
    assert_eq!(read(&m.join("empty/s")), b"s");
    assert_eq!(
        names_in(m.path()).unwrap(),
        ["b", "d1", "d2", "empty", "full"]
    );
}

#[test]
fn rename_noreplace_gives_eexist() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    fs::write(m.join("a"), b"A").unwrap();
    fs::write(m.join("b"), b"B").unwrap();
    let renameat2 = |from: &str, to: &str, flags: libc::c_uint| {
        let (f, t) = (cpath(&m.join(from)), cpath(&m.join(to)));
        // SAFETY: valid NUL-terminated paths, AT_FDCWD.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                flags,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    assert_errno(
        renameat2("a", "b", libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "renameat2(RENAME_NOREPLACE) onto an existing name",
    );
    assert_eq!(read(&m.join("a")), b"A");
    assert_eq!(read(&m.join("b")), b"B");
    renameat2("a", "c", libc::RENAME_NOREPLACE).expect("RENAME_NOREPLACE to a free name");
    assert_eq!(read(&m.join("c")), b"A");
    assert_eq!(names_in(m.path()).unwrap(), ["b", "c"]);
}

#[test]
fn mkdir_rmdir_and_errors() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    fs::create_dir(m.join("d")).unwrap();
    assert!(fs::metadata(m.join("d")).unwrap().is_dir());
    assert_errno(
        fs::create_dir(m.join("d")),
        libc::EEXIST,
        "mkdir of an existing dir",
    );
    fs::write(m.join("d/f"), b"f").unwrap();
    fs::create_dir(m.join("d/sub")).unwrap();
    assert_errno(
        fs::remove_dir(m.join("d")),
        libc::ENOTEMPTY,
        "rmdir of a non-empty dir",
    );
    assert_errno(
        fs::remove_dir(m.join("d/f")),
        libc::ENOTDIR,
        "rmdir of a file",
    );
    assert_errno(
        fs::remove_file(m.join("d/sub")),
        libc::EISDIR,
        "unlink of a directory",
    );
    assert_errno(
        fs::remove_dir(m.join("nope")),
        libc::ENOENT,
        "rmdir of a missing dir",
    );
    assert_errno(
        fs::create_dir(m.join("nope/sub")),
        libc::ENOENT,
        "mkdir below a missing dir",
    );
    fs::remove_file(m.join("d/f")).unwrap();
    assert_errno(
        fs::remove_dir(m.join("d")),
        libc::ENOTEMPTY,
        "rmdir with a subdir left",
    );
    fs::remove_dir(m.join("d/sub")).unwrap();
    fs::remove_dir(m.join("d")).unwrap();
    assert_errno(fs::metadata(m.join("d")), libc::ENOENT, "removed dir");
    assert!(names_in(m.path()).unwrap().is_empty());

    // Directory modes from mkdir(2) (minus the umask) and nlink of a directory.
    let cp = cpath(&m.join("modes"));
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkdir(cp.as_ptr(), 0o750) }, 0);
    let md = fs::metadata(m.join("modes")).unwrap();
    let umask = current_umask();
    assert_eq!(md.mode() & 0o7777, 0o750 & !umask);

    // Deep trees.
    let deep = m.join("a/b/c/d/e/f/g");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf"), b"leaf").unwrap();
    assert_eq!(read(&deep.join("leaf")), b"leaf");
    fs::remove_dir_all(m.join("a")).unwrap();
    assert_eq!(names_in(m.path()).unwrap(), ["modes"]);
}

fn current_umask() -> u32 {
    // /proc/self/status has "Umask:\t0022".
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// What `stat` says of each entry, in a comparable form.
fn stat_line(p: &Path) -> String {
    let md = fs::symlink_metadata(p).unwrap();
    format!(
        "ino {} mode {:o} nlink {} uid {} size {} mtime {}.{}",
        md.ino(),
        md.mode(),
        md.nlink(),
        md.uid(),
        md.size(),
        md.mtime(),
        md.mtime_nsec()
    )
}

/// A listing hands the kernel each entry's attributes (READDIRPLUS), so the
/// `stat` that follows a listing is answered from them: they must be what a
/// lookup of its own gives, for every kind of entry (a hard link, a symlink,
/// a file held open), and names must follow renames and unlinks after it.
#[test]
fn attributes_from_a_listing_match_a_fresh_lookup() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let d = m.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("small"), b"12345").unwrap();
    fs::write(d.join("chunky"), pattern(3, CHUNK + 17)).unwrap();
    fs::hard_link(d.join("small"), d.join("small-link")).unwrap();
    std::os::unix::fs::symlink("a/target/of/some/length", d.join("sym")).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::set_permissions(d.join("chunky"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(d.join("held"), pattern(4, 9000)).unwrap();
    // A new mount: no entry has been looked up, the listing is the first look.
    m.unmount();
    let m = v.mount("alice");
    let d = m.join("d");
    let mut held = OpenOptions::new()
        .append(true)
        .open(d.join("held"))
        .unwrap();
    held.write_all(b"+").unwrap();
    // Committed now, so the flusher moves no mtime between the two looks.
    held.sync_all().unwrap();

    let listed_then_stat = || {
        let mut lines: Vec<(String, String)> = fs::read_dir(&d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                // Opened by the inode the listing gave, with no lookup first.
                let len = match e.file_type().unwrap().is_file() {
                    true => read(&e.path()).len(),
                    false => 0,
                };
                (name, format!("{} read {len}", stat_line(&e.path())))
            })
            .collect();
        lines.sort();
        lines
    };
    let after_listing = listed_then_stat();
    assert_eq!(after_listing.len(), 6, "{after_listing:#?}");
    // Past the attribute timeout every stat is a fresh lookup.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let fresh: Vec<(String, String)> = after_listing
        .iter()
        .map(|(n, line)| {
            let read = line.rsplit_once(" read ").unwrap().1;
            (n.clone(), format!("{} read {read}", stat_line(&d.join(n))))
        })
        .collect();
    assert_eq!(after_listing, fresh);
    let held_line = &after_listing.iter().find(|(n, _)| n == "held").unwrap().1;
    assert!(held_line.contains("size 9001"), "{held_line}");

    // Renamed and unlinked after a listing: the names follow at once.
    let _ = listed_then_stat();
    fs::rename(d.join("small"), d.join("renamed")).unwrap();
    fs::remove_file(d.join("chunky")).unwrap();
    assert_eq!(read(&d.join("renamed")), b"12345");
    assert_errno(
        fs::metadata(d.join("small")),
        libc::ENOENT,
        "stat of the old name",
    );
    assert_errno(
        fs::metadata(d.join("chunky")),
        libc::ENOENT,
        "stat of an unlinked file",
    );
    assert_eq!(fs::metadata(d.join("small-link")).unwrap().nlink(), 2);
    drop(held);
    let mut want = pattern(4, 9000);
    want.push(b'+');
    assert_eq!(read(&d.join("held")), want);
    m.unmount();
}

/// A directory read in several requests keeps its listing between them; names
/// renamed away meanwhile must not come back through the attributes the later
/// requests carry (READDIRPLUS): `stat` of such a name is ENOENT, not a stale
/// alias of the renamed file.
#[test]
fn a_listing_read_across_renames_brings_back_no_old_name() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let long = "x".repeat(40);
    let old = |i: usize| format!("before-{i:05}-{long}");
    let new = |i: usize| format!("after-{i:05}");
    let count = 1500;
    fs::create_dir(m.join("big")).unwrap();
    for i in 0..count {
        File::create(m.join("big").join(old(i))).unwrap();
    }
    // A new mount: no name has been looked up yet.
    m.unmount();
    let m = v.mount("alice");
    let d = m.join("big");
    let mut listing = fs::read_dir(&d).unwrap();
    let first = listing.next().unwrap().unwrap().file_name();
    for i in 0..count {
        fs::rename(d.join(old(i)), d.join(new(i))).unwrap();
    }
    // Names listed before the renames still come out of the reader's buffer;
    // later ones are gone, which the listing says (glibc then skips them).
    let rest: Vec<std::ffi::OsString> = listing.map(|e| e.unwrap().file_name()).collect();
    assert!(
        rest.len() < count,
        "{first:?} first, then {} more",
        rest.len()
    );
    let stale: Vec<&std::ffi::OsString> = rest
        .iter()
        .filter(|n| fs::symlink_metadata(d.join(n)).is_ok())
        .collect();
    assert!(
        stale.is_empty(),
        "{} names renamed away still answer stat, e.g. {:?}",
        stale.len(),
        stale.first()
    );
    assert_eq!(names_in(&d).unwrap().len(), count);
    assert_eq!(read(&d.join(new(count - 1))), b"");
    m.unmount();
}

#[test]
fn readdir_lists_exact_names() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let long = "L".repeat(200);
    let names = [
        "a",
        "B c",
        ".hidden",
        "..dots",
        "ünïcødé ✓",
        "x.y.z",
        "-dash",
        "tab\tin name",
        "new\nline",
        long.as_str(),
    ];
    for (i, n) in names.iter().enumerate() {
        if i % 3 == 0 {
            fs::create_dir(m.join(n)).unwrap();
        } else {
            fs::write(m.join(n), n.as_bytes()).unwrap();
        }
    }
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names_in(m.path()).unwrap(), want);

    // File types in readdir match stat.
    for e in fs::read_dir(m.path()).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        assert_eq!(ft.is_dir(), md.is_dir(), "{:?}", e.file_name());
        assert_eq!(ft.is_file(), md.is_file(), "{:?}", e.file_name());
    }

    // A directory with many entries lists all of them once.
    fs::create_dir(m.join("many")).unwrap();
    let mut many: Vec<String> = (0..500).map(|i| format!("entry-{i:04}")).collect();
    for n in &many {
        File::create(m.join("many").join(n)).unwrap();
    }
    many.sort();
    assert_eq!(names_in(&m.join("many")).unwrap(), many);

    m.unmount();
    let m = v.mount("alice");
    want.push("many".to_string());
    want.sort();
    assert_eq!(names_in(m.path()).unwrap(), want);
    assert_eq!(read(&m.join("ünïcødé ✓")), "ünïcødé ✓".as_bytes());
    assert_eq!(names_in(&m.join("many")).unwrap(), many);
}

#[test]
fn symlinks() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let marker = "SymlinkTargetMarker7q";
    let target = format!("some/dir/{marker}.txt");
    std::os::unix::fs::symlink(&target, m.join("dangling")).unwrap();
    assert_eq!(
        fs::read_link(m.join("dangling")).unwrap().to_str().unwrap(),
        target
    );
    let md = fs::symlink_metadata(m.join("dangling")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(
        md.len(),
        target.len() as u64,
        "lstat size of a symlink is its target length"
    );
    assert_errno(
        fs::metadata(m.join("dangling")),
        libc::ENOENT,
        "stat through a dangling link",
    );

    // Relative and absolute links to real files and directories resolve.
    fs::create_dir(m.join("dir")).unwrap();
    fs::write(m.join("dir/file.txt"), b"via link").unwrap();
    std::os::unix::fs::symlink("dir/file.txt", m.join("rel")).unwrap();
    std::os::unix::fs::symlink(m.join("dir"), m.join("abs")).unwrap();
    assert_eq!(read(&m.join("rel")), b"via link");
    assert_eq!(read(&m.join("abs/file.txt")), b"via link");
    // Writing through a link writes the target.
    fs::write(m.join("rel"), b"changed").unwrap();
    assert_eq!(read(&m.join("dir/file.txt")), b"changed");
    // Removing the link leaves the target.
    fs::remove_file(m.join("rel")).unwrap();
    assert_eq!(read(&m.join("dir/file.txt")), b"changed");
    // A long target.
    let long_target = "t/".repeat(1000) + "end";
    std::os::unix::fs::symlink(&long_target, m.join("long")).unwrap();
    assert_eq!(
        fs::read_link(m.join("long")).unwrap().to_str().unwrap(),
        long_target
    );

    let old_dir = m.join("dir");
    m.unmount();
    let hits = common::find_plaintext(&v.root, marker.as_bytes());
    assert!(
        hits.is_empty(),
        "symlink target in plaintext in the vault: {hits:?}"
    );
    let m = v.mount("alice");
    assert_eq!(
        fs::read_link(m.join("dangling")).unwrap().to_str().unwrap(),
        target
    );
    // The absolute link still names the old mountpoint, as stored.
    assert_eq!(fs::read_link(m.join("abs")).unwrap(), old_dir);
    assert_eq!(read(&m.join("dir/file.txt")), b"changed");
}

#[test]
fn hard_links() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    fs::create_dir(m.join("other")).unwrap();
    fs::write(m.join("one"), b"first").unwrap();
    fs::hard_link(m.join("one"), m.join("two")).unwrap();
    fs::hard_link(m.join("one"), m.join("other/three")).unwrap();
    let (a, b) = (
        fs::metadata(m.join("one")).unwrap(),
        fs::metadata(m.join("two")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "both names are one inode");
    assert_eq!(a.nlink(), 3);

    // Write through one name, read through the others (also while open).
    let reader = File::open(m.join("other/three")).unwrap();
    fs::write(m.join("two"), b"written via two").unwrap();
    assert_eq!(read(&m.join("one")), b"written via two");
    assert_eq!(read(&m.join("other/three")), b"written via two");
    let mut s = Vec::new();
    (&reader).read_to_end(&mut s).unwrap();
    assert_eq!(s, b"written via two");
    drop(reader);
    let data = pattern(5, 2 * CHUNK + 3);
    {
        let f = OpenOptions::new().write(true).open(m.join("one")).unwrap();
        f.write_all_at(&data, 0).unwrap();
    }
    assert_same(
        &read(&m.join("two")),
        &data,
        "big write seen through the link",
    );

    fs::remove_file(m.join("other/three")).unwrap();
    assert_eq!(fs::metadata(m.join("one")).unwrap().nlink(), 2);
    // Unlinking one name keeps the other.
    fs::remove_file(m.join("one")).unwrap();
    assert_eq!(fs::metadata(m.join("two")).unwrap().nlink(), 1);
    assert_same(
        &read(&m.join("two")),
        &data,
        "after unlinking the other name",
    );
    fs::write(m.join("two"), b"still writable").unwrap();
    assert_eq!(read(&m.join("two")), b"still writable");

    // Links to directories are refused; links to a missing file too.
    assert_errno(
        fs::hard_link(m.join("other"), m.join("dirlink")),
        libc::EPERM,
        "hard link to a directory",
    );
    assert_errno(
        fs::hard_link(m.join("missing"), m.join("x")),
        libc::ENOENT,
        "hard link to a missing file",
    );
    assert_errno(
        fs::hard_link(m.join("two"), m.join("other")),
        libc::EEXIST,
        "hard link onto an existing name",
    );

    fs::hard_link(m.join("two"), m.join("again")).unwrap();
    m.unmount();
    let m = v.mount("alice");
    assert_eq!(read(&m.join("again")), b"still writable");
    assert_eq!(fs::metadata(m.join("two")).unwrap().nlink(), 2);
    fs::write(m.join("again"), b"after remount").unwrap();
    assert_eq!(read(&m.join("two")), b"after remount");
}

/// Runs `script` with `sh` as uid/gid 65534 (no supplementary groups),
/// its standard output on `out`: the child reaches the file through that
/// descriptor and `/proc/self/fd/1`, not through the test's private directories.
fn as_nobody(script: &str, out: &File) {
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .stdout(out.try_clone().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "sh -c {script:?} as uid 65534: {status}");
}

/// Linux drops set-user-ID (and set-group-ID where group-executable, or where
/// the writer is not in the group) when an unprivileged caller writes or
/// truncates, and on chown; root's own writes keep them. The mount does this
/// itself (FUSE_HANDLE_KILLPRIV_V2), and `stat` right after shows it.
#[test]
fn set_id_bits_drop_on_unprivileged_write_truncate_and_chown() {
    require_fuse!();
    let v = vault();
    let m = v.mount_with("alice", &["--allow-other"]);
    let p = m.join("tool");
    fs::write(&p, b"#!/bin/sh\n").unwrap();
    let mode = |want: u32, what: &str| {
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, want, "{what}");
    };
    let chmod = |mode: u32| fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    let appending = || OpenOptions::new().append(true).open(&p).unwrap();

    chmod(0o6777);
    as_nobody("printf x", &appending());
    mode(0o777, "write by uid 65534 drops both bits");

    chmod(0o6777);
    appending().write_all(b"y").unwrap();
    mode(0o6777, "root's write keeps them");

    chmod(0o2767);
    as_nobody("printf x", &appending());
    mode(0o767, "set-group-ID goes for a writer outside the group");

    chmod(0o6777);
    as_nobody("truncate -s 3 /proc/self/fd/1", &appending());
    mode(0o777, "truncate by uid 65534");
    assert_eq!(fs::metadata(&p).unwrap().len(), 3);

    chmod(0o6777);
    as_nobody(": > /proc/self/fd/1", &appending());
    mode(0o777, "O_TRUNC open by uid 65534");
    assert_eq!(fs::metadata(&p).unwrap().len(), 0);

    chmod(0o6755);
    std::os::unix::fs::chown(&p, Some(1), Some(1)).unwrap();
    mode(0o755, "chown");

    // Directories keep theirs (set-group-ID directories pass their group on).
    let d = m.join("shared");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o2775)).unwrap();
    std::os::unix::fs::chown(&d, Some(1), Some(1)).unwrap();
    assert_eq!(
        fs::metadata(&d).unwrap().mode() & 0o7777,
        0o2775,
        "chown of a directory"
    );

    // And the data is what was written.
    fs::write(&p, b"new").unwrap();
    assert_eq!(read(&p), b"new");
}

#[test]
fn chmod_chown_utimens() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("f");
    fs::write(&p, b"data").unwrap();
    fs::create_dir(m.join("d")).unwrap();

    for mode in [0o600, 0o640, 0o755, 0o4711, 0o000] {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().mode() & 0o7777,
            mode,
            "chmod {mode:o}"
        );
    }
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(m.join("d"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(fs::metadata(m.join("d")).unwrap().mode() & 0o7777, 0o700);

    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    std::os::unix::fs::chown(&p, None, Some(42)).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 42));

    // utimensat with exact nanoseconds.
    let set_times = |path: &Path, at: (i64, i64), mt: (i64, i64)| {
        let ts = [
            libc::timespec {
                tv_sec: at.0,
                tv_nsec: at.1,
            },
            libc::timespec {
                tv_sec: mt.0,
                tv_nsec: mt.1,
            },
        ];
        let cp = cpath(path);
        // SAFETY: valid path and a two-element timespec array.
        let r = unsafe { libc::utimensat(libc::AT_FDCWD, cp.as_ptr(), ts.as_ptr(), 0) };
        assert_eq!(r, 0, "utimensat: {}", std::io::Error::last_os_error());
    };
    set_times(
        &p,
        (1_000_000_000, 123_456_789),
        (1_234_567_890, 500_000_000),
    );
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.atime(), md.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_234_567_890, 500_000_000));
    set_times(&m.join("d"), (2_000_000_000, 0), (1_500_000_000, 1));
    let md = fs::metadata(m.join("d")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 1));

    // Set times while data is pending on an open descriptor: the explicit time wins.
    let q = m.join("pending");
    let mut f = File::create(&q).unwrap();
    f.write_all(b"pending data").unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_111_111_111))
        .unwrap();
    drop(f);
    assert_eq!(fs::metadata(&q).unwrap().mtime(), 1_111_111_111);
    assert_eq!(read(&q), b"pending data");

    // A write moves mtime forward to now.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    fs::write(&p, b"new data").unwrap();
    let md = fs::metadata(&p).unwrap();
    assert!(
        md.mtime() >= before - 1,
        "mtime after a write: {}",
        md.mtime()
    );

    m.unmount();
    let m = v.mount("alice");
    let md = fs::metadata(m.join("f")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o644);
    assert_eq!((md.uid(), md.gid()), (1234, 42));
    assert_eq!(
        fs::metadata(m.join("pending")).unwrap().mtime(),
        1_111_111_111
    );
    assert_eq!(fs::metadata(m.join("d")).unwrap().mode() & 0o7777, 0o700);
}

#[test]
fn user_xattrs() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("f");
    fs::write(&p, b"data").unwrap();
    fs::create_dir(m.join("d")).unwrap();

    let value_marker = b"XattrValueMarker8w";
    setxattr(&p, "user.color", b"blue", 0).unwrap();
    setxattr(&p, "user.XattrNameMarker3k", value_marker, 0).unwrap();
    setxattr(&p, "user.empty", b"", 0).unwrap();
    let big = pattern(9, 3000);
    setxattr(&p, "user.big", &big, 0).unwrap();
    assert_eq!(getxattr(&p, "user.color").unwrap(), b"blue");
    assert_eq!(getxattr(&p, "user.empty").unwrap(), b"");
    assert_eq!(getxattr(&p, "user.big").unwrap(), big);
    assert_eq!(
        listxattr(&p).unwrap(),
        [
            "user.XattrNameMarker3k",
            "user.big",
            "user.color",
            "user.empty"
        ]
    );

    // Replace, create/replace flags.
    setxattr(&p, "user.color", b"green", 0).unwrap();
    assert_eq!(getxattr(&p, "user.color").unwrap(), b"green");
    assert_errno(
        setxattr(&p, "user.color", b"red", libc::XATTR_CREATE),
        libc::EEXIST,
        "XATTR_CREATE of an existing attribute",
    );
    assert_errno(
        setxattr(&p, "user.nothing", b"red", libc::XATTR_REPLACE),
        libc::ENODATA,
        "XATTR_REPLACE of a missing attribute",
    );
    setxattr(&p, "user.color", b"red", libc::XATTR_REPLACE).unwrap();
    assert_eq!(getxattr(&p, "user.color").unwrap(), b"red");

    // Remove.
    removexattr(&p, "user.color").unwrap();
    assert_errno(
        getxattr(&p, "user.color"),
        libc::ENODATA,
        "getxattr after remove",
    );
    assert_errno(
        removexattr(&p, "user.color"),
        libc::ENODATA,
        "remove a missing attribute",
    );
    assert_errno(
        getxattr(&p, "user.never"),
        libc::ENODATA,
        "getxattr of a missing attribute",
    );
    assert_eq!(
        listxattr(&p).unwrap(),
        ["user.XattrNameMarker3k", "user.big", "user.empty"]
    );

    // Directories carry xattrs too.
    setxattr(&m.join("d"), "user.dir", b"yes", 0).unwrap();
    assert_eq!(getxattr(&m.join("d"), "user.dir").unwrap(), b"yes");
    assert_eq!(listxattr(&m.join("d")).unwrap(), ["user.dir"]);

    // Other namespaces are refused.
    for name in ["trusted.foo", "security.foo", "system.foo", "bogus.foo"] {
        match setxattr(&p, name, b"v", 0) {
            Ok(()) => panic!("setxattr {name} should fail"),
            Err(e) => {
                let got = common::errno(&e);
                assert!(
                    [libc::ENOTSUP, libc::EPERM, libc::EOPNOTSUPP, libc::EINVAL].contains(&got),
                    "setxattr {name}: unexpected error {}",
                    errno_name(got)
                );
            }
        }
    }
    assert_eq!(
        listxattr(&p).unwrap(),
        ["user.XattrNameMarker3k", "user.big", "user.empty"]
    );

    m.unmount();
    for marker in [&b"XattrNameMarker3k"[..], value_marker] {
        let hits = common::find_plaintext(&v.root, marker);
        assert!(hits.is_empty(), "xattr in plaintext in the vault: {hits:?}");
    }
    let m = v.mount("alice");
    assert_eq!(
        getxattr(&m.join("f"), "user.XattrNameMarker3k").unwrap(),
        value_marker
    );
    assert_eq!(getxattr(&m.join("f"), "user.big").unwrap(), big);
}

#[test]
fn statfs_and_fsync() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let cp = cpath(m.path());
    // SAFETY: a zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(cp.as_ptr(), &mut st) }, 0);
    assert!(
        st.f_bsize > 0 && st.f_blocks > 0,
        "statvfs: bsize {} blocks {}",
        st.f_bsize,
        st.f_blocks
    );
    assert!(st.f_bavail <= st.f_blocks);
    assert_eq!(st.f_namemax, 255);

    let p = m.join("synced");
    let mut f = File::create(&p).unwrap();
    f.write_all(&pattern(1, 3 * CHUNK)).unwrap();
    f.sync_all().unwrap();
    f.write_all(b"more").unwrap();
    f.sync_data().unwrap();
    // fsync with nothing pending.
    f.sync_all().unwrap();
    drop(f);
    // fsync of a read-only descriptor and of a directory.
    File::open(&p).unwrap().sync_all().unwrap();
    File::open(m.path()).unwrap().sync_all().unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 3 * CHUNK as u64 + 4);
}

#[test]
fn unlinked_but_open_file_keeps_working() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("tmpfile");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let first = pattern(2, CHUNK + 10);
    f.write_all(&first).unwrap();
    f.sync_all().unwrap();
    fs::remove_file(&p).unwrap();
    assert_errno(fs::metadata(&p), libc::ENOENT, "stat after unlink");
    assert!(names_in(m.path()).unwrap().is_empty());

    // Still readable, writable, resizable and stat-able through the descriptor.
    let mut got = vec![0u8; first.len()];
    f.read_exact_at(&mut got, 0).unwrap();
    assert_same(&got, &first, "read after unlink");
    f.write_all_at(b"appended", first.len() as u64).unwrap();
    assert_eq!(f.metadata().unwrap().len(), first.len() as u64 + 8);
    let mut tail = [0u8; 8];
    f.read_exact_at(&mut tail, first.len() as u64).unwrap();
    assert_eq!(&tail, b"appended");
    f.set_len(5).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 5);
    f.sync_all().unwrap();
    let mut head = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut head).unwrap();
    assert_eq!(head, &first[..5]);

    // A new file under the same name is a different file.
    fs::write(&p, b"new file").unwrap();
    assert_eq!(read(&p), b"new file");
    f.write_all_at(b"XX", 0).unwrap();
    assert_eq!(read(&p), b"new file");
    drop(f);
    assert_eq!(read(&p), b"new file");
    assert_eq!(names_in(m.path()).unwrap(), ["tmpfile"]);
}

#[test]
fn name_length_limits() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    // 85 three-byte characters: 255 bytes.
    let u255 = "€".repeat(85);
    assert_eq!(u255.len(), 255);

    fs::write(m.join(&n255), b"max").unwrap();
    assert_eq!(read(&m.join(&n255)), b"max");
    fs::create_dir(m.join(&u255)).unwrap();
    fs::write(m.join(&u255).join(&n255), b"nested").unwrap();
    let mut want = vec![n255.clone(), u255.clone()];
    want.sort();
    assert_eq!(names_in(m.path()).unwrap(), want);
    assert_eq!(names_in(&m.join(&u255)).unwrap(), [n255.as_str()]);

    // Rename to and from a long name, link and symlink with long names.
    let r255 = "r".repeat(255);
    fs::rename(m.join(&n255), m.join(&r255)).unwrap();
    assert_eq!(read(&m.join(&r255)), b"max");
    fs::hard_link(m.join(&r255), m.join("l".repeat(255))).unwrap();
    std::os::unix::fs::symlink(&r255, m.join("s".repeat(255))).unwrap();
    assert_eq!(read(&m.join("s".repeat(255))), b"max");

    assert_errno(
        File::create(m.join(&n256)),
        libc::ENAMETOOLONG,
        "create with a 256-byte name",
    );
    assert_errno(
        fs::create_dir(m.join(&n256)),
        libc::ENAMETOOLONG,
        "mkdir with a 256-byte name",
    );
    assert_errno(
        fs::metadata(m.join(&n256)),
        libc::ENAMETOOLONG,
        "stat of a 256-byte name",
    );
    assert_errno(
        fs::rename(m.join(&r255), m.join(&n256)),
        libc::ENAMETOOLONG,
        "rename to a 256-byte name",
    );

    m.unmount();
    let m = v.mount("alice");
    assert_eq!(read(&m.join(&r255)), b"max");
    assert_eq!(read(&m.join(&u255).join(&n255)), b"nested");
    fs::remove_file(m.join(&r255)).unwrap();
    assert_eq!(read(&m.join("l".repeat(255))), b"max");
    fs::remove_dir_all(m.join(&u255)).unwrap();
}

/// Writes `data` at `offset` of `p` through a shared writable mapping.
fn mmap_write(p: &Path, len: usize, edits: &[(usize, &[u8])]) {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: mapping a regular file we hold open, `len` bytes (its size);
    // every write below stays inside the mapping; unmapped before returning.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let base = addr.cast::<u8>();
        for (off, data) in edits {
            assert!(off + data.len() <= len);
            std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(*off), data.len());
        }
        assert_eq!(libc::msync(addr, len, libc::MS_SYNC), 0, "msync");
        assert_eq!(libc::munmap(addr, len), 0, "munmap");
    }
}

#[test]
fn shared_writable_mmap_persists() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("mapped.bin");
    let len = 3 * CHUNK + 500;
    let mut want = pattern(4, len);
    fs::write(&p, &want).unwrap();
    let a = pattern(10, 5000);
    let b = pattern(11, 300);
    let edits: Vec<(usize, &[u8])> = vec![(CHUNK - 2500, &a), (len - 300, &b), (0, b"MMAP")];
    for (off, d) in &edits {
        want[*off..off + d.len()].copy_from_slice(d);
    }
    mmap_write(&p, len, &edits);
    assert_same(&read(&p), &want, "after msync, through read(2)");

    // A mapping of a file extended with ftruncate first.
    let q = m.join("grown.bin");
    File::create(&q).unwrap().set_len(2 * CHUNK as u64).unwrap();
    mmap_write(&q, 2 * CHUNK, &[(CHUNK - 1, b"ab")]);
    let mut want_q = vec![0u8; 2 * CHUNK];
    want_q[CHUNK - 1..CHUNK + 1].copy_from_slice(b"ab");

    m.unmount();
    let m = v.mount("alice");
    assert_same(
        &read(&m.join("mapped.bin")),
        &want,
        "mmap writes after remount",
    );
    assert_same(
        &read(&m.join("grown.bin")),
        &want_q,
        "mmap of a grown file after remount",
    );
}

#[test]
fn content_persists_across_remount() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    fs::create_dir_all(m.join("docs/deep")).unwrap();
    let files: Vec<(String, Vec<u8>)> = vec![
        ("top.txt".into(), b"top level".to_vec()),
        ("docs/a.bin".into(), pattern(1, 4 * CHUNK + 3)),
        ("docs/deep/b.txt".into(), b"deep".to_vec()),
        ("docs/empty".into(), Vec::new()),
        ("docs/exactly-one-chunk".into(), pattern(2, CHUNK)),
        ("zeros".into(), vec![0u8; 2 * CHUNK + 1]),
    ];
    for (name, data) in &files {
        fs::write(m.join(name), data).unwrap();
    }
    std::os::unix::fs::symlink("docs/deep/b.txt", m.join("link")).unwrap();
    fs::set_permissions(m.join("top.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    m.unmount();

    for round in 0..2 {
        let m = v.mount("alice");
        for (name, data) in &files {
            assert_same(
                &read(&m.join(name)),
                data,
                &format!("{name} (round {round})"),
            );
        }
        assert_eq!(read(&m.join("link")), b"deep");
        assert_eq!(
            fs::metadata(m.join("top.txt")).unwrap().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            names_in(m.path()).unwrap(),
            ["docs", "link", "top.txt", "zeros"]
        );
        assert_eq!(
            names_in(&m.join("docs")).unwrap(),
            ["a.bin", "deep", "empty", "exactly-one-chunk"]
        );
        m.unmount();
    }
}

#[test]
fn no_plaintext_in_the_vault_directory() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let name_marker = "NameMarkerZq9";
    let dir_marker = "DirMarkerXw4";
    let content_marker = b"ContentMarkerPl7";
    fs::create_dir(m.join(format!("{dir_marker}-folder"))).unwrap();
    let mut content = Vec::new();
    while content.len() < 3 * CHUNK {
        content.extend_from_slice(content_marker);
        content.extend_from_slice(b" some text around it. ");
    }
    fs::write(
        m.join(format!("{dir_marker}-folder/{name_marker}.txt")),
        &content,
    )
    .unwrap();
    fs::write(m.join(format!("{name_marker}-small")), content_marker).unwrap();
    let long_name = format!("{name_marker}{}", "y".repeat(240));
    fs::write(m.join(&long_name), content_marker).unwrap();
    // Unmount first, so nothing is still in flight when the vault is scanned.
    m.unmount();

    for marker in [
        name_marker.as_bytes(),
        dir_marker.as_bytes(),
        content_marker,
    ] {
        let hits = common::find_plaintext(&v.root, marker);
        assert!(
            hits.is_empty(),
            "{:?} found in plaintext in the vault directory: {hits:#?}",
            String::from_utf8_lossy(marker)
        );
    }
    let m = v.mount("alice");
    assert_eq!(read(&m.join(&long_name)), content_marker);
}

#[test]
fn read_only_mount_gives_erofs() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    fs::write(m.join("f"), b"existing").unwrap();
    fs::create_dir(m.join("d")).unwrap();
    setxattr(&m.join("f"), "user.k", b"v", 0).unwrap();
    m.unmount();

    let m = v.mount_with("alice", &["--read-only"]);
    assert_eq!(read(&m.join("f")), b"existing");
    assert_eq!(getxattr(&m.join("f"), "user.k").unwrap(), b"v");
    assert_eq!(names_in(m.path()).unwrap(), ["d", "f"]);

    let rofs = |r: std::io::Result<()>, what: &str| assert_errno(r, libc::EROFS, what);
    rofs(fs::write(m.join("new"), b"x"), "create");
    rofs(
        OpenOptions::new().write(true).open(m.join("f")).map(|_| ()),
        "open for writing",
    );
    rofs(
        OpenOptions::new()
            .append(true)
            .open(m.join("f"))
            .map(|_| ()),
        "open for append",
    );
    rofs(fs::create_dir(m.join("d2")), "mkdir");
    rofs(fs::remove_file(m.join("f")), "unlink");
    rofs(fs::remove_dir(m.join("d")), "rmdir");
    rofs(fs::rename(m.join("f"), m.join("g")), "rename");
    rofs(fs::hard_link(m.join("f"), m.join("h")), "link");
    rofs(std::os::unix::fs::symlink("f", m.join("s")), "symlink");
    rofs(
        fs::set_permissions(m.join("f"), fs::Permissions::from_mode(0o600)),
        "chmod",
    );
    rofs(setxattr(&m.join("f"), "user.k", b"w", 0), "setxattr");
    rofs(removexattr(&m.join("f"), "user.k"), "removexattr");
    let cp = cpath(&m.join("f"));
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::truncate(cp.as_ptr(), 0) };
    let e = std::io::Error::last_os_error();
    assert_eq!(r, -1, "truncate on a read-only mount succeeded");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "truncate: {e}");
    drop(m);

    // Nothing changed.
    let m: Mount = v.mount("alice");
    assert_eq!(read(&m.join("f")), b"existing");
    assert_eq!(names_in(m.path()).unwrap(), ["d", "f"]);
}

/// `lseek` with SEEK_DATA / SEEK_HOLE (what `cp`, `tar --sparse` and backup
/// tools use to skip holes) finds the chunks that hold data, before and after
/// the commit, and ENXIO past the end.
#[test]
fn seek_data_and_seek_hole_find_the_written_chunks() {
    require_fuse!();
    use std::os::fd::AsRawFd;
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("sparse.dat");
    let seek = |f: &fs::File, offset: usize, whence: i32| -> Result<usize, i32> {
        // SAFETY: lseek reads the descriptor number, which `f` keeps open.
        let at = unsafe { libc::lseek(f.as_raw_fd(), offset as libc::off_t, whence) };
        if at < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        } else {
            Ok(at as usize)
        }
    };
    let size = 10 * CHUNK + 77;
    let check = |f: &fs::File, when: &str| {
        // Data in chunk 0, a hole over chunks 1..=7, data in chunks 8 and 10
        // (chunk 9 written with zeros only: stored as a hole once committed).
        assert_eq!(seek(f, 0, libc::SEEK_DATA), Ok(0), "{when}");
        assert_eq!(seek(f, 5, libc::SEEK_DATA), Ok(5), "{when}");
        assert_eq!(seek(f, 0, libc::SEEK_HOLE), Ok(CHUNK), "{when}");
        assert_eq!(seek(f, CHUNK + 3, libc::SEEK_DATA), Ok(8 * CHUNK), "{when}");
        assert_eq!(seek(f, 8 * CHUNK, libc::SEEK_HOLE), Ok(9 * CHUNK), "{when}");
        assert_eq!(seek(f, 10 * CHUNK + 1, libc::SEEK_HOLE), Ok(size), "{when}");
        assert_eq!(seek(f, size, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
        assert_eq!(
            seek(f, size + 10, libc::SEEK_HOLE),
            Err(libc::ENXIO),
            "{when}"
        );
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(&vec![7u8; CHUNK], 8 * CHUNK as u64).unwrap();
    f.write_all_at(&vec![0u8; CHUNK], 9 * CHUNK as u64).unwrap();
    f.write_all_at(&[9u8; 77], 10 * CHUNK as u64).unwrap();
    assert_eq!(
        seek(&f, 9 * CHUNK, libc::SEEK_DATA),
        Ok(9 * CHUNK),
        "dirty zeros are data until committed"
    );
    f.sync_all().unwrap();
    check(&f, "after fsync");
    drop(f);
    drop(m);
    let m = v.mount("alice");
    let f = fs::File::open(m.join("sparse.dat")).unwrap();
    check(&f, "in a new mount");
    drop(f);
    let all = fs::read(m.join("sparse.dat")).unwrap();
    assert_eq!(all.len(), size);
    assert_eq!(&all[..4], b"head");
    assert!(all[4..8 * CHUNK].iter().all(|b| *b == 0));
}

/// (mtime, ctime) in nanoseconds, through a fresh `stat` of the path.
fn times_of(p: &Path) -> (i128, i128) {
    let md = fs::metadata(p).unwrap();
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    (
        ns(md.mtime(), md.mtime_nsec()),
        ns(md.ctime(), md.ctime_nsec()),
    )
}

#[test]
fn writes_mark_mtime_and_ctime_before_they_are_committed() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("f");
    fs::write(&p, pattern(3, 3 * CHUNK)).unwrap();
    let nap = || std::thread::sleep(std::time::Duration::from_millis(20));

    // A write, seen by `stat` while the descriptor is still open (nothing
    // committed yet), as `make`, `rsync` and `tail -f` look at a file.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    let before = times_of(&p);
    nap();
    f.write_all_at(b"changed", 10).unwrap();
    let written = times_of(&p);
    assert!(
        written.0 > before.0,
        "mtime after write: {written:?} vs {before:?}"
    );
    assert!(
        written.1 > before.1,
        "ctime after write: {written:?} vs {before:?}"
    );
    // The commit at close moves them no further back.
    drop(f);
    let closed = times_of(&p);
    assert!(
        closed.0 >= written.0 && closed.1 >= written.1,
        "{closed:?} vs {written:?}"
    );

    // O_TRUNC marks them, also on a file that is empty already (as ext4).
    for round in ["non-empty", "empty"] {
        let before = times_of(&p);
        nap();
        let f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let now = times_of(&p);
        assert!(
            now.0 > before.0 && now.1 > before.1,
            "O_TRUNC of a {round} file: {now:?} vs {before:?}"
        );
        drop(f);
        assert_eq!(fs::metadata(&p).unwrap().len(), 0);
    }

    // A failed write (read-only descriptor) marks nothing.
    fs::write(&p, b"kept").unwrap();
    let before = times_of(&p);
    nap();
    let f = File::open(&p).unwrap();
    assert!(f.write_all_at(b"x", 0).is_err());
    drop(f);
    assert_eq!(times_of(&p), before);
    assert_eq!(read(&p), b"kept");
}

#[test]
fn fallocate_grows_or_keeps_the_size_and_refuses_what_would_be_a_write() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let p = m.join("f");
    let data = pattern(4, CHUNK + 100);
    fs::write(&p, &data).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();

    // Mode 0 past the end grows the file; the new part reads as zeros, the
    // old part is kept, and so it stays after a remount.
    let grown = 3 * CHUNK as i64 + 7;
    let before = times_of(&p);
    std::thread::sleep(std::time::Duration::from_millis(20));
    fallocate(&f, 0, CHUNK as i64, grown - CHUNK as i64).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), grown as u64);
    assert!(times_of(&p).1 > before.1, "ctime after a growing fallocate");
    // Inside the file, and with KEEP_SIZE past its end: the size stays.
    fallocate(&f, 0, 0, 10).unwrap();
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, grown, 5 * CHUNK as i64).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), grown as u64);

    // Punching, zeroing, collapsing and inserting ranges are not offered.
    for mode in [
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_ZERO_RANGE,
        libc::FALLOC_FL_COLLAPSE_RANGE,
        libc::FALLOC_FL_INSERT_RANGE,
    ] {
        assert_eq!(
            fallocate(&f, mode, 0, CHUNK as i64),
            Err(libc::EOPNOTSUPP),
            "mode {mode:#x}"
        );
    }
    // Not on a read-only descriptor (the kernel's EBADF).
    let ro = File::open(&p).unwrap();
    assert_eq!(fallocate(&ro, 0, 0, 4 * CHUNK as i64), Err(libc::EBADF));
    drop((f, ro));

    let mut want = data.clone();
    want.resize(grown as usize, 0);
    assert_same(&read(&p), &want, "after fallocate");
    drop(m);
    let m = v.mount("alice");
    assert_same(&read(&m.join("f")), &want, "after a remount");
}

/// A program running from the mount is busy (ETXTBSY) for every open that
/// would change it, and stays whole: with atomic O_TRUNC the kernel checks a
/// read-only O_TRUNC open only after the mount has answered it, so the mount
/// must refuse it itself (else the program is cut under its process).
#[test]
fn a_running_program_is_busy_and_stays_whole() {
    require_fuse!();
    let v = vault();
    let m = v.mount("alice");
    let program = m.join("prog");
    let original = fs::read("/usr/bin/sleep").unwrap();
    fs::write(&program, &original).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    /// Killed when dropped, also when an assertion fails first: a running
    /// program would keep the mount busy.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Running(
        std::process::Command::new(&program)
            .arg("60")
            .spawn()
            .unwrap(),
    );
    // Loaded and running: asleep in nanosleep.
    let wchan = format!("/proc/{}/wchan", child.0.id());
    let asleep = common::eventually(std::time::Duration::from_secs(20), || {
        let w = fs::read_to_string(&wchan).unwrap_or_default();
        w.contains("nanosleep").then_some(())
    });
    assert!(asleep.is_some(), "the program never started sleeping");

    let open = |flags: i32| {
        OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .custom_flags(flags & !libc::O_ACCMODE)
            .open(&program)
    };
    assert_errno(open(libc::O_WRONLY), libc::ETXTBSY, "open for writing");
    assert_errno(
        open(libc::O_RDWR),
        libc::ETXTBSY,
        "open for reading and writing",
    );
    assert_errno(
        open(libc::O_RDONLY | libc::O_TRUNC),
        libc::ETXTBSY,
        "read-only open with O_TRUNC",
    );
    assert_eq!(child.0.try_wait().unwrap(), None, "the program died");
    assert_same(&read(&program), &original, "the running program");

    // Once it has exited the file is an ordinary file again.
    drop(child);
    let truncated = common::eventually(std::time::Duration::from_secs(10), || {
        open(libc::O_RDONLY | libc::O_TRUNC).ok()
    });
    assert!(truncated.is_some(), "still busy after the program exited");
    assert_eq!(fs::metadata(&program).unwrap().len(), 0);
}
