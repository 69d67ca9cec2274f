"""PyTorch float32 baseline for the kernel benchmark: the paper's augmented layer (elu+1 linear attention,
normalised, plus a K-tap masked depthwise convolution on V), computed the way a performance-minded PyTorch
user would: the chunked form vectorised over all chunks (batched matmuls, an exclusive cumsum of per-chunk
states) and a grouped conv1d; TF32 off so that it is fp32 like the WGSL kernels. Checked against a float64
quadratic reference before timing. Median of 20 CUDA-event timings after warm-up.

    python3 bench/torch_baseline.py [--b 4 --h 16 --t 1024,4096,16384 --d 64,128 --chunk 64] [--out DIR]

With --backward: forward alone and forward+backward (autograd, the cotangent of o given) of the same layer, and
of fla's chunk_linear_attn (elu+1 features, normalised) plus the same convolution when fla is importable; the
gradients are checked against float64 autograd of the quadratic reference first. Writes torch_backward.json.
"""
import argparse
import json
import os
import statistics

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def elu_dwconv_chunked(q, k, v, w, chunk=64, eps=1e-6):
    """q, k: [b, t, h, d]; v: [b, t, h, e]; w: [h, e, K]  ->  o: [b, t, h, e]."""
    b, t, h, d = q.shape
    e = v.shape[-1]
    K = w.shape[-1]
    fq = F.elu(q) + 1
    fk = F.elu(k) + 1
    pad = (-t) % chunk
    if pad:
        fq = F.pad(fq, (0, 0, 0, 0, 0, pad))
        fk = F.pad(fk, (0, 0, 0, 0, 0, pad))
        vp = F.pad(v, (0, 0, 0, 0, 0, pad))
    else:
        vp = v
    n = (t + pad) // chunk
    # [b, h, n, C, x]
    fq = fq.view(b, n, chunk, h, d).permute(0, 3, 1, 2, 4)
    fk = fk.view(b, n, chunk, h, d).permute(0, 3, 1, 2, 4)
    vc = vp.view(b, n, chunk, h, e).permute(0, 3, 1, 2, 4)
    kv = fk.transpose(-1, -2) @ vc  # [b, h, n, d, e]
    S = torch.cumsum(kv, dim=2) - kv  # exclusive: state before each chunk
    z = fk.sum(dim=3)  # [b, h, n, d]
    Z = torch.cumsum(z, dim=2) - z
    mask = torch.ones(chunk, chunk, device=q.device, dtype=torch.bool).tril()
    A = (fq @ fk.transpose(-1, -2)).masked_fill(~mask, 0.0)  # [b, h, n, C, C]
    num = A @ vc + fq @ S
    den = A.sum(-1) + (fq * Z.unsqueeze(3)).sum(-1)
    lin = num / (den.unsqueeze(-1) + eps)
    lin = lin.permute(0, 2, 3, 1, 4).reshape(b, n * chunk, h, e)[:, :t]
    # masked depthwise conv: o_t += sum_j w[h, e, j] v_{t-j}
    x = v.permute(0, 2, 3, 1).reshape(b, h * e, t)
    weight = w.reshape(h * e, 1, K).flip(-1)
    conv = F.conv1d(F.pad(x, (K - 1, 0)), weight, groups=h * e)
    conv = conv.view(b, h, e, t).permute(0, 3, 1, 2)
    return lin + conv


def reference64(q, k, v, w, eps=1e-6):
    q, k, v, w = (x.double() for x in (q, k, v, w))
    b, t, h, d = q.shape
    fq = F.elu(q) + 1
    fk = F.elu(k) + 1
    s = torch.einsum("bihd,bjhd->bhij", fq, fk).tril()
    num = torch.einsum("bhij,bjhe->bihe", s, v)
    den = s.sum(-1).permute(0, 2, 1).unsqueeze(-1)
    out = num / (den + eps)
    K = w.shape[-1]
    for j in range(K):
        shifted = torch.zeros_like(v)
        shifted[:, j:] = v[:, : t - j]
        out = out + w[:, :, j].unsqueeze(0).unsqueeze(0) * shifted
    return out


def time_ms(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        z = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        z.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(z))
    return statistics.median(times)


def grads_of(fn, xs, do):
    """d(Σ o ⊙ do)/d xs by autograd."""
    xs = [x.detach().requires_grad_(True) for x in xs]
    o = fn(*xs)
    return torch.autograd.grad(o, xs, do)


def fla_layer():
    """fla's chunk_linear_attn as the paper's layer (elu+1 features, normalised, scale 1) plus the conv, or None."""
    try:
        import inspect
        from fla.ops.linear_attn import chunk_linear_attn
    except Exception as e:  # not installed, or no GPU build of triton
        print(f"fla is not importable ({type(e).__name__}: {e}); no fla figures")
        return None
    kw = {"head_first": False} if "head_first" in inspect.signature(chunk_linear_attn).parameters else {}

    def layer(q, k, v, w):
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
        o, _ = chunk_linear_attn(fq, fk, v, scale=1.0, normalize=True, **kw)
        b, t, h, e = v.shape
        K = w.shape[-1]
        x = v.permute(0, 2, 3, 1).reshape(b, h * e, t)
        conv = F.conv1d(F.pad(x, (K - 1, 0)), w.reshape(h * e, 1, K).flip(-1), groups=h * e)
        return o + conv.view(b, h, e, t).permute(0, 3, 1, 2)

    return layer


def backward_bench(a, dev, g):
    """Forward and forward+backward of the hand-chunked layer (autograd) and of fla's, each checked first."""
    q, k = (torch.randn(2, 77, 3, 16, device=dev, generator=g, dtype=torch.float64) * 0.5 for _ in range(2))
    v = torch.randn(2, 77, 3, 16, device=dev, generator=g, dtype=torch.float64)
    w = torch.randn(3, 16, a.K, device=dev, generator=g, dtype=torch.float64) * 0.2
    do = torch.randn(2, 77, 3, 16, device=dev, generator=g, dtype=torch.float64)
    want = grads_of(reference64, (q, k, v, w), do)
    layers = {"torch autograd, hand-chunked": lambda q, k, v, w: elu_dwconv_chunked(q, k, v, w, chunk=a.chunk)}
    fla = fla_layer()
    if fla is not None:
        layers["fla chunk_linear_attn + conv1d"] = fla
    for name, fn in list(layers.items()):
        got = grads_of(fn, [x.float() for x in (q, k, v, w)], do.float())
        rel = max(((x.double() - y).norm() / y.norm()).item() for x, y in zip(got, want))
        print(f"{name}: gradient vs float64 autograd of the quadratic reference: relative error {rel:.2e}")
        if rel > 1e-3:
            print(f"{name}: gradient disagrees with the reference; not timed")
            del layers[name]
    rows = []
    for d in [int(x) for x in a.d.split(",")]:
        for t in [int(x) for x in a.t.split(",")]:
            q = (torch.randn(a.b, t, a.h, d, device=dev, generator=g) * d ** -0.25).requires_grad_(True)
            k = (torch.randn(a.b, t, a.h, d, device=dev, generator=g) * d ** -0.25).requires_grad_(True)
            v = torch.randn(a.b, t, a.h, d, device=dev, generator=g).requires_grad_(True)
            w = (torch.randn(a.h, d, a.K, device=dev, generator=g) * 0.2).requires_grad_(True)
            do = torch.randn(a.b, t, a.h, d, device=dev, generator=g)
            for name, fn in layers.items():
                with torch.no_grad():
                    fwd = time_ms(lambda: fn(q, k, v, w))
                both = time_ms(lambda: torch.autograd.grad(fn(q, k, v, w), (q, k, v, w), do))
                rows.append({"layer": name, "b": a.b, "h": a.h, "t": t, "d": d, "forward_ms": fwd, "forward_backward_ms": both})
                print(f"{name} fp32 b{a.b} h{a.h} t{t} d{d}: forward {fwd:.3f} ms, forward+backward {both:.3f} ms")
            del q, k, v, w, do
            torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "torch_backward.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "tf32": False, "fla": fla is not None, "rows": rows}, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--b", type=int, default=4)
    p.add_argument("--h", type=int, default=16)
    p.add_argument("--t", default="1024,4096,16384")
    p.add_argument("--d", default="64,128")
    p.add_argument("--K", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--backward", action="store_true")
    a = p.parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    if a.backward:
        backward_bench(a, dev, g)
        return
    # correctness first, on a small shape
    q, k = (torch.randn(2, 77, 3, 16, device=dev, generator=g) * 0.5 for _ in range(2))
    v = torch.randn(2, 77, 3, 16, device=dev, generator=g)
    w = torch.randn(3, 16, a.K, device=dev, generator=g) * 0.2
    ref = reference64(q, k, v, w)
    got = elu_dwconv_chunked(q, k, v, w, chunk=a.chunk).double()
    rel = ((got - ref).norm() / ref.norm()).item()
    print(f"torch chunked vs float64 quadratic reference: relative error {rel:.2e}")
    assert rel < 1e-4, rel
    rows = []
    for d in [int(x) for x in a.d.split(",")]:
        for t in [int(x) for x in a.t.split(",")]:
            q = torch.randn(a.b, t, a.h, d, device=dev, generator=g) * d ** -0.25
            k = torch.randn(a.b, t, a.h, d, device=dev, generator=g) * d ** -0.25
            v = torch.randn(a.b, t, a.h, d, device=dev, generator=g)
            w = torch.randn(a.h, d, a.K, device=dev, generator=g) * 0.2
            best = None
            for chunk in (32, 64, 128):
                ms = time_ms(lambda: elu_dwconv_chunked(q, k, v, w, chunk=chunk))
                if best is None or ms < best[1]:
                    best = (chunk, ms)
            rows.append({"variant": "elu_dwconv", "b": a.b, "h": a.h, "t": t, "d": d, "chunk": best[0], "ms": best[1]})
            print(f"torch fp32 elu_dwconv b{a.b} h{a.h} t{t} d{d}: {best[1]:.3f} ms (best chunk {best[0]})")
            del q, k, v, w
            torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "torch_baseline.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "tf32": False, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
