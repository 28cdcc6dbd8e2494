#!/usr/bin/env bash
# DHT simulation: 100, 1,000 and 10,000 DhtNodes in one process on the in-memory transport with 25 ms one-way latency
# (bench/Petals.Benchmarks dht-sim). Prints one line of figures per size and writes the JSON lines to
# bench/results/dht-sim-YYYYMMDD-HHMM.jsonl. Extra arguments go to every run (e.g. --lookups 200 --seed 2).
#   bash bench/dht-sim.sh [--sizes "100 1000 10000"] [dht-sim options...]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="100 1000 10000"
if [ "${1:-}" = "--sizes" ]; then sizes=$2; shift 2; fi
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
bench=bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll
mkdir -p bench/results
out=bench/results/dht-sim-$(date -u +%Y%m%d-%H%M).jsonl
: > "$out"
for n in $sizes; do
  echo "== $n nodes: dotnet $bench dht-sim --nodes $n --latency-ms 25 --lookups 500 --seed 1 $* --output json" >&2
  timeout 1200 dotnet "$bench" dht-sim --nodes "$n" --latency-ms 25 --lookups 500 --seed 1 "$@" --output json | tee -a "$out"
done
echo "results: $out" >&2
