// The recurrent form on the GPU: one workgroup per (batch b, head slice s) walks the call's tokens one by one,
// reading and writing the state in global memory. What decoding runs (t = 1 per call); also the GPU's
// `--form recurrent`. State per prefix term: S [b, NS, F, NR] and z [b, NS, F] (past_groups terms keep the
// open group in So, zo); per bounded term: rings of the last RING positions' values and key features.
//
//   S ← decay_t ⊙ S + ψ_t ⊗ v_t,   o_t = Σ φ_t·S (+ window/group taps read from the rings), normalised per group.
import { lagRange } from '../../src/ir/masks.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
import { frontier, layoutOf } from './chunked.ts';
import { count, maskCondition, programBuffers, type Sizes } from './common.ts';
import { ExprGen, offset, type Resolver } from './expr.ts';
import { bindingDecls, DIMS_WGSL, wgslName, type Kernel, type Plan, type PlanBuffer } from './plan.ts';

const WG = 64;
/** Rows of S a thread reads before writing any (registers per thread); a divisor of the feature count. */
const MAX_STATE_UNROLL = 16;

function stateUnroll(F: number): number {
  let u = Math.min(MAX_STATE_UNROLL, F);
  while (F % u !== 0) u--;
  return u;
}

export interface StateLayout {
  readonly prefix: readonly { term: Term; k: number; F: number; open: boolean }[];
  /**
   * Nodes kept in rings (bounded terms' values and key features), with their width per ring slot. A node
   * without the head axes (a position, say) keeps one copy per head slice (`sliced`: the node's own width),
   * so that workgroups of different heads, which run through a call's tokens at their own pace, never write
   * a slot another is about to read.
   */
  readonly rings: readonly { id: Id; per: number; sliced: number }[];
  readonly ring: number; // RING: positions kept
  readonly buffers: readonly PlanBuffer[];
}

/**
 * WGSL index into ring `r` at slot `slot` (a u32 expression < RING), `off` within the node's axes. Reads the
 * kernel's `b` (batch) and `s` (head slice) variables.
 */
export function ringIndex(r: StateLayout['rings'][number], RING: number, slot: string, off: string): string {
  return `(b * ${RING}u + ${slot}) * ${r.per}u + ${r.sliced ? `s * ${r.sliced}u + ` : ''}${off}`;
}

export function stateLayout(p: Program, sizes: Sizes): StateLayout {
  const L = layoutOf(p, p.terms);
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const prefix: StateLayout['prefix'][number][] = [];
  const ringIds = new Set<Id>();
  for (const t of p.terms) {
    if (t.noncausal) throw new Error(`term ${t.name} is noncausal (it reads future positions): ${p.name} cannot be decoded; it runs in the parallel form only`);
    if (t.form.kind === 'prefix') {
      prefix.push({ term: t, k: prefix.length, F: t.form.feature ? sizes[t.form.feature] : 1, open: t.mask[0].kind === 'past_groups' });
    } else {
      ringIds.add(t.value);
      for (const id of frontier(p, t.score).key) ringIds.add(id);
    }
  }
  const ring = L.halo + 1;
  const rings = [...ringIds].sort((a, b) => a - b).map((id) => {
    const axes = p.nodes[id].type.axes;
    const w = count(axes, sizes);
    const sliced = NS > 1 && !L.head.every((a) => axes.includes(a)) ? w : 0;
    return { id, per: sliced ? NS * w : w, sliced };
  });
  const buffers: PlanBuffer[] = [];
  const add = (name: string, per: number) => buffers.push({ name, role: 'state', floats: (b) => b * per, shape: (b) => [b, per] });
  for (const q of prefix) {
    add(`state:S${q.k}`, NS * q.F * NR);
    add(`state:z${q.k}`, NS * q.F);
    if (q.open) {
      add(`state:So${q.k}`, NS * q.F * NR);
      add(`state:zo${q.k}`, NS * q.F);
    }
  }
  for (const r of rings) add(`state:ring${r.id}`, ring * r.per);
  return { prefix, rings, ring, buffers };
}

export function recurrentPlan(p: Program, sizes: Sizes): Plan {
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes);
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const per = count(p.outAxes, sizes);
  const RING = st.ring;
  const used = new Set<string>();
  const use = (name: string) => {
    used.add(name);
    return wgslName(name);
  };
  const ringOf = new Map(st.rings.map((r) => [r.id, r]));
  // Inputs are at row (position − pos0) of this call's buffers.
  const base: Resolver = (n, idx, where) => {
    if (n.op === 'input') return `${use(`in:${n.name}`)}[${offset(n.type.axes, sizes, idx, `b * dims.t + (${where} - dims.pos0)`)}]`;
    if (n.op === 'param') return `${use(`param:${n.name}`)}[${offset(n.type.axes, sizes, idx)}]`;
    return null;
  };
  const head: Record<string, string> = {};
  const lines: string[] = [];
  {
    let stride = 1;
    for (let k = L.head.length - 1; k >= 0; k--) {
      const a = L.head[k];
      lines.unshift(`  let hx_${a} = (s / ${stride}u) % ${sizes[a]}u;`);
      head[a] = `hx_${a}`;
      stride *= sizes[a];
    }
  }
  const colIdx = (col: string, tag: string) => {
    const idx: Record<string, string> = {};
    const out: string[] = [];
    let stride = 1;
    for (let k = L.rest.length - 1; k >= 0; k--) {
      const a = L.rest[k];
      out.unshift(`let ${tag}_${a} = (${col} / ${stride}u) % ${sizes[a]}u;`);
      idx[a] = `${tag}_${a}`;
      stride *= sizes[a];
    }
    return { lines: out, idx };
  };
  const decls: string[] = [];
  const body: string[] = [];
  const line = (s: string) => body.push(s);
  const gen = (indent: number, tag: string, pos: { i: string; j: string }, r: Resolver = base) => new ExprGen(p, sizes, r, pos, indent, tag);

  line('  for (var tok: u32 = 0u; tok < dims.t; tok++) {');
  line('    let pos = dims.pos0 + tok;');
  // Stage φ, ψ, log-decay and the updated z of every prefix term.
  for (const q of st.prefix) {
    const f = q.term.form as Extract<Term['form'], { kind: 'prefix' }>;
    decls.push(`var<workgroup> phi${q.k}: array<f32, ${q.F}>;`, `var<workgroup> psi${q.k}: array<f32, ${q.F}>;`, `var<workgroup> lg${q.k}: array<f32, ${q.F}>;`, `var<workgroup> zn${q.k}: array<f32, ${q.F}>;`);
    const gateId = f.decay ? (f.decay.kind === 'constant' ? f.decay.gamma : f.decay.alpha) : null;
    const gatePerF = gateId !== null && !!f.feature && p.nodes[gateId].type.axes.includes(f.feature);
    line(`    for (var x: u32 = lid; x < ${q.F}u; x += WG) { // ${q.term.name}: φ, ψ, decay at this token`);
    const g = gen(3, `p${q.k}_`, { i: 'pos', j: 'pos' });
    const idx: Record<string, string> = { ...head };
    if (f.feature) idx[f.feature] = 'x';
    const phi = g.value(f.phi, idx, 'pos');
    const psi = g.value(f.psi, idx, 'pos');
    const gate = gateId !== null ? g.value(gateId, gatePerF ? idx : { ...head }, 'pos') : null;
    body.push(g.code());
    line(`      phi${q.k}[x] = ${phi}; psi${q.k}[x] = ${psi};`);
    line(`      lg${q.k}[x] = ${gate ? `log(max(${gate}, 1e-30))` : '0.0'};`);
    const zi = `(b * ${NS}u + s) * ${q.F}u + x`;
    if (q.open) {
      line(`      if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u) { ${use(`state:z${q.k}`)}[${zi}] += ${use(`state:zo${q.k}`)}[${zi}]; ${use(`state:zo${q.k}`)}[${zi}] = 0.0; }`);
      line(`      ${use(`state:zo${q.k}`)}[${zi}] += psi${q.k}[x];`);
      line(`      zn${q.k}[x] = ${use(`state:z${q.k}`)}[${zi}];`);
    } else {
      line(`      let zv = exp(lg${q.k}[x]) * ${use(`state:z${q.k}`)}[${zi}] + psi${q.k}[x];`);
      line(`      ${use(`state:z${q.k}`)}[${zi}] = zv; zn${q.k}[x] = zv;`);
    }
    line('    }');
  }
  // Query features of bounded terms for this token; key features and values go into the rings.
  const qf = new Map<Id, { name: string; axes: string[]; W: number }>();
  for (const t of p.terms) {
    if (t.form.kind === 'prefix') continue;
    for (const id of frontier(p, t.score).query) {
      if (qf.has(id)) continue;
      const axes = p.nodes[id].type.axes.filter((a) => !L.head.includes(a));
      const W = count(axes, sizes);
      qf.set(id, { name: `qf${id}`, axes, W });
      decls.push(`var<workgroup> qf${id}: array<f32, ${W}>;`);
    }
  }
  const flatIdx = (axes: readonly string[], flat: string, tag: string) => {
    const idx: Record<string, string> = {};
    const out: string[] = [];
    let stride = 1;
    for (let k = axes.length - 1; k >= 0; k--) {
      out.unshift(`let ${tag}_${axes[k]} = (${flat} / ${stride}u) % ${sizes[axes[k]]}u;`);
      idx[axes[k]] = `${tag}_${axes[k]}`;
      stride *= sizes[axes[k]];
    }
    return { lines: out, idx };
  };
  for (const [id, f] of qf) {
    line(`    for (var x: u32 = lid; x < ${f.W}u; x += WG) {`);
    const { lines: ls, idx } = flatIdx(f.axes, 'x', `q${id}`);
    for (const l of ls) line('      ' + l);
    const g = gen(3, `q${id}_`, { i: 'pos', j: 'pos' });
    const v = g.value(id, { ...head, ...idx }, 'pos');
    body.push(g.code());
    line(`      ${f.name}[x] = ${v};`);
    line('    }');
  }
  for (const r of st.rings) {
    const n = p.nodes[r.id];
    const own = n.type.axes.filter((a) => !L.head.includes(a));
    const W = count(own, sizes);
    line(`    for (var x: u32 = lid; x < ${W}u; x += WG) { // ring of %${r.id}`);
    const { lines: ls, idx } = flatIdx(own, 'x', `r${r.id}`);
    for (const l of ls) line('      ' + l);
    const g = gen(3, `r${r.id}_`, { i: 'pos', j: 'pos' });
    const full = { ...head, ...idx };
    const v = g.value(r.id, full, 'pos');
    body.push(g.code());
    line(`      ${use(`state:ring${r.id}`)}[${ringIndex(r, RING, `pos % ${RING}u`, offset(n.type.axes, sizes, full))}] = ${v};`);
    line('    }');
  }
  line('    storageBarrier();');
  line('    workgroupBarrier();');
  // Per output column: update S and accumulate every output item.
  const ringRead: Resolver = (n, idx, where) => {
    const f = qf.get(n.id);
    if (f) return `${f.name}[${offset(f.axes, sizes, idx)}]`;
    const r = ringOf.get(n.id);
    if (r && n.type.side === 'key') return `${use(`state:ring${r.id}`)}[${ringIndex(r, RING, `ja % ${RING}u`, offset(n.type.axes, sizes, idx))}]`;
    return base(n, idx, where);
  };
  line(`    for (var col: u32 = lid; col < ${NR}u; col += WG) {`);
  const { lines: cl, idx: cidx } = colIdx('col', 'oc');
  for (const l of cl) line('      ' + l);
  const full: Record<string, string> = { ...head, ...cidx };
  line('      var o_acc: f32 = 0.0;');
  const vg = gen(3, 'v_', { i: 'pos', j: 'pos' });
  const vcur = new Map<Id, string>();
  for (const t of p.terms) if (t.form.kind === 'prefix' && !vcur.has(t.value)) vcur.set(t.value, vg.value(t.value, full, 'pos'));
  body.push(vg.code());
  p.output.forEach((it, g) => {
    const names = it.kind === 'term' ? [it.term] : it.terms;
    line(`      { // ${it.kind === 'norm' ? `normalize(${names.join(' + ')})` : names[0]}`);
    line('        var num: f32 = 0.0; var den: f32 = 0.0;');
    for (const name of names) {
      const t = p.terms.find((x) => x.name === name)!;
      if (t.form.kind === 'prefix') {
        const q = st.prefix.find((x) => x.term === t)!;
        const si = `((b * ${NS}u + s) * ${q.F}u + f) * ${NR}u + col`;
        const S = use(`state:S${q.k}`);
        if (q.open) {
          const So = use(`state:So${q.k}`);
          line(`        for (var f: u32 = 0u; f < ${q.F}u; f++) { // ${t.name}`);
          line(`          if (pos % ${(t.mask[0] as { size: number }).size}u == 0u && pos > 0u) { ${S}[${si}] += ${So}[${si}]; ${So}[${si}] = 0.0; }`);
          line(`          ${So}[${si}] += psi${q.k}[f] * ${vcur.get(t.value)};`);
          line(`          num = num + phi${q.k}[f] * ${S}[${si}]; den = den + phi${q.k}[f] * zn${q.k}[f];`);
        } else {
          // U rows of S are read before any is written, so a step waits for F / U memory round trips, not F
          // (a store to S between the loads would keep the compiler from issuing the next load early).
          const U = stateUnroll(q.F);
          const perF = !!(t.form.decay && t.form.feature && p.nodes[t.form.decay.kind === 'constant' ? t.form.decay.gamma : t.form.decay.alpha].type.axes.includes(t.form.feature));
          const at = (u: number) => `((b * ${NS}u + s) * ${q.F}u + f0 + ${u}u) * ${NR}u + col`;
          line(`        for (var f0: u32 = 0u; f0 < ${q.F}u; f0 += ${U}u) { // ${t.name}: ${U} rows of S in flight`);
          for (let u = 0; u < U; u++) line(`          let s${u} = ${S}[${at(u)}];`);
          for (let u = 0; u < U; u++) {
            const f = `f0 + ${u}u`;
            line(`          { let sv = exp(lg${q.k}[${perF ? f : '0u'}]) * s${u} + psi${q.k}[${f}] * ${vcur.get(t.value)}; ${S}[${at(u)}] = sv; num = num + phi${q.k}[${f}] * sv; den = den + phi${q.k}[${f}] * zn${q.k}[${f}]; }`);
          }
        }
        line('        }');
      } else {
        const r = lagRange(t.mask)!;
        line(`        for (var lag: u32 = ${Math.max(0, r[0])}u; lag <= min(${r[1]}u, pos); lag++) { // ${t.name}`);
        line('          let ja = pos - lag;');
        line(`          if (!(${maskCondition(t.mask, 'pos', 'ja')})) { continue; }`);
        const g2 = gen(5, `b${g}_${name.replace(/\W/g, '_')}_`, { i: 'pos', j: 'ja' }, ringRead);
        const sv = g2.value(t.score, full, 'ja');
        body.push(g2.code());
        const vr = ringOf.get(t.value)!;
        line(`          num = num + ${sv} * ${use(`state:ring${vr.id}`)}[${ringIndex(vr, RING, `ja % ${RING}u`, offset(p.nodes[t.value].type.axes, sizes, full))}];`);
        line(`          den = den + ${sv};`);
        line('        }');
      }
    }
    line(it.kind === 'norm' ? `        o_acc = o_acc + num / (den + ${it.eps});` : '        o_acc = o_acc + num;');
    line('      }');
  });
  line(`      out_o[(b * dims.t + tok) * ${per}u + ${offset(p.outAxes, sizes, full)}] = o_acc;`);
  line('    }');
  line('    storageBarrier();');
  line('    workgroupBarrier();');
  line('  }');

  const buffers = [...programBuffers(p, sizes), ...st.buffers];
  const bindings = buffers
    .filter((b) => used.has(b.name) || b.name === 'out:o')
    .map((b) => ({ buffer: b.name, write: b.role === 'output' || b.role === 'state' }));
  const code = `// recurrent step kernel of ${p.name}: tokens of this call in order, state in global memory
${DIMS_WGSL}
${bindingDecls(bindings)}
const WG = ${WG}u;
${decls.join('\n')}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x;
  let b = wid.y;
${lines.join('\n')}
${body.join('\n')}
}
`;
  const kernel: Kernel = { label: `${p.name}.recurrent`, code, bindings, workgroups: (b) => [NS, b, 1] };
  return { variant: p.name, form: 'recurrent', kernels: [kernel], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: WG } };
}
