//! The human layer on the server: aux frames kept, views rendered on request,
//! and the rule that asks cameras for the aux layer of interesting frames.
//!
//! Aux frames arrive on a plain (not shared) subscription: they are rare and
//! small, and only the instance that decoded the machine frame of the same
//! sequence holds P̂'s payload, so every instance keeps them and the one that
//! can render does (docs/human-layer.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fchm_codec::container::{FrameRef, Layer};
use image::RgbImage;
use thiserror::Error;

use super::decode::Decoders;
use super::store::FrameRecord;
use crate::codec::{DecodeError, FeatureDecoder};
use crate::human::view::{to_source, Sampling, ViewError};
use crate::human::{AuxDecoder, HumanDecoder, ViewMode};

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("this server has no human-layer bundle (start it with --human-bundle DIR)")]
    NoHumanLayer,
    #[error("machine frame: {0}")]
    Machine(DecodeError),
    #[error("aux frame: {0}")]
    Aux(DecodeError),
    #[error(transparent)]
    View(#[from] ViewError),
}

/// Check an aux payload enough to keep it: it parses, is an aux frame and
/// belongs to our human-layer bundle. Returns its sequence.
pub fn accept_aux(decoders: &Decoders, payload: &[u8]) -> Result<u64, String> {
    let human = decoders.human().ok_or("no human-layer bundle loaded")?;
    let frame = FrameRef::parse(payload).map_err(|e| e.to_string())?;
    let h = frame.header;
    if h.layer != Layer::Aux {
        return Err(format!(
            "frame {} is a {:?}-layer frame",
            h.sequence, h.layer
        ));
    }
    if h.bundle_id != human.manifest.id() {
        return Err(format!(
            "aux frame {} was coded with bundle {}; this server's human layer is {}",
            h.sequence,
            h.bundle_id,
            human.manifest.id()
        ));
    }
    Ok(h.sequence)
}

/// Decode both layers of one frame and render its human view at the camera's size.
pub fn render(
    decoders: &Decoders,
    machine: &[u8],
    aux: &[u8],
    mode: ViewMode,
    sampling: Sampling,
) -> Result<RgbImage, RenderError> {
    let human = decoders.human().ok_or(RenderError::NoHumanLayer)?;
    let frame = FrameRef::parse(machine).map_err(|e| RenderError::Machine(e.into()))?;
    let bundle = decoders
        .get(&frame.header.bundle_id)
        .ok_or(RenderError::Machine(DecodeError::BundleMismatch {
            got: frame.header.bundle_id,
            expected: human.manifest.machine_id(),
        }))?;
    let (latents, features) = FeatureDecoder::new(bundle)
        .and_then(|d| d.decode_features(&frame))
        .map_err(RenderError::Machine)?;
    let aux = AuxDecoder::new(human)
        .decode(aux)
        .map_err(RenderError::Aux)?;
    let view =
        HumanDecoder::new(human)?.render(&latents.header, &features, &aux, mode, sampling)?;
    Ok(to_source(
        &view,
        aux.header.source_width,
        aux.header.source_height,
    ))
}

/// Ask a camera for the aux layer of frames whose detections contain chosen
/// classes (`--aux-on person,car`), at most once per `interval` per device.
#[derive(Debug)]
pub struct AuxRule {
    classes: Vec<String>,
    min_score: f32,
    interval: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl AuxRule {
    pub fn new(classes: Vec<String>, min_score: f32, interval: Duration) -> Self {
        Self {
            classes,
            min_score,
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The class that triggers a request for this frame, if any and if the
    /// device was not asked within the interval (the request is then noted).
    pub fn trigger(&self, record: &FrameRecord, now: Instant) -> Option<String> {
        let hit = record
            .detections
            .iter()
            .find(|d| d.score >= self.min_score && self.classes.contains(&d.class))?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last
            .get(&record.device)
            .is_some_and(|t| now.duration_since(*t) < self.interval)
        {
            return None;
        }
        last.insert(record.device.clone(), now);
        Some(hit.class.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LabelledBox;

    fn record(device: &str, classes: &[(&str, f32)]) -> FrameRecord {
        FrameRecord {
            device: device.into(),
            sequence: 1,
            capture_us: 0,
            received_ms: 0,
            decode_ms: 0.0,
            bytes: 0,
            bundle_id: String::new(),
            width: 1,
            height: 1,
            server: String::new(),
            detections: classes
                .iter()
                .map(|&(c, score)| LabelledBox {
                    class: c.into(),
                    class_id: 0,
                    score,
                    bbox: [0.0; 4],
                })
                .collect(),
        }
    }

    #[test]
    fn rule_fires_on_chosen_classes_once_per_interval_per_device() {
        let rule = AuxRule::new(vec!["person".into()], 0.3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rule.trigger(&record("a", &[("car", 0.9)]), t0), None);
        assert_eq!(
            rule.trigger(&record("a", &[("person", 0.2)]), t0),
            None,
            "below the score"
        );
        assert_eq!(
            rule.trigger(&record("a", &[("car", 0.9), ("person", 0.5)]), t0)
                .as_deref(),
            Some("person")
        );
        assert_eq!(
            rule.trigger(
                &record("a", &[("person", 0.9)]),
                t0 + Duration::from_secs(5)
            ),
            None
        );
        assert!(
            rule.trigger(&record("b", &[("person", 0.9)]), t0).is_some(),
            "per device"
        );
        assert!(rule
            .trigger(
                &record("a", &[("person", 0.9)]),
                t0 + Duration::from_secs(11)
            )
            .is_some());
    }
}
