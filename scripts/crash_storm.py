#!/usr/bin/env python3
"""Write storm for scripts/crash-trials.sh: runs against a mounted vault until
killed, recording on local disk what has been fsync'ed so the checker knows
what must survive a kill -9 of the coffer daemon.

  crash_storm.py write MNT STATE   # runs until the daemon dies (EIO/ENOTCONN)
  crash_storm.py check MNT STATE   # exit 0 if every promise holds
"""
import json
import os
import random
import sys

CHUNK = 64 * 1024
CHUNKS = 8


def save(state, data):
    tmp = state + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state)


def write(mnt, state):
    rng = random.Random()
    durable = {"chunks": [0] * CHUNKS, "lines": 0, "files": []}
    if os.path.exists(state):
        with open(state) as f:
            durable = json.load(f)
    base = max(durable["chunks"]) + 1
    path = os.path.join(mnt, "storm.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if os.fstat(fd).st_size < CHUNK * CHUNKS:
        os.ftruncate(fd, CHUNK * CHUNKS)
    app = os.open(os.path.join(mnt, "append.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # Resume after what survived the last crash (it may exceed what was fsync'ed).
    try:
        with open(os.path.join(mnt, "append.log"), "rb") as f:
            lines = f.read().count(b"\n")
    except FileNotFoundError:
        lines = 0
    n_files = len(durable["files"])
    while os.path.exists(os.path.join(mnt, "r%d" % n_files)):
        n_files += 1
    written = list(durable["chunks"])
    p = base
    try:
        while True:
            # In-place rewrites of whole chunks with the pass number.
            for i in rng.sample(range(CHUNKS), 3):
                os.pwrite(fd, bytes([p % 250 + 1]) * CHUNK, i * CHUNK)
                written[i] = p
            # Appends.
            for _ in range(5):
                os.write(app, b"%d\n" % lines)
                lines += 1
            # Creates and renames.
            name = os.path.join(mnt, "f%d" % n_files)
            with open(name, "wb") as f:
                f.write(b"file %d\n" % n_files * 100)
                f.flush()
                os.fsync(f.fileno())
            os.rename(name, os.path.join(mnt, "r%d" % n_files))
            n_files += 1
            if rng.random() < 0.5:
                os.fsync(fd)
                os.fsync(app)
                durable = {
                    "chunks": [w % 250 + 1 if w else 0 for w in written],
                    "pass": p,
                    "lines": lines,
                    "files": list(range(n_files)),
                }
                save(state, durable)
            p += 1
    except OSError:
        return 0


def check(mnt, state):
    with open(state) as f:
        durable = json.load(f)
    bad = []
    with open(os.path.join(mnt, "storm.bin"), "rb") as f:
        data = f.read()
    for i in range(CHUNKS):
        chunk = data[i * CHUNK:(i + 1) * CHUNK]
        if len(set(chunk)) > 1:
            bad.append("storm.bin chunk %d is a torn mix of versions" % i)
        elif durable["chunks"][i] and chunk[:1] == b"\0":
            bad.append("storm.bin chunk %d lost its fsync'ed version" % i)
    with open(os.path.join(mnt, "append.log"), "rb") as f:
        got = f.read().split(b"\n")
    if got and got[-1] == b"":
        got = got[:-1]
    for n, line in enumerate(got):
        if line != b"%d" % n:
            bad.append("append.log line %d is %r (torn or reordered)" % (n, line[:20]))
            break
    if len(got) < durable["lines"]:
        bad.append("append.log lost fsync'ed lines: %d < %d" % (len(got), durable["lines"]))
    for n in durable["files"]:
        for name in ("r%d" % n, "f%d" % n):
            p = os.path.join(mnt, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    if f.read() != b"file %d\n" % n * 100:
                        bad.append("%s has wrong content" % name)
                break
        else:
            bad.append("fsync'ed file %d is gone" % n)
    for b in bad:
        print("FAIL:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    mode, mnt, state = sys.argv[1:4]
    if mode == "write":
        try:
            sys.exit(write(mnt, state))
        except OSError:
            sys.exit(0)  # the daemon died before the storm got going
    sys.exit(check(mnt, state))
