#!/usr/bin/env bash
# Chat cache reuse: time to first token of each turn of a 5-turn chat through PetalsChatClient with the kept server-side
# session (only the new tokens prefilled) and without it (MaxCachedConversations 0), on a random Llama (hidden 1024,
# 4 blocks, vocab 32000, fp32, ~470 MB written once to /tmp) served by one block server over TCP in the same process.
#   bash bench/chat-reuse.sh [--hidden 1024] [--layers 4] [--turns 5] [--message-tokens 100] [--max-output-tokens 32] [--rounds 3] [--threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build bench/Petals.Benchmarks -c Release -v q -nologo >/dev/null
dotnet bench/Petals.Benchmarks/bin/Release/net10.0/Petals.Benchmarks.dll chat-reuse --tokenizer "${PETALS_SHARED:-../shared}/tokenizers/mistral" "$@"
