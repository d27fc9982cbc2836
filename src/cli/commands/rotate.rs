//! `coffer rotate PATH [-r]`

use std::path::PathBuf;

use crate::error::Result;

use super::super::target::{self, VaultOpt};
use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Start a new key epoch and re-encrypt a file",
    long_about = "Give PATH a fresh content key (a new key epoch), wrapped for exactly its \
current readers, and re-encrypt its content so the stored ciphertext changes. Needs the update \
right. With -r: every file below a directory."
)]
pub struct Args {
    /// A file or directory inside a mounted vault (or relative to --vault).
    pub path: PathBuf,
    /// Every file below a directory.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub vault: VaultOpt,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let t = target::resolve(ctx, &self.path, &self.vault, false)?;
        let items = target::entries(&t, self.recursive)?;
        let files = std::sync::atomic::AtomicU64::new(0);
        let epoch = std::sync::atomic::AtomicU64::new(0);
        let result = target::apply(&t, &items, "rotating", target::Work::Content, |e| {
            if !e.is_file {
                return Ok(());
            }
            let mut f = t
                .vault
                .open_file(&e.backing, e.plain.display().to_string())?;
            f.rotate(&t.vault)?;
            epoch.store(
                u64::from(f.access().epoch),
                std::sync::atomic::Ordering::Relaxed,
            );
            files.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        });
        result?;
        let files = files.load(std::sync::atomic::Ordering::Relaxed);
        let epoch = epoch.load(std::sync::atomic::Ordering::Relaxed);
        let shown = t.entry.plain.display();
        if ctx.json {
            output::json(
                &serde_json::json!({ "path": shown.to_string(), "files": files, "epoch": epoch }),
            )
        } else if t.entry.is_dir {
            output::line(format!("rotated {files} file(s) under {shown}"))
        } else {
            output::line(format!("rotated {shown}: now on key epoch {epoch}"))
        }
    }
}
