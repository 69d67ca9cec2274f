"""PyTorch float32 baseline for the kernel benchmark: the paper's augmented layer (elu+1 linear attention,
normalised, plus a K-tap masked depthwise convolution on V), computed the way a performance-minded PyTorch
user would: the chunked form vectorised over all chunks (batched matmuls, an exclusive cumsum of per-chunk
states) and a grouped conv1d; TF32 off so that it is fp32 like the WGSL kernels. Checked against a float64
quadratic reference before timing. Median of 20 CUDA-event timings after warm-up.

    python3 bench/torch_baseline.py [--b 4 --h 16 --t 1024,4096,16384 --d 64,128 --chunk 64] [--variants elu_dwconv,elu,elu_aug,retnet]
                                    [--iters 20] [--out DIR]

--variants adds the same hand-chunked form of elu (normalised elu+1, no conv), elu_aug (its conv's taps shared by
the value columns) and retnet (q·k decayed by a per-head γ^(i−j), unnormalised: the chunk states are combined by
a decay-weighted sum over earlier chunks), each checked against the float64 quadratic form first.

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


def chunked_layer(q, k, v, w=None, gamma=None, elu=True, normalize=True, chunk=64, eps=1e-6):
    """Chunked causal linear attention, optionally decayed, normalised and plus a masked depthwise conv on V.
    q, k: [b, t, h, d]; v: [b, t, h, e]; w: [h, e, K] or None; gamma: [h] (score · γ^(i−j), RetNet) or None.
    elu: features elu(x) + 1 (else q, k as they are). Returns o: [b, t, h, e]."""
    b, t, h, d = q.shape
    e = v.shape[-1]
    fq = F.elu(q) + 1 if elu else q
    fk = F.elu(k) + 1 if elu else k
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
    mask = torch.ones(chunk, chunk, device=q.device, dtype=torch.bool).tril()
    A = (fq @ fk.transpose(-1, -2)).masked_fill(~mask, 0.0)  # [b, h, n, C, C]
    if gamma is None:
        kv = fk.transpose(-1, -2) @ vc  # [b, h, n, d, e]
        S = torch.cumsum(kv, dim=2) - kv  # exclusive: state before each chunk
        qS = fq @ S
    else:
        # γ^(i−j) = γ^(r+1) · γ^(C(n−1−m)) · γ^(C−1−s) for i = nC + r, j = mC + s, m < n; γ^(r−s) inside a chunk
        lg = torch.log(gamma).view(h, 1, 1)
        r = torch.arange(chunk, device=q.device, dtype=q.dtype)
        A = A * torch.exp(lg * (r.view(-1, 1) - r.view(1, -1))).masked_fill(~mask, 0.0).unsqueeze(1)
        kv = (fk * torch.exp(lg * (chunk - 1 - r).view(-1, 1)).unsqueeze(1)).transpose(-1, -2) @ vc
        m = torch.arange(n, device=q.device, dtype=q.dtype)
        lag = m.view(-1, 1) - 1 - m.view(1, -1)  # n − 1 − m
        W = torch.exp(lg * chunk * lag.clamp(min=0)).masked_fill(lag < 0, 0.0)  # [h, n, n]
        S = torch.einsum("hnm,bhmde->bhnde", W, kv)
        qS = (fq * torch.exp(lg * (r + 1).view(-1, 1)).unsqueeze(1)) @ S
    num = A @ vc + qS
    if normalize:
        z = fk.sum(dim=3)  # [b, h, n, d]
        Z = torch.cumsum(z, dim=2) - z
        den = A.sum(-1) + (fq * Z.unsqueeze(3)).sum(-1)
        num = num / (den.unsqueeze(-1) + eps)
    out = num.permute(0, 2, 3, 1, 4).reshape(b, n * chunk, h, e)[:, :t]
    if w is not None:
        # masked depthwise conv: o_t += sum_j w[h, e, j] v_{t-j}
        K = w.shape[-1]
        x = v.permute(0, 2, 3, 1).reshape(b, h * e, t)
        weight = w.reshape(h * e, 1, K).flip(-1)
        conv = F.conv1d(F.pad(x, (K - 1, 0)), weight, groups=h * e)
        out = out + conv.view(b, h, e, t).permute(0, 3, 1, 2)
    return out


def elu_dwconv_chunked(q, k, v, w, chunk=64, eps=1e-6):
    """The paper's augmented layer: q, k: [b, t, h, d]; v: [b, t, h, e]; w: [h, e, K]  ->  o: [b, t, h, e]."""
    return chunked_layer(q, k, v, w, chunk=chunk, eps=eps)


def reference64(q, k, v, w=None, gamma=None, elu=True, normalize=True, eps=1e-6):
    q, k, v = (x.double() for x in (q, k, v))
    b, t, h, d = q.shape
    fq = F.elu(q) + 1 if elu else q
    fk = F.elu(k) + 1 if elu else k
    s = torch.einsum("bihd,bjhd->bhij", fq, fk).tril()
    if gamma is not None:
        i = torch.arange(t, device=q.device, dtype=torch.float64)
        s = s * (gamma.double().view(h, 1, 1) ** (i.view(-1, 1) - i.view(1, -1)).clamp(min=0)).tril()
    out = torch.einsum("bhij,bjhe->bihe", s, v)
    if normalize:
        den = s.sum(-1).permute(0, 2, 1).unsqueeze(-1)
        out = out / (den + eps)
    if w is not None:
        w = w.double()
        K = w.shape[-1]
        for j in range(K):
            shifted = torch.zeros_like(v)
            shifted[:, j:] = v[:, : t - j]
            out = out + w[:, :, j].unsqueeze(0).unsqueeze(0) * shifted
    return out


# The zoo's variants this baseline has (bench/h200-kernels.ts reads them by name): inputs for (b, t, h, d) from a
# generator, and the layer's keyword arguments. elu_aug's w[h, K] is shared by the value columns (broadcast).
def variant_args(name, b, t, h, d, K, dev, g):
    q = torch.randn(b, t, h, d, device=dev, generator=g) * d ** -0.25
    k = torch.randn(b, t, h, d, device=dev, generator=g) * d ** -0.25
    v = torch.randn(b, t, h, d, device=dev, generator=g)
    if name == "elu_dwconv":
        return (q, k, v), {"w": torch.randn(h, d, K, device=dev, generator=g) * 0.2}
    if name == "elu_aug":
        return (q, k, v), {"w": (torch.randn(h, 1, K, device=dev, generator=g) * 0.2).expand(h, d, K).contiguous()}
    if name == "elu":
        return (q, k, v), {}
    if name == "retnet":
        gamma = 1 - 2.0 ** (-5 - torch.arange(h, device=dev, dtype=torch.float32) * 3 / h)
        return (q, k, v), {"gamma": gamma, "elu": False, "normalize": False}
    raise ValueError(f"no PyTorch baseline for {name}")


VARIANTS = ["elu_dwconv", "elu", "elu_aug", "retnet"]


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
    p.add_argument("--variants", default="elu_dwconv", help=f"comma-separated, of {','.join(VARIANTS)}")
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    if a.backward:
        backward_bench(a, dev, g)
        return
    names = a.variants.split(",")
    # correctness first, on a small shape: each variant against the float64 quadratic form
    for name in names:
        (q, k, v), kw = variant_args(name, 2, 77, 3, 16, a.K, dev, g)
        ref = reference64(q * 2, k * 2, v, **kw)
        got = chunked_layer(q * 2, k * 2, v, chunk=a.chunk, **kw).double()
        rel = ((got - ref).norm() / ref.norm()).item()
        print(f"torch chunked {name} vs float64 quadratic reference: relative error {rel:.2e}")
        assert rel < 1e-4, (name, rel)
    rows = []
    for d in [int(x) for x in a.d.split(",")]:
        for t in [int(x) for x in a.t.split(",")]:
            for name in names:
                (q, k, v), kw = variant_args(name, a.b, t, a.h, d, a.K, dev, g)
                best = None
                for chunk in (32, 64, 128):
                    ms = time_ms(lambda: chunked_layer(q, k, v, chunk=chunk, **kw), iters=a.iters)
                    if best is None or ms < best[1]:
                        best = (chunk, ms)
                rows.append({"variant": name, "b": a.b, "h": a.h, "t": t, "d": d, "chunk": best[0], "ms": best[1]})
                print(f"torch fp32 {name} b{a.b} h{a.h} t{t} d{d}: {best[1]:.3f} ms (best chunk {best[0]})")
                del q, k, v, kw
                torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "torch_baseline.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "tf32": False, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
