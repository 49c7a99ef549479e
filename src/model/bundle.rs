//! A loaded model bundle: manifest checked, files verified, graphs planned for one role.

use std::path::{Path, PathBuf};

use fchm_codec::entropy::{EntropyError, EntropyModels};
use fchm_codec::hyper::{HyperError, HyperSynthesis};
use thiserror::Error;

use super::manifest::{Manifest, ManifestError};
use super::runtime::{Backend, Graph, RuntimeError};

/// Which graphs to load: a camera never loads the decoder, and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `front`, `vfcn_enc`, `vfcn_hyper_enc`.
    Edge,
    /// `vfcn_dec`, `task_back`.
    Server,
    /// Both sides plus `detector_full` (evaluation and tests).
    All,
}

impl Role {
    pub(crate) fn wants(self, graph_role: &str, key: &str) -> bool {
        match self {
            Role::Edge => graph_role == "edge",
            Role::Server => graph_role == "server" && key != "detector_full",
            Role::All => true,
        }
    }
}

#[derive(Debug, Error)]
pub enum BundleError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("entropy tables: {0}")]
    Entropy(#[from] EntropyError),
    #[error(transparent)]
    Hyper(#[from] HyperError),
    #[error("bundle {dir}: {problem}")]
    Inconsistent { dir: PathBuf, problem: String },
}

/// The graphs of one role, keyed as in the manifest.
#[derive(Debug, Default)]
pub struct Graphs {
    pub front: Option<Graph>,
    pub vfcn_enc: Option<Graph>,
    pub vfcn_hyper_enc: Option<Graph>,
    pub vfcn_dec: Option<Graph>,
    pub task_back: Option<Graph>,
    pub detector_full: Option<Graph>,
}

#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub role: Role,
    pub graphs: Graphs,
    pub entropy: EntropyModels,
    pub hyper: HyperSynthesis,
}

impl Bundle {
    /// Load `dir` for `role` with tract: verifies the sha256 of every file that role reads.
    pub fn load(dir: &Path, role: Role) -> Result<Self, BundleError> {
        Self::load_with(dir, role, &Backend::Tract)
    }

    /// [`Bundle::load`] with the graphs planned for `backend`; the entropy
    /// tables and the integer hyper-synthesis are the same on every backend.
    pub fn load_with(dir: &Path, role: Role, backend: &Backend) -> Result<Self, BundleError> {
        let manifest = Manifest::load(dir)?;
        let mut needed: Vec<&str> = vec![manifest.entropy.as_str(), manifest.hyper_synth.as_str()];
        for (key, g) in &manifest.graphs {
            if role.wants(&g.role, key) {
                needed.push(&g.file);
            }
        }
        manifest.verify_files(dir, Some(&needed))?;

        let mut graphs = Graphs::default();
        for (key, g) in &manifest.graphs {
            if !role.wants(&g.role, key) {
                continue;
            }
            let shape = g.inputs.values().next().expect("validated: one input");
            let graph = Some(Graph::load_with(key, &dir.join(&g.file), shape, backend)?);
            match key.as_str() {
                "front" => graphs.front = graph,
                "vfcn_enc" => graphs.vfcn_enc = graph,
                "vfcn_hyper_enc" => graphs.vfcn_hyper_enc = graph,
                "vfcn_dec" => graphs.vfcn_dec = graph,
                "task_back" => graphs.task_back = graph,
                "detector_full" => graphs.detector_full = graph,
                _ => {} // graphs of later layers (aux, human view) are not used by this build
            }
        }
        let (entropy, hyper) = load_tables(dir, &manifest.entropy, &manifest.hyper_synth)?;
        let bundle = Self {
            dir: dir.to_owned(),
            manifest,
            role,
            graphs,
            entropy,
            hyper,
        };
        bundle.check_consistency()?;
        Ok(bundle)
    }

    /// The pieces must agree on latent shapes, or decoding would fail per frame.
    fn check_consistency(&self) -> Result<(), BundleError> {
        let lat = &self.manifest.latent;
        let problem = if self.hyper.in_channels() != lat.z[0] {
            Some(format!(
                "hyper_synth takes {} channels, latent z has {}",
                self.hyper.in_channels(),
                lat.z[0]
            ))
        } else if self.hyper.out_channels() != lat.y[0] {
            Some(format!(
                "hyper_synth gives {} channels, latent y has {}",
                self.hyper.out_channels(),
                lat.y[0]
            ))
        } else if lat.z[1] * self.hyper.scale_factor() != lat.y[1] {
            Some("hyper_synth upsampling does not map z onto y".to_owned())
        } else if self.entropy.z.channels() != lat.z[0] {
            Some(format!(
                "entropy.z has {} channels, latent z has {}",
                self.entropy.z.channels(),
                lat.z[0]
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(BundleError::Inconsistent {
                dir: self.dir.clone(),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// The machine layer's latent coder.
    pub fn latent_codec(&self) -> crate::codec::LatentCodec<'_> {
        crate::codec::LatentCodec {
            entropy: &self.entropy,
            hyper: &self.hyper,
            z: self.manifest.latent.z,
            y: self.manifest.latent.y,
        }
    }

    pub fn require<'a>(&self, g: &'a Option<Graph>, key: &str) -> Result<&'a Graph, BundleError> {
        require_graph(&self.dir, self.role, g, key)
    }
}

/// The entropy tables and the integer hyper-synthesis a bundle names.
pub(crate) fn load_tables(
    dir: &Path,
    entropy: &str,
    hyper_synth: &str,
) -> Result<(EntropyModels, HyperSynthesis), BundleError> {
    let entropy = EntropyModels::load(dir.join(entropy))?;
    let path = dir.join(hyper_synth);
    let text =
        std::fs::read_to_string(&path).map_err(|source| ManifestError::Read { path, source })?;
    Ok((entropy, HyperSynthesis::from_json(&text)?))
}

/// `g`, or an error saying that graph `key` is not loaded for `role`.
pub(crate) fn require_graph<'a>(
    dir: &Path,
    role: Role,
    g: &'a Option<Graph>,
    key: &str,
) -> Result<&'a Graph, BundleError> {
    g.as_ref().ok_or_else(|| BundleError::Inconsistent {
        dir: dir.to_owned(),
        problem: format!("graph {key} is not loaded for role {role:?}"),
    })
}
