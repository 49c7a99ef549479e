//! The MQTT topic tree of one device (DESIGN §6, Frigate's conventions).
//!
//! Everything a device says lives under `<prefix>/<device>/`, so one
//! wildcard level (`<prefix>/+/feat`) addresses the whole fleet and a
//! shared subscription on it splits the fleet's frames among servers.

/// Keys a device accepts on `set/<key>` and mirrors, retained, on `state/<key>`.
pub const SETTABLE: [&str; 3] = ["rate_mode", "target_kbps", "gain"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    /// `prefix` and `device` are validated by the config (one topic level each).
    pub fn new(prefix: &str, device: &str) -> Self {
        Self {
            base: format!("{prefix}/{device}"),
        }
    }

    /// Retained `online` / `offline`; `offline` is also the connection's last will.
    pub fn available(&self) -> String {
        format!("{}/available", self.base)
    }

    /// Retained bundle id of the model the device encodes with.
    pub fn model(&self) -> String {
        format!("{}/model", self.base)
    }

    /// Machine-layer frames.
    pub fn feat(&self) -> String {
        format!("{}/feat", self.base)
    }

    /// Human-layer (auxiliary) frames.
    pub fn aux(&self) -> String {
        format!("{}/aux", self.base)
    }

    /// Periodic JSON statistics.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.base)
    }

    /// The filter the device subscribes to for commands.
    pub fn set_filter(&self) -> String {
        format!("{}/set/+", self.base)
    }

    pub fn set(&self, key: &str) -> String {
        format!("{}/set/{key}", self.base)
    }

    pub fn state(&self, key: &str) -> String {
        format!("{}/state/{key}", self.base)
    }

    /// The key of a `set/<key>` topic of this device, if `topic` is one.
    pub fn parse_set<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic
            .strip_prefix(self.base.as_str())?
            .strip_prefix("/set/")
            .filter(|k| !k.is_empty() && !k.contains('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_device_prefix() {
        let t = Topics::new("fchm", "cam-1");
        assert_eq!(t.feat(), "fchm/cam-1/feat");
        assert_eq!(t.available(), "fchm/cam-1/available");
        assert_eq!(t.state("gain"), "fchm/cam-1/state/gain");
        assert_eq!(t.set_filter(), "fchm/cam-1/set/+");
    }

    #[test]
    fn set_topics_are_recognised_only_for_this_device() {
        let t = Topics::new("fchm", "cam-1");
        assert_eq!(t.parse_set("fchm/cam-1/set/gain"), Some("gain"));
        assert_eq!(t.parse_set("fchm/cam-10/set/gain"), None);
        assert_eq!(t.parse_set("fchm/cam-1/set/"), None);
        assert_eq!(t.parse_set("fchm/cam-1/set/a/b"), None);
        assert_eq!(t.parse_set("fchm/cam-1/state/gain"), None);
    }
}
