//! The embedded MQTT broker (`rumqttd`), so one camera works with nothing else installed.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("embedded broker: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker: {0}")]
    Start(String),
}

/// A running in-process broker. It lives until the process exits: rumqttd
/// offers no orderly stop, and the daemon never needs one.
#[derive(Debug)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
}

/// Start rumqttd on `listen` (MQTT 3.1.1). `max_payload_bytes` bounds a
/// whole packet (rumqttd counts the header too), so it must exceed the
/// largest frame plus its topic.
pub fn start(listen: SocketAddr, max_payload_bytes: usize) -> Result<EmbeddedBroker, BrokerError> {
    // rumqttd binds inside its own thread and only logs a failure there;
    // binding here first turns "port in use" into an error the caller sees.
    let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Listen {
        addr: listen,
        source,
    })?;
    let addr = probe.local_addr().map_err(|source| BrokerError::Listen {
        addr: listen,
        source,
    })?;
    drop(probe);

    let server = ServerSettings {
        name: "fchm-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload_bytes,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            max_segment_size: (max_payload_bytes * 8).max(16 << 20),
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                log::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;
    // Clients started right after this must not race the broker's bind.
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if t.elapsed() > std::time::Duration::from_secs(10) {
            return Err(BrokerError::Start(format!(
                "not listening on {addr} after 10 s"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(EmbeddedBroker { addr })
}
