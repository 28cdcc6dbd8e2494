#!/usr/bin/env bash
# Times one Llama decoder block with our executor and with PyTorch, in the same run, and prints
# our speed relative to PyTorch. See bench/README.md.
#
#   bench/compare-block.sh [--quick] [--no-build] [--crosscheck] [--markdown FILE] [compare_block.py options...]
#
#   --quick       one round, fewer iterations (a smoke run, ~3 minutes)
#   --no-build    reuse the last build in artifacts/bench
#   --crosscheck  first run bench/crosscheck.sh (numerics of both sides on the same weights)
#   other options go to bench/compare_block.py (--shapes, --dtypes, --cases, --rounds, --iterations, ...)
#   e.g. the backward pass of one 7B block: --shapes llama2-7b --dtypes f32 --cases backward:128
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
python="${PYTHON:-/usr/bin/python3}"
threads="${BENCH_THREADS:-2}"
build=1
crosscheck=0
markdown="$here/results/block-$(date -u +%Y%m%d-%H%M).md"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) args+=(--rounds 1 --iterations 5 --prefill-iterations 2); shift ;;
    --no-build) build=0; shift ;;
    --crosscheck) crosscheck=1; shift ;;
    --markdown) markdown="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

out="${BENCH_BUILD:-$repo/artifacts/bench}"
if [[ $build -eq 1 ]]; then
  echo "building Petals.Benchmarks (Release) into $out" >&2
  dotnet build -c Release "$repo/bench/Petals.Benchmarks" -o "$out" -v q -nologo >&2
fi
ours="dotnet $out/Petals.Benchmarks.dll"

export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"

# PyTorch must use OpenBLAS (Debian's python3-torch goes through the libblas.so.3 alternative).
"$python" - <<'PY' >&2
import torch
a = torch.randn(256, 256); a @ a
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l})
blas_info = [f.replace("- Build settings: ", "") for f in torch.__config__.show().replace(",", "\n").splitlines() if "BLAS_INFO" in f]
print("torch", torch.__version__, "threads", torch.get_num_threads(), "|", "".join(blas_info).strip(),
      "(libblas.so.3 alternative) | loaded:", ", ".join(libs) or "none")
if not any("openblas" in l for l in libs):
    raise SystemExit("PyTorch does not use OpenBLAS here: install libopenblas0-pthread and select it with update-alternatives")
PY

load="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$load" -v c="$(nproc)" 'BEGIN { exit !(l > c / 2) }'; then
  echo "WARNING: load average $load on $(nproc) cores: other work will distort both sides' numbers." >&2
fi

echo "memory read bandwidth (the ceiling for decode):" >&2
$ours membw --threads "$threads" --iterations 5 >&2

if [[ $crosscheck -eq 1 ]]; then
  OURS="$ours" "$here/crosscheck.sh" >&2
fi

mkdir -p "$(dirname "$markdown")"
"$python" "$here/compare_block.py" --ours "$ours" --python "$python" --threads "$threads" \
  --markdown "$markdown" --jsonl "${markdown%.md}.jsonl" "${args[@]}"
