//! `manifest.json`: what a model bundle contains, and proof that it is intact.
//!
//! Schema and rationale: docs/bundle.md. Every file a bundle names is pinned by
//! sha256; the bundle id that every frame header carries is derived from those
//! hashes, so a frame can only be decoded with exactly the models that coded it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fchm_codec::container::BundleId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const SCHEMA: &str = "fchm-bundle/1";

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: unsupported schema {found:?} (this build reads {SCHEMA:?})")]
    Schema { path: PathBuf, found: String },
    #[error("bundle file {file} is missing ({path})")]
    MissingFile { file: String, path: PathBuf },
    #[error("bundle file {file} does not match the manifest: sha256 {actual}, expected {expected} (tampered, truncated or from another bundle)")]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("manifest field {field}: {problem}")]
    Field { field: String, problem: String },
}

pub(crate) fn field(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub layout: String,
    pub colour: String,
    pub range: [f32; 2],
    pub resize: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GraphSpec {
    pub file: String,
    /// Input name -> static shape.
    pub inputs: BTreeMap<String, Vec<usize>>,
    pub outputs: BTreeMap<String, Vec<usize>>,
    /// `edge` graphs run on the camera, `server` graphs on the decoder.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RatePoint {
    pub gain: f32,
    /// Bits per pixel of the 512x512 detector input, whole frame payloads.
    pub bpp: f64,
    /// Fidelity mAP@0.5 against the uncompressed detector on the validation set.
    pub map50: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IvnSpec {
    pub gain_min: f32,
    pub gain_max: f32,
    pub rate_table: Vec<RatePoint>,
}

impl IvnSpec {
    /// The gain expected to give `bpp`, interpolating the rate table linearly
    /// in log(gain) vs log(bpp); clamped to the table's ends.
    pub fn gain_for_bpp(&self, bpp: f64) -> Option<f32> {
        let table: Vec<(f64, f32)> = self.rate_table.iter().map(|p| (p.bpp, p.gain)).collect();
        interpolate_gain(&table, bpp).map(|g| g.clamp(self.gain_min, self.gain_max))
    }
}

/// The gain expected to give `bpp` from (bpp, gain) rows, linear in
/// log(gain) vs log(bpp), clamped to the table's ends. `None` for a bad
/// `bpp` or a table without positive rows.
pub(crate) fn interpolate_gain(table: &[(f64, f32)], bpp: f64) -> Option<f32> {
    let mut pts: Vec<(f64, f64)> = table
        .iter()
        .filter(|(b, g)| *b > 0.0 && *g > 0.0)
        .map(|&(b, g)| (b.ln(), (g as f64).ln()))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if bpp.is_nan() || bpp <= 0.0 {
        return None;
    }
    interpolate(&pts, bpp.ln()).map(|g| g.exp() as f32)
}

/// Piecewise-linear y(x) through points sorted by x, clamped to the ends.
pub(crate) fn interpolate(pts: &[(f64, f64)], x: f64) -> Option<f64> {
    let (first, last) = (*pts.first()?, *pts.last()?);
    if x <= first.0 {
        return Some(first.1);
    }
    if x >= last.0 {
        return Some(last.1);
    }
    let i = pts.windows(2).position(|w| x <= w[1].0)?;
    let (a, b) = (pts[i], pts[i + 1]);
    Some(a.1 + (x - a.0) / (b.0 - a.0).max(1e-12) * (b.1 - a.1))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureSpec {
    pub name: String,
    pub shape: [usize; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatentSpec {
    pub y: [usize; 3],
    pub z: [usize; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub schema: String,
    pub name: String,
    pub version: String,
    pub bundle_id: String,
    pub input: InputSpec,
    pub feature: FeatureSpec,
    pub latent: LatentSpec,
    pub graphs: BTreeMap<String, GraphSpec>,
    pub entropy: String,
    pub hyper_synth: String,
    pub ivn: IvnSpec,
    /// File name -> sha256 (hex) of every file in the bundle.
    pub files: BTreeMap<String, String>,
}

/// The bundle id: the first 16 bytes of sha256 over the sorted `name sha256\n` lines.
pub fn bundle_id_of(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (name, digest) in files {
        h.update(format!("{name} {digest}\n"));
    }
    hex::encode(&h.finalize()[..16])
}

pub fn sha256_file(path: &Path) -> Result<String, ManifestError> {
    let bytes = fs::read(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Manifest {
    /// Parse `dir/manifest.json` and check its internal consistency (no file hashing).
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join("manifest.json");
        let text = fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|source| ManifestError::Parse {
            path: path.clone(),
            source,
        })?;
        if m.schema != SCHEMA {
            return Err(ManifestError::Schema {
                path,
                found: m.schema,
            });
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
        for (key, g) in &self.graphs {
            if g.inputs.len() != 1 {
                return Err(field(
                    format!("graphs.{key}.inputs"),
                    "exactly one input expected",
                ));
            }
        }
        let ivn = &self.ivn;
        if !(ivn.gain_min.is_finite() && ivn.gain_min > 0.0 && ivn.gain_max > ivn.gain_min) {
            return Err(field("ivn", "need 0 < gain_min < gain_max"));
        }
        Ok(())
    }

    /// Hash every file the manifest names (a subset when `only` is given) and compare.
    pub fn verify_files(&self, dir: &Path, only: Option<&[&str]>) -> Result<(), ManifestError> {
        verify_files(&self.files, dir, only)
    }

    pub fn graph(&self, key: &str) -> Result<&GraphSpec, ManifestError> {
        self.graphs
            .get(key)
            .ok_or_else(|| field(format!("graphs.{key}"), "missing"))
    }

    pub fn id(&self) -> BundleId {
        self.bundle_id.parse().expect("validated in load()")
    }
}

/// What every bundle manifest (machine or human layer) must satisfy: the id
/// hashes the files, every graph and table is listed among them with a known
/// role, the names are plain and the input convention is the supported one.
pub(crate) fn check_contents(
    bundle_id: &str,
    files: &BTreeMap<String, String>,
    graphs: &BTreeMap<String, GraphSpec>,
    tables: [(&str, &String); 2],
    input: &InputSpec,
) -> Result<(), ManifestError> {
    let expected = bundle_id_of(files);
    if bundle_id != expected {
        return Err(field(
            "bundle_id",
            format!("{bundle_id} does not match the file hashes ({expected})"),
        ));
    }
    for (key, g) in graphs {
        if !files.contains_key(&g.file) {
            return Err(field(
                format!("graphs.{key}.file"),
                format!("{} is not listed in files", g.file),
            ));
        }
        if g.role != "edge" && g.role != "server" {
            return Err(field(
                format!("graphs.{key}.role"),
                format!("{:?} is not edge or server", g.role),
            ));
        }
    }
    for (key, file) in tables {
        if !files.contains_key(file) {
            return Err(field(key, format!("{file} is not listed in files")));
        }
    }
    check_files(files)?;
    check_input(input)
}

/// Every file name is a plain name inside the bundle and every digest a sha256.
pub(crate) fn check_files(files: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    for (name, digest) in files {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(field(format!("files.{name}"), "not a sha256 hex digest"));
        }
        if name.contains('/') || name.contains("..") {
            return Err(field(
                format!("files.{name}"),
                "file names must be plain names inside the bundle",
            ));
        }
    }
    Ok(())
}

/// Preprocessing implements exactly one convention; refuse the rest rather
/// than feed a graph pixels it was not trained on.
pub(crate) fn check_input(i: &InputSpec) -> Result<(), ManifestError> {
    if i.layout != "NCHW"
        || i.colour != "RGB"
        || i.range != [0.0, 255.0]
        || i.resize != "stretch-bilinear"
    {
        return Err(field(
            "input",
            "only NCHW, RGB, range [0, 255], resize \"stretch-bilinear\" is supported",
        ));
    }
    Ok(())
}

/// Hash every file named in `files` (a subset when `only` is given) and compare.
pub(crate) fn verify_files(
    files: &BTreeMap<String, String>,
    dir: &Path,
    only: Option<&[&str]>,
) -> Result<(), ManifestError> {
    for (name, expected) in files {
        if only.is_some_and(|o| !o.contains(&name.as_str())) {
            continue;
        }
        let path = dir.join(name);
        if !path.exists() {
            return Err(ManifestError::MissingFile {
                file: name.clone(),
                path,
            });
        }
        let actual = sha256_file(&path)?;
        if &actual != expected {
            return Err(ManifestError::Checksum {
                file: name.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}
