#!/usr/bin/env bash
# Multiplexed transport vs one connection per stream, with TLS (bench/Petals.Benchmarks mux): a 24-node DHT swarm and a
# block server (tiny random model) on three stacks, 25 ms one-way latency applied BELOW TLS (the network shaper at the
# bottom, plus one round trip per connect for TCP's handshake; TLS 1.3 is SslStream over the shaped stream):
#   plain   = connect RTT + shaped memory, one stream per connection, no TLS
#   tls     = TLS over plain: one connection and one handshake per stream
#   tls-mux = Petals.Transport.Multiplexing over tls: one connection (one handshake) per peer pair
# Prints DHT lookup median/p90, client connect, first/steady decode step and a stream-per-request echo round trip per
# stack, and tls / tls-mux ratios; writes the table to bench/results/mux-YYYYMMDD-HHMM.txt. About a minute.
#   bash bench/mux.sh [mux options, e.g. --nodes 32 --lookups 80 --latency-ms 25]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
mkdir -p bench/results
out=bench/results/mux-$(date -u +%Y%m%d-%H%M).txt
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# dotnet bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll mux --latency-ms 25 $*"
  timeout 600 dotnet bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll mux --latency-ms 25 "$@"
} | tee "$out"
echo "results: $out" >&2
