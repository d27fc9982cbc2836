#!/usr/bin/env python3
"""Random-operation stress for a mounted coffer (fsstress-like).

Several worker processes run random operations at once for DURATION seconds:
create, write (pwrite anywhere, holes included), append, truncate, rename
(overwriting too), link, unlink, mkdir, rmdir, read, stat, readdir and fsync.

- Each worker owns a directory and keeps an in-memory model of it (names, hard
  links, contents): every read, stat and readdir is compared with the model, and
  every operation must succeed exactly as the model says.
- All workers also race on a shared directory with a small pool of names: files
  there are replaced atomically (write a temp file, rename it into place) and
  carry a checksum, so any read must see one whole version. Errors there may only
  be the ones a race explains (ENOENT, EEXIST, ENOTEMPTY, ...), never EIO.

At the end the models are checked against the mount once more and, with
--state FILE, written out (path -> sha256) so `--check FILE` can compare a later
mount (after unmount/remount) with them.

Exit status: 0 when every check passed, 1 on the first failure (with the
operation, the seed and the traceback).

  python3 scripts/stress.py --dir MNT --duration 600 --procs 4 --state /tmp/s.json
  python3 scripts/stress.py --dir MNT --check /tmp/s.json
"""

import argparse
import errno
import hashlib
import json
import multiprocessing
import os
import random
import struct
import sys
import time
import traceback

MAX_FILE = 600 * 1024  # keeps a worker's model small; spans several 64 KiB chunks
RACE_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR}


class Fail(Exception):
    pass


def rand_bytes(rng, n):
    # Random bytes are slow in pure Python; repeat a random block with a twist.
    block = rng.randbytes(min(n, 4096)) if n else b""
    if n <= len(block):
        return block[:n]
    reps = n // len(block) + 1
    return (block * reps)[:n]


class Worker:
    def __init__(self, root, wid, seed, deadline):
        self.root = root
        self.wid = wid
        self.rng = random.Random(seed)
        self.seed = seed
        self.deadline = deadline
        self.home = os.path.join(root, f"w{wid}")
        self.shared = os.path.join(root, "shared")
        # relpath -> bytearray; hard links share one bytearray object.
        self.files = {}
        self.dirs = {""}  # relative dirs ("" is home)
        self.counter = 0
        self.ops = {}

    # ---- helpers -------------------------------------------------------
    def p(self, rel):
        return os.path.join(self.home, rel)

    def new_name(self):
        self.counter += 1
        d = self.rng.choice(sorted(self.dirs))
        name = f"f{self.counter}"
        if self.rng.random() < 0.05:
            name += "-" + "x" * self.rng.randint(100, 200)  # a long name
        return os.path.join(d, name) if d else name

    def pick_file(self):
        if not self.files:
            return None
        return self.rng.choice(sorted(self.files))

    def check_content(self, rel, what):
        with open(self.p(rel), "rb") as f:
            got = f.read()
        want = bytes(self.files[rel])
        if got != want:
            at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), None)
            raise Fail(f"{what}: {rel}: content differs (len {len(got)} vs {len(want)}, first diff at {at})")

    # ---- operations on the owned directory ----------------------------
    def op_create(self):
        rel = self.new_name()
        data = rand_bytes(self.rng, self.rng.choice([0, 1, 100, 4096, 65536, 65537, 200_000]))
        with open(self.p(rel), "xb") as f:
            f.write(data)
        self.files[rel] = bytearray(data)

    def op_write(self):
        rel = self.pick_file()
        if rel is None:
            return self.op_create()
        buf = self.files[rel]
        off = self.rng.randint(0, min(len(buf) + 70_000, MAX_FILE))
        n = self.rng.choice([1, 17, 4096, 65536, 70_000, self.rng.randint(1, 150_000)])
        n = max(1, min(n, MAX_FILE - off))
        data = rand_bytes(self.rng, n)
        fd = os.open(self.p(rel), os.O_WRONLY)
        try:
            if os.pwrite(fd, data, off) != n:
                raise Fail(f"short write to {rel}")
            if self.rng.random() < 0.2:
                os.fsync(fd)
        finally:
            os.close(fd)
        if off > len(buf):
            buf.extend(b"\0" * (off - len(buf)))
        buf[off:off + n] = data

    def op_append(self):
        rel = self.pick_file()
        if rel is None:
            return self.op_create()
        buf = self.files[rel]
        data = rand_bytes(self.rng, self.rng.randint(1, 20_000))
        if len(buf) + len(data) > MAX_FILE:
            return
        with open(self.p(rel), "ab") as f:
            f.write(data)
        buf.extend(data)

    def op_truncate(self):
        rel = self.pick_file()
        if rel is None:
            return
        buf = self.files[rel]
        size = self.rng.choice([0, len(buf) // 2, len(buf) + 1000, self.rng.randint(0, MAX_FILE)])
        os.truncate(self.p(rel), size)
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(b"\0" * (size - len(buf)))

    def op_rename(self):
        src = self.pick_file()
        if src is None:
            return
        if self.rng.random() < 0.3 and len(self.files) > 1:
            dst = self.pick_file()  # overwrite an existing file
        else:
            dst = self.new_name()
        os.rename(self.p(src), self.p(dst))
        if self.files.get(dst) is self.files[src]:
            return  # hard links to one file: rename does nothing
        self.files[dst] = self.files.pop(src)

    def op_link(self):
        src = self.pick_file()
        if src is None:
            return
        dst = self.new_name()
        os.link(self.p(src), self.p(dst))
        self.files[dst] = self.files[src]

    def op_unlink(self):
        rel = self.pick_file()
        if rel is None:
            return
        os.unlink(self.p(rel))
        del self.files[rel]

    def op_mkdir(self):
        if len(self.dirs) > 8:
            return
        self.counter += 1
        rel = f"d{self.counter}"
        os.mkdir(self.p(rel))
        self.dirs.add(rel)

    def op_rmdir(self):
        cands = sorted(d for d in self.dirs if d)
        if not cands:
            return
        d = self.rng.choice(cands)
        empty = not any(os.path.dirname(f) == d for f in self.files)
        try:
            os.rmdir(self.p(d))
        except OSError as e:
            if e.errno == errno.ENOTEMPTY and not empty:
                return
            raise
        if not empty:
            raise Fail(f"rmdir {d} succeeded on a non-empty directory")
        self.dirs.discard(d)

    def op_read(self):
        rel = self.pick_file()
        if rel is None:
            return
        self.check_content(rel, "read")

    def op_pread(self):
        rel = self.pick_file()
        if rel is None:
            return
        buf = self.files[rel]
        off = self.rng.randint(0, len(buf) + 10)
        n = self.rng.randint(0, 100_000)
        fd = os.open(self.p(rel), os.O_RDONLY)
        try:
            got = os.pread(fd, n, off)
        finally:
            os.close(fd)
        if got != bytes(buf[off:off + n]):
            raise Fail(f"pread {rel} at {off}+{n}: differs from the model")

    def op_stat(self):
        rel = self.pick_file()
        if rel is None:
            return
        st = os.stat(self.p(rel))
        buf = self.files[rel]
        if st.st_size != len(buf):
            raise Fail(f"stat {rel}: size {st.st_size}, model {len(buf)}")
        links = sum(1 for v in self.files.values() if v is buf)
        if st.st_nlink != links:
            raise Fail(f"stat {rel}: nlink {st.st_nlink}, model {links}")

    def op_readdir(self):
        for d in sorted(self.dirs):
            got = sorted(os.listdir(self.p(d)))
            want = sorted(
                [os.path.basename(f) for f in self.files if os.path.dirname(f) == d]
                + [x for x in self.dirs if x and os.path.dirname(x) == d]
            )
            if got != want:
                raise Fail(f"readdir {d or '.'}: got {got[:10]}..., model {want[:10]}...")

    def op_fsync_write(self):
        rel = self.pick_file()
        if rel is None:
            return self.op_create()
        buf = self.files[rel]
        data = rand_bytes(self.rng, self.rng.randint(1, 8192))
        off = self.rng.randint(0, len(buf))
        if off + len(data) > MAX_FILE:
            return
        fd = os.open(self.p(rel), os.O_RDWR)
        try:
            os.pwrite(fd, data, off)
            os.fdatasync(fd) if self.rng.random() < 0.5 else os.fsync(fd)
            got = os.pread(fd, len(data), off)
        finally:
            os.close(fd)
        buf[off:off + len(data)] = data
        if got != data:
            raise Fail(f"read back after fsync of {rel} differs")

    def op_open_unlinked(self):
        # Unlink a file while it is open: the fd keeps working.
        rel = self.pick_file()
        if rel is None or sum(1 for v in self.files.values() if v is self.files[rel]) > 1:
            return
        buf = self.files[rel]
        fd = os.open(self.p(rel), os.O_RDWR)
        try:
            os.unlink(self.p(rel))
            del self.files[rel]
            os.pwrite(fd, b"after unlink", 0)
            got = os.pread(fd, len(buf) + 20, 0)
            want = bytearray(buf)
            want[0:12] = b"after unlink"
            if got != bytes(want[: len(got)]) or len(got) != max(len(buf), 12):
                raise Fail(f"open-unlinked {rel}: content differs")
        finally:
            os.close(fd)

    # ---- the shared directory: races between workers ------------------
    def shared_name(self):
        return os.path.join(self.shared, f"s{self.rng.randint(0, 11)}")

    def op_shared(self):
        kind = self.rng.choice(["replace", "replace", "read", "read", "unlink", "rename", "mkdir", "rmdir", "list"])
        target = self.shared_name()
        try:
            if kind == "replace":
                body = rand_bytes(self.rng, self.rng.randint(0, 150_000))
                blob = struct.pack("<Q", len(body)) + hashlib.sha256(body).digest() + body
                self.counter += 1
                tmp = os.path.join(self.shared, f".t{self.wid}-{self.counter}")
                with open(tmp, "wb") as f:
                    f.write(blob)
                try:
                    os.rename(tmp, target)
                except OSError:
                    os.unlink(tmp)
                    raise
            elif kind == "read":
                with open(target, "rb") as f:
                    blob = f.read()
                if len(blob) < 40:
                    raise Fail(f"shared {target}: {len(blob)} bytes, torn")
                (n,) = struct.unpack("<Q", blob[:8])
                body = blob[40:]
                if n != len(body) or hashlib.sha256(body).digest() != blob[8:40]:
                    raise Fail(f"shared {target}: mixed or torn content")
            elif kind == "unlink":
                os.unlink(target)
            elif kind == "rename":
                os.rename(target, self.shared_name())
            elif kind == "mkdir":
                os.mkdir(target + "d")
            elif kind == "rmdir":
                os.rmdir(target + "d")
            else:
                os.listdir(self.shared)
        except IsADirectoryError:
            pass
        except OSError as e:
            if e.errno not in RACE_ERRNOS:
                raise

    # ---- driver --------------------------------------------------------
    OPS = [
        ("op_create", 8), ("op_write", 14), ("op_append", 4), ("op_truncate", 4),
        ("op_rename", 6), ("op_link", 2), ("op_unlink", 5), ("op_mkdir", 2),
        ("op_rmdir", 2), ("op_read", 10), ("op_pread", 6), ("op_stat", 5),
        ("op_readdir", 2), ("op_fsync_write", 3), ("op_open_unlinked", 1),
        ("op_shared", 12),
    ]

    def run(self, skip=()):
        os.makedirs(self.home, exist_ok=True)
        ops = [(n, w) for n, w in self.OPS if n[3:] not in skip]
        names = [n for n, _ in ops]
        weights = [w for _, w in ops]
        n = 0
        while time.monotonic() < self.deadline:
            op = self.rng.choices(names, weights)[0]
            n += 1
            try:
                getattr(self, op)()
            except Fail:
                raise
            except OSError as e:
                raise Fail(f"{op} (op #{n}): {e}") from e
            self.ops[op] = self.ops.get(op, 0) + 1
            # Keep the model bounded.
            if len(self.files) > 60:
                self.op_unlink()
        for rel in sorted(self.files):
            self.check_content(rel, "final check")
        self.op_readdir()
        return n

    def state(self):
        out = {}
        for rel, buf in self.files.items():
            out[os.path.join(f"w{self.wid}", rel)] = hashlib.sha256(bytes(buf)).hexdigest()
        return out


def worker_main(args):
    root, wid, seed, deadline, skip = args
    w = Worker(root, wid, seed, deadline)
    try:
        n = w.run(skip)
        return (wid, True, n, w.ops, w.state(), "")
    except Exception:
        return (wid, False, 0, w.ops, {}, f"worker {wid} (seed {seed}):\n{traceback.format_exc()}")


def check_state(root, path):
    with open(path) as f:
        want = json.load(f)
    bad = 0
    for rel, digest in sorted(want.items()):
        try:
            with open(os.path.join(root, rel), "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            print(f"stress: {rel}: {e}", file=sys.stderr)
            bad += 1
            continue
        if got != digest:
            print(f"stress: {rel}: content differs from the recorded state", file=sys.stderr)
            bad += 1
    print(f"stress: checked {len(want)} files against {path}: {bad} bad")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="directory inside the mount to work in")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--procs", type=int, default=4, help="worker processes (default 4)")
    ap.add_argument("--seed", type=int, default=None, help="base seed (default: random)")
    ap.add_argument("--skip", help="comma-separated operations to leave out (e.g. link)")
    ap.add_argument("--state", help="write the final models (path -> sha256) here")
    ap.add_argument("--check", help="compare the mount with a state file and exit")
    a = ap.parse_args()
    if a.check:
        return check_state(a.dir, a.check)
    seed = a.seed if a.seed is not None else random.randrange(1 << 32)
    print(f"stress: {a.procs} workers for {a.duration:.0f} s in {a.dir}, seed {seed}", flush=True)
    os.makedirs(os.path.join(a.dir, "shared"), exist_ok=True)
    deadline = time.monotonic() + a.duration
    skip = tuple(x for x in (a.skip or "").split(",") if x)
    jobs = [(a.dir, i, seed * 1000 + i, deadline, skip) for i in range(a.procs)]
    with multiprocessing.Pool(a.procs) as pool:
        results = pool.map(worker_main, jobs)
    ok = True
    total = 0
    counts = {}
    state = {}
    for wid, good, n, ops, st, err in results:
        total += n
        for k, v in ops.items():
            counts[k] = counts.get(k, 0) + v
        state.update(st)
        if not good:
            ok = False
            print(f"stress: FAILED: {err}", file=sys.stderr)
    summary = ", ".join(f"{k[3:]} {v}" for k, v in sorted(counts.items()))
    print(f"stress: {total} operations ({summary})")
    if a.state and ok:
        with open(a.state, "w") as f:
            json.dump(state, f)
    print("stress: ok" if ok else "stress: FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
