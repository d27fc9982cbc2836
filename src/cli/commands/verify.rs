//! `coffer verify VAULT [--json]`

use std::path::PathBuf;

use crate::error::{Error, Result};

use super::super::{output, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Check a whole vault for tampering, offline",
    long_about = "Check every member record, directory, name, file (access list, signed \
manifest, every chunk against its signed hash), and every member's signed history, \
also against what this machine saw before (rollback). Exit 0 when clean, 4 on any integrity \
failure, listing each bad path and why.\n\n\
With --deep, also decrypt every chunk of the files you hold read on, and check every signature \
(history, access lists, manifests) again rather than trusting what this machine verified before."
)]
pub struct Args {
    /// The vault.
    pub vault: PathBuf,
    /// Also decrypt contents you can read, and re-check every history signature.
    #[arg(long)]
    pub deep: bool,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        super::super::context::require_vault(&self.vault)?;
        let config = crate::vault::read_config(&crate::store::VaultPaths::new(&self.vault))?;
        let pin = crate::vault::pin::state_dir()
            .join("vaults")
            .join(format!("{}.pin", crate::crypto::hex(&config.vault_id)));
        let first_contact = !pin.exists();
        let (vault, _) = ctx.open_vault(&self.vault, true)?;
        // The total is known only once the tree is walked; `progress` hides a
        // bar created without one, so this bar is made here.
        let pb = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let opts = crate::vault::verify::VerifyOptions { deep: self.deep };
        let report = vault.verify_with(opts, &|done, total| {
            pb.set_length(total);
            pb.set_position(done);
        });
        pb.finish_and_clear();
        if ctx.json {
            output::json(&serde_json::json!({
                "ok": report.ok(),
                "first_contact": first_contact,
                "files": report.files,
                "directories": report.directories,
                "bytes": report.bytes,
                "decrypted_files": report.decrypted_files,
                "log_entries": report.log_entries,
                "failures": report.failures,
                "warnings": report.warnings,
                "forks": report.forks,
            }))?;
        } else {
            if first_contact {
                output::line("first contact with this vault on this machine: its admin key is now trusted (TOFU)")?;
            }
            for f in &report.failures {
                output::line(format!("FAIL  {}: {}", f.path, f.problem))?;
            }
            for f in &report.forks {
                output::line(format!("FORK  {}: {}", f.path, f.problem))?;
            }
            for w in &report.warnings {
                output::line(format!("warn  {}: {}", w.path, w.problem))?;
            }
            let contents = if self.deep {
                format!("{} decrypted", report.decrypted_files)
            } else {
                "contents checked by hash; --deep also decrypts".to_string()
            };
            output::line(format!(
                "{}: {} file(s) ({contents}), {} director(ies), {} bytes, {} history entries; {} failure(s), {} fork(s), {} warning(s)",
                if report.failures.is_empty() && !report.forks.is_empty() { "FORKED" } else if report.ok() { "ok" } else { "INTEGRITY FAILURE" },
                report.files,
                report.directories,
                report.bytes,
                report.log_entries,
                report.failures.len(),
                report.forks.len(),
                report.warnings.len()
            ))?;
        }
        if report.ok() {
            Ok(())
        } else if report.failures.is_empty() {
            Err(Error::fork(format!(
                "{} fork(s) in {} (copies changed apart and merged; not tampering): \
                 see `coffer fork status`",
                report.forks.len(),
                self.vault.display()
            )))
        } else {
            Err(Error::integrity(format!(
                "{} problem(s) found in {}",
                report.failures.len(),
                self.vault.display()
            )))
        }
    }
}
