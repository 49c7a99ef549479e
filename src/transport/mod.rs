//! MQTT transport: topics, session settings, the uplink task, the embedded
//! broker and the on-disk spool.

pub mod backoff;
pub mod broker;
pub mod mqtt;
pub mod spool;
pub mod topics;
pub mod uplink;

pub use topics::Topics;
pub use uplink::{Control, LinkReport, OutFrame, Uplink, UplinkConfig};
