//! The FUSE adapter: maps kernel requests onto the vault layer.

use std::path::Path;

use crate::error::Result;
use crate::vault::Vault;

/// How to mount.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    /// Extra comma-separated FUSE options (`-o`), already split.
    pub extra: Vec<String>,
}

/// Mounts `vault` at `mountpoint` and serves until it is unmounted.
/// `on_ready` runs once the mount is live (the CLI uses it to release a waiting parent).
pub fn mount(vault: Vault, mountpoint: &Path, opts: &MountOptions, on_ready: Box<dyn FnOnce() + Send>) -> Result<()> {
    let _ = (vault, mountpoint, opts, on_ready);
    Err(crate::error::Error::Other("mount is not built yet".into()))
}
