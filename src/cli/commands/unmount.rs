//! `coffer unmount`: unmount a coffer mount.

use std::path::PathBuf;

use crate::error::{Error, Result};

use super::super::mounts;
use super::super::output;
use super::super::Context;
use super::Run;

#[derive(clap::Args, Debug)]
#[command(
    about = "Unmount a mounted vault",
    long_about = "Unmount the coffer mount at MNT; the background mount process then writes \
out what is pending and exits. Plain `umount MNT` (as root) or `fusermount3 -u MNT` work \
too. Fails with exit 2 if MNT is not a coffer mount, and with exit 1 if it is busy.",
    after_help = "Example:\n  coffer unmount ~/private"
)]
pub struct Args {
    /// The mountpoint.
    #[arg(value_name = "MNT")]
    pub mountpoint: PathBuf,
    /// Detach now even if files are open (the mount goes away when they are closed).
    #[arg(long, short = 'l')]
    pub lazy: bool,
}

impl Run for Args {
    fn run(self, ctx: &Context) -> Result<()> {
        let mnt = mounts::resolve(&self.mountpoint)?;
        let entry = mounts::entry_at(&mnt);
        match &entry {
            Some(e) if e.is_coffer() => {}
            Some(e) => {
                return Err(Error::BadInput(format!(
                    "{} is a {} mount, not a coffer mount; use umount",
                    mnt.display(),
                    e.fstype
                )))
            }
            None if mounts::mount_table().is_none() && mounts::is_mountpoint(&mnt) => {}
            None => {
                return Err(Error::BadInput(format!(
                    "{} is not a mountpoint",
                    mnt.display()
                )))
            }
        }
        mounts::unmount(&mnt, self.lazy)?;
        // Return once the mount process has written out what is pending and exited,
        // so that a script can go on with the vault.
        if !self.lazy {
            let pid_file = super::mount::pid_path_for(&mnt);
            if !mounts::wait_for_exit(&pid_file, std::time::Duration::from_secs(30)) {
                log::warn!(
                    "{} is unmounted but its coffer process is still finishing",
                    mnt.display()
                );
            }
        }
        if ctx.json {
            return output::json(&serde_json::json!({ "unmounted": mnt }));
        }
        if ctx.verbose > 0 {
            output::line(format!("unmounted {}", mnt.display()))?;
        }
        Ok(())
    }
}
