//! fchmd configuration: TOML, every key validated with an error that names it.
//!
//! Every key has a default, so an empty file is a valid configuration; unknown
//! keys are refused (`deny_unknown_fields`), because a typo that silently falls
//! back to a default is worse than a daemon that does not start. Relative
//! paths are relative to the working directory (`/` under systemd).
//! `config/fchmd.toml` documents every key; keep it in step with this file
//! (`tests/config.rs` checks that it mentions every key).

mod defaults;
mod error;
mod locate;
mod validate;
mod values;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use defaults::{spool_dir_from, FALLBACK_DEVICE_ID, SPOOL_DIR_WITHOUT_SYSTEMD};
pub use error::{ConfigError, ConfigErrorKind, Origin};
pub use validate::topic_level_problem;
pub use values::{AuxMode, Broker, BrokerParseError, KeywordError, LogTarget, RateMode};

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This camera's name: one MQTT topic level (`fchm/<device_id>/...`).
    /// Default: the host name, or `fchmd` if it is unusable.
    pub device_id: String,
    /// Model bundle directory. Default: `/usr/local/share/fchmd/models/centernet-vfcn`.
    pub bundle: PathBuf,
    pub source: SourceConfig,
    pub mqtt: MqttConfig,
    pub embedded_broker: EmbeddedBrokerConfig,
    pub rate: RateConfig,
    pub spool: SpoolSection,
    pub stats: StatsConfig,
    pub pipeline: PipelineConfig,
    pub aux: AuxConfig,
    pub log: LogConfig,
}

pub const DEFAULT_BUNDLE: &str = "/usr/local/share/fchmd/models/centernet-vfcn";

impl Default for Config {
    fn default() -> Self {
        Config {
            device_id: defaults::device_id(),
            bundle: PathBuf::from(DEFAULT_BUNDLE),
            source: SourceConfig::default(),
            mqtt: MqttConfig::default(),
            embedded_broker: EmbeddedBrokerConfig::default(),
            rate: RateConfig::default(),
            spool: SpoolSection::default(),
            stats: StatsConfig::default(),
            pipeline: PipelineConfig::default(),
            aux: AuxConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `[source]`: where frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `test-scene`, `y4m:-` (stdin), `y4m:PATH`, `v4l2:/dev/videoN` or
    /// `images:DIR`. Only the prefix is checked here; the capture module
    /// reports a missing device or file. Default: `v4l2:/dev/video0`.
    pub spec: String,
    /// Frames per second to process (pacing for file sources, requested rate
    /// for cameras); 0 < fps <= 120. Default: 10.
    pub fps: f32,
    /// Restart file sources (y4m, images) at their end instead of stopping.
    /// Default: false.
    pub looped: bool,
    /// Requested frame width in pixels for v4l2 and test-scene (file sources
    /// have their own size); 16..=8192. Default: 640.
    pub width: u32,
    /// Requested frame height in pixels, as `width`. Default: 480.
    pub height: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            spec: "v4l2:/dev/video0".to_owned(),
            fps: 10.0,
            looped: false,
            width: 640,
            height: 480,
        }
    }
}

/// `[mqtt]`: the client side of the transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `embedded`, `mqtt://HOST[:PORT]` (default port 1883) or
    /// `mqtts://HOST[:PORT]` (8883). Default: `embedded`.
    pub broker: Broker,
    /// MQTT client id; use [`Config::mqtt_client_id`]. Default: `fchmd-<device_id>`.
    pub client_id: Option<String>,
    /// First topic level(s), e.g. `fchm` gives `fchm/<device_id>/feat`. Default: `fchm`.
    pub topic_prefix: String,
    /// MQTT keep-alive in seconds, >= 5. Default: 30.
    pub keep_alive_s: u16,
    /// Largest MQTT packet the client sends or accepts, 64 KiB..=256 MiB. A
    /// frame larger than this is dropped and counted. Default: 1 MiB.
    pub max_packet_bytes: usize,
    /// User name for the broker. Default: none.
    pub username: Option<String>,
    /// File holding the password (first line), e.g. a systemd credential.
    /// Needs `username`; must exist. Default: none.
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle to verify an `mqtts://` broker; must exist. Ignored for
    /// plain `mqtt://`. Default: none.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS; needs `client_key_file`. Default: none.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key for `client_cert_file`. Default: none.
    pub client_key_file: Option<PathBuf>,
    /// First reconnect delay in ms (then doubled, with jitter), >= 10. Default: 500.
    pub reconnect_min_ms: u64,
    /// Reconnect delay cap in ms, reconnect_min_ms..=3600000. Default: 30000.
    pub reconnect_max_ms: u64,
    /// QoS 1 publishes awaiting PUBACK before the client stops sending, >= 1. Default: 32.
    pub max_in_flight: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: Broker::Embedded,
            client_id: None,
            topic_prefix: "fchm".to_owned(),
            keep_alive_s: 30,
            max_packet_bytes: 1 << 20,
            username: None,
            password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            max_in_flight: 32,
        }
    }
}

/// `[embedded_broker]`: used when `mqtt.broker = "embedded"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    /// Address and port to listen on (port 0 is refused). Default:
    /// `127.0.0.1:1883`, only local subscribers; `0.0.0.0:1883` opens it to the network.
    pub listen: SocketAddr,
    /// Largest packet the broker accepts, 64 KiB..=256 MiB, and at least
    /// `mqtt.max_packet_bytes`. Default: 1 MiB.
    pub max_payload_bytes: usize,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, values::MQTT_PORT)),
            max_payload_bytes: 1 << 20,
        }
    }
}

/// `[rate]`: rate control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// `auto` (follow the network), `gain` (fixed `gain`) or `kbps` (fixed
    /// `target_kbps`). Default: `auto`.
    pub mode: RateMode,
    /// IVN gain for `mode = "gain"`, 1..=64 (the bundle may narrow it). Default: 10.
    pub gain: f32,
    /// Bitrate for `mode = "kbps"` and the starting point of `auto`, kbit/s,
    /// min_kbps..=max_kbps. Default: 1000.
    pub target_kbps: f64,
    /// Floor of `auto`, kbit/s > 0. Default: 100.
    pub min_kbps: f64,
    /// Ceiling of `auto`, kbit/s >= min_kbps. Default: 8000.
    pub max_kbps: f64,
    /// Frames older than this when they could be sent are skipped, in ms,
    /// 10..=60000; `auto` also lowers the rate when acks lag past it. Default: 500.
    pub latency_bound_ms: u64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            mode: RateMode::Auto,
            gain: 10.0,
            target_kbps: 1000.0,
            min_kbps: 100.0,
            max_kbps: 8000.0,
            latency_bound_ms: 500,
        }
    }
}

/// `[spool]`: store-and-forward while the broker is unreachable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    /// Spool directory, created if missing. Default: `$STATE_DIRECTORY/spool`
    /// under systemd, else `/var/lib/fchmd/spool`.
    pub dir: PathBuf,
    /// Disk budget; the oldest frames are dropped (and counted) beyond it.
    /// At least 2 x `segment_bytes`. Default: 256 MiB.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started, >= 64 KiB.
    /// Default: 4 MiB.
    pub segment_bytes: u64,
    /// fsync after each write, so frames survive power loss, not just a crash.
    /// Default: true.
    pub fsync: bool,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            dir: defaults::spool_dir(),
            max_bytes: 256 << 20,
            segment_bytes: 4 << 20,
            fsync: true,
        }
    }
}

/// `[stats]`: the periodic `fchm/<device>/stats` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Seconds between stats messages, 0.5..=3600. Default: 10.
    pub interval_s: f64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { interval_s: 10.0 }
    }
}

/// `[pipeline]`: buffering between capture, encoder and transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Frames waiting between capture and encoder, 1..=1024; when full the
    /// oldest frame is dropped and counted. Each one adds an encode time of
    /// latency. Default: 2.
    pub queue_frames: usize,
    /// Give the models' per-frame buffers back to the system as soon as they
    /// are freed (a fixed glibc mmap threshold, and huge-page mappings of
    /// their own for the big ones: `edge::memory`) rather than keeping them
    /// in the allocator's arenas: a much lower peak RSS, which
    /// `fchm bench pipeline` measures both ways. Default: true.
    pub lean_memory: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_frames: 2,
            lean_memory: true,
        }
    }
}

/// `[aux]`: the human layer (aux frames on `<prefix>/<device>/aux`), sent on
/// demand from a ring of recent frames (docs/fchmd.md, "Aux layer on demand").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuxConfig {
    /// Human-layer bundle directory, trained on `bundle`'s machine bundle.
    /// Empty (the default) disables the aux layer; `set/aux` is then refused.
    pub bundle: PathBuf,
    /// Recent encoded frames kept for `set/aux frame:<seq>`, 1..=64. Default: 8.
    pub ring_frames: usize,
    /// Most of the target bitrate the aux layer may use, 0.05..=0.9. Default: 0.5.
    pub budget_share: f64,
    /// Aux mode at start: `off` (only on request) or `on` (every encoded
    /// frame; needs `bundle`). Default: `off`.
    pub mode: AuxMode,
}

impl Default for AuxConfig {
    fn default() -> Self {
        AuxConfig {
            bundle: PathBuf::new(),
            ring_frames: 8,
            budget_share: 0.5,
            mode: AuxMode::Off,
        }
    }
}

impl AuxConfig {
    /// The human-layer bundle, if the aux layer is enabled.
    pub fn bundle(&self) -> Option<&Path> {
        (!self.bundle.as_os_str().is_empty()).then_some(self.bundle.as_path())
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `off`, `error`, `warn`, `info`, `debug` or `trace`. Default: `info`.
    #[serde(with = "values::level_serde")]
    pub level: log::LevelFilter,
    /// `auto` (journald when started by systemd, else stderr), `journald` or
    /// `stderr`. Default: `auto`.
    pub target: LogTarget,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: log::LevelFilter::Info,
            target: LogTarget::Auto,
        }
    }
}

/// Command-line values that replace the file's (`--broker`, `--source`, `--device-id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub broker: Option<String>,
    pub source: Option<String>,
    pub device_id: Option<String>,
}

impl Config {
    /// Parses and validates a TOML document; an empty one gives all defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let doc = toml::de::DeTable::parse(text).map_err(|e| syntax_error(text, &e))?;
        let config = Config::deserialize(toml::de::Deserializer::from(doc.clone()))
            .map_err(|e| serde_error(text, doc.get_ref(), &e))?;
        validate::config(&config).map_err(|e| {
            // Point at the value in the file when the file set it; a bad
            // default or a cross-key problem with an unset key has no line.
            match locate::value_span(doc.get_ref(), &e.key) {
                Some(span) => at(text, span.start, e),
                None => e,
            }
        })?;
        Ok(config)
    }

    /// Reads and parses `path`; errors carry the file name.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::unreadable(path.to_path_buf(), e))?;
        Config::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Applies command-line overrides and validates the result again.
    pub fn apply_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        let mut updated = self.clone();
        let mut overridden = Vec::new();
        if let Some(broker) = &o.broker {
            updated.mqtt.broker = broker.parse().map_err(|e: BrokerParseError| ConfigError {
                kind: ConfigErrorKind::Invalid,
                key: "mqtt.broker".into(),
                value: format!("{broker:?}"),
                expected: e.to_string(),
                origin: Some(Origin::Override),
            })?;
            overridden.push("mqtt.broker");
        }
        if let Some(spec) = &o.source {
            updated.source.spec = spec.clone();
            overridden.push("source.spec");
        }
        if let Some(id) = &o.device_id {
            updated.device_id = id.clone();
            overridden.push("device_id");
        }
        validate::config(&updated).map_err(|mut e| {
            // A cross-key check may blame a key the file set (e.g.
            // embedded_broker.max_payload_bytes after `--broker embedded`);
            // only claim the command line for keys it set.
            e.origin = overridden
                .contains(&e.key.as_str())
                .then_some(Origin::Override);
            e
        })?;
        *self = updated;
        Ok(())
    }

    /// `mqtt.client_id`, or `fchmd-<device_id>`.
    pub fn mqtt_client_id(&self) -> String {
        match &self.mqtt.client_id {
            Some(id) => id.clone(),
            None => format!("fchmd-{}", self.device_id),
        }
    }
}

fn at(text: &str, pos: usize, mut e: ConfigError) -> ConfigError {
    let (line, column) = locate::line_col(text, pos);
    e.origin = Some(Origin::Toml {
        file: None,
        line,
        column,
    });
    e
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let pos = e.span().map_or(text.len(), |s| s.start);
    let (key, value) = locate::syntax_context(text, pos);
    at(
        text,
        pos,
        ConfigError {
            kind: ConfigErrorKind::Syntax,
            key,
            value,
            expected: format!("invalid TOML: {}", e.message().trim()),
            origin: None,
        },
    )
}

fn serde_error(text: &str, doc: &toml::de::DeTable<'_>, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim();
    let pos = e.span().map(|s| s.start);
    let hit = pos.and_then(|p| locate::key_at(doc, p));
    let (key, value) = match &hit {
        Some(h) if h.is_table => (h.path.clone(), "(a table)".to_owned()),
        Some(h) => (h.path.clone(), locate::snippet(text, h.value_span.clone())),
        None => ("(document)".to_owned(), String::new()),
    };
    // Our own string parsers (broker URL, keywords, level) phrase their
    // errors as "expected ...": those are bad values, not bad types.
    let kind = if message.starts_with("unknown field") {
        ConfigErrorKind::UnknownKey
    } else if message.starts_with("expected") {
        ConfigErrorKind::Invalid
    } else {
        ConfigErrorKind::Type
    };
    let expected = match kind {
        ConfigErrorKind::UnknownKey => message.replacen("unknown field", "unknown key", 1),
        _ => plain_type_names(message),
    };
    let error = ConfigError {
        kind,
        key,
        value,
        expected,
        origin: None,
    };
    match pos {
        Some(p) => at(text, p, error),
        None => error,
    }
}

/// serde names Rust types ("expected u16"); say what an operator can type.
fn plain_type_names(message: &str) -> String {
    const NAMES: [(&str, &str); 7] = [
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a string", "expected a quoted string"),
    ];
    let mut out = message.to_owned();
    for (from, to) in NAMES {
        out = out.replace(from, to);
    }
    // "expected struct RateConfig" ends the message; the Rust name means nothing to a reader.
    if let Some(at) = out.find("expected struct ") {
        out.truncate(at);
        out.push_str("expected a table ([section])");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_all_defaults() {
        let c = Config::from_toml_str("").expect("valid");
        assert_eq!(c, Config::default());
        assert_eq!(c.mqtt_client_id(), format!("fchmd-{}", c.device_id));
    }

    #[test]
    fn serialized_defaults_parse_back_to_the_same_config() {
        let c = Config::default();
        let text = toml::to_string(&c).expect("serializable");
        assert_eq!(Config::from_toml_str(&text), Ok(c));
    }
}
