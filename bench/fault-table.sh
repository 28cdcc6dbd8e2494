#!/usr/bin/env bash
# The Petals paper's fault-tolerance table (Table 1 of arXiv:2312.08361) on this machine: bench/Petals.Benchmarks
# fault-table with an 8-block, hidden-512 random Llama on 4 stages x 2 replicas of in-process block servers, 10 ms RTT
# and 1 Gbit/s per connection, failure rates 0, 1e-4, 1e-3, 1e-2 per server per step, sequences of 128 (3 runs per cell)
# and 1,024 tokens (1 run), each run capped at 120 s (no caching: 60 s; a cell whose run hits the cap is not repeated). Prints progress to stderr and writes the table to
# bench/results/fault-table-YYYYMMDD-HHMM.md (runs as JSON lines next to it). Extra arguments go to the benchmark
# (e.g. --seed 2, --strategies alg1, --cap-s 120).
#   bash bench/fault-table.sh [fault-table options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
bench=bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll
mkdir -p bench/results
stamp=$(date -u +%Y%m%d-%H%M)
out=bench/results/fault-table-$stamp.md
args=(fault-table --blocks 8 --hidden 512 --stages 4 --replicas 2 --rtt-ms 10 --bandwidth-mbps 1000
      --lengths 128,1024 --rates 0,1e-4,1e-3,1e-2 --repetitions 3 --long-repetitions 1 --cap-s 120 --no-caching-cap-s 60 --seed 1
      --jsonl "bench/results/fault-table-$stamp.jsonl" "$@")
{
  echo "# fault-table $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "\`dotnet $bench ${args[*]}\`"
  echo
} > "$out"
timeout 3600 dotnet "$bench" "${args[@]}" | tee -a "$out"
echo "results: $out" >&2
