//! `coffer init`: create a vault with the acting identity as admin and first member.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::vault::Vault;

use super::super::identity_file::Loaded;
use super::super::output::{self, MemberOut};
use super::super::Context;
use super::{is_valid_member_name, Run};

#[derive(clap::Args, Debug)]
#[command(
    about = "Create a new vault; you become its admin and first member",
    long_about = "Create a new vault in VAULT (a new or empty directory). The identity given \
with --identity / COFFER_IDENTITY becomes the vault admin (who signs the member list) and \
its first member. Mount it with `coffer mount VAULT MNT`; add members with \
`coffer user add`.",
    after_help = "Example:\n  coffer init ~/vault --identity alice.key"
)]
pub struct Args {
    /// Directory for the new vault (created if missing; must be empty).
    #[arg(value_name = "VAULT")]
    pub vault: PathBuf,
    /// Your member name in this vault (default: the name in the identity file).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Serialize)]
struct InitOut {
    vault: String,
    vault_id: String,
    admin: MemberOut,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        if let Ok(m) = std::fs::metadata(&self.vault) {
            if !m.is_dir() {
                return Err(Error::BadInput(format!(
                    "{} exists and is not a directory",
                    self.vault.display()
                )));
            }
        }
        if let Some(name) = &self.name {
            if !is_valid_member_name(name) {
                return Err(Error::BadInput(format!(
                    "invalid member name '{name}': use 1-64 letters, digits, '-', '_', '.', '@'"
                )));
            }
        }
        let Loaded { identity, name, .. } = ctx.load_identity()?;
        let name = self.name.unwrap_or(name);
        let vault = Vault::init(&self.vault, identity, &name)?;
        let report = InitOut {
            vault: self.vault.display().to_string(),
            vault_id: crate::crypto::hex(&vault.config.vault_id),
            admin: MemberOut::new(&name, vault.me.public(), true),
        };
        if ctx.json {
            return output::json(&report);
        }
        output::line(format!(
            "created vault {} (id {}); {} (member id {}) is its admin and first member",
            report.vault, report.vault_id, report.admin.name, report.admin.id
        ))
    }
}
