//! The MQTT topic tree of one device (DESIGN §6, Frigate's conventions).
//!
//! Everything a device says lives under `<prefix>/<device>/`, so one
//! wildcard level (`<prefix>/+/feat`) addresses the whole fleet and a
//! shared subscription on it splits the fleet's frames among servers.

/// Keys a device accepts on `set/<key>` and mirrors, retained, on `state/<key>`.
pub const SETTABLE: [&str; 4] = ["rate_mode", "target_kbps", "gain", "aux"];

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

    /// The server's detections for this device's frames (JSON).
    pub fn detections(&self) -> String {
        format!("{}/detections", self.base)
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

/// What a message on one device's topic is, seen from the fleet side (the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf<'t> {
    Available,
    Model,
    Feat,
    Aux,
    Stats,
    Detections,
    State(&'t str),
    Set(&'t str),
}

/// `<prefix>/<device>/<leaf>`: the device and leaf of a topic under `prefix`,
/// or `None` for anything else (another prefix, an empty device, extra levels).
pub fn parse_fleet<'t>(prefix: &str, topic: &'t str) -> Option<(&'t str, Leaf<'t>)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let (device, leaf) = rest.split_once('/')?;
    if device.is_empty() {
        return None;
    }
    let keyed = |k: &'t str| (!k.is_empty() && !k.contains('/')).then_some(k);
    let leaf = match leaf {
        "available" => Leaf::Available,
        "model" => Leaf::Model,
        "feat" => Leaf::Feat,
        "aux" => Leaf::Aux,
        "stats" => Leaf::Stats,
        "detections" => Leaf::Detections,
        l => {
            if let Some(k) = l.strip_prefix("state/") {
                Leaf::State(keyed(k)?)
            } else if let Some(k) = l.strip_prefix("set/") {
                Leaf::Set(keyed(k)?)
            } else {
                return None;
            }
        }
    };
    Some((device, leaf))
}

/// The filter for one leaf across the fleet: `<prefix>/+/<leaf>`.
pub fn fleet_filter(prefix: &str, leaf: &str) -> String {
    format!("{prefix}/+/{leaf}")
}

/// A shared subscription on `filter`: the broker gives each message to one
/// member of `group` (MQTT 5 `$share`, which Mosquitto, EMQX and rumqttd
/// also honour for 3.1.1 clients).
pub fn shared(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_topics_name_device_and_leaf() {
        assert_eq!(
            parse_fleet("fchm", "fchm/cam-1/feat"),
            Some(("cam-1", Leaf::Feat))
        );
        assert_eq!(
            parse_fleet("fchm", "fchm/cam-1/state/gain"),
            Some(("cam-1", Leaf::State("gain")))
        );
        assert_eq!(parse_fleet("fchm", "fchm//feat"), None);
        assert_eq!(parse_fleet("fchm", "fchmx/cam/feat"), None);
        assert_eq!(parse_fleet("fchm", "fchm/cam/feat/x"), None);
        assert_eq!(parse_fleet("fchm", "fchm/cam/state/"), None);
        assert_eq!(parse_fleet("fchm", "fchm/cam"), None);
        assert_eq!(
            shared("g", &fleet_filter("fchm", "feat")),
            "$share/g/fchm/+/feat"
        );
    }

    #[test]
    fn topics_follow_the_device_prefix() {
        let t = Topics::new("fchm", "cam-1");
        assert_eq!(t.feat(), "fchm/cam-1/feat");
        assert_eq!(t.aux(), "fchm/cam-1/aux");
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
