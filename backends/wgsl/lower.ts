// Program (after passes) → Plan. The fused plan puts every term that shares a value stream into one chunked
// kernel, with feature maps computed in the kernel's prologue; the unfused plan materialises each feature in
// its own kernel, runs one chunked kernel per term and adds the parts in a combine kernel (for comparison).
// Between the two, a fused plan with a *prologue*: chosen feature nodes (feature-nodes.ts) materialised by the
// unfused plan's feature kernels, once per token, and read by the fused chunk kernel instead of being recomputed
// per chunk and column tile (fusion-model.ts decides which; hedgehog's softmax features, llama's L2 norms).
// A program with noncausal terms (the leaky ablation) in output items of their own runs its causal items so and the
// noncausal ones in the parallel form over their bounded window, added into o (no decoding state: it cannot decode).
import type { Id, OutputItem, Program, Term } from '../../src/ir/types.ts';
import { chunkKernel, segBuffer, segmentable, type ChunkSchedule } from './chunked.ts';
import { itemsOver, kernelItems, outputPart, partDen, valueGroups, type ChunkKernelSpec, type KeptParts } from './chunked/analysis.ts';
import { count, programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen } from './expr.ts';
import { featureNodes, unfusedFeatures } from './feature-nodes.ts';
import { featureRowKernel } from './feature-rows.ts';
import { featureTiledTerm, tileable } from './feature-tiled.ts';
import { featureTiledFusedPlan } from './feature-tiled-plan.ts';
import { eachGridElement, GRID_ELEMENTS, GRID_WG, KernelBuilder, tokenElement } from './kernel-builder.ts';
import { stateLayout } from './layout.ts';
import { grid, type Kernel, type Plan, type PlanBuffer } from './plan.ts';
import { segmentScanKernel } from './segment-scan.ts';
import { naivePlan } from './naive.ts';
import { isSoftmaxProgram } from './softmax-analysis.ts';
import { softmaxChunkedPlan } from './softmax-chunked.ts';

export interface LowerOptions {
  readonly fuse: boolean;
  readonly schedule: ChunkSchedule;
  /** Also write the final decoding state (fused single-kernel plans only; the call starts at position 0). */
  readonly exportState?: boolean;
  /** Positions softmax attention's key/value cache holds (softmax-analysis.ts); ignored by other variants. */
  readonly maxLength?: number;
  /**
   * Also write each normalised item's numerator n and denominator z (fused single-kernel plans only): a training
   * forward keeps them so that the backward need not recompute them (keptBuffer names the buffers).
   */
  readonly keepNormalisers?: boolean;
  /**
   * Unfused plans only: run every term `tileable` admits over tiles of this many features (feature-tiled.ts), for
   * feature axes whose chunk state does not fit workgroup memory (based's Taylor map).
   */
  readonly featureTile?: number;
  /**
   * Fused plans with a featureTile (feature-tiled-plan.ts): the tiled terms' chunk, columns and threads, when they
   * differ from the other terms' (`schedule`).
   */
  readonly tileSchedule?: ChunkSchedule;
  /** The tiled terms' kernel: register-blocked (feature-tiled-blocked.ts, the default) or the plain one (for comparison). */
  readonly tiledKernel?: 'blocked' | 'plain';
  /**
   * Fused plans only: feature nodes (featureNodes) computed once per token by a feature kernel before the chunk
   * kernel, which reads them; the others it computes inline. Works with every fused plan: a single kernel, its
   * exported state, kept normalisers, segmented schedules (their launches all read the same buffers).
   */
  readonly prologue?: ReadonlySet<Id>;
  /**
   * The chunk kernels' staging loads issued a chunk ahead where they admit it (ChunkKernelSpec.prefetch): absent or
   * true, on; false, staged as before — an internal switch for benches timing both, not a schedule choice.
   */
  readonly prefetch?: boolean;
  /**
   * The chunk kernels' φ, z (and ψ) as vec4 in workgroup memory, read four features a trip (ChunkKernelSpec.vec4)
   * where a term admits it: absent, chunked/analysis.ts CHUNK_DEFAULTS (off until the H200 has timed it); a bench's
   * `v4` schedule suffix.
   */
  readonly vec4?: boolean;
  /** The chunk kernels' convolution tap weights computed once before the chunk loop (ChunkKernelSpec.hoistTaps): absent, CHUNK_DEFAULTS; suffix `ht`. */
  readonly hoistTaps?: boolean;
  /**
   * The chunk kernels' outputs on half the workgroup beside the state update on the other half (ChunkKernelSpec.overlap,
   * chunked/teams.ts) where a kernel admits it: absent, CHUNK_DEFAULTS; a bench's `ov` suffix forces it on, `so` off.
   */
  readonly overlap?: boolean;
  /** Softmax's tiled flash kernel: keys and values in one workgroup array, held in registers a phase early (softmax-tiled.ts TiledShape.shareKV): absent, on; suffix `kv` / `sk` on / off. */
  readonly shareKV?: boolean;
  /** Overlapped kernels' score matrices as row quads (ChunkKernelSpec.rowQuads): absent, CHUNK_DEFAULTS; suffix `rq` / `sq` on / off. */
  readonly rowQuads?: boolean;
  /** Overlapped kernels' row denominators summed by the output team (ChunkKernelSpec.outputDen): absent, CHUNK_DEFAULTS; suffix `od` / `pd` on / off. */
  readonly outputDen?: boolean;
  /** Overlapped kernels' φ·S_prev computed by the fold team in the score phase (ChunkKernelSpec.earlyState): absent, CHUNK_DEFAULTS; suffix `es` / `le` on / off. */
  readonly earlyState?: boolean;
  /**
   * The chunk kernels' prefix state in subgroup lanes' registers (ChunkKernelSpec.resident, chunked/resident.ts), for
   * an adapter of fixed subgroup size `subgroupSize` (Gpu.subgroupSize); refused, naming why, where it does not
   * apply. Off unless asked (a bench's `rs` schedule suffix). In the unfused plan it applies to the kernels with a
   * prefix term only, which then run at `residentSchedule` (default `schedule`): the stateless kernels keep theirs.
   */
  readonly resident?: boolean;
  readonly subgroupSize?: number;
  /** The unfused plan's prefix term kernels' schedule where `resident` (chunk, columns, invocations; no segments). */
  readonly residentSchedule?: ChunkSchedule;
}

/** The chunk kernel spec's resident switch and the subgroup size it is generated for, where asked. */
const residentOf = (opts: LowerOptions) => (opts.resident ? { resident: true, subgroupSize: opts.subgroupSize } : {});

/** The buffer a training forward keeps output item k's numerator ('n', [b, t, outAxes]) or denominator ('z') in. */
export const keptBuffer = (what: 'n' | 'z', k: number) => `keep:${what}.${k}`;

/**
 * The normalised output items (by index) and the axes of their denominators: the output axes their scores have.
 * Softmax attention's item is not one of them: its n and z overflow, and its gradient recomputes lse and o instead.
 */
export function normalisedItems(p: Program): { k: number; terms: readonly string[]; denAxes: readonly string[] }[] {
  return p.output.flatMap((it, k) => {
    if (it.kind !== 'norm' || it.terms.some((n) => p.terms.find((t) => t.name === n)?.form.kind === 'softmax')) return [];
    const scoreAxes = new Set(it.terms.flatMap((n) => p.nodes[p.terms.find((t) => t.name === n)!.score].type.axes));
    return [{ k, terms: it.terms, denAxes: p.outAxes.filter((a) => scoreAxes.has(a)) }];
  });
}

export function lowerChunked(p: Program, sizes: Sizes, opts: LowerOptions): Plan {
  // Softmax attention has a kernel family of its own (a flash kernel; nothing to fuse or unfuse).
  if (isSoftmaxProgram(p)) {
    if (opts.resident) throw new Error(`${p.name}: rs (the state in subgroup lanes' registers) does not apply: softmax attention's flash kernel keeps no prefix state`);
    if (opts.prologue?.size) throw new Error(`${p.name}: softmax attention's flash kernel has no feature maps to compute in a prologue`);
    return softmaxChunkedPlan(p, sizes, opts);
  }
  if (p.terms.some((t) => t.noncausal)) return lowerWithNoncausal(p, sizes, opts);
  const buffers: PlanBuffer[] = programBuffers(p, sizes);
  const kernels: Kernel[] = [];
  const per = count(p.outAxes, sizes);
  const materialised = new Set<Id>();
  const groups = opts.fuse ? valueGroups(p) : valueGroups(p).flatMap((g) => g.map((t) => [t]));
  if (opts.featureTile !== undefined && opts.fuse) {
    // the fused plan over feature tiles (feature-tiled-plan.ts): the tiles at tileSchedule, the other terms at the schedule
    if (opts.resident) throw new Error(`${p.name}: rs (the state in subgroup lanes' registers) does not apply: the fused plan over feature tiles has kernels of its own`);
    if (opts.exportState || opts.keepNormalisers || opts.prologue?.size || opts.schedule.segment) throw new Error(`${p.name}: the fused plan over feature tiles exports no state, keeps no normalisers, has no prologue or segments`);
    const tile = { ...(opts.tileSchedule ?? opts.schedule), featureTile: opts.featureTile, blocked: opts.tiledKernel !== 'plain' };
    return featureTiledFusedPlan(p, sizes, opts.schedule, { chunk: tile.chunk, cols: tile.cols, threads: tile.threads, featureTile: tile.featureTile, blocked: tile.blocked }, opts.prefetch);
  }
  const tiled = (t: Term) => opts.featureTile !== undefined && tileable(t);

  const prologue = [...(opts.prologue ?? [])];
  if (prologue.length) {
    if (!opts.fuse) throw new Error(`${p.name}: a feature prologue is for the fused plan (the unfused plan materialises every feature)`);
    const candidates = new Set(featureNodes(p));
    const bad = prologue.filter((id) => !candidates.has(id));
    if (bad.length) throw new Error(`${p.name}: ${bad.map((id) => `%${id}`).join(', ')} ${bad.length > 1 ? 'are not feature nodes' : 'is not a feature node'} of its chunk kernel (those are ${[...candidates].map((id) => `%${id}`).join(', ') || 'none'})`);
  }
  // The unfused plan materialises the feature nodes of its untiled terms that compute something (feature-nodes.ts
  // unfusedFeatures; tiled terms compute theirs a tile at a time).
  const toMaterialise = opts.fuse ? prologue.sort((a, b) => a - b) : unfusedFeatures(p, sizes, p.terms.filter((t) => !tiled(t)));
  for (const id of toMaterialise) {
    materialised.add(id);
    const k = featureKernel(p, sizes, id);
    kernels.push(k.kernel);
    buffers.push(k.buffer);
  }

  const single = groups.length === 1 && opts.fuse;
  const state = opts.exportState ? stateLayout(p, sizes) : undefined;
  // (an unfused plan's kernels each export their own part: a prefix kernel its term's S, z (So, zo), every kernel the
  // rings of the rows it stages)
  if (state && !single && (opts.fuse || opts.featureTile !== undefined)) throw new Error(`${p.name}: exporting the decoding state needs a single fused kernel or the unfused plan (terms read different values)`);
  if (state) buffers.push(...state.buffers);
  const partials: { item: number; num: string; den?: string }[] = [];
  const segments = opts.fuse ? opts.schedule.segment : undefined;
  if (segments) {
    const sg = segmentable(p, sizes);
    if (!single || !sg) throw new Error(`${p.name}: a segmented schedule needs one fused kernel over prefix terms that are plainly causal (decayed or not) or past_groups without decay`);
    if (!segmentable(p, sizes, opts.schedule)) throw new Error(`${p.name}: a segmented schedule's segments must start at its past_groups terms' group starts: ${segments} chunks of ${opts.schedule.chunk} rows is not a multiple of ${sg.align} rows`);
    const C = opts.schedule.chunk;
    const nseg = (t: number) => Math.ceil(Math.ceil(t / C) / segments);
    for (const q of sg.S) {
      buffers.push({ name: segBuffer('S', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.F * sg.NR, shape: (b, t) => [b, sg.NS, nseg(t), q.F, sg.NR] });
      buffers.push({ name: segBuffer('z', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.F, shape: (b, t) => [b, sg.NS, nseg(t), q.F] });
      // a decayed term's Σ log decay per segment (segments.ts): how much of a segment's incoming state reaches its end
      if (q.gate) buffers.push({ name: segBuffer('g', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.gate, shape: (b, t) => [b, sg.NS, nseg(t), q.gate] });
    }
    const terms = groups[0];
    const items = itemsOver(p.output, terms);
    const spec = { program: p, sizes, terms, items, partial: false, schedule: opts.schedule, materialised, prefetch: opts.prefetch, vec4: opts.vec4, hoistTaps: opts.hoistTaps, overlap: opts.overlap, rowQuads: opts.rowQuads, outputDen: opts.outputDen, earlyState: opts.earlyState, ...residentOf(opts) };
    kernels.push(chunkKernel({ ...spec, label: `${p.name}.segment-state`, segmented: 'state' }));
    // over spans, the output launch sums its incoming state from the segments' own (chunked/segments.ts sumsOwnSpans)
    const spans = (opts.schedule.span ?? 1) > 1 && !spec.resident;
    if (!spans) kernels.push(segmentScanKernel(p.name, sg.S, sg.NS, sg.NR, C, segments));
    // The output launch's last segment also writes the decoding state (the model's prefill: b·heads·tiles·segments
    // workgroups rather than one walk per b·heads·tiles).
    kernels.push(chunkKernel({ ...spec, label: `${p.name}.chunked`, segmented: 'output', ...(state && { exportState: state }) }));
    return plan(p, sizes, 'chunked', kernels, buffers, opts.schedule);
  }
  if (opts.keepNormalisers && !single) throw new Error(`${p.name}: keeping the normalisers needs a single fused kernel (terms read different values)`);
  groups.forEach((terms) => {
    const label = single ? `${p.name}.chunked` : `${p.name}.${opts.fuse ? 'chunked' : 'term'}.${terms.map((t) => t.name).join('+')}`;
    const items = itemsOver(p.output, terms);
    const keep = single && opts.keepNormalisers ? keptParts(p, sizes, items, buffers) : undefined;
    const tile = !single && tiled(terms[0]) ? { ...opts.schedule, featureTile: opts.featureTile!, blocked: opts.tiledKernel !== 'plain' } : undefined;
    if (tile && items.length !== 1) throw new Error(`${p.name}: term ${terms[0].name} is in ${items.length} output items; a feature-tiled term must be in one`);
    // The unfused plan's kernels without state (quadratic terms within groups, windows) over segments where its schedule
    // has them: their chunks are independent, so each segment's workgroups walk only its chunks (the halo rows before a
    // segment are staged from memory as every chunk's are) — b·heads·tiles·segments workgroups, no scan.
    const hasState = terms.some((t) => t.form.kind === 'prefix');
    const stateless = !opts.fuse && opts.schedule.segment && !hasState ? { segmented: 'output' as const } : {};
    // the unfused plan's prefix term kernels in lanes' registers at their own schedule; its stateless kernels at the plan's
    const lanes = opts.fuse || hasState ? residentOf(opts) : {};
    const schedule = !opts.fuse && hasState && opts.resident && opts.residentSchedule ? opts.residentSchedule : opts.schedule;
    const spec = { program: p, sizes, terms, items, partial: !single, schedule, materialised, label, exportState: state, prefetch: opts.prefetch, vec4: opts.vec4, hoistTaps: opts.hoistTaps, overlap: opts.overlap, rowQuads: opts.rowQuads, outputDen: opts.outputDen, earlyState: opts.earlyState, ...lanes, ...(keep ? { keep } : {}), ...stateless };
    // a prefix kernel at its own schedule over segments (residentSchedule.segment): state launch, scan, output launch
    if (!tile && !opts.fuse && hasState && opts.resident && schedule.segment) kernels.push(...segmentedTermKernels(p, sizes, spec, buffers));
    else if (!tile) kernels.push(chunkKernel(spec));
    if (!single) {
      items.forEach((it, g) => {
        const item = p.output.findIndex((o) => (o.kind === 'term' ? [o.term] : o.terms).some((nm) => (it.kind === 'term' ? [it.term] : it.terms).includes(nm)));
        const num = `${label}:part${g}:num`;
        const den = `${label}:part${g}:den`;
        // a chunk kernel's unnormalised part has no denominator (chunked/analysis.ts partDen); a feature-tiled one writes it
        const withDen = !!tile || partDen(it);
        for (const name of withDen ? [num, den] : [num]) buffers.push({ name, role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, per] });
        partials.push({ item, num, ...(withDen && { den }) });
        if (tile) {
          const k = featureTiledTerm(p, sizes, terms[0], tile, label, num, den);
          kernels.push(...k.kernels);
          buffers.push(...k.buffers);
        }
      });
    }
  });
  if (!single) kernels.push(combineKernel(p, per, partials));
  const schedule = opts.featureTile !== undefined ? { ...opts.schedule, featureTile: opts.featureTile } : opts.schedule;
  return plan(p, sizes, opts.fuse ? 'chunked' : 'unfused', kernels, buffers, schedule);
}

/**
 * An unfused plan's prefix term kernel over segments (its resident schedule's `segment`, and `span`): the segment-state
 * launch, the scan over segments, the output launch writing the term's part (and its share of the decoding state), as
 * the fused segmented plan runs them; the segment states in the plan's seg:… buffers, so one prefix kernel a plan.
 */
function segmentedTermKernels(p: Program, sizes: Sizes, spec: ChunkKernelSpec, buffers: PlanBuffer[]): Kernel[] {
  const { schedule } = spec;
  const segment = schedule.segment!;
  const sg = segmentable(p, sizes, schedule);
  if (!sg || p.terms.filter((t) => t.form.kind === 'prefix').length !== 1) throw new Error(`${p.name}: an unfused plan's prefix kernel runs over segments only as its one prefix kernel, plainly causal (decayed or not) or past_groups with segments at group starts`);
  const C = schedule.chunk;
  const nseg = (t: number) => Math.ceil(Math.ceil(t / C) / segment);
  const [q] = sg.S;
  buffers.push({ name: segBuffer('S', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.F * sg.NR, shape: (b, t) => [b, sg.NS, nseg(t), q.F, sg.NR] });
  buffers.push({ name: segBuffer('z', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.F, shape: (b, t) => [b, sg.NS, nseg(t), q.F] });
  if (q.gate) buffers.push({ name: segBuffer('g', q.k), role: 'scratch', floats: (b, t) => b * sg.NS * nseg(t) * q.gate, shape: (b, t) => [b, sg.NS, nseg(t), q.gate] });
  const { exportState, ...rest } = spec;
  // (a plain kernel's output launch over spans sums its span's incoming state itself: no scan; a resident one's starts
  // from the scanned state: chunked/segments.ts sumsOwnSpans)
  const scan = (schedule.span ?? 1) > 1 && !spec.resident ? [] : [segmentScanKernel(p.name, sg.S, sg.NS, sg.NR, C, segment)];
  return [chunkKernel({ ...rest, label: `${spec.label}.segment-state`, segmented: 'state' }), ...scan, chunkKernel({ ...spec, segmented: 'output' })];
}

/**
 * The causal output items chunked, then the noncausal ones (each a bounded centered(K) term, the leaky convolution)
 * in the parallel form adding into o. Refused when a noncausal term shares an item with a causal one, and for a
 * decoding state. The kept normalisers are the causal items', which must come first so that they keep their index.
 */
function lowerWithNoncausal(p: Program, sizes: Sizes, opts: LowerOptions): Plan {
  const byName = new Map(p.terms.map((t) => [t.name, t]));
  const isNoncausal = (it: OutputItem) => (it.kind === 'term' ? [it.term] : it.terms).map((n) => byName.get(n)!.noncausal);
  const mixed = p.output.find((it) => new Set(isNoncausal(it)).size > 1);
  if (mixed) throw new Error(`${p.name}: a noncausal term shares an output item with a causal one; it runs in the parallel form only (--form parallel)`);
  if (opts.exportState) throw new Error(`${p.name} has noncausal terms (they read later positions): it cannot be decoded, so there is no decoding state to export`);
  const first = p.output.findIndex((it) => isNoncausal(it)[0]);
  if (opts.keepNormalisers && p.output.slice(first).some((it) => !isNoncausal(it)[0])) {
    throw new Error(`${p.name}: keeping the normalisers needs its causal output items before the noncausal ones`);
  }
  const causal = outputPart(p, false);
  const chunked = causal.terms.length ? lowerChunked(causal, sizes, opts) : undefined;
  const leaky = naivePlan(outputPart(p, true), sizes, { accumulate: chunked !== undefined });
  const buffers = [...(chunked?.buffers ?? [])];
  for (const b of leaky.buffers) if (!buffers.some((x) => x.name === b.name)) buffers.push(b);
  return { ...(chunked ?? leaky), variant: p.name, kernels: [...(chunked?.kernels ?? []), ...leaky.kernels], buffers };
}

/** Each normalised item's kernel output group (as kernelItems orders them) and its kept buffers, added to `buffers`. */
function keptParts(p: Program, sizes: Sizes, items: readonly OutputItem[], buffers: PlanBuffer[]): KeptParts[] {
  const groups = kernelItems(items, false);
  return normalisedItems(p).map(({ k, terms, denAxes }) => {
    const g = groups.findIndex((it) => it.kind === 'norm' && it.eps >= 0 && it.terms.join() === terms.join());
    const per = count(p.outAxes, sizes);
    const perDen = count(denAxes, sizes);
    buffers.push({ name: keptBuffer('n', k), role: 'output', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, ...p.outAxes.map((a) => sizes[a])] });
    buffers.push({ name: keptBuffer('z', k), role: 'output', floats: (b, t) => b * t * perDen, shape: (b, t) => [b, t, ...denAxes.map((a) => sizes[a])] });
    return { g, num: keptBuffer('n', k), den: keptBuffer('z', k), denAxes };
  });
}

function plan(p: Program, sizes: Sizes, form: 'chunked' | 'unfused', kernels: Kernel[], buffers: PlanBuffer[], s: ChunkSchedule & { featureTile?: number }): Plan {
  return {
    variant: p.name,
    form,
    kernels,
    buffers,
    outAxes: p.outAxes,
    sizes,
    schedule: { chunk: s.chunk, cols: s.cols, threads: s.threads, ...(s.segment ? { segment: s.segment } : {}), ...(s.span && s.span > 1 ? { span: s.span } : {}), ...(s.block && s.block > 1 ? { block: s.block } : {}), ...(s.featureTile ? { featureTile: s.featureTile } : {}) },
  };
}

/**
 * Materialises one token/query/key-side node as a [b, t, …axes] buffer: one invocation per element, or one
 * workgroup per token where its elements share row quantities (feature-rows.ts: hedgehog's softmax over q @ W).
 */
function featureKernel(p: Program, sizes: Sizes, id: Id): { kernel: Kernel; buffer: PlanBuffer } {
  const n = p.nodes[id];
  const per = count(n.type.axes, sizes);
  const label = `${p.name}.feature%${id}`;
  const comment = `feature %${id} of ${p.name} materialised as [b, t, ${n.type.axes.join(', ')}]`;
  const buffer: PlanBuffer = { name: `feat:${id}`, role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, ...n.type.axes.map((a) => sizes[a])] };
  const rows = featureRowKernel(p, sizes, id, label, comment);
  if (rows) return { kernel: rows, buffer };
  const kb = new KernelBuilder(GRID_WG, ['wid', 'lid', 'nwg']);
  const gen = new ExprGen(p, sizes, programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`), { i: 't', j: 't' });
  const feat = kb.storage(`feat:${id}`, true, { always: true });
  eachGridElement(kb.body, GRID_ELEMENTS, (main, at) => {
    const { flat, idx } = tokenElement(main, n.type.axes, sizes, 't', at);
    const v = gen.value(main, id, idx, 't');
    main.line(`${kb.use(feat)}[${flat}] = ${v};`);
  });
  const size = GRID_WG * GRID_ELEMENTS;
  return {
    kernel: kb.build({
      label,
      comment: [comment, `${GRID_ELEMENTS} elements an invocation`],
      workgroups: (b, t) => grid(b * t * per, size),
      launch: { kind: 'grid', perToken: per, size },
    }),
    buffer,
  };
}

/** o = Σ plain parts + Σ_groups (Σ num) / (Σ den + eps). */
function combineKernel(p: Program, per: number, parts: readonly { item: number; num: string; den?: string }[]): Kernel {
  const kb = new KernelBuilder(GRID_WG, ['wid', 'lid', 'nwg']);
  // a part's denominator is bound only where its item is normalised, the only place it is read
  const bound = parts.map((x) => ({ item: x.item, num: kb.storage(x.num, false, { always: true }), den: x.den !== undefined && p.output[x.item].kind === 'norm' ? kb.storage(x.den, false, { always: true }) : undefined }));
  const out = kb.storage('out:o', true, { always: true });
  eachGridElement(kb.body, GRID_ELEMENTS, (main, flat) => {
    main.line(`if (${flat} >= dims.b * dims.t * ${per}u) { return; }`);
    const o = main.var('o', '0.0');
    p.output.forEach((it, k) => {
      const mine = bound.filter((x) => x.item === k);
      const num = mine.map((x) => `${kb.use(x.num)}[${flat}]`).join(' + ') || '0.0';
      if (it.kind !== 'norm') return main.line(`${o} = ${o} + ${num};`);
      const den = mine.map((x) => `${kb.use(x.den!)}[${flat}]`).join(' + ') || '0.0';
      main.line(`${o} = ${o} + (${num}) / (${den} + ${it.eps});`);
    });
    main.line(`${kb.use(out)}[${flat}] = ${o};`);
  });
  const size = GRID_WG * GRID_ELEMENTS;
  return kb.build({ label: `${p.name}.combine`, comment: [`combine the parts of ${p.name}, ${GRID_ELEMENTS} elements an invocation`], workgroups: (b, t) => grid(b * t * per, size), launch: { kind: 'grid', perToken: per, size } });
}
