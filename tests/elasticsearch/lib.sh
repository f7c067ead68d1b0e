# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared helpers for tests/elasticsearch/{start,stop,smoke,probe-features}.
# Sourced, not executed. Callers run with `set -euo pipefail`.

# Pinned distribution. The integ-test-zip is the only Elasticsearch archive
# published to Maven Central for 8.x (see tests/README.md).
VIGIL_ES_DEFAULT_VERSION=8.19.21
# sha512 of org.elasticsearch.distribution.integ-test-zip:elasticsearch:8.19.21:zip
# (as published beside it on Maven Central: elasticsearch-8.19.21.zip.sha512).
VIGIL_ES_DEFAULT_SHA512=cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd
VIGIL_ES_GROUP=org.elasticsearch.distribution.integ-test-zip
VIGIL_ES_USER_DEFAULT=vigil-es
VIGIL_ES_DEFAULT_PASSWORD=vigil-test-password

es_log() { printf '[vigil-es] %s\n' "$*" >&2; }
es_die() { printf '[vigil-es] ERROR: %s\n' "$*" >&2; exit 1; }

# Parse the common options. Sets MODE (plain|secure), PORT, TPORT, RUN_DIR, CLEAN.
es_parse_args() {
  MODE=plain
  CLEAN=0
  local port_arg=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --secure) MODE=secure ;;
      --clean) CLEAN=1 ;;
      --port) [[ $# -ge 2 ]] || es_die "--port needs a value"; port_arg=$2; shift ;;
      --port=*) port_arg=${1#--port=} ;;
      -h|--help) es_usage; exit 0 ;;
      *) es_die "unknown argument: $1 (try --help)" ;;
    esac
    shift
  done
  if [[ -n $port_arg ]]; then
    PORT=$port_arg
  elif [[ $MODE == secure ]]; then
    PORT=${VIGIL_ES_SECURE_PORT:-9201}
  else
    PORT=${VIGIL_ES_PORT:-9200}
  fi
  [[ $PORT =~ ^[0-9]+$ ]] || es_die "port must be a number, got '$PORT'"
  TPORT=${VIGIL_ES_TRANSPORT_PORT:-$((PORT + 100))}
  [[ $TPORT =~ ^[0-9]+$ ]] || es_die "transport port must be a number, got '$TPORT'"
  RUN_DIR=${VIGIL_ES_RUN_DIR:-/tmp/vigil-es-$PORT}
  PID_FILE=$RUN_DIR/es.pid
  ENV_FILE=$RUN_DIR/env
}

# True if the pid in $PID_FILE is alive and is a java process.
es_pid_alive() {
  [[ -s $PID_FILE ]] || return 1
  local pid
  pid=$(<"$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must be ours (java with our run dir).
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUN_DIR" || return 1
}

# curl against the node described by $ENV_FILE (sourced into the caller).
es_curl() {
  local args=(-sS --max-time 30)
  if [[ -n ${ES_CA:-} ]]; then args+=(--cacert "$ES_CA"); fi
  if [[ -n ${ES_USER:-} ]]; then args+=(-u "$ES_USER:$ES_PASSWORD"); fi
  curl "${args[@]}" "$@"
}

# Print the leading comment block of script $1 (its usage text).
es_print_header() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"; }
