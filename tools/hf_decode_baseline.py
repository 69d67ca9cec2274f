#!/usr/bin/env python3
"""Hugging Face transformers fp32 decoding speed of a LLaMA-2-7B-shaped model (random weights) at batch 1 on CUDA:
the baseline bench/hf_decode.ts compares with (--baseline $OUT/hf_decode_baseline.json).

Model: LlamaConfig(vocab 32000, hidden 4096, intermediate 11008, 32 layers, 32 heads of 128, RoPE theta 10000),
float32 weights drawn on the GPU, TF32 off (true fp32 matmuls), the default attention implementation. Two figures,
both greedy after a prompt of --prompt tokens:
  generate  model.generate(max_new_tokens=N, min_new_tokens=N, do_sample=False): what a user of transformers gets
  loop      a bare Python loop over model(next_token, past_key_values=cache): transformers without generate()'s
            per-step overhead
tokens_per_s is the better of the two (the stricter baseline). Writes $OUT/hf_decode_baseline.json (or --out).

Run:  python3 tools/hf_decode_baseline.py [--prompt 32] [--tokens 128]
"""
import argparse
import json
import os
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "out"), "hf_decode_baseline.json"))
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)

    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
    )
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    torch.cuda.synchronize()
    build = time.time() - t0
    prompt = torch.tensor([[(i * 7919 + 11) % cfg.vocab_size for i in range(args.prompt)]], device="cuda")
    n = args.tokens

    def generate():
        out = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)
        assert out.shape[1] == args.prompt + n

    def loop():
        out = model(prompt, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        t = time.time()
        for _ in range(n):
            out = model(nxt, past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        nxt.item()
        return time.time() - t

    with torch.inference_mode():
        model.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)  # warm-up
        loop()
        # generate(): prefill + n steps; the prefill of a short prompt is timed once and taken off.
        torch.cuda.synchronize()
        t = time.time()
        model(prompt, use_cache=True).logits[:, -1].argmax(-1).item()
        prefill = time.time() - t
        t = time.time()
        generate()
        torch.cuda.synchronize()
        gen_s = time.time() - t - prefill
        loop_s = min(loop(), loop())

    r = {
        "model": "LLaMA-2-7B shape, random fp32 weights",
        "gpu": torch.cuda.get_device_name(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "attention": getattr(model.config, "_attn_implementation", "default"),
        "prompt": args.prompt,
        "tokens": n,
        "build_seconds": build,
        "generate_tokens_per_s": n / gen_s,
        "loop_tokens_per_s": n / loop_s,
    }
    r["tokens_per_s"] = max(r["generate_tokens_per_s"], r["loop_tokens_per_s"])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(r, f, indent=2)
    print(json.dumps(r, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
