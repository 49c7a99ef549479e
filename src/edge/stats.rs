//! The daemon's counters and the JSON it publishes on `stats`.
//!
//! Every captured frame ends up in exactly one place: acknowledged, still
//! on its way (queued, in flight, spooled), or dropped under a named cause.
//! The totals are published so anyone can check that nothing vanished.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::aux::AuxShared;
use super::control::{mode_name, Settings};
use crate::rate::{Controller, Planner};
use crate::transport::LinkReport;

/// Counters of the capture and encode stages, shared with their threads.
#[derive(Debug, Default)]
pub struct EdgeCounters {
    pub captured: AtomicU64,
    pub capture_errors: AtomicU64,
    /// Dropped between capture and encoder because the encoder was behind.
    pub dropped_queue: AtomicU64,
    /// Not encoded because the link cannot carry even the lowest rate.
    pub skipped_rate: AtomicU64,
    pub encoded: AtomicU64,
    pub encoded_bytes: AtomicU64,
    pub encode_errors: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Snapshot {
    captured: u64,
    encoded: u64,
    encoded_bytes: u64,
}

/// Builds the stats payload from the uplink's report and the edge state.
pub struct StatsBuilder {
    pub device: String,
    pub counters: Arc<EdgeCounters>,
    pub planner: Arc<Mutex<Planner>>,
    pub controller: Arc<Mutex<Controller>>,
    pub settings: Arc<Mutex<Settings>>,
    pub aux: Arc<AuxShared>,
    last: Snapshot,
}

impl StatsBuilder {
    pub fn new(
        device: String,
        counters: Arc<EdgeCounters>,
        planner: Arc<Mutex<Planner>>,
        controller: Arc<Mutex<Controller>>,
        settings: Arc<Mutex<Settings>>,
        aux: Arc<AuxShared>,
    ) -> Self {
        Self {
            device,
            counters,
            planner,
            controller,
            settings,
            aux,
            last: Snapshot::default(),
        }
    }

    /// The counters only (no rates): the daemon's final accounting on exit.
    pub fn accounting(&self, link: &LinkReport) -> serde_json::Value {
        json!({
            "device": self.device,
            "spool_depth": link.spool_depth,
            "spool_bytes": link.spool_bytes,
            "reconnects": link.reconnects,
            "refused_commands": link.refused_commands,
            "dropped": self.dropped(link),
            "totals": self.totals(link),
            // The aux layer stands apart: none of its frames is in the totals above.
            "aux": self.aux.json(link.aux_acked, link.aux_dropped_offline, link.aux_dropped_congestion),
        })
    }

    fn dropped(&self, link: &LinkReport) -> serde_json::Value {
        let c = &self.counters;
        json!({
            "capture_queue": c.dropped_queue.load(Relaxed),
            "rate_skip": c.skipped_rate.load(Relaxed),
            "encode_error": c.encode_errors.load(Relaxed),
            "congestion": link.dropped_congestion,
            "spool_full": link.dropped_spool_full,
            "spool_error": link.dropped_spool_error,
        })
    }

    fn totals(&self, link: &LinkReport) -> serde_json::Value {
        let c = &self.counters;
        json!({
            "captured": c.captured.load(Relaxed),
            "capture_errors": c.capture_errors.load(Relaxed),
            "encoded": c.encoded.load(Relaxed),
            "acked": link.total_acked_frames,
            "spool_recovered": link.spool_recovered,
        })
    }

    pub fn build(&mut self, link: &LinkReport) -> serde_json::Value {
        let c = &self.counters;
        let now = Snapshot {
            captured: c.captured.load(Relaxed),
            encoded: c.encoded.load(Relaxed),
            encoded_bytes: c.encoded_bytes.load(Relaxed),
        };
        let dt = link.interval_s.max(1e-3);
        let per_s = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
        let (gain, correction) = self
            .planner
            .lock()
            .map(|p| (p.gain(), p.model().correction()))
            .unwrap_or((f32::NAN, f64::NAN));
        let (target, rtt, goodput) = self
            .controller
            .lock()
            .map(|c| {
                (
                    c.target_kbps(),
                    c.rtt().map(|d| d.as_secs_f64() * 1e3),
                    c.goodput_kbps(),
                )
            })
            .unwrap_or((f64::NAN, None, f64::NAN));
        let mode = self
            .settings
            .lock()
            .map(|s| mode_name(s.mode))
            .unwrap_or_default();
        let ts_us = crate::clock::unix_us();
        let rates = json!({
            "ts_us": ts_us,
            "interval_s": link.interval_s,
            "connected": link.connected,
            "fps": {
                "captured": per_s(now.captured, self.last.captured),
                "encoded": per_s(now.encoded, self.last.encoded),
                "sent": link.acked_frames as f64 / dt,
            },
            // kbit/s acknowledged by the broker in this interval, and produced by the encoder.
            "bitrate_kbps": link.acked_bytes as f64 * 8.0 / 1e3 / dt,
            "encoded_kbps": (now.encoded_bytes.saturating_sub(self.last.encoded_bytes)) as f64 * 8.0 / 1e3 / dt,
            "goodput_kbps": goodput,
            "rate_mode": mode,
            "target_kbps": target,
            "gain": gain,
            "rate_model_correction": correction,
            "rtt_ms": rtt,
            "latency_ms": { "p50": link.latency_p50_ms, "p95": link.latency_p95_ms, "max": link.latency_max_ms },
            "bytes_in_flight": link.in_flight_bytes,
            "frames_in_flight": link.in_flight_frames,
            "live_queue": link.live_queue,
        });
        // The periodic payload is the final accounting plus this interval's rates.
        let mut v = self.accounting(link);
        if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), rates) {
            obj.extend(extra);
        }
        self.last = now;
        v
    }
}
