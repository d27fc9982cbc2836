//! `coffer revoke PATH USER [--update] [--lazy] [-r]`

use std::path::PathBuf;

use crate::error::Result;
use crate::format::Right;
use crate::vault::share::RevokeMode;

use super::super::target::{self, VaultOpt};
use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Take a member's rights on a file away",
    long_about = "Take USER's rights on PATH: read and update, or only update with --update. \
Needs the update right, or USER is yourself. Taking read starts a new key epoch wrapped for the \
remaining readers and re-encrypts the content now; --lazy leaves the re-encryption to the next \
write or `coffer migrate` (the member is out at once either way). Members USER granted keep \
their rights: revoke them explicitly if needed.",
    after_help = "Examples:\n  coffer revoke ~/private/report.pdf bob\n  coffer revoke ~/private/report.pdf bob --update"
)]
pub struct Args {
    /// A file or directory inside a mounted vault (or relative to --vault).
    pub path: PathBuf,
    /// The member's name or member id.
    pub user: String,
    /// Take only the update right (the member keeps read).
    #[arg(long)]
    pub update: bool,
    /// Record the revocation now, re-encrypt later (next write or `coffer migrate`).
    #[arg(long)]
    pub lazy: bool,
    /// Apply to a directory's whole tree and its default grants.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub vault: VaultOpt,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let t = target::resolve(ctx, &self.path, &self.vault, false)?;
        let member = t.vault.find_member(&self.user)?;
        let id = member.public.member_id();
        let right = if self.update {
            Right::Update
        } else {
            Right::Read
        };
        let mode = if self.lazy {
            RevokeMode::Lazy
        } else {
            RevokeMode::Eager
        };
        let items = target::entries(&t, self.recursive)?;
        let changed = std::sync::atomic::AtomicU64::new(0);
        // Taking only update, or a lazy revocation, re-encrypts nothing.
        let work = if mode == RevokeMode::Lazy || right == Right::Update {
            target::Work::Metadata
        } else {
            target::Work::Content
        };
        let result = target::apply(&t, &items, "revoking", work, |e| {
            if e.is_dir {
                return t.vault.update_dir_defaults(&e.backing, |d| {
                    d.updaters.retain(|m| *m != id);
                    if right == Right::Read {
                        d.readers.retain(|m| *m != id);
                    }
                });
            }
            if !e.is_file {
                return Ok(());
            }
            let mut f = t
                .vault
                .open_file(&e.backing, e.plain.display().to_string())?;
            if f.revoke(&t.vault, id, right, mode)? {
                changed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        });
        result?;
        let changed = changed.load(std::sync::atomic::Ordering::Relaxed);
        let word = if self.update {
            "update"
        } else {
            "read and update"
        };
        let shown = t.entry.plain.display();
        if ctx.json {
            output::json(&serde_json::json!({
                "path": shown.to_string(), "user": member.name,
                "right": if self.update { "update" } else { "read" },
                "lazy": self.lazy, "files_changed": changed
            }))
        } else if changed == 0 && !t.entry.is_dir {
            output::line(format!("{} holds no such right on {shown}", member.name))
        } else {
            let how = if self.lazy && !self.update {
                " (content stays on the old key until the next write or `coffer migrate`)"
            } else {
                ""
            };
            output::line(format!("revoked {word} of {} on {shown}{how}", member.name))
        }
    }
}
