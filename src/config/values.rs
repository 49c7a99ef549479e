//! Config values that are written as strings in TOML: the broker URL, the
//! rate and log-target modes, the log level. Parse errors are phrased as
//! "expected ..." because they end a `key = value: ...` message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const MQTT_PORT: u16 = 1883;
pub const MQTTS_PORT: u16 = 8883;

/// Where frames are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// The broker built into fchmd (see `[embedded_broker]`): a camera that
    /// works with no infrastructure, for a local subscriber or a bridge.
    Embedded,
    /// An external broker; `tls` for `mqtts://`.
    Remote { host: String, port: u16, tls: bool },
}

/// Why a broker string was refused; its text is the end of the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected \"embedded\", \"mqtt://HOST[:PORT]\" or \"mqtts://HOST[:PORT]\"{detail}")]
pub struct BrokerParseError {
    detail: String,
}

impl BrokerParseError {
    fn new(detail: &str) -> Self {
        BrokerParseError {
            detail: if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            },
        }
    }
}

impl FromStr for Broker {
    type Err = BrokerParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "embedded" {
            return Ok(Broker::Embedded);
        }
        let (rest, tls) = if let Some(rest) = strip_prefix_ignore_case(s, "mqtts://") {
            (rest, true)
        } else if let Some(rest) = strip_prefix_ignore_case(s, "mqtt://") {
            (rest, false)
        } else {
            return Err(BrokerParseError::new(""));
        };
        // A single trailing slash is what people paste from URL bars; anything
        // after it would be a path, which MQTT has no use for.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(BrokerParseError::new(
                "credentials go in mqtt.username and mqtt.password_file, not in the URL",
            ));
        }
        if authority.contains(['/', '?', '#']) || authority.chars().any(char::is_whitespace) {
            return Err(BrokerParseError::new(
                "no path, query or spaces after the host",
            ));
        }
        let default_port = if tls { MQTTS_PORT } else { MQTT_PORT };
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(BrokerParseError::new("the host is empty"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(BrokerParseError::new("the port must be 1-65535")),
                Ok(p) => p,
            },
        };
        Ok(Broker::Remote {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), BrokerParseError> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(BrokerParseError::new("unclosed '[' in an IPv6 address"));
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(BrokerParseError::new("expected ':PORT' after ']'")),
            },
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((_, port)) if port.contains(':') => Err(BrokerParseError::new(
            "write IPv6 addresses in brackets: mqtt://[::1]:1883",
        )),
        Some((host, port)) => Ok((host, Some(port))),
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broker::Embedded => f.write_str("embedded"),
            Broker::Remote { host, port, tls } => {
                let scheme = if *tls { "mqtts" } else { "mqtt" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
        }
    }
}

/// How the encoder's operating point is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateMode {
    /// Congestion-driven: the target bitrate follows the network between
    /// `min_kbps` and `max_kbps`.
    #[default]
    Auto,
    /// A fixed IVN gain (`rate.gain`); bitrate varies with content.
    Gain,
    /// A fixed target bitrate (`rate.target_kbps`).
    Kbps,
}

/// Whether the aux (human) layer goes with every frame or only on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuxMode {
    /// Only on request (`set/aux once` or `frame:<seq>`).
    #[default]
    Off,
    /// With every encoded frame.
    On,
}

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// journald when stderr is connected to the journal (`$JOURNAL_STREAM`), else stderr.
    #[default]
    Auto,
    Journald,
    Stderr,
}

/// Parse failure of a keyword value; the text ends a `key = value:` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of {choices}")]
pub struct KeywordError {
    choices: &'static str,
}

impl FromStr for RateMode {
    type Err = KeywordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(RateMode::Auto),
            "gain" => Ok(RateMode::Gain),
            "kbps" => Ok(RateMode::Kbps),
            _ => Err(KeywordError {
                choices: "\"auto\", \"gain\", \"kbps\"",
            }),
        }
    }
}

impl RateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RateMode::Auto => "auto",
            RateMode::Gain => "gain",
            RateMode::Kbps => "kbps",
        }
    }
}

impl FromStr for AuxMode {
    type Err = KeywordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(AuxMode::Off),
            "on" => Ok(AuxMode::On),
            _ => Err(KeywordError {
                choices: "\"off\", \"on\"",
            }),
        }
    }
}

impl AuxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuxMode::Off => "off",
            AuxMode::On => "on",
        }
    }
}

impl FromStr for LogTarget {
    type Err = KeywordError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogTarget::Auto),
            "journald" => Ok(LogTarget::Journald),
            "stderr" => Ok(LogTarget::Stderr),
            _ => Err(KeywordError {
                choices: "\"auto\", \"journald\", \"stderr\"",
            }),
        }
    }
}

impl LogTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            LogTarget::Auto => "auto",
            LogTarget::Journald => "journald",
            LogTarget::Stderr => "stderr",
        }
    }
}

/// `log::LevelFilter` from its lowercase name; `log`'s own parser also takes
/// any case, which is fine, but its error says nothing useful.
pub fn parse_level(s: &str) -> Result<log::LevelFilter, KeywordError> {
    s.parse().map_err(|_| KeywordError {
        choices: "\"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
    })
}

// The serde glue: every string-typed value goes through its FromStr, so a bad
// value in TOML and the same value given on the command line produce the same text.

fn deserialize_via_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl<'de> Deserialize<'de> for Broker {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_via_str(d)
    }
}

impl Serialize for Broker {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_via_str(d)
    }
}

impl Serialize for RateMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuxMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_via_str(d)
    }
}

impl Serialize for AuxMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_via_str(d)
    }
}

impl Serialize for LogTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

pub(crate) mod level_serde {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<log::LevelFilter, D::Error> {
        let s = String::deserialize(d)?;
        parse_level(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(level: &log::LevelFilter, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&level.as_str().to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(host: &str, port: u16, tls: bool) -> Broker {
        Broker::Remote {
            host: host.into(),
            port,
            tls,
        }
    }

    #[test]
    fn broker_urls_parse_with_default_ports() {
        assert_eq!("embedded".parse(), Ok(Broker::Embedded));
        assert_eq!("mqtt://h".parse(), Ok(remote("h", 1883, false)));
        assert_eq!("mqtts://h".parse(), Ok(remote("h", 8883, true)));
        assert_eq!("MQTT://h:99/".parse(), Ok(remote("h", 99, false)));
        assert_eq!("mqtts://[::1]:8884".parse(), Ok(remote("::1", 8884, true)));
        assert_eq!(
            "mqtt://[fe80::1]".parse(),
            Ok(remote("fe80::1", 1883, false))
        );
    }

    #[test]
    fn broker_urls_that_are_refused() {
        for bad in [
            "",
            "Embedded ",
            "tcp://h:1883",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://h:0",
            "mqtt://h:65536",
            "mqtt://h:x",
            "mqtt://u:p@h",
            "mqtt://h/topic",
            "mqtt://::1",
            "mqtt://[::1",
            "mqtt://[::1]x",
            "mqtt://h h",
            "mqtté",
        ] {
            assert!(bad.parse::<Broker>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn broker_display_round_trips() {
        for b in [
            Broker::Embedded,
            remote("broker.local", 1883, false),
            remote("::1", 8883, true),
        ] {
            assert_eq!(b.to_string().parse(), Ok(b.clone()));
        }
    }

    #[test]
    fn keywords() {
        assert_eq!("kbps".parse(), Ok(RateMode::Kbps));
        assert!("Kbps".parse::<RateMode>().is_err());
        assert_eq!("on".parse(), Ok(AuxMode::On));
        assert!("once".parse::<AuxMode>().is_err());
        assert_eq!("journald".parse(), Ok(LogTarget::Journald));
        assert_eq!(parse_level("debug"), Ok(log::LevelFilter::Debug));
        assert_eq!(parse_level("off"), Ok(log::LevelFilter::Off));
        assert!(parse_level("verbose").is_err());
    }
}
