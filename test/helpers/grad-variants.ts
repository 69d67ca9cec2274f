import { compileSource } from '../../src/frontend/compile.ts';
import { loadVariant } from '../../src/io/variant-file.ts';
import { readProgram } from '../../src/ir/read.ts';
import type { Program } from '../../src/ir/types.ts';
import { VARIANTS } from '../references/index.ts';

// Small variants written for the gradient tests: between them they use every op and construct the shipped
// variants do not (tanh, silu, log, sqrt, abs, max, min, sin, softmax of a projection, a two-part concat, a gate
// through exp, a constant decay through a parameter-side sigmoid, a parameter inside a causal score, absolute
// positions, a score with q twice, a decay under tanh (no Euler identity), a normalised window term whose score carries the value's axes,
// rope with and without scaling).
export const EXTRA_VARIANTS: Readonly<Record<string, string>> = {
  zoo_features: `variant zoo_features
size m = 2
input q[h, d], k[h, d], v[h, e], x[h, d]
param s[h], u[d, m]
let a = tanh(q) * s + silu(x) - log(1 + exp(k))
let fq = concat(softmax(q @ u, m), sigmoid(a), f)
let kk = max(k, x) - min(k, 0.5 * x) + cos(k) * sin(x) + abs(q) + sqrt(1 + q * q)
let fk = concat(softmax(kk @ u, m), relu(kk) + 1, f)
term lin : causal score dot(fq[i], fk[j], f) value v
output normalize(lin, 1e-3)`,
  zoo_scores: `variant zoo_scores
size K = 3
size C = 2
input q[h, d], k[h, d], v[h, e], g[h]
param w[h, K], c[h], graw[h], w2[h, e, K]
let alpha = exp(-exp(g))
let gam = sigmoid(graw)
term win  : window(K) score tanh(dot(q[i], k[j], d)) * w[K = lag] + abs(sum(q[i] - k[j], d)) value v
term grp  : group(C)  score sigmoid(dot(q[i], k[j], d) + c) ** 2 value v
term gate : causal    score dot(q[i], k[j], d) * decay(alpha) * sum(q[i], d) * c value v
term pos  : causal    score dot(q[i], k[j], d) * cos(i / 5) * exp(-j / 7) value v
term ret  : causal    score dot(q[i], k[j], d) * decay(gam) value v
term cv   : window(K) score exp(w2[K = lag]) value v
term wg   : window(K) score tanh(dot(q[i], k[j], d)) * decay(alpha) value v
output win + grp + gate + pos + ret + normalize(cv, 1e-3) + wg`,
  // rope at the token's own position (its adjoint is the inverse rotation; reverse-time stages flip its sign),
  // with and without llama3 scaling, in a separable term and a bounded one
  zoo_rope: `variant zoo_rope
input q[h, r], k[h, r], v[h, e]
let qr = rope(q, r, 100)
let kr = rope(k, r, 100, llama3(4, 1, 4, 16))
let fq = elu(qr) + 1
let fk = elu(kr) + 1
term lin : causal    score dot(fq[i], fk[j], r) value v
term loc : window(3) score dot(qr[i], kr[j], r) value v
output normalize(lin, 1e-3) + loc`,
};

/** In IR text: recip (which the DSL cannot write) and an intersection of masks, window(3) & group(2). */
export const EXTRA_IR: Readonly<Record<string, string>> = {
  zoo_ir: [
    'variant zoo_ir',
    'axis K size 3',
    '%q = input q[h, d]',
    '%k = input k[h, d]',
    '%v = input v[h, e]',
    '%w = param w[h, K]',
    '%one = const 1',
    '%sq = mul %q %q',
    '%den = add %sq %one',
    '%r = recip %den',
    '%fq = at.i %r',
    '%fk = at.j %k',
    '%p = mul %fq %fk',
    '%s = sum %p over d',
    '%i = position i',
    '%j = position j',
    '%lag = sub %i %j',
    '%tap = select %w K = %lag',
    '%sc = mul %s %tap',
    'term t : window(3) & group(2) score %sc value %v',
    'output t',
  ].join('\n'),
};

/** Every shipped variant with a gradient program (at the reference tests' sizes) and every extra gradient variant. */
export const GRAD_CASES: readonly { readonly name: string; readonly load: () => Program }[] = [
  ...VARIANTS.map((c) => ({ name: c.file, load: () => loadVariant(c.file, { sizes: c.sizes }) })),
  ...Object.entries(EXTRA_VARIANTS).map(([name, src]) => ({ name, load: () => compileSource(src, `${name}.la`) })),
  ...Object.entries(EXTRA_IR).map(([name, text]) => ({ name, load: () => readProgram(text, `${name}.ir`) })),
];
