//! Installs the global `log` logger: journald with structured fields when
//! running under systemd, plain lines on stderr otherwise.
//!
//! Key-values become journal fields, so `log::info!(device = id; "connected")`
//! can be found with `journalctl -t fchmd DEVICE=cam1`.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context as _;
use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

use crate::config::{LogConfig, LogTarget};

/// `SYSLOG_IDENTIFIER` of every journal entry (`journalctl -t fchmd`),
/// whatever the binary was renamed to.
pub const SYSLOG_IDENTIFIER: &str = "fchmd";

/// Installs the logger chosen by `cfg` and sets the maximum level. Fails if
/// journald was requested but cannot be reached, or a logger is already set.
pub fn init(cfg: &LogConfig) -> anyhow::Result<()> {
    let inner: Box<dyn Log> =
        if use_journal(cfg.target, systemd_journal_logger::connected_to_journal()) {
            Box::new(
                JournalLog::new()
                    .context("log.target: cannot open the journald socket")?
                    .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned()),
            )
        } else {
            Box::new(StderrLogger { level: cfg.level })
        };
    log::set_boxed_logger(Box::new(Quiet { inner })).context("a logger is already installed")?;
    log::set_max_level(cfg.level);
    Ok(())
}

/// Drops the embedded broker's records. rumqttd traces through `tracing`,
/// whose `log` bridge turns every span of every packet into an ERROR-level
/// line; the daemon logs the broker's start and failures itself.
struct Quiet {
    inner: Box<dyn Log>,
}

pub fn is_broker_noise(target: &str) -> bool {
    target.starts_with("rumqttd") || target.starts_with("tracing")
}

impl Log for Quiet {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !is_broker_noise(metadata.target()) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !is_broker_noise(record.target()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// `auto` means journald only when our stderr *is* the journal stream
/// (`$JOURNAL_STREAM` matches), so `fchmd` run by hand in a terminal of a
/// systemd machine still logs to the terminal.
pub fn use_journal(target: LogTarget, connected_to_journal: bool) -> bool {
    match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => connected_to_journal,
    }
}

/// `LEVEL target: message key=value ...` lines on stderr.
pub struct StderrLogger {
    pub level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One write per line so that lines from several threads do not interleave.
        let line = format_record(record);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The stderr line for `record`, newline included.
pub fn format_record(record: &Record<'_>) -> String {
    let mut line = format!("{} {}: {}", record.level(), record.target(), record.args());
    let mut kvs = AppendKeyValues(&mut line);
    // Our visitor never fails; a failing source just loses its remaining pairs.
    let _ = record.key_values().visit(&mut kvs);
    line.push('\n');
    line
}

struct AppendKeyValues<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for AppendKeyValues<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let text = value.to_string();
        // Quote what would otherwise break `key=value` splitting by a reader.
        let needs_quotes = text.is_empty()
            || text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
        if needs_quotes {
            let _ = write!(self.0, " {key}={text:?}");
        } else {
            let _ = write!(self.0, " {key}={text}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn lines_carry_level_target_message_and_fields() {
        let kvs = [
            ("device", Value::from("cam1")),
            ("frames", Value::from(42u64)),
        ];
        let line = format_record(
            &Record::builder()
                .level(Level::Warn)
                .target("fchm::edge")
                .args(format_args!("broker unreachable, spooling"))
                .key_values(&kvs)
                .build(),
        );
        assert_eq!(
            line,
            "WARN fchm::edge: broker unreachable, spooling device=cam1 frames=42\n"
        );
    }

    #[test]
    fn values_that_would_break_key_value_parsing_are_quoted() {
        let kvs = [
            ("path", Value::from("/a b")),
            ("empty", Value::from("")),
            ("eq", Value::from("x=y")),
        ];
        let line = format_record(
            &Record::builder()
                .level(Level::Info)
                .target("t")
                .args(format_args!("m"))
                .key_values(&kvs)
                .build(),
        );
        assert_eq!(line, "INFO t: m path=\"/a b\" empty=\"\" eq=\"x=y\"\n");
    }

    #[test]
    fn level_filter_applies() {
        let logger = StderrLogger {
            level: LevelFilter::Info,
        };
        let at = |level| Metadata::builder().level(level).target("t").build();
        assert!(logger.enabled(&at(Level::Error)));
        assert!(logger.enabled(&at(Level::Info)));
        assert!(!logger.enabled(&at(Level::Debug)));
        let off = StderrLogger {
            level: LevelFilter::Off,
        };
        assert!(!off.enabled(&at(Level::Error)));
    }

    #[test]
    fn auto_uses_journald_only_when_connected() {
        assert!(use_journal(LogTarget::Auto, true));
        assert!(!use_journal(LogTarget::Auto, false));
        assert!(use_journal(LogTarget::Journald, false));
        assert!(!use_journal(LogTarget::Stderr, true));
    }
}
