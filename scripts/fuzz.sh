#!/usr/bin/env bash
# Long run of the hostile-bytes property tests (tests/hostile_bytes.rs): every
# decoder (vault config, member record, directory record, sidecar, journal, long
# name, identity file, log entry, checkpoint, content header, encrypted names,
# public keys, chunks) gets random and mutated inputs and must return an error,
# never panic or allocate without bound.
#
#   bash scripts/fuzz.sh                 # 10 million cases per property
#   CASES=100000 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CASES="${CASES:-10000000}"
echo "==> hostile bytes: $CASES cases per property"
COFFER_FUZZ_CASES="$CASES" cargo test --release --test hostile_bytes -- --test-threads=2
