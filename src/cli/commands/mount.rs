//! `coffer mount`: mount a vault, in the background (default) or attached.
//!
//! Everything that can fail for a reason the user should see (not a vault, no
//! mountpoint, wrong passphrase, not a member) is checked before forking, so it is
//! reported on the terminal with its exit code. The background process then reports
//! "mounted" or the mount's own error back through a pipe, and the command exits.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fs::MountOptions;
use crate::vault::Vault;

use super::super::context::require_vault;
use super::super::daemon::{self, Forked, Notifier, Report};
use super::super::logging;
use super::super::mounts;
use super::super::output;
use super::super::Context;
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Mount a vault (in the background unless --foreground)",
    long_about = "Mount VAULT at MNT as the identity given with --identity / \
COFFER_IDENTITY. The command returns once the mount is ready and a background process keeps \
serving it until `coffer unmount MNT` (or umount); that process logs to \
$XDG_STATE_HOME/coffer/mount-<MNT>.log (RUST_LOG sets the level, default info). \
--foreground stays attached and logs to stderr; Ctrl-C unmounts.\n\n\
-o takes comma-separated FUSE options (ro, allow_other, noatime, nodev, nosuid, noexec, \
...), so an fstab line can be written. --allow-other lets other local accounts use the mount, \
with Unix permission bits enforced by the kernel; for non-root users it needs \
`user_allow_other` in /etc/fuse.conf.",
    after_help = "Examples:\n  coffer mount ~/vault ~/private --identity alice.key\n  \
coffer mount ~/vault /srv/shared --allow-other -o noatime,nodev"
)]
pub struct Args {
    /// The vault directory.
    #[arg(value_name = "VAULT")]
    pub vault: PathBuf,
    /// An existing, empty directory to mount on.
    #[arg(value_name = "MNT")]
    pub mountpoint: PathBuf,
    /// Mount read-only (nothing in the vault changes).
    #[arg(long)]
    pub read_only: bool,
    /// Stay attached to the terminal and log to stderr.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Let other local users use the mount (permission bits still apply).
    #[arg(long)]
    pub allow_other: bool,
    /// FUSE mount options, comma-separated (repeatable).
    #[arg(short = 'o', value_name = "OPTS", action = clap::ArgAction::Append)]
    pub options: Vec<String>,
}

#[derive(Serialize)]
struct MountedOut {
    vault: String,
    mountpoint: String,
    pid: i32,
    log: Option<String>,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        // Before opening the vault: its log checks run on helper threads, and
        // an arena made for them then would stay with the daemon.
        crate::fs::tune_allocator();
        require_vault(&self.vault)?;
        let vault_path =
            std::fs::canonicalize(&self.vault).map_err(|e| Error::io(&self.vault, e))?;
        let mnt = check_mountpoint(&self.mountpoint)?;
        if mnt.starts_with(&vault_path) || vault_path.starts_with(&mnt) {
            return Err(Error::BadInput(format!(
                "cannot mount {} at {}: the mountpoint and the vault must not contain each other",
                vault_path.display(),
                mnt.display()
            )));
        }
        let mut opts = self.mount_options();
        if !opts.read_only && mounts::on_read_only_mount(&vault_path) {
            // Writes could only fail one by one; say it once and serve reads.
            eprintln!(
                "coffer: {} is on a read-only filesystem; mounting read-only",
                vault_path.display()
            );
            opts.read_only = true;
        }
        if opts.allow_other {
            check_allow_other()?;
        }
        let (vault, name) = ctx.open_vault(&vault_path, opts.read_only)?;
        let mounted = MountedOut {
            vault: vault_path.display().to_string(),
            mountpoint: mnt.display().to_string(),
            pid: std::process::id() as i32,
            log: None,
        };
        if self.foreground {
            let on_ready = move || {
                eprintln!(
                    "coffer: mounted {} at {} as {name}; stop with Ctrl-C or `coffer unmount {}`",
                    mounted.vault, mounted.mountpoint, mounted.mountpoint
                );
            };
            return serve(vault, &mnt, &opts, Box::new(on_ready));
        }
        background(ctx, vault, &mnt, &opts, name, mounted)
    }
}

impl Args {
    /// `--read-only`, `--allow-other` and `-o`, where `ro` and `allow_other` are
    /// recognised and the rest go to FUSE as they are.
    fn mount_options(&self) -> MountOptions {
        let mut opts = MountOptions {
            read_only: self.read_only,
            allow_other: self.allow_other,
            extra: Vec::new(),
        };
        for o in self.options.iter().flat_map(|s| s.split(',')) {
            match o.trim() {
                "" => {}
                "ro" => opts.read_only = true,
                "allow_other" => opts.allow_other = true,
                other => opts.extra.push(other.to_string()),
            }
        }
        opts
    }
}

/// MNT must be an existing directory with nothing mounted on it. Returns it resolved.
fn check_mountpoint(path: &Path) -> Result<PathBuf> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::BadInput(format!(
                "mountpoint {} does not exist; create it with `mkdir`",
                path.display()
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(Error::BadInput(format!(
                "mountpoint {} is busy: a mount there lost its process; run `coffer unmount {}` first",
                path.display(),
                path.display()
            )))
        }
        Err(e) => return Err(Error::io(path, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::BadInput(format!(
                "mountpoint {} is not a directory",
                path.display()
            )))
        }
        Ok(_) => {}
    }
    let mnt = mounts::resolve(path)?;
    if mounts::is_mountpoint(&mnt) {
        return Err(Error::BadInput(format!(
            "mountpoint {} is busy: something is already mounted there",
            mnt.display()
        )));
    }
    Ok(mnt)
}

/// Non-root users need `user_allow_other` in /etc/fuse.conf; say so up front.
fn check_allow_other() -> Result<()> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(true);
    if root {
        return Ok(());
    }
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if conf.lines().any(|l| l.trim() == "user_allow_other") {
        return Ok(());
    }
    Err(Error::BadInput(
        "--allow-other needs `user_allow_other` in /etc/fuse.conf (ask an administrator to add it)"
            .into(),
    ))
}

/// Mounts and serves until unmounted; SIGINT/SIGTERM/SIGHUP unmount (a second
/// one detaches lazily if the mount is busy).
fn serve(
    vault: Vault,
    mnt: &Path,
    opts: &MountOptions,
    on_ready: Box<dyn FnOnce() + Send>,
) -> Result<()> {
    // Before fs::mount creates its threads, so that they inherit the mask.
    let signals = daemon::block_stop_signals()
        .map_err(|e| Error::Other(format!("cannot set up signal handling: {e}")))?;
    let target = mnt.to_path_buf();
    std::thread::Builder::new()
        .name("coffer-signals".into())
        .spawn(move || {
            let mut count = 0;
            while let Ok(sig) = signals.wait() {
                count += 1;
                let lazy = count > 1;
                log::info!(
                    "signal {sig}: unmounting {}{}",
                    target.display(),
                    if lazy { " (lazily)" } else { "" }
                );
                if let Err(e) = mounts::unmount(&target, lazy) {
                    log::warn!("{e}; send the signal again to detach it lazily");
                }
            }
        })
        .map_err(|e| Error::Other(format!("cannot start the signal thread: {e}")))?;
    // The pid file lets `coffer unmount` wait until this process has written out
    // what is pending and exited.
    let pid_file = pid_path_for(mnt);
    if let Err(e) = make_state_dir(&pid_file).and_then(|_| {
        std::fs::write(&pid_file, format!("{}\n", std::process::id()))
            .map_err(|e| Error::io(&pid_file, e))
    }) {
        log::warn!("cannot write {}: {e}", pid_file.display());
    }
    let result = crate::fs::mount(vault, mnt, opts, on_ready);
    let _ = std::fs::remove_file(&pid_file);
    result
}

/// Forks; the parent waits for the child's report and exits, the child serves.
fn background(
    ctx: &Context,
    vault: Vault,
    mnt: &Path,
    opts: &MountOptions,
    name: String,
    mut mounted: MountedOut,
) -> Result<()> {
    let log_path = log_path_for(mnt);
    let log_file = open_log(&log_path)?;
    mounted.log = Some(log_path.display().to_string());
    let forked = daemon::fork_with_pipe().map_err(|e| Error::Other(e.to_string()))?;
    match forked {
        Forked::Parent(wait) => {
            // The child owns the vault now: its drop (saving state) must not run here too.
            std::mem::forget(vault);
            mounted.pid = wait.child;
            match wait.wait() {
                Report::Ready => {
                    if ctx.json {
                        return output::json(&mounted);
                    }
                    if ctx.verbose > 0 {
                        output::line(format!(
                            "mounted {} at {} (pid {}, log {})",
                            mounted.vault,
                            mounted.mountpoint,
                            mounted.pid,
                            log_path.display()
                        ))?;
                    }
                    Ok(())
                }
                Report::Failed { code, message } => {
                    // The child's error, with the child's exit code.
                    eprintln!("coffer: {message}");
                    std::process::exit(if code == 0 { 1 } else { code });
                }
                Report::Vanished => Err(Error::Other(format!(
                    "the mount process exited without mounting; see {}",
                    log_path.display()
                ))),
            }
        }
        Forked::Child(notifier) => {
            let code = child(ctx, vault, mnt, opts, &name, log_file, notifier);
            std::process::exit(code)
        }
    }
}

/// The background process: detach, log to the file, mount, report, serve.
fn child(
    ctx: &Context,
    vault: Vault,
    mnt: &Path,
    opts: &MountOptions,
    name: &str,
    log_file: File,
    notifier: Notifier,
) -> i32 {
    let notifier = Arc::new(Mutex::new(notifier));
    if let Err(e) = daemon::detach(&log_file) {
        let msg = format!("cannot detach the mount process: {e}");
        notifier.lock().unwrap().failed(1, &msg);
        return 1;
    }
    drop(log_file);
    logging::init(ctx.verbose, logging::Default::Daemon);
    log::info!(
        "coffer {} (pid {}): mounting {} at {} as {name}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        vault.paths.root.display(),
        mnt.display()
    );
    let ready = {
        let notifier = notifier.clone();
        let mnt = mnt.to_path_buf();
        Box::new(move || {
            log::info!("mounted at {}", mnt.display());
            notifier.lock().unwrap().ready();
        })
    };
    match serve(vault, mnt, opts, ready) {
        Ok(()) => {
            log::info!("unmounted {}; exiting", mnt.display());
            0
        }
        Err(e) => {
            log::error!("mount at {} failed: {e}", mnt.display());
            let mut n = notifier.lock().unwrap();
            if !n.reported() {
                n.failed(e.exit_code(), &e.to_string());
            }
            e.exit_code()
        }
    }
}

/// `$XDG_STATE_HOME/coffer/mount-<mountpoint with / as _>.log`.
pub fn log_path_for(mnt: &Path) -> PathBuf {
    crate::vault::pin::state_dir().join(format!("mount-{}.log", sanitize(mnt)))
}

/// `$XDG_STATE_HOME/coffer/mount-<mountpoint with / as _>.pid`: the serving process.
pub fn pid_path_for(mnt: &Path) -> PathBuf {
    crate::vault::pin::state_dir().join(format!("mount-{}.pid", sanitize(mnt)))
}

fn sanitize(mnt: &Path) -> String {
    let text = mnt.to_string_lossy();
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s = s.trim_matches('_').to_string();
    if s.is_empty() {
        s = "root".into();
    }
    if s.len() > 120 {
        let hash = crate::crypto::hex(&crate::crypto::hash(text.as_bytes())[..6]);
        s = format!("{}-{hash}", &s[s.len() - 100..]);
    }
    s
}

/// Creates the directory of a state file (mode 0700).
fn make_state_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e)),
        None => Ok(()),
    }
}

fn open_log(path: &Path) -> Result<File> {
    make_state_dir(path)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["coffer", "mount", "v", "m"];
        argv.extend_from_slice(extra);
        match super::super::super::Cli::try_parse_from(argv)
            .unwrap()
            .command
        {
            super::super::super::Command::Mount(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn dash_o_splits_and_recognises_ro_and_allow_other() {
        let o = args(&["-o", "ro,noatime", "-o", "allow_other,,nodev"]).mount_options();
        assert!(o.read_only);
        assert!(o.allow_other);
        assert_eq!(o.extra, vec!["noatime".to_string(), "nodev".to_string()]);
        let plain = args(&[]).mount_options();
        assert!(!plain.read_only && !plain.allow_other && plain.extra.is_empty());
    }

    #[test]
    fn log_names_are_flat() {
        assert_eq!(sanitize(Path::new("/tmp/my mnt/a")), "tmp_my_mnt_a");
        assert_eq!(sanitize(Path::new("/")), "root");
        let long = format!("/{}", "x".repeat(300));
        assert!(sanitize(Path::new(&long)).len() < 120);
    }

    #[test]
    fn mountpoint_errors_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = check_mountpoint(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.to_string().contains("does not exist"));
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(check_mountpoint(&file).unwrap_err().exit_code(), 2);
        assert_eq!(check_mountpoint(Path::new("/")).unwrap_err().exit_code(), 2);
        assert!(check_mountpoint(dir.path()).is_ok());
    }
}
