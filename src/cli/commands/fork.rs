//! `coffer fork status VAULT`, `coffer fork resolve PATH --keep …`,
//! `coffer fork accept VAULT`: settling forks left by a sync tool that merged
//! two copies of a vault changed apart (see `docs/SECURITY.md`, "Forks").

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::vault::fork::Keep;

use super::super::target::{self, VaultOpt};
use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Find and settle forks: copies of a vault changed apart and merged by a sync tool",
    long_about = "When two copies of a vault are changed apart (a sync folder while offline) and \
merged again by a file-level sync, one file can have two signed versions, or one member's \
history two continuations. coffer reports these as forks (exit 4, EIO in the mount), not as \
tampering. `status` lists them, `resolve` keeps one side or both for a file, `accept` makes \
this machine continue from the vault's history."
)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// List forks and sync-tool conflict copies (exit 4 if there are any).
    Status {
        /// The vault.
        vault: PathBuf,
    },
    /// Settle a forked file: write a new version above both branches.
    Resolve {
        /// The file inside a mounted vault (or relative to --vault).
        path: PathBuf,
        /// current: keep the vault's version; copy: take the conflict copy's;
        /// both: keep the vault's and save the conflict copy's as "NAME (fork N)".
        #[arg(long, value_enum)]
        keep: KeepArg,
        #[command(flatten)]
        vault: VaultOpt,
    },
    /// Continue from the vault's history where it forked from what this machine saw.
    Accept {
        /// The vault.
        vault: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KeepArg {
    Current,
    Copy,
    Both,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        match self.action {
            Action::Status { vault } => status(ctx, vault),
            Action::Resolve { path, keep, vault } => {
                let t = target::resolve(ctx, &path, &vault, false)?;
                if !t.entry.is_file {
                    return Err(Error::BadInput(format!(
                        "{}: not a regular file",
                        path.display()
                    )));
                }
                let keep = match keep {
                    KeepArg::Current => Keep::Current,
                    KeepArg::Copy => Keep::Copy,
                    KeepArg::Both => Keep::Both,
                };
                let r = t
                    .vault
                    .resolve_fork(&t.entry.backing, &t.entry.plain, keep)?;
                t.vault.sync()?;
                if ctx.json {
                    return output::json(&r);
                }
                output::line(format!(
                    "{}: fork settled at version {}{}; {} conflict cop{} removed",
                    t.entry.plain.display(),
                    r.version,
                    r.saved_as
                        .as_ref()
                        .map(|n| format!(", the other side saved as \"{n}\""))
                        .unwrap_or_default(),
                    r.removed.len(),
                    if r.removed.len() == 1 { "y" } else { "ies" }
                ))
            }
            Action::Accept { vault } => {
                let (v, _) = ctx.open_vault(&vault, true)?;
                let accepted = v.accept_history()?;
                if ctx.json {
                    return output::json(&serde_json::json!({ "accepted": accepted }));
                }
                if accepted.is_empty() {
                    return output::line(
                        "nothing to accept: this machine's state matches the vault",
                    );
                }
                for a in &accepted {
                    output::line(format!("accepted  {a}"))?;
                }
                output::line("changes made only in the other copy of the vault are not in this one")
            }
        }
    }
}

fn status(ctx: &Context, vault: PathBuf) -> Result<()> {
    let (v, _) = ctx.open_vault(&vault, true)?;
    let report = v.verify(&|_, _| {});
    if ctx.json {
        output::json(&serde_json::json!({ "forks": report.forks }))?;
    } else if report.forks.is_empty() {
        output::line("no forks")?;
    } else {
        for f in &report.forks {
            output::line(format!("FORK  {}: {}", f.path, f.problem))?;
        }
    }
    if report.forks.is_empty() {
        Ok(())
    } else {
        Err(Error::fork(format!(
            "{} fork(s) in {}",
            report.forks.len(),
            vault.display()
        )))
    }
}
