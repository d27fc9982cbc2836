//! `coffer user add|list`: the members of a vault.

use std::path::PathBuf;

use crate::crypto::PublicIdentity;
use crate::error::{Error, Result};

use super::super::output::{self, MemberOut};
use super::super::Context;
use super::{is_valid_member_name, Run};

#[derive(clap::Args, Debug)]
#[command(
    about = "Add and list the members of a vault",
    long_about = "Manage who belongs to a vault. Members are identities (public keys) signed \
into the vault by its admin; being a member lets you mount the vault and see names, while \
each file's contents stay readable only by those it is shared with."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a member (vault admin only).
    #[command(
        long_about = "Add a member to VAULT under NAME, with the public key they printed with \
`coffer keygen` or `coffer pubkey`. Only the vault admin can add members (exit 3 otherwise).",
        after_help = "Example:\n  coffer user add ~/vault bob coffer1... --identity alice.key"
    )]
    Add {
        /// The vault.
        #[arg(value_name = "VAULT")]
        vault: PathBuf,
        /// The new member's name (1-64 letters, digits, '-', '_', '.', '@').
        #[arg(value_name = "NAME")]
        name: String,
        /// The new member's public key (`coffer1...`).
        #[arg(value_name = "PUBKEY", allow_hyphen_values = true)]
        pubkey: String,
    },
    /// List the members: name, member id, admin flag, public key.
    #[command(
        long_about = "List the members of VAULT: name, member id, whether they are the admin, \
and their public key. Needs an identity that is a member. --json prints an array of \
{name, id, admin, public_key}."
    )]
    List {
        /// The vault.
        #[arg(value_name = "VAULT")]
        vault: PathBuf,
    },
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        match self.command {
            UserCommand::Add {
                vault,
                name,
                pubkey,
            } => add(ctx, vault, &name, &pubkey),
            UserCommand::List { vault } => list(ctx, vault),
        }
    }
}

fn add(ctx: &Context, vault: PathBuf, name: &str, pubkey: &str) -> Result<()> {
    // Check what needs no secrets first: bad input costs no passphrase prompt.
    if !is_valid_member_name(name) {
        return Err(Error::BadInput(format!(
            "invalid member name '{name}': use 1-64 letters, digits, '-', '_', '.', '@'"
        )));
    }
    let public = PublicIdentity::decode(pubkey)?;
    let (vault, _) = ctx.open_vault(&vault, false)?;
    let record = vault.add_member(name, &public)?;
    let report = MemberOut::from(&record);
    if ctx.json {
        return output::json(&report);
    }
    output::line(format!(
        "added {} (member id {}) to {}",
        report.name,
        report.id,
        vault.paths.root.display()
    ))
}

fn list(ctx: &Context, vault: PathBuf) -> Result<()> {
    let (vault, _) = ctx.open_vault(&vault, true)?;
    let members: Vec<MemberOut> = vault.members().iter().map(MemberOut::from).collect();
    if ctx.json {
        return output::json(&members);
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.id.clone(),
                if m.admin { "yes" } else { "no" }.to_string(),
                m.public_key.clone(),
            ]
        })
        .collect();
    output::line(output::table(
        &["NAME", "MEMBER ID", "ADMIN", "PUBLIC KEY"],
        &rows,
    ))
}
