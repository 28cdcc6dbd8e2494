#!/usr/bin/env bash
# Issue 14: resident memory per block of a 4-block Llama-2-7B-shaped server in each weight format (one process per case),
# and the relative error of each format's block outputs against the fp32 source. Needs the files of bench/llama-compare.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${PETALS_BENCH_MODELS:-/work/bench-models}
lock=${PETALS_BUILD_LOCK:-/work/build.lock}
exe="$root/bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks"
echo "| file | --quant | weights held | weight bytes per block | RssAnon per block | RssFile per block | RssAnon / weight bytes | (RssAnon + RssFile) / weight bytes |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
for f in f32 f16 q8_0 q4_0 q4_k_m; do
  flock "$lock" "$exe" quant-memory --file "$dir/llama2-7b-4blk.$f.gguf"
done
for q in int8 nf4 q8_0 q4_k; do
  flock "$lock" "$exe" quant-memory --file "$dir/llama2-7b-4blk.f32.gguf" --quant "$q"
done
flock "$lock" "$exe" quant-accuracy --dir "$dir" --shape llama2-7b --blocks 1
