#!/usr/bin/env python3
"""The decode bench's model (bench/decode.ts) in PyTorch float32, the baseline its figures are read against.

    python bench/torch_model_baseline.py [--small] [--device cuda|cpu] [--steps N] [--check]
    python bench/torch_model_baseline.py --logits DIR TOKEN...   # logits of a checkpoint (linattn init-model)

Model (random weights): 12 layers, hidden 768, 12 heads of 64, intermediate 2048, vocab 32000; attention is
elu+1 normalised linear attention plus a K = 4 masked depthwise convolution on v (examples/paper/elu_dwconv.la):

    o_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + 1e-6) + sum_{l<K} w[h, :, l] * v_{t-l},
    S_t = sum_{s<=t} phi(k_s) v_s^T,  z_t = sum_{s<=t} phi(k_s),  phi(x) = elu(x) + 1

Figures: decode tokens/s at batch 1 and 8 with the recurrent form (state S, z and the last K-1 values per
layer), eager and captured as one CUDA graph per step (replayed; also with each step's tokens copied to the
host, as bench/decode.ts's synchronous figure does); prefill tokens/s of one 2048-token prompt with a chunked
form (chunks of 64: intra-chunk masked scores, inter-chunk state from an exclusive prefix sum). float32
throughout, TF32 off. Prints a table; writes torch_model_baseline.json to $OUT if set, else out/.
--check compares prefill against step-by-step decoding on a small model and exits; --logits prints the
last-position logits of a checkpoint directory written by `linattn init-model` (config.json and F32
model.safetensors, Hugging Face names), to compare this model with the TypeScript runtime's.
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

FULL = dict(layers=12, hidden=768, heads=12, intermediate=2048, vocab=32000, K=4)
SMALL = dict(layers=2, hidden=128, heads=4, intermediate=256, vocab=1024, K=4)
NORM_EPS = 1e-5
ATTN_EPS = 1e-6
CHUNK = 64


def make_weights(shape, device, seed=1):
    """Same initialisation as init-model: linear weights N(0, 1/fan_in), norms 1, conv taps 2^-(l+1)."""
    g = torch.Generator().manual_seed(seed)
    H, I, V, h, K = shape["hidden"], shape["intermediate"], shape["vocab"], shape["heads"], shape["K"]
    d = H // h

    def lin(out_f, in_f):
        return (torch.randn(out_f, in_f, generator=g) / math.sqrt(in_f)).to(device)

    taps = 2.0 ** -(torch.arange(K, dtype=torch.float32) + 1)
    layers = []
    for _ in range(shape["layers"]):
        layers.append(dict(
            input_norm=torch.ones(H, device=device),
            wq=lin(h * d, H), wk=lin(h * d, H), wv=lin(h * d, H), wo=lin(H, h * d),
            post_norm=torch.ones(H, device=device),
            w_gate_up=torch.cat([lin(I, H), lin(I, H)]),  # [gate; up], as the WGSL model stacks them
            w_down=lin(H, I),
            conv=taps.expand(h, d, K).contiguous().to(device),  # w[h, e, l]
        ))
    return dict(embed=lin(V, H), layers=layers, norm=torch.ones(H, device=device), lm_head=lin(V, H), shape=shape)


def load_checkpoint(directory, device):
    """config.json + model.safetensors (F32) of `linattn init-model`, as make_weights' dict."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(directory, "model.safetensors"), "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise SystemExit(f"{name}: only F32 checkpoints are read here, got {meta['dtype']}")
        begin, end = meta["data_offsets"]
        data = torch.frombuffer(bytearray(raw[8 + n + begin:8 + n + end]), dtype=torch.float32)
        tensors[name] = data.reshape(meta["shape"]).to(device)
    shape = dict(layers=cfg["num_hidden_layers"], hidden=cfg["hidden_size"], heads=cfg["num_attention_heads"],
                 intermediate=cfg["intermediate_size"], vocab=cfg["vocab_size"], K=cfg["attention"]["options"]["K"])
    if cfg.get("head_dim", shape["hidden"] // shape["heads"]) * shape["heads"] != shape["hidden"]:
        raise SystemExit("head_dim * heads must equal hidden_size here")
    layers = []
    for i in range(shape["layers"]):
        p = f"model.layers.{i}."
        layers.append(dict(
            input_norm=tensors[p + "input_layernorm.weight"],
            wq=tensors[p + "self_attn.q_proj.weight"], wk=tensors[p + "self_attn.k_proj.weight"],
            wv=tensors[p + "self_attn.v_proj.weight"], wo=tensors[p + "self_attn.o_proj.weight"],
            post_norm=tensors[p + "post_attention_layernorm.weight"],
            w_gate_up=torch.cat([tensors[p + "mlp.gate_proj.weight"], tensors[p + "mlp.up_proj.weight"]]),
            w_down=tensors[p + "mlp.down_proj.weight"], conv=tensors[p + "self_attn.w"],
        ))
    embed = tensors["model.embed_tokens.weight"]
    lm_head = embed if cfg.get("tie_word_embeddings") else tensors["lm_head.weight"]
    return dict(embed=embed, layers=layers, norm=tensors["model.norm.weight"], lm_head=lm_head, shape=shape)


def rmsnorm(x, gain):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * gain


def mlp(x, lw, I):
    m = rmsnorm(x, lw["post_norm"])
    gu = m @ lw["w_gate_up"].T
    return x + (F.silu(gu[..., :I]) * gu[..., I:]) @ lw["w_down"].T


class Decoder:
    """One token per sequence per step; all state in preallocated tensors so a step can be a CUDA graph."""

    def __init__(self, w, b, device):
        s = w["shape"]
        self.w, self.b = w, b
        self.h, self.K, self.I = s["heads"], s["K"], s["intermediate"]
        self.d = s["hidden"] // self.h
        self.tok = torch.zeros(b, dtype=torch.long, device=device)
        self.S = [torch.zeros(b, self.h, self.d, self.d, device=device) for _ in w["layers"]]
        self.z = [torch.zeros(b, self.h, self.d, device=device) for _ in w["layers"]]
        self.hist = [torch.zeros(b, self.h, max(self.K - 1, 1), self.d, device=device) for _ in w["layers"]]

    def logits(self):
        b, h, d, K = self.b, self.h, self.d, self.K
        x = self.w["embed"][self.tok]
        for lw, S, z, hist in zip(self.w["layers"], self.S, self.z, self.hist):
            a = rmsnorm(x, lw["input_norm"])
            fq = F.elu((a @ lw["wq"].T).view(b, h, d)) + 1
            fk = F.elu((a @ lw["wk"].T).view(b, h, d)) + 1
            v = (a @ lw["wv"].T).view(b, h, d)
            S.add_(fk.unsqueeze(-1) * v.unsqueeze(-2))
            z.add_(fk)
            o = torch.einsum("bhd,bhde->bhe", fq, S) / ((fq * z).sum(-1, keepdim=True) + ATTN_EPS)
            o = o + lw["conv"][..., 0] * v
            if K > 1:
                o = o + torch.einsum("hel,bhle->bhe", lw["conv"][..., 1:], hist)
                hist.copy_(torch.cat([v.unsqueeze(2), hist[:, :, :-1]], dim=2))
            x = x + o.reshape(b, h * d) @ lw["wo"].T
            x = mlp(x, lw, self.I)
        return rmsnorm(x, self.w["norm"]) @ self.w["lm_head"].T

    def step(self):
        self.tok.copy_(self.logits().argmax(-1))


def chunked_linear_attention(fq, fk, v):
    """Normalised causal linear attention over [b, h, T, d] in chunks of CHUNK."""
    b, h, T, d = fq.shape
    e = v.shape[-1]
    pad = (-T) % CHUNK
    if pad:
        fq, fk, v = (F.pad(t, (0, 0, 0, pad)) for t in (fq, fk, v))  # zero keys add nothing
    n = (T + pad) // CHUNK
    Q, Kc, Vc = fq.view(b, h, n, CHUNK, d), fk.view(b, h, n, CHUNK, d), v.view(b, h, n, CHUNK, e)
    A = (Q @ Kc.transpose(-1, -2)).masked_fill(~torch.ones(CHUNK, CHUNK, dtype=torch.bool, device=fq.device).tril(), 0)
    kv = Kc.transpose(-1, -2) @ Vc  # [b, h, n, d, e]
    zk = Kc.sum(3)  # [b, h, n, d]
    num = A @ Vc + Q @ (kv.cumsum(2) - kv)
    den = A.sum(-1) + (Q * (zk.cumsum(2) - zk).unsqueeze(3)).sum(-1)
    return (num / (den.unsqueeze(-1) + ATTN_EPS)).reshape(b, h, n * CHUNK, e)[:, :, :T]


def prefill_logits(w, tokens, last_only=True):
    s = w["shape"]
    b, T = tokens.shape
    h, K, I = s["heads"], s["K"], s["intermediate"]
    d = s["hidden"] // h
    x = w["embed"][tokens]
    for lw in w["layers"]:
        a = rmsnorm(x, lw["input_norm"])
        fq = F.elu((a @ lw["wq"].T).view(b, T, h, d).transpose(1, 2)) + 1
        fk = F.elu((a @ lw["wk"].T).view(b, T, h, d).transpose(1, 2)) + 1
        v = (a @ lw["wv"].T).view(b, T, h, d).transpose(1, 2)
        o = chunked_linear_attention(fq, fk, v)
        # Depthwise causal conv on v: tap l reads lag l; conv1d correlates, so the taps are flipped.
        vc = v.permute(0, 1, 3, 2).reshape(b, h * d, T)
        conv = F.conv1d(F.pad(vc, (K - 1, 0)), lw["conv"].flip(-1).reshape(h * d, 1, K), groups=h * d)
        o = o + conv.reshape(b, h, d, T).permute(0, 1, 3, 2)
        x = x + o.transpose(1, 2).reshape(b, T, h * d) @ lw["wo"].T
        x = mlp(x, lw, I)
    if last_only:
        x = x[:, -1]
    return rmsnorm(x, w["norm"]) @ w["lm_head"].T


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps):
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_decode(w, b, steps, device):
    dec = Decoder(w, b, device)
    out = dict(batch=b, steps=steps)
    with torch.no_grad():
        for _ in range(3):
            dec.step()
        out["eager_tokens_per_s"] = b * steps / timed(lambda: [dec.step() for _ in range(steps)], device, 3)
        if device.type == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    dec.step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                dec.step()
            graph.replay()
            out["graph_tokens_per_s"] = b * steps / timed(lambda: [graph.replay() for _ in range(steps)], device, 3)

            def replay_and_read():
                for _ in range(steps):
                    graph.replay()
                    dec.tok.cpu()  # one readback per step, as the WebGPU runtime does

            out["graph_with_readback_tokens_per_s"] = b * steps / timed(replay_and_read, device, 3)
    return out


def check(device):
    """Prefill's logits at every position equal step-by-step decoding's (same model, float64)."""
    shape = dict(SMALL, vocab=300)
    w = make_weights(shape, device)
    w = {k: ([{n: t.double() for n, t in lw.items()} for lw in v] if k == "layers" else v.double() if torch.is_tensor(v) else v) for k, v in w.items()}
    T = 2 * CHUNK + 5
    tokens = torch.randint(0, shape["vocab"], (2, T), generator=torch.Generator().manual_seed(3)).to(device)
    with torch.no_grad():
        full = prefill_logits(w, tokens, last_only=False)
        dec = Decoder(w, 2, device)
        for lst in (dec.S, dec.z, dec.hist):
            for i in range(len(lst)):
                lst[i] = lst[i].double()
        worst = 0.0
        for t in range(T):
            dec.tok.copy_(tokens[:, t])
            step = dec.logits()
            worst = max(worst, ((step - full[:, t]).norm() / full[:, t].norm()).item())
    print(f"check: prefill (chunked) vs decode (recurrent), {T} tokens: worst relative error {worst:.2e}")
    if worst > 1e-9:
        raise SystemExit("check failed")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--prefill-tokens", type=int, default=None)
    p.add_argument("--check", action="store_true")
    p.add_argument("--logits", nargs="+", metavar=("DIR", "TOKEN"))
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    device = torch.device(args.device)
    if args.check:
        check(device)
        return
    if args.logits:
        w = load_checkpoint(args.logits[0], device)
        tokens = torch.tensor([[int(t) for t in args.logits[1:]]], device=device)
        with torch.no_grad():
            print(json.dumps([round(x, 6) for x in prefill_logits(w, tokens)[0].tolist()]))
        return
    shape = SMALL if args.small else FULL
    steps = args.steps or (16 if args.small else 128)
    T = args.prefill_tokens or (128 if args.small else 2048)
    w = make_weights(shape, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"

    prompt = torch.randint(0, shape["vocab"], (1, T), generator=torch.Generator().manual_seed(7)).to(device)
    with torch.no_grad():
        for _ in range(2):
            prefill_logits(w, prompt).argmax(-1).cpu()
        # sustained prefills until the clocks have ramped, as bench/decode.ts does before its timed ones
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.4:
            prefill_logits(w, prompt).argmax(-1).cpu()
        prefill_s = timed(lambda: prefill_logits(w, prompt).argmax(-1).cpu(), device, 9)
    decode = [bench_decode(w, b, steps, device) for b in (1, 8)]

    report = dict(
        device=name, torch=torch.__version__, dtype="float32", tf32=False, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        model=dict(shape, head_dim=shape["hidden"] // shape["heads"]),
        prefill=dict(tokens=T, batch=1, ms=prefill_s * 1e3, tokens_per_s=T / prefill_s, form=f"chunked, C={CHUNK}"),
        decode=decode,
    )
    m = report["model"]
    print(f"torch {torch.__version__} float32 (no TF32) on {name}: {m['layers']} layers, hidden {m['hidden']}, "
          f"{m['heads']}x{m['head_dim']} heads, intermediate {m['intermediate']}, vocab {m['vocab']}, K {m['K']}")
    print(f"prefill {T} tokens (b=1, chunked C={CHUNK}): {report['prefill']['tokens_per_s']:.1f} tokens/s ({report['prefill']['ms']:.2f} ms)")
    cols = ["eager_tokens_per_s", "graph_tokens_per_s", "graph_with_readback_tokens_per_s"]
    print("decode tokens/s:   batch  " + "  ".join(c.replace("_tokens_per_s", "").rjust(20) for c in cols))
    for d in decode:
        print(f"                   {d['batch']:5d}  " + "  ".join((f"{d[c]:.1f}" if c in d else "-").rjust(20) for c in cols))
    out_dir = os.environ.get("OUT", "out")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "torch_model_baseline.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
