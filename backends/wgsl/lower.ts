// Program (after passes) → Plan. The fused plan puts every term that shares a value stream into one chunked
// kernel, with feature maps computed in the kernel's prologue; the unfused plan materialises each feature in
// its own kernel, runs one chunked kernel per term and adds the parts in a combine kernel (for comparison).
import type { Id, OutputItem, Program, Term } from '../../src/ir/types.ts';
import { chunkKernel, frontier, segBuffer, segmentable, type ChunkSchedule } from './chunked.ts';
import { segmentScanKernel } from './segment-scan.ts';
import { stateLayout } from './recurrent.ts';
import { count, programBuffers, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import { bindingDecls, DIMS_WGSL, FLAT_INDEX, grid, wgslName, type Kernel, type Plan, type PlanBuffer } from './plan.ts';

export interface LowerOptions {
  readonly fuse: boolean;
  readonly schedule: ChunkSchedule;
  /** Also write the final decoding state (fused single-kernel plans only; the call starts at position 0). */
  readonly exportState?: boolean;
}

const WG = 64;

/** Terms grouped by the value they read (one chunk kernel per group when fused). */
function valueGroups(p: Program): Term[][] {
  const groups = new Map<Id, Term[]>();
  for (const t of p.terms) {
    if (t.form.kind === 'general') throw new Error(`term ${t.name} is unclassified: run the passes before lowering`);
    if (t.noncausal) throw new Error(`term ${t.name} is noncausal (it reads positions after i): ${p.name} runs in the parallel form only (--form parallel)`);
    groups.set(t.value, [...(groups.get(t.value) ?? []), t]);
  }
  return [...groups.values()];
}

function itemsFor(p: Program, terms: readonly Term[]): OutputItem[] {
  const names = new Set(terms.map((t) => t.name));
  return p.output.flatMap((it): OutputItem[] => {
    if (it.kind === 'term') return names.has(it.term) ? [it] : [];
    const sub = it.terms.filter((n) => names.has(n));
    return sub.length ? [{ ...it, terms: sub }] : [];
  });
}

export function lowerChunked(p: Program, sizes: Sizes, opts: LowerOptions): Plan {
  const buffers: PlanBuffer[] = programBuffers(p, sizes);
  const kernels: Kernel[] = [];
  const per = count(p.outAxes, sizes);
  const materialised = new Set<Id>();
  const groups = opts.fuse ? valueGroups(p) : valueGroups(p).flatMap((g) => g.map((t) => [t]));

  if (!opts.fuse) {
    for (const t of p.terms) {
      const ids: Id[] = [];
      if (t.form.kind === 'prefix') {
        ids.push(t.form.phi, t.form.psi);
        if (t.form.decay) ids.push(t.form.decay.kind === 'constant' ? t.form.decay.gamma : t.form.decay.alpha);
      } else {
        const fr = frontier(p, t.score);
        ids.push(...fr.query, ...fr.key);
      }
      if (p.nodes[t.value].op !== 'input') ids.push(t.value);
      for (const id of ids) {
        const n = p.nodes[id];
        if (materialised.has(id) || n.op === 'input' || n.type.side === 'param' || n.type.side === 'const') continue;
        materialised.add(id);
        const k = featureKernel(p, sizes, id);
        kernels.push(k.kernel);
        buffers.push(k.buffer);
      }
    }
  }

  const single = groups.length === 1 && opts.fuse;
  const state = opts.exportState ? stateLayout(p, sizes) : undefined;
  if (state && !single) throw new Error(`${p.name}: exporting the decoding state needs a single fused kernel (terms read different values)`);
  if (state) buffers.push(...state.buffers);
  const partials: { item: number; num: string; den: string }[] = [];
  const segments = opts.fuse ? opts.schedule.segment : undefined;
  if (segments) {
    const sg = segmentable(p, sizes);
    if (!single || state || !sg) throw new Error(`${p.name}: a segmented schedule needs one fused kernel over plain causal prefix terms (no decay, no groups) and no state export`);
    const C = opts.schedule.chunk;
    const nseg = (t: number) => Math.ceil(Math.ceil(t / C) / segments);
    for (const q of sg.S) {
      buffers.push({ name: segBuffer('S', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.F * sg.NR, shape: (b, t) => [b, sg.NS, nseg(t), q.F, sg.NR] });
      buffers.push({ name: segBuffer('z', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.F, shape: (b, t) => [b, sg.NS, nseg(t), q.F] });
    }
    const terms = groups[0];
    const items = itemsFor(p, terms);
    const spec = { program: p, sizes, terms, items, partial: false, schedule: opts.schedule, materialised };
    kernels.push(chunkKernel({ ...spec, label: `${p.name}.segment-state`, segmented: 'state' }));
    kernels.push(segmentScanKernel(p.name, sg.S, sg.NS, sg.NR, C, segments));
    kernels.push(chunkKernel({ ...spec, label: `${p.name}.chunked`, segmented: 'output' }));
    return plan(p, sizes, 'chunked', kernels, buffers, opts.schedule);
  }
  groups.forEach((terms, n) => {
    const label = single ? `${p.name}.chunked` : `${p.name}.${opts.fuse ? 'chunked' : 'term'}.${terms.map((t) => t.name).join('+')}`;
    const items = itemsFor(p, terms);
    kernels.push(chunkKernel({ program: p, sizes, terms, items, partial: !single, schedule: opts.schedule, materialised, label, exportState: state }));
    if (!single) {
      items.forEach((it, g) => {
        const item = p.output.findIndex((o) => (o.kind === 'term' ? [o.term] : o.terms).some((nm) => (it.kind === 'term' ? [it.term] : it.terms).includes(nm)));
        const num = `${label}:part${g}:num`;
        const den = `${label}:part${g}:den`;
        for (const name of [num, den]) buffers.push({ name, role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, per] });
        partials.push({ item, num, den });
      });
    }
    void n;
  });
  if (!single) kernels.push(combineKernel(p, per, partials));
  return plan(p, sizes, opts.fuse ? 'chunked' : 'unfused', kernels, buffers, opts.schedule);
}

function plan(p: Program, sizes: Sizes, form: 'chunked' | 'unfused', kernels: Kernel[], buffers: PlanBuffer[], s: ChunkSchedule): Plan {
  return {
    variant: p.name,
    form,
    kernels,
    buffers,
    outAxes: p.outAxes,
    sizes,
    schedule: { chunk: s.chunk, cols: s.cols, threads: s.threads, ...(s.segment ? { segment: s.segment } : {}) },
  };
}

/** Materialises one token/query/key-side node as a [b, t, …axes] buffer: one invocation per element. */
function featureKernel(p: Program, sizes: Sizes, id: Id): { kernel: Kernel; buffer: PlanBuffer } {
  const n = p.nodes[id];
  const per = count(n.type.axes, sizes);
  const reads: { buffer: string; write: boolean }[] = [];
  const gen = new ExprGen(p, sizes, (m, idx, where) => {
    if (m.op === 'input') {
      if (!reads.some((r) => r.buffer === `in:${m.name}`)) reads.push({ buffer: `in:${m.name}`, write: false });
      return `${wgslName(`in:${m.name}`)}[${offset(m.type.axes, sizes, idx, `b * dims.t + ${where}`)}]`;
    }
    if (m.op === 'param') {
      if (!reads.some((r) => r.buffer === `param:${m.name}`)) reads.push({ buffer: `param:${m.name}`, write: false });
      return `${wgslName(`param:${m.name}`)}[${offset(m.type.axes, sizes, idx)}]`;
    }
    return null;
  }, { i: 't', j: 't' }, 1);
  const idx: Record<string, string> = {};
  const lines: string[] = [];
  let stride = 1;
  for (let k = n.type.axes.length - 1; k >= 0; k--) {
    const a = n.type.axes[k];
    lines.unshift(`  let ix_${a} = (e_flat / ${stride}u) % ${sizes[a]}u;`);
    idx[a] = `ix_${a}`;
    stride *= sizes[a];
  }
  const v = gen.value(id, idx, 't');
  const bindings = [...reads, { buffer: `feat:${id}`, write: true }];
  const code = `// feature %${id} of ${p.name} materialised as [b, t, ${n.type.axes.join(', ')}]
${DIMS_WGSL}
${bindingDecls(bindings)}
const WG = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${FLAT_INDEX}
  if (flat >= dims.b * dims.t * ${per}u) { return; }
  let e_flat = flat % ${per}u;
  let t = (flat / ${per}u) % dims.t;
  let b = flat / (${per}u * dims.t);
${lines.join('\n')}
${gen.code()}
  ${wgslName(`feat:${id}`)}[flat] = ${v};
}
`;
  return {
    kernel: { label: `${p.name}.feature%${id}`, code, bindings, workgroups: (b, t) => grid(b * t * per, WG), launch: { kind: 'grid', perToken: per, size: WG } },
    buffer: { name: `feat:${id}`, role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, ...n.type.axes.map((a) => sizes[a])] },
  };
}

/** o = Σ plain parts + Σ_groups (Σ num) / (Σ den + eps). */
function combineKernel(p: Program, per: number, parts: readonly { item: number; num: string; den: string }[]): Kernel {
  const bindings = [...parts.flatMap((x) => [{ buffer: x.num, write: false }, { buffer: x.den, write: false }]), { buffer: 'out:o', write: true }];
  const lines = p.output.map((it, k) => {
    const mine = parts.filter((x) => x.item === k);
    const num = mine.map((x) => `${wgslName(x.num)}[flat]`).join(' + ') || '0.0';
    const den = mine.map((x) => `${wgslName(x.den)}[flat]`).join(' + ') || '0.0';
    return it.kind === 'norm' ? `  o = o + (${num}) / (${den} + ${it.eps});` : `  o = o + ${num};`;
  });
  const code = `// combine the parts of ${p.name}
${DIMS_WGSL}
${bindingDecls(bindings)}
const WG = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${FLAT_INDEX}
  if (flat >= dims.b * dims.t * ${per}u) { return; }
  var o: f32 = 0.0;
${lines.join('\n')}
  out_o[flat] = o;
}
`;
  return { label: `${p.name}.combine`, code, bindings, workgroups: (b, t) => grid(b * t * per, WG), launch: { kind: 'grid', perToken: per, size: WG } };
}
