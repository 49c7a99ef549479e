//! systemd integration (sd_notify, watchdog) and logging (journald or stderr).

pub mod logging;
pub mod notify;

pub use notify::Notifier;
