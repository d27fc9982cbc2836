//! Logging: env_logger on stderr, behind a logger whose filter can be replaced.
//! A mount daemon starts like any command (warnings on the terminal) and, once
//! forked with stderr on its log file, switches to its own default level.
//! `RUST_LOG` always wins over the defaults and over `-v`.

use std::sync::{OnceLock, RwLock};

/// Which default applies when `RUST_LOG` is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// Commands on a terminal: warnings and errors.
    Interactive,
    /// A background mount writing its log file: info, so tamper and EIO lines land there.
    Daemon,
}

struct Swappable(RwLock<env_logger::Logger>);

static LOGGER: OnceLock<Swappable> = OnceLock::new();

impl log::Log for Swappable {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.read().map(|l| l.enabled(metadata)).unwrap_or(false)
    }

    fn log(&self, record: &log::Record<'_>) {
        let Ok(l) = self.0.read() else { return };
        if is_fuser_noise(record) {
            let demoted = log::Record::builder()
                .args(*record.args())
                .level(log::Level::Debug)
                .target(record.target())
                .build();
            if l.enabled(demoted.metadata()) {
                l.log(&demoted);
            }
            return;
        }
        l.log(record);
    }

    fn flush(&self) {
        if let Ok(l) = self.0.read() {
            l.flush();
        }
    }
}

/// Two fuser messages that report nothing wrong, and at warning or error level
/// read like faults in the mount log; they go out at debug instead:
/// - a reply the kernel no longer has the request for (ENOENT): its caller was
///   killed meanwhile, or it is fuser's answer to a FUSE_INTERRUPT for a
///   request already answered; nothing is lost;
/// - fuser's own unmount at exit failing with EINVAL: the mount point was
///   already unmounted (`coffer unmount`, `umount`), which is how a mount ends.
fn is_fuser_noise(record: &log::Record<'_>) -> bool {
    let (level, errno) = match record.target() {
        "fuser::reply" => (log::Level::Error, libc::ENOENT),
        "fuser::mnt" => (log::Level::Warn, libc::EINVAL),
        _ => return false,
    };
    record.level() == level
        && record
            .args()
            .to_string()
            .ends_with(&format!("(os error {errno})"))
}

/// The filter used when `RUST_LOG` is unset.
pub fn default_filter(default: Default, verbose: u8) -> &'static str {
    let base = match default {
        Default::Interactive => 0,
        Default::Daemon => 1,
    };
    match base + verbose as u32 {
        0 => "warn",
        1 => "info",
        2 => "info,coffer=debug",
        3 => "debug",
        _ => "trace",
    }
}

fn build(default: Default, verbose: u8) -> env_logger::Logger {
    let env = env_logger::Env::default().default_filter_or(default_filter(default, verbose));
    let mut builder = env_logger::Builder::from_env(env);
    builder.target(env_logger::Target::Stderr);
    if default == Default::Daemon {
        builder.write_style(env_logger::WriteStyle::Never);
    }
    builder.build()
}

/// Installs the logger (first call) or replaces its configuration (later calls).
pub fn init(verbose: u8, default: Default) {
    let logger = build(default, verbose);
    let level = logger.filter();
    match LOGGER.get() {
        Some(existing) => {
            if let Ok(mut l) = existing.0.write() {
                *l = logger;
            }
        }
        None => {
            let swappable = LOGGER.get_or_init(|| Swappable(RwLock::new(logger)));
            // Fails only if another logger was installed first (tests): keep that one.
            let _ = log::set_logger(swappable);
        }
    }
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_by_mode_and_verbosity() {
        assert_eq!(default_filter(Default::Interactive, 0), "warn");
        assert_eq!(default_filter(Default::Interactive, 1), "info");
        assert_eq!(default_filter(Default::Daemon, 0), "info");
        assert_eq!(default_filter(Default::Daemon, 9), "trace");
    }

    #[test]
    fn only_fuser_messages_that_report_nothing_wrong_are_demoted() {
        let check = |target: &str, level: log::Level, args: std::fmt::Arguments<'_>| {
            let record = log::Record::builder()
                .args(args)
                .level(level)
                .target(target)
                .build();
            is_fuser_noise(&record)
        };
        let err = std::io::Error::from_raw_os_error;
        let (error, warn) = (log::Level::Error, log::Level::Warn);
        let gone = err(libc::ENOENT);
        let not_mounted = err(libc::EINVAL);
        let busy = err(libc::EBUSY);
        let broken = err(libc::ENODEV);
        assert!(check(
            "fuser::reply",
            error,
            format_args!("Failed to send FUSE reply: {gone}")
        ));
        assert!(check(
            "fuser::mnt",
            warn,
            format_args!("Unmount failed: {not_mounted}")
        ));
        assert!(!check(
            "fuser::reply",
            error,
            format_args!("Failed to send FUSE reply: {broken}")
        ));
        assert!(!check(
            "fuser::mnt",
            warn,
            format_args!("Unmount failed: {busy}")
        ));
        assert!(!check(
            "coffer::fs",
            error,
            format_args!("Failed to send FUSE reply: {gone}")
        ));
    }
}
