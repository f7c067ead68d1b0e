#!/usr/bin/env bash
# Installs everything the tests, the demo and the benchmarks need on a fresh machine:
# the Python venv (models/requirements.txt), Debian tools used by the end-to-end tests, the
# pinned Elasticsearch (downloaded and cached by tests/elasticsearch/start on first use), and for
# the chart checks kubernetes-validate (pinned, in the venv) and a pinned Helm.
# Idempotent. Run as root on the project's machine image (it apt-installs).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bash "$REPO/models/setup.sh" >/dev/null
echo "setup: python venv ready at $REPO/.venv"

# Debian packages: rsyslog's Elasticsearch output (a real shipper in the tests).
need=()
for pkg in rsyslog rsyslog-elasticsearch; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages ${need[*]} (run as root to install)" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Chart checks (tests/chart.sh): the offline Kubernetes schema validator in the venv, pinned, and
# a Helm v3 built once from the Go module proxy at the version tests/chart.sh pins.
KUBERNETES_VALIDATE_VERSION=1.37.0
if [[ $("$REPO/.venv/bin/python" -c 'import kubernetes_validate.version as v; print(v.__version__)' 2>/dev/null) != "$KUBERNETES_VALIDATE_VERSION" ]]; then
  echo "setup: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into the venv"
  "$REPO/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
bash "$REPO/tests/chart.sh" --install-only
echo "setup: done"
