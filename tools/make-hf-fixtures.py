#!/usr/bin/env python3
"""Reference logits for the tiny Hugging Face checkpoints under test/fixtures/hf.

The checkpoints themselves (config.json, float16 safetensors, tokens.json) are written, deterministically, by
`npx tsx tools/make-hf-checkpoints.ts`; this script only reads them and writes reference_logits.safetensors
(tensor `logits` [n, vocab], float32) beside each:

  tiny-llama        Hugging Face transformers' LlamaForCausalLM (eager attention), run in float64 on the CPU.
  tiny-linearized   a PyTorch re-implementation of the linearized LLaMA-2 layer of You et al. (ICML 2024),
                    written from the math of GATECH-EIC/Linearized-LLM's experiments/medusa/model/
                    modeling_llama_kv.py (prefill path with USE_LINEAR, USE_GLOBAL, GLOBAL_FACTOR, ADD_CONV): RoPE on q
                    and k, then their L2 norm; relu(q.k)^2 inside aligned groups of group_size; the global term
                    over earlier groups scaled by global_factor; the centred depthwise convolution on v with
                    conv_mask zeroing its future taps. The rest of the model is LLaMA's.

The same re-implemented decoder with softmax attention is checked against transformers on tiny-llama first, so a
mistake in the shared parts (norms, MLP, RoPE, grouped-query heads) cannot hide in the linearized reference.

Run from the repository root:  python3 tools/make-hf-fixtures.py   (needs torch, transformers, safetensors)
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file, save_file

DTYPE = torch.float64


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_state(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        sd = {}
        for shard in sorted(set(read_json(index)["weight_map"].values())):
            sd.update(load_file(os.path.join(d, shard)))
    else:
        sd = load_file(os.path.join(d, "model.safetensors"))
    return {k: v.to(DTYPE) for k, v in sd.items()}


def inv_freq(cfg):
    """RoPE frequencies theta^(-2f/D), with rope_scaling linear or llama3 (transformers' formulas, restated)."""
    d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    theta = cfg.get("rope_theta", 10000.0)
    w = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=DTYPE) / d))
    s = cfg.get("rope_scaling") or {}
    kind = s.get("rope_type", s.get("type", "default"))
    if kind == "linear":
        w = w / s["factor"]
    elif kind == "llama3":
        factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
        wavelen = 2 * math.pi / w
        scaled = torch.where(wavelen > old / low, w / factor, w)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        w = torch.where(medium, smoothed, scaled)
    elif kind != "default":
        raise SystemExit(f"rope_scaling {kind} is not in this script")
    return w


def rope(x, w):
    """x [T, H, D] rotated by position * w, rotate-half convention: x*cos + rotate_half(x)*sin."""
    T = x.shape[0]
    ang = torch.arange(T, dtype=DTYPE)[:, None] * w[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], dim=-1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], dim=-1)[:, None, :]
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rot * sin


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def decoder(cfg, sd, ids, attention):
    """LLaMA's decoder around attention(layer, q, k, v) -> o, all [T, heads, head_dim] (k, v already repeated)."""
    H, h, g = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    d = cfg.get("head_dim") or H // h
    eps = cfg["rms_norm_eps"]
    x = sd["model.embed_tokens.weight"][ids]
    T = len(ids)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        a = rms(x, sd[p + "input_layernorm.weight"], eps)
        q = (a @ sd[p + "self_attn.q_proj.weight"].T).view(T, h, d)
        k = (a @ sd[p + "self_attn.k_proj.weight"].T).view(T, g, d).repeat_interleave(h // g, dim=1)
        v = (a @ sd[p + "self_attn.v_proj.weight"].T).view(T, g, d).repeat_interleave(h // g, dim=1)
        o = attention(layer, q, k, v)
        x = x + o.reshape(T, h * d) @ sd[p + "self_attn.o_proj.weight"].T
        m = rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(m @ sd[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (m @ sd[p + "mlp.up_proj.weight"].T)) @ sd[p + "mlp.down_proj.weight"].T
    head = sd["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else sd["lm_head.weight"]
    return rms(x, sd["model.norm.weight"], eps) @ head.T


def softmax_attention(cfg):
    w = inv_freq(cfg)

    def attend(layer, q, k, v):
        q, k = rope(q, w), rope(k, w)
        T, _, d = q.shape
        s = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(d)
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        return torch.einsum("hij,jhd->ihd", s.softmax(-1), v)

    return attend


def linearized_attention(cfg, sd):
    """The authors' layer: local relu^2 in groups, alpha * global over earlier groups, masked depthwise conv on v."""
    w = inv_freq(cfg)
    C = cfg.get("group_size") if (cfg.get("group_size") or 0) > 0 else 64

    def attend(layer, q, k, v):
        p = f"model.layers.{layer}.self_attn."
        q, k = rope(q, w), rope(k, w)
        q = q / q.norm(dim=-1, keepdim=True)
        k = k / k.norm(dim=-1, keepdim=True)
        T, h, d = q.shape
        pad = (-T) % C
        qp, kp, vp = (torch.nn.functional.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        G = (T + pad) // C
        qg, kg, vg = (t.view(G, C, h, d) for t in (qp, kp, vp))
        a = torch.relu(torch.einsum("gihd,gjhd->ghij", qg, kg)) ** 2 * torch.ones(C, C, dtype=DTYPE).tril()
        local = torch.einsum("ghij,gjhe->gihe", a, vg)
        out = local
        if p + "global_factor" in sd:
            kv = torch.einsum("gjhd,gjhe->ghde", kg, vg)
            before = torch.cumsum(kv, dim=0) - kv
            out = out + sd[p + "global_factor"][0] * torch.einsum("gihd,ghde->gihe", qg, before)
        out = out.reshape(G * C, h, d)[:T]
        if p + "dwconv.weight" in sd:
            wt = sd[p + "dwconv.weight"] * sd[p + "conv_mask"]  # [h, 1, K', 1], future taps zeroed
            taps = wt.shape[2]
            P = taps // 2
            conv = torch.nn.functional.conv2d(v.permute(1, 0, 2)[None], wt, padding=(P, 0), groups=h)[0]  # [h, T, d]
            out = out + conv.permute(1, 0, 2)
        return out

    return attend


def write(d, logits, source):
    out = os.path.join(d, "reference_logits.safetensors")
    save_file({"logits": logits.to(torch.float32).contiguous()}, out, metadata={"source": source, "torch": torch.__version__})
    print(f"wrote {out}: logits {list(logits.shape)} ({source})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default="test/fixtures/hf")
    args = ap.parse_args()
    torch.manual_seed(0)

    import transformers
    from transformers import LlamaForCausalLM

    d = os.path.join(args.fixtures, "tiny-llama")
    cfg, ids = read_json(os.path.join(d, "config.json")), read_json(os.path.join(d, "tokens.json"))
    try:
        model = LlamaForCausalLM.from_pretrained(d, dtype=DTYPE, attn_implementation="eager")
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(d, torch_dtype=DTYPE, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].to(DTYPE)
        ours = decoder(cfg, load_state(d), ids, softmax_attention(cfg))
    err = ((hf - ours).norm() / hf.norm()).item()
    print(f"tiny-llama: re-implemented decoder vs transformers {transformers.__version__}: relative error {err:.2e}")
    if err > 1e-5:
        sys.exit("the re-implemented decoder disagrees with transformers: not writing fixtures")
    write(d, hf, f"transformers {transformers.__version__} LlamaForCausalLM, eager, float64, CPU")

    d = os.path.join(args.fixtures, "tiny-linearized")
    cfg, ids = read_json(os.path.join(d, "config.json")), read_json(os.path.join(d, "tokens.json"))
    sd = load_state(d)
    with torch.no_grad():
        logits = decoder(cfg, sd, ids, linearized_attention(cfg, sd))
    write(d, logits, "PyTorch re-implementation of the linearized LLaMA-2 layer (tools/make-hf-fixtures.py), float64, CPU")


if __name__ == "__main__":
    main()
