//! `coffer migrate VAULT [--limit N] [--json]`

use std::path::PathBuf;

use crate::error::Result;

use super::super::target::progress;
use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Re-encrypt what is still on old key epochs",
    long_about = "Find every file with content still encrypted under an older key epoch (after \
`revoke --lazy`) and re-encrypt it under the current key. Files you cannot update are left and \
counted. Prints {\"migrated\": N, \"total_left\": M} as the last line with --json.",
    after_help = "Example:\n  coffer migrate ~/vault --limit 100 --json"
)]
pub struct Args {
    /// The vault.
    pub vault: PathBuf,
    /// Migrate at most N files in this pass.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let (vault, _) = ctx.open_vault(&self.vault, false)?;
        let (entries, _) = vault.walk_tree();
        let mut stale = Vec::new();
        for e in entries.iter().filter(|e| e.is_file) {
            if let Ok(f) = vault.open_file_readonly(&e.backing, e.plain.display().to_string()) {
                if f.chunks_on_old_epochs() > 0 {
                    stale.push((e.clone(), f.stale_bytes()));
                }
            }
        }
        let total_bytes: u64 = stale.iter().map(|(_, b)| *b).sum();
        let pb = progress(total_bytes, "migrating");
        vault.set_batch(true);
        let mut migrated = 0u64;
        let mut left = 0u64;
        for (e, bytes) in &stale {
            if self.limit.is_some_and(|l| migrated >= l) {
                left += 1;
                continue;
            }
            let done = vault
                .open_file(&e.backing, e.plain.display().to_string())
                .and_then(|mut f| {
                    if f.can_update(&vault) {
                        f.migrate(&vault).map(|_| true)
                    } else {
                        Ok(false)
                    }
                });
            match done {
                Ok(true) => migrated += 1,
                Ok(false) => left += 1,
                Err(err) => {
                    pb.suspend(|| eprintln!("coffer: {}: {err}", e.plain.display()));
                    left += 1;
                }
            }
            pb.inc(*bytes);
        }
        pb.finish_and_clear();
        vault.sync()?;
        vault.save_state();
        if ctx.json {
            output::json(&serde_json::json!({ "migrated": migrated, "total_left": left }))
        } else {
            output::line(format!(
                "migrated {migrated} file(s); {left} left on old key epochs"
            ))
        }
    }
}
