#!/usr/bin/env bash
# Checks the Helm chart in charts/vigil, offline:
#   - a real Helm v3 (built once from the Go module proxy at a pinned version, cached under
#     ${VIGIL_CACHE:-$HOME/.cache/vigil}/bin) lints the chart with --strict, for every mode;
#   - `helm template` renders the default values and each documented mode (charts/vigil/ci/*.yaml);
#     every rendered object is validated strictly (unknown fields fail) with kubernetes-validate
#     against Kubernetes 1.25 (the chart's floor) and 1.37; kinds Kubernetes does not ship
#     (ServiceMonitor, PrometheusRule, ECK's Elasticsearch) are validated against the small schemas
#     committed in charts/schemas/, any other unknown kind FAILS;
#   - the pods keep the restrictive security context and read-only mounts;
#   - the rendered vigil.toml passes `vigil check-config` (secret files it references are
#     replaced by dummy files in a temporary folder);
#   - the same for the ECK sidecar example (charts/vigil/examples/eck-sidecar.yaml);
#   - each values file in charts/vigil/ci-invalid/ makes `helm template` fail through the schema,
#     with the message its `# expect:` line names.
# Needs tests/setup.sh (kubernetes-validate in .venv) and Go.
# Usage: tests/chart.sh                 run the checks
#        tests/chart.sh --install-only  only build the pinned helm (tests/setup.sh calls this)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

HELM_VERSION=v3.21.4
# Helm's release build stamps its version and the Kubernetes version of its client-go (go.mod of
# helm v3.21.4: k8s.io/client-go v0.36.x) with -ldflags; `go install` alone would leave it
# reporting v3.21 and rendering for Kubernetes 1.20.
HELM_K8S_MINOR=36
CACHE=${VIGIL_CACHE:-$HOME/.cache/vigil}
HELM_DIR=$CACHE/bin/helm-$HELM_VERSION
HELM=$HELM_DIR/helm
CHART=$REPO/charts/vigil
PY=$REPO/.venv/bin/python
VIGIL=$REPO/target/debug/vigil

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL  $*"; }

if [[ ! -x $HELM ]]; then
  echo "chart: building helm $HELM_VERSION from the Go module proxy into $HELM_DIR (once)"
  mkdir -p "$HELM_DIR"
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  GOBIN=$HELM_DIR GOFLAGS=-mod=mod go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
echo "chart: $("$HELM" version --short) ($HELM)"
[[ ${1:-} == --install-only ]] && exit 0
if ! "$PY" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "chart: kubernetes-validate is missing from .venv: run tests/setup.sh" >&2
  exit 1
fi
if [[ ! -x $VIGIL ]]; then
  echo "chart: building target/debug/vigil"
  cargo build --quiet --bin vigil
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export HELM_CACHE_HOME=$TMP/helm-cache HELM_CONFIG_HOME=$TMP/helm-config HELM_DATA_HOME=$TMP/helm-data

# Validator: strict kubernetes-validate for Kubernetes kinds, committed schemas for the CRDs this
# chart uses, failure for anything else. Also writes each ConfigMap's vigil.toml for check-config.
cat >"$TMP/validate.py" <<'PY'
import json, os, sys
import jsonschema, yaml
import kubernetes_validate.utils as kv

rendered, toml_out, schemas_dir = sys.argv[1], sys.argv[2], sys.argv[3]
VERSIONS = ["1.25.0", "1.37.0"]
CRDS = {  # (apiVersion, kind) -> committed schema
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("elasticsearch.k8s.elastic.co/v1", "Elasticsearch"): "elasticsearch-elasticsearch-v1.json",
}
errors = []

def k8s(obj, what):
    for v in VERSIONS:
        try:
            kv.validate(obj, v, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{what}: Kubernetes {v}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{what}: unknown kind: {e.message}")

def pod_policy(spec, what):
    """The chart's promises: non-root, read-only root, no escalation, no capabilities, seccomp."""
    psc = spec.get("securityContext", {})
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c["name"] == "elasticsearch":
            continue  # ECK's own container in the sidecar example
        sc = c.get("securityContext", {})
        want = {
            "runAsNonRoot": sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities drop ALL": sc.get("capabilities", {}).get("drop") == ["ALL"],
            "seccompProfile RuntimeDefault": (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            "resources": bool(c.get("resources")),
        }
        for name, good in want.items():
            if not good:
                errors.append(f"{what}: container {c['name']}: missing {name}")
        for m in c.get("volumeMounts", []):
            writable_ok = m["mountPath"] == "/tmp" or c["name"] == "models"  # the copying initContainer
            if not m.get("readOnly") and not writable_ok:
                errors.append(f"{what}: container {c['name']}: mount {m['mountPath']} is not readOnly")

docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
kinds = []
for d in docs:
    what = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
    kinds.append(d.get("kind"))
    key = (d.get("apiVersion"), d.get("kind"))
    if key in CRDS:
        schema = json.load(open(os.path.join(schemas_dir, CRDS[key])))
        for e in jsonschema.Draft7Validator(schema).iter_errors(d):
            errors.append(f"{what}: {'.'.join(map(str, e.path))}: {e.message}")
        print(f"      {what}: not a Kubernetes kind, validated against charts/schemas/{CRDS[key]}")
        if d["kind"] == "Elasticsearch":
            for ns in d["spec"].get("nodeSets", []):
                pt = ns.get("podTemplate", {})
                k8s({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": ns["name"]},
                     "template": pt}, f"{what} nodeSet {ns['name']} podTemplate")
                pod_policy(pt.get("spec", {}), f"{what} nodeSet {ns['name']}")
    else:
        k8s(d, what)
    if d.get("kind") == "Deployment":
        pod_policy(d["spec"]["template"]["spec"], what)
    if d.get("kind") == "Job":
        pod_policy(d["spec"]["template"]["spec"], what)
    if d.get("kind") == "ConfigMap" and "vigil.toml" in d.get("data", {}):
        open(toml_out, "w").write(d["data"]["vigil.toml"])

for e in errors:
    print("      " + e)
print(f"      {len(docs)} objects: {', '.join(sorted(set(kinds)))}")
sys.exit(1 if errors or not docs else 0)
PY

# check-config on a rendered vigil.toml: the pod's secret paths point at dummy files here.
cat >"$TMP/dummy_secrets.py" <<'PY'
import os, subprocess, sys, tomllib
src, dst, root = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(src).read()
for prefix in ("/var/run/vigil/secrets/",):
    text = text.replace(prefix, root + "/")
cfg = tomllib.loads(text)
dummy = {"tokens_file": "dummy-token-0123456789abcdef\n", "password_file": "dummy-password\n",
         "api_key_file": "ZHVtbXk6a2V5\n", "ca_file": "-----BEGIN CERTIFICATE-----\n"}
# Certificates and keys are checked for real (validity, key fits): one openssl pair per pair.
pairs = {"server": ("tls_cert", "tls_key"), "elasticsearch": ("client_cert", "client_key")}
for section in ("auth", "elasticsearch", "server"):
    for key, value in cfg.get(section, {}).items():
        if key in dummy or key in pairs.get(section, ()):
            if not value.startswith(root + "/"):
                sys.exit(f"{section}.{key} [{value}] is outside the mounted secrets")
            os.makedirs(os.path.dirname(value), exist_ok=True)
            if key in dummy:
                open(value, "w").write(dummy[key])
    cert, key = pairs.get(section, (None, None))
    if cert in cfg.get(section, {}):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=vigil-chart-check",
                        "-keyout", cfg[section][key], "-out", cfg[section][cert]],
                       check=True, capture_output=True)
open(dst, "w").write(text)
PY

check_config() { # rendered toml, label
  local src=$1 label=$2 root="$TMP/secrets-$RANDOM"
  if ! "$PY" "$TMP/dummy_secrets.py" "$src" "$TMP/check.toml" "$root" >"$TMP/out" 2>&1; then
    bad "$label: secret paths: $(cat "$TMP/out")"
    return
  fi
  if env -u VIGIL_ES_URL "$VIGIL" check-config "$TMP/check.toml" >"$TMP/out" 2>&1; then
    ok "$label: vigil check-config"
  else
    bad "$label: vigil check-config"
    sed 's/^/      /' "$TMP/out"
  fi
}

# NOTES.txt is not rendered by `helm template`: a copy of the chart renders it into a manifest.
cp -r "$CHART" "$TMP/notes-chart"
printf 'notes: |\n  {{- include "vigil/templates/NOTES.txt" . | nindent 2 }}\n' >"$TMP/notes-chart/templates/zz-notes.yaml"

echo
echo "== lint and render each mode"
modes=(default)
for f in "$CHART"/ci/*.yaml; do modes+=("$(basename "$f" .yaml)"); done
for mode in "${modes[@]}"; do
  args=()
  [[ $mode == default ]] || args=(-f "$CHART/ci/$mode.yaml")
  if "$HELM" lint --strict "$CHART" "${args[@]}" >"$TMP/out" 2>&1; then
    ok "$mode: helm lint --strict"
  else
    bad "$mode: helm lint --strict"
    sed 's/^/      /' "$TMP/out"
  fi
  out=$TMP/$mode.yaml
  rm -f "$TMP/vigil.toml"
  if ! "$HELM" template vigil "$CHART" --namespace vigil "${args[@]}" >"$out" 2>"$TMP/out"; then
    bad "$mode: helm template"
    sed 's/^/      /' "$TMP/out"
    continue
  fi
  if "$PY" "$TMP/validate.py" "$out" "$TMP/vigil.toml" "$REPO/charts/schemas" >"$TMP/out" 2>&1; then
    ok "$mode: rendered objects validate (strict)"
    grep -v '^ok' "$TMP/out" || true
  else
    bad "$mode: rendered objects validate (strict)"
    cat "$TMP/out"
  fi
  if [[ -f $TMP/vigil.toml ]]; then
    check_config "$TMP/vigil.toml" "$mode"
  else
    bad "$mode: no ConfigMap with vigil.toml rendered"
  fi
  if "$HELM" template vigil "$TMP/notes-chart" --namespace vigil "${args[@]/#$CHART/$TMP/notes-chart}" \
    --show-only templates/zz-notes.yaml 2>&1 | grep -q "Point shippers at it"; then
    ok "$mode: NOTES.txt renders"
  else
    bad "$mode: NOTES.txt does not render"
  fi
done

echo
echo "== ECK sidecar example"
rm -f "$TMP/vigil.toml"
if "$PY" "$TMP/validate.py" "$CHART/examples/eck-sidecar.yaml" "$TMP/vigil.toml" "$REPO/charts/schemas" >"$TMP/out" 2>&1; then
  ok "eck-sidecar: objects validate (strict, podTemplate as a Kubernetes PodTemplate)"
  cat "$TMP/out"
else
  bad "eck-sidecar: objects validate"
  cat "$TMP/out"
fi
if [[ -f $TMP/vigil.toml ]]; then
  check_config "$TMP/vigil.toml" "eck-sidecar"
  grep -q '^listen = "127.0.0.1:' "$TMP/vigil.toml" && ok "eck-sidecar: listens on loopback only" || bad "eck-sidecar: not loopback"
else
  bad "eck-sidecar: no ConfigMap with vigil.toml"
fi

echo
echo "== invalid values fail through the schema"
for f in "$CHART"/ci-invalid/*.yaml; do
  name=$(basename "$f" .yaml)
  expect=$(sed -n 's/^# expect: //p' "$f" | head -1)
  if [[ -z $expect ]]; then
    bad "$name: no '# expect:' line"
    continue
  fi
  if "$HELM" template vigil "$CHART" -f "$f" >/dev/null 2>"$TMP/out"; then
    bad "$name: helm template accepted invalid values"
  elif grep -q "values don't meet the specifications of the schema" "$TMP/out" && grep -qF -- "$expect" "$TMP/out"; then
    ok "$name: rejected: $(grep -F -- "$expect" "$TMP/out" | head -1 | sed 's/^[- ]*//')"
  else
    bad "$name: failed without the expected schema message [$expect]"
    sed 's/^/      /' "$TMP/out"
  fi
done

echo
echo "chart: $passed passed, $failed failed"
((failed == 0))
