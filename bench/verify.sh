#!/usr/bin/env bash
# Output verification benchmark (issue 12): servers of stories260K in this process over the in-memory transport, a liar
# (blocks 0:5, echoes its input) on every step or a random fraction of them, honest servers 0:2 2:5 0:3 3:5.
# (a) P(liar caught within n steps) at check rates 0.01..1 over seeded trials, against 1-(1-p*f)^n; (b) the same for
# lie fractions 0.1 and 0.5; (c) the cost of the checks on honest servers (ms per token against rate 0 in the same run,
# extra block passes per token, mismatches: 0). Well under 3 minutes. Results go to bench/results/verify-STAMP.{jsonl,txt}.
#   bash bench/verify.sh [--model PATH] [any option of `Petals.Benchmarks verify`, e.g. --trials 400 --steps 32]
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
echo "$(git rev-parse --short HEAD) on $(git rev-parse --abbrev-ref HEAD)"
dotnet bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll verify --model "$model" --trials 400 --cost-rounds 5 --results bench/results ${args[@]+"${args[@]}"}
