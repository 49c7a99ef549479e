//! fchmd configuration: the shipped files parse to what they say, and every
//! kind of bad value yields its own error naming the key and the value.

use std::path::{Path, PathBuf};

use fchm::config::{
    AuxMode, Broker, Config, ConfigError, ConfigErrorKind, LogTarget, MqttConfig, Origin,
    Overrides, RateMode,
};
use proptest::prelude::*;

const SHIPPED: &str = include_str!("../config/fchmd.toml");
const DEMO: &str = include_str!("../config/fchmd-demo.toml");

fn err(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(c) => panic!("accepted:\n{text}\nas {c:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's kind, key and value, that the expectation mentions
/// `expected`, and that the rendered message carries all of it.
#[track_caller]
fn assert_err(e: &ConfigError, kind: ConfigErrorKind, key: &str, value: &str, expected: &str) {
    let shown = e.to_string();
    assert_eq!(
        (e.kind, e.key.as_str(), e.value.as_str()),
        (kind, key, value),
        "{shown}"
    );
    assert!(e.expected.contains(expected), "{expected:?} not in {shown}");
    assert!(
        shown.starts_with(&format!("config: {key} = {value}: ")),
        "{shown}"
    );
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

// ---------------------------------------------------------------- shipped files

#[test]
fn shipped_config_holds_the_defaults_and_a_remote_broker() {
    let c = Config::from_toml_str(SHIPPED).unwrap_or_else(|e| panic!("{e}"));
    let expected = Config {
        mqtt: MqttConfig {
            broker: Broker::Remote {
                host: "broker.local".into(),
                port: 1883,
                tls: false,
            },
            ..MqttConfig::default()
        },
        ..Config::default()
    };
    // Equality with the defaults is what makes "Default: X" in its comments true.
    assert_eq!(c, expected);
    assert_eq!(c.source.spec, "v4l2:/dev/video0");
    assert_eq!(c.rate.mode, RateMode::Auto);
    assert_eq!(c.mqtt_client_id(), format!("fchmd-{}", c.device_id));
}

#[test]
fn demo_config_runs_without_hardware_or_network() {
    let c = Config::from_toml_str(DEMO).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.device_id, "demo");
    assert_eq!(c.mqtt.broker, Broker::Embedded);
    assert_eq!(c.source.spec, "test-scene");
    assert!(c.source.looped);
    assert_eq!(c.spool.dir, PathBuf::from("target/demo-spool"));
    assert!(c.spool.dir.is_relative());
    assert_eq!(c.embedded_broker.listen.to_string(), "127.0.0.1:18830");
    assert_eq!(c.log.target, LogTarget::Stderr);
    assert_eq!(c.mqtt_client_id(), "fchmd-demo");
}

#[test]
fn shipped_config_documents_every_key_in_its_section() {
    // A config with every optional key set serializes every key name there is.
    let mut full = Config::default();
    full.mqtt.client_id = Some("c".into());
    full.mqtt.username = Some("u".into());
    for p in [
        &mut full.mqtt.password_file,
        &mut full.mqtt.ca_file,
        &mut full.mqtt.client_cert_file,
        &mut full.mqtt.client_key_file,
    ] {
        *p = Some(PathBuf::from("/x"));
    }
    let table: toml::Table = toml::Table::try_from(&full).expect("serializable");
    let mut missing = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                let body = section_text(SHIPPED, key)
                    .unwrap_or_else(|| panic!("no [{key}] section in config/fchmd.toml"));
                for name in section.keys() {
                    if !mentions_key(body, name) {
                        missing.push(format!("{key}.{name}"));
                    }
                }
            }
            _ => {
                let top = SHIPPED.split("\n[").next().unwrap_or("");
                if !mentions_key(top, key) {
                    missing.push(key.clone());
                }
            }
        }
    }
    assert!(missing.is_empty(), "config/fchmd.toml lacks {missing:?}");
}

/// The text between `[name]` and the next section header.
fn section_text<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let header = format!("\n[{name}]\n");
    let start = doc.find(&header)? + header.len();
    let rest = &doc[start..];
    Some(rest.find("\n[").map_or(rest, |end| &rest[..end]))
}

/// `key = ...` set, or shown commented out as `# key = ...`.
fn mentions_key(body: &str, key: &str) -> bool {
    body.lines().any(|line| {
        let line = line.trim_start_matches(['#', ' ']);
        line.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

#[test]
fn empty_file_is_all_defaults_and_defaults_are_documented_values() {
    let c = Config::from_toml_str("").expect("empty is valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.mqtt.broker, Broker::Embedded);
    assert_eq!(c.embedded_broker.listen.to_string(), "127.0.0.1:1883");
    assert_eq!(c.mqtt.topic_prefix, "fchm");
    assert_eq!(c.log.level, log::LevelFilter::Info);
    assert_eq!(c.pipeline.queue_frames, 2);
}

#[test]
fn error_message_reads_key_value_expected_and_position() {
    let e = err("[rate]\ntarget_kbps = -5\n");
    assert_eq!(
        e.to_string(),
        "config: rate.target_kbps = -5: expected a number of kbit/s > 0 (line 2, column 15)"
    );
    assert_eq!(ConfigError::EXIT_CODE, 78);
}

// ------------------------------------------------------------- one per class

#[test]
fn bad_broker_url() {
    let e = err("[mqtt]\nbroker = \"ftp://broker:21\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.broker",
        "\"ftp://broker:21\"",
        "mqtts://",
    );
    assert_eq!(
        e.origin,
        Some(Origin::Toml {
            file: None,
            line: 2,
            column: 10
        })
    );
    let e = err("[mqtt]\nbroker = \"mqtt://user:pw@broker\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.broker",
        "\"mqtt://user:pw@broker\"",
        "password_file",
    );
    let e = err("mqtt.broker = \"mqtt://broker:0\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.broker",
        "\"mqtt://broker:0\"",
        "1-65535",
    );
}

#[test]
fn good_broker_urls_take_default_ports() {
    let c = Config::from_toml_str("[mqtt]\nbroker = \"mqtts://b.example\"").expect("valid");
    assert_eq!(
        c.mqtt.broker,
        Broker::Remote {
            host: "b.example".into(),
            port: 8883,
            tls: true
        }
    );
}

#[test]
fn bad_source_spec_prefix() {
    let e = err("[source]\nspec = \"rtsp://cam/stream\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "source.spec",
        "\"rtsp://cam/stream\"",
        "v4l2:/dev/videoN",
    );
    // A known prefix with nothing after it is no source either.
    let e = err("[source]\nspec = \"y4m:\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "source.spec",
        "\"y4m:\"",
        "y4m:PATH",
    );
    for good in [
        "test-scene",
        "y4m:-",
        "y4m:/tmp/a.y4m",
        "v4l2:/dev/video2",
        "images:photos",
    ] {
        Config::from_toml_str(&format!("[source]\nspec = {good:?}"))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[test]
fn fps_out_of_range() {
    let e = err("[source]\nfps = 0\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "source.fps",
        "0",
        "> 0 and <= 120",
    );
    let e = err("[source]\nfps = 120.5\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "source.fps",
        "120.5",
        "<= 120",
    );
    let e = err("[source]\nfps = nan\n");
    assert_err(&e, ConfigErrorKind::Invalid, "source.fps", "NaN", "> 0");
}

#[test]
fn negative_kbps() {
    for key in ["min_kbps", "target_kbps", "max_kbps"] {
        let e = err(&format!("[rate]\n{key} = -5\n"));
        assert_err(
            &e,
            ConfigErrorKind::Invalid,
            &format!("rate.{key}"),
            "-5",
            "kbit/s > 0",
        );
    }
}

#[test]
fn min_kbps_above_max_kbps() {
    let e = err("[rate]\nmin_kbps = 500\nmax_kbps = 200\ntarget_kbps = 300\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "rate.min_kbps",
        "500",
        "rate.max_kbps (200)",
    );
    let e = err("[rate]\ntarget_kbps = 50\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "rate.target_kbps",
        "50",
        "between rate.min_kbps (100)",
    );
}

#[test]
fn gain_out_of_range() {
    let e = err("[rate]\ngain = 0.5\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "rate.gain",
        "0.5",
        "from 1 to 64",
    );
    let e = err("[rate]\ngain = 65\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "rate.gain",
        "65",
        "from 1 to 64",
    );
}

#[test]
fn bad_rate_mode_keyword() {
    let e = err("[rate]\nmode = \"fast\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "rate.mode",
        "\"fast\"",
        "\"auto\", \"gain\", \"kbps\"",
    );
}

#[test]
fn unknown_key() {
    let e = err("[rate]\ngian = 3.0\n");
    assert_err(
        &e,
        ConfigErrorKind::UnknownKey,
        "rate.gian",
        "3.0",
        "`gain`",
    );
    let e = err("devce_id = \"x\"\n");
    assert_err(
        &e,
        ConfigErrorKind::UnknownKey,
        "devce_id",
        "\"x\"",
        "`device_id`",
    );
    let e = err("[camera]\nspec = \"v4l2:/dev/video0\"\n");
    assert_err(
        &e,
        ConfigErrorKind::UnknownKey,
        "camera",
        "(a table)",
        "`source`",
    );
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn wrong_type() {
    let e = err("[source]\nfps = \"fast\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Type,
        "source.fps",
        "\"fast\"",
        "expected a number",
    );
    let e = err("[spool]\nfsync = \"yes\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Type,
        "spool.fsync",
        "\"yes\"",
        "boolean",
    );
    let e = err("[spool]\nmax_bytes = -1\n");
    assert_err(
        &e,
        ConfigErrorKind::Type,
        "spool.max_bytes",
        "-1",
        "non-negative integer",
    );
    let e = err("[mqtt]\nkeep_alive_s = 70000\n");
    assert_err(
        &e,
        ConfigErrorKind::Type,
        "mqtt.keep_alive_s",
        "70000",
        "0 to 65535",
    );
    let e = err("rate = 5\n");
    assert_err(&e, ConfigErrorKind::Type, "rate", "5", "table");
    let e = err("[embedded_broker]\nlisten = \"localhost\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Type,
        "embedded_broker.listen",
        "\"localhost\"",
        "socket address",
    );
}

#[test]
fn syntax_error_keeps_line_and_names_the_key() {
    let e = err("device_id = \"x\"\n[rate]\ngain = 3.0.1\n");
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ConfigErrorKind::Syntax, "rate.gain"),
        "{e}"
    );
    match &e.origin {
        Some(Origin::Toml { line: 3, .. }) => {}
        other => panic!("wrong position {other:?}: {e}"),
    }
    assert!(e.to_string().contains("invalid TOML"), "{e}");
    let e = err("[mqtt]\nbroker = \"unterminated\n");
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ConfigErrorKind::Syntax, "mqtt.broker"),
        "{e}"
    );
    let e = err("[rate]\nmode = \"auto\"\nmode = \"gain\"\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax, "duplicate key: {e}");
}

#[test]
fn bad_log_level_and_target() {
    let e = err("[log]\nlevel = \"verbose\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "log.level",
        "\"verbose\"",
        "\"debug\"",
    );
    let e = err("[log]\ntarget = \"syslog\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "log.target",
        "\"syslog\"",
        "\"journald\"",
    );
    let c =
        Config::from_toml_str("[log]\nlevel = \"trace\"\ntarget = \"journald\"").expect("valid");
    assert_eq!(
        (c.log.level, c.log.target),
        (log::LevelFilter::Trace, LogTarget::Journald)
    );
}

#[test]
fn bad_device_id() {
    let long = "x".repeat(65);
    for (bad, why) in [
        ("a/b", "'/'"),
        ("cam+", "'+'"),
        ("#", "'#'"),
        ("", "empty"),
        (long.as_str(), "64 characters"),
    ] {
        let e = err(&format!("device_id = {bad:?}\n"));
        assert_err(
            &e,
            ConfigErrorKind::Invalid,
            "device_id",
            &format!("{bad:?}"),
            why,
        );
    }
    let e = err("device_id = \"a\\u0000b\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "device_id",
        "\"a\\0b\"",
        "control",
    );
    let ok = "x".repeat(64);
    Config::from_toml_str(&format!("device_id = {ok:?}")).expect("64 chars is fine");
}

#[test]
fn missing_tls_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("ca.pem");
    let e = err(&format!("[mqtt]\nca_file = {}\n", toml_path(&missing)));
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.ca_file",
        &toml_path(&missing),
        "an existing file",
    );
    let e = err(&format!("[mqtt]\nca_file = {}\n", toml_path(dir.path())));
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.ca_file",
        &toml_path(dir.path()),
        "regular file",
    );
}

#[test]
fn client_cert_without_key_and_key_without_cert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("client.pem");
    std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").expect("write");
    let e = err(&format!("[mqtt]\nclient_cert_file = {}\n", toml_path(&pem)));
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.client_key_file",
        "(unset)",
        "mqtt.client_cert_file is set",
    );
    let e = err(&format!("[mqtt]\nclient_key_file = {}\n", toml_path(&pem)));
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.client_cert_file",
        "(unset)",
        "mqtt.client_key_file is set",
    );
    let both = format!(
        "[mqtt]\nbroker = \"mqtts://b\"\nca_file = {p}\nclient_cert_file = {p}\nclient_key_file = {p}\n",
        p = toml_path(&pem)
    );
    Config::from_toml_str(&both).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn password_file_needs_username_and_must_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").expect("write");
    let e = err(&format!("[mqtt]\npassword_file = {}\n", toml_path(&pw)));
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.password_file",
        &toml_path(&pw),
        "mqtt.username",
    );
    let gone = dir.path().join("gone");
    let e = err(&format!(
        "[mqtt]\nusername = \"u\"\npassword_file = {}\n",
        toml_path(&gone)
    ));
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.password_file",
        &toml_path(&gone),
        "an existing file",
    );
}

#[test]
fn mqtt_numeric_limits() {
    let cases = [
        ("keep_alive_s = 0", "mqtt.keep_alive_s", "0", ">= 5"),
        (
            "max_packet_bytes = 65535",
            "mqtt.max_packet_bytes",
            "65535",
            "65536",
        ),
        (
            "max_packet_bytes = 268435456",
            "mqtt.max_packet_bytes",
            "268435456",
            "268435455",
        ),
        (
            "reconnect_min_ms = 5",
            "mqtt.reconnect_min_ms",
            "5",
            ">= 10",
        ),
        (
            "reconnect_min_ms = 2000\nreconnect_max_ms = 1000",
            "mqtt.reconnect_max_ms",
            "1000",
            "reconnect_min_ms (2000)",
        ),
        ("max_in_flight = 0", "mqtt.max_in_flight", "0", "1 to 65535"),
        (
            "topic_prefix = \"a/+/b\"",
            "mqtt.topic_prefix",
            "\"a/+/b\"",
            "'+'",
        ),
        (
            "topic_prefix = \"fchm/\"",
            "mqtt.topic_prefix",
            "\"fchm/\"",
            "no empty level",
        ),
        (
            "topic_prefix = \"$SYS\"",
            "mqtt.topic_prefix",
            "\"$SYS\"",
            "'$'",
        ),
        (
            "client_id = \"\"",
            "mqtt.client_id",
            "\"\"",
            "1 to 256 bytes",
        ),
        ("username = \"\"", "mqtt.username", "\"\"", "non-empty"),
    ];
    for (line, key, value, expected) in cases {
        let e = err(&format!("[mqtt]\n{line}\n"));
        assert_err(&e, ConfigErrorKind::Invalid, key, value, expected);
    }
}

#[test]
fn embedded_broker_limits() {
    let e = err("[embedded_broker]\nlisten = \"127.0.0.1:0\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "embedded_broker.listen",
        "\"127.0.0.1:0\"",
        "fixed port",
    );
    let e = err("[mqtt]\nmax_packet_bytes = 2097152\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "embedded_broker.max_payload_bytes",
        "1048576",
        "mqtt.max_packet_bytes (2097152)",
    );
    // No line: the file did not set the key that is blamed.
    assert_eq!(e.origin, None);
    // With a remote broker the embedded one is unused and its limit irrelevant.
    Config::from_toml_str("[mqtt]\nbroker = \"mqtt://b\"\nmax_packet_bytes = 2097152\n")
        .expect("valid");
}

#[test]
fn spool_stats_pipeline_source_size_limits() {
    let cases = [
        (
            "[spool]\nsegment_bytes = 1000",
            "spool.segment_bytes",
            "1000",
            ">= 65536",
        ),
        (
            "[spool]\nmax_bytes = 1048576\nsegment_bytes = 1048576",
            "spool.max_bytes",
            "1048576",
            "2 x spool.segment_bytes",
        ),
        ("[spool]\ndir = \"\"", "spool.dir", "\"\"", "directory"),
        (
            "[stats]\ninterval_s = 0",
            "stats.interval_s",
            "0",
            "0.5 to 3600",
        ),
        (
            "[pipeline]\nqueue_frames = 0",
            "pipeline.queue_frames",
            "0",
            "1 to 1024",
        ),
        ("[source]\nwidth = 8", "source.width", "8", "16 to 8192"),
        (
            "[source]\nheight = 10000",
            "source.height",
            "10000",
            "16 to 8192",
        ),
        ("bundle = \"\"", "bundle", "\"\"", "bundle directory"),
    ];
    for (text, key, value, expected) in cases {
        let e = err(text);
        assert_err(&e, ConfigErrorKind::Invalid, key, value, expected);
    }
}

#[test]
fn aux_section_limits_and_defaults() {
    let c = Config::from_toml_str("").expect("empty is valid");
    assert_eq!(c.aux.bundle(), None, "aux is off without a bundle");
    assert_eq!(
        (c.aux.ring_frames, c.aux.budget_share, c.aux.mode),
        (8, 0.5, AuxMode::Off)
    );
    let c = Config::from_toml_str(
        "[aux]
bundle = \"/b\"\nmode = \"on\"\nring_frames = 64\nbudget_share = 0.9",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.aux.bundle(), Some(Path::new("/b")));
    assert_eq!(c.aux.mode, AuxMode::On);
    let cases = [
        ("[aux]\nring_frames = 0", "aux.ring_frames", "0", "1 to 64"),
        (
            "[aux]\nring_frames = 65",
            "aux.ring_frames",
            "65",
            "1 to 64",
        ),
        (
            "[aux]\nbudget_share = 0.01",
            "aux.budget_share",
            "0.01",
            "0.05 to 0.9",
        ),
        (
            "[aux]\nbudget_share = 0.95",
            "aux.budget_share",
            "0.95",
            "0.05 to 0.9",
        ),
        (
            "[aux]\nmode = \"on\"",
            "aux.mode",
            "\"on\"",
            "needs a human-layer bundle",
        ),
        (
            "[aux]\nbundle = \"\"\nmode = \"on\"",
            "aux.mode",
            "\"on\"",
            "aux.bundle is empty",
        ),
    ];
    for (text, key, value, expected) in cases {
        let e = err(text);
        assert_err(&e, ConfigErrorKind::Invalid, key, value, expected);
    }
    let e = err("[aux]\nmode = \"once\"\n");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "aux.mode",
        "\"once\"",
        "\"off\", \"on\"",
    );
    let e = err("[aux]\nbundel = \"x\"\n");
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
}

// ------------------------------------------------------------ load, overrides

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).expect_err("missing file");
    assert_eq!(e.kind, ConfigErrorKind::Unreadable);
    let shown = e.to_string();
    assert!(shown.contains(&missing.display().to_string()), "{shown}");
    assert!(shown.contains("No such file"), "{shown}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[source]\nfps = -1\n").expect("write");
    let e = Config::load(&bad).expect_err("bad value");
    assert_eq!(e.key, "source.fps");
    assert!(
        e.to_string().ends_with(&format!("({}:2:7)", bad.display())),
        "{e}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, DEMO).expect("write");
    assert_eq!(Config::load(&good).expect("valid").device_id, "demo");
}

#[test]
fn overrides_replace_and_revalidate() {
    let mut c = Config::from_toml_str(SHIPPED).expect("valid");
    c.apply_overrides(&Overrides {
        broker: Some("embedded".into()),
        source: Some("y4m:-".into()),
        device_id: Some("cam7".into()),
    })
    .expect("valid overrides");
    assert_eq!(c.mqtt.broker, Broker::Embedded);
    assert_eq!(c.source.spec, "y4m:-");
    assert_eq!(c.mqtt_client_id(), "fchmd-cam7");

    let before = c.clone();
    let e = c
        .apply_overrides(&Overrides {
            broker: Some("tcp://x".into()),
            ..Overrides::default()
        })
        .expect_err("bad broker");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "mqtt.broker",
        "\"tcp://x\"",
        "mqtt://",
    );
    assert_eq!(e.origin, Some(Origin::Override));
    assert!(e.to_string().ends_with("(from the command line)"), "{e}");

    let e = c
        .apply_overrides(&Overrides {
            source: Some("/dev/video0".into()),
            ..Overrides::default()
        })
        .expect_err("bad source");
    assert_err(
        &e,
        ConfigErrorKind::Invalid,
        "source.spec",
        "\"/dev/video0\"",
        "v4l2:",
    );
    let e = c
        .apply_overrides(&Overrides {
            device_id: Some("a/b".into()),
            ..Overrides::default()
        })
        .expect_err("bad device id");
    assert_err(&e, ConfigErrorKind::Invalid, "device_id", "\"a/b\"", "'/'");
    assert_eq!(
        c, before,
        "a refused override must leave the config untouched"
    );
}

#[test]
fn override_to_embedded_checks_the_files_embedded_limit() {
    let mut c =
        Config::from_toml_str("[mqtt]\nbroker = \"mqtt://b\"\nmax_packet_bytes = 2097152\n")
            .expect("valid with a remote broker");
    let e = c
        .apply_overrides(&Overrides {
            broker: Some("embedded".into()),
            ..Overrides::default()
        })
        .expect_err("embedded broker too small for the packets");
    assert_eq!(e.key, "embedded_broker.max_payload_bytes");
    // The command line did not set that key; do not blame it.
    assert_eq!(e.origin, None);
}

// ------------------------------------------------------------------- fuzzing

/// Whatever the input: no panic, and either a valid config that survives a
/// round trip through TOML, or an error that renders with its key.
fn check_total(text: &str) -> Result<(), TestCaseError> {
    match Config::from_toml_str(text) {
        Ok(c) => {
            let again = toml::to_string(&c).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Config::from_toml_str(&again), Ok(c));
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("config: "), "{}", shown);
            prop_assert!(!e.key.is_empty(), "{}", shown);
            prop_assert!(shown.contains(&e.key), "{}", shown);
        }
    }
    Ok(())
}

/// A value as it could appear on the right of `=` (valid TOML or not).
fn toml_ish_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-1000i64..100_000).prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| if f.is_nan() {
            "nan".to_owned()
        } else if f.is_infinite() {
            if f > 0.0 { "inf" } else { "-inf" }.to_owned()
        } else {
            format!("{f:?}")
        }),
        (0.0f64..200.0).prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,24}".prop_map(|s| format!("{s:?}")),
        prop::sample::select(vec![
            "\"embedded\"",
            "\"mqtt://h:1\"",
            "\"mqtts://[::1]\"",
            "\"test-scene\"",
            "\"v4l2:/dev/video9\"",
            "\"auto\"",
            "\"gain\"",
            "\"kbps\"",
            "\"trace\"",
            "\"stderr\"",
            "\"0.0.0.0:1\"",
            "\"/etc/hostname\"",
            "[1, 2]",
            "{ a = 1 }",
            "{}",
            "[]",
            "\"\"",
            "1979-05-27T07:32:00Z",
            "'lit'",
            "\"\"\"multi\nline\"\"\"",
        ])
        .prop_map(str::to_owned),
        "[^\n]{0,16}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Set the value of the n-th key line (commented-out ones are uncommented).
    Replace(usize, String),
    Delete(usize),
    Duplicate(usize),
    InsertKey(usize, String, String),
    InsertHeader(usize, String),
    InsertJunk(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), toml_ish_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
        1 => (any::<usize>(), "[a-z_]{1,14}", toml_ish_value())
            .prop_map(|(i, k, v)| Mutation::InsertKey(i, k, v)),
        1 => (any::<usize>(), "[a-z_.]{1,16}").prop_map(|(i, h)| Mutation::InsertHeader(i, h)),
        1 => (any::<usize>(), "[^\n]{0,20}").prop_map(|(i, j)| Mutation::InsertJunk(i, j)),
    ]
}

fn is_key_line(line: &str) -> bool {
    let bare = line.trim_start_matches(['#', ' ']);
    bare.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

fn mutate(base: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
    for m in mutations {
        let keyed: Vec<usize> = (0..lines.len())
            .filter(|&i| is_key_line(&lines[i]))
            .collect();
        let pick = |i: usize| keyed.get(i % keyed.len().max(1)).copied();
        let at = |i: usize, len: usize| i % (len + 1);
        match m {
            Mutation::Replace(i, value) => {
                if let Some(n) = pick(*i) {
                    let bare = lines[n].trim_start_matches(['#', ' ']).to_owned();
                    if let Some((key, _)) = bare.split_once(" = ") {
                        lines[n] = format!("{key} = {value}");
                    }
                }
            }
            Mutation::Delete(i) => {
                if let Some(n) = pick(*i) {
                    lines.remove(n);
                }
            }
            Mutation::Duplicate(i) => {
                if let Some(n) = pick(*i) {
                    let line = lines[n].clone();
                    lines.insert(n, line);
                }
            }
            Mutation::InsertKey(i, k, v) => {
                let n = at(*i, lines.len());
                lines.insert(n, format!("{k} = {v}"));
            }
            Mutation::InsertHeader(i, h) => {
                let n = at(*i, lines.len());
                lines.insert(n, format!("[{h}]"));
            }
            Mutation::InsertJunk(i, j) => {
                let n = at(*i, lines.len());
                lines.insert(n, j.clone());
            }
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_total(&text)?;
    }

    #[test]
    fn toml_like_text_never_panics(text in "([a-z_.\\[\\]]{0,12} ?= ?[-0-9a-z\"'.:/\\[\\]{}, ]{0,16}\n){0,8}") {
        check_total(&text)?;
    }

    #[test]
    fn mutated_shipped_configs_parse_or_fail_cleanly(
        base in prop::sample::select(vec![SHIPPED, DEMO]),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        check_total(&mutate(base, &mutations))?;
    }
}
