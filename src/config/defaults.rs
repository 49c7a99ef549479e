//! Default values that depend on the machine rather than being constants:
//! the device id (host name) and the spool directory (systemd's StateDirectory).

use std::ffi::OsStr;
use std::path::PathBuf;

/// Used when no host name can be read or it is not a valid topic level.
pub const FALLBACK_DEVICE_ID: &str = "fchmd";
/// Spool location when not started by systemd (matches `StateDirectory=fchmd`).
pub const SPOOL_DIR_WITHOUT_SYSTEMD: &str = "/var/lib/fchmd/spool";

/// The host name, so that two cameras with default configs do not publish
/// under the same topics. `/proc/sys/kernel/hostname` is the kernel's own
/// name; `/etc/hostname` is the fallback for sandboxes that hide `/proc/sys`.
pub fn device_id() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|name| super::validate::topic_level_problem(name).is_none())
        .unwrap_or_else(|| FALLBACK_DEVICE_ID.to_owned())
}

/// `$STATE_DIRECTORY/spool` under systemd, else [`SPOOL_DIR_WITHOUT_SYSTEMD`].
pub fn spool_dir() -> PathBuf {
    spool_dir_from(std::env::var_os("STATE_DIRECTORY").as_deref())
}

/// [`spool_dir`] for a given `$STATE_DIRECTORY`. systemd joins several
/// `StateDirectory=` entries with ':'; ours is the first.
pub fn spool_dir_from(state_directory: Option<&OsStr>) -> PathBuf {
    let first = state_directory
        .and_then(OsStr::to_str)
        .and_then(|s| s.split(':').next())
        .filter(|s| !s.is_empty());
    match first {
        Some(dir) => PathBuf::from(dir).join("spool"),
        None => PathBuf::from(SPOOL_DIR_WITHOUT_SYSTEMD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_dir_follows_state_directory() {
        assert_eq!(spool_dir_from(None), PathBuf::from("/var/lib/fchmd/spool"));
        assert_eq!(
            spool_dir_from(Some(OsStr::new(""))),
            PathBuf::from("/var/lib/fchmd/spool")
        );
        assert_eq!(
            spool_dir_from(Some(OsStr::new("/var/lib/fchmd"))),
            PathBuf::from("/var/lib/fchmd/spool")
        );
        assert_eq!(
            spool_dir_from(Some(OsStr::new("/var/lib/private/fchmd:/var/lib/other"))),
            PathBuf::from("/var/lib/private/fchmd/spool")
        );
    }

    #[test]
    fn default_device_id_is_a_valid_topic_level() {
        let id = device_id();
        assert_eq!(
            super::super::validate::topic_level_problem(&id),
            None,
            "{id:?}"
        );
    }
}
