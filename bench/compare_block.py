#!/usr/bin/python3
"""Driver of bench/compare-block.sh: runs our block harness and the PyTorch block in the same run,
alternating which goes first, and prints / writes the comparison table.

Each (shape, dtype) pair is one process per implementation that times all cases of that pair
(the weights are filled and the KV cache is prefilled once, then decode:1024, decode:128,
prefill:128 are timed). Rounds alternate the order (ours first, then torch first, ...); for each
implementation and case the lowest median over the rounds is kept (the same rule for both sides).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (mode, dtype) -> minimum speed ratio (torch time / our time), from the issue.
TARGETS = {("decode", "f32"): 2.0, ("decode", "bf16"): 3.0, ("prefill", "f32"): 0.8, ("backward", "f32"): 1.0}


def run_json(cmd, env, timeout):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not rows:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return rows


def lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return fields.get("Model name", "?").strip(), os.cpu_count()
    except OSError:
        return platform.processor() or "?", os.cpu_count()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", required=True, help="command prefix that runs Petals.Benchmarks (space separated)")
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--shapes", default="llama2-7b,llama3-8b")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--cases", default="decode:128,decode:1024,prefill:128",
                   help="decode:POSITION, prefill:TOKENS and backward:TOKENS cases, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iterations", type=int, default=7)
    p.add_argument("--prefill-iterations", type=int, default=3, help="iterations for prefill and backward cases (each takes ~1 s)")
    p.add_argument("--markdown", help="write the table (markdown) to this file")
    p.add_argument("--jsonl", help="append every raw JSON result to this file")
    p.add_argument("--timeout", type=int, default=600, help="seconds per process")
    p.add_argument("--extra-ours", default="", help="extra arguments for our harness, e.g. '--native-blas never'")
    a = p.parse_args()

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(a.threads)
    env["DOTNET_TieredPGO"] = env.get("DOTNET_TieredPGO", "1")
    pin = ["taskset", "-c", f"0-{a.threads - 1}"] if a.threads <= (os.cpu_count() or 1) else []

    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    decode_cases = [c for c in cases if c.startswith("decode")]
    prefill_cases = [c for c in cases if c.startswith("prefill")]
    backward_cases = [c for c in cases if c.startswith("backward")]
    results = {}  # (impl, shape, dtype, mode, position, tokens) -> best row
    raw = []
    t_start = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()[0]
    step = 0
    for rnd in range(a.rounds):
        for shape in a.shapes.split(","):
            for dtype in a.dtypes.split(","):
                # Decode and prefill cases run as separate processes: prefill needs fewer iterations.
                for group, iters in ((decode_cases, a.iterations), (prefill_cases, a.prefill_iterations), (backward_cases, a.prefill_iterations)):
                    if not group:
                        continue
                    common = ["block", "--shape", shape, "--dtype", dtype, "--cases", ",".join(group),
                              "--threads", str(a.threads), "--warmup", str(a.warmup if group is decode_cases else 1),
                              "--iterations", str(iters), "--output", "json"]
                    ours = pin + a.ours.split() + common + a.extra_ours.split()
                    torch_cmd = pin + [a.python, os.path.join(HERE, "pytorch_block.py")] + common
                    pair = [("ours", ours), ("torch", torch_cmd)]
                    if step % 2 == 1:
                        pair.reverse()
                    step += 1
                    for impl, cmd in pair:
                        print(f"[round {rnd + 1}/{a.rounds}] {impl:5} {shape} {dtype} {','.join(group)}", file=sys.stderr, flush=True)
                        for row in run_json(cmd, env, a.timeout):
                            row["round"] = rnd + 1
                            raw.append(row)
                            key = (impl, shape, dtype, row["mode"], row["position"], row["tokens"])
                            if key not in results or row["median_ms"] < results[key]["median_ms"]:
                                results[key] = row
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - t_start).total_seconds()
    load_end = os.getloadavg()[0]

    if a.jsonl:
        with open(a.jsonl, "a") as f:
            for row in raw:
                f.write(json.dumps(row) + "\n")

    header = ["config", "ours ms", "torch ms", "speed ratio", "ours", "torch", "target", "met"]
    table = []
    for shape in a.shapes.split(","):
        for dtype in a.dtypes.split(","):
            for case in cases:
                mode, _, n = case.partition(":")
                position, tokens = (int(n), 1) if mode == "decode" else (0, int(n))  # prefill and backward from position 0
                o = results.get(("ours", shape, dtype, mode, position, tokens))
                t = results.get(("torch", shape, dtype, mode, position, tokens))
                if o is None or t is None:
                    continue
                ratio = t["median_ms"] / o["median_ms"]
                unit, field = ("GB/s", "gbps") if mode == "decode" else ("GFLOP/s", "gflops")
                target = TARGETS.get((mode, dtype))
                config = f"{shape} {dtype} {mode} " + (f"pos {position}" if mode == "decode" else f"{tokens} tok")
                table.append([config, f"{o['median_ms']:.1f}", f"{t['median_ms']:.1f}", f"{ratio:.2f}x",
                              f"{o[field]:.1f} {unit}", f"{t[field]:.1f} {unit}",
                              f">= {target:g}x" if target else "-",
                              ("yes" if ratio >= target else "no") if target else "-"])

    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(header)]
    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths))
    print(line(header))
    print(line(["-" * w for w in widths]))
    for r in table:
        print(line(r))

    model, cores = lscpu_model()
    any_ours = next((r for r in raw if r.get("impl") == "ours"), {})
    any_torch = next((r for r in raw if r.get("impl") == "torch"), {})
    notes = [
        f"Date: {t_start.strftime('%Y-%m-%d %H:%M UTC')}; run took {elapsed:.0f} s; "
        f"load average {load_start:.1f} at the start, {load_end:.1f} at the end (other work on the machine inflates both sides).",
        f"Machine: {model}, {cores} cores; both sides pinned to {a.threads} cores (taskset), {a.threads} threads.",
        f"Ours: {any_ours.get('executor', '?')}, {any_ours.get('runtime', '?')}.",
        f"PyTorch {any_torch.get('torch_version', '?')}, BLAS {', '.join(any_torch.get('blas', [])) or '?'}.",
        f"Rounds: {a.rounds} (order alternated); decode {a.warmup} warmup + {a.iterations} timed steps, "
        f"prefill 1 warmup + {a.prefill_iterations}; each cell is the lowest median over the rounds.",
        "Speed ratio = torch time / our time. Decode: GB/s = (weight bytes + KV bytes read) / time; "
        "prefill: GFLOP/s = (2 * params * tokens + causal attention flops) / time; backward (ours: Backward with the "
        "forward recomputed inside; torch: autograd forward + backward, input requires grad, weights frozen): "
        "GFLOP/s = (4 * params * tokens + 3 * attention flops) / time.",
    ]
    for n in notes:
        print(n)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("| " + " | ".join(header) + " |\n")
            f.write("|" + "|".join("---" for _ in header) + "|\n")
            for r in table:
                f.write("| " + " | ".join(r) + " |\n")
            f.write("\n")
            for n in notes:
                f.write(f"- {n}\n")
        print(f"wrote {a.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
