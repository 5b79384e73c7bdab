#!/usr/bin/env bash
# Load figures of docs/experiments/host_hardening.md ("Scale"): N simulated
# agents (nasflat-loadgen) against one host on SQLite, or against two host
# replicas sharing one PostgreSQL database.
#
#   docs/experiments/host_scale.sh BIN_DIR sqlite AGENTS SECS
#   docs/experiments/host_scale.sh BIN_DIR postgres://USER@HOST:PORT/DB AGENTS SECS
#
# BIN_DIR holds nasflat-host and nasflat-loadgen (e.g. target/debug). The
# hosts pretrain once into $CHECKPOINTS (default /tmp/nasflat-scale-ckpt)
# and the load starts only when they are ready; every device gets $SAMPLES
# (default 300) sample jobs per search space and no transfer
# (--no-auto-transfer), so the load is the agent protocol alone. Extra flags: $HOST_ARGS for the hosts
# (e.g. --sqlite-sync normal), $LOADGEN_ARGS for the load generator.
set -euo pipefail
bin=$1 db=$2 agents=$3 secs=$4
ckpt=${CHECKPOINTS:-/tmp/nasflat-scale-ckpt}
work=$(mktemp -d /tmp/nasflat-scale.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
tokens=(--admin-token admin-token-scale --enrol-token enrol-token-scale --viewer-token viewer-token-scale)
start_host() { # $1: port, $2...: extra serve flags
  local port=$1; shift
  "$bin/nasflat-host" serve --listen "127.0.0.1:$port" --data-dir "$work/host-$port" \
    --checkpoints "$ckpt" "${tokens[@]}" --pretrain-epochs 20 --source-samples 25 \
    --no-auto-transfer --samples "${SAMPLES:-300}" --max-connections 2000 ${HOST_ARGS:-} "$@" \
    >"$work/host-$port.out" 2>"$work/host-$port.log" &
  pids+=($!)
  for _ in $(seq 1200); do
    if curl -sf "http://127.0.0.1:$port/healthz" | grep -q '"state":"ready"'; then return; fi
    sleep 0.5
  done
  echo "host on $port not ready; log:" >&2; tail "$work/host-$port.log" >&2; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
urls=()
if [ "$db" = sqlite ]; then
  p=$(free_port); start_host "$p"; urls+=(--url "http://127.0.0.1:$p")
else
  for _ in 1 2; do p=$(free_port); start_host "$p" --db "$db"; urls+=(--url "http://127.0.0.1:$p"); done
fi
host_pids=()
for p in "${pids[@]}"; do host_pids+=(--host-pid "$p"); done
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/nasflat-loadgen" "${urls[@]}" --agents "$agents" --secs "$secs" \
  --enrol-token enrol-token-scale --viewer-token viewer-token-scale "${host_pids[@]}" ${LOADGEN_ARGS:-}
