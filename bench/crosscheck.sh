#!/usr/bin/env bash
# Cross-implementation numerics: PyTorch writes a random block (seeded) and inputs to a safetensors file
# and its own outputs (a prefill, then decode steps, computed in fp32 from the same dtype-rounded
# weights); our harness runs the same file through the executor; the max relative difference is printed.
#
#   bench/crosscheck.sh [--shapes llama2-7b,llama3-8b] [--dtypes f32,bf16] [--backend cpu]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
python="${PYTHON:-/usr/bin/python3}"
threads="${BENCH_THREADS:-2}"
shapes="llama2-7b,llama3-8b"
dtypes="f32,bf16"
backend="cpu"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shapes) shapes="$2"; shift 2 ;;
    --dtypes) dtypes="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "${OURS:-}" ]]; then
  out="${BENCH_BUILD:-$repo/artifacts/bench}"
  dotnet build -c Release "$repo/bench/Petals.Benchmarks" -o "$out" -v q -nologo >&2
  OURS="dotnet $out/Petals.Benchmarks.dll"
fi
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for shape in ${shapes//,/ }; do
  for dtype in ${dtypes//,/ }; do
    dir="$work/$shape-$dtype"
    "$python" "$here/pytorch_block.py" xc-write --shape "$shape" --dtype "$dtype" --prefill 16 --decode-steps 4 --dir "$dir" >/dev/null
    $OURS crosscheck --dir "$dir" --threads "$threads" --backend "$backend" >/dev/null
    printf '%-10s %-5s ' "$shape" "$dtype"
    "$python" "$here/pytorch_block.py" xc-compare --dir "$dir" || status=1
    rm -rf "$dir"
  done
done
exit $status
