//! `manifest.json` of a human-layer bundle (schema `fchm-hvcn/1`, docs/bundle.md).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use fchm_codec::container::BundleId;
use serde::{Deserialize, Serialize};

use crate::model::manifest::{
    check_contents, field, GraphSpec, InputSpec, LatentSpec, ManifestError,
};

pub const SCHEMA: &str = "fchm-hvcn/1";

/// Graphs every human-layer bundle has: the camera's two, the server's three.
pub const GRAPHS: [&str; 5] = [
    "acn_enc",
    "acn_hyper_enc",
    "hvcn_fast",
    "hvcn_fcn",
    "hvcn_denoiser",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuxRatePoint {
    pub gain: f32,
    /// Aux bits per pixel of the 512x512 frame, whole aux payloads, on the validation set.
    pub bpp: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuxSpec {
    pub latent: LatentSpec,
    pub gain_min: f32,
    pub gain_max: f32,
    pub rate_table: Vec<AuxRatePoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiffusionSpec {
    /// A name [`crate::human::scheduler::from_name`] knows.
    pub scheduler: String,
    /// Sampling steps used when the caller does not choose.
    pub steps: usize,
    /// The denoiser works on (image - fast image) / 255 * residual_scale.
    pub residual_scale: f32,
    /// diffusers' scheduler config, as saved by `save_config`.
    pub scheduler_config: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HumanManifest {
    pub schema: String,
    pub name: String,
    pub version: String,
    pub bundle_id: String,
    /// The machine bundle whose decoded features this layer was trained on.
    pub machine_bundle_id: String,
    pub input: InputSpec,
    pub aux: AuxSpec,
    pub graphs: BTreeMap<String, GraphSpec>,
    pub entropy: String,
    pub hyper_synth: String,
    pub diffusion: DiffusionSpec,
    pub files: BTreeMap<String, String>,
}

impl HumanManifest {
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join("manifest.json");
        let text = fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let m: HumanManifest =
            serde_json::from_str(&text).map_err(|source| ManifestError::Parse {
                path: path.clone(),
                source,
            })?;
        if m.schema != SCHEMA {
            return Err(field(
                "schema",
                format!("{:?} in {}, expected {SCHEMA:?}", m.schema, path.display()),
            ));
        }
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        check_contents(
            &self.bundle_id,
            &self.files,
            &self.graphs,
            [
                ("entropy", &self.entropy),
                ("hyper_synth", &self.hyper_synth),
            ],
            &self.input,
        )?;
        if self.machine_bundle_id.parse::<BundleId>().is_err() {
            return Err(field("machine_bundle_id", "not 32 hex digits"));
        }
        if let Some(key) = GRAPHS.iter().find(|k| !self.graphs.contains_key(**k)) {
            return Err(field(format!("graphs.{key}"), "missing"));
        }
        let aux = &self.aux;
        if !(aux.gain_min.is_finite() && aux.gain_min > 0.0 && aux.gain_max > aux.gain_min) {
            return Err(field("aux", "need 0 < gain_min < gain_max"));
        }
        let d = &self.diffusion;
        if d.steps == 0 || !(d.residual_scale.is_finite() && d.residual_scale > 0.0) {
            return Err(field(
                "diffusion",
                "need steps > 0 and a positive residual_scale",
            ));
        }
        Ok(())
    }

    pub fn id(&self) -> BundleId {
        self.bundle_id.parse().expect("validated in load()")
    }

    pub fn machine_id(&self) -> BundleId {
        self.machine_bundle_id.parse().expect("validated in load()")
    }

    /// The aux gain expected to give `bpp` (log-log interpolation of the rate
    /// table, clamped to its ends); `None` for a table without usable points.
    pub fn aux_gain_for_bpp(&self, bpp: f64) -> Option<f32> {
        let table: Vec<(f64, f32)> = self
            .aux
            .rate_table
            .iter()
            .map(|p| (p.bpp, p.gain))
            .collect();
        crate::model::manifest::interpolate_gain(&table, bpp)
            .map(|g| g.clamp(self.aux.gain_min, self.aux.gain_max))
    }

    /// Expected aux bits per pixel at `gain` (the inverse of [`Self::aux_gain_for_bpp`]).
    pub fn aux_bpp_for_gain(&self, gain: f32) -> Option<f64> {
        let mut pts: Vec<(f64, f64)> = self
            .aux
            .rate_table
            .iter()
            .filter(|p| p.bpp > 0.0 && p.gain > 0.0)
            .map(|p| ((p.gain as f64).ln(), p.bpp.ln()))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        crate::model::manifest::interpolate(&pts, (gain as f64).ln()).map(f64::exp)
    }
}
