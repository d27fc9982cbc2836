//! Identity passphrases: `COFFER_PASSPHRASE` if set, else a prompt on the
//! controlling terminal (input hidden), else a bad-input error saying what to set.

use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The environment variable scripts use instead of a prompt.
pub const ENV: &str = "COFFER_PASSPHRASE";

/// The passphrase of an existing identity file.
pub fn existing(path: &Path) -> Result<Zeroizing<String>> {
    if let Some(p) = from_env()? {
        return Ok(p);
    }
    prompt(&format!("Passphrase for {}: ", path.display()))
}

/// A passphrase for a new identity file: asked twice on a terminal. Empty
/// passphrases are refused (`--no-passphrase` says that on purpose).
pub fn new_passphrase(path: &Path) -> Result<Zeroizing<String>> {
    let pass = match from_env()? {
        Some(p) => p,
        None => {
            let first = prompt(&format!("New passphrase for {}: ", path.display()))?;
            let again = prompt("Repeat the passphrase: ")?;
            if *first != *again {
                return Err(Error::BadInput(
                    "the passphrases do not match; nothing was written".into(),
                ));
            }
            first
        }
    };
    if pass.is_empty() {
        return Err(Error::BadInput(
            "empty passphrase; use --no-passphrase for an unprotected identity file".into(),
        ));
    }
    Ok(pass)
}

fn from_env() -> Result<Option<Zeroizing<String>>> {
    match std::env::var(ENV) {
        Ok(p) => Ok(Some(Zeroizing::new(p))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::BadInput(format!("{ENV} is not valid UTF-8")))
        }
    }
}

fn prompt(text: &str) -> Result<Zeroizing<String>> {
    let no_tty = || {
        Error::BadInput(format!(
            "a passphrase is needed but there is no terminal to ask on; set {ENV}"
        ))
    };
    // rpassword prompts on /dev/tty; without a controlling terminal it cannot.
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_err()
    {
        return Err(no_tty());
    }
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|_| no_tty())
}
