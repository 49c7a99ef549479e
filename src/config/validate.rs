//! Semantic checks that serde cannot express: ranges, cross-key consistency,
//! files that must exist. The first problem found is reported, in file order,
//! so the same bad file always yields the same message.

use std::path::Path;

use super::error::ConfigError;
use super::values::AuxMode;
use super::values::Broker;
use super::{AuxConfig, Config, MqttConfig, RateConfig, SourceConfig, SpoolSection};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// MQTT's variable-length "remaining length" field tops out just under 256 MiB.
pub const MQTT_MAX_PACKET: u64 = 256 * MIB - 1;
/// Below this a single feature frame at a useful rate does not fit a packet.
pub const MIN_PACKET: u64 = 64 * KIB;
pub const MAX_DEVICE_ID_CHARS: usize = 64;
pub const SOURCE_PREFIXES: [&str; 3] = ["y4m:", "v4l2:", "images:"];
pub const TEST_SCENE: &str = "test-scene";

type Check = Result<(), ConfigError>;

fn ensure(ok: bool, key: &str, value: impl std::fmt::Display, expected: &str) -> Check {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, value, expected))
    }
}

/// TOML rendering of a string value, so messages show what one would type.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn quoted_path(p: &Path) -> String {
    quoted(&p.display().to_string())
}

/// Why `s` cannot be one MQTT topic level, if it cannot.
pub fn topic_level_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("must not be empty")
    } else if s.chars().count() > MAX_DEVICE_ID_CHARS {
        Some("at most 64 characters")
    } else if s.contains(['/', '+', '#']) {
        Some("no '/', '+' or '#' (it is one MQTT topic level)")
    } else if s.chars().any(char::is_control) {
        Some("no control characters")
    } else {
        None
    }
}

pub fn config(c: &Config) -> Check {
    if let Some(problem) = topic_level_problem(&c.device_id) {
        return Err(ConfigError::invalid(
            "device_id",
            quoted(&c.device_id),
            format!("a single MQTT topic level: {problem}"),
        ));
    }
    ensure(
        !c.bundle.as_os_str().is_empty(),
        "bundle",
        quoted_path(&c.bundle),
        "the path of a model bundle directory",
    )?;
    source(&c.source)?;
    mqtt(&c.mqtt)?;
    embedded_broker(c)?;
    rate(&c.rate)?;
    spool(&c.spool)?;
    let interval = c.stats.interval_s;
    ensure(
        interval.is_finite() && (0.5..=3600.0).contains(&interval),
        "stats.interval_s",
        interval,
        "seconds between stats messages, 0.5 to 3600",
    )?;
    let depth = c.pipeline.queue_frames;
    ensure(
        (1..=1024).contains(&depth),
        "pipeline.queue_frames",
        depth,
        "a queue depth in frames, 1 to 1024",
    )?;
    aux(&c.aux)
}

fn aux(a: &AuxConfig) -> Check {
    ensure(
        (1..=64).contains(&a.ring_frames),
        "aux.ring_frames",
        a.ring_frames,
        "a number of recent frames kept, 1 to 64",
    )?;
    ensure(
        a.budget_share.is_finite() && (0.05..=0.9).contains(&a.budget_share),
        "aux.budget_share",
        a.budget_share,
        "a share of the target bitrate, 0.05 to 0.9",
    )?;
    ensure(
        a.mode == AuxMode::Off || a.bundle().is_some(),
        "aux.mode",
        quoted(a.mode.as_str()),
        "\"off\" while aux.bundle is empty (\"on\" needs a human-layer bundle)",
    )
}

fn source(s: &SourceConfig) -> Check {
    let known_prefix = SOURCE_PREFIXES
        .iter()
        .any(|p| s.spec.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    ensure(
        s.spec == TEST_SCENE || known_prefix,
        "source.spec",
        quoted(&s.spec),
        "\"test-scene\", \"y4m:-\", \"y4m:PATH\", \"v4l2:/dev/videoN\" or \"images:DIR\"",
    )?;
    ensure(
        s.fps.is_finite() && s.fps > 0.0 && s.fps <= 120.0,
        "source.fps",
        s.fps,
        "frames per second, > 0 and <= 120",
    )?;
    ensure(
        (16..=8192).contains(&s.width),
        "source.width",
        s.width,
        "a frame width in pixels, 16 to 8192",
    )?;
    ensure(
        (16..=8192).contains(&s.height),
        "source.height",
        s.height,
        "a frame height in pixels, 16 to 8192",
    )
}

fn mqtt(m: &MqttConfig) -> Check {
    if let Some(id) = &m.client_id {
        ensure(
            !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control),
            "mqtt.client_id",
            quoted(id),
            "1 to 256 bytes without control characters",
        )?;
    }
    let prefix = &m.topic_prefix;
    ensure(
        !prefix.is_empty()
            && prefix.len() <= 128
            && !prefix.starts_with('$')
            && !prefix.contains(['+', '#'])
            && !prefix.chars().any(char::is_control)
            && prefix.split('/').all(|level| !level.is_empty()),
        "mqtt.topic_prefix",
        quoted(prefix),
        "topic levels like \"fchm\" or \"site/fchm\": no empty level, no '+', '#' or leading '$'",
    )?;
    ensure(
        m.keep_alive_s >= 5,
        "mqtt.keep_alive_s",
        m.keep_alive_s,
        "seconds >= 5 (0 would disable dead-broker detection)",
    )?;
    ensure(
        (MIN_PACKET..=MQTT_MAX_PACKET).contains(&(m.max_packet_bytes as u64)),
        "mqtt.max_packet_bytes",
        m.max_packet_bytes,
        "bytes, 65536 (64 KiB) to 268435455 (MQTT's limit)",
    )?;
    if let Some(user) = &m.username {
        ensure(
            !user.is_empty() && user.len() <= 65535,
            "mqtt.username",
            quoted(user),
            "a non-empty user name (leave the key out for none)",
        )?;
    }
    if let Some(file) = &m.password_file {
        ensure(
            m.username.is_some(),
            "mqtt.password_file",
            quoted_path(file),
            "to be used with mqtt.username (MQTT 3.1.1 has no password without a user)",
        )?;
    }
    for (key, file) in [
        ("mqtt.password_file", &m.password_file),
        ("mqtt.ca_file", &m.ca_file),
        ("mqtt.client_cert_file", &m.client_cert_file),
        ("mqtt.client_key_file", &m.client_key_file),
    ] {
        if let Some(path) = file {
            existing_file(key, path)?;
        }
    }
    match (&m.client_cert_file, &m.client_key_file) {
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "mqtt.client_key_file",
                "(unset)",
                "a private key file, because mqtt.client_cert_file is set",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "mqtt.client_cert_file",
                "(unset)",
                "a certificate file, because mqtt.client_key_file is set",
            ))
        }
        _ => {}
    }
    ensure(
        m.reconnect_min_ms >= 10,
        "mqtt.reconnect_min_ms",
        m.reconnect_min_ms,
        "milliseconds >= 10",
    )?;
    ensure(
        m.reconnect_max_ms >= m.reconnect_min_ms && m.reconnect_max_ms <= 3_600_000,
        "mqtt.reconnect_max_ms",
        m.reconnect_max_ms,
        &format!(
            "milliseconds >= mqtt.reconnect_min_ms ({}) and <= 3600000",
            m.reconnect_min_ms
        ),
    )?;
    ensure(
        m.max_in_flight >= 1,
        "mqtt.max_in_flight",
        m.max_in_flight,
        "a number of unacknowledged messages, 1 to 65535",
    )
}

fn existing_file(key: &str, path: &Path) -> Check {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            key,
            quoted_path(path),
            "a regular file (this is a directory or device)",
        )),
        Err(e) => Err(ConfigError::invalid(
            key,
            quoted_path(path),
            format!("an existing file ({e})"),
        )),
    }
}

fn embedded_broker(c: &Config) -> Check {
    let b = &c.embedded_broker;
    ensure(
        b.listen.port() != 0,
        "embedded_broker.listen",
        quoted(&b.listen.to_string()),
        "ADDRESS:PORT with a fixed port (the client has to know where to connect)",
    )?;
    let payload = b.max_payload_bytes as u64;
    ensure(
        (MIN_PACKET..=MQTT_MAX_PACKET).contains(&payload),
        "embedded_broker.max_payload_bytes",
        payload,
        "bytes, 65536 (64 KiB) to 268435455",
    )?;
    // The broker drops a client whose packet exceeds its limit; with our own
    // client that would be a reconnect loop, so refuse the combination.
    if c.mqtt.broker == Broker::Embedded {
        ensure(
            payload >= c.mqtt.max_packet_bytes as u64,
            "embedded_broker.max_payload_bytes",
            payload,
            &format!(
                "at least mqtt.max_packet_bytes ({}) when mqtt.broker = \"embedded\"",
                c.mqtt.max_packet_bytes
            ),
        )?;
    }
    Ok(())
}

fn rate(r: &RateConfig) -> Check {
    ensure(
        r.gain.is_finite() && (1.0..=64.0).contains(&r.gain),
        "rate.gain",
        r.gain,
        "an IVN gain from 1 to 64",
    )?;
    for (key, v) in [
        ("rate.min_kbps", r.min_kbps),
        ("rate.target_kbps", r.target_kbps),
        ("rate.max_kbps", r.max_kbps),
    ] {
        ensure(v.is_finite() && v > 0.0, key, v, "a number of kbit/s > 0")?;
    }
    ensure(
        r.min_kbps <= r.max_kbps,
        "rate.min_kbps",
        r.min_kbps,
        &format!("kbit/s <= rate.max_kbps ({})", r.max_kbps),
    )?;
    ensure(
        r.min_kbps <= r.target_kbps && r.target_kbps <= r.max_kbps,
        "rate.target_kbps",
        r.target_kbps,
        &format!(
            "kbit/s between rate.min_kbps ({}) and rate.max_kbps ({})",
            r.min_kbps, r.max_kbps
        ),
    )?;
    ensure(
        (10..=60_000).contains(&r.latency_bound_ms),
        "rate.latency_bound_ms",
        r.latency_bound_ms,
        "milliseconds, 10 to 60000",
    )
}

fn spool(s: &SpoolSection) -> Check {
    ensure(
        !s.dir.as_os_str().is_empty(),
        "spool.dir",
        quoted_path(&s.dir),
        "a directory path",
    )?;
    ensure(
        s.segment_bytes >= MIN_PACKET,
        "spool.segment_bytes",
        s.segment_bytes,
        "bytes >= 65536 (64 KiB)",
    )?;
    // One segment is being written while older ones drain; with room for a
    // single segment the spool could never rotate.
    ensure(
        s.max_bytes / 2 >= s.segment_bytes,
        "spool.max_bytes",
        s.max_bytes,
        &format!("bytes >= 2 x spool.segment_bytes ({})", s.segment_bytes),
    )
}
