//! `coffer pubkey`: print the public key of an identity file.

use std::path::PathBuf;

use crate::error::Result;

use super::super::identity_file;
use super::super::output::{self, IdentityOut};
use super::super::{passphrase, Context};
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Print the public key of an identity file",
    long_about = "Print the public key of an identity file (FILE, else --identity / \
COFFER_IDENTITY), as `coffer user add` takes it. A passphrase-protected file needs its \
passphrase (COFFER_PASSPHRASE or a prompt): the file stores only the sealed seed."
)]
pub struct Args {
    /// The identity file (default: --identity / COFFER_IDENTITY).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let path = match &self.file {
            Some(p) => p.as_path(),
            None => ctx.identity_path()?,
        };
        let loaded = identity_file::load(path, passphrase::existing)?;
        let report = IdentityOut::new(
            &loaded.name,
            loaded.identity.public(),
            &loaded.path,
            loaded.protected,
        );
        if ctx.json {
            output::json(&report)
        } else {
            output::line(&report.public_key)
        }
    }
}
