//! `coffer grant PATH USER --read|--update [-r]`

use std::path::PathBuf;

use crate::error::Result;
use crate::format::Right;

use super::super::target::{self, VaultOpt};
use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Give a member the right to read or to update a file",
    long_about = "Give USER the read right (--read) or the update right (--update, which includes \
read) on PATH. Holding read lets you grant read; holding update lets you grant update. With -r \
on a directory: every file below it, and files created there later (directory defaults).",
    after_help = "Examples:\n  coffer grant ~/private/report.pdf bob --read\n  coffer grant ~/private/team carol --update -r"
)]
pub struct Args {
    /// A file or directory inside a mounted vault (or relative to --vault).
    pub path: PathBuf,
    /// The member's name (see `coffer user list`) or member id.
    pub user: String,
    /// Grant the read right.
    #[arg(long, conflicts_with = "update", required_unless_present = "update")]
    pub read: bool,
    /// Grant the update right (includes read).
    #[arg(long)]
    pub update: bool,
    /// Apply to a directory's whole tree and set its default grants.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub vault: VaultOpt,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let t = target::resolve(ctx, &self.path, &self.vault, false)?;
        let member = t.vault.find_member(&self.user)?;
        let right = if self.update {
            Right::Update
        } else {
            Right::Read
        };
        let word = if self.update { "update" } else { "read" };
        let items = target::entries(&t, self.recursive)?;
        let id = member.public.member_id();
        let changed = std::sync::atomic::AtomicU64::new(0);
        let result = target::apply(&t, &items, "granting", target::Work::Metadata, |e| {
            if e.is_dir {
                return t.vault.update_dir_defaults(&e.backing, |d| {
                    d.readers.push(id);
                    if right == Right::Update {
                        d.updaters.push(id);
                    }
                });
            }
            if !e.is_file {
                return Ok(());
            }
            let mut f = t
                .vault
                .open_file(&e.backing, e.plain.display().to_string())?;
            if f.grant(&t.vault, &member, right)? {
                changed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        });
        result?;
        let changed = changed.load(std::sync::atomic::Ordering::Relaxed);
        let shown = t.entry.plain.display();
        if ctx.json {
            output::json(&serde_json::json!({
                "path": shown.to_string(), "user": member.name, "right": word, "files_changed": changed
            }))
        } else if changed == 0 && !t.entry.is_dir {
            output::line(format!("{} already holds {word} on {shown}", member.name))
        } else if t.entry.is_dir {
            output::line(format!(
                "granted {word} to {} on {changed} file(s) under {shown}; new files there get it too",
                member.name
            ))
        } else {
            output::line(format!("granted {word} on {shown} to {}", member.name))
        }
    }
}
