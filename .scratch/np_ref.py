import json, math, os, struct, sys
import numpy as np
def load_st(path):
    b = open(path,'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; dt = {'F16': np.float16, 'F32': np.float32}[v['dtype']]
        out[k] = np.frombuffer(b[8+n+s:8+n+e], dtype=dt).astype(np.float64).reshape(v['shape'])
    return out
def load_state(d):
    idx = os.path.join(d, 'model.safetensors.index.json')
    if os.path.exists(idx):
        sd = {}
        for sh in sorted(set(json.load(open(idx))['weight_map'].values())): sd.update(load_st(os.path.join(d, sh)))
        return sd
    return load_st(os.path.join(d, 'model.safetensors'))
def inv_freq(cfg):
    d = cfg.get('head_dim') or cfg['hidden_size']//cfg['num_attention_heads']; theta = cfg.get('rope_theta', 10000.0)
    w = 1.0 / (theta ** (np.arange(0, d, 2) / d)); s = cfg.get('rope_scaling') or {}
    kind = s.get('rope_type', s.get('type', 'default'))
    if kind == 'llama3':
        factor, low, high, old = s['factor'], s['low_freq_factor'], s['high_freq_factor'], s['original_max_position_embeddings']
        wl = 2*math.pi/w; scaled = np.where(wl > old/low, w/factor, w); sm = (old/wl - low)/(high-low)
        smoothed = (1-sm)*scaled/factor + sm*scaled; med = (wl >= old/high) & (wl <= old/low); w = np.where(med, smoothed, scaled)
    return w
def rope(x, w):
    T = x.shape[0]; ang = np.arange(T)[:, None]*w[None, :]
    cos = np.concatenate([np.cos(ang)]*2, -1)[:, None, :]; sin = np.concatenate([np.sin(ang)]*2, -1)[:, None, :]
    half = x.shape[-1]//2; rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return x*cos + rot*sin
def rms(x, w, eps): return w * (x / np.sqrt((x**2).mean(-1, keepdims=True) + eps))
def silu(z): return z/(1+np.exp(-z))
def decoder(cfg, sd, ids, att):
    H, h = cfg['hidden_size'], cfg['num_attention_heads']; g = cfg.get('num_key_value_heads') or h; d = cfg.get('head_dim') or H//h; eps = cfg['rms_norm_eps']
    x = sd['model.embed_tokens.weight'][ids]; T = len(ids)
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        a = rms(x, sd[p+'input_layernorm.weight'], eps)
        q = (a @ sd[p+'self_attn.q_proj.weight'].T).reshape(T, h, d)
        k = np.repeat((a @ sd[p+'self_attn.k_proj.weight'].T).reshape(T, g, d), h//g, axis=1)
        v = np.repeat((a @ sd[p+'self_attn.v_proj.weight'].T).reshape(T, g, d), h//g, axis=1)
        o = att(l, q, k, v); x = x + o.reshape(T, h*d) @ sd[p+'self_attn.o_proj.weight'].T
        m = rms(x, sd[p+'post_attention_layernorm.weight'], eps)
        x = x + (silu(m @ sd[p+'mlp.gate_proj.weight'].T) * (m @ sd[p+'mlp.up_proj.weight'].T)) @ sd[p+'mlp.down_proj.weight'].T
    return rms(x, sd['model.norm.weight'], eps) @ sd['lm_head.weight'].T
def softmax_att(cfg):
    w = inv_freq(cfg)
    def f(l, q, k, v):
        q, k = rope(q, w), rope(k, w); T, _, d = q.shape
        s = np.einsum('ihd,jhd->hij', q, k)/math.sqrt(d); s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        return np.einsum('hij,jhd->ihd', s, v)
    return f
def lin_att(cfg, sd):
    w = inv_freq(cfg); C = cfg.get('group_size') if (cfg.get('group_size') or 0) > 0 else 64
    def f(l, q, k, v):
        p = f'model.layers.{l}.self_attn.'
        q, k = rope(q, w), rope(k, w); q = q/np.linalg.norm(q, axis=-1, keepdims=True); k = k/np.linalg.norm(k, axis=-1, keepdims=True)
        T, h, d = q.shape; pad = (-T) % C
        qp, kp, vp = (np.pad(t, ((0, pad), (0, 0), (0, 0))) for t in (q, k, v)); G = (T+pad)//C
        qg, kg, vg = (t.reshape(G, C, h, d) for t in (qp, kp, vp))
        a = np.maximum(np.einsum('gihd,gjhd->ghij', qg, kg), 0)**2 * np.tril(np.ones((C, C)))
        out = np.einsum('ghij,gjhe->gihe', a, vg)
        if p+'global_factor' in sd:
            kv = np.einsum('gjhd,gjhe->ghde', kg, vg); before = np.cumsum(kv, 0) - kv
            out = out + sd[p+'global_factor'][0]*np.einsum('gihd,ghde->gihe', qg, before)
        out = out.reshape(G*C, h, d)[:T]
        if p+'dwconv.weight' in sd:
            wt = (sd[p+'dwconv.weight']*sd[p+'conv_mask'])[:, 0, :, 0]; taps = wt.shape[1]; P = taps//2
            conv = np.zeros_like(v)
            for t in range(T):
                for kk in range(taps):
                    s = t + kk - P
                    if 0 <= s < T: conv[t] += wt[:, kk][:, None]*v[s]
            out = out + conv
        return out
    return f
for name, mk in [('tiny-llama', lambda c, sd: softmax_att(c)), ('tiny-linearized', lin_att)]:
    d = f'test/fixtures/hf/{name}'; cfg = json.load(open(f'{d}/config.json')); ids = json.load(open(f'{d}/tokens.json')); sd = load_state(d)
    lg = decoder(cfg, sd, ids, mk(cfg, sd))
    np.save(f'.scratch/{name}.npy', lg)
    print(name, lg.shape, lg[0, :4])
