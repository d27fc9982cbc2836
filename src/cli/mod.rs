//! The `coffer` command line: a thin layer over the library.
//!
//! - `mod.rs`: the clap definition of the top level and the dispatch
//! - `context.rs`: global options (`--identity`, `--json`, `-v`) and what they resolve to
//! - `commands/`: one file per subcommand (`keygen.rs`, `user.rs`, `mount.rs`, ...)
//! - `identity_file.rs`: loading and saving identity files (0600, atomic)
//! - `passphrase.rs`: `COFFER_PASSPHRASE` or a prompt on the terminal
//! - `mounts.rs`: the mount table: is a path a mountpoint, unmounting
//! - `daemon.rs`: fork/setsid/dup2 and signal masks (the only `unsafe` in the CLI)
//! - `logging.rs`: env_logger behind a logger whose filter can change after fork
//! - `output.rs`: stdout lines, tables and JSON
//!
//! Exit codes come from [`crate::Error::exit_code`]: 0 ok, 2 bad input, 3 access
//! denied, 4 integrity failure, 5 storage I/O error, 1 anything else. Every error
//! is one line on stderr, `coffer: <message>`.
//!
//! Adding a subcommand: write `commands/<name>.rs` with a `pub struct Args` (clap
//! `Args`, its doc comment is the help text) implementing [`commands::Run`], and add
//! one line to the `subcommands!` list below.
#![deny(unsafe_code)]

pub mod commands;
pub mod context;
pub mod daemon;
pub mod identity_file;
pub mod logging;
pub mod mounts;
pub mod output;
pub mod passphrase;
pub mod target;

use clap::Parser;

use crate::error::Result;
use commands::Run;
pub use context::{Context, GlobalArgs};

/// Declares the subcommand enum and its dispatch from one list.
macro_rules! subcommands {
    ($($(#[$meta:meta])* $variant:ident($module:ident)),* $(,)?) => {
        #[derive(clap::Subcommand, Debug)]
        pub enum Command {
            $($(#[$meta])* $variant(commands::$module::Args),)*
        }

        impl Command {
            fn run(self, ctx: &Context) -> Result<()> {
                match self {
                    $(Command::$variant(args) => args.run(ctx),)*
                }
            }
        }
    };
}

subcommands! {
    Keygen(keygen),
    Pubkey(pubkey),
    Init(init),
    User(user),
    Mount(mount),
    #[command(alias = "umount")]
    Unmount(unmount),
    Grant(grant),
    Revoke(revoke),
    Rotate(rotate),
    Access(access),
    Migrate(migrate),
    Verify(verify),
    Log(log),
    Fork(fork),
}

/// coffer: an encrypted filesystem with per-user access control.
#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    about = "coffer: an encrypted filesystem with per-user cryptographic access control",
    long_about = "coffer keeps a directory of ciphertext (a vault) that members mount with \
their own identity and use with ordinary tools. Every file is encrypted under its own key, \
wrapped for each member who may read it; names are encrypted too.\n\n\
Start with `coffer keygen --out me.key`, then `coffer init VAULT --identity me.key` and \
`coffer mount VAULT MNT --identity me.key`.\n\n\
Exit codes: 0 ok, 1 other error, 2 bad input, 3 access denied (no right, wrong \
passphrase, wrong identity), 4 integrity failure (tampering, rollback), 5 storage I/O error.",
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    run_with_args(args)
}

/// Runs `coffer` with the given argv (argv[0] included); returns the exit code.
pub fn run_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 2,
            };
            // Printing can only fail if stderr/stdout is gone; nothing left to tell.
            let _ = e.print();
            return code;
        }
    };
    logging::init(cli.global.verbose, logging::Default::Interactive);
    daemon::no_core_dumps();
    install_panic_hook();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli)));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            report(&e);
            e.exit_code()
        }
        // The panic hook already printed one line.
        Err(_) => 1,
    }
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    let ctx = Context::new(cli.global);
    cli.command.run(&ctx)
}

/// Prints an error as the one line the user sees.
pub fn report(e: &crate::Error) {
    eprintln!("coffer: {}", one_line(&e.to_string()));
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Panics print one line (no backtrace) and the command exits 1.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "panic".to_string()
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "coffer: internal error: {}{at} (this is a bug; please report it)",
            one_line(&msg)
        );
        log::error!("internal error: {msg}{at}");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn code(args: &[&str]) -> i32 {
        match Cli::try_parse_from(args) {
            Ok(_) => 0,
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 2,
            },
        }
    }

    #[test]
    fn global_options_after_subcommands() {
        let cli = Cli::try_parse_from([
            "coffer",
            "user",
            "list",
            "v",
            "--json",
            "--identity",
            "a.key",
            "-vv",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(
            cli.global.identity.as_deref(),
            Some(std::path::Path::new("a.key"))
        );
    }

    #[test]
    fn usage_errors_are_exit_2_and_help_is_0() {
        assert_eq!(code(&["coffer", "frobnicate"]), 2);
        assert_eq!(code(&["coffer", "user", "add", "v"]), 2);
        assert_eq!(code(&["coffer", "--help"]), 0);
        assert_eq!(code(&["coffer", "--version"]), 0);
        assert_eq!(code(&["coffer", "mount", "--help"]), 0);
    }

    #[test]
    fn unmount_has_umount_alias() {
        assert!(Cli::try_parse_from(["coffer", "umount", "/mnt"]).is_ok());
    }

    /// Exit code of a command run in-process (as `main` would map it).
    fn exec(args: &[&str]) -> i32 {
        match Cli::try_parse_from(args) {
            Ok(cli) => dispatch(cli).map(|_| 0).unwrap_or_else(|e| e.exit_code()),
            Err(_) => 2,
        }
    }

    #[test]
    fn keygen_init_user_add_list_and_their_exit_codes() {
        std::env::set_var("COFFER_TEST_FAST_KDF", "1");
        // Per-machine vault pins (keyed by random vault ids) go to one fixed
        // directory, never deleted while other tests in this process may use it.
        std::env::set_var(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("coffer-cli-unit-state"),
        );
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let (a, b, c, vault) = (p("a.key"), p("b.key"), p("c.key"), p("vault"));
        for key in [&a, &b, &c] {
            assert_eq!(
                exec(&["coffer", "keygen", "--out", key, "--no-passphrase"]),
                0
            );
        }
        assert_eq!(
            exec(&["coffer", "keygen", "--out", &a, "--no-passphrase"]),
            2
        );
        assert_eq!(exec(&["coffer", "init", &vault]), 2, "no identity");
        assert_eq!(exec(&["coffer", "init", &vault, "--identity", &a]), 0);
        assert_eq!(
            exec(&["coffer", "init", &vault, "--identity", &a]),
            2,
            "not empty"
        );
        let load = |k: &str| identity_file::load(std::path::Path::new(k), passphrase::existing);
        let b_pub = load(&b).unwrap().identity.public().encode();
        let c_pub = load(&c).unwrap().identity.public().encode();
        assert_eq!(
            exec(&[
                "coffer",
                "user",
                "add",
                &vault,
                "bob",
                &b_pub,
                "--identity",
                &a
            ]),
            0
        );
        assert_eq!(
            exec(&[
                "coffer",
                "user",
                "add",
                &vault,
                "bob",
                &b_pub,
                "--identity",
                &a
            ]),
            2
        );
        assert_eq!(
            exec(&[
                "coffer",
                "user",
                "add",
                &vault,
                "x",
                "coffer1nope",
                "--identity",
                &a
            ]),
            2
        );
        assert_eq!(
            exec(&[
                "coffer",
                "user",
                "add",
                &vault,
                "carol",
                &c_pub,
                "--identity",
                &b
            ]),
            3
        );
        assert_eq!(
            exec(&["coffer", "user", "list", &vault, "--identity", &b, "--json"]),
            0
        );
        assert_eq!(
            exec(&["coffer", "user", "list", &vault, "--identity", &c]),
            3,
            "not a member"
        );
        assert_eq!(
            exec(&["coffer", "user", "list", &p("nope"), "--identity", &a]),
            2
        );
    }

    #[test]
    fn errors_print_on_one_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
