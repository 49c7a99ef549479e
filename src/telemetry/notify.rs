//! sd_notify(3) for `Type=notify`: readiness, shutdown, status line and
//! watchdog pings. Every call is a no-op outside systemd (`$NOTIFY_SOCKET`
//! unset), so the daemon calls them unconditionally.

use std::io;
use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to the service manager. Built once from the environment systemd
/// gives the service; holds no socket (sd-notify opens one per message, which
/// at one watchdog ping per WatchdogSec/2 is nothing).
///
/// The methods return nothing: a lost notification must not stop the
/// pipeline, so failures are logged (systemd then acts on the missing
/// READY=1 or watchdog ping by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notifier {
    supervised: bool,
    watchdog_interval: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Self {
        Notifier {
            supervised: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog_interval: watchdog_interval_from(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            ),
        }
    }

    /// Whether a service manager is listening (`$NOTIFY_SOCKET` was set).
    pub fn is_supervised(&self) -> bool {
        self.supervised
    }

    /// `READY=1`: start-up finished; systemd now considers the unit started.
    pub fn ready(&self) {
        self.send_or_log(&[NotifyState::Ready]);
    }

    /// `STOPPING=1`: shutdown began (sent before draining to the spool).
    pub fn stopping(&self) {
        self.send_or_log(&[NotifyState::Stopping]);
    }

    /// `STATUS=...`: the one-line status `systemctl status` shows.
    pub fn status(&self, text: &str) {
        // The protocol is newline-separated assignments: a newline in the
        // text would end STATUS= early and let the rest be read as another
        // assignment (e.g. a stray "READY=1" from a log-derived string).
        let one_line = text.replace(['\n', '\r'], " ");
        self.send_or_log(&[NotifyState::Status(&one_line)]);
    }

    /// `WATCHDOG=1`: the main loop is alive. Call every [`Self::watchdog_interval`].
    pub fn watchdog(&self) {
        self.send_or_log(&[NotifyState::Watchdog]);
    }

    /// How often to call [`Self::watchdog`]: half of `$WATCHDOG_USEC`, as
    /// sd_watchdog_enabled(3) advises; `None` when no watchdog is configured
    /// for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    fn send_or_log(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = self.send(states) {
            let what: Vec<String> = states.iter().map(ToString::to_string).collect();
            log::warn!(error:% = e; "sd_notify {} failed", what.join(" "));
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        if !self.supervised {
            return Ok(());
        }
        // Keep $NOTIFY_SOCKET set (unset_env = false): later pings need it,
        // and removing environment variables in a multi-threaded process is unsound.
        sd_notify::notify(false, states)
    }
}

/// The rule of sd_watchdog_enabled(3), from the variables' values.
///
/// Not `sd_notify::watchdog_enabled`: sd-notify 0.4 reports no watchdog when
/// `$WATCHDOG_PID` is unset, whereas systemd's rule is that an unset PID means
/// the watchdog is meant for whoever reads the variable. A PID that is set but
/// differs (or does not parse) means the variables were inherited from a parent.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    our_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros((usec / 2).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Mutex;

    /// Serialises the tests of this module that set process environment
    /// variables (read by sd-notify and by `watchdog_interval`).
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    /// Sets (or removes) a variable for the guard's lifetime, then restores it.
    struct EnvVar {
        name: &'static str,
        previous: Option<OsString>,
    }

    impl EnvVar {
        fn set(name: &'static str, value: Option<&std::ffi::OsStr>) -> Self {
            let previous = std::env::var_os(name);
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
            EnvVar { name, previous }
        }
    }

    impl Drop for EnvVar {
        fn drop(&mut self) {
            match &self.previous {
                Some(v) => std::env::set_var(self.name, v),
                None => std::env::remove_var(self.name),
            }
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        // A failed test poisons the lock; the environment is restored by the
        // guards regardless, so the other tests may proceed.
        ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram within the timeout");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_arrive_on_the_notify_socket() {
        let _guard = lock();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _env = EnvVar::set("NOTIFY_SOCKET", Some(path.as_os_str()));

        let n = Notifier::from_env();
        assert!(n.is_supervised());
        n.ready();
        assert_eq!(recv(&sock), "READY=1\n");
        n.status("encoding 10 fps\nREADY=1");
        assert_eq!(recv(&sock), "STATUS=encoding 10 fps READY=1\n");
        n.watchdog();
        assert_eq!(recv(&sock), "WATCHDOG=1\n");
        n.stopping();
        assert_eq!(recv(&sock), "STOPPING=1\n");
        // Still set: a later ping must not find the variable gone.
        assert!(std::env::var_os("NOTIFY_SOCKET").is_some());
    }

    #[test]
    fn without_notify_socket_every_call_is_a_no_op() {
        let _guard = lock();
        let _env = EnvVar::set("NOTIFY_SOCKET", None);
        let n = Notifier::from_env();
        assert!(!n.is_supervised());
        assert!(n.send(&[NotifyState::Ready]).is_ok());
        n.ready();
        n.status("x");
        n.watchdog();
        n.stopping();
    }

    #[test]
    fn a_dead_notify_socket_is_reported() {
        let _guard = lock();
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nobody-listens.sock");
        let _env = EnvVar::set("NOTIFY_SOCKET", Some(missing.as_os_str()));
        let n = Notifier::from_env();
        assert!(n.send(&[NotifyState::Ready]).is_err());
        // Logged, not fatal.
        n.ready();
    }

    #[test]
    fn watchdog_interval_rules() {
        let me = 4242;
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, me), half);
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("4242"), me),
            half
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("1"), me),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("x"), me),
            None
        );
        assert_eq!(watchdog_interval_from(None, Some("4242"), me), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, me), None);
        assert_eq!(watchdog_interval_from(Some("-5"), None, me), None);
        assert_eq!(
            watchdog_interval_from(Some("1"), None, me),
            Some(Duration::from_micros(1))
        );
    }

    #[test]
    fn watchdog_interval_reads_the_environment() {
        let _guard = lock();
        let me = std::process::id().to_string();
        let _usec = EnvVar::set("WATCHDOG_USEC", Some("30000000".as_ref()));
        let interval = || Notifier::from_env().watchdog_interval();
        {
            let _pid = EnvVar::set("WATCHDOG_PID", Some(me.as_ref()));
            assert_eq!(interval(), Some(Duration::from_secs(15)));
        }
        {
            let _pid = EnvVar::set("WATCHDOG_PID", None);
            assert_eq!(interval(), Some(Duration::from_secs(15)));
        }
        {
            // Inherited from a supervised parent: not ours to ping.
            let other = (std::process::id() + 1).to_string();
            let _pid = EnvVar::set("WATCHDOG_PID", Some(other.as_ref()));
            assert_eq!(interval(), None);
        }
        let _unset = EnvVar::set("WATCHDOG_USEC", None);
        assert_eq!(interval(), None);
    }
}
