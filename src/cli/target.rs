//! Resolving a PATH argument of the sharing commands: a path inside a live
//! mount (the vault is found from the mount table), or `--vault VAULT` plus a
//! path relative to the vault root.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::vault::resolve::{locate_in_mount, WalkEntry};
use crate::vault::Vault;

use super::Context;

/// The `--vault` option shared by the path-taking commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct VaultOpt {
    /// Operate on VAULT directly (PATH is then relative to the vault root), for
    /// when the vault is not mounted.
    #[arg(long, value_name = "VAULT")]
    pub vault: Option<PathBuf>,
}

pub struct Target {
    pub vault: Vault,
    /// The entry's backing path and its plaintext path from the vault root.
    pub entry: WalkEntry,
}

/// Opens the vault holding `path` and finds the entry.
pub fn resolve(ctx: &Context, path: &Path, opt: &VaultOpt, read_only: bool) -> Result<Target> {
    let (root, rel) = match &opt.vault {
        Some(v) => {
            let rel: PathBuf = path
                .components()
                .filter(|c| !matches!(c, std::path::Component::RootDir))
                .collect();
            (v.clone(), rel)
        }
        None => {
            let (mount, rel) = locate_in_mount(path)?;
            (mount.vault_root, rel)
        }
    };
    let (vault, _) = ctx.open_vault(&root, read_only)?;
    let backing = vault.backing_path(&rel).map_err(|e| match e {
        Error::NotFound(_) => {
            Error::BadInput(format!("{}: no such file in the vault", path.display()))
        }
        other => other,
    })?;
    let m = std::fs::symlink_metadata(&backing).map_err(|e| Error::io(&backing, e))?;
    let plain = Path::new("/").join(&rel);
    Ok(Target {
        vault,
        entry: WalkEntry {
            backing,
            plain,
            is_dir: m.is_dir(),
            is_file: m.is_file(),
        },
    })
}

/// The entries a command applies to: the entry itself, or with `-r` on a
/// directory, everything below it. Undecryptable names are reported.
pub fn entries(t: &Target, recursive: bool) -> Result<Vec<WalkEntry>> {
    if !t.entry.is_dir {
        return Ok(vec![t.entry.clone()]);
    }
    if !recursive {
        return Err(Error::BadInput(format!(
            "{} is a directory; use -r to apply to everything in it (and to files created there later)",
            t.entry.plain.display()
        )));
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    t.vault
        .walk(&t.entry.backing, &t.entry.plain, &mut out, &mut bad);
    if let Some((p, e)) = bad.into_iter().next() {
        return Err(Error::integrity(format!("{}: {e}", p.display())));
    }
    Ok(out)
}

/// A progress bar on stderr when it is a terminal and the job is long enough.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || len < 2 {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// What a change per file mostly waits for, which sets how many run at once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Re-encrypting content: one worker per core (each holds chunk buffers).
    Content,
    /// Access changes: a little public-key crypto and a sidecar replaced by
    /// rename, which on a filesystem with online discard waits a millisecond
    /// for the old sidecar's blocks to be trimmed: four workers per core keep
    /// the cores busy while others wait.
    Metadata,
}

/// Applies a change to every entry: in batch mode when there are several (no
/// fsync per file, one syncfs at the end), then saves this machine's state.
pub fn apply<F>(t: &Target, items: &[WalkEntry], what: &str, work: Work, f: F) -> Result<()>
where
    F: Fn(&WalkEntry) -> Result<()> + Sync,
{
    let batch = items.len() > 1;
    if batch {
        let _ = crate::store::reaper::start_global();
    }
    t.vault.set_batch(batch);
    let result = for_each(items, what, work, f);
    if batch {
        t.vault.sync()?;
    }
    t.vault.save_state();
    result
}

/// Runs `f` over many entries on a few threads per core (see [`Work`]; each
/// entry is an independent file). A failure on one entry is reported and the
/// worst error is returned at the end, so `-r` does as much as it may.
pub fn for_each<F>(items: &[WalkEntry], what: &str, work: Work, f: F) -> Result<()>
where
    F: Fn(&WalkEntry) -> Result<()> + Sync,
{
    if items.len() == 1 {
        return f(&items[0]);
    }
    let pb = progress(items.len() as u64, what);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worst: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        * if work == Work::Metadata { 4 } else { 1 };
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(e) = items.get(i) else { break };
                if let Err(err) = f(e) {
                    pb.suspend(|| eprintln!("coffer: {}: {err}", e.plain.display()));
                    let mut w = worst
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if w.as_ref().is_none_or(|w| err.exit_code() > w.exit_code()) {
                        *w = Some(err);
                    }
                }
                pb.inc(1);
            });
        }
    });
    pb.finish_and_clear();
    match worst
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
