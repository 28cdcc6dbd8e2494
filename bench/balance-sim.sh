#!/usr/bin/env bash
# Balancing against the optimum (issue 13): 100 random swarms of 10-50 heterogeneous servers over 32-80 blocks with
# churn, every server running the real GreedyBlockBalancer; each sampled state against the optimum of the same servers
# (CP-SAT, ratio against its proven upper bound), and the same churn without rebalancing (bench/Petals.Benchmarks
# balance-sim). Writes the JSON lines to bench/results/balance-sim-STAMP.jsonl and the plot of swarm 0 to
# bench/results/balance-sim-STAMP.png. About 15-20 minutes on one core. Extra arguments go to the run (e.g. --seed 2).
#   bash bench/balance-sim.sh [balance-sim options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
bench=bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll
mkdir -p bench/results
stamp=$(date -u +%Y%m%d-%H%M)
out=bench/results/balance-sim-$stamp.jsonl
echo "== dotnet $bench balance-sim --seed 1 --output json --plot bench/results/balance-sim-$stamp.png $*" >&2
dotnet "$bench" balance-sim --seed 1 --output json --plot "bench/results/balance-sim-$stamp.png" "$@" | tee "$out" | tail -1
echo "results: $out" >&2
