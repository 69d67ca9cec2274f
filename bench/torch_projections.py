#!/usr/bin/env python3
"""What a tree step's projections cost in PyTorch (cuBLAS, float32, TF32 off) at M rows against one row.

    python bench/torch_projections.py [--rows 1,5,17,65] [--reps 50]

The decode bench's model shapes (bench/torch_model_baseline.py: 12 layers, hidden 768, intermediate 2048, vocab
32000): per layer x·[W_q; W_k; W_v]ᵀ, o·W_oᵀ, x·[W_gate; W_up]ᵀ, h·W_downᵀ, then the LM head, with the RMSNorms,
SwiGLU and residual adds between them but no attention (the tree kernels are timed by bench/speculative.ts). The
whole chain is captured as one CUDA graph and replayed back to back; figures are the median over rounds of the
per-replay time, and each matmul alone the same way. Reads against bench/speculative.ts's per-kernel table: the
ratio of M rows to one row is what a library reaches on this GPU, the bar for our few-row kernels. Prints a
table; writes torch_projections.json to $OUT if set.
"""
import argparse
import json
import math
import os
import statistics

import torch

H, I, V, L = 768, 2048, 32000, 12


def timed_graph(fn, reps, rounds=7):
    """Median ms per call of fn replayed `reps` times inside one CUDA graph, after a warm-up."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    for _ in range(20):  # sustained warm-up: clocks up
        g.replay()
    torch.cuda.synchronize()
    out = []
    for _ in range(rounds):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) / reps)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,5,17,65")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    g = torch.Generator().manual_seed(1)

    def lin(o, i):
        return (torch.randn(o, i, generator=g) / math.sqrt(i)).to(dev)

    layers = [dict(qkv=lin(3 * H, H), o=lin(H, H), gu=lin(2 * I, H), down=lin(H, I)) for _ in range(L)]
    lm = lin(V, H)

    def rms(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)

    rows = [int(r) for r in args.rows.split(",")]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    print(f"{'rows':>5} {'step ms':>9} {'× 1 row':>8}  per matmul µs: q|k|v   o   gate|up   down   lm head")
    base = None
    for M in rows:
        x0 = torch.randn(M, H, device=dev)

        def step():
            x = x0
            for w in layers:
                qkv = rms(x) @ w["qkv"].T
                x = x + qkv[:, :H] @ w["o"].T  # stands in for attention's output (same shape)
                gu = rms(x) @ w["gu"].T
                x = x + (torch.nn.functional.silu(gu[:, :I]) * gu[:, I:]) @ w["down"].T
            return torch.argmax(rms(x) @ lm.T, dim=-1)

        ms = timed_graph(step, max(2, args.reps // 10))
        a = torch.randn(M, H, device=dev)
        h = torch.randn(M, I, device=dev)
        per = {
            "q|k|v": timed_graph(lambda: a @ layers[0]["qkv"].T, args.reps) * 1e3,
            "o": timed_graph(lambda: a @ layers[0]["o"].T, args.reps) * 1e3,
            "gate|up": timed_graph(lambda: a @ layers[0]["gu"].T, args.reps) * 1e3,
            "down": timed_graph(lambda: h @ layers[0]["down"].T, args.reps) * 1e3,
            "lm head": timed_graph(lambda: a @ lm.T, args.reps) * 1e3,
        }
        base = base or ms
        print(f"{M:>5} {ms:>9.3f} {ms / base:>7.2f}×  " + "  ".join(f"{v:.2f}" for v in per.values()))
        result["rows"].append({"M": M, "step_ms": ms, "ratio_to_first": ms / base, "matmul_us": per})
    write_result("torch_projections.json", result)


def write_result(name, result):
    """result as JSON in $OUT/name, when $OUT is set."""
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, name), "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
