#!/usr/bin/env python3
"""Independent reference for the real tiny Llama in ../shared/models/stories260K.

Reads the GGUF file with its own parser (no project code), tokenizes with llama.cpp's SentencePiece
algorithm over the embedded scores, and runs the model in PyTorch with Meta's interleaved rotary
layout applied directly to the stored Q/K rows (no permutation), i.e. a different code path from the
C# implementation, which converts to the Hugging Face layout. Prints JSON used as expected values by
tests/Petals.Tests (StoriesReferenceTests). Run with Debian's python3-torch:

    /usr/bin/python3 tests/reference/stories260k_reference.py ../shared/models/stories260K/stories260K-f32.gguf
"""
import json
import struct
import sys

import numpy as np
import torch


def read_gguf(path):
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    magic = data[:4]
    assert magic == b"GGUF", magic
    pos = 4
    version = take("I")
    count_fmt = "I" if version == 1 else "Q"
    n_tensors = take(count_fmt)
    n_kv = take(count_fmt)

    def read_str():
        nonlocal pos
        n = take(count_fmt)
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def read_value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return read_str()
        if t == 9:
            et = take("I")
            n = take(count_fmt)
            return [read_value(et) for _ in range(n)]
        raise ValueError(t)

    meta = {}
    for _ in range(n_kv):
        k = read_str()
        meta[k] = read_value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = read_str()
        nd = take("I")
        dims = [take(count_fmt) for _ in range(nd)]
        ttype = take("I")
        off = take("Q")
        infos.append((name, dims, ttype, off))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, ttype, off in infos:
        assert ttype == 0, (name, ttype)  # f32 only in this file
        n = int(np.prod(dims))
        arr = np.frombuffer(data, dtype=np.float32, count=n, offset=base + off)
        tensors[name] = torch.tensor(arr.reshape(list(reversed(dims))).copy())
    return version, meta, tensors


def spm_encode(text, tokens, scores, add_bos=True, bos=1):
    index = {t: i for i, t in enumerate(tokens)}
    text = "\u2581" + text.replace(" ", "\u2581")
    symbols = []
    for ch in text:
        if ch in index:
            symbols.append(ch)
        else:
            symbols.extend("<0x%02X>" % b for b in ch.encode("utf-8"))
    while True:
        best, best_i = None, -1
        for i in range(len(symbols) - 1):
            merged = symbols[i] + symbols[i + 1]
            if merged in index and (best is None or scores[index[merged]] > best):
                best, best_i = scores[index[merged]], i
        if best_i < 0:
            break
        symbols[best_i:best_i + 2] = [symbols[best_i] + symbols[best_i + 1]]
    ids = [index[s] for s in symbols]
    return ([bos] if add_bos else []) + ids


class Model:
    def __init__(self, meta, t):
        self.t = t
        self.dim = meta["llama.embedding_length"]
        self.n_layers = meta["llama.block_count"]
        self.n_heads = meta["llama.attention.head_count"]
        self.n_kv = meta.get("llama.attention.head_count_kv", self.n_heads)
        self.eps = meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)
        self.theta = meta.get("llama.rope.freq_base", 10000.0)
        self.hd = self.dim // self.n_heads
        self.head = t.get("output.weight", t["token_embd.weight"])

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope_interleaved(self, x, pos):
        # x: [T, H, hd]; rotate adjacent pairs (2i, 2i+1) as Meta's original code does.
        hd = x.shape[-1]
        inv = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = pos[:, None].double() * inv[None, :]
        cos, sin = ang.cos().float()[:, None, :], ang.sin().float()[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def forward(self, ids):
        """Full causal forward over ids; returns logits [T, vocab] and final hidden [T, dim]."""
        t = self.t
        T = len(ids)
        x = t["token_embd.weight"][torch.tensor(ids)]
        pos = torch.arange(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.n_layers):
            p = f"blk.{l}."
            h = self.rms(x, t[p + "attn_norm.weight"])
            q = (h @ t[p + "attn_q.weight"].T).view(T, self.n_heads, self.hd)
            k = (h @ t[p + "attn_k.weight"].T).view(T, self.n_kv, self.hd)
            v = (h @ t[p + "attn_v.weight"].T).view(T, self.n_kv, self.hd)
            q, k = self.rope_interleaved(q, pos), self.rope_interleaved(k, pos)
            rep = self.n_heads // self.n_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            att = torch.einsum("thd,shd->hts", q, k) / (self.hd ** 0.5) + mask
            o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, self.dim)
            x = x + o @ t[p + "attn_output.weight"].T
            h = self.rms(x, t[p + "ffn_norm.weight"])
            g = torch.nn.functional.silu(h @ t[p + "ffn_gate.weight"].T) * (h @ t[p + "ffn_up.weight"].T)
            x = x + g @ t[p + "ffn_down.weight"].T
        final = self.rms(x, t["output_norm.weight"])
        return final @ self.head.T, x


STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
         "One day, she saw a big red ball in the park. She ran to the ball and kicked it very high. "
         "Lily was happy and laughed with her mom.")


def main():
    version, meta, t = read_gguf(sys.argv[1])
    tokens = meta["tokenizer.ggml.tokens"]
    scores = meta["tokenizer.ggml.scores"]
    m = Model(meta, t)
    out = {"gguf_version": version}
    prompt = spm_encode("Once upon a time", tokens, scores)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(60):
            logits, _ = m.forward(ids)
            nxt = int(logits[-1].argmax())
            ids.append(nxt)
            if nxt == 2:
                break
        out["prompt_ids"] = prompt
        out["greedy_ids"] = ids[len(prompt):]
        story = spm_encode(STORY, tokens, scores)
        logits, hidden = m.forward(story)
        logp = torch.log_softmax(logits.double(), -1)
        nll = -logp[torch.arange(len(story) - 1), torch.tensor(story[1:])].mean().item()
        out["story"] = STORY
        out["story_ids"] = story
        out["story_nll"] = nll
        out["story_last_logits_head"] = [float(v) for v in logits[-1][:8]]
    out["tokenize"] = {s: spm_encode(s, tokens, scores, add_bos=False) for s in
                       ["Hello world", "  two  spaces", "Tom's dog: 42!", "naïve café", "日本"]}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
