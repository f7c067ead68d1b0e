#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting and lints, Rust unit and integration
# tests (against a real Elasticsearch started here), Python tests, end-to-end tests, bounded fuzzing.
#   make test      (same thing)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

step() { printf '\n== %s\n' "$*"; }

step "setup"
tests/setup.sh

step "elasticsearch"
ES_URL=$(tests/elasticsearch/start)
export VIGIL_TEST_ES_URL=$ES_URL
trap 'tests/elasticsearch/stop >/dev/null 2>&1 || true; tests/elasticsearch/stop --secure >/dev/null 2>&1 || true' EXIT
echo "using $ES_URL"
# The TLS tests (sidecar/tests/ops.rs) forward through the secure node, which asks for client
# certificates (and refuses untrusted ones), so Vigil's client certificate is checked.
tests/elasticsearch/start --secure >/dev/null
export VIGIL_TEST_ES_SECURE_ENV=/tmp/vigil-es-${VIGIL_ES_SECURE_PORT:-9201}/env
echo "secure node: $(grep '^ES_URL=' "$VIGIL_TEST_ES_SECURE_ENV")"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "rust tests"
cargo test --workspace --locked 2>&1 | tee /tmp/vigil-cargo-test.log | grep -E '^(test result|running|error|failures:|---- |thread )' || true
if grep -qE '^test result: FAILED|^error(\[|:)' /tmp/vigil-cargo-test.log; then
  sed -n '/^failures:/,/^test result/p' /tmp/vigil-cargo-test.log | head -200
  exit 1
fi
passed=$(grep -oE '[0-9]+ passed' /tmp/vigil-cargo-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' /tmp/vigil-cargo-test.log | awk '{s+=$1} END {print s+0}')

step "python tests"
(cd models && ../.venv/bin/python -m pytest -q)

step "helm chart"
tests/chart.sh

step "end-to-end tests (real clients, faults with counts, bad input; own Elasticsearch nodes)"
# The binary `cargo test` built for the integration tests (Vigil's own crate is optimised in the
# dev profile). A separate `cargo build` would resolve dependency features without the
# dev-dependencies and rebuild much of the graph (over 20 minutes on 2 cores), so it only runs
# when that binary is missing.
[ -x target/debug/vigil ] || cargo build --locked --bin vigil
VIGIL_BIN="$REPO/target/debug/vigil" .venv/bin/python -m pytest tests/e2e

step "fuzzing (bounded)"
tests/fuzz.sh "${VIGIL_FUZZ_SECONDS:-30}"

step "summary"
echo "rust: $passed passed, $failed failed"
