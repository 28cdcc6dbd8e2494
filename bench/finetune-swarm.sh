#!/usr/bin/env bash
# Fine-tuning through a 3-server swarm on 127.0.0.1 against the same training with the blocks in this process, on the
# shared stories260K model and the tasks of samples/finetune: a bootstrap DHT node, three `petals serve --initial-peers`
# processes (blocks 0:2, 2:4, 4:5), then `petals finetune --initial-peers` for deep-ptune, LoRA and a classification
# head, held-out NLL / accuracy before and after, generation with the trained parameters through the swarm, and the
# training steps/s of swarm vs local (same options, run one after the other).
#   bash bench/finetune-swarm.sh [--steps 150] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=150; out=/tmp/petals-finetune-swarm
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2;; --out) out=$2; shift 2;;
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

petals dht --host 127.0.0.1 --port 0 >"$logs/dht.out" 2>"$logs/dht.err" &
pids+=($!)
dht=$(wait_line "$logs/dht.out" "dht " "${pids[0]}" | awk '{print $2}')
echo "bootstrap: $dht"
spans=(0:2 2:4 4:5)
for i in 0 1 2; do
  petals serve --model "$model" --blocks "${spans[$i]}" --initial-peers "$dht" >"$logs/server$i.out" 2>"$logs/server$i.err" &
  pids+=($!)
  echo "server $i (${spans[$i]}): $(wait_line "$logs/server$i.out" "listening " "${pids[-1]}")"
done
sleep 3 # announcements reach the bootstrap node

common=(--steps "$steps" --batch-size 8 --seq-len 96 --lr 0.01 --seed 0 --output json)
run() { # name where mode [extra...]
  local name=$1 where=$2 mode=$3; shift 3
  local location=()
  [ "$where" = swarm ] && location=(--initial-peers "$dht")
  petals finetune --model "$model" "${location[@]}" --mode "$mode" --out "$out/$name" "$@" 2>"$logs/$name.err" | tail -1 | tee "$out/$name.json"
}
echo "== deep-ptune, style task, swarm";  run deep-swarm swarm deep-ptune --data $data/style-train.jsonl --eval-data $data/style-eval.jsonl "${common[@]}"
echo "== deep-ptune, style task, local";  run deep-local local deep-ptune --data $data/style-train.jsonl --eval-data $data/style-eval.jsonl "${common[@]}"
echo "== lora, style task, swarm";        run lora-swarm swarm lora --data $data/style-train.jsonl --eval-data $data/style-eval.jsonl "${common[@]}"
echo "== lora, style task, local";        run lora-local local lora --data $data/style-train.jsonl --eval-data $data/style-eval.jsonl "${common[@]}"
echo "== classification head (ptune), mood task, swarm"
run mood-swarm swarm ptune --classes 2 --data $data/mood-train.jsonl --eval-data $data/mood-eval.jsonl --steps 60 --batch-size 8 --seq-len 48 --lr 0.01 --seed 0 --output json

echo "== generation through the swarm (greedy, from BOS)"
for name in "" deep-swarm lora-swarm; do
  echo "-- ${name:-frozen}"
  petals generate --model "$model" --initial-peers "$dht" --prompt "" --max-new-tokens 90 ${name:+--tuned "$out/$name"} 2>/dev/null
done
echo "== perplexity of the first held-out story through the swarm"
python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["text"])' $data/style-eval.jsonl > "$out/eval0.txt"
for name in "" deep-swarm lora-swarm; do
  echo "-- ${name:-frozen}: $(petals perplexity --model "$model" --initial-peers "$dht" --text-file "$out/eval0.txt" ${name:+--tuned "$out/$name"} 2>/dev/null)"
done

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(n): return json.load(open(os.path.join(out, n + ".json")))
print("== summary")
for mode in ("deep", "lora"):
    s, l = load(mode + "-swarm"), load(mode + "-local")
    drop = 1 - s["eval_loss_after"] / s["eval_loss_frozen"]
    print(f"{mode}: held-out NLL through the swarm {s['eval_loss_frozen']:.4f} -> {s['eval_loss_after']:.4f} ({drop:.1%} lower); "
          f"local {l['eval_loss_after']:.4f}; steps/s swarm {s['steps_per_second']:.2f} vs local {l['steps_per_second']:.2f} = {s['steps_per_second'] / l['steps_per_second']:.2f}x")
m = load("mood-swarm")
print(f"classification through the swarm: held-out accuracy {m['eval_accuracy_before']:.2f} -> {m['eval_accuracy_after']:.2f}")
PY
