// SwiGLU for training, with gate and up in separate buffers (their gradients are separate weights' inputs):
//
//   forward    act[n] = silu(g[n]) · u[n],             silu(z) = z·σ(z)
//   backward   dg[n]  = dact[n] · u[n] · σ(g)·(1 + g·(1 − σ(g)))
//              du[n]  = dact[n] · silu(g[n])
//
// n runs over rows × intermediate; 256 threads per workgroup, past 65535 workgroups the grid's y continues.
const WG = 256;
const INDEX = 'let n = (wid.y * nwg.x + wid.x) * WG + lid;';
const BUILTINS = '@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>';

export const MLP_WORKGROUP = WG;

/** act = silu(g)·u. Bindings: g, u, act, params {count}. */
export function swigluForwardWgsl(): string {
  return `// SwiGLU forward: act[n] = silu(g[n]) · u[n]
struct Params { count: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> act: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const WG = ${WG}u;

@compute @workgroup_size(WG)
fn main(${BUILTINS}) {
  ${INDEX}
  if (n >= params.count) { return; }
  let z = g[n];
  act[n] = z / (1.0 + exp(-z)) * u[n];
}
`;
}

/** dg, du from dact. Bindings: g, u, dact, dg, du, params {count}. */
export function swigluBackwardWgsl(): string {
  return `// SwiGLU backward: dg[n] = dact[n]·u[n]·σ(g)(1 + g(1 − σ(g))),  du[n] = dact[n]·silu(g[n])
struct Params { count: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> dact: array<f32>;
@group(0) @binding(3) var<storage, read_write> dg: array<f32>;
@group(0) @binding(4) var<storage, read_write> du: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

const WG = ${WG}u;

@compute @workgroup_size(WG)
fn main(${BUILTINS}) {
  ${INDEX}
  if (n >= params.count) { return; }
  let z = g[n];
  let sg = 1.0 / (1.0 + exp(-z));
  let d = dact[n];
  dg[n] = d * u[n] * sg * (1.0 + z * (1.0 - sg));
  du[n] = d * z * sg;
}
`;
}
