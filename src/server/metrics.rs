//! The server's Prometheus metrics (`GET /metrics`, text exposition format).
//!
//! Every frame that reaches the server ends in exactly one of
//! `frames_decoded_total`, `frames_refused_total{cause}` or
//! `frames_duplicate_total`, so the three add up to what the broker delivered.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Causes of a refused frame, as `cause` label values. Registered up front so
/// every series exists (at 0) before the first refusal: a dashboard or an
/// alert can then tell "none yet" from "not reporting".
pub const REFUSAL_CAUSES: [&str; 8] = [
    "malformed",
    "unknown_bundle",
    "wrong_layer",
    "shape",
    "bitstream",
    "internal",
    "bad_topic",
    "overload",
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub decoded: IntCounterVec,
    pub refused: IntCounterVec,
    pub duplicates: IntCounter,
    pub bytes: IntCounterVec,
    pub decode_seconds: Histogram,
    pub detections_published: IntCounter,
    pub set_relayed: IntCounterVec,
    pub invalid: IntCounterVec,
    pub devices: IntGauge,
    pub devices_online: IntGauge,
    pub mqtt_connected: IntGauge,
    pub mqtt_reconnects: IntCounter,
    /// Aux frames by outcome: `kept` or `refused`.
    pub aux_frames: IntCounterVec,
    /// `set/aux` requests this instance published, by reason (`rule`).
    pub aux_requests: IntCounterVec,
    /// Human views rendered, by mode.
    pub human_views: IntCounterVec,
    pub human_render_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("fchm_server".into()), None)
            .expect("static prefix is a valid metric name");
        let decoded = IntCounterVec::new(
            Opts::new("frames_decoded_total", "Frames decoded, per device."),
            &["device"],
        )
        .expect("valid metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "frames_refused_total",
                "Frames refused without decoding, by cause.",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let duplicates = IntCounter::new(
            "frames_duplicate_total",
            "Frames delivered again (QoS 1 redelivery) and skipped by (device, sequence).",
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "frame_bytes_total",
                "Payload bytes of frames received on feat, per device.",
            ),
            &["device"],
        )
        .expect("valid metric");
        // Decoding is ~0.1 s on a GPU and ~0.6 s on one CPU core with tract.
        let decode_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "decode_seconds",
                "Time from taking a frame off the queue to its detections (entropy decoding, vfcn_dec, task_back).",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let detections_published = IntCounter::new(
            "detections_published_total",
            "Detections messages handed to the MQTT client.",
        )
        .expect("valid metric");
        let set_relayed = IntCounterVec::new(
            Opts::new(
                "set_relayed_total",
                "Commands relayed from the HTTP API to a device's set/<key>, by key.",
            ),
            &["key"],
        )
        .expect("valid metric");
        let invalid = IntCounterVec::new(
            Opts::new(
                "messages_invalid_total",
                "Unreadable device messages (not frames) ignored, by topic leaf.",
            ),
            &["leaf"],
        )
        .expect("valid metric");
        let devices =
            IntGauge::new("devices", "Devices this instance has heard of.").expect("valid metric");
        let devices_online = IntGauge::new(
            "devices_online",
            "Devices whose retained `available` is `online`.",
        )
        .expect("valid metric");
        let mqtt_connected = IntGauge::new(
            "mqtt_connected",
            "1 while connected to the broker and subscribed, else 0.",
        )
        .expect("valid metric");
        let mqtt_reconnects = IntCounter::new(
            "mqtt_reconnects_total",
            "Broker connections lost and retried.",
        )
        .expect("valid metric");
        let aux_frames = IntCounterVec::new(
            Opts::new(
                "aux_frames_total",
                "Aux-layer frames received, by outcome (kept, refused).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let aux_requests = IntCounterVec::new(
            Opts::new(
                "aux_requests_total",
                "Aux-layer requests (set/aux) this instance sent to devices, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let human_views = IntCounterVec::new(
            Opts::new("human_views_total", "Human views rendered, by mode."),
            &["mode"],
        )
        .expect("valid metric");
        let human_render_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "human_render_seconds",
                "Time to render one human view (both layers decoded, fusion, sampling).",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
        )
        .expect("valid metric");
        for c in [
            Box::new(decoded.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(aux_frames.clone()),
            Box::new(aux_requests.clone()),
            Box::new(human_views.clone()),
            Box::new(human_render_seconds.clone()),
            Box::new(refused.clone()),
            Box::new(duplicates.clone()),
            Box::new(bytes.clone()),
            Box::new(decode_seconds.clone()),
            Box::new(detections_published.clone()),
            Box::new(set_relayed.clone()),
            Box::new(invalid.clone()),
            Box::new(devices.clone()),
            Box::new(devices_online.clone()),
            Box::new(mqtt_connected.clone()),
            Box::new(mqtt_reconnects.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for cause in REFUSAL_CAUSES {
            refused.with_label_values(&[cause]);
        }
        for outcome in ["kept", "refused"] {
            aux_frames.with_label_values(&[outcome]);
        }
        for mode in ["fast", "diffusion"] {
            human_views.with_label_values(&[mode]);
        }
        aux_requests.with_label_values(&["rule"]);
        Self {
            registry,
            decoded,
            refused,
            duplicates,
            bytes,
            decode_seconds,
            detections_published,
            set_relayed,
            invalid,
            devices,
            devices_online,
            mqtt_connected,
            mqtt_reconnects,
            aux_frames,
            aux_requests,
            human_views,
            human_render_seconds,
        }
    }

    pub fn refuse(&self, cause: &str) {
        self.refused.with_label_values(&[cause]).inc();
    }

    pub fn refused_count(&self, cause: &str) -> u64 {
        self.refused.with_label_values(&[cause]).get()
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(buf).expect("the text encoder writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_cause_is_exported_before_it_happens() {
        let m = Metrics::new();
        let text = m.render();
        for cause in REFUSAL_CAUSES {
            let line = format!("fchm_server_frames_refused_total{{cause=\"{cause}\"}} 0");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn counts_land_in_their_series() {
        let m = Metrics::new();
        m.refuse("malformed");
        m.refuse("malformed");
        m.decoded.with_label_values(&["cam-1"]).inc();
        m.decode_seconds.observe(0.3);
        let text = m.render();
        assert!(text.contains("fchm_server_frames_refused_total{cause=\"malformed\"} 2"));
        assert!(text.contains("fchm_server_frames_decoded_total{device=\"cam-1\"} 1"));
        assert!(text.contains("fchm_server_decode_seconds_bucket{le=\"0.35\"} 1"));
        assert!(text.contains("fchm_server_decode_seconds_count 1"));
        assert_eq!(m.refused_count("malformed"), 2);
    }
}
