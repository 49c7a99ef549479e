//! `fchm bench`: timings a person can rerun. Never used as assertions.

use std::time::Instant;

use crate::model::runtime::Graph;

/// Median wall time of `runs` runs (after one warm-up) of a graph on a fixed input.
pub fn time_graph(graph: &Graph, runs: usize) -> Result<f64, crate::model::runtime::RuntimeError> {
    let n: usize = graph.input_shape().iter().product();
    // A deterministic, non-constant input so no kernel takes a shortcut.
    let input: Vec<f32> = (0..n).map(|i| ((i * 7919) % 256) as f32).collect();
    graph.run(&input)?;
    let mut ms: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            graph.run(&input).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

pub mod link;
pub mod pipeline;
pub mod rate;
pub mod server;
