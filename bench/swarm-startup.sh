#!/usr/bin/env bash
# Time from a server's launch to being usable by a client (announced online in the DHT, seen by the client's node),
# measured by `petals swarm` on the real tiny model: a bootstrap node, N `petals serve --initial-peers` processes
# launched together, a client polling the DHT every 25 ms. Usage: bash bench/swarm-startup.sh [RUNS] [SERVERS...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}; shift || true
counts=("${@:-1 3}")
model=../shared/models/stories260K/stories260K-f32.gguf
dotnet build src/Petals.Cli -c Release -v quiet -nologo > /dev/null
for n in ${counts[@]}; do
  for ((r = 1; r <= runs; r++)); do
    dotnet src/Petals.Cli/bin/Release/net10.0/Petals.Cli.dll swarm --model "$model" --servers "$n" --max-new-tokens 8 --output json 2>/dev/null | tail -1
  done | python3 -c '
import json, statistics, sys
n = sys.argv[1]
usable = []; listening = []; boot = []
for line in sys.stdin:
    d = json.loads(line)
    boot.append(d["bootstrap"]["startup_ms"])
    for s in d["servers"]:
        usable.append(s["usable_ms"]); listening.append(s["startup_ms"])
usable.sort()
print(f"servers={n} runs={len(boot)} launch-to-usable ms: median {statistics.median(usable):.0f}, min {usable[0]:.0f}, max {usable[-1]:.0f} (n={len(usable)}); launch-to-listening median {statistics.median(listening):.0f}; bootstrap ready median {statistics.median(boot):.0f}")
' "$n"
done
