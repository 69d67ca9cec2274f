#!/usr/bin/env python3
"""The training bench's model (bench/train.ts) in PyTorch float32, the baseline its tokens/s are read against.

    python bench/torch_train_baseline.py [--batch 64] [--block 256] [--steps 20] [--warmup 3] [--out DIR]
                                         [--attention la,sdpa,fla] [--compile] [--device cuda|cpu] [--check]

Model: examples/models/nano -- 6 layers, hidden 384, 6 heads of 64, SwiGLU 1024, byte vocabulary (257), untied
LM head, pre-norm RMSNorm (eps 1e-5), no biases, random weights. A step is what `linattn train` does: forward,
mean cross-entropy over every position, backward, global gradient-norm clipping at 1, AdamW (betas 0.9 / 0.95,
eps 1e-8, weight decay 0.1 on matrices only). float32 throughout, TF32 off. Attention per --attention:

  la    elu+1 normalised linear attention plus the masked depthwise convolution on v with one tap per head
        (examples/paper/elu_aug.la, K = 4), hand-chunked (chunks of 64: masked intra-chunk scores, inter-chunk
        state from an exclusive prefix sum over chunks), differentiated by autograd:
          o_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + 1e-6) + sum_{l<K} w[h, l] v_{t-l},  phi(x) = elu(x) + 1
  sdpa  softmax attention, F.scaled_dot_product_attention(is_causal=True)
  fla   the same linear attention with fla's chunk kernel (flash-linear-attention), when it imports

Figures: tokens/s = steps x batch x block over the wall time of the timed steps (after --warmup steps), between
two torch.cuda.synchronize(). Prints a table; writes torch_train_baseline.json to --out (else $OUT, else out/).
--check compares the chunked attention (and its gradients) with a quadratic float64 reference and exits.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

NANO = dict(layers=6, hidden=384, heads=6, intermediate=1024, vocab=257, K=4)
NORM_EPS = 1e-5
ATTN_EPS = 1e-6
CHUNK = 64


def rmsnorm(x, gain):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * gain


def masked_conv(v, w):
    """sum_{l<K} w[h, l] * v_{t-l} (zeros before the sequence): v [B, h, T, d], w [h, K]."""
    K = w.shape[1]
    T = v.shape[2]
    vp = F.pad(v, (0, 0, K - 1, 0))
    out = torch.zeros_like(v)
    for l in range(K):
        out = out + w[:, l].view(1, -1, 1, 1) * vp[:, :, K - 1 - l:K - 1 - l + T]
    return out


def la_chunked(q, k, v, w):
    """elu+1 normalised causal linear attention in chunks of CHUNK, plus the masked conv; [B, h, T, d] each."""
    B, h, T, d = q.shape
    C = CHUNK
    pad = (-T) % C
    fq = F.elu(q) + 1
    fk = F.elu(k) + 1
    vv = v
    if pad:
        # Zero keys and values past the end add nothing to any state; the padded queries' outputs are dropped.
        fq, fk, vv = (F.pad(x, (0, 0, 0, pad)) for x in (fq, fk, v))
    n = (T + pad) // C
    fq = fq.view(B, h, n, C, d)
    fk = fk.view(B, h, n, C, d)
    vc = vv.view(B, h, n, C, d)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    scores = (fq @ fk.transpose(-1, -2)).masked_fill(~causal, 0.0)  # [B, h, n, C, C]
    kv = fk.transpose(-1, -2) @ vc  # [B, h, n, d, d]
    state = kv.cumsum(2) - kv  # S before each chunk
    ksum = fk.sum(3)  # [B, h, n, d]
    z = ksum.cumsum(2) - ksum
    num = scores @ vc + fq @ state
    den = scores.sum(-1) + (fq * z.unsqueeze(3)).sum(-1) + ATTN_EPS
    o = (num / den.unsqueeze(-1)).reshape(B, h, n * C, d)[:, :, :T]
    return o + masked_conv(v, w)


def la_reference(q, k, v, w):
    """The same attention, quadratic, for --check."""
    T = q.shape[2]
    fq = F.elu(q) + 1
    fk = F.elu(k) + 1
    s = (fq @ fk.transpose(-1, -2)).tril()
    o = (s @ v) / (s.sum(-1, keepdim=True) + ATTN_EPS)
    return o + masked_conv(v, w)


def make_fla():
    """fla's chunked linear attention (normalised) with the masked conv added, or the reason it is missing."""
    try:
        from fla.ops.linear_attn import chunk_linear_attn  # noqa: PLC0415
    except Exception as e:  # pragma: no cover - optional dependency
        return None, f"fla does not import: {e}"

    def attend(q, k, v, w):
        fq = (F.elu(q) + 1).transpose(1, 2).contiguous()  # fla takes [B, T, h, d]
        fk = (F.elu(k) + 1).transpose(1, 2).contiguous()
        out = chunk_linear_attn(fq, fk, v.transpose(1, 2).contiguous(), scale=1.0, normalize=True)
        o = out[0] if isinstance(out, tuple) else out
        return o.transpose(1, 2) + masked_conv(v, w)

    return attend, None


class Block(nn.Module):
    def __init__(self, s, attend):
        super().__init__()
        H, h, I = s["hidden"], s["heads"], s["intermediate"]
        self.h, self.d, self.attend = h, H // h, attend
        self.input_norm = nn.Parameter(torch.ones(H))
        self.q = nn.Linear(H, H, bias=False)
        self.k = nn.Linear(H, H, bias=False)
        self.v = nn.Linear(H, H, bias=False)
        self.o = nn.Linear(H, H, bias=False)
        self.conv = nn.Parameter(2.0 ** -(torch.arange(s["K"], dtype=torch.float32) + 1).repeat(h, 1))  # w[h, l]
        self.post_norm = nn.Parameter(torch.ones(H))
        self.gate = nn.Linear(H, I, bias=False)
        self.up = nn.Linear(H, I, bias=False)
        self.down = nn.Linear(I, H, bias=False)

    def forward(self, x):
        B, T, H = x.shape
        a = rmsnorm(x, self.input_norm)
        split = lambda t: t.view(B, T, self.h, self.d).transpose(1, 2)  # noqa: E731
        o = self.attend(split(self.q(a)), split(self.k(a)), split(self.v(a)), self.conv)
        x = x + self.o(o.transpose(1, 2).reshape(B, T, H))
        m = rmsnorm(x, self.post_norm)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class Model(nn.Module):
    def __init__(self, s, attend):
        super().__init__()
        self.embed = nn.Embedding(s["vocab"], s["hidden"])
        self.blocks = nn.ModuleList(Block(s, attend) for _ in range(s["layers"]))
        self.norm = nn.Parameter(torch.ones(s["hidden"]))
        self.lm_head = nn.Linear(s["hidden"], s["vocab"], bias=False)
        for mod in self.modules():  # init-model's N(0, 1/fan_in)
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=1 / math.sqrt(mod.in_features))
        nn.init.normal_(self.embed.weight, std=1 / math.sqrt(s["hidden"]))

    def forward(self, ids):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x)
        return self.lm_head(rmsnorm(x, self.norm))


def sdpa(q, k, v, w):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def bench(name, attend, args, device):
    torch.manual_seed(0)
    model = Model(NANO, attend).to(device)
    # Decay the matrices (embedding, projections, LM head), not the norms' gains nor the conv taps, as linattn does.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.endswith("conv")]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2 or n.endswith("conv")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if device == "cuda" else {}))
    params = list(model.parameters())
    V = NANO["vocab"]
    data = torch.randint(0, 256, (args.warmup + args.steps, args.batch, args.block + 1), device=device)

    def step(i):
        ids, targets = data[i, :, :-1], data[i, :, 1:]
        loss = F.cross_entropy(forward(ids).reshape(-1, V), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    forward = torch.compile(model) if args.compile else model
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for i in range(args.warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    sync()
    seconds = time.perf_counter() - t0
    tokens = args.steps * args.batch * args.block
    return dict(attention=name, tokens_per_s=tokens / seconds, ms_per_step=1000 * seconds / args.steps,
                final_loss=float(loss.detach()), compiled=args.compile)


def check(device):
    torch.manual_seed(1)
    B, h, T, d, K = 2, 3, 150, 16, 4  # T not a multiple of the chunk
    q, k, v = (torch.randn(B, h, T, d, device=device, dtype=torch.float64, requires_grad=True) for _ in range(3))
    w = torch.randn(h, K, device=device, dtype=torch.float64, requires_grad=True)
    g = torch.randn(B, h, T, d, device=device, dtype=torch.float64)
    worst = 0.0
    outs = []
    for f in (la_chunked, la_reference):
        o = f(q, k, v, w)
        grads = torch.autograd.grad((o * g).sum(), (q, k, v, w))
        outs.append((o, *grads))
    for a, b in zip(*outs):
        worst = max(worst, ((a - b).abs().max() / b.abs().max()).item())
    print(f"chunked vs quadratic linear attention (outputs and gradients), max relative error {worst:.2e}")
    raise SystemExit(0 if worst < 1e-10 else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--attention", default="la,sdpa,fla")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=os.environ.get("OUT", "out"))
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if args.check:
        check(args.device)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    results = []
    for a in args.attention.split(","):
        if a == "la":
            attend, why = la_chunked, None
        elif a == "sdpa":
            attend, why = sdpa, None
        elif a == "fla":
            attend, why = make_fla()
        else:
            raise SystemExit(f"--attention: unknown {a!r} (la, sdpa, fla)")
        if attend is None:
            results.append(dict(attention=a, skipped=why))
            continue
        try:
            results.append(bench(a, attend, args, args.device))
        except Exception as e:  # one failing attention (e.g. fla's API moved) must not lose the others' figures
            results.append(dict(attention=a, skipped=f"{type(e).__name__}: {e}"))
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print(f"PyTorch {torch.__version__}, {name}, float32 (TF32 off); nano model, batch {args.batch} x block {args.block}, "
          f"{args.steps} timed steps after {args.warmup}{', torch.compile' if args.compile else ''}")
    for r in results:
        if "skipped" in r:
            print(f"  {r['attention']:5s} skipped: {r['skipped']}")
        else:
            print(f"  {r['attention']:5s} {r['ms_per_step']:9.2f} ms/step {r['tokens_per_s']:12.0f} tokens/s  loss {r['final_loss']:.3f}")
    os.makedirs(args.out, exist_ok=True)
    report = dict(device=name, torch=torch.__version__, batch=args.batch, block=args.block, steps=args.steps,
                  warmup=args.warmup, model=NANO, results=results)
    path = os.path.join(args.out, "torch_train_baseline.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
