//! The broker side of the server: a shared subscription on the fleet's
//! `feat` frames, plain subscriptions on what devices say about themselves,
//! and the detections going back out.
//!
//! Frames are acknowledged (QoS 1, manual acks) only once their outcome is
//! known and their detections are queued for publishing, so a frame is never
//! acknowledged and then forgotten by this instance. Instances share the
//! load through the broker's `$share/<group>/…` subscription; there is no
//! other coordination between them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Publish, QoS, SubscribeFilter};
use tokio::sync::{mpsc, watch};

use super::decode::{Decoders, Done, Job, Outcome};
use super::human::AuxRule;
use super::metrics::Metrics;
use super::store::{FrameRecord, Store};
use crate::transport::backoff::Backoff;
use crate::transport::topics::{fleet_filter, parse_fleet, shared, Leaf, Topics};

/// How long a stopping server keeps decoding the frames it already has.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Which connection an ack belongs to: a packet id from a previous
/// connection means nothing on the current one.
#[derive(Debug)]
pub struct AckToken {
    publish: Publish,
    epoch: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Shared between the event-loop task and the output task.
pub struct Consumer {
    pub prefix: String,
    pub group: String,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub client: AsyncClient,
    pub epoch: AtomicU64,
    /// Set when a human-layer bundle is loaded: aux frames are then kept.
    pub decoders: Option<Arc<Decoders>>,
    pub aux_rule: Option<AuxRule>,
}

impl Consumer {
    /// The shared subscription that brings this instance its frames.
    fn feat_filter(&self) -> String {
        shared(&self.group, &fleet_filter(&self.prefix, "feat"))
    }

    fn filters(&self) -> Vec<SubscribeFilter> {
        let p = &self.prefix;
        let mut v = vec![SubscribeFilter::new(self.feat_filter(), QoS::AtLeastOnce)];
        // Every instance keeps the whole fleet's picture, whoever decodes.
        for leaf in ["available", "model", "stats", "state/+", "detections"] {
            v.push(SubscribeFilter::new(fleet_filter(p, leaf), QoS::AtMostOnce));
        }
        if self.human().is_some() {
            // Plain, not shared: only the instance holding the machine frame can render.
            v.push(SubscribeFilter::new(
                fleet_filter(p, "aux"),
                QoS::AtLeastOnce,
            ));
        }
        v
    }

    /// Poll the broker connection until `shutdown`; `feat` frames go to `jobs`.
    ///
    /// Stopping is a drain, not a cut: unsubscribe from `feat` (the broker
    /// sends the group's next frames to the other instances), decode what
    /// already arrived, publish and acknowledge it, then disconnect.
    pub async fn run_events(
        self: Arc<Self>,
        mut eventloop: EventLoop,
        jobs: mpsc::Sender<Job<AckToken>>,
        mut shutdown: watch::Receiver<bool>,
        mut outcomes_done: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut jobs = Some(jobs);
        let mut draining_until: Option<tokio::time::Instant> = None;
        loop {
            let deadline = draining_until
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let ev = tokio::select! {
                ev = eventloop.poll() => ev,
                _ = shutdown.changed(), if draining_until.is_none() => {
                    draining_until = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
                    if self.metrics.mqtt_connected.get() == 0
                        || self.client.try_unsubscribe(self.feat_filter()).is_err()
                    {
                        jobs = None;
                    }
                    continue;
                }
                _ = outcomes_done.wait_for(|d| *d), if jobs.is_none() => break,
                _ = tokio::time::sleep_until(deadline), if draining_until.is_some() => {
                    log::warn!("mqtt: frames still being decoded after {DRAIN_LIMIT:?}; stopping anyway");
                    break;
                }
            };
            match ev {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    backoff.reset();
                    let epoch = self.epoch.fetch_add(1, Relaxed) + 1;
                    log::info!(epoch; "mqtt: connected; subscribing to {}", self.feat_filter());
                    // The request channel is ours alone and far from full here;
                    // awaiting it from this task could deadlock if it were.
                    if let Err(e) = self.client.try_subscribe_many(self.filters()) {
                        log::error!("mqtt: subscribing: {e}");
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    // Ready only now: frames published before this went elsewhere.
                    self.metrics.mqtt_connected.set(1);
                }
                Ok(Event::Incoming(Incoming::UnsubAck(_))) => {
                    // No more frames will come: let the workers run dry.
                    jobs = None;
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    // Once unsubscribed and drained, a late frame stays
                    // unacknowledged, as if this instance had died.
                    if let Some(j) = &jobs {
                        self.route(p, j).await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics.mqtt_connected.set(0);
                    if draining_until.is_some() {
                        break;
                    }
                    self.metrics.mqtt_reconnects.inc();
                    let wait = backoff.next_delay();
                    log::warn!("mqtt: {e}; reconnecting in {wait:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {
                            draining_until = Some(tokio::time::Instant::now());
                            jobs = None;
                        }
                    }
                }
            }
        }
        self.metrics.mqtt_connected.set(0);
        if self.client.try_disconnect().is_ok() {
            // Flush the DISCONNECT (and anything queued before it).
            let flush = async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        }
    }

    async fn route(&self, p: Publish, jobs: &mpsc::Sender<Job<AckToken>>) {
        let received_ms = now_ms();
        let Some((device, leaf)) = parse_fleet(&self.prefix, &p.topic) else {
            if p.topic.ends_with("/feat") {
                self.metrics.refuse("bad_topic");
                self.ack(&p, self.epoch.load(Relaxed)).await;
            }
            log::warn!(topic = p.topic.as_str(); "mqtt: message on an unexpected topic ignored");
            return;
        };
        let text = || std::str::from_utf8(&p.payload).ok().map(str::trim);
        match leaf {
            Leaf::Feat => {
                self.metrics
                    .bytes
                    .with_label_values(&[device])
                    .inc_by(p.payload.len() as u64);
                let job = Job {
                    device: device.to_owned(),
                    payload: p.payload.clone(),
                    received_ms,
                    token: AckToken {
                        epoch: self.epoch.load(Relaxed),
                        publish: p,
                    },
                };
                // Waiting here is the backpressure: the broker stops sending
                // once its in-flight window to us is unacknowledged.
                if jobs.send(job).await.is_err() {
                    log::warn!("decode workers gone; frame left unacknowledged");
                }
            }
            Leaf::Available => match text() {
                Some(t) if !t.is_empty() => {
                    self.store.set_available(device, t);
                    self.refresh_device_gauges();
                }
                _ => self.invalid(device, "available"),
            },
            Leaf::Model => match text() {
                Some(t) if !t.is_empty() => self.store.set_model(device, t),
                _ => self.invalid(device, "model"),
            },
            Leaf::State(key) => match text() {
                Some(t) => self.store.set_state(device, key, t),
                None => self.invalid(device, "state"),
            },
            Leaf::Stats => match serde_json::from_slice(&p.payload) {
                Ok(v) => {
                    self.store.add_stats(device, v, received_ms);
                    self.refresh_device_gauges();
                }
                Err(_) => self.invalid(device, "stats"),
            },
            Leaf::Detections => match serde_json::from_slice::<FrameRecord>(&p.payload) {
                // Another instance's (or our own echoed) result.
                Ok(r) if r.device == device => {
                    self.store.add_frame(r, None);
                }
                _ => self.invalid(device, "detections"),
            },
            Leaf::Aux => {
                self.keep_aux(device, &p);
                self.ack(&p, self.epoch.load(Relaxed)).await;
            }
            Leaf::Set(_) => {}
        }
    }

    fn human(&self) -> Option<&Decoders> {
        self.decoders.as_deref().filter(|d| d.human().is_some())
    }

    fn keep_aux(&self, device: &str, p: &Publish) {
        let Some(decoders) = self.human() else { return };
        let outcome = match super::human::accept_aux(decoders, &p.payload) {
            Ok(seq) => {
                if self.store.add_aux(device, seq, p.payload.clone()) {
                    log::info!(device, sequence = seq; "aux frame {seq} from {device} kept");
                }
                "kept"
            }
            Err(why) => {
                log::warn!(device; "aux frame from {device} refused: {why}");
                "refused"
            }
        };
        self.metrics.aux_frames.with_label_values(&[outcome]).inc();
    }

    /// Ask the device for this frame's aux layer if the rule says so.
    async fn apply_rule(&self, record: &FrameRecord) {
        let Some(rule) = &self.aux_rule else { return };
        let Some(class) = rule.trigger(record, std::time::Instant::now()) else {
            return;
        };
        let topic = Topics::new(&self.prefix, &record.device).set("aux");
        let value = format!("frame:{}", record.sequence);
        log::info!(device = record.device.as_str(); "{class} in frame {}: asking {} for its aux layer", record.sequence, record.device);
        match self
            .client
            .publish(topic, QoS::AtLeastOnce, false, value)
            .await
        {
            Ok(()) => self.metrics.aux_requests.with_label_values(&["rule"]).inc(),
            Err(e) => log::error!("mqtt: publishing set/aux: {e}"),
        }
    }

    fn invalid(&self, device: &str, leaf: &str) {
        self.metrics.invalid.with_label_values(&[leaf]).inc();
        log::warn!(device, leaf; "mqtt: unreadable {leaf} message from {device} ignored");
    }

    fn refresh_device_gauges(&self) {
        let (n, online) = self.store.counts();
        self.metrics.devices.set(n as i64);
        self.metrics.devices_online.set(online as i64);
    }

    async fn ack(&self, p: &Publish, epoch: u64) {
        if p.qos == QoS::AtMostOnce || epoch != self.epoch.load(Relaxed) {
            return;
        }
        if let Err(e) = self.client.ack(p).await {
            log::warn!("mqtt: ack: {e}");
        }
    }

    /// Count, store and publish each outcome, then acknowledge its frame.
    pub async fn run_outcomes(
        self: Arc<Self>,
        mut done: mpsc::UnboundedReceiver<Done<AckToken>>,
        finished: watch::Sender<bool>,
    ) {
        let mut refusals_logged = 0u64;
        while let Some(d) = done.recv().await {
            let m = &self.metrics;
            match d.outcome {
                Outcome::Decoded { record, view } => {
                    m.decoded.with_label_values(&[d.device.as_str()]).inc();
                    m.decode_seconds.observe(d.seconds);
                    let topic = Topics::new(&self.prefix, &d.device).detections();
                    let json = serde_json::to_vec(&record).expect("records serialise");
                    self.apply_rule(&record).await;
                    self.store.add_frame(record, Some(view));
                    match self
                        .client
                        .publish(topic, QoS::AtLeastOnce, false, json)
                        .await
                    {
                        Ok(()) => m.detections_published.inc(),
                        Err(e) => log::error!("mqtt: publishing detections: {e}"),
                    }
                }
                Outcome::Refused { cause, reason } => {
                    m.refuse(cause);
                    // A flood of garbage must not flood the log: the first
                    // hundred in full, then every hundredth.
                    refusals_logged += 1;
                    if refusals_logged <= 100 || refusals_logged.is_multiple_of(100) {
                        log::warn!(device = d.device.as_str(), cause; "refused a frame from {}: {reason}", d.device);
                    }
                }
                Outcome::Duplicate { sequence } => {
                    m.duplicates.inc();
                    log::debug!(device = d.device.as_str(), sequence; "duplicate frame skipped");
                }
            }
            self.ack(&d.token.publish, d.token.epoch).await;
        }
        let _ = finished.send(true);
    }
}
