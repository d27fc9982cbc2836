//! Process plumbing for `coffer mount`: forking a background mount that reports
//! back through a pipe, detaching it from the terminal, and turning stop signals
//! into an orderly unmount. This is the only file of the CLI with `unsafe`; each
//! block is a plain libc call whose arguments are checked here.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Turns off core dumps for this process and its children: a crashed mount or
/// command would otherwise write its content keys and identity seed to disk.
/// (Not `PR_SET_DUMPABLE`: that also hides `/proc/self`, which the mount reads.)
pub fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads one initialized struct; a failure only leaves
    // core dumps as they were, so it is logged and ignored.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        log::debug!(
            "could not turn off core dumps: {}",
            io::Error::last_os_error()
        );
    }
}

/// Which side of the fork this process is on.
pub enum Forked {
    /// The original process: wait for the child's word, then exit.
    Parent(ParentWait),
    /// The background process: detach, mount, report through the notifier.
    Child(Notifier),
}

/// What the background process said.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    Ready,
    Failed {
        code: i32,
        message: String,
    },
    /// The pipe closed without a word (the child died).
    Vanished,
}

/// The read end of the pipe, in the parent.
pub struct ParentWait {
    read: File,
    /// The background process.
    pub child: i32,
}

impl ParentWait {
    /// Blocks until the child reports (or dies).
    pub fn wait(self) -> Report {
        let mut line = String::new();
        match BufReader::new(self.read).read_line(&mut line) {
            Ok(n) if n > 0 => parse_report(&line),
            _ => Report::Vanished,
        }
    }
}

/// The write end of the pipe, in the child. Reports once; later reports are ignored.
pub struct Notifier {
    write: Option<File>,
}

impl Notifier {
    pub fn ready(&mut self) {
        self.send("ok\n".to_string());
    }

    pub fn failed(&mut self, code: i32, message: &str) {
        let one_line = message.replace(['\n', '\r'], " ");
        self.send(format!("err {code} {one_line}\n"));
    }

    /// Whether a report was already sent.
    pub fn reported(&self) -> bool {
        self.write.is_none()
    }

    fn send(&mut self, text: String) {
        if let Some(mut w) = self.write.take() {
            // The parent may be gone (killed); the mount goes on regardless.
            let _ = w.write_all(text.as_bytes());
        }
    }
}

fn parse_report(line: &str) -> Report {
    let line = line.trim_end_matches('\n');
    if line == "ok" {
        return Report::Ready;
    }
    if let Some(rest) = line.strip_prefix("err ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        if let Ok(code) = code.parse::<i32>() {
            return Report::Failed {
                code,
                message: message.to_string(),
            };
        }
    }
    Report::Vanished
}

/// Number of threads in this process, from /proc (None if unreadable).
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Forks with a close-on-exec pipe from child to parent. Must run before any
/// thread exists: only the forking thread survives in the child.
pub fn fork_with_pipe() -> io::Result<Forked> {
    if let Some(n) = thread_count().filter(|&n| n > 1) {
        return Err(io::Error::other(format!(
            "cannot fork a background mount: {n} threads already running (use --foreground)"
        )));
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: the process is single-threaded (checked above), so the child gets a
    // consistent copy of every lock and allocator state; it goes on running
    // ordinary Rust code, which is allowed after fork in a single-threaded process.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            Ok(Forked::Child(Notifier {
                write: Some(File::from(write)),
            }))
        }
        _ => {
            drop(write);
            Ok(Forked::Parent(ParentWait {
                read: File::from(read),
                child: pid,
            }))
        }
    }
}

/// Detaches the child from the terminal: new session, cwd `/`, stdin and stdout
/// on /dev/null, stderr on `log` (where the logger writes).
pub fn detach(log: &File) -> io::Result<()> {
    // SAFETY: setsid takes no arguments; it fails only if we already lead a
    // process group, which a freshly forked child does not.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for (from, to) in [
        (null.as_raw_fd(), libc::STDIN_FILENO),
        (null.as_raw_fd(), libc::STDOUT_FILENO),
        (log.as_raw_fd(), libc::STDERR_FILENO),
    ] {
        // SAFETY: `from` is an open descriptor borrowed from a live File and `to`
        // is one of the standard descriptors; dup2 replaces it atomically and
        // Rust's std handles keep using the descriptor number.
        if unsafe { libc::dup2(from, to) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP, blocked in the calling thread (and so in every
/// thread it creates afterwards) and received with [`StopSignals::wait`].
pub struct StopSignals {
    set: libc::sigset_t,
}

/// Blocks the stop signals. Call before creating the threads that serve the mount.
pub fn block_stop_signals() -> io::Result<StopSignals> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; the signal numbers
    // are valid constants; pthread_sigmask only reads `set` and a null old set.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(StopSignals { set })
}

impl StopSignals {
    /// Waits for the next stop signal and returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig: libc::c_int = 0;
        // SAFETY: `self.set` is an initialised signal set and `sig` a valid out
        // pointer; the signals in it are blocked in every thread of the mount.
        let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(parse_report("ok\n"), Report::Ready);
        assert_eq!(
            parse_report("err 3 wrong passphrase here\n"),
            Report::Failed {
                code: 3,
                message: "wrong passphrase here".into()
            }
        );
        assert_eq!(parse_report("garbage\n"), Report::Vanished);
    }
}
