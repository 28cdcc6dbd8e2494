#!/usr/bin/env bash
# Swarm benchmark: greedy generation through N `petals serve` processes on 127.0.0.1 vs all blocks in one process,
# on a random fp32 model (default hidden 2048, 12 blocks). Prints decode steps/s of both, their ratio, bytes per step
# message on the wire, each server's start-to-ready time and peak memory.
#   bash bench/swarm.sh [--hidden 2048] [--layers 12] [--servers 3] [--new-tokens 32] [--rounds 2] [--model-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
hidden=2048; layers=12; servers=3; new_tokens=32; rounds=2; model_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --hidden) hidden=$2; shift 2;; --layers) layers=$2; shift 2;; --servers) servers=$2; shift 2;;
    --new-tokens) new_tokens=$2; shift 2;; --rounds) rounds=$2; shift 2;; --model-dir) model_dir=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
model_dir=${model_dir:-/tmp/petals-swarm-model-h${hidden}-l${layers}}
dotnet build src/Petals.Cli -c Release -v q -nologo >/dev/null
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
bench=bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll
cli=src/Petals.Cli/bin/Release/net10.0/Petals.Cli.dll
if [ ! -f "$model_dir/config.json" ]; then
  dotnet "$bench" swarm-model --out "$model_dir" --hidden "$hidden" --layers "$layers"
fi

logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
per=$((layers / servers)); extra=$((layers % servers)); start=0
for i in $(seq 1 "$servers"); do
  size=$per; [ "$i" -le "$extra" ] && size=$((per + 1))
  end=$((start + size))
  dotnet "$cli" serve --model "$model_dir" --blocks "$start:$end" --host 127.0.0.1 --port 0 >"$logs/server$i.out" 2>"$logs/server$i.err" &
  pids+=($!)
  start=$end
done

peers=()
for i in $(seq 1 "$servers"); do
  for _ in $(seq 1 600); do
    line=$(grep -m1 '^listening ' "$logs/server$i.out" || true)
    [ -n "$line" ] && break
    if ! kill -0 "${pids[$((i-1))]}" 2>/dev/null; then echo "server $i exited:"; cat "$logs/server$i.err"; exit 1; fi
    sleep 0.2
  done
  [ -n "$line" ] || { echo "server $i not listening after 120 s"; cat "$logs/server$i.err"; exit 1; }
  peers+=("$(echo "$line" | awk '{print $2}')")
  echo "server $i: $line"
  grep -h '^ready' "$logs/server$i.out" || true
done

IFS=,; peer_list="${peers[*]}"; unset IFS
dotnet "$bench" swarm-client --model "$model_dir" --peers "$peer_list" --new-tokens "$new_tokens" --rounds "$rounds" ${local_spans:+--local-spans "$local_spans"}
status=$?

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
for i in $(seq 1 "$servers"); do echo "server $i: $(grep -h '^stats ' "$logs/server$i.out" || echo 'no stats line')"; done
du -sh "$model_dir" | awk '{print "model on disk: " $1}'
exit $status
