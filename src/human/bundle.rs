//! A loaded human-layer bundle: manifest checked, files verified, graphs planned for one role.

use std::path::{Path, PathBuf};

use fchm_codec::entropy::EntropyModels;
use fchm_codec::hyper::HyperSynthesis;

use super::manifest::HumanManifest;
use crate::codec::LatentCodec;
use crate::model::bundle::{BundleError, Role};
use crate::model::runtime::{Backend, Graph};

/// The graphs of one role: the camera loads the ACN, the server the rest.
#[derive(Debug, Default)]
pub struct HumanGraphs {
    pub acn_enc: Option<Graph>,
    pub acn_hyper_enc: Option<Graph>,
    pub fast: Option<Graph>,
    pub fcn: Option<Graph>,
    pub denoiser: Option<Graph>,
}

#[derive(Debug)]
pub struct HumanBundle {
    pub dir: PathBuf,
    pub manifest: HumanManifest,
    pub role: Role,
    pub graphs: HumanGraphs,
    pub entropy: EntropyModels,
    pub hyper: HyperSynthesis,
}

impl HumanBundle {
    pub fn load(dir: &Path, role: Role) -> Result<Self, BundleError> {
        Self::load_with(dir, role, &Backend::Tract)
    }

    pub fn load_with(dir: &Path, role: Role, backend: &Backend) -> Result<Self, BundleError> {
        let manifest = HumanManifest::load(dir)?;
        let mut needed: Vec<&str> = vec![&manifest.entropy, &manifest.hyper_synth];
        for (key, g) in &manifest.graphs {
            if role.wants(&g.role, key) {
                needed.push(&g.file);
            }
        }
        crate::model::manifest::verify_files(&manifest.files, dir, Some(&needed))?;

        let mut graphs = HumanGraphs::default();
        for (key, g) in &manifest.graphs {
            if !role.wants(&g.role, key) {
                continue;
            }
            let graph = Some(Graph::load_named(
                key,
                &dir.join(&g.file),
                &g.inputs,
                backend,
            )?);
            match key.as_str() {
                "acn_enc" => graphs.acn_enc = graph,
                "acn_hyper_enc" => graphs.acn_hyper_enc = graph,
                "hvcn_fast" => graphs.fast = graph,
                "hvcn_fcn" => graphs.fcn = graph,
                "hvcn_denoiser" => graphs.denoiser = graph,
                _ => {}
            }
        }
        let (entropy, hyper) =
            crate::model::bundle::load_tables(dir, &manifest.entropy, &manifest.hyper_synth)?;
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

    fn check_consistency(&self) -> Result<(), BundleError> {
        let lat = &self.manifest.aux.latent;
        let problem = if self.hyper.in_channels() != lat.z[0]
            || self.hyper.out_channels() != lat.y[0]
            || lat.z[1] * self.hyper.scale_factor() != lat.y[1]
            || self.entropy.z.channels() != lat.z[0]
        {
            Some(format!(
                "aux hyper-synthesis ({} -> {} channels, x{}) and tables ({} channels) do not fit latents z {:?}, y {:?}",
                self.hyper.in_channels(),
                self.hyper.out_channels(),
                self.hyper.scale_factor(),
                self.entropy.z.channels(),
                lat.z,
                lat.y
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

    /// The aux layer's latent coder.
    pub fn latent_codec(&self) -> LatentCodec<'_> {
        LatentCodec {
            entropy: &self.entropy,
            hyper: &self.hyper,
            z: self.manifest.aux.latent.z,
            y: self.manifest.aux.latent.y,
        }
    }

    pub fn require<'a>(&self, g: &'a Option<Graph>, key: &str) -> Result<&'a Graph, BundleError> {
        crate::model::bundle::require_graph(&self.dir, self.role, g, key)
    }
}
