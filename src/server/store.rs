//! What the server remembers of each device: a bounded window of recent
//! frames and stats, the retained topics, and the latest picture.
//!
//! Every list here is bounded, and devices are only created by messages that
//! parsed, so a flood of garbage on the broker cannot grow the server.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::view::FeatureView;
use crate::model::LabelledBox;

/// One decoded machine-layer frame: what `<prefix>/<device>/detections` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub device: String,
    pub sequence: u64,
    /// Capture time from the frame header, µs since the Unix epoch.
    pub capture_us: u64,
    /// When this server took the frame off the broker, ms since the Unix epoch.
    pub received_ms: u64,
    /// Entropy decoding + `vfcn_dec` + `task_back`, on the decoding server.
    pub decode_ms: f64,
    /// Payload size on the wire.
    pub bytes: usize,
    pub bundle_id: String,
    /// The source image's size; boxes are in its pixels.
    pub width: u32,
    pub height: u32,
    /// The instance that decoded the frame (`--instance-id`).
    pub server: String,
    pub detections: Vec<LabelledBox>,
}

/// One point of a device's rate history, taken from its `stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatePoint {
    pub t_ms: u64,
    pub bitrate_kbps: Option<f64>,
    pub target_kbps: Option<f64>,
    pub gain: Option<f64>,
    pub rtt_ms: Option<f64>,
}

impl RatePoint {
    /// From fchmd's stats JSON; fields it lacks stay `None` (docs/fchmd.md).
    pub fn from_stats(stats: &Value, received_ms: u64) -> Self {
        let num = |k: &str| stats.get(k).and_then(Value::as_f64);
        Self {
            t_ms: stats
                .get("ts_us")
                .and_then(Value::as_u64)
                .map_or(received_ms, |us| us / 1000),
            bitrate_kbps: num("bitrate_kbps"),
            target_kbps: num("target_kbps"),
            gain: num("gain"),
            rtt_ms: num("rtt_ms"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Frames kept per device for `detections?since=` and the dashboard.
    pub frames: usize,
    /// Stats points kept per device (one per `stats.interval_s` of the device).
    pub stats: usize,
    /// Sequence numbers remembered per device to drop redeliveries.
    pub dedup: usize,
    /// Devices tracked at all; messages naming further devices are ignored.
    pub devices: usize,
    /// Machine payloads this instance decoded, and aux payloads, kept per
    /// device so a human view can be rendered on request.
    pub human_frames: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frames: 256,
            stats: 720,
            dedup: 4096,
            devices: 4096,
            human_frames: 32,
        }
    }
}

/// The last `cap` sequence numbers of one device, for at-least-once delivery.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    /// `true` the first time `seq` is offered (within the window).
    fn insert(&mut self, seq: u64, cap: usize) -> bool {
        if !self.set.insert(seq) {
            return false;
        }
        self.order.push_back(seq);
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[derive(Debug, Default)]
struct Device {
    available: Option<String>,
    model: Option<String>,
    state: BTreeMap<String, String>,
    stats: Option<Value>,
    rate_history: VecDeque<RatePoint>,
    /// Recent frames in sequence order.
    frames: VecDeque<Arc<FrameRecord>>,
    frames_total: u64,
    decoding: Seen,
    view: Option<Arc<FeatureView>>,
    /// Recent machine payloads decoded here, and aux payloads, by sequence.
    payloads: Recent,
    aux: Recent,
}

/// A bounded, sequence-keyed window of payloads (newest kept).
#[derive(Debug, Default)]
struct Recent(VecDeque<(u64, bytes::Bytes)>);

impl Recent {
    fn insert(&mut self, seq: u64, payload: bytes::Bytes, cap: usize) -> bool {
        if self.get(seq).is_some() {
            return false;
        }
        let at = self.0.partition_point(|(s, _)| *s < seq);
        self.0.insert(at, (seq, payload));
        while self.0.len() > cap.max(1) {
            self.0.pop_front();
        }
        true
    }

    fn get(&self, seq: u64) -> Option<&bytes::Bytes> {
        self.0.iter().find(|(s, _)| *s == seq).map(|(_, p)| p)
    }

    fn sequences(&self) -> Vec<u64> {
        self.0.iter().map(|(s, _)| *s).collect()
    }
}

/// Why a human view cannot be rendered for a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HumanMissing {
    Device,
    /// No aux frame for this sequence has reached this instance.
    Aux,
    /// The machine frame was decoded elsewhere or has left the window.
    Machine,
}

impl Device {
    fn online(&self) -> Option<bool> {
        self.available.as_deref().map(|a| a == "online")
    }
}

/// A device as `GET /api/devices` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    pub id: String,
    pub online: Option<bool>,
    pub model: Option<String>,
    pub frames: u64,
    pub last_sequence: Option<u64>,
    pub state: BTreeMap<String, String>,
    /// Sequences with an aux frame here, oldest first (human views can be rendered for those
    /// whose machine frame this instance decoded).
    pub aux_sequences: Vec<u64>,
}

/// One device in full, `GET /api/devices/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub summary: DeviceSummary,
    pub stats: Option<Value>,
    pub rate_history: Vec<RatePoint>,
    pub latest: Option<FrameRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    New,
    /// Claimed before: a QoS 1 redelivery.
    Duplicate,
    /// The device would exceed [`Limits::devices`].
    TooManyDevices,
}

#[derive(Debug, Default)]
pub struct Store {
    limits: Limits,
    devices: Mutex<HashMap<String, Device>>,
}

impl Store {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            devices: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Device>> {
        // A panic elsewhere must not take the API down with it.
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_device<R>(&self, id: &str, f: impl FnOnce(&mut Device) -> R) -> Option<R> {
        let mut map = self.lock();
        if !map.contains_key(id) {
            if map.len() >= self.limits.devices {
                return None;
            }
            map.insert(id.to_owned(), Device::default());
        }
        map.get_mut(id).map(f)
    }

    /// Claim `(device, sequence)` for decoding, so each frame is decoded
    /// once however often the broker delivers it.
    pub fn claim(&self, device: &str, sequence: u64) -> Claim {
        let cap = self.limits.dedup;
        match self.with_device(device, |d| d.decoding.insert(sequence, cap)) {
            Some(true) => Claim::New,
            Some(false) => Claim::Duplicate,
            None => Claim::TooManyDevices,
        }
    }

    /// Add a decoded frame (ours, or another instance's from the
    /// `detections` topic); a sequence already present is ignored.
    pub fn add_frame(&self, record: FrameRecord, view: Option<FeatureView>) -> bool {
        let cap = self.limits.frames;
        let device = record.device.clone();
        self.with_device(&device, |d| {
            let seq = record.sequence;
            if d.frames.iter().any(|f| f.sequence == seq) {
                return false;
            }
            // Instances finish out of order; keep the window sorted.
            let at = d.frames.partition_point(|f| f.sequence < seq);
            d.frames.insert(at, Arc::new(record));
            d.frames_total += 1;
            while d.frames.len() > cap {
                d.frames.pop_front();
            }
            if let Some(v) = view {
                if d.view.as_ref().is_none_or(|old| old.sequence < v.sequence) {
                    d.view = Some(Arc::new(v));
                }
            }
            true
        })
        .unwrap_or(false)
    }

    pub fn set_available(&self, device: &str, value: &str) {
        self.with_device(device, |d| d.available = Some(value.to_owned()));
    }

    pub fn set_model(&self, device: &str, value: &str) {
        self.with_device(device, |d| d.model = Some(value.to_owned()));
    }

    pub fn set_state(&self, device: &str, key: &str, value: &str) {
        self.with_device(device, |d| {
            d.state.insert(key.to_owned(), value.to_owned());
        });
    }

    pub fn add_stats(&self, device: &str, stats: Value, received_ms: u64) {
        let cap = self.limits.stats;
        self.with_device(device, |d| {
            d.rate_history
                .push_back(RatePoint::from_stats(&stats, received_ms));
            while d.rate_history.len() > cap {
                d.rate_history.pop_front();
            }
            d.stats = Some(stats);
        });
    }

    fn summary(id: &str, d: &Device) -> DeviceSummary {
        DeviceSummary {
            id: id.to_owned(),
            online: d.online(),
            model: d.model.clone(),
            frames: d.frames_total,
            last_sequence: d.frames.back().map(|f| f.sequence),
            state: d.state.clone(),
            aux_sequences: d.aux.sequences(),
        }
    }

    /// Every device, sorted by id.
    pub fn devices(&self) -> Vec<DeviceSummary> {
        let map = self.lock();
        let mut v: Vec<_> = map.iter().map(|(id, d)| Self::summary(id, d)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn device(&self, id: &str) -> Option<DeviceDetail> {
        let map = self.lock();
        let d = map.get(id)?;
        Some(DeviceDetail {
            summary: Self::summary(id, d),
            stats: d.stats.clone(),
            rate_history: d.rate_history.iter().cloned().collect(),
            latest: d.frames.back().map(|f| FrameRecord::clone(f)),
        })
    }

    /// Frames with a sequence above `since`, oldest first; `None` for an unknown device.
    pub fn frames_since(&self, id: &str, since: u64) -> Option<Vec<FrameRecord>> {
        let map = self.lock();
        let d = map.get(id)?;
        Some(
            d.frames
                .iter()
                .filter(|f| f.sequence > since)
                .map(|f| FrameRecord::clone(f))
                .collect(),
        )
    }

    /// The latest picture this instance decoded itself.
    pub fn view(&self, id: &str) -> Option<Arc<FeatureView>> {
        self.lock().get(id)?.view.clone()
    }

    /// Keep the machine payload of a frame this instance decoded.
    pub fn add_payload(&self, device: &str, sequence: u64, payload: bytes::Bytes) {
        let cap = self.limits.human_frames;
        self.with_device(device, |d| d.payloads.insert(sequence, payload, cap));
    }

    /// Keep an aux payload; `false` if this sequence already has one (a redelivery).
    pub fn add_aux(&self, device: &str, sequence: u64, payload: bytes::Bytes) -> bool {
        let cap = self.limits.human_frames;
        self.with_device(device, |d| d.aux.insert(sequence, payload, cap))
            .unwrap_or(false)
    }

    /// The (machine, aux) payloads of one frame, for rendering its human view.
    pub fn human_inputs(
        &self,
        id: &str,
        sequence: u64,
    ) -> Result<(bytes::Bytes, bytes::Bytes), HumanMissing> {
        let map = self.lock();
        let d = map.get(id).ok_or(HumanMissing::Device)?;
        let aux = d.aux.get(sequence).ok_or(HumanMissing::Aux)?.clone();
        let machine = d
            .payloads
            .get(sequence)
            .ok_or(HumanMissing::Machine)?
            .clone();
        Ok((machine, aux))
    }

    /// (devices, devices online), for the gauges.
    pub fn counts(&self) -> (usize, usize) {
        let map = self.lock();
        let online = map.values().filter(|d| d.online() == Some(true)).count();
        (map.len(), online)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: &str, sequence: u64) -> FrameRecord {
        FrameRecord {
            device: device.into(),
            sequence,
            capture_us: sequence * 1000,
            received_ms: 0,
            decode_ms: 1.0,
            bytes: 10,
            bundle_id: "b".into(),
            width: 4,
            height: 4,
            server: "s".into(),
            detections: vec![],
        }
    }

    #[test]
    fn claims_each_sequence_once_within_the_window() {
        let s = Store::new(Limits {
            dedup: 2,
            ..Limits::default()
        });
        assert_eq!(s.claim("a", 1), Claim::New);
        assert_eq!(s.claim("a", 1), Claim::Duplicate);
        assert_eq!(s.claim("b", 1), Claim::New, "devices are independent");
        assert_eq!(s.claim("a", 2), Claim::New);
        assert_eq!(s.claim("a", 3), Claim::New);
        // 1 fell out of the two-entry window.
        assert_eq!(s.claim("a", 1), Claim::New);
    }

    #[test]
    fn frames_stay_sorted_bounded_and_unique() {
        let s = Store::new(Limits {
            frames: 3,
            ..Limits::default()
        });
        for seq in [5, 3, 4, 4, 6, 1] {
            s.add_frame(record("cam", seq), None);
        }
        let seqs: Vec<u64> = s
            .frames_since("cam", 0)
            .unwrap()
            .iter()
            .map(|f| f.sequence)
            .collect();
        assert_eq!(seqs, vec![4, 5, 6]);
        let seqs: Vec<u64> = s
            .frames_since("cam", 4)
            .unwrap()
            .iter()
            .map(|f| f.sequence)
            .collect();
        assert_eq!(seqs, vec![5, 6]);
        assert!(s.frames_since("other", 0).is_none());
        assert_eq!(s.devices()[0].frames, 5, "duplicates are not counted");
    }

    #[test]
    fn human_inputs_need_both_layers_and_stay_bounded() {
        let store = Store::new(Limits {
            human_frames: 3,
            ..Limits::default()
        });
        let b = |v: u8| bytes::Bytes::from(vec![v]);
        assert_eq!(store.human_inputs("cam", 1), Err(HumanMissing::Device));
        store.add_payload("cam", 1, b(1));
        assert_eq!(store.human_inputs("cam", 1), Err(HumanMissing::Aux));
        assert!(store.add_aux("cam", 2, b(20)));
        assert!(
            !store.add_aux("cam", 2, b(21)),
            "a redelivery is not stored twice"
        );
        assert_eq!(store.human_inputs("cam", 2), Err(HumanMissing::Machine));
        store.add_payload("cam", 2, b(2));
        assert_eq!(store.human_inputs("cam", 2), Ok((b(2), b(20))));
        for seq in [5, 4, 3] {
            store.add_aux("cam", seq, b(seq as u8));
        }
        assert_eq!(store.devices()[0].aux_sequences, vec![3, 4, 5]);
    }

    #[test]
    fn device_count_is_bounded() {
        let s = Store::new(Limits {
            devices: 2,
            ..Limits::default()
        });
        s.set_available("a", "online");
        s.set_available("b", "offline");
        s.set_available("c", "online");
        assert_eq!(s.counts(), (2, 1));
        assert_eq!(s.claim("c", 1), Claim::TooManyDevices);
    }

    #[test]
    fn stats_become_rate_history() {
        let s = Store::new(Limits::default());
        let stats = serde_json::json!({"ts_us": 5_000_000u64, "bitrate_kbps": 300.5, "gain": 2.0, "rtt_ms": null});
        s.add_stats("cam", stats, 1);
        let d = s.device("cam").unwrap();
        assert_eq!(
            d.rate_history,
            vec![RatePoint {
                t_ms: 5000,
                bitrate_kbps: Some(300.5),
                target_kbps: None,
                gain: Some(2.0),
                rtt_ms: None
            }]
        );
    }
}
