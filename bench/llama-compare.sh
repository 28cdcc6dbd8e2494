#!/usr/bin/env bash
# Issue 14's side-by-side comparison with llama.cpp (LLamaSharp.Backend.Cpu 0.30.0 natives), 2 threads each side:
# writes the random GGUF models once (F32 here; F16, Q8_0, Q4_0, Q4_K_M by llama_model_quantize) into
# $PETALS_BENCH_MODELS (default /work/bench-models, outside git: ~14 GB), then one llama-compare run per shape
# (each a few minutes) under the shared build lock. Extra arguments go to every llama-compare run, e.g.
#   bench/llama-compare.sh --formats f32,f16 --rounds 2 --steps 6
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${PETALS_BENCH_MODELS:-/work/bench-models}
lock=${PETALS_BUILD_LOCK:-/work/build.lock}
flock "$lock" dotnet build "$root/bench/Petals.Benchmarks" -c Release 2>&1 | tail -2
exe="$root/bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks"
flock "$lock" "$exe" model-files --dir "$dir" --threads 2
for shape in llama2-7b llama3-8b; do
  flock "$lock" "$exe" llama-compare --dir "$dir" --shapes "$shape" --threads 2 --results "$root/bench/results" "$@"
done
