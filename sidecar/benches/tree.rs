//! Criterion benchmarks of the tree evaluator and TreeSHAP on the `bench_xgb` bundle
//! (XGBoost binary, 300 trees of depth 6, 32 features). Baselines against onnxruntime and
//! xgboost in the same run: `benches/compare_trees.py`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::Value;
use tract_onnx::prelude::Framework;
use vigil::explain::tree_shap::TreeShap;
use vigil::score::tree::TreeGraph;

fn load() -> (TreeGraph, Vec<f32>, Vec<Vec<f64>>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/bench_xgb");
    let read = |f: &str| -> Value {
        let text = std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()));
        serde_json::from_str(&text).expect("valid JSON")
    };
    let proto = tract_onnx::onnx()
        .proto_model_for_path(dir.join("model.onnx"))
        .expect("model.onnx");
    let graph = TreeGraph::from_onnx(&proto, "probabilities").expect("tree graph");
    let rows = read("golden.json")["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| {
            r["features"]
                .as_array()
                .expect("features")
                .iter()
                .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
        })
        .collect();
    let covers = read("covers.json")["trees"]
        .as_array()
        .expect("trees")
        .iter()
        .map(|t| {
            t.as_array()
                .expect("covers")
                .iter()
                .map(|c| c.as_f64().unwrap_or(0.0))
                .collect()
        })
        .collect();
    (graph, rows, covers)
}

fn bench(c: &mut Criterion) {
    let (graph, rows, covers) = load();
    let f = graph.n_features();
    let k = graph.n_outputs();
    let mut group = c.benchmark_group("tree_predict");
    for batch in [1usize, 128, 1024] {
        let input: Vec<f32> = rows
            .chunks(f)
            .cycle()
            .take(batch)
            .flatten()
            .copied()
            .collect();
        let mut out = vec![0.0f32; batch * k];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &n| {
            b.iter(|| graph.predict(&input, n, &mut out))
        });
    }
    group.finish();

    // Grouped subtree tables (what Vigil runs) against per-leaf tables, same values.
    let n = rows.len() / f;
    let mut group = c.benchmark_group("tree_shap");
    for (name, shap) in [
        (
            "grouped",
            TreeShap::new(graph.ensemble(), &covers).expect("covers"),
        ),
        (
            "per_leaf",
            TreeShap::per_leaf(graph.ensemble(), &covers).expect("covers"),
        ),
    ] {
        let per_row = shap.n_margins() * (shap.n_features() + 1);
        let mut out = vec![0.0f64; 128 * per_row];
        let mut i = 0usize;
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("row", name), |b| {
            b.iter(|| {
                let r = i % n;
                i += 1;
                shap.shap_row(&rows[r * f..(r + 1) * f], &mut out)
            })
        });
        let batch: Vec<f32> = rows
            .chunks(f)
            .cycle()
            .take(128)
            .flatten()
            .copied()
            .collect();
        group.throughput(Throughput::Elements(128));
        group.bench_function(BenchmarkId::new("batch_128", name), |b| {
            b.iter(|| shap.shap_batch(&batch, 128, &mut out))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
