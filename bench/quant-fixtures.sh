#!/usr/bin/env bash
# Regenerates the ggml reference fixtures of the block-quantization tests (tests/Petals.Abstractions.Tests/TestData/quant)
# from llama.cpp's CPU natives (NuGet LLamaSharp.Backend.Cpu, avx512 libggml-base.so; pass --lib to use another build).
#
#   bench/quant-fixtures.sh [--lib path/to/libggml-base.so]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="${BENCH_BUILD:-$repo/artifacts/bench}"
dotnet build -c Release "$repo/bench/Petals.Benchmarks" -o "$out" -v q -nologo >&2
dotnet "$out/Petals.Benchmarks.dll" quant-fixtures --out "$repo/tests/Petals.Abstractions.Tests/TestData/quant" "$@"
