#!/usr/bin/env bash
# Chaos benchmark (issue 5): five `petals serve` processes with overlapping spans of stories260K (0:3 0:2 2:5 1:4 3:5),
# 200 tokens of greedy generation from a client in this process, a server of the active chain killed with SIGKILL every
# 10 tokens (restarted as a new process on the same span once the client went on). Checks the output against local
# generation and prints every recovery: failed span, replacements, replayed tokens, detection->resume and kill->resume
# ms, with medians and 90th percentiles. JSON lines go to bench/results/chaos-STAMP.jsonl.
#   bash bench/chaos.sh [--model PATH] [any option of `Petals.Benchmarks chaos`, e.g. --new-tokens 100 --kill-every 5 --seed 2]
set -euo pipefail
cd "$(dirname "$0")/.."
model=../shared/models/stories260K/stories260K-f32.gguf
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2;;
    *) args+=("$1"); shift;;
  esac
done
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(git rev-parse --short HEAD) on $(git rev-parse --abbrev-ref HEAD)"
status=0
dotnet bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll chaos --model "$model" --results bench/results ${args[@]+"${args[@]}"} || status=$?
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
