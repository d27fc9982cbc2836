//! Global options, accepted by every subcommand, and what commands derive from them:
//! the identity to act as and an opened vault.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::VaultPaths;
use crate::vault::Vault;

use super::identity_file::{self, Loaded};
use super::passphrase;

/// Options that every subcommand accepts, before or after its own arguments.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Identity file to act as (from `coffer keygen`).
    #[arg(long, global = true, env = "COFFER_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print machine-readable JSON instead of text (commands that report something).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// What a command runs with.
pub struct Context {
    pub identity: Option<PathBuf>,
    pub json: bool,
    pub verbose: u8,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Self {
        Context {
            identity: global.identity.filter(|p| !p.as_os_str().is_empty()),
            json: global.json,
            verbose: global.verbose,
        }
    }

    /// The identity file named by `--identity` / `COFFER_IDENTITY`.
    pub fn identity_path(&self) -> Result<&Path> {
        self.identity.as_deref().ok_or_else(|| {
            Error::BadInput("no identity: pass --identity FILE or set COFFER_IDENTITY".into())
        })
    }

    /// Loads the acting identity, asking for its passphrase if it is sealed.
    pub fn load_identity(&self) -> Result<Loaded> {
        identity_file::load(self.identity_path()?, passphrase::existing)
    }

    /// Opens `path` as the acting identity. Checks that `path` is a vault before
    /// asking for a passphrase, so a typo costs no prompt.
    /// Returns the vault and the name in the identity file.
    pub fn open_vault(&self, path: &Path, read_only: bool) -> Result<(Vault, String)> {
        require_vault(path)?;
        let Loaded { identity, name, .. } = self.load_identity()?;
        let vault = Vault::open(path, identity, read_only)?;
        Ok((vault, name))
    }
}

/// Fails with exit 2 unless `path` is a coffer vault.
pub fn require_vault(path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::BadInput(format!(
            "{} does not exist (expected a coffer vault; create one with `coffer init`)",
            path.display()
        )));
    }
    if !VaultPaths::is_vault(path) {
        return Err(Error::BadInput(format!(
            "{} is not a coffer vault (no {}); create one with `coffer init`",
            path.display(),
            crate::store::CONFIG_FILE
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_identity_is_bad_input() {
        let ctx = Context::new(GlobalArgs::default());
        let err = ctx.load_identity().err().unwrap();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("COFFER_IDENTITY"));
    }

    #[test]
    fn non_vault_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(require_vault(dir.path()).unwrap_err().exit_code(), 2);
        assert_eq!(
            require_vault(&dir.path().join("nope"))
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
