// The middle launch of a segmented chunk plan (chunked.ts, ChunkSchedule.segment): an exclusive prefix sum
// over segments of every segment's own state, in place, so that segment g then starts from
//   S_in(g) = Σ_{g' < g} S_own(g')            (and likewise z)
// or, for a decayed term, S_in(g + 1) = exp(L_g) ⊙ S_in(g) + S_own(g), L_g the segment's Σ log decay of the element's
// gate value (chunked/segments.ts).
// One invocation per state element of one (batch, head slice); it walks the segments in order, LOADS at a time.
import { segBuffer, segmentCount } from './chunked/segments.ts';
import { flatIndex, KernelBuilder } from './kernel-builder.ts';
import { grid, type Kernel } from './plan.ts';

const WG = 64;
/** Segments whose states a thread loads before storing any (independent loads in flight). */
const LOADS = 8;

export function segmentScanKernel(name: string, states: readonly { k: number; F: number; gate?: number }[], NS: number, NR: number, chunk: number, segment: number, buffer: (what: 'S' | 'z' | 'g', k: number) => string = segBuffer): Kernel {
  const per = states.reduce((n, q) => n + q.F * NR + q.F, 0);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const parts = states.flatMap((q) => {
    const gates = q.gate ? { gate: q.gate, perFeature: q.gate > 1, L: kb.storage(buffer('g', q.k), false, { always: true }) } : undefined;
    return (['S', 'z'] as const).map((what) => ({ what, k: q.k, n: what === 'S' ? q.F * NR : q.F, buf: kb.storage(buffer(what, q.k), true, { always: true }), gates }));
  });
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * ${NS * per}u) { return; }`);
  const nseg = main.let('nseg', segmentCount(chunk, segment));
  const e = main.let('e', `${flat} % ${per}u`);
  main.define('s', `(${flat} / ${per}u) % ${NS}u`);
  main.define('b', `${flat} / ${NS * per}u`);
  let base = 0;
  for (const { what, k, n, buf, gates } of parts) {
    const from = base;
    main.block(`if (${e} >= ${from}u && ${e} < ${from + n}u)`, (x) => {
      x.comment(`${what}${k}${gates ? ', decayed' : ''}`);
      const at0 = x.let('x', `${e} - ${from}u`);
      // the element's gate value: its feature (S [F][NR], z [F]) for a per-feature decay, else the one
      const gi = gates ? x.let('gi', gates.perFeature ? (what === 'S' ? `${at0} / ${NR}u` : at0) : '0u') : null;
      const run = x.var('run', '0.0');
      // LOADS segments at a time: all their loads issued before any store (a store to the buffer the next
      // load reads from would otherwise order them), so a thread waits one memory latency per LOADS segments.
      x.for('g0', '0u', (g0) => `${g0} < ${nseg}`, (l, g0) => {
        const base = l.let('base', `((b * ${NS}u + s) * ${nseg} + ${g0}) * ${n}u + ${at0}`);
        const gbase = gates ? l.let('gbase', `((b * ${NS}u + s) * ${nseg} + ${g0}) * ${gates.gate}u + ${gi}`) : null;
        const own = Array.from({ length: LOADS }, (_, i) => {
          const v = l.var(`own${i}`, '0.0');
          const keep = gates ? l.var(`keep${i}`, '1.0') : null;
          l.line(`if (${g0} + ${i}u < ${nseg}) { ${v} = ${kb.use(buf)}[${base} + ${i}u * ${n}u];${keep ? ` ${keep} = exp(${kb.use(gates!.L)}[${gbase} + ${i}u * ${gates!.gate}u]);` : ''} }`);
          return { v, keep };
        });
        own.forEach(({ v, keep }, i) => l.line(`if (${g0} + ${i}u < ${nseg}) { ${kb.use(buf)}[${base} + ${i}u * ${n}u] = ${run}; ${run} = ${keep ? `${keep} * ${run}` : run} + ${v}; }`));
      }, { step: (g0) => `${g0} += ${LOADS}u` });
    });
    base += n;
  }
  return kb.build({
    label: `${name}.segment-scan`,
    comment: [`exclusive scan over segments of ${name}'s segment states (chunk ${chunk}, ${segment} chunks per segment)`],
    workgroups: (b) => grid(b * NS * per, WG),
  });
}
