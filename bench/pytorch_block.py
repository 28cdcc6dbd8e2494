#!/usr/bin/python3
"""PyTorch reference for one Llama decoder block (Hugging Face Llama semantics).

The block is written with plain torch ops (PyTorch 1.13 from Debian has no transformers package):
RMSNorm -> q/k/v projections -> rotary (rotate-half) -> grouped-query attention over a
preallocated KV cache -> o projection -> residual -> RMSNorm -> SwiGLU MLP -> residual.

Sub-commands:
  block        time one configuration and print the same JSON as the C# harness (backward:TOKENS cases time
               autograd: a stateless forward with the input requiring grad, then backward; weights frozen)
  xc-write     write a random block (same seed) + inputs to a safetensors file, and the
               PyTorch outputs of a prefill followed by decode steps
  xc-compare   compare the outputs of the C# harness with the PyTorch outputs

Run with the Debian interpreter (/usr/bin/python3), which has python3-torch.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

# Thread limits must be set before torch (and OpenBLAS / OpenMP) load.
def _preset_threads(argv):
    threads = "2"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif a.startswith("--threads="):
            threads = a.split("=", 1)[1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)


_preset_threads(sys.argv)

import torch  # noqa: E402

SHAPES = {
    # Llama-2-7B: multi-head attention.
    "llama2-7b": dict(hidden=4096, intermediate=11008, heads=32, kv_heads=32, head_dim=128,
                      eps=1e-5, theta=10000.0),
    # Llama-3-8B: grouped-query attention, 8 KV heads.
    "llama3-8b": dict(hidden=4096, intermediate=14336, heads=32, kv_heads=8, head_dim=128,
                      eps=1e-5, theta=500000.0),
    # A tiny shape for quick checks of the scripts themselves.
    "tiny": dict(hidden=256, intermediate=688, heads=8, kv_heads=2, head_dim=32,
                 eps=1e-5, theta=10000.0),
}

TENSORS = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
           "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
           "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]


def tensor_shapes(s):
    h, i, qd, kd = s["hidden"], s["intermediate"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    return {
        "input_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (qd, h),
        "self_attn.k_proj.weight": (kd, h),
        "self_attn.v_proj.weight": (kd, h),
        "self_attn.o_proj.weight": (h, qd),
        "post_attention_layernorm.weight": (h,),
        "mlp.gate_proj.weight": (i, h),
        "mlp.up_proj.weight": (i, h),
        "mlp.down_proj.weight": (h, i),
    }


def param_count(s):
    n = 0
    for shp in tensor_shapes(s).values():
        n += math.prod(shp)
    return n


def random_weights(s, seed, dtype):
    """Random weights: norms near 1, projections N(0, 0.02) (the usual initialisation scale)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shp in tensor_shapes(s).items():
        if len(shp) == 1:
            t = 1.0 + 0.1 * torch.randn(shp, generator=g)
        else:
            t = torch.randn(shp, generator=g) * 0.02
        w[name] = t.to(dtype).contiguous()
    return w


class Block:
    """One decoder block with a preallocated KV cache of shape [1, kv_heads, max_len, head_dim]."""

    def __init__(self, s, weights, dtype, max_len):
        self.s = s
        self.dtype = dtype
        self.w = weights
        self.heads, self.kvh, self.hd = s["heads"], s["kv_heads"], s["head_dim"]
        self.group = self.heads // self.kvh
        self.eps = s["eps"]
        inv_freq = 1.0 / (s["theta"] ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        t = torch.arange(max_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos().to(dtype)
        self.sin = emb.sin().to(dtype)
        self.k_cache = torch.zeros(1, self.kvh, max_len, self.hd, dtype=dtype)
        self.v_cache = torch.zeros(1, self.kvh, max_len, self.hd, dtype=dtype)
        self.length = 0
        self.max_len = max_len
        self.scale = 1.0 / math.sqrt(self.hd)

    def rms_norm(self, x, weight):
        # HF LlamaRMSNorm: statistics in fp32, result cast back, then scaled.
        xf = x.to(torch.float32)
        var = xf.pow(2).mean(-1, keepdim=True)
        xf = xf * torch.rsqrt(var + self.eps)
        return weight * xf.to(x.dtype)

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def forward(self, x):
        """x: [1, T, hidden] in self.dtype. Positions self.length .. self.length+T-1; appends to cache."""
        w = self.w
        _, T, H = x.shape
        p0 = self.length
        if p0 + T > self.max_len:
            raise RuntimeError("cache full")
        residual = x
        h = self.rms_norm(x, w["input_layernorm.weight"])
        q = torch.nn.functional.linear(h, w["self_attn.q_proj.weight"])
        k = torch.nn.functional.linear(h, w["self_attn.k_proj.weight"])
        v = torch.nn.functional.linear(h, w["self_attn.v_proj.weight"])
        q = q.view(1, T, self.heads, self.hd).transpose(1, 2)
        k = k.view(1, T, self.kvh, self.hd).transpose(1, 2)
        v = v.view(1, T, self.kvh, self.hd).transpose(1, 2)
        cos = self.cos[p0:p0 + T]
        sin = self.sin[p0:p0 + T]
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        self.k_cache[:, :, p0:p0 + T] = k
        self.v_cache[:, :, p0:p0 + T] = v
        L = p0 + T
        keys = self.k_cache[0, :, :L]            # [kvh, L, hd]
        values = self.v_cache[0, :, :L]
        # GQA without copying K/V: the query heads of one group form one matrix per KV head.
        qg = q[0].reshape(self.kvh, self.group * T, self.hd)           # [kvh, group*T, hd]
        scores = torch.matmul(qg, keys.transpose(1, 2)) * self.scale     # [kvh, group*T, L]
        if T > 1:
            # Causal mask: query t (position p0+t) sees keys 0..p0+t.
            qpos = torch.arange(p0, p0 + T).repeat(self.group)           # [group*T]
            kpos = torch.arange(L)
            mask = kpos[None, :] > qpos[:, None]
            scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores.to(torch.float32), dim=-1).to(self.dtype)  # HF: softmax in fp32
        attn = torch.matmul(probs, values)                                 # [kvh, group*T, hd]
        attn = attn.reshape(self.heads, T, self.hd).transpose(0, 1).reshape(1, T, self.heads * self.hd)
        x = residual + torch.nn.functional.linear(attn, w["self_attn.o_proj.weight"])
        residual = x
        h = self.rms_norm(x, w["post_attention_layernorm.weight"])
        gate = torch.nn.functional.linear(h, w["mlp.gate_proj.weight"])
        up = torch.nn.functional.linear(h, w["mlp.up_proj.weight"])
        x = residual + torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, w["mlp.down_proj.weight"])
        self.length = L
        return x


    def forward_stateless(self, x):
        """x: [1, T, hidden]: positions 0..T-1 attending causally to each other only, no cache (a training forward)."""
        w = self.w
        _, T, H = x.shape
        residual = x
        h = self.rms_norm(x, w["input_layernorm.weight"])
        q = torch.nn.functional.linear(h, w["self_attn.q_proj.weight"])
        k = torch.nn.functional.linear(h, w["self_attn.k_proj.weight"])
        v = torch.nn.functional.linear(h, w["self_attn.v_proj.weight"])
        q = q.view(1, T, self.heads, self.hd).transpose(1, 2)
        k = k.view(1, T, self.kvh, self.hd).transpose(1, 2)
        v = v.view(1, T, self.kvh, self.hd).transpose(1, 2)
        cos = self.cos[:T]
        sin = self.sin[:T]
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        qg = q[0].reshape(self.kvh, self.group * T, self.hd)
        scores = torch.matmul(qg, k[0].transpose(1, 2)) * self.scale
        qpos = torch.arange(T).repeat(self.group)
        mask = torch.arange(T)[None, :] > qpos[:, None]
        scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores.to(torch.float32), dim=-1).to(self.dtype)
        attn = torch.matmul(probs, v[0])
        attn = attn.reshape(self.heads, T, self.hd).transpose(0, 1).reshape(1, T, self.heads * self.hd)
        x = residual + torch.nn.functional.linear(attn, w["self_attn.o_proj.weight"])
        residual = x
        h = self.rms_norm(x, w["post_attention_layernorm.weight"])
        gate = torch.nn.functional.linear(h, w["mlp.gate_proj.weight"])
        up = torch.nn.functional.linear(h, w["mlp.up_proj.weight"])
        return residual + torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, w["mlp.down_proj.weight"])


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}
ELEM_BYTES = {"f32": 4, "bf16": 2}


def parse_cases(a):
    """--cases decode:1024,decode:128,prefill:128, or the one case of --mode/--position/--tokens."""
    if not a.cases:
        return [("decode", a.position, 1) if a.mode == "decode" else ("prefill", 0, a.tokens)]
    cases = []
    for item in a.cases.split(","):
        mode, _, n = item.strip().partition(":")
        if mode == "decode" and n.isdigit():
            cases.append(("decode", int(n), 1))
        elif mode in ("prefill", "backward") and n.isdigit() and int(n) >= 1:
            cases.append((mode, 0, int(n)))
        else:
            raise SystemExit(f"case '{item}' is not decode:POSITION, prefill:TOKENS or backward:TOKENS")
    return cases


def cmd_block(a):
    """Same order as the C# harness (BlockRunner.cs): fill the cache once to the largest decode position
    (not timed), decode cases from the largest position down (truncating), prefill cases last."""
    torch.set_num_threads(a.threads)
    s = SHAPES[a.shape]
    dtype = DTYPES[a.dtype]
    cases = parse_cases(a)
    weights = random_weights(s, a.seed, dtype)
    block = Block(s, weights, dtype, max(p + t for _, p, t in cases))
    g = torch.Generator().manual_seed(a.seed + 1)
    fill_to = max([p for m, p, _ in cases if m == "decode"] + [0])
    order = sorted(range(len(cases)), key=lambda i: ({"decode": 0, "prefill": 1, "backward": 2}[cases[i][0]], -cases[i][1]))
    results = [None] * len(cases)
    for ci in [i for i in order if cases[i][0] == "backward"]:
        results[ci] = time_backward(a, s, dtype, block, cases[ci][2], g)
    order = [i for i in order if cases[i][0] != "backward"]
    with torch.inference_mode():
        if fill_to > 0:
            block.forward(torch.randn(1, fill_to, s["hidden"], generator=g).to(dtype))
        for ci in order:
            mode, position, tokens = cases[ci]
            x0 = torch.randn(1, tokens, s["hidden"], generator=g).to(dtype)
            times = []
            for i in range(a.warmup + a.iterations):
                block.length = position            # truncate back: the position stays fixed
                x = x0.clone()
                t0 = time.perf_counter()
                y = block.forward(x)
                t1 = time.perf_counter()
                if i >= a.warmup:
                    times.append((t1 - t0) * 1000.0)
                if not torch.isfinite(y.float()).all():
                    raise RuntimeError("non-finite output")
            times.sort()
            n = len(times)
            median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
            r = metrics(s, a.dtype, mode, position, tokens, median, ELEM_BYTES[a.dtype])
            r.update(impl="torch", shape=a.shape, dtype=a.dtype, mode=mode, position=position, tokens=tokens,
                     threads=torch.get_num_threads(), warmup=a.warmup, iterations=a.iterations,
                     median_ms=median, min_ms=times[0], times_ms=times,
                     torch_version=torch.__version__, blas=blas_library())
            results[ci] = r
    for r in results:
        if a.output == "json":
            print(json.dumps(r))
        else:
            print(f"torch {a.shape} {a.dtype} {r['mode']} pos={r['position']} tokens={r['tokens']}: "
                  f"median {r['median_ms']:.2f} ms, min {r['min_ms']:.2f} ms, {r['gbps']:.2f} GB/s, {r['gflops']:.2f} GFLOP/s")


def time_backward(a, s, dtype, block, tokens, g):
    """Autograd on the same block: a stateless forward of [1, tokens, hidden] with the input requiring grad (weights
    frozen: plain tensors), then backward of a seeded output gradient; forward + backward are timed together."""
    x0 = torch.randn(1, tokens, s["hidden"], generator=g).to(dtype)
    g0 = torch.randn(1, tokens, s["hidden"], generator=g).to(dtype)
    times = []
    for i in range(a.warmup + a.iterations):
        x = x0.clone().requires_grad_(True)
        t0 = time.perf_counter()
        y = block.forward_stateless(x)
        y.backward(g0)
        t1 = time.perf_counter()
        if i >= a.warmup:
            times.append((t1 - t0) * 1000.0)
        if not torch.isfinite(x.grad.float()).all():
            raise RuntimeError("non-finite input gradient")
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    r = metrics(s, a.dtype, "backward", 0, tokens, median, ELEM_BYTES[a.dtype])
    r.update(impl="torch", shape=a.shape, dtype=a.dtype, mode="backward", position=0, tokens=tokens,
             threads=torch.get_num_threads(), warmup=a.warmup, iterations=a.iterations,
             median_ms=median, min_ms=times[0], times_ms=times,
             torch_version=torch.__version__, blas=blas_library())
    return r


def metrics(s, dtype, mode, position, tokens, median_ms, kv_bytes):
    """Bytes read and flops of one step: the same formulas as the C# harness (BlockMetrics.cs)."""
    params = param_count(s)
    weight_bytes = params * ELEM_BYTES[dtype]
    kv_dim = s["kv_heads"] * s["head_dim"]
    attended = position + tokens if mode == "decode" else tokens * (tokens + 1) // 2  # key rows summed over queries
    kv_read = 2 * kv_dim * (position + tokens) * kv_bytes
    attn_flops = 4 * s["heads"] * s["head_dim"] * attended
    # Backward (forward recomputed or kept, plus the input-gradient products): the same formula as BlockMetrics.cs.
    flops = 4 * params * tokens + 3 * attn_flops if mode == "backward" else 2 * params * tokens + attn_flops
    sec = median_ms / 1000.0
    return dict(weight_bytes=weight_bytes, kv_bytes_read=kv_read, flops=flops,
                gbps=(weight_bytes + kv_read) / sec / 1e9, gflops=flops / sec / 1e9)


def blas_library():
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line}
        return sorted(libs)
    except OSError:
        return []


# ---------------------------------------------------------------- cross-check

ST_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    hb = json.dumps(header).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for raw in blobs:
            f.write(raw)


def cmd_xc_write(a):
    torch.set_num_threads(a.threads)
    s = SHAPES[a.shape]
    dtype = DTYPES[a.dtype]
    weights = random_weights(s, a.seed, dtype)
    g = torch.Generator().manual_seed(a.seed + 1)
    total = a.prefill + a.decode_steps
    inputs = torch.randn(total, s["hidden"], generator=g)
    meta = {k: str(v) for k, v in s.items()}
    meta.update(shape=a.shape, dtype=a.dtype, seed=str(a.seed), prefill=str(a.prefill), decode_steps=str(a.decode_steps))
    os.makedirs(a.dir, exist_ok=True)
    tensors = {"model.layers.0." + n: weights[n] for n in TENSORS}
    tensors["inputs"] = inputs
    write_safetensors(os.path.join(a.dir, "block.safetensors"), tensors, meta)
    # Reference: the same (dtype-rounded) weights, computed in fp32, prefill then decode steps.
    block = Block(s, {n: t.float() for n, t in weights.items()}, torch.float32, total)
    with torch.inference_mode():
        outs = [block.forward(inputs[:a.prefill].unsqueeze(0))[0]]
        for i in range(a.prefill, total):
            outs.append(block.forward(inputs[i:i + 1].unsqueeze(0))[0])
    ref = torch.cat(outs, dim=0).contiguous()
    ref.numpy().tofile(os.path.join(a.dir, "torch.f32"))
    print(f"wrote {a.dir}/block.safetensors and torch.f32 ({total} x {s['hidden']})")


def cmd_xc_compare(a):
    ref = torch.from_numpy(__import__("numpy").fromfile(os.path.join(a.dir, "torch.f32"), dtype="float32"))
    ours = torch.from_numpy(__import__("numpy").fromfile(os.path.join(a.dir, "ours.f32"), dtype="float32"))
    if ref.numel() != ours.numel():
        print(f"size mismatch: torch {ref.numel()} vs ours {ours.numel()}")
        return 2
    ref64, ours64 = ref.double(), ours.double()
    diff = (ours64 - ref64).abs()
    max_rel_to_max = (diff.max() / ref64.abs().max()).item()
    elem_rel = (diff / ref64.abs().clamp_min(1e-3)).max().item()
    norm_rel = (diff.norm() / ref64.norm()).item()
    ok = math.isfinite(max_rel_to_max) and max_rel_to_max <= a.tolerance
    print(json.dumps(dict(dir=a.dir, elements=ref.numel(), max_abs_diff=diff.max().item(),
                          max_rel_diff=max_rel_to_max, max_elementwise_rel_diff=elem_rel,
                          rel_l2_diff=norm_rel, tolerance=a.tolerance, ok=ok)))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("block", help="time one block configuration")
    b.add_argument("--shape", choices=SHAPES.keys(), default="llama2-7b")
    b.add_argument("--dtype", choices=DTYPES.keys(), default="f32")
    b.add_argument("--mode", choices=["decode", "prefill"], default="decode")
    b.add_argument("--position", type=int, default=128)
    b.add_argument("--tokens", type=int, default=128)
    b.add_argument("--cases", help="comma-separated decode:POSITION / prefill:TOKENS / backward:TOKENS (overrides --mode)")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--iterations", type=int, default=10)
    b.add_argument("--seed", type=int, default=1234)
    b.add_argument("--output", choices=["json", "text"], default="text")
    w = sub.add_parser("xc-write", help="write a random block, inputs and the PyTorch outputs")
    w.add_argument("--shape", choices=SHAPES.keys(), default="llama3-8b")
    w.add_argument("--dtype", choices=DTYPES.keys(), default="bf16")
    w.add_argument("--prefill", type=int, default=16)
    w.add_argument("--decode-steps", type=int, default=4)
    w.add_argument("--seed", type=int, default=1234)
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--dir", required=True)
    c = sub.add_parser("xc-compare", help="compare ours.f32 with torch.f32 in a cross-check directory")
    c.add_argument("--dir", required=True)
    c.add_argument("--tolerance", type=float, default=1e-3)
    a = p.parse_args()
    if a.cmd == "block":
        if a.iterations < 1 or a.warmup < 0:
            p.error("--iterations must be >= 1 and --warmup >= 0")
        cmd_block(a)
        return 0
    if a.cmd == "xc-write":
        cmd_xc_write(a)
        return 0
    return cmd_xc_compare(a)


if __name__ == "__main__":
    sys.exit(main())
