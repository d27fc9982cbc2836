//! `coffer keygen`: create an identity file and print its public key.

use std::path::{Path, PathBuf};

use crate::crypto::Identity;
use crate::error::{Error, Result};

use super::super::identity_file::{self, Protection};
use super::super::output::{self, IdentityOut};
use super::super::{passphrase, Context};
use super::{is_valid_member_name, Run};

#[derive(clap::Args, Debug)]
#[command(
    about = "Create a new identity file and print its public key",
    long_about = "Create a new identity (an X25519 key for receiving file keys and an Ed25519 \
key for signing, both derived from one random seed) and write it to FILE with mode 0600.\n\n\
The seed is sealed under a passphrase (argon2id): it is read from COFFER_PASSPHRASE or asked \
twice on the terminal. --no-passphrase writes it unprotected, for scripts and tests.\n\n\
The last line printed is the public key: give it to a vault admin, who adds you with \
`coffer user add VAULT NAME PUBKEY`.",
    after_help = "Example:\n  coffer keygen --out alice.key --name alice"
)]
pub struct Args {
    /// Where to write the identity file (created with mode 0600).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Member name stored in the file, used by `init` (default: FILE's stem, else $USER).
    #[arg(long)]
    pub name: Option<String>,
    /// Store the secret without a passphrase (anyone who reads the file can act as you).
    #[arg(long)]
    pub no_passphrase: bool,
    /// Overwrite FILE if it exists (the identity in it is lost).
    #[arg(long, short = 'f')]
    pub force: bool,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let name = choose_name(self.name.as_deref(), &self.out)?;
        if !self.force && std::fs::symlink_metadata(&self.out).is_ok() {
            return Err(Error::BadInput(format!(
                "{} already exists; pass --force to overwrite it (the identity in it is then lost)",
                self.out.display()
            )));
        }
        let pass = if self.no_passphrase {
            None
        } else {
            Some(passphrase::new_passphrase(&self.out)?)
        };
        let identity = Identity::generate();
        let protection = match &pass {
            Some(p) => Protection::Passphrase(p.as_bytes()),
            None => Protection::None,
        };
        identity_file::save(&self.out, &name, &identity, protection, self.force)?;
        let report = IdentityOut::new(&name, identity.public(), &self.out, pass.is_some());
        if ctx.json {
            return output::json(&report);
        }
        output::line(format!(
            "wrote identity '{}' (member id {}) to {}, {}",
            report.name,
            report.id,
            report.file,
            if pass.is_some() {
                "protected by a passphrase"
            } else {
                "UNPROTECTED (no passphrase)"
            }
        ))?;
        output::line("public key (for `coffer user add`):")?;
        output::line(&report.public_key)
    }
}

fn choose_name(given: Option<&str>, out: &Path) -> Result<String> {
    if let Some(name) = given {
        if !is_valid_member_name(name) {
            return Err(Error::BadInput(format!(
                "invalid name '{name}': use 1-64 letters, digits, '-', '_', '.', '@'"
            )));
        }
        return Ok(name.to_string());
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).map(str::to_string);
    let user = std::env::var("USER").ok();
    stem.into_iter()
        .chain(user)
        .find(|n| is_valid_member_name(n))
        .ok_or_else(|| Error::BadInput("pass --name NAME for this identity".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_the_file_stem() {
        assert_eq!(
            choose_name(None, Path::new("/tmp/alice.key")).unwrap(),
            "alice"
        );
        assert_eq!(
            choose_name(Some("bob"), Path::new("/tmp/alice.key")).unwrap(),
            "bob"
        );
        assert_eq!(
            choose_name(Some("no spaces"), Path::new("a.key"))
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
