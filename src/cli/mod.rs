//! The `fchm` command line: thin argument handling over the library.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fchm_codec::container::FrameRef;
use serde_json::json;

mod demo;

use crate::codec::{FeatureDecoder, FeatureEncoder, FrameMeta};
use crate::model::{Bundle, LabelledBox, Role};

#[derive(Debug, Parser)]
#[command(
    name = "fchm",
    version,
    about = "Feature coding for humans and machines: offline tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encode an image into one frame payload.
    Encode(EncodeArgs),
    /// Decode a frame payload: features and detections.
    Decode(DecodeArgs),
    /// Timings: `inference` runs the edge graphs in tract and, for the ratio,
    /// the same graphs in onnxruntime (python3 tests/python/bench_ort.py).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Print a frame's header as JSON.
    Info {
        /// Frame payload file.
        input: PathBuf,
    },
    /// Rate–distortion of the machine layer against JPEG and WebP, with BD-rates.
    Eval(EvalArgs),
    /// The whole system in one process: embedded broker, fchmd on the test
    /// scene, fchm-server; prints the dashboard URL.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// tract vs onnxruntime on the bundle's graphs, one thread each.
    Inference {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Graphs to time (manifest keys).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "front,vfcn_enc,vfcn_hyper_enc,vfcn_dec,task_back"
        )]
        graphs: Vec<String>,
        /// Skip the onnxruntime comparison.
        #[arg(long)]
        no_ort: bool,
    },
    /// Rate control through the link emulator (2 → 0.4 → 4 Mbit/s), `auto`
    /// next to a fixed-rate baseline, against the embedded broker.
    Rate(RateBenchArgs),
    /// fchmd's end-to-end frames per second (capture → encode → publish)
    /// next to bare tract inference of the same graphs, and its peak RSS.
    Pipeline {
        #[arg(long, default_value = "models/centernet-vfcn")]
        bundle: PathBuf,
        /// The daemon binary; default: `fchmd` next to this executable.
        #[arg(long)]
        fchmd: Option<PathBuf>,
        /// Seconds of steady running to average over.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Runs per graph for the bare-inference median.
        #[arg(long, default_value_t = 30)]
        runs: usize,
    },
    /// fchm-server: frames/s decoded per core, and the scaling from one
    /// instance to several on one shared subscription (embedded broker).
    Server {
        #[arg(long, default_value = "models/centernet-vfcn")]
        bundle: PathBuf,
        /// The server binary; default: `fchm-server` next to this executable.
        #[arg(long)]
        server: Option<PathBuf>,
        /// The instances' `--backend` (`ort` needs a `--features ort` build).
        #[arg(long, default_value = "tract")]
        backend: String,
        /// Frames published per run.
        #[arg(long, default_value_t = 24)]
        frames: usize,
        /// Runs with 1, 2, … up to this many instances.
        #[arg(long, default_value_t = 2)]
        instances: usize,
    },
}

#[derive(Debug, Args)]
pub struct RateBenchArgs {
    #[arg(long, default_value = "models/centernet-vfcn")]
    pub bundle: PathBuf,
    /// The daemon binary; default: `fchmd` next to this executable.
    #[arg(long)]
    pub fchmd: Option<PathBuf>,
    /// Seconds per schedule step.
    #[arg(long, default_value_t = 15.0)]
    pub step_secs: f64,
    /// Frames per second the daemon captures.
    #[arg(long, default_value_t = 3.0)]
    pub fps: f64,
    /// The fixed-rate baseline's target (kbit/s).
    #[arg(long, default_value_t = 1500.0)]
    pub baseline_kbps: f64,
    /// Also write the reports as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep each run's daemon log, at debug level (a line per coded and per
    /// acked frame), in this folder as fchmd-auto.log and fchmd-fixed.log.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[arg(long)]
    pub bundle: PathBuf,
    /// IVN gain (the rate knob).
    #[arg(long, conflicts_with = "bpp", required_unless_present = "bpp")]
    pub gain: Option<f32>,
    /// Target bits per pixel; the gain comes from the bundle's rate table.
    #[arg(long)]
    pub bpp: Option<f64>,
    /// Frame sequence number to put in the header.
    #[arg(long, default_value_t = 0)]
    pub sequence: u64,
    /// Input image (JPEG or PNG).
    pub input: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the coded latent symbols as JSON (determinism checks).
    #[arg(long)]
    pub symbols: Option<PathBuf>,
    /// Also code the aux (human) layer with this human-layer bundle.
    #[arg(long, requires_all = ["aux_gain", "aux_output"])]
    pub human_bundle: Option<PathBuf>,
    /// Aux-layer gain (with --human-bundle).
    #[arg(long)]
    pub aux_gain: Option<f32>,
    /// Aux frame payload file (with --human-bundle).
    #[arg(long)]
    pub aux_output: Option<PathBuf>,
    /// Also write the aux layer's coded symbols as JSON.
    #[arg(long)]
    pub aux_symbols: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    pub input: PathBuf,
    #[arg(long)]
    pub bundle: PathBuf,
    /// Write the decoded features P̂ as .npy.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Write detections as JSON (default: print them).
    #[arg(long)]
    pub detections: Option<PathBuf>,
    /// Also write the decoded latent symbols as JSON.
    #[arg(long)]
    pub symbols: Option<PathBuf>,
}

/// `fchm eval --bundle DIR --images DIR --out DIR [--json SUMMARY.json]`.
///
/// Fidelity mAP@0.5 (against the uncompressed detector) vs bits per pixel of
/// the 512x512 detector input, for the machine layer over a gain sweep and for
/// JPEG and WebP over a quality sweep; writes OUT/rd.csv, OUT/rd.png and the
/// summary JSON, prints the table and the BD-rates. Protocol: `fchm::eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub bundle: PathBuf,
    /// Folder of .jpg/.jpeg/.png images (all of them, in name order).
    #[arg(long)]
    pub images: PathBuf,
    /// Output folder for rd.csv and rd.png (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Summary JSON [default: OUT/summary.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Number of machine-layer gains, log-spaced over the bundle's gain range.
    #[arg(long, default_value_t = crate::eval::DEFAULT_GAINS, conflicts_with = "gain_values")]
    pub gains: usize,
    /// Explicit machine-layer gains, comma-separated (instead of --gains).
    #[arg(long, value_delimiter = ',')]
    pub gain_values: Option<Vec<f32>>,
    /// JPEG and WebP qualities (1-100), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = crate::eval::DEFAULT_QUALITIES)]
    pub qualities: Vec<u8>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Evaluate the human layer instead: PSNR and MS-SSIM of the fast and
    /// diffusion views against total bits (machine + aux), next to JPEG and
    /// WebP; writes OUT/human.csv, human.png, grid.png, human-summary.json.
    /// Machine gains: --gain-values, default 2,4,8,16.
    #[arg(long, requires = "human_bundle")]
    pub human: bool,
    /// The human-layer bundle (with --human).
    #[arg(long)]
    pub human_bundle: Option<PathBuf>,
    /// Aux-layer gains, comma-separated [default: 5 log-spaced over the bundle's range].
    #[arg(long, value_delimiter = ',')]
    pub aux_gains: Option<Vec<f32>>,
    /// Images (the first ones) the diffusion path runs on; 0 skips it.
    #[arg(long, default_value_t = 8)]
    pub diffusion_images: usize,
    /// Diffusion sampling steps [default: the bundle's].
    #[arg(long)]
    pub diffusion_steps: Option<usize>,
    /// Rows of OUT/grid.png (original, JPEG at the same rate, fast, diffusion).
    #[arg(long, default_value_t = 4)]
    pub grid: usize,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Encode(a) => encode(a),
        Command::Decode(a) => decode(a),
        Command::Info { input } => info(&input),
        Command::Bench {
            what:
                BenchCommand::Inference {
                    bundle,
                    runs,
                    graphs,
                    no_ort,
                },
        } => bench_inference(&bundle, runs, &graphs, no_ort),
        Command::Bench {
            what: BenchCommand::Rate(a),
        } => bench_rate(a),
        Command::Bench {
            what:
                BenchCommand::Pipeline {
                    bundle,
                    fchmd,
                    seconds,
                    runs,
                },
        } => bench_pipeline(&bundle, fchmd, seconds, runs),
        Command::Bench {
            what:
                BenchCommand::Server {
                    bundle,
                    server,
                    backend,
                    frames,
                    instances,
                },
        } => bench_server(&bundle, server, backend, frames, instances),
        Command::Eval(a) => eval(a),
        Command::Demo(a) => demo::run(a),
    }
}

fn eval_human(a: EvalArgs) -> Result<()> {
    let human_bundle = a.human_bundle.context("--human needs --human-bundle")?;
    let aux_gains = match a.aux_gains {
        Some(g) => g,
        None => {
            let m = crate::human::HumanManifest::load(&human_bundle)
                .with_context(|| format!("--human-bundle {}", human_bundle.display()))?;
            crate::eval::log_spaced_gains(m.aux.gain_min, m.aux.gain_max, 5)
        }
    };
    let cfg = crate::eval::human::HumanEvalConfig {
        bundle: a.bundle,
        human_bundle,
        images: a.images,
        out: a.out,
        machine_gains: a.gain_values.unwrap_or_else(|| vec![2.0, 4.0, 8.0, 16.0]),
        aux_gains,
        qualities: a.qualities,
        diffusion_images: a.diffusion_images,
        diffusion_machine_gain: None,
        diffusion_steps: a.diffusion_steps,
        grid_images: a.grid,
        progress: !a.quiet,
    };
    let s = crate::eval::human::run(&cfg)?;
    print!("{}", s.report());
    let mut written = vec![&s.csv, &s.plot, &s.json];
    written.extend(&s.grid);
    report_outputs(&s.plot, s.plot_text_missing.as_deref(), &written);
    Ok(())
}

/// What an evaluation wrote, on stderr (stdout carries its report).
fn report_outputs(plot: &Path, plot_text_missing: Option<&str>, written: &[&PathBuf]) {
    if let Some(why) = plot_text_missing {
        eprintln!("warning: {} drawn without text: {why}", plot.display());
    }
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    eprintln!("wrote {}", names.join(", "));
}

fn eval(a: EvalArgs) -> Result<()> {
    if a.human {
        return eval_human(a);
    }
    let cfg = crate::eval::EvalConfig {
        bundle: a.bundle,
        images: a.images,
        out: a.out,
        json: a.json,
        gains: a.gain_values,
        num_gains: a.gains,
        qualities: a.qualities,
        progress: !a.quiet,
    };
    let s = crate::eval::run(&cfg)?;
    print!("{}", s.report());
    report_outputs(
        &s.plot,
        s.plot_text_missing.as_deref(),
        &[&s.csv, &s.plot, &s.json],
    );
    Ok(())
}

fn load_bundle(dir: &Path, role: Role) -> Result<Bundle> {
    Bundle::load(dir, role).with_context(|| format!("loading bundle {}", dir.display()))
}

fn encode(a: EncodeArgs) -> Result<()> {
    let bundle = load_bundle(&a.bundle, Role::Edge)?;
    let gain = match (a.gain, a.bpp) {
        (Some(g), _) => g,
        (None, Some(bpp)) => bundle
            .manifest
            .ivn
            .gain_for_bpp(bpp)
            .context("the bundle's rate table is empty: pass --gain")?,
        (None, None) => bail!("pass --gain or --bpp"),
    };
    let img = image::open(&a.input)
        .with_context(|| format!("reading image {}", a.input.display()))?
        .to_rgb8();
    let enc = FeatureEncoder::new(&bundle)?;
    let feats = enc.features(&img)?;
    let meta = FrameMeta {
        sequence: a.sequence,
        timestamp_us: crate::clock::unix_us(),
    };
    let frame = enc.encode(&feats, gain, meta)?;
    write_frame(&frame, &a.output, a.symbols.as_deref())?;
    if let (Some(dir), Some(aux_gain), Some(out)) = (&a.human_bundle, a.aux_gain, &a.aux_output) {
        let human = crate::human::HumanBundle::load(dir, Role::Edge)
            .with_context(|| format!("loading human-layer bundle {}", dir.display()))?;
        if human.manifest.machine_id() != bundle.manifest.id() {
            bail!(
                "human-layer bundle {} pairs with machine bundle {}, not {}",
                dir.display(),
                human.manifest.machine_bundle_id,
                bundle.manifest.bundle_id
            );
        }
        let aux_enc = crate::human::AuxEncoder::new(&human)?;
        let ya = aux_enc.analyse(&img, &feats)?;
        let aux = aux_enc.encode(&ya, &feats, aux_gain, meta)?;
        write_frame(&aux, out, a.aux_symbols.as_deref())?;
        eprintln!(
            "{}: aux gain {aux_gain:.3}, {} bytes",
            out.display(),
            aux.bytes.len()
        );
    }
    let pixels = (bundle.manifest.input.width * bundle.manifest.input.height) as f64;
    eprintln!(
        "{}: gain {gain:.3}, {} bytes, {:.4} bpp",
        a.output.display(),
        frame.bytes.len(),
        frame.bytes.len() as f64 * 8.0 / pixels
    );
    Ok(())
}

/// A payload and, optionally, its symbols as JSON `{"z": [..], "y": [..]}`.
fn write_frame(
    frame: &crate::codec::EncodedFrame,
    out: &Path,
    symbols: Option<&Path>,
) -> Result<()> {
    fs::write(out, &frame.bytes).with_context(|| format!("writing {}", out.display()))?;
    if let Some(p) = symbols {
        let j = json!({"z": frame.z_symbols, "y": frame.y_symbols});
        fs::write(p, j.to_string()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn decode(a: DecodeArgs) -> Result<()> {
    let bundle = load_bundle(&a.bundle, Role::Server)?;
    let payload = fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let dec = FeatureDecoder::new(&bundle)?;
    let out = dec
        .decode(&payload)
        .with_context(|| format!("decoding {}", a.input.display()))?;
    if let Some(p) = &a.features {
        let f = fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
        crate::npy::write_f32(
            std::io::BufWriter::new(f),
            &bundle.manifest.feature.shape,
            &out.features,
        )?;
    }
    if let Some(p) = &a.symbols {
        let j = json!({"z": out.z_symbols, "y": out.y_symbols});
        fs::write(p, j.to_string()).with_context(|| format!("writing {}", p.display()))?;
    }
    let dets: Vec<LabelledBox> = out.detections.iter().map(LabelledBox::from).collect();
    let doc = json!({"sequence": out.header.sequence, "timestamp_us": out.header.timestamp_us, "detections": dets});
    match &a.detections {
        Some(p) => fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", p.display()))?,
        None => println!("{}", serde_json::to_string_pretty(&doc)?),
    }
    Ok(())
}

fn info(input: &Path) -> Result<()> {
    let payload = fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let f = FrameRef::parse(&payload).with_context(|| format!("parsing {}", input.display()))?;
    let h = &f.header;
    let subs: Vec<_> = f
        .substreams
        .iter()
        .map(|s| json!({"kind": format!("{:?}", s.kind), "shape": s.shape.to_array(), "bytes": s.data.len()}))
        .collect();
    let doc = json!({
        "layer": format!("{:?}", h.layer),
        "bundle_id": h.bundle_id.to_string(),
        "sequence": h.sequence,
        "timestamp_us": h.timestamp_us,
        "gain": h.gain,
        "feature_min": h.feature_min,
        "feature_max": h.feature_max,
        "source_width": h.source_width,
        "source_height": h.source_height,
        "bytes": payload.len(),
        "substreams": subs,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

fn bench_inference(dir: &Path, runs: usize, keys: &[String], no_ort: bool) -> Result<()> {
    let bundle = load_bundle(dir, Role::All)?;
    let g = &bundle.graphs;
    let mut tract = Vec::new();
    for key in keys {
        let graph = match key.as_str() {
            "front" => &g.front,
            "vfcn_enc" => &g.vfcn_enc,
            "vfcn_hyper_enc" => &g.vfcn_hyper_enc,
            "vfcn_dec" => &g.vfcn_dec,
            "task_back" => &g.task_back,
            "detector_full" => &g.detector_full,
            other => bail!("unknown graph {other:?}"),
        };
        let graph = bundle.require(graph, key)?;
        tract.push((key.clone(), crate::bench::time_graph(graph, runs)?));
    }
    let ort: serde_json::Value = if no_ort {
        json!({})
    } else {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/bench_ort.py");
        let out = std::process::Command::new(
            std::env::var("FCHM_PYTHON").unwrap_or_else(|_| "python3".into()),
        )
        .arg(&script)
        .arg(dir)
        .args(keys)
        .args(["--runs", &runs.to_string()])
        .output()
        .context("running python3 tests/python/bench_ort.py (pip install onnxruntime)")?;
        if !out.status.success() {
            bail!(
                "bench_ort.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("bench_ort.py output")?
    };
    println!("| graph | tract ms | onnxruntime ms | tract / onnxruntime |");
    println!("|---|---:|---:|---:|");
    for (key, t) in tract {
        match ort[&key].as_f64() {
            Some(o) => println!("| {key} | {t:.2} | {o:.2} | {:.2} |", t / o),
            None => println!("| {key} | {t:.2} | – | – |"),
        }
    }
    println!("(medians of {runs} runs, 1 thread each, one process after the other)");
    Ok(())
}

/// `--fchmd`, or the `fchmd` installed next to this executable.
/// `given`, or the binary `name` next to this executable.
fn sibling_exe(given: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    Ok(match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("executable has no folder")?
            .join(name),
    })
}

fn bench_server(
    bundle: &Path,
    server: Option<PathBuf>,
    backend: String,
    frames: usize,
    instances: usize,
) -> Result<()> {
    let setup = crate::bench::server::Setup {
        exe: sibling_exe(server, "fchm-server")?,
        bundle: bundle.to_owned(),
        backend,
    };
    let runs = crate::bench::server::run(&setup, frames, instances)?;
    println!("| backend | instances (1 decode thread each) | frames | seconds | frames/s | frames/s per core | frames per instance |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &runs {
        println!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {:?} |",
            setup.backend, r.instances, r.frames, r.seconds, r.fps, r.fps_per_core, r.split
        );
    }
    if let (Some(one), Some(last)) = (runs.first(), runs.last()) {
        if last.instances > 1 {
            println!(
                "scaling 1 → {} instances: {:.2}× the frames/s",
                last.instances,
                last.fps / one.fps
            );
        }
    }
    Ok(())
}

fn bench_pipeline(bundle: &Path, fchmd: Option<PathBuf>, seconds: f64, runs: usize) -> Result<()> {
    let fchmd = sibling_exe(fchmd, "fchmd")?;
    let work = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let bundle =
        std::fs::canonicalize(bundle).with_context(|| format!("bundle {}", bundle.display()))?;
    let r = rt.block_on(crate::bench::pipeline::run(
        &fchmd,
        &bundle,
        work.path(),
        seconds,
        runs,
    ))?;
    println!("| | frames/s | ms/frame |");
    println!("|---|---|---|");
    println!(
        "| bare tract inference (front + vfcn_enc + vfcn_hyper_enc), the faster timing | {:.2} | {:.0} |",
        r.bare_fps, r.bare_ms
    );
    for d in &r.runs {
        println!(
            "| fchmd end to end (capture → encode → publish), encoded, lean_memory = {} | {:.2} | {:.0} |",
            d.lean_memory,
            d.encoded_fps,
            1000.0 / d.encoded_fps
        );
    }
    println!(
        "bare inference timed before the daemon runs {:.0} ms/frame, after {:.0}; ratios use the faster",
        r.bare_ms_before, r.bare_ms_after
    );
    for d in &r.runs {
        println!(
            "lean_memory = {}: ratio end-to-end / bare {:.2}; acknowledged {:.2} frames/s; fchmd peak RSS (VmHWM) {:.0} MB",
            d.lean_memory,
            d.encoded_fps / r.bare_fps,
            d.sent_fps,
            d.peak_rss_mb
        );
    }
    Ok(())
}

fn bench_rate(a: RateBenchArgs) -> Result<()> {
    use crate::bench::rate::{self, DaemonSetup, RateSetting, Scenario};
    let fchmd = sibling_exe(a.fchmd, "fchmd")?;
    let work = tempfile::tempdir()?;
    if let Some(dir) = &a.trace {
        std::fs::create_dir_all(dir).with_context(|| format!("--trace {}", dir.display()))?;
    }
    let rt = tokio::runtime::Runtime::new()?;
    let broker = crate::transport::broker::start("127.0.0.1:0".parse()?, 16 << 20)?;
    let mut reports = Vec::new();
    for (name, setting) in [
        ("auto", RateSetting::Auto),
        ("fixed", RateSetting::FixedKbps(a.baseline_kbps)),
    ] {
        let mut sc = Scenario::standard(a.step_secs, setting);
        sc.fps = a.fps;
        let setup = DaemonSetup {
            fchmd: fchmd.clone(),
            bundle: std::fs::canonicalize(&a.bundle)
                .with_context(|| format!("bundle {}", a.bundle.display()))?,
            workdir: work.path().join(name),
            device: format!("bench-{name}"),
            log_level: if a.trace.is_some() { "debug" } else { "info" },
        };
        eprintln!(
            "running {name} ({} s)...",
            a.step_secs * sc.steps.len() as f64
        );
        let r = rt.block_on(rate::run(&setup, &sc, broker.addr))?;
        if let Some(dir) = &a.trace {
            let to = dir.join(format!("fchmd-{name}.log"));
            std::fs::copy(setup.workdir.join("fchmd.log"), &to)
                .with_context(|| format!("keeping the daemon log as {}", to.display()))?;
        }
        reports.push((name, r));
    }
    println!("| mode | capacity kbit/s | settle s | encoded kbit/s | delivered kbit/s | utilisation | p95 capture→PUBACK ms | last 5 s: encoded kbit/s | last 5 s: utilisation |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, r) in &reports {
        for s in &r.steps {
            println!(
                "| {name} | {:.0} | {} | {:.0} | {:.0} | {:.0} % | {} | {:.0} | {:.0} % |",
                s.capacity_kbps,
                s.settle_s.map_or("never".into(), |t| format!("{t:.1}")),
                s.encoded_kbps,
                s.delivered_kbps,
                s.utilisation * 100.0,
                s.latency_p95_ms.map_or("-".into(), |v| format!("{v:.0}")),
                s.tail_encoded_kbps,
                s.tail_utilisation * 100.0,
            );
        }
    }
    for (name, r) in &reports {
        println!(
            "{name}: frames received by an independent subscriber: {}; final accounting: {}",
            r.frames_received,
            r.final_accounting
                .as_ref()
                .map_or("missing".into(), |v| v.to_string())
        );
    }
    if let Some(path) = a.json {
        let v: serde_json::Value = reports
            .iter()
            .map(|(n, r)| (n.to_string(), serde_json::to_value(r).unwrap_or_default()))
            .collect::<serde_json::Map<_, _>>()
            .into();
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
    }
    Ok(())
}
