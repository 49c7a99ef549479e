//! MQTT session settings: from the config to `rumqttc` options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use thiserror::Error;

use super::topics::Topics;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("mqtt: cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where and how to connect; everything a fresh connection needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub keep_alive: Duration,
    /// Bounds both directions: rumqttc's default (10 KiB) is far below a frame.
    pub max_packet_bytes: usize,
    pub credentials: Option<(String, String)>,
    pub tls: Option<TlsFiles>,
    pub max_in_flight: u16,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The broker's CA (PEM): required, devices do not trust a system store.
    pub ca: PathBuf,
    /// Client certificate and key (PEM), for brokers that authenticate devices.
    pub client: Option<(PathBuf, PathBuf)>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SessionError> {
    std::fs::read(path).map_err(|source| SessionError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The `ring` provider is compiled in (aws-lc needs cmake, which cross
/// builds lack); rustls wants it installed once per process.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl SessionConfig {
    /// Options for one connection. Files are read each time so a rotated
    /// certificate is picked up on the next reconnect.
    pub fn options(&self, topics: &Topics) -> Result<MqttOptions, SessionError> {
        self.options_with_will(Some(LastWill::new(
            topics.available(),
            "offline",
            QoS::AtLeastOnce,
            true,
        )))
    }

    /// Options with an optional last will: a device has one, a server none.
    pub fn options_with_will(&self, will: Option<LastWill>) -> Result<MqttOptions, SessionError> {
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        o.set_keep_alive(self.keep_alive)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
            .set_clean_session(true)
            // Our own window keeps far fewer frames in flight; this only
            // has to never be the limit.
            .set_inflight(self.max_in_flight.saturating_add(16));
        if let Some(w) = will {
            o.set_last_will(w);
        }
        if let Some((user, pass)) = &self.credentials {
            o.set_credentials(user, pass);
        }
        if let Some(tls) = &self.tls {
            install_crypto_provider();
            let ca = read("CA file", &tls.ca)?;
            let client_auth = match &tls.client {
                Some((cert, key)) => {
                    Some((read("client certificate", cert)?, read("client key", key)?))
                }
                None => None,
            };
            o.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        Ok(o)
    }
}
