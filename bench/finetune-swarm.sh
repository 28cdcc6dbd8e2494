#!/usr/bin/env bash
# Fine-tuning through a 3-server swarm on 127.0.0.1 against the same training with the blocks in this process, on the
# shared stories260K model and the tasks of samples/finetune: a bootstrap DHT node, three `petals serve --initial-peers`
# processes (blocks 0:2, 2:4, 4:5), then `petals finetune --initial-peers` for deep-ptune, LoRA and a classification
# head, held-out NLL / accuracy before and after, generation with the trained parameters through the swarm, and the
# training steps/s of swarm vs local (same options, run one after the other).
# Speed pairs alternate their order over --rounds (swarm first in odd rounds, local first in even ones); the summary
# gives the mean steps/s of each side.
#   bash bench/finetune-swarm.sh [--steps 150] [--rounds 2] [--server-threads N] [--insecure] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=150; rounds=2; server_threads=""; insecure=(); out=/tmp/petals-finetune-swarm
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2;; --rounds) rounds=$2; shift 2;; --out) out=$2; shift 2;;
    --server-threads) server_threads=$2; shift 2;;
    --insecure) insecure=(--insecure); shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
model=../shared/models/stories260K/stories260K-f32.gguf
data=samples/finetune
dotnet build src/Petals.Cli -c Release -v q -nologo >/dev/null
petals() { dotnet src/Petals.Cli/bin/Release/net10.0/Petals.Cli.dll "$@"; }
rm -rf "$out"; mkdir -p "$out"
logs="$out/logs"; mkdir -p "$logs"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_line() { # file prefix pid
  for _ in $(seq 1 600); do
    line=$(grep -m1 "^$2" "$1" || true)
    [ -n "$line" ] && { echo "$line"; return 0; }
    kill -0 "$3" 2>/dev/null || { echo "process exited:" >&2; cat "${1%.out}.err" >&2; return 1; }
    sleep 0.2
  done
  echo "no '$2' line after 120 s" >&2; return 1
}

petals dht --host 127.0.0.1 --port 0 "${insecure[@]}" >"$logs/dht.out" 2>"$logs/dht.err" &
pids+=($!)
dht=$(wait_line "$logs/dht.out" "dht " "${pids[0]}" | awk '{print $2}')
echo "bootstrap: $dht"
spans=(0:2 2:4 4:5)
for i in 0 1 2; do
  petals serve --model "$model" --blocks "${spans[$i]}" --initial-peers "$dht" ${server_threads:+--threads "$server_threads"} "${insecure[@]}" >"$logs/server$i.out" 2>"$logs/server$i.err" &
  pids+=($!)
  echo "server $i (${spans[$i]}): $(wait_line "$logs/server$i.out" "listening " "${pids[-1]}")"
done
sleep 3 # announcements reach the bootstrap node

common=(--steps "$steps" --batch-size 8 --seq-len 96 --lr 0.01 --seed 0 --output json)
run() { # name where mode [extra...]
  local name=$1 where=$2 mode=$3; shift 3
  local location=()
  [ "$where" = swarm ] && location=(--initial-peers "$dht" "${insecure[@]}")
  petals finetune --model "$model" "${location[@]}" --mode "$mode" --out "$out/$name" "$@" 2>"$logs/$name.err" | tail -1 | tee "$out/$name.json"
}
# Servers of a swarm are long-running: one short run through them first (not counted) so that the measured runs do
# not pay the servers' start-up (JIT of the backward path, first allocations); the local runs start a fresh process
# each time and pay their own.
echo "== warm-up through the swarm (not counted)"
run warmup swarm deep-ptune --data $data/style-train.jsonl --steps 10 --batch-size 8 --seq-len 96 --seed 1 --output json >/dev/null
run warmup-lora swarm lora --data $data/style-train.jsonl --steps 10 --batch-size 8 --seq-len 96 --seed 1 --output json >/dev/null
for r in $(seq 1 "$rounds"); do
  for mode in deep-ptune lora; do
    name=${mode%%-*}
    order=(swarm local); [ $((r % 2)) -eq 0 ] && order=(local swarm)
    for where in "${order[@]}"; do
      echo "== $mode, style task, $where (round $r)"
      run "$name-$where-$r" "$where" "$mode" --data $data/style-train.jsonl --eval-data $data/style-eval.jsonl "${common[@]}"
    done
  done
done
echo "== classification head (ptune), mood task, swarm"
run mood-swarm swarm ptune --classes 2 --data $data/mood-train.jsonl --eval-data $data/mood-eval.jsonl --steps 60 --batch-size 8 --seq-len 48 --lr 0.01 --seed 0 --output json

echo "== generation through the swarm (greedy, from BOS)"
for name in "" deep-swarm-1 lora-swarm-1; do
  echo "-- ${name:-frozen}"
  petals generate --model "$model" --initial-peers "$dht" "${insecure[@]}" --prompt "" --max-new-tokens 90 ${name:+--tuned "$out/$name"} 2>/dev/null
done
echo "== perplexity of the first held-out story through the swarm"
python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["text"])' $data/style-eval.jsonl > "$out/eval0.txt"
for name in "" deep-swarm-1 lora-swarm-1; do
  echo "-- ${name:-frozen}: $(petals perplexity --model "$model" --initial-peers "$dht" "${insecure[@]}" --text-file "$out/eval0.txt" ${name:+--tuned "$out/$name"} 2>/dev/null)"
done

python3 - "$out" "$rounds" <<'PY'
import json, sys, os, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(n): return json.load(open(os.path.join(out, n + ".json")))
print("== summary")
for mode in ("deep", "lora"):
    s, l = load(f"{mode}-swarm-1"), load(f"{mode}-local-1")
    drop = 1 - s["eval_loss_after"] / s["eval_loss_frozen"]
    sw = [load(f"{mode}-swarm-{r}")["steps_per_second"] for r in range(1, rounds + 1)]
    lo = [load(f"{mode}-local-{r}")["steps_per_second"] for r in range(1, rounds + 1)]
    print(f"{mode}: held-out NLL through the swarm {s['eval_loss_frozen']:.4f} -> {s['eval_loss_after']:.4f} ({drop:.1%} lower); local {l['eval_loss_after']:.4f}; "
          f"steps/s swarm {statistics.mean(sw):.2f} {sw} vs local {statistics.mean(lo):.2f} {lo} = {statistics.mean(sw) / statistics.mean(lo):.2f}x")
m = load("mood-swarm")
print(f"classification through the swarm: held-out accuracy {m['eval_accuracy_before']:.2f} -> {m['eval_accuracy_after']:.2f}")
PY
