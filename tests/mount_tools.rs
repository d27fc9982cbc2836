//! Everyday tools working inside a mounted vault: cp, cat, vim, rsync -a,
//! tar x/c, git and sqlite3 (Debian packages: coreutils, vim, rsync, tar,
//! diffutils, git, sqlite3; the tar test reads /usr/include from linux-libc-dev).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{pattern, tool, try_tool, TestVault, CHUNK};

fn os<S: AsRef<OsStr> + ?Sized>(s: &S) -> &OsStr {
    s.as_ref()
}

/// `diff -r` (symlinks compared as links, not followed), asserting no difference.
#[track_caller]
fn assert_trees_equal(a: &Path, b: &Path) {
    let out = try_tool(
        Path::new("/"),
        "diff",
        &[os("-r"), os("--no-dereference"), os(a), os(b)],
    );
    assert_eq!(
        out.code,
        0,
        "trees differ: {} vs {}: {out:#?}",
        a.display(),
        b.display()
    );
}

#[test]
fn cp_and_cat() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let src = v.ws.dir("src");
    let data = pattern(1, 3 * CHUNK + 77);
    fs::write(src.join("blob.bin"), &data).unwrap();
    fs::write(src.join("text.txt"), b"line one\nline two\n").unwrap();

    tool(m.path(), "cp", &[os(&src.join("blob.bin")), os(".")]);
    assert_eq!(fs::read(m.join("blob.bin")).unwrap(), data);
    // cp -a of a directory, and a copy within the mount.
    tool(m.path(), "cp", &[os("-a"), os(&src), os("copied")]);
    assert_trees_equal(&src, &m.join("copied"));
    tool(m.path(), "cp", &[os("blob.bin"), os("copied/blob2.bin")]);
    assert_eq!(fs::read(m.join("copied/blob2.bin")).unwrap(), data);
    // cp over an existing file (truncates and rewrites in place).
    tool(m.path(), "cp", &[os(&src.join("text.txt")), os("blob.bin")]);
    assert_eq!(
        fs::read(m.join("blob.bin")).unwrap(),
        b"line one\nline two\n"
    );

    let out = tool(m.path(), "cat", &[os("copied/text.txt")]);
    assert_eq!(out.stdout, "line one\nline two\n");
    // cat with a shell redirection into the mount (appending too).
    tool(
        m.path(),
        "sh",
        &[
            os("-c"),
            os("cat copied/text.txt copied/text.txt > joined && echo end >> joined"),
        ],
    );
    assert_eq!(
        fs::read_to_string(m.join("joined")).unwrap(),
        "line one\nline two\nline one\nline two\nend\n"
    );
    // cmp agrees byte for byte on the big file.
    tool(
        m.path(),
        "cmp",
        &[os("copied/blob.bin"), os(&src.join("blob.bin"))],
    );
}

#[test]
fn vim_edit() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    fs::write(m.join("notes.txt"), "aaa\nbab\nccc\n").unwrap();
    fs::set_permissions(m.join("notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    // Ex mode, no vimrc, no viminfo; the swap and backup files go in the mount.
    tool(
        m.path(),
        "vim",
        &[
            os("-Es"),
            os("-u"),
            os("NONE"),
            os("-i"),
            os("NONE"),
            os("-c"),
            os("set nocompatible"),
            os("-c"),
            os("%s/a/b/g"),
            os("-c"),
            os("wq"),
            os("notes.txt"),
        ],
    );
    assert_eq!(
        fs::read_to_string(m.join("notes.txt")).unwrap(),
        "bbb\nbbb\nccc\n"
    );
    assert_eq!(
        fs::metadata(m.join("notes.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640,
        "vim keeps the file mode"
    );
    // A new file written by vim; no swap file left behind.
    tool(
        m.path(),
        "vim",
        &[
            os("-Es"),
            os("-u"),
            os("NONE"),
            os("-i"),
            os("NONE"),
            os("-c"),
            os("call setline(1, ['first', 'second'])"),
            os("-c"),
            os("wq"),
            os("new.txt"),
        ],
    );
    assert_eq!(
        fs::read_to_string(m.join("new.txt")).unwrap(),
        "first\nsecond\n"
    );
    let names = common::names_in(m.path()).unwrap();
    assert_eq!(names, ["new.txt", "notes.txt"], "leftover files after vim");
}

/// A source tree with the things rsync -a cares about: nested dirs, modes,
/// symlinks, hard links, empty files, a multi-chunk file, old mtimes.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("a/small.txt"), b"small\n").unwrap();
    fs::write(root.join("a/b/big.bin"), pattern(3, 5 * CHUNK + 1)).unwrap();
    fs::write(root.join("a/b/c/empty"), b"").unwrap();
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("a/small.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("a/small.txt", root.join("link-to-small")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::hard_link(root.join("a/small.txt"), root.join("hardlink")).unwrap();
    for (i, name) in ["a/small.txt", "a/b/big.bin", "script.sh"]
        .iter()
        .enumerate()
    {
        let f = fs::File::options()
            .write(true)
            .open(root.join(name))
            .unwrap();
        f.set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000 + i as u64),
        )
        .unwrap();
    }
}

#[test]
fn rsync_in_and_out() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let src = v.ws.dir("src");
    make_tree(&src);
    let out_dir = v.ws.path().join("out");

    // In: rsync -aH into the mount, then a dry run must find nothing to do
    // (contents, modes, times, links and owners all came through).
    let s = format!("{}/", src.display());
    let inside = m.join("tree");
    tool(m.path(), "rsync", &[os("-aH"), os(&s), os(&inside)]);
    assert_trees_equal(&src, &inside);
    let dry = tool(
        m.path(),
        "rsync",
        &[os("-aHni"), os("--checksum"), os(&s), os(&inside)],
    );
    assert_eq!(
        dry.stdout.trim(),
        "",
        "rsync finds differences after copying in"
    );

    // Change something and sync again (rsync's delta transfer rewrites via temp+rename).
    fs::write(src.join("a/b/big.bin"), pattern(4, 5 * CHUNK + 100)).unwrap();
    fs::remove_file(src.join("script.sh")).unwrap();
    tool(
        m.path(),
        "rsync",
        &[os("-aH"), os("--delete"), os(&s), os(&inside)],
    );
    assert_trees_equal(&src, &inside);

    // Out again, into a plain directory.
    tool(
        m.path(),
        "rsync",
        &[
            os("-aH"),
            os(&format!("{}/", inside.display())),
            os(&out_dir),
        ],
    );
    assert_trees_equal(&src, &out_dir);
    let dry = tool(
        m.path(),
        "rsync",
        &[
            os("-aHni"),
            os("--checksum"),
            os(&format!("{}/", inside.display())),
            os(&out_dir),
        ],
    );
    assert_eq!(
        dry.stdout.trim(),
        "",
        "rsync finds differences after copying out"
    );

    // And the mount's copy survives a remount.
    m.unmount();
    let m = v.mount("alice");
    assert_trees_equal(&src, &m.join("tree"));
}

#[test]
fn tar_extract_and_create() {
    require_fuse!();
    let include = Path::new("/usr/include");
    let subset = ["linux", "asm-generic", "stdio.h", "stdlib.h"];
    for s in subset {
        assert!(
            include.join(s).exists(),
            "/usr/include/{s} is missing (Debian packages libc6-dev and linux-libc-dev)"
        );
    }
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let archive = v.ws.path().join("in.tar");
    let mut args = vec![os("-C"), os(include), os("-cf"), os(&archive)];
    args.extend(subset.iter().map(os));
    tool(v.ws.path(), "tar", &args);

    // tar x into the mount.
    fs::create_dir(m.join("x")).unwrap();
    tool(&m.join("x"), "tar", &[os("-xf"), os(&archive)]);
    for s in subset {
        assert_trees_equal(&include.join(s), &m.join("x").join(s));
    }

    // tar c inside the mount (archive written into the mount), then extract it
    // outside and compare.
    let mut args = vec![os("-C"), os("x"), os("-cf"), os("out.tar")];
    args.extend(subset.iter().map(os));
    tool(m.path(), "tar", &args);
    let back = v.ws.dir("back");
    tool(&back, "tar", &[os("-xf"), os(&m.join("out.tar"))]);
    for s in subset {
        assert_trees_equal(&include.join(s), &back.join(s));
    }
    // tar's own comparison (contents, modes, mtimes) against the mount.
    let d = tool(
        &m.join("x"),
        "tar",
        &[os("--compare"), os("-f"), os(&archive)],
    );
    assert_eq!(d.stdout.trim(), "", "tar --compare reports differences");
}

/// git with a private HOME and no system or global config.
fn run_git(dir: &Path, home: &Path, args: &[&OsStr]) -> common::Out {
    common::try_tool_env(
        dir,
        "git",
        args,
        &[
            ("HOME", home.as_os_str()),
            ("GIT_CONFIG_NOSYSTEM", os("1")),
            ("GIT_CONFIG_GLOBAL", os("/dev/null")),
        ],
    )
}

#[test]
fn git_init_add_commit_log() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let repo = m.join("repo");
    fs::create_dir(&repo).unwrap();
    let home = v.ws.dir("githome");
    let git = |args: &[&str]| {
        let mut all: Vec<&OsStr> = vec![
            os("-c"),
            os("user.name=Alice Tester"),
            os("-c"),
            os("user.email=alice@example.org"),
            os("-c"),
            os("init.defaultBranch=main"),
            os("-c"),
            os("commit.gpgsign=false"),
        ];
        all.extend(args.iter().map(os));
        let out = run_git(&repo, &home, &all);
        assert_eq!(out.code, 0, "git {args:?} failed: {out:#?}");
        out.stdout
    };
    git(&["init", "-q"]);
    fs::write(repo.join("README"), "hello\n").unwrap();
    fs::create_dir(repo.join("src")).unwrap();
    fs::write(repo.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    fs::write(repo.join("data.bin"), pattern(5, 2 * CHUNK + 3)).unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "first commit"]);
    fs::write(repo.join("README"), "hello\nworld\n").unwrap();
    git(&["commit", "-q", "-am", "second commit"]);
    git(&["mv", "src/main.c", "src/app.c"]);
    git(&["commit", "-q", "-m", "rename"]);

    let log = git(&["log", "--format=%s"]);
    assert_eq!(log, "rename\nsecond commit\nfirst commit\n");
    assert_eq!(git(&["status", "--porcelain"]), "", "clean working tree");
    git(&["fsck", "--full", "--strict"]);
    assert_eq!(git(&["show", "HEAD~1:README"]), "hello\nworld\n");
    // gc packs objects (rename, hard links, fsync) and the repo still checks out.
    git(&["gc", "-q"]);
    git(&["checkout", "-q", "HEAD~2"]);
    assert_eq!(fs::read_to_string(repo.join("README")).unwrap(), "hello\n");
    assert!(repo.join("src/main.c").exists());
    git(&["checkout", "-q", "main"]);
    assert!(repo.join("src/app.c").exists());

    // Clone out of the mount and compare.
    let clone = v.ws.path().join("clone");
    let out = run_git(
        v.ws.path(),
        &home,
        &[os("clone"), os("-q"), os(&repo), os(&clone)],
    );
    assert_eq!(out.code, 0, "git clone: {out:#?}");
    assert_eq!(
        fs::read(clone.join("data.bin")).unwrap(),
        pattern(5, 2 * CHUNK + 3)
    );
}

#[test]
fn sqlite3_database() {
    require_fuse!();
    let v = TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let sql = |db: &str, script: &str| {
        let out = try_tool(m.path(), "sqlite3", &[os("-bail"), os(db), os(script)]);
        assert_eq!(out.code, 0, "sqlite3 {db} {script:?}: {out:#?}");
        assert!(
            out.stderr.trim().is_empty(),
            "sqlite3 wrote errors: {out:#?}"
        );
        out.stdout
    };
    // Rollback-journal mode.
    sql(
        "plain.db",
        "create table t(id integer primary key, body text);\
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 2000) \
         insert into t(body) select hex(randomblob(200)) from n;\
         create index t_body on t(body);\
         update t set body = 'x' || body where id % 3 = 0;\
         delete from t where id % 7 = 0;",
    );
    assert_eq!(sql("plain.db", "select count(*) from t;").trim(), "1715");
    assert_eq!(sql("plain.db", "pragma integrity_check;").trim(), "ok");

    // WAL mode uses a shared memory map of the -shm file.
    sql(
        "wal.db",
        "pragma journal_mode=wal;\
         create table kv(k integer primary key, v blob);\
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 500) \
         insert into kv(v) select randomblob(1000) from n;",
    );
    sql(
        "wal.db",
        "insert into kv(v) values (zeroblob(100000)); pragma wal_checkpoint(truncate);",
    );
    assert_eq!(sql("wal.db", "select count(*) from kv;").trim(), "501");
    assert_eq!(sql("wal.db", "pragma integrity_check;").trim(), "ok");

    m.unmount();
    let m = v.mount("alice");
    let out = tool(
        m.path(),
        "sqlite3",
        &[
            os("plain.db"),
            os("pragma integrity_check; select count(*) from t;"),
        ],
    );
    assert_eq!(out.stdout, "ok\n1715\n");
    let out = tool(
        m.path(),
        "sqlite3",
        &[
            os("wal.db"),
            os("pragma integrity_check; select count(*) from kv;"),
        ],
    );
    assert_eq!(out.stdout, "ok\n501\n");
}
