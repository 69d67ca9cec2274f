# PyTorch scaled_dot_product_attention in float32 (TF32 off), causal, at the softmax rows of bench/results/h200-kernels*.json:
# the baseline of the register-tiled flash kernel (backends/wgsl/softmax-tiled.ts). Medians of 5 rounds of 10 calls.
#   python3 bench/torch_sdpa.py OUT.json
import torch, time, json, sys
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
res = []
for (b, h, t, d) in [(4, 16, 4096, 64), (8, 16, 4096, 64), (4, 16, 4096, 128)]:
    q, k, v = (torch.randn(b, h, t, d, device='cuda', dtype=torch.float32) for _ in range(3))
    f = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    for _ in range(5): f()
    torch.cuda.synchronize()
    ms = []
    for r in range(5):
        s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(10): f()
        e.record(); torch.cuda.synchronize(); ms.append(s.elapsed_time(e) / 10)
    ms.sort()
    res.append({'b': b, 'h': h, 't': t, 'd': d, 'sdpa_fp32_ms': ms[2], 'rounds': ms})
    print(f'sdpa fp32 b{b} h{h} t{t} d{d}: {ms[2]:.3f} ms', flush=True)
json.dump(res, open(sys.argv[1], 'w'), indent=1)
