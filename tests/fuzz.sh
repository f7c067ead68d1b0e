#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 30 s each). Needs the nightly toolchain
# (shipped on the project's machine image) and cargo-fuzz (installed here from crates.io).
#   tests/fuzz.sh [SECONDS]
set -euo pipefail
SECONDS_EACH=${1:-30}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO/sidecar"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.1
fi
log=$(mktemp /tmp/vigil-fuzz.XXXXXX.log)
for target in feature_extraction bulk_parse; do
  echo "fuzz: $target for ${SECONDS_EACH}s"
  # Unoptimised and without a sanitizer: the fuzzed code has no `unsafe`, so AddressSanitizer adds
  # nothing but build time (the whole dependency graph, tract included, is rebuilt for fuzzing);
  # panics, overflows and debug assertions are what a bounded CI run looks for.
  if ! cargo +nightly fuzz run --dev --sanitizer none "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target failed (crash reproducer, if any, under sidecar/fuzz/artifacts/$target)" >&2
    exit 1
  fi
  grep -E '^(Done|#[0-9]+ +DONE)' "$log" | tail -n 1 || tail -n 2 "$log"
done
echo "fuzz: no crash in $(( SECONDS_EACH * 2 ))s of fuzzing"
