//! A short version of `scripts/stress.sh`: random concurrent operations from
//! several processes (scripts/stress.py, checked against in-memory models) on a
//! live mount, and fsx against a file in the same mount when fsx is installed;
//! then unmount, remount and compare with the models, and `coffer verify`.
//!
//! `COFFER_STRESS_SECONDS` sets the duration (default 30).

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{which, TestVault};

fn seconds() -> u64 {
    std::env::var("COFFER_STRESS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stress.py")
}

/// fsx in a loop until `secs` have passed (one shell, killed with the guard).
fn start_fsx(file: &Path, artifacts: &Path, log: &Path, secs: u64) -> Child {
    let script = format!(
        "end=$((SECONDS + {secs})); run=0; \
         while [ $SECONDS -lt $end ]; do run=$((run + 1)); \
         fsx -N 1000 -S $((4242 + run)) -P \"$2\" \"$1\" || exit 1; done; echo \"fsx runs: $run\""
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("fsx-loop")
        .arg(file)
        .arg(artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(log).unwrap(),
        ))
        .spawn()
        .expect("start fsx")
}

#[test]
fn random_operations_and_fsx_on_a_live_mount() {
    require_fuse!();
    assert!(
        which("python3"),
        "python3 is not installed (scripts/setup.sh installs it)"
    );
    let secs = seconds();
    let v = TestVault::new(&["alice"]);
    let state = v.ws.path().join("stress-state.json");
    let m = v.mount("alice");

    let fsx = if which("fsx") {
        let artifacts = v.ws.dir("fsx-artifacts");
        let log = v.ws.path().join("fsx.log");
        Some((start_fsx(&m.join("fsx.file"), &artifacts, &log, secs), log))
    } else {
        eprintln!("fsx is not installed: skipping its part (`cargo install fsx`)");
        None
    };

    let secs_s = secs.to_string();
    let out = common::try_tool(
        v.ws.path(),
        "python3",
        &[
            script().as_os_str(),
            OsStr::new("--dir"),
            m.path().as_os_str(),
            OsStr::new("--duration"),
            OsStr::new(&secs_s),
            OsStr::new("--procs"),
            OsStr::new("3"),
            OsStr::new("--state"),
            state.as_os_str(),
        ],
    );
    eprintln!("{}", out.stdout);
    assert_eq!(out.code, 0, "stress.py failed: {out:#?}");

    if let Some((mut child, log)) = fsx {
        let status = common::eventually(Duration::from_secs(secs + 120), || {
            child.try_wait().unwrap()
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fsx did not finish:\n{text}");
        };
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        assert!(status.success(), "fsx failed:\n{}", tail.join("\n"));
        eprintln!("{}", text.lines().last().unwrap_or(""));
    }
    m.unmount();

    // Everything the models hold is there after a remount.
    let m = v.mount_with("alice", &["--read-only"]);
    let out = common::try_tool(
        v.ws.path(),
        "python3",
        &[
            script().as_os_str(),
            OsStr::new("--dir"),
            m.path().as_os_str(),
            OsStr::new("--check"),
            state.as_os_str(),
        ],
    );
    assert_eq!(out.code, 0, "after remount: {out:#?}");
    m.unmount();

    let alice = v.member("alice");
    let out = v.as_member(alice, [OsStr::new("verify"), v.root.as_os_str()]);
    assert_eq!(out.code, 0, "verify after the stress run: {out:#?}");
}
