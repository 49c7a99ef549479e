//! Frames in, detections out: the decode workers.
//!
//! Model work runs on plain threads, never on the async runtime's: one frame
//! holds a core for a long time (~0.6 s with tract on a CPU). Every payload
//! ends in exactly one [`Outcome`], so the counters add up.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fchm_codec::container::{BundleId, FrameRef};
use thiserror::Error;
use tokio::sync::mpsc;

use super::store::{Claim, FrameRecord, Store};
use super::view::FeatureView;
use crate::codec::FeatureDecoder;
use crate::human::HumanBundle;
use crate::model::runtime::Backend;
use crate::model::{Bundle, BundleError, LabelledBox, Role};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("loading bundle {dir}: {source}")]
    Bundle { dir: PathBuf, source: BundleError },
    #[error("bundles {a} and {b} have the same bundle id {id}")]
    SameId { a: PathBuf, b: PathBuf, id: String },
    #[error("no model bundle given")]
    None,
    #[error("loading human-layer bundle {dir}: {source}")]
    Human { dir: PathBuf, source: BundleError },
    #[error("human-layer bundle {dir} was trained on machine bundle {machine}, which this server does not load ({loaded})")]
    HumanPairing {
        dir: PathBuf,
        machine: String,
        loaded: String,
    },
}

/// The bundles this server decodes, keyed by the id frames carry.
#[derive(Debug)]
pub struct Decoders {
    bundles: Vec<(BundleId, Bundle)>,
    human: Option<HumanBundle>,
}

impl Decoders {
    /// Load with tract.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, LoadError> {
        Self::load_with(dirs, &Backend::Tract)
    }

    pub fn load_with(dirs: &[PathBuf], backend: &Backend) -> Result<Self, LoadError> {
        if dirs.is_empty() {
            return Err(LoadError::None);
        }
        let mut bundles: Vec<(BundleId, Bundle)> = Vec::new();
        for dir in dirs {
            let b = Bundle::load_with(dir, Role::Server, backend).map_err(|source| {
                LoadError::Bundle {
                    dir: dir.clone(),
                    source,
                }
            })?;
            let id = b.manifest.id();
            if let Some((_, other)) = bundles.iter().find(|(i, _)| *i == id) {
                return Err(LoadError::SameId {
                    a: other.dir.clone(),
                    b: dir.clone(),
                    id: id.to_string(),
                });
            }
            bundles.push((id, b));
        }
        Ok(Self {
            bundles,
            human: None,
        })
    }

    /// Add the human layer; it must pair with one of the machine bundles.
    pub fn with_human(mut self, dir: &Path, backend: &Backend) -> Result<Self, LoadError> {
        let human = HumanBundle::load_with(dir, Role::Server, backend).map_err(|source| {
            LoadError::Human {
                dir: dir.to_owned(),
                source,
            }
        })?;
        if self.get(&human.manifest.machine_id()).is_none() {
            return Err(LoadError::HumanPairing {
                dir: dir.to_owned(),
                machine: human.manifest.machine_bundle_id.clone(),
                loaded: self.ids().join(", "),
            });
        }
        self.human = Some(human);
        Ok(self)
    }

    pub fn human(&self) -> Option<&HumanBundle> {
        self.human.as_ref()
    }

    pub fn ids(&self) -> Vec<String> {
        self.bundles.iter().map(|(id, _)| id.to_string()).collect()
    }

    pub fn get(&self, id: &BundleId) -> Option<&Bundle> {
        self.bundles.iter().find(|(i, _)| i == id).map(|(_, b)| b)
    }
}

/// How one payload ended.
#[derive(Debug)]
pub enum Outcome {
    Decoded {
        record: FrameRecord,
        view: FeatureView,
    },
    /// Not decoded; `cause` is a [`super::metrics::REFUSAL_CAUSES`] label.
    Refused { cause: &'static str, reason: String },
    /// Decoded before (QoS 1 redelivery or a republished frame).
    Duplicate { sequence: u64 },
}

/// Decode one `feat` payload of `device`.
pub fn process(
    decoders: &Decoders,
    store: &Store,
    server: &str,
    device: &str,
    payload: &[u8],
    received_ms: u64,
) -> Outcome {
    let t0 = Instant::now();
    let frame = match FrameRef::parse(payload) {
        Ok(f) => f,
        Err(e) => {
            return Outcome::Refused {
                cause: "malformed",
                reason: e.to_string(),
            }
        }
    };
    let header = &frame.header;
    let Some(bundle) = decoders.get(&header.bundle_id) else {
        return Outcome::Refused {
            cause: "unknown_bundle",
            reason: format!(
                "frame {} was coded with bundle {}; this server has {}",
                header.sequence,
                header.bundle_id,
                decoders.ids().join(", ")
            ),
        };
    };
    match store.claim(device, header.sequence) {
        Claim::New => {}
        Claim::Duplicate => {
            return Outcome::Duplicate {
                sequence: header.sequence,
            }
        }
        Claim::TooManyDevices => {
            return Outcome::Refused {
                cause: "overload",
                reason: "too many devices tracked; raise the server's device limit".into(),
            }
        }
    }
    let decoded = match FeatureDecoder::new(bundle).and_then(|d| d.decode_frame(&frame)) {
        Ok(d) => d,
        Err(e) => {
            return Outcome::Refused {
                cause: e.cause(),
                reason: e.to_string(),
            }
        }
    };
    let h = decoded.header;
    let record = FrameRecord {
        device: device.to_owned(),
        sequence: h.sequence,
        capture_us: h.timestamp_us,
        received_ms,
        decode_ms: t0.elapsed().as_secs_f64() * 1e3,
        bytes: payload.len(),
        bundle_id: h.bundle_id.to_string(),
        width: u32::from(h.source_width),
        height: u32::from(h.source_height),
        server: server.to_owned(),
        detections: decoded.detections.iter().map(LabelledBox::from).collect(),
    };
    let view = FeatureView::from_features(
        h.sequence,
        &decoded.features,
        bundle.manifest.feature.shape,
        record.width,
        record.height,
    );
    Outcome::Decoded { record, view }
}

/// A frame waiting for a worker, and what is needed to answer for it.
#[derive(Debug)]
pub struct Job<T> {
    pub device: String,
    pub payload: bytes::Bytes,
    pub received_ms: u64,
    /// Carried through to the result (the MQTT ack handle).
    pub token: T,
}

#[derive(Debug)]
pub struct Done<T> {
    pub device: String,
    pub outcome: Outcome,
    pub token: T,
    pub seconds: f64,
}

/// Start `n` decode threads fed from `jobs`; results go to `done`. The
/// threads end when `jobs` closes.
pub fn spawn_workers<T: Send + 'static>(
    n: usize,
    decoders: Arc<Decoders>,
    store: Arc<Store>,
    server: String,
    jobs: mpsc::Receiver<Job<T>>,
    done: mpsc::UnboundedSender<Done<T>>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let jobs = Arc::new(Mutex::new(jobs));
    (0..n.max(1))
        .map(|i| {
            let (jobs, done) = (jobs.clone(), done.clone());
            let (decoders, store, server) = (decoders.clone(), store.clone(), server.clone());
            std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn(move || loop {
                    // One idle worker waits on the channel, the others on the lock.
                    let job = jobs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .blocking_recv();
                    let Some(job) = job else { break };
                    let t0 = Instant::now();
                    let outcome = process(
                        &decoders,
                        &store,
                        &server,
                        &job.device,
                        &job.payload,
                        job.received_ms,
                    );
                    if let (Outcome::Decoded { record, .. }, Some(_)) = (&outcome, decoders.human())
                    {
                        // Kept to render a human view should its aux frame come.
                        store.add_payload(&job.device, record.sequence, job.payload.clone());
                    }
                    let d = Done {
                        device: job.device,
                        outcome,
                        token: job.token,
                        seconds: t0.elapsed().as_secs_f64(),
                    };
                    if done.send(d).is_err() {
                        break;
                    }
                })
        })
        .collect()
}
