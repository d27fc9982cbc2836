//! One file per subcommand. Each defines `pub struct Args` (its doc comment is the
//! command's help) and implements [`Run`]; `cli/mod.rs` lists them once.

pub mod access;
pub mod fork;
pub mod grant;
pub mod init;
pub mod keygen;
pub mod log;
pub mod migrate;
pub mod mount;
pub mod pubkey;
pub mod revoke;
pub mod rotate;
pub mod unmount;
pub mod user;
pub mod verify;

use crate::error::Result;

use super::Context;

/// A subcommand's behaviour, given its parsed arguments and the global options.
pub trait Run {
    fn run(self, ctx: &Context) -> Result<()>;
}

pub use crate::vault::is_valid_member_name;
