//! Waiting for the signals that stop the agent.
//!
//! SIGTERM (`docker stop`) and SIGINT (Ctrl-C on an attached terminal) are blocked in the
//! calling thread by [`ShutdownSignals::block`], and every thread spawned afterwards inherits
//! that mask, so neither signal ever runs a handler or its default action: the kernel keeps it
//! pending until a thread takes it with `sigwait`. The waiting thread sleeps in the kernel and
//! uses no CPU. Because blocked signals are never discarded, this also works when the agent is
//! PID 1 of its PID namespace (no `--init`), where unhandled signals would be dropped.
//!
//! Call [`ShutdownSignals::block`] first thing, before spawning any thread: a thread started
//! earlier would not have the signals blocked, and a signal delivered to it would kill the
//! process.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;

/// A signal that asks the agent to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl Signal {
    /// The conventional name, `SIGTERM` or `SIGINT`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }

    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
        }
    }

    fn from_number(n: libc::c_int) -> Option<Signal> {
        [Signal::Term, Signal::Int]
            .into_iter()
            .find(|s| s.number() == n)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SIGTERM and SIGINT, blocked in the thread that created this and in the threads it spawns
/// afterwards. Holding one is what makes [`ShutdownSignals::wait`] correct.
pub struct ShutdownSignals {
    set: libc::sigset_t,
}

impl ShutdownSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread's signal mask. Signals that arrive from
    /// now on stay pending until [`ShutdownSignals::wait`] takes them.
    pub fn block() -> io::Result<ShutdownSignals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; sigaddset and pthread_sigmask only read and
        // write the sets passed to them.
        unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut set = set.assume_init();
            for sig in [Signal::Term, Signal::Int] {
                if libc::sigaddset(&mut set, sig.number()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(ShutdownSignals { set })
        }
    }

    /// Sleeps until SIGTERM or SIGINT is pending (returning at once if one already is),
    /// consumes it and says which it was.
    pub fn wait(&self) -> io::Result<Signal> {
        loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `self.set` is an initialised sigset_t and `sig` a valid out-pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            match rc {
                0 => {
                    if let Some(s) = Signal::from_number(sig) {
                        return Ok(s);
                    }
                }
                libc::EINTR => {}
                err => return Err(io::Error::from_raw_os_error(err)),
            }
        }
    }
}

/// Waits on the calling thread for SIGTERM or SIGINT; see [`ShutdownSignals::wait`].
pub fn wait_for_shutdown_signal(signals: &ShutdownSignals) -> io::Result<Signal> {
    signals.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unblocks the set again so the test thread leaves the mask as it found it.
    fn unblock(signals: &ShutdownSignals) {
        // SAFETY: as in `block`.
        let rc =
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &signals.set, std::ptr::null_mut()) };
        assert_eq!(rc, 0);
    }

    // `raise` directs the signal at the calling thread, where it is blocked, so it stays
    // pending there and can never reach another test thread.
    #[test]
    fn a_pending_signal_is_taken_and_named() {
        let signals = ShutdownSignals::block().unwrap();
        for (num, expected) in [(libc::SIGINT, Signal::Int), (libc::SIGTERM, Signal::Term)] {
            // SAFETY: raising a signal that is blocked in this thread only marks it pending.
            assert_eq!(unsafe { libc::raise(num) }, 0);
            assert_eq!(wait_for_shutdown_signal(&signals).unwrap(), expected);
        }
        unblock(&signals);
    }

    #[test]
    fn names() {
        assert_eq!(Signal::Term.to_string(), "SIGTERM");
        assert_eq!(Signal::Int.name(), "SIGINT");
        assert_eq!(Signal::from_number(libc::SIGTERM), Some(Signal::Term));
        assert_eq!(Signal::from_number(libc::SIGHUP), None);
    }
}
