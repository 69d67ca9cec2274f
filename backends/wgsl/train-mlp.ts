// SwiGLU for training, with gate and up in separate buffers (their gradients are separate weights' inputs):
//
//   forward    act[n] = silu(g[n]) · u[n],             silu(z) = z·σ(z)
//   backward   dg[n]  = dact[n] · u[n] · σ(g)·(1 + g·(1 − σ(g)))
//              du[n]  = dact[n] · silu(g[n])
//
// n runs over rows × intermediate; 256 threads per workgroup, past 65535 workgroups the grid's y continues.
import { ELEMENT_WORKGROUP, elementWgsl } from './train-common.ts';

export const MLP_WORKGROUP = ELEMENT_WORKGROUP;

/** act = silu(g)·u. Bindings: g, u, act, params {count}. */
export function swigluForwardWgsl(): string {
  return elementWgsl('SwiGLU forward: act[n] = silu(g[n]) · u[n]', [{ name: 'g' }, { name: 'u' }, { name: 'act', write: true }], 'n', [
    'let z = g[n];',
    'act[n] = z / (1.0 + exp(-z)) * u[n];',
  ]);
}

/** dg, du from dact. Bindings: g, u, dact, dg, du, params {count}. */
export function swigluBackwardWgsl(): string {
  return elementWgsl(
    'SwiGLU backward: dg[n] = dact[n]·u[n]·σ(g)(1 + g(1 − σ(g))),  du[n] = dact[n]·silu(g[n])',
    [{ name: 'g' }, { name: 'u' }, { name: 'dact' }, { name: 'dg', write: true }, { name: 'du', write: true }],
    'n',
    ['let z = g[n];', 'let sg = 1.0 / (1.0 + exp(-z));', 'let d = dact[n];', 'dg[n] = d * u[n] * sg * (1.0 + z * (1.0 - sg));', 'du[n] = d * z * sg;'],
  );
}
