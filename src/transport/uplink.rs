//! The uplink: one task that owns the MQTT session, the send window and the
//! spool, so frames leave in capture order whatever the link does.
//!
//! Frames arrive already encoded. While connected and nothing is spooled
//! they go out from memory ("live"); while the broker is unreachable, and
//! until everything spooled has been acknowledged after a reconnect, every
//! frame goes through the on-disk spool ("draining"), so the order on the
//! wire is always the capture order. A frame leaves memory or the spool
//! only when its QoS 1 PUBACK arrives; on a lost connection the frames in
//! flight are spooled again (at-least-once: the receiver de-duplicates by
//! sequence number).
//!
//! Aux (human-layer) frames share the send window and the live queue but
//! never the spool: they are wanted now or not at all. While offline or
//! draining they are dropped and counted, a full live queue drops them
//! before any machine frame, and those in flight or queued when the
//! connection dies are dropped and counted instead of spooled. They count
//! in the acknowledged bytes (they use the link) but not in the machine
//! frame totals, so those totals' identities hold as before.
//!
//! `rumqttc` reports the packet id of each publish only as an
//! `Outgoing::Publish(pkid)` event, in request order. Every publish goes
//! through [`Uplink::publish`], which records a tag in the same order, so the
//! n-th event belongs to the n-th tag. Each connection gets a fresh event
//! loop: rumqttc would otherwise replay its own copy of unacknowledged
//! publishes after a reconnect, behind our back and out of our order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fchm_codec::container::{FrameRef, Layer};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::mqtt::SessionConfig;
use super::spool::Spool;
use super::topics::{Topics, SETTABLE};
use crate::clock::unix_us;
use crate::rate::Controller;

/// One encoded frame on its way to the broker.
#[derive(Debug, Clone)]
pub struct OutFrame {
    /// `Machine` goes to `feat` (and through the spool), `Aux` to `aux` (never spooled).
    pub layer: Layer,
    pub sequence: u64,
    /// Capture time, microseconds since the Unix epoch (as in the header).
    pub capture_us: u64,
    pub bytes: Vec<u8>,
}

/// What the device lets the network change (`set/<key>` → `state/<key>`).
pub trait Control: Send {
    /// Apply a command; the new state value, or why it was refused.
    fn apply(&mut self, key: &str, value: &str) -> Result<String, String>;
    /// The current value of every settable key, for the retained `state/` topics.
    fn state(&self) -> Vec<(String, String)>;
}

/// The uplink's view of one stats interval, handed to the stats formatter.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LinkReport {
    pub connected: bool,
    pub interval_s: f64,
    /// Machine frames, and payload bytes of both layers, acknowledged by the broker in the interval.
    pub acked_frames: u64,
    pub acked_bytes: u64,
    /// Machine frames acknowledged since start.
    pub total_acked_frames: u64,
    pub in_flight_frames: u64,
    pub in_flight_bytes: u64,
    pub live_queue: u64,
    pub spool_depth: u64,
    pub spool_bytes: u64,
    /// Counters since start; every frame that never reaches the broker is in one.
    pub dropped_spool_full: u64,
    pub dropped_congestion: u64,
    pub dropped_spool_error: u64,
    pub reconnects: u64,
    pub refused_commands: u64,
    /// Frames found in the spool at start (left by an earlier run).
    pub spool_recovered: u64,
    /// Aux frames acknowledged since start (not in the machine totals).
    pub aux_acked: u64,
    /// Aux frames dropped because the link was down or draining the spool
    /// (including those queued or in flight when it went down).
    pub aux_dropped_offline: u64,
    /// Aux frames dropped from a full live queue.
    pub aux_dropped_congestion: u64,
    /// Capture-to-PUBACK latency over the interval.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

pub type StatsFormatter = Box<dyn FnMut(&LinkReport) -> Vec<u8> + Send>;

#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub topics: Topics,
    pub session: SessionConfig,
    /// Bundle id, published retained on `model`.
    pub model_id: String,
    pub max_in_flight: usize,
    /// Frames waiting in memory while connected; past it the oldest is dropped and counted.
    pub live_queue: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub stats_interval: Duration,
    pub latency_bound: Duration,
    /// How long a shutdown waits for outstanding PUBACKs before spooling.
    pub shutdown_grace: Duration,
}

#[derive(Debug)]
enum Tag {
    Frame(Layer, u64),
    Other,
}

#[derive(Debug)]
struct InFlight {
    layer: Layer,
    sequence: u64,
    capture_us: u64,
    len: usize,
    pkid: Option<u16>,
    /// Handed to rumqttc: no bit of it can have left before this.
    queued_at: Instant,
    /// rumqttc's `Outgoing::Publish`, which it reports only once the whole
    /// packet is in the socket: on a slow link, part of it may already have
    /// crossed by then.
    sent_at: Option<Instant>,
    acked: bool,
    /// Kept for frames sent from memory, so a lost connection can spool them;
    /// frames sent from the spool are still there.
    bytes: Option<Vec<u8>>,
    /// Sent from the spool, then evicted from it by a full spool: its ack
    /// must not consume the record that now sits at the front.
    evicted: bool,
}

impl InFlight {
    /// Sent from the spool and still its record (aux frames never are).
    fn spooled(&self) -> bool {
        self.layer == Layer::Machine && self.bytes.is_none() && !self.evicted
    }
}

/// The topic of a frame of `layer`.
fn topic_of(topics: &Topics, layer: Layer) -> String {
    match layer {
        Layer::Machine => topics.feat(),
        Layer::Aux => topics.aux(),
    }
}

enum LinkEvent {
    Mqtt(Event),
    Down(ConnectionError),
}

struct Connection {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    poller: JoinHandle<()>,
    up: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

pub struct Uplink {
    cfg: UplinkConfig,
    spool: Spool,
    control: Box<dyn Control>,
    controller: Arc<Mutex<Controller>>,
    stats_fmt: StatsFormatter,
    conn: Option<Connection>,
    next_attempt: Instant,
    backoff: Backoff,
    tags: VecDeque<Tag>,
    in_flight: VecDeque<InFlight>,
    live: VecDeque<OutFrame>,
    /// Frames at the spool's front currently in flight.
    spool_in_flight: usize,
    draining: bool,
    stopping: bool,
    report: LinkReport,
    latencies: Vec<f64>,
    interval_start: Instant,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

impl Uplink {
    pub fn new(
        cfg: UplinkConfig,
        spool: Spool,
        control: Box<dyn Control>,
        controller: Arc<Mutex<Controller>>,
        stats_fmt: StatsFormatter,
    ) -> Self {
        let draining = !spool.is_empty();
        let backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
        let report = LinkReport {
            spool_recovered: spool.len(),
            ..LinkReport::default()
        };
        Self {
            cfg,
            spool,
            control,
            controller,
            stats_fmt,
            conn: None,
            next_attempt: Instant::now(),
            backoff,
            tags: VecDeque::new(),
            in_flight: VecDeque::new(),
            live: VecDeque::new(),
            spool_in_flight: 0,
            draining,
            stopping: false,
            report,
            latencies: Vec::new(),
            interval_start: Instant::now(),
        }
    }

    /// Run until `frames` closes (then send what is left, within the grace
    /// period) or `shutdown` turns true. Whatever is not acknowledged by
    /// then is in the spool, synced, when this returns.
    pub async fn run(
        mut self,
        mut frames: mpsc::Receiver<OutFrame>,
        mut shutdown: watch::Receiver<bool>,
    ) -> LinkReport {
        let mut stats_tick = tokio::time::interval(self.cfg.stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut input_open = true;
        loop {
            if self.conn.is_none() && Instant::now() >= self.next_attempt {
                self.connect();
            }
            let wake = tokio::time::Instant::from_std(self.next_attempt);
            tokio::select! {
                f = frames.recv(), if input_open => match f {
                    Some(f) => self.accept(f),
                    None => input_open = false,
                },
                ev = async { self.conn.as_mut().expect("guarded").events.recv().await }, if self.conn.is_some() => {
                    self.on_event(ev).await;
                }
                _ = tokio::time::sleep_until(wake), if self.conn.is_none() => {}
                _ = stats_tick.tick() => self.publish_stats().await,
                _ = shutdown.changed() => break,
            }
            self.pump().await;
            if !input_open {
                break;
            }
        }
        self.finish(!input_open).await;
        self.snapshot();
        self.report.clone()
    }

    fn connect(&mut self) {
        let options = match self.cfg.session.options(&self.cfg.topics) {
            Ok(o) => o,
            Err(e) => {
                log::error!("mqtt: {e}");
                self.schedule_reconnect();
                return;
            }
        };
        let (client, eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll(eventloop, tx));
        self.conn = Some(Connection {
            client,
            events,
            poller,
            up: false,
        });
    }

    fn schedule_reconnect(&mut self) {
        self.next_attempt = Instant::now() + self.backoff.next_delay();
    }

    fn up(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.up)
    }

    fn accept(&mut self, f: OutFrame) {
        if self.draining || !self.up() {
            if f.layer == Layer::Aux {
                // Aux frames are wanted now or not at all: never spooled.
                self.report.aux_dropped_offline += 1;
                log::info!(sequence = f.sequence; "uplink: offline, aux frame dropped");
                return;
            }
            self.spool_push(&f.bytes);
            self.draining = true;
            return;
        }
        self.live.push_back(f);
        while self.live.len() > self.cfg.live_queue.max(1) {
            // Aux frames go first: the machine layer is what the server needs.
            let i = self
                .live
                .iter()
                .position(|f| f.layer == Layer::Aux)
                .unwrap_or(0);
            if let Some(old) = self.live.remove(i) {
                if old.layer == Layer::Aux {
                    self.report.aux_dropped_congestion += 1;
                    log::warn!(sequence = old.sequence; "uplink: link behind, dropped a queued aux frame");
                } else {
                    self.report.dropped_congestion += 1;
                    log::warn!(sequence = old.sequence; "uplink: link behind, dropped the oldest queued frame");
                }
            }
        }
    }

    fn spool_push(&mut self, bytes: &[u8]) {
        match self.spool.push(bytes) {
            Ok(ev) => {
                // Eviction takes the oldest records first, which may be ones
                // already in flight: those were sent, not lost.
                let mut in_flight = 0;
                for f in self.in_flight.iter_mut().filter(|f| f.spooled()) {
                    if in_flight == ev.records {
                        break;
                    }
                    f.evicted = true;
                    in_flight += 1;
                }
                self.spool_in_flight -= in_flight as usize;
                let lost = ev.records - in_flight;
                if lost > 0 {
                    self.report.dropped_spool_full += lost;
                    log::warn!("spool full: dropped the {lost} oldest frame(s)");
                }
            }
            Err(e) => {
                self.report.dropped_spool_error += 1;
                log::error!("spool: {e}; frame dropped");
            }
        }
    }

    fn in_flight_bytes(&self) -> u64 {
        self.in_flight.iter().map(|f| f.len as u64).sum()
    }

    /// Bytes the link may hold before one more frame: what the target rate
    /// moves within the latency bound.
    fn window_bytes(&self) -> u64 {
        let kbps = self
            .controller
            .lock()
            .map(|c| c.target_kbps())
            .unwrap_or(1000.0);
        (kbps * 1000.0 / 8.0 * self.cfg.latency_bound.as_secs_f64()) as u64
    }

    async fn pump(&mut self) {
        while self.up() && self.in_flight.len() < self.cfg.max_in_flight.max(1) {
            let busy = self.in_flight_bytes();
            let window = self.window_bytes();
            let next = if self.draining {
                match self.spool.nth(self.spool_in_flight) {
                    Ok(Some(bytes)) => {
                        match FrameRef::parse(&bytes) {
                            Ok(fr) => Some((
                                fr.header.layer,
                                fr.header.sequence,
                                fr.header.timestamp_us,
                                bytes,
                                true,
                            )),
                            Err(e) if self.spool_in_flight == 0 => {
                                // Only if the spool itself went bad: it CRC-checks records.
                                log::error!("spool: record is not a frame ({e}); dropped");
                                self.report.dropped_spool_error += 1;
                                if let Err(e) = self.spool.consume(1) {
                                    log::error!("spool: {e}");
                                    break;
                                }
                                continue;
                            }
                            // Drop it once everything before it is acknowledged.
                            Err(_) => None,
                        }
                    }
                    Ok(None) => {
                        if self.spool_in_flight == 0 {
                            self.draining = false;
                        }
                        None
                    }
                    Err(e) => {
                        log::error!("spool: {e}");
                        None
                    }
                }
            } else {
                self.live
                    .front()
                    .map(|f| (f.layer, f.sequence, f.capture_us, f.bytes.clone(), false))
            };
            let Some((layer, sequence, capture_us, bytes, from_spool)) = next else {
                break;
            };
            // The window bounds what is already in flight; the next frame
            // may always join it (the controller allows the same: the target
            // over the latency bound, plus the frame just written). Counting
            // the next frame too would make a link whose frames are a third
            // of the window stop and wait for every ack.
            if busy > window {
                break;
            }
            if from_spool {
                self.spool_in_flight += 1;
            } else {
                self.live.pop_front();
            }
            self.in_flight.push_back(InFlight {
                layer,
                sequence,
                capture_us,
                len: bytes.len(),
                pkid: None,
                queued_at: Instant::now(),
                sent_at: None,
                acked: false,
                // Kept to spool again after a lost connection; aux frames never are.
                bytes: (!from_spool && layer == Layer::Machine).then(|| bytes.clone()),
                evicted: false,
            });
            let topic = topic_of(&self.cfg.topics, layer);
            if !self
                .publish(
                    Tag::Frame(layer, sequence),
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    bytes,
                )
                .await
            {
                break;
            }
        }
    }

    /// Every publish goes through here so tags stay in request order.
    async fn publish(
        &mut self,
        tag: Tag,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        let client = conn.client.clone();
        self.tags.push_back(tag);
        if let Err(e) = client.publish(topic, qos, retain, payload).await {
            // The event loop is gone; its Down event follows.
            log::warn!("mqtt: publish failed: {e}");
            self.tags.pop_back();
            return false;
        }
        true
    }

    async fn on_event(&mut self, ev: Option<LinkEvent>) {
        let now = Instant::now();
        match ev {
            Some(LinkEvent::Mqtt(Event::Incoming(Incoming::ConnAck(_)))) => {
                self.on_connected().await
            }
            Some(LinkEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                if let Some(Tag::Frame(layer, seq)) = self.tags.pop_front() {
                    // An aux frame has the sequence of the machine frame it enhances.
                    if let Some(f) = self
                        .in_flight
                        .iter_mut()
                        .find(|f| f.sequence == seq && f.layer == layer && f.pkid.is_none())
                    {
                        f.pkid = Some(pkid);
                        f.sent_at = Some(now);
                        let len = f.len;
                        if let Ok(mut c) = self.controller.lock() {
                            c.on_sent(now, len);
                        }
                    }
                }
            }
            Some(LinkEvent::Mqtt(Event::Incoming(Incoming::PubAck(ack)))) => {
                self.on_ack(ack.pkid, now)
            }
            Some(LinkEvent::Mqtt(Event::Incoming(Incoming::Publish(p)))) => {
                let key = self.cfg.topics.parse_set(&p.topic).map(str::to_owned);
                if let Some(key) = key {
                    self.on_command(&key, &p.payload).await;
                }
            }
            Some(LinkEvent::Mqtt(_)) => {}
            Some(LinkEvent::Down(e)) => self.on_down(&e.to_string()),
            None => self.on_down("event loop ended"),
        }
    }

    async fn on_connected(&mut self) {
        log::info!(
            "mqtt: connected to {}:{}",
            self.cfg.session.host,
            self.cfg.session.port
        );
        if let Some(c) = self.conn.as_mut() {
            c.up = true;
        }
        self.backoff.reset();
        if let Some(c) = self.conn.as_ref() {
            if let Err(e) = c
                .client
                .subscribe(self.cfg.topics.set_filter(), QoS::AtLeastOnce)
                .await
            {
                log::warn!("mqtt: subscribe failed: {e}");
            }
        }
        let t = self.cfg.topics.clone();
        self.publish(
            Tag::Other,
            t.available(),
            QoS::AtLeastOnce,
            true,
            b"online".to_vec(),
        )
        .await;
        let model = self.cfg.model_id.clone().into_bytes();
        self.publish(Tag::Other, t.model(), QoS::AtLeastOnce, true, model)
            .await;
        for (key, value) in self.control.state() {
            self.publish(
                Tag::Other,
                t.state(&key),
                QoS::AtLeastOnce,
                true,
                value.into_bytes(),
            )
            .await;
        }
        // Frames that waited in memory for the session go after anything spooled.
        if !self.spool.is_empty() {
            self.draining = true;
        }
    }

    fn on_ack(&mut self, pkid: u16, now: Instant) {
        let Some(f) = self
            .in_flight
            .iter_mut()
            .find(|f| f.pkid == Some(pkid) && !f.acked)
        else {
            return;
        };
        f.acked = true;
        let (sent_at, len, capture_us) = (f.sent_at.unwrap_or(now), f.len, f.capture_us);
        let queued_at = f.queued_at;
        let machine = f.layer == Layer::Machine;
        if log::log_enabled!(log::Level::Debug) {
            let ms = |since: Instant| now.saturating_duration_since(since).as_secs_f64() * 1e3;
            let (rtt_ms, handover_ms) = (ms(sent_at), ms(queued_at));
            log::debug!(
                sequence = f.sequence, at_us = unix_us(), bytes = len, rtt_ms = rtt_ms, handover_ms = handover_ms;
                "acked: {len} bytes, {rtt_ms:.0} ms after the write, {handover_ms:.0} ms after the hand-over"
            );
        }
        if let Ok(mut c) = self.controller.lock() {
            c.on_ack(now, sent_at, len);
            c.on_delivered(now, queued_at, len);
        }
        // An aux frame of an older frame (`frame:<seq>`) would skew the latencies.
        if machine {
            self.latencies
                .push(unix_us().saturating_sub(capture_us) as f64 / 1000.0);
        }
        while self.in_flight.front().is_some_and(|f| f.acked) {
            let f = self.in_flight.pop_front().expect("checked");
            if f.spooled() {
                if let Err(e) = self.spool.consume(1) {
                    log::error!("spool: {e}");
                }
                self.spool_in_flight = self.spool_in_flight.saturating_sub(1);
            }
            self.report.acked_bytes += f.len as u64;
            if f.layer == Layer::Aux {
                self.report.aux_acked += 1;
            } else {
                self.report.acked_frames += 1;
                self.report.total_acked_frames += 1;
            }
        }
        if self.draining && self.spool.is_empty() && self.spool_in_flight == 0 {
            self.draining = false;
            log::info!("spool drained");
        }
    }

    async fn on_command(&mut self, key: &str, payload: &[u8]) {
        let value = String::from_utf8_lossy(payload).trim().to_string();
        if !SETTABLE.contains(&key) {
            self.report.refused_commands += 1;
            log::warn!("set/{key}: unknown key (settable: {})", SETTABLE.join(", "));
            return;
        }
        match self.control.apply(key, &value) {
            Ok(state) => {
                log::info!("set/{key} = {value:?} applied");
                let topic = self.cfg.topics.state(key);
                self.publish(
                    Tag::Other,
                    topic,
                    QoS::AtLeastOnce,
                    true,
                    state.into_bytes(),
                )
                .await;
            }
            Err(why) => {
                self.report.refused_commands += 1;
                log::warn!("set/{key} = {value:?} refused: {why}");
            }
        }
    }

    fn on_down(&mut self, why: &str) {
        let was_up = self.up();
        if self.stopping {
            log::info!("mqtt: session closed ({why})");
        } else if was_up {
            log::warn!("mqtt: connection lost: {why}");
            self.report.reconnects += 1;
        } else {
            log::warn!(
                "mqtt: cannot connect to {}:{}: {why}",
                self.cfg.session.host,
                self.cfg.session.port
            );
        }
        self.conn = None;
        self.tags.clear();
        if let Ok(mut c) = self.controller.lock() {
            c.on_disconnect(Instant::now());
        }
        // Unacknowledged frames from memory, then the queue, go to the
        // spool in capture order; those sent from the spool are still there.
        // Aux frames are dropped and counted instead.
        let in_flight: Vec<InFlight> = self.in_flight.drain(..).collect();
        let mut aux_lost = 0;
        for f in in_flight {
            if f.layer == Layer::Aux {
                if f.acked {
                    // Acknowledged behind an unacknowledged frame: delivered.
                    self.report.aux_acked += 1;
                    self.report.acked_bytes += f.len as u64;
                } else {
                    aux_lost += 1;
                }
            } else if let Some(bytes) = f.bytes {
                self.spool_push(&bytes);
            }
        }
        let live: Vec<OutFrame> = self.live.drain(..).collect();
        for f in live {
            if f.layer == Layer::Aux {
                aux_lost += 1;
            } else {
                self.spool_push(&f.bytes);
            }
        }
        if aux_lost > 0 {
            self.report.aux_dropped_offline += aux_lost;
            log::info!("{aux_lost} aux frame(s) dropped with the connection");
        }
        self.spool_in_flight = 0;
        self.draining = !self.spool.is_empty();
        self.schedule_reconnect();
    }

    /// Refresh the report's gauges and interval latencies.
    fn snapshot(&mut self) {
        let mut lat = std::mem::take(&mut self.latencies);
        lat.sort_by(f64::total_cmp);
        let in_flight_bytes = self.in_flight_bytes();
        let r = &mut self.report;
        r.connected = self.conn.as_ref().is_some_and(|c| c.up);
        r.interval_s = self.interval_start.elapsed().as_secs_f64();
        r.in_flight_frames = self.in_flight.len() as u64;
        r.in_flight_bytes = in_flight_bytes;
        r.live_queue = self.live.len() as u64;
        r.spool_depth = self.spool.len();
        r.spool_bytes = self.spool.bytes();
        r.latency_p50_ms = percentile(&lat, 0.5);
        r.latency_p95_ms = percentile(&lat, 0.95);
        r.latency_max_ms = lat.last().copied();
    }

    async fn publish_stats(&mut self) {
        self.snapshot();
        let payload = (self.stats_fmt)(&self.report);
        self.interval_start = Instant::now();
        self.report.acked_frames = 0;
        self.report.acked_bytes = 0;
        if self.up() {
            let topic = self.cfg.topics.stats();
            self.publish(Tag::Other, topic, QoS::AtMostOnce, false, payload)
                .await;
        }
    }

    async fn finish(&mut self, drain_input: bool) {
        // Give outstanding frames a moment to be acknowledged; after an
        // input end (a finite source) also send what is still queued.
        let deadline = Instant::now() + self.cfg.shutdown_grace;
        while self.up()
            && Instant::now() < deadline
            && (!self.in_flight.is_empty()
                || (drain_input && (!self.live.is_empty() || self.draining)))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = {
                let conn = self.conn.as_mut().expect("up");
                tokio::time::timeout(left, conn.events.recv()).await
            };
            match ev {
                Ok(ev) => self.on_event(ev).await,
                Err(_) => break,
            }
            if drain_input {
                self.pump().await;
            }
        }
        if self.up() {
            let topic = self.cfg.topics.available();
            self.publish(
                Tag::Other,
                topic,
                QoS::AtLeastOnce,
                true,
                b"offline".to_vec(),
            )
            .await;
            if let Some(c) = self.conn.as_ref() {
                let _ = c.client.disconnect().await;
            }
            // Let the event loop write the offline message and DISCONNECT.
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(conn) = self.conn.as_mut() {
                let left = until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, conn.events.recv()).await {
                    Ok(Some(LinkEvent::Mqtt(Event::Outgoing(Outgoing::Disconnect))))
                    | Err(_)
                    | Ok(None) => break,
                    Ok(Some(LinkEvent::Mqtt(Event::Incoming(Incoming::PubAck(a))))) => {
                        self.on_ack(a.pkid, Instant::now())
                    }
                    Ok(Some(_)) => {}
                }
            }
        }
        self.stopping = true;
        self.on_down("shutting down");
        if let Err(e) = self.spool.sync() {
            log::error!("spool: sync on shutdown failed: {e}");
        }
        log::info!(
            "uplink stopped; {} frame(s) left in the spool",
            self.spool.len()
        );
    }
}

/// The event-loop task: only polls and forwards. It never publishes, so the
/// request channel can never fill up behind a task that is waiting on it.
async fn poll(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<LinkEvent>) {
    loop {
        match eventloop.poll().await {
            Ok(ev) => {
                if tx.send(LinkEvent::Mqtt(ev)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(LinkEvent::Down(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The uplink's bookkeeping without a broker: a connection that is "up"
    //! but whose event loop is never polled, fed the events a broker would cause.

    use super::*;
    use crate::rate::ControllerConfig;
    use crate::transport::spool::{SpoolConfig, SyncPolicy};
    use fchm_codec::container::{BundleId, Frame, FrameHeader, Shape, Substream, SubstreamKind};

    struct NoControl;

    impl Control for NoControl {
        fn apply(&mut self, _: &str, _: &str) -> Result<String, String> {
            Err("none".into())
        }
        fn state(&self) -> Vec<(String, String)> {
            Vec::new()
        }
    }

    fn frame(layer: Layer, sequence: u64) -> OutFrame {
        let header = FrameHeader {
            layer,
            bundle_id: BundleId([7; 16]),
            sequence,
            timestamp_us: 1_000 + sequence,
            gain: 1.0,
            feature_min: -1.0,
            feature_max: 1.0,
            source_width: 64,
            source_height: 48,
        };
        let kind = match layer {
            Layer::Machine => SubstreamKind::Z,
            Layer::Aux => SubstreamKind::AuxZ,
        };
        let bytes = Frame {
            header,
            substreams: vec![Substream {
                kind,
                shape: Shape {
                    channels: 1,
                    height: 2,
                    width: 2,
                },
                data: vec![0; 16],
            }],
        }
        .encode()
        .expect("frame");
        OutFrame {
            layer,
            sequence,
            capture_us: header.timestamp_us,
            bytes,
        }
    }

    fn uplink(dir: &std::path::Path, live_queue: usize) -> Uplink {
        let (spool, _) = Spool::open(SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            segment_bytes: 64 << 10,
            sync: SyncPolicy::Never,
        })
        .expect("spool");
        let controller = Controller::new(ControllerConfig {
            min_kbps: 100.0,
            max_kbps: 8000.0,
            start_kbps: 1000.0,
            latency_bound: Duration::from_millis(500),
        });
        let cfg = UplinkConfig {
            topics: Topics::new("fchm", "cam"),
            session: SessionConfig {
                host: "127.0.0.1".into(),
                port: 1,
                client_id: "t".into(),
                keep_alive: Duration::from_secs(5),
                max_packet_bytes: 1 << 20,
                credentials: None,
                tls: None,
                max_in_flight: 8,
            },
            model_id: "m".into(),
            max_in_flight: 8,
            live_queue,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            stats_interval: Duration::from_secs(1),
            latency_bound: Duration::from_millis(500),
            shutdown_grace: Duration::ZERO,
        };
        Uplink::new(
            cfg,
            spool,
            Box::new(NoControl),
            Arc::new(Mutex::new(controller)),
            Box::new(|_| Vec::new()),
        )
    }

    /// Mark the uplink connected; the returned event loop must outlive the publishes.
    fn fake_up(u: &mut Uplink) -> EventLoop {
        let (client, eventloop) =
            AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 64);
        let (_tx, events) = mpsc::unbounded_channel();
        u.conn = Some(Connection {
            client,
            events,
            poller: tokio::spawn(async {}),
            up: true,
        });
        eventloop
    }

    fn mqtt(e: Event) -> Option<LinkEvent> {
        Some(LinkEvent::Mqtt(e))
    }

    #[test]
    fn frames_go_to_the_topic_of_their_layer() {
        let t = Topics::new("fchm", "cam");
        assert_eq!(topic_of(&t, Layer::Machine), "fchm/cam/feat");
        assert_eq!(topic_of(&t, Layer::Aux), "fchm/cam/aux");
    }

    #[test]
    fn offline_aux_frames_are_dropped_and_counted_not_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = uplink(dir.path(), 4);
        u.accept(frame(Layer::Machine, 1));
        u.accept(frame(Layer::Aux, 1));
        u.accept(frame(Layer::Machine, 2));
        assert_eq!(u.spool.len(), 2);
        assert_eq!(u.report.aux_dropped_offline, 1);
        assert!(u.draining);
        // Still draining once connected: aux frames wait for nothing.
        let _el = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let el = fake_up(&mut u);
                u.accept(frame(Layer::Aux, 2));
                el
            });
        assert_eq!(u.report.aux_dropped_offline, 2);
        assert_eq!(u.spool.len(), 2);
        assert_eq!(u.report.dropped_congestion + u.report.dropped_spool_full, 0);
    }

    #[tokio::test]
    async fn acked_aux_frames_count_their_bytes_but_not_as_machine_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = uplink(dir.path(), 4);
        let _el = fake_up(&mut u);
        let (m, a) = (frame(Layer::Machine, 5), frame(Layer::Aux, 5));
        let bytes = (m.bytes.len() + a.bytes.len()) as u64;
        u.accept(m);
        u.accept(a);
        u.pump().await;
        let layers: Vec<_> = u.in_flight.iter().map(|f| (f.layer, f.sequence)).collect();
        assert_eq!(layers, [(Layer::Machine, 5), (Layer::Aux, 5)]);
        // Same sequence on both: the packet ids still go to the right frames.
        u.on_event(mqtt(Event::Outgoing(Outgoing::Publish(11))))
            .await;
        u.on_event(mqtt(Event::Outgoing(Outgoing::Publish(12))))
            .await;
        let pkids: Vec<_> = u.in_flight.iter().map(|f| (f.layer, f.pkid)).collect();
        assert_eq!(pkids, [(Layer::Machine, Some(11)), (Layer::Aux, Some(12))]);
        u.on_event(mqtt(Event::Incoming(Incoming::PubAck(
            rumqttc::PubAck::new(12),
        ))))
        .await;
        u.on_event(mqtt(Event::Incoming(Incoming::PubAck(
            rumqttc::PubAck::new(11),
        ))))
        .await;
        assert!(u.in_flight.is_empty());
        let r = &u.report;
        assert_eq!(
            (r.total_acked_frames, r.acked_frames, r.aux_acked),
            (1, 1, 1)
        );
        assert_eq!(r.acked_bytes, bytes);
        // One latency sample: the machine frame's.
        assert_eq!(u.latencies.len(), 1);
        assert!(u.spool.is_empty());
    }

    #[tokio::test]
    async fn congestion_drops_aux_first_and_a_lost_connection_drops_aux_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = uplink(dir.path(), 3);
        let _el = fake_up(&mut u);
        for f in [
            frame(Layer::Machine, 1),
            frame(Layer::Aux, 1),
            frame(Layer::Machine, 2),
            frame(Layer::Machine, 3),
        ] {
            u.accept(f);
        }
        assert_eq!(u.report.aux_dropped_congestion, 1);
        assert_eq!(u.report.dropped_congestion, 0);
        u.accept(frame(Layer::Machine, 4));
        assert_eq!(
            u.report.dropped_congestion, 1,
            "no aux left: the oldest goes"
        );
        u.accept(frame(Layer::Aux, 4));
        assert_eq!(u.report.aux_dropped_congestion, 2);
        u.accept(frame(Layer::Aux, 3));
        assert_eq!(u.report.aux_dropped_congestion, 3);
        let live: Vec<_> = u.live.iter().map(|f| (f.layer, f.sequence)).collect();
        assert_eq!(
            live,
            [
                (Layer::Machine, 2),
                (Layer::Machine, 3),
                (Layer::Machine, 4)
            ]
        );
        u.pump().await;
        u.accept(frame(Layer::Aux, 4));
        u.pump().await;
        u.accept(frame(Layer::Aux, 5));
        assert_eq!((u.in_flight.len(), u.live.len()), (4, 1));
        // The link dies: machine frames go to the spool, aux frames are counted.
        u.on_down("test");
        assert_eq!(u.spool.len(), 3);
        assert_eq!(u.report.aux_dropped_offline, 2);
        assert_eq!(u.report.aux_dropped_congestion, 3);
        assert_eq!(
            u.report.dropped_spool_full + u.report.dropped_spool_error,
            0
        );
    }
}
