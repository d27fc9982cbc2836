//! Crash injection for tests of crash recovery. With
//! `COFFER_TEST_CRASH_AFTER_SLOT_BYTES=N` in its environment, a process stops
//! a commit's in-place slot writes (those after its commit point) part-way:
//! it writes up to the first 4 KiB boundary of the content file at or past N
//! bytes, then aborts, as a `kill -9` that lands inside a `write` leaves a file
//! (the kernel stops a buffered write between pages). Unset, it costs one
//! cached lookup per commit. It can only make the process that reads it stop
//! early, which anyone who sets its environment could do anyway.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::LazyLock;

static SLOT_BYTES: LazyLock<Option<u64>> = LazyLock::new(|| {
    std::env::var("COFFER_TEST_CRASH_AFTER_SLOT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
});

/// Writes `runs` (file offset, bytes) into `data` in order; see the module
/// comment for the crash it can be asked to stage.
pub fn write_slot_runs(data: &File, runs: &[(u64, &[u8])]) -> std::io::Result<()> {
    let mut budget = *SLOT_BYTES;
    for (at, bytes) in runs {
        if let Some(left) = budget {
            if (bytes.len() as u64) > left {
                let cut = (at + left)
                    .next_multiple_of(4096)
                    .min(at + bytes.len() as u64);
                data.write_all_at(&bytes[..(cut - at) as usize], *at)?;
                log::warn!("crash injected after {} bytes of slot writes", cut - at);
                std::process::abort();
            }
            budget = Some(left - bytes.len() as u64);
        }
        data.write_all_at(bytes, *at)?;
    }
    Ok(())
}
