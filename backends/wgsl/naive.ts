// The parallel form on the GPU: every output element loops over every admitted key position and evaluates
// the score as written. O(t²): the baseline the chunked kernels are measured against, never the default.
import { lagRange } from '../../src/ir/masks.ts';
import type { Program } from '../../src/ir/types.ts';
import { count, globalResolver, maskCondition, programBuffers, unflatten, type Sizes } from './common.ts';
import { ExprGen } from './expr.ts';
import { bindingDecls, DIMS_WGSL, FLAT_INDEX, grid, type Plan } from './plan.ts';

const WG = 64;

export function naivePlan(p: Program, sizes: Sizes): Plan {
  const buffers = programBuffers(p, sizes);
  const bindings = buffers.map((b) => ({ buffer: b.name, write: b.role === 'output' }));
  const per = count(p.outAxes, sizes);
  const gen = new ExprGen(p, sizes, globalResolver(p, sizes), { i: 'i', j: 'j' }, 2);
  const { code: unflat, idx } = unflatten(p.outAxes, sizes, 'e_flat');
  const byName = new Map(p.terms.map((t) => [t.name, t]));
  gen.emit('var o_acc: f32 = 0.0;');
  for (const item of p.output) {
    const names = item.kind === 'term' ? [item.term] : item.terms;
    gen.emit('{');
    gen.block(() => {
      gen.emit('var num: f32 = 0.0;');
      gen.emit('var den: f32 = 0.0;');
      for (const name of names) {
        const t = byName.get(name)!;
        const r = lagRange(t.mask);
        const lo = r ? `u32(max(i32(i) - ${r[1]}, 0))` : '0u';
        const hi = r ? `min(u32(max(i32(i) - ${r[0]} + 1, 0)), dims.t)` : t.noncausal ? 'dims.t' : 'i + 1u';
        gen.emit(`// term ${t.name}`);
        gen.emit(`for (var j: u32 = ${lo}; j < ${hi}; j++) {`);
        gen.block(() => {
          gen.emit(`if (!(${maskCondition(t.mask, 'i', 'j')})) { continue; }`);
          const s = gen.value(t.score, idx, 'j');
          const v = gen.value(t.value, idx, 'j');
          gen.emit(`num = num + ${s} * ${v};`);
          gen.emit(`den = den + ${s};`);
        });
        gen.emit('}');
      }
      gen.emit(item.kind === 'norm' ? `o_acc = o_acc + num / (den + ${item.eps});` : 'o_acc = o_acc + num;');
    });
    gen.emit('}');
  }
  const code = `// naive parallel form of ${p.name}: o[b,i,…] = Σ_terms Σ_{j∈M(i)} s(i,j) v_j
${DIMS_WGSL}
${bindingDecls(bindings)}
const WG = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${FLAT_INDEX}
  if (flat >= dims.b * dims.t * ${per}u) { return; }
  let e_flat = flat % ${per}u;
  let i = (flat / ${per}u) % dims.t;
  let b = flat / (${per}u * dims.t);
${unflat}
${gen.code()}
  out_o[flat] = o_acc;
}
`;
  return {
    variant: p.name,
    form: 'naive',
    kernels: [{ label: `${p.name}.naive`, code, bindings, workgroups: (b, t) => grid(b * t * per, WG), launch: { kind: 'grid', perToken: per, size: WG } }],
    buffers,
    outAxes: p.outAxes,
    sizes,
    schedule: { workgroup: WG },
  };
}
