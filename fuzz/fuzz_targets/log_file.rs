//! A whole member log file read from disk (header, length-prefixed records,
//! torn tails), plus an optional checkpoint file: the input is split at the
//! first "\0CP\0" marker into log bytes and checkpoint bytes.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use coffer::crypto::{Identity, MemberId};
use coffer::history::log::{self, LogPosition};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // A RAM-backed directory when there is one: each run writes two files.
        let base = Some(std::path::Path::new("/dev/shm"))
            .filter(|p| p.is_dir())
            .map_or_else(std::env::temp_dir, |p| p.to_path_buf());
        let d = base.join(format!("coffer-fuzz-log-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(|| Identity::from_seed([5; 32]))
}

fuzz_target!(|data: &[u8]| {
    let member: MemberId = me().member_id();
    let ed = me().public().ed25519;
    let (log_bytes, cp) = match data.windows(4).position(|w| w == b"\0CP\0") {
        Some(i) => (&data[..i], Some(&data[i + 4..])),
        None => (data, None),
    };
    let d = dir();
    std::fs::write(log::log_path(d, &member), log_bytes).unwrap();
    let head = log::head_path(d, &member);
    match cp {
        Some(c) => std::fs::write(&head, c).unwrap(),
        None => {
            let _ = std::fs::remove_file(&head);
        }
    }
    let _ = log::read_member_log(d, &[0; 16], &member, &ed);
    let _ = log::read_member_log_from(d, &[0; 16], &member, &ed, LogPosition::default());
});
