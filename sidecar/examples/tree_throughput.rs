//! Throughput of the tree evaluator and TreeSHAP on one bundle, as JSON on stdout.
//!
//! `cargo run --release --example tree_throughput -- [bundle_dir] [seconds_per_case]`
//! (default bundle: `tests/bundles/bench_xgb`). Rows are the bundle's golden feature rows,
//! cycled to fill each batch; every case reports the median of 3 rounds. Single-threaded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tract_onnx::prelude::Framework;
use vigil::explain::tree_shap::TreeShap;
use vigil::score::tree::TreeGraph;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/bench_xgb")
    });
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1.0);
    let budget = Duration::from_secs_f64(seconds);

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
    let output = manifest["model"]["output"]
        .as_str()
        .ok_or("manifest has no model.output")?;
    let proto = tract_onnx::onnx().proto_model_for_path(dir.join("model.onnx"))?;
    let graph = TreeGraph::from_onnx(&proto, output)?;
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json"))?)?;
    let rows: Vec<f32> = golden["rows"]
        .as_array()
        .ok_or("golden.json has no rows")?
        .iter()
        .flat_map(|r| {
            r["features"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
        })
        .collect();
    let f = graph.n_features();
    let n_rows = rows.len() / f;
    let c = graph.n_outputs();

    let mut predict = serde_json::Map::new();
    for batch in [128usize, 1024] {
        let input: Vec<f32> = rows
            .chunks(f)
            .cycle()
            .take(batch)
            .flatten()
            .copied()
            .collect();
        let mut out = vec![0.0f32; batch * c];
        let rate = median_rate(budget, batch, || graph.predict(&input, batch, &mut out));
        predict.insert(batch.to_string(), json!(rate));
    }

    // Single-row latency over the golden rows, cycled.
    let mut out = vec![0.0f32; c];
    let mut lat = Vec::new();
    let start = Instant::now();
    for row in rows.chunks(f).cycle() {
        let t = Instant::now();
        graph.predict(row, 1, &mut out);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if start.elapsed() > budget && lat.len() >= 1000 {
            break;
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];

    let covers_path = dir.join("covers.json");
    let ensemble = graph.ensemble();
    let covers: Vec<Vec<f64>> = if covers_path.is_file() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&covers_path)?)?;
        v["trees"]
            .as_array()
            .ok_or("covers.json has no trees")?
            .iter()
            .map(|t| {
                t.as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x.as_f64().unwrap_or(0.0))
                    .collect()
            })
            .collect()
    } else {
        TreeShap::covers_from_sample(ensemble, &rows, n_rows)
    };
    let t = Instant::now();
    let shap = TreeShap::new(ensemble, &covers)?;
    let shap_build_ms = t.elapsed().as_secs_f64() * 1e3;
    let tree_rows = graph.ensemble_rows(&rows, n_rows);
    let tf = graph.ensemble_features();
    let per_row = shap.n_margins() * (shap.n_features() + 1);
    // Batch 1,024, as XGBoost's `pred_contribs` is measured; and one row at a time.
    const SHAP_BATCH: usize = 1024;
    let shap_input: Vec<f32> = tree_rows
        .chunks(tf)
        .cycle()
        .take(SHAP_BATCH)
        .flatten()
        .copied()
        .collect();
    let mut contrib = vec![0.0f64; SHAP_BATCH * per_row];
    let shap_rate = median_rate(budget, SHAP_BATCH, || {
        shap.shap_batch(&shap_input, SHAP_BATCH, &mut contrib)
    });
    let mut next = 0usize;
    let shap_single_rate = median_rate(budget, 1, || {
        let r = next % n_rows;
        next += 1;
        shap.shap_row(&tree_rows[r * tf..(r + 1) * tf], &mut contrib[..per_row]);
    });

    let report = json!({
        "bundle": dir.file_name().and_then(|s| s.to_str()).unwrap_or(""),
        "rows": n_rows,
        "features": f,
        "trees": ensemble.n_trees(),
        "compiled": ensemble.is_compiled(),
        "predict_rows_per_s": predict,
        "single_row_us": { "p50": pct(0.5), "p99": pct(0.99) },
        "shap_rows_per_s": shap_rate,
        "shap_single_row_per_s": shap_single_rate,
        "shap_build_ms": shap_build_ms,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Rows per second of `run` (which scores `rows` rows), median of 3 rounds of `budget` each.
fn median_rate(budget: Duration, rows: usize, mut run: impl FnMut()) -> f64 {
    run();
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < budget {
                run();
                calls += 1;
            }
            (calls as f64 * rows as f64) / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}
