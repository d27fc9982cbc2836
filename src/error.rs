//! One typed error for the library; each variant maps onto a documented exit code
//! class so the CLI and the FUSE adapter agree on what a failure means.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something malformed or impossible (exit 2).
    #[error("{0}")]
    BadInput(String),
    /// The acting identity lacks the right, or the passphrase is wrong (exit 3).
    #[error("{0}")]
    AccessDenied(String),
    /// Stored bytes failed authentication, a signature, or a rollback check (exit 4).
    #[error("integrity failure: {what}")]
    Integrity { what: String },
    /// Two copies of the vault were changed apart and merged (a sync folder):
    /// two validly signed branches of one file or history. Not tampering, but
    /// the reader must choose (`coffer fork`); exit 4 like an integrity failure.
    #[error("fork: {what}")]
    Fork { what: String },
    /// The backing storage failed (exit 5).
    #[error("storage I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be decoded: corrupt or hostile bytes (exit 4).
    #[error("corrupt {kind}: {detail}")]
    Corrupt { kind: &'static str, detail: String },
    /// The vault was written by a newer coffer (exit 2).
    #[error(
        "unsupported format version {found} (this coffer reads up to {supported}); upgrade coffer"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    /// Not found (exit 2 in the CLI, ENOENT in the mount).
    #[error("{0}")]
    NotFound(String),
    /// A file whose creator has not written its first version yet: it has no
    /// signed access list, so nobody holds a right on it (exit 1; EACCES in
    /// the mount). See FORMAT.md, "Created, not yet written".
    #[error("{0}")]
    BeingCreated(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        // Something other than a file where coffer keeps one is the storage's
        // doing (tampering), not an I/O failure.
        if crate::store::is_not_regular(&source) {
            return Error::integrity(format!(
                "{} is not a regular file (a FIFO, socket, device or directory stands \
                 where coffer keeps a file)",
                path.display()
            ));
        }
        Error::Io { path, source }
    }

    pub fn fork(what: impl Into<String>) -> Self {
        Error::Fork { what: what.into() }
    }

    pub fn integrity(what: impl Into<String>) -> Self {
        Error::Integrity { what: what.into() }
    }

    pub fn corrupt(kind: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            kind,
            detail: detail.into(),
        }
    }

    /// Process exit code for this error (see README "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadInput(_) | Error::NotFound(_) | Error::UnsupportedVersion { .. } => 2,
            Error::AccessDenied(_) => 3,
            Error::Integrity { .. } | Error::Corrupt { .. } | Error::Fork { .. } => 4,
            Error::Io { .. } => 5,
            Error::Other(_) | Error::BeingCreated(_) => 1,
        }
    }

    /// errno for the FUSE adapter: denied is EACCES, failed authentication is EIO.
    pub fn errno(&self) -> i32 {
        match self {
            Error::AccessDenied(_) | Error::BeingCreated(_) => libc::EACCES,
            Error::Integrity { .. } | Error::Corrupt { .. } | Error::Fork { .. } => libc::EIO,
            Error::NotFound(_) => libc::ENOENT,
            Error::BadInput(_) => libc::EINVAL,
            Error::UnsupportedVersion { .. } => libc::EPROTO,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Other(_) => libc::EIO,
        }
    }
}
