#!/usr/bin/env bash
# Self-placing servers (issue 13), real processes on 127.0.0.1: `petals dht`, three `petals serve --num-blocks 2
# --initial-peers …` of the shared 5-block model (no --blocks), a client knowing only the DHT address; then a fourth
# server joins, the server that alone holds some block is killed with SIGKILL, and the gap it leaves is filled by a
# rebalance of a survivor. Prints each server's placement, the time from the kill to the move and to a generation that
# again equals local generation, and one JSON summary line.
#   bash bench/placement.sh [--model PATH] [--balance-period S (default 10)] [--announce-interval S (default 2)]
set -euo pipefail
cd "$(dirname "$0")/.."
model=../shared/models/stories260K/stories260K-f32.gguf
period=10
interval=2
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2;;
    --balance-period) period=$2; shift 2;;
    --announce-interval) interval=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
dotnet build src/Petals.Cli -c Release -v q -nologo >/dev/null
cli="dotnet src/Petals.Cli/bin/Release/net10.0/Petals.Cli.dll"
logs=$(mktemp -d /tmp/petals-placement.XXXXXX)
export XDG_CACHE_HOME=$logs/cache # a measured throughput, not one cached by earlier runs
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
now_ms() { date +%s%3N; }
wait_line() { # file prefix timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  until grep -q "^$2" "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no '$2' line in $1 within $3 s" >&2; cat "${1%.out}.err" >&2; exit 1; }
    sleep 0.1
  done
}
span_of() { # the span a server serves now: its last moved line, else its listening line
  local moved; moved=$(grep '^moved ' "$logs/s$1.out" | tail -1 | awk '{print $5}')
  if [ -n "$moved" ]; then echo "$moved"; else awk '/^listening /{print $4}' "$logs/s$1.out"; fi
}
start_server() {
  $cli serve --model "$model" --num-blocks 2 --initial-peers "$dht" --threads 1 --balance-period "$period" \
    --announce-interval "$interval" --public-name "placed-$1" >"$logs/s$1.out" 2>"$logs/s$1.err" &
  pids[$1]=$!
}
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(git rev-parse --short HEAD); logs in $logs"
$cli dht >"$logs/dht.out" 2>"$logs/dht.err" &
dht_pid=$!
wait_line "$logs/dht.out" "dht " 60
dht=$(awk '/^dht /{print $2}' "$logs/dht.out")
t0=$(now_ms)
for i in 0 1 2; do start_server $i; done
for i in 0 1 2; do wait_line "$logs/s$i.out" "listening " 120; done
joined_ms=$(( $(now_ms) - t0 ))
for i in 0 1 2; do echo "server $i: blocks $(span_of $i) — $(grep '^placement: blocks' "$logs/s$i.err" | cut -d: -f2-)"; done
local_text=$($cli generate --model "$model" --prompt "Once upon a time" --max-new-tokens 32 2>/dev/null)
swarm_text=$($cli generate --model "$model" --prompt "Once upon a time" --max-new-tokens 32 --initial-peers "$dht" 2>"$logs/gen1.err") || true
first_equal=$([ "$local_text" = "$swarm_text" ] && echo true || echo false)
echo "three servers placed in ${joined_ms} ms; generation through them equals local: $first_equal"
start_server 3
wait_line "$logs/s3.out" "listening " 120
echo "server 3 joined: blocks $(span_of 3)"
victim=""
for i in 0 1 2 3; do
  read -r a b <<<"$(span_of $i | tr ':' ' ')"
  for ((blk=a; blk<b; blk++)); do
    holders=0
    for j in 0 1 2 3; do read -r c d <<<"$(span_of $j | tr ':' ' ')"; if [ $blk -ge $c ] && [ $blk -lt $d ]; then holders=$((holders+1)); fi; done
    if [ $holders -eq 1 ] && [ -z "$victim" ]; then victim=$i; gap=$blk; fi
  done
done
moves_before=$(cat "$logs"/s*.out | grep -c '^moved ' || true)
echo "killing server $victim (blocks $(span_of $victim)), the only holder of block $gap"
t_kill=$(now_ms)
kill -9 "${pids[$victim]}"
moved_ms=-1
until [ "$(cat "$logs"/s*.out | grep -c '^moved ' || true)" -gt "$moves_before" ]; do
  [ $(( $(now_ms) - t_kill )) -lt $(( (period * 3 + interval * 3 + 30) * 1000 )) ] || { echo "no move within the bound" >&2; break; }
  sleep 0.1
done
if [ "$(cat "$logs"/s*.out | grep -c '^moved ' || true)" -gt "$moves_before" ]; then moved_ms=$(( $(now_ms) - t_kill )); fi
grep -h '^moved ' "$logs"/s*.out | sed 's/^/  /'
healed_ms=-1
deadline=$(( $(now_ms) + 60000 ))
while [ "$(now_ms)" -lt $deadline ]; do
  again=$($cli generate --model "$model" --prompt "Once upon a time" --max-new-tokens 32 --initial-peers "$dht" 2>>"$logs/gen2.err") && [ "$again" = "$local_text" ] && { healed_ms=$(( $(now_ms) - t_kill )); break; }
  sleep 0.5
done
echo "kill -> move ${moved_ms} ms, kill -> generation equal to local again ${healed_ms} ms (balance period ${period} s, announcements expire after $((3 * interval)) s)"
echo "{\"servers\": 4, \"joined_ms\": $joined_ms, \"first_equal\": $first_equal, \"killed_span\": \"$(span_of $victim)\", \"gap_block\": $gap, \"kill_to_move_ms\": $moved_ms, \"kill_to_equal_generation_ms\": $healed_ms, \"balance_period_s\": $period, \"announce_interval_s\": $interval}"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
kill "$dht_pid" 2>/dev/null || true
[ "$first_equal" = true ] && [ "$healed_ms" -ge 0 ]
