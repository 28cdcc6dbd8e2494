#!/usr/bin/env bash
# Hostile-client soak (issue 12): starts `petals dht` and `petals serve` (all blocks of stories260K) on 127.0.0.1 as
# real processes and runs hostile clients speaking the real wire protocol against them, one phase after another:
# idle connections after the handshake, slowloris (1 byte/s), 63.9 MiB of declared 64 MiB chunked messages, a greedy
# cache hog (from 127.0.0.2, another host to the server), NaN/Inf steps and forwards (from 127.0.0.3), a DHT record
# flood from throwaway identities. Every few seconds it prints the server's and the DHT node's RSS and open fds and the
# outcome of a normal client's 8-token generation (from 127.0.0.1). Bounded (7 phases x 20 s by default, about 2.5 min
# with startup); the processes are always stopped (they also stop when this process dies: --stop-when-input-closes).
# JSON lines go to bench/results/LABEL-STAMP.jsonl.
#   bash bench/soak.sh [--model PATH] [--label soak-before] [any option of `Petals.Benchmarks soak`, e.g.
#       --phases hog,nan --phase-seconds 30 --idle-connections 5000]
#       [--serve-arg ARG]... (passed to `petals serve`, e.g. --serve-arg --max-cache-share --serve-arg 1)
#       [--dht-arg ARG]...   (passed to `petals dht`)
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
# Thousands of connections: the soak's own process needs the fds too (the children inherit this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
dotnet build src/Petals.Cli -c Release -v q -nologo >/dev/null
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg), fd limit $(ulimit -n); $(git rev-parse --short HEAD) on $(git rev-parse --abbrev-ref HEAD)"
status=0
timeout --kill-after=30 900 dotnet bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll soak --model "$model" --results bench/results ${args[@]+"${args[@]}"} || status=$?
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
