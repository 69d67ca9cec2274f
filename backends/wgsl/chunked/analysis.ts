// The chunk kernel's analysis: what every phase emitter needs to know about a spec, decided once and as data —
// the layout (head axes per workgroup, value columns per tile), the chunk, halo and score-matrix widths, each
// prefix term's feature count, gate and open group, the bounded terms' staged query/key features, the output
// groups and which of them go through a score matrix or need row denominators. No WGSL here: declarations.ts
// turns this into workgroup arrays and bindings, and the phase files emit from both. A new kernel over the same
// chunks (the backward pass) starts from the same analysis and declares what it needs beside it.
import { lagRange } from '../../../src/ir/masks.ts';
import type { PrefixForm } from '../../../src/ir/terms.ts';
import type { Id, OutputItem, Program, Term } from '../../../src/ir/types.ts';
import { count, type Sizes } from '../common.ts';
import type { Index, Resolver } from '../expr.ts';
import type { KernelBuilder } from '../kernel-builder.ts';
import type { Block } from '../wgsl-block.ts';
import { featureCount, frontier, groupReach, layoutOf, prefixGate, rowAxes, type Layout, type StateLayout } from '../layout.ts';
import { blockTile, scoreTile } from './tiles.ts';

export interface ChunkSchedule {
  readonly chunk: number; // C
  readonly cols: number; // R: value columns per workgroup
  readonly threads: number;
  /**
   * Chunks per segment (absent: the whole sequence is one segment, one kernel). Segmented plans run three
   * launches: each segment's own state in parallel, an exclusive scan over segments, then every segment's
   * outputs in parallel from its incoming state: b·heads·tiles·segments workgroups instead of b·heads·tiles.
   */
  readonly segment?: number;
  /**
   * A segmented plan's output launch over spans of `span` segments a workgroup (absent or 1: one segment each): the
   * state launch folds short segments over many workgroups (and none in the last span, whose states nothing reads),
   * the output launch walks long spans from the scanned state at each span's first segment.
   */
  readonly span?: number;
  /**
   * Register blocking: each invocation of the score tiles takes `block` key rows (chunked/tiles.ts scoreTile), and
   * each of the outputs (A·V, φ·S, the direct taps) and of the state update (ψᵀ·V) `block` value columns (cl +
   * n·R/block, so neighbouring invocations read neighbouring columns) beside its rows or features (blockTile):
   * every element it loads from workgroup memory feeds that many more products. Absent or 1: one column per
   * invocation, the kernel as measured before blocking.
   */
  readonly block?: number;
}

export interface ChunkKernelSpec {
  readonly program: Program;
  readonly sizes: Sizes;
  readonly terms: readonly Term[];
  /** Output items over those terms. `partial`: write num/den per item instead of o. */
  readonly items: readonly OutputItem[];
  readonly partial: boolean;
  readonly schedule: ChunkSchedule;
  /** Nodes read from materialised `feat:ID` buffers instead of being computed in the kernel. */
  readonly materialised: ReadonlySet<Id>;
  readonly label: string;
  /** Write the final state (S, z, open group, rings) for decoding to continue from; the call must start at position 0. */
  readonly exportState?: StateLayout;
  /** One launch of a segmented plan: 'state' writes each segment's own S, z; 'output' starts from the scanned ones. */
  readonly segmented?: 'state' | 'output';
  /** The segment-state buffers' names (default segBuffer): a gradient kernel's sections each need their own. */
  readonly segmentBuffer?: (what: 'S' | 'z', k: number) => string;
  /** Where the kernel reads and writes (absent: the plan's in:/param: buffers and out:o or the partial parts). */
  readonly io?: (kb: KernelBuilder) => ChunkIo;
  /** Added to a position a score reads as a number (f32 WGSL), e.g. a reversed gradient stage's −(T − 1). */
  readonly positionOffset?: string;
  /** Head axes for terms that do not choose them (convolutions only), so that the kernel shares another's grid. */
  readonly head?: readonly string[];
  /**
   * Normalised output groups whose numerator and denominator the kernel also stores (a training forward keeps them
   * for the backward): group g's num at [b, t, outAxes] in buffer `num`, den at [b, t, denAxes] in buffer `den`.
   */
  readonly keep?: readonly KeptParts[];
  /**
   * Issue each chunk's global loads while the chunk before it computes (chunked/staging.ts prefetchSlots), where the
   * kernel admits it (chunked/stage.ts prefetchStage). Absent: on; false: stage as before (a bench times both).
   */
  readonly prefetch?: boolean;
  /**
   * Stage φ (and keep z, and ψ where the state update allows) as vec4<f32> in workgroup memory and read them four
   * features at a time in the score tiles, φ·z, φ·S_prev and the state update (PrefixPlan.vec4, psiVec4: where a
   * term admits it). Absent: CHUNK_DEFAULTS.vec4; false: every array f32, as before.
   */
  readonly vec4?: boolean;
  /** Compute the convolution terms' tap weights once, before the chunk loop (chunked/taps.ts). Absent: CHUNK_DEFAULTS.hoistTaps. */
  readonly hoistTaps?: boolean;
  /**
   * Run the outputs on one half of the workgroup while the other half folds the chunk into S (chunked/teams.ts),
   * where the kernel admits it (overlapping). Absent: CHUNK_DEFAULTS.overlap; false: the two phases one after the
   * other, each on the whole workgroup, as before.
   */
  readonly overlap?: boolean;
  /** Store the score matrices as row quads where the outputs overlap the fold (ChunkAnalysis.rowQuads). Absent: CHUNK_DEFAULTS.rowQuads. */
  readonly rowQuads?: boolean;
  /** The row denominators summed by the output team where the outputs overlap the fold (ChunkAnalysis.outputDen). Absent: CHUNK_DEFAULTS.outputDen (on where the kernel has one prefix term). */
  readonly outputDen?: boolean;
  /** φ·S_prev (and φ·z_prev) computed by the fold team in the score phase (ChunkAnalysis.earlyState). Absent: CHUNK_DEFAULTS.earlyState (on where the outputs add a depthwise convolution's per-channel taps). */
  readonly earlyState?: boolean;
  /**
   * Keep the prefix terms' state S, z in the registers of subgroup lanes instead of workgroup memory (the `rs`
   * switch: resident-shape.ts says where it applies, resident.ts emits it); refused where it does not apply. Off
   * unless asked; the plan choice asks for it on hardware where the terms hold four features a lane
   * (resident-default.ts, timed on the H200).
   */
  readonly resident?: boolean;
  /** The adapter's fixed subgroup size (Gpu.subgroupSize), which a resident kernel is generated for. */
  readonly subgroupSize?: number;
}

/**
 * The chunk kernel's switches where a spec leaves them out — the one place to turn them on once timed: every
 * kernel, and sharedFloats's count of their workgroup memory (a vec4 ψ row is padded), then agree.
 */
// overlap: on the H200 a hand edit of elu_dwconv's kernel (B 4 H 16 T 4096 D 64, 32x32x512; bench/chunk-edit.ts,
// bench/results/chunk-edits/ws.wgsl and ws4.wgsl, calls 78–79) that ran the outputs on invocations 0…255 beside the
// state update on 256…511 — one barrier fewer a chunk, each half blocked twice as deep — ran 0.686 ms against 0.812;
// the generated form (call 88, default against `so`, 3 rounds alternating) 0.754 against 0.812, retnet 0.755 / 0.816,
// mamba2 0.764 / 0.823, relu_aug 0.746 / 0.807, cosformer 1.741 / 1.919, hedgehog's prologue plan 1.955 / 2.115, d 128
// 2.110 / 2.400, t 16384 2.973 / 3.212; elu and relu within 1 % (0.717 / 0.709, 0.705 / 0.699). A per-feature decay
// (gla) lost 1.4 % (1.710 / 1.687) and keeps the phases in turn by default, as it keeps f32 arrays (vec4 above).
// rowQuads: on. The hand form of its idea (bench/results/chunk-edits, call 90: A read four key columns a trip in the
// overlapped kernel) ran 0.710 ms against 0.756; the generated form (four rows a key column; the score phase four rows
// an invocation) timed on the H200 beside the default (session 11's call 1, bench/results/h200-chunk-switches.json,
// B 4 H 16 T 4096 D 64, 3 rounds): elu_dwconv 0.707 / 0.755, elu_aug 0.709 / 0.754, retnet 0.668 / 0.756, mamba2
// 0.666 / 0.764, cosformer 1.741 / 1.742.
// outputDen: where the kernel has one prefix term ('one-term'). Its hand form (chunk-edits/ws2.wgsl, call 79) ran
// 0.659 ms against the overlap's 0.686; generated, with rq (same call): elu_aug 0.666 / 0.709, elu_dwconv 0.708 /
// 0.707, and blocked 32×32×512b2 0.664 / 0.694; cosformer's two prefix terms lost (1.923 / 1.741), so a kernel
// with more keeps the fold team's denominators.
// earlyState: where the outputs also sum a term outside the score matrices that varies along the value columns
// ('column-taps': a depthwise convolution's per-channel taps). Its
// hand form (chunk-edits/d64-phisearly.wgsl, call 97) ran 0.671 ms against the generated 0.709; generated (call 99,
// B 4 H 16 T 4096 D 64, 3 rounds, against `le`): elu_dwconv 0.677 / 0.705 (T 16384 2.670 / 2.786), but where the
// output team has no taps to add the fold team's phases become the longer ones: elu 0.641 / 0.611, elu_aug 0.680 /
// 0.666 (its convolution has one weight a head), relu_aug 0.675 / 0.659, retnet 0.683 / 0.668, mamba2 0.684 / 0.666,
// performer's prologue plan 1.641 / 1.612.
export const CHUNK_DEFAULTS = { vec4: true, hoistTaps: true, overlap: true, rowQuads: true, outputDen: 'one-term', earlyState: 'column-taps' } as const;

/**
 * Whether the outputs also add a term outside the score matrices whose score varies along the value columns (a
 * depthwise convolution's per-channel taps, elu_dwconv's): the output phase the early φ·S_prev pays off in. A
 * convolution with one weight a head (elu_aug's) adds little to the outputs, and its kernel lost with it.
 */
function columnTaps(p: Program, L: Layout, terms: readonly Term[]): boolean {
  return terms.some((t) => t.form.kind !== 'prefix' && !L.aTerms.includes(t) && p.nodes[t.score].type.axes.some((x) => L.rest.includes(x)));
}

export interface KeptParts {
  readonly g: number;
  readonly num: string;
  readonly den: string;
  readonly denAxes: readonly string[];
}

/**
 * A chunk kernel's own memory interface (gradient stages read reversed, shifted and padded tensors, and write
 * where the gradient program says): the reader of inputs and parameters at kernel positions 0 … dims.t − 1, and
 * the store of a value computed at kernel row `ia` (< dims.t), output column `idx` over the program's outAxes —
 * the final output ('o', item 0 of a plain kernel), or item g's numerator or denominator (partial kernels).
 */
export interface ChunkIo {
  readonly read: Resolver;
  readonly store: (b: Block, what: 'o' | 'num' | 'den', g: number, ia: string, idx: Index, v: string) => void;
}

/** A prefix term as the kernel runs it (k: its index among the kernel's prefix terms). */
export interface PrefixPlan {
  readonly term: Term;
  readonly form: PrefixForm;
  readonly k: number;
  readonly F: number;
  readonly feature: string | null;
  readonly gateId: Id | null;
  readonly gateWidth: number; // 0: no decay; 1: scalar; F: per feature
  readonly gatePerFeature: boolean;
  /** past_groups(G) with G a multiple of the chunk: the open group is kept in So/zo until it closes. */
  readonly openGroup: number;
  /** past_groups size of a term whose last group the exported decoding state keeps open, else 0. */
  readonly exportOpen: number;
  /** Rows of ψ before the chunk (HALO when a bounded term reads ψ as its key feature, else 0). */
  readonly psiHalo: number;
  /** ψ staged feature-major ([F][C+1], padded against bank conflicts) for the score tiles; row-major when a bounded term reads it too. */
  readonly transposed: boolean;
  /**
   * φ staged as [C][F/4] vec4<f32> and z as [F/4] vec4<f32> (ChunkKernelSpec.vec4), so the loops over features step
   * by 4 with one workgroup-memory load of φ where they made four: those loads are the kernel's bound (a warp's φ
   * load is a broadcast, one wavefront each, beside one for S or ψ). Only where F is a multiple of 4 and no bounded
   * term reads φ as its query feature (that reads φ element by element, through the alias), and no open group (its
   * z updates, per feature, would write single components of z's vec4s from different invocations).
   */
  readonly vec4: boolean;
  /**
   * ψ too, as [C][P] vec4<f32> (P = F/4 rounded up to odd: the score tiles' neighbouring invocations read
   * neighbouring rows, an odd stride keeps a quarter-warp's 16-byte loads on distinct banks), so that the state update
   * reads each row's four features of an invocation as one broadcast where it made four: where φ is vec4, ψ is
   * transposed (no bounded term reads it) and the update gives each invocation four features (blockTile's TM, over
   * the fold team's invocations where the outputs overlap the update: ChunkAnalysis.overlap).
   */
  readonly psiVec4: boolean;
}

/** A bounded term's query or key feature, staged per row (the head axes fixed): W floats per row over `axes`. */
export interface StagedFeature {
  readonly id: Id;
  readonly side: 'query' | 'key';
  readonly axes: readonly string[];
  readonly W: number;
  /**
   * Floats from one staged row to the next: paddedRow(W), so that the invocations of a warp reading one feature of
   * neighbouring rows (a score tile's key columns) hit different banks, not all one (at W 64 a 32-way conflict on
   * every key load of a bounded term's dot product); an alias has its prefix term's layout (ψ: psiRowStride).
   */
  readonly stride: number;
  /** The prefix term that already stages this node (φ as a query feature, ψ as a key feature), read from there. */
  readonly alias: PrefixPlan | null;
}

export interface ChunkAnalysis {
  readonly spec: ChunkKernelSpec;
  readonly p: Program;
  readonly sizes: Sizes;
  readonly terms: readonly Term[];
  /** Output items as the kernel accumulates them (kernelItems). */
  readonly items: readonly OutputItem[];
  readonly C: number;
  readonly R: number;
  readonly WG: number;
  readonly L: Layout;
  readonly HALO: number; // rows of values (and key features) before the chunk
  readonly CH: number; // C + HALO
  readonly AH: number; // how far back the score matrices reach
  readonly CA: number; // C + AH: columns of a score matrix
  readonly NS: number; // head slices
  readonly NR: number; // value columns
  readonly RT: number; // column tiles
  readonly per: number; // floats of o per token
  readonly prefix: readonly PrefixPlan[];
  /** Staged features: query ones, then key ones (the staging order); `declared` in the order arrays are declared. */
  readonly staged: readonly StagedFeature[];
  readonly declared: readonly StagedFeature[];
  /** The terms of each output group. */
  readonly groupTerms: readonly (readonly Term[])[];
  /** Output groups with a score matrix A (some term goes through it), and those that need row denominators. */
  readonly aGroups: readonly number[];
  readonly denGroups: readonly number[];
  readonly tile: ReturnType<typeof scoreTile>;
  /**
   * A_g stored as vec4 over the output team's four rows (chunked/row-quads.ts): the outputs' A·V reads one vec4 a key
   * column where it read four scalars, and the score tile takes those four rows an invocation, so that one invocation
   * writes each vec4 whole. Where the outputs overlap the fold and each output invocation owns four rows of one column.
   */
  readonly rowQuads: boolean;
  /**
   * The normalised groups' row denominators summed by the overlapped output team (chunked/outputs.ts): each output
   * invocation adds its row of A as it reads it for A·V and φ·z_prev as it reads φ for φ·S_prev, so the denominator
   * phase (its partial sums, its barrier, its serial row sums) goes; z is folded by the fold team into held registers
   * (chunked/teams.ts), since the output team reads z_prev in the same phase. Where the outputs overlap the fold, a
   * group has a denominator and each term's z fits one trip of the fold team.
   */
  readonly outputDen: boolean;
  /**
   * The overlapped kernel's fold team, idle while the score tiles take no more than the output team's invocations,
   * computes each output item's φ·(decay ⊙ S_prev) (and, with outputDen, each row's φ·(decay ⊙ z_prev)) in the score
   * phase into workgroup arrays (phiS, phiZ, as a resident kernel's; chunked/early-state.ts), so the output team only
   * reads them. S and z hold S_prev there: the fold team stores the new ones at the next chunk's start. Where the
   * score matrices are row quads (their tile four rows of a column, as the outputs') and fit the output team.
   */
  readonly earlyState: boolean;
  /** The value node every term of the kernel reads. */
  readonly valueId: Id;
  /** Prefix terms whose z the denominator phase folds (φ·z above read the previous z). */
  readonly zEarly: readonly PrefixPlan[];
  /**
   * The outputs run on invocations [0, WG/2) while [WG/2, WG) fold the chunk into S, in one phase (chunked/teams.ts;
   * ChunkKernelSpec.overlap): where every prefix term folds tiled (no open group, kept or exported), unsegmented,
   * and each half's invocations keep their value columns (WG/2 a multiple of the column lanes).
   */
  readonly overlap: boolean;
  readonly segmented?: 'state' | 'output';
  readonly segment: number; // G: chunks per segment (0: unsegmented)
  readonly state?: StateLayout;
  /** The prefix terms' state in subgroup lanes' registers (ChunkKernelSpec.resident), or absent: in workgroup memory. */
  readonly resident?: ResidentShape;
}

/**
 * Output items as the kernel accumulates them: in a final-output kernel every unnormalised term adds into one
 * group (one shared score matrix; eps < 0 marks it); each normalised item keeps its own. Partial kernels keep
 * items as given.
 */
export function kernelItems(items: readonly OutputItem[], partial: boolean): OutputItem[] {
  if (partial) return [...items];
  const plain = items.flatMap((it) => (it.kind === 'term' ? [it.term] : []));
  const norms = items.filter((it) => it.kind === 'norm');
  return [...(plain.length ? [{ kind: 'norm', terms: plain, eps: -1 } as OutputItem] : []), ...norms];
}

/**
 * Whether a partial kernel's part of output item `it` needs its denominator: only a normalised item's, which the
 * combine kernel divides by (lower.ts). An unnormalised term's part (llama_linearized's and flash's local and global
 * terms, a convolution) is its numerator alone: its kernel used to sum and write a denominator nothing read — in
 * llama's local kernel a 79-long serial sum by 16 invocations and a barrier every chunk.
 */
export const partDen = (it: OutputItem): boolean => it.kind === 'norm';

/** The output items over `terms`: items of other terms dropped, normalised items cut down to these terms. */
export function itemsOver(items: readonly OutputItem[], terms: readonly Term[]): OutputItem[] {
  const names = new Set(terms.map((t) => t.name));
  return items.flatMap((it): OutputItem[] => {
    if (it.kind === 'term') return names.has(it.term) ? [it] : [];
    const sub = it.terms.filter((n) => names.has(n));
    return sub.length ? [{ ...it, terms: sub }] : [];
  });
}

/**
 * The program restricted to the output items whose terms are all causal (`noncausal` false) or all noncausal: a
 * program with the leaky ablation's convolution runs its causal items chunked and the rest in the parallel form.
 */
export function outputPart(p: Program, noncausal: boolean): Program {
  const byName = new Map(p.terms.map((t) => [t.name, t]));
  const output = p.output.filter((it) => (it.kind === 'term' ? [it.term] : it.terms).every((n) => byName.get(n)!.noncausal === noncausal));
  const names = new Set(output.flatMap((it) => (it.kind === 'term' ? [it.term] : it.terms)));
  return { ...p, terms: p.terms.filter((t) => names.has(t.name)), output };
}

/** Terms grouped by the value they read: one chunk kernel per group when fused. */
export function valueGroups(p: Program, terms: readonly Term[] = p.terms): Term[][] {
  const groups = new Map<Id, Term[]>();
  for (const t of terms) {
    if (t.form.kind === 'general') throw new Error(`term ${t.name} is unclassified: run the passes before lowering`);
    if (t.noncausal) throw new Error(`term ${t.name} is noncausal (it reads positions after i): ${p.name} runs in the parallel form only (--form parallel)`);
    groups.set(t.value, [...(groups.get(t.value) ?? []), t]);
  }
  return [...groups.values()];
}

/** How far back the score matrices reach: the halo of the bounded terms that go through A (0 when none). */
export function aHalo(L: Layout, chunk: number): number {
  return Math.max(0, ...L.aTerms.map((t) => scoreReach(L, t, chunk)));
}

/**
 * How far before a chunk's first row a score-matrix term's keys reach: a bounded term's lags (its group's, when the
 * group does not start with the chunk), within the layout's halo; 0 for a prefix term (its past is in S) and for a
 * group that chunks divide. Its score matrix is C × (C + reach): the schedule model charges that many products.
 */
export function scoreReach(L: Layout, t: Term, chunk: number): number {
  if (t.form.kind === 'prefix') return 0;
  return Math.min(groupReach(t, chunk) ?? lagRange(t.mask)![1], L.halo);
}

export function analyseChunk(spec: ChunkKernelSpec): ChunkAnalysis {
  const { program: p, sizes, terms, schedule } = spec;
  const items = kernelItems(spec.items, spec.partial);
  const C = schedule.chunk;
  const R = schedule.cols;
  const L = layoutOf(p, terms, C, spec.head);
  const HALO = L.halo;
  // The score matrices reach back only as far as the bounded terms they hold (convolutions are direct taps).
  const AH = aHalo(L, C);
  const NR = count(L.rest, sizes);
  for (const t of terms) {
    const m = t.mask.find((x) => x.kind === 'past_groups' || (x.kind === 'group' && t.form.kind === 'prefix'));
    if (m && 'size' in m && C % m.size !== 0 && m.size % C !== 0) throw new Error(`chunk ${C} must divide or be a multiple of the group size ${m.size} (term ${t.name})`);
  }
  const plain = prefixPlans(spec, HALO, schedule.threads);
  const overlap = overlapping(spec, plain);
  // the state update's micro-tile, and so whether ψ is vec4, is the fold team's (half the workgroup) when overlapping
  const prefix = overlap ? prefixPlans(spec, HALO, schedule.threads / 2) : plain;
  const { staged, declared } = stagedFeatures(p, sizes, L, terms, prefix);
  const groupTerms = items.map((it) => (it.kind === 'term' ? [it.term] : [...it.terms]).map((nm) => terms.find((t) => t.name === nm)!));
  // A partial kernel writes a denominator for the items the combine kernel divides (partDen); one with its own memory
  // interface (the training stages, spec.io) for every item, as its stages expect.
  const denGroups = items.flatMap((it, g) => ((spec.partial && (spec.io || partDen(it))) || (it.kind === 'norm' && it.eps >= 0) ? [g] : []));
  // A group has a score matrix where one of its terms scores pairs within a chunk, or where its denominator is summed
  // from one (scores.ts partialDenominator).
  const aGroups = groupTerms.flatMap((ts, g) => (ts.some((t) => L.aTerms.includes(t) && (scoresInChunk(t, C) || denGroups.includes(g))) ? [g] : []));
  const valueId = terms[0].value;
  for (const t of terms) if (t.value !== valueId) throw new Error(`terms ${terms[0].name} and ${t.name} have different values; they need separate kernels`);
  const segment = schedule.segment ?? 0;
  if (spec.io && spec.exportState) throw new Error(`${p.name}: a chunk kernel with its own memory interface exports no state`);
  // A segmented plan exports the decoding state from its output launch, whose last segment ends on the final S, z.
  // A past_groups term's segments start at its group starts (segments.ts), so a segment's state adds to the next's.
  // A decayed causal term's segments combine through their Σ log decay (segments.ts); the gradient's sectioned kernels
  // (their own memory interface) do not carry it.
  const adds = (q: PrefixPlan) =>
    q.term.mask[0].kind === 'causal'
      ? !q.gateWidth || !spec.io
      : !q.gateWidth && q.term.mask[0].kind === 'past_groups' && (segment * C) % q.term.mask[0].size === 0;
  if (spec.segmented && (!segment || (spec.exportState && spec.segmented !== 'output') || !prefix.every(adds))) {
    throw new Error(`${p.name}: a segmented chunk plan needs prefix terms plainly causal (decayed or not) or past_groups without decay with segments that start at its groups' starts, and only its output launch exports a state`);
  }
  const outputs = spec.segmented !== 'state';
  const quads = rowQuads(spec, overlap);
  const resident = residentShape(spec, prefix);
  const outDen = overlap && (spec.outputDen ?? (CHUNK_DEFAULTS.outputDen === 'one-term' && prefix.length === 1)) && denGroups.length > 0 && prefix.every((q) => (q.vec4 ? q.F / 4 : q.F) <= schedule.threads / 2);
  return {
    spec, p, sizes, terms, items, C, R, WG: schedule.threads, L, HALO, CH: C + HALO, AH, CA: C + AH,
    NS: count(L.head, sizes), NR, RT: Math.ceil(NR / R), per: count(p.outAxes, sizes),
    prefix, staged, declared, groupTerms, aGroups, denGroups,
    tile: quads ? { TI: 4, TJ: 1, NTI: C / 4, NTJ: C + AH } : scoreTile(C, C + AH, schedule.threads, schedule.block),
    rowQuads: quads,
    outputDen: outDen,
    earlyState: quads && aGroups.length > 0 && (C / 4) * (C + AH) <= schedule.threads / 2 && (spec.earlyState ?? (CHUNK_DEFAULTS.earlyState === 'column-taps' && columnTaps(p, L, terms))),
    valueId,
    // a resident kernel folds z in registers, with S (resident.ts)
    zEarly: denGroups.length && outputs && !resident && !outDen ? prefix.filter((q) => !q.openGroup && !q.exportOpen) : [],
    segmented: spec.segmented, segment, state: spec.exportState, overlap,
    ...(resident && { resident }),
  };
}

/** Whether the kernel of `spec`, with prefix terms `prefix`, runs its outputs beside its state update (ChunkAnalysis.overlap). */
function overlapping(spec: ChunkKernelSpec, prefix: readonly PrefixPlan[]): boolean {
  const { threads: WG, cols: R, block } = spec.schedule;
  // a resident kernel (the `rs` switch) folds on every invocation, in registers: it has no fold team
  if (spec.resident && spec.overlap) throw new Error(`${spec.program.name}: rs (the state in subgroup lanes' registers) and the output/fold overlap exclude each other: a resident kernel folds on every invocation`);
  if (spec.resident) return false;
  const wanted = spec.overlap ?? (CHUNK_DEFAULTS.overlap && !prefix.some((q) => q.gatePerFeature));
  // a segmented plan's state launch has no outputs to overlap; its output launch overlaps as an unsegmented kernel does
  if (!wanted || spec.segmented === 'state' || !prefix.length || WG < 64 || WG % 2) return false;
  // each team's invocations keep their column lane in every trip, as the hoisted taps and the fold's shared values need
  return prefix.every((q) => !q.openGroup && !q.exportOpen) && (WG / 2) % blockTile(1, R, WG, block).RB === 0;
}

/**
 * Whether the kernel stores its score matrices as row quads (ChunkAnalysis.rowQuads): the overlapped output team's
 * micro-tile is four rows (ti + m·C/4) of one column, so a quad is what one output invocation reads at a key column.
 * On by default (CHUNK_DEFAULTS.rowQuads).
 */
function rowQuads(spec: ChunkKernelSpec, overlap: boolean): boolean {
  const { chunk: C, cols: R, threads: WG, block } = spec.schedule;
  if (!(spec.rowQuads ?? CHUNK_DEFAULTS.rowQuads) || !overlap || C % 4 !== 0) return false;
  const t = blockTile(C, R, WG / 2, block);
  return t.TM === 4 && t.TN === 1;
}

/** Invocations of the outputs phase and of the state update: half the workgroup each when they overlap. */
export const teamSize = (a: ChunkAnalysis) => (a.overlap ? a.WG / 2 : a.WG);

/** `threads`: the state update's invocations (psiVec4 asks for its micro-tile). */
function prefixPlans(spec: ChunkKernelSpec, HALO: number, threads: number): PrefixPlan[] {
  const { program: p, sizes, terms } = spec;
  const C = spec.schedule.chunk;
  const bounded = terms.filter((t) => t.form.kind !== 'prefix').map((t) => frontier(p, t.score));
  const keyFeatures = new Set(bounded.flatMap((f) => f.key));
  const queryFeatures = new Set(bounded.flatMap((f) => f.query));
  const plans: PrefixPlan[] = [];
  for (const term of terms) {
    if (term.form.kind !== 'prefix') continue;
    const form = term.form;
    const F = featureCount(form, sizes);
    const gate = prefixGate(p, form);
    const pg = term.mask[0].kind === 'past_groups' ? term.mask[0].size : 0;
    const exported = spec.exportState?.prefix.find((e) => e.term.name === term.name)?.open;
    const openGroup = pg && pg > C ? pg : 0;
    // The default leaves out kernels with their own memory interface (the gradient's sections share f32 scratch) and
    // terms with a per-feature decay: on the H200 (call 74, B 4 H 16 T 4096 D 64, 3 rounds side by side) gla's fused
    // kernel ran 1.756 ms with vec4 against 1.687 without, while the terms without a gate or with a scalar one gained
    // (elu_dwconv 0.927 → 0.812 with the taps hoisted, elu 0.745 → 0.709, retnet 0.904 → 0.815, mamba2 0.909 → 0.823).
    const vec4 = (spec.vec4 ?? (CHUNK_DEFAULTS.vec4 && !spec.io && !gate?.perFeature)) && F % 4 === 0 && !queryFeatures.has(form.phi) && !openGroup && !(exported && pg);
    plans.push({
      term, form, k: plans.length, F, feature: form.feature,
      gateId: gate?.id ?? null, gateWidth: gate ? (gate.perFeature ? F : 1) : 0, gatePerFeature: gate?.perFeature ?? false,
      openGroup,
      exportOpen: exported ? pg : 0,
      psiHalo: keyFeatures.has(form.psi) ? HALO : 0,
      transposed: !keyFeatures.has(form.psi),
      vec4,
      // a resident kernel's fold reads each row's four features of a lane as one vec4 whatever the tiles (resident.ts)
      psiVec4: vec4 && !keyFeatures.has(form.psi) && (!!spec.resident || blockTile(F, spec.schedule.cols, threads, spec.schedule.block).TM === 4),
    });
  }
  return plans;
}

/**
 * Whether term t scores pairs of rows within one chunk of C. A past_groups(G) term whose chunks divide its groups
 * never does: chunks start at multiples of C, so each lies in one group, and the term pairs only rows of different
 * groups. llama_linearized's and flash's global terms computed a C × C × F tile of masked-out products a chunk, and
 * A·V over it; their rows read the earlier groups through the state (φ·S_prev) alone.
 */
export function scoresInChunk(t: Term, C: number): boolean {
  return !t.mask.some((m) => m.kind === 'past_groups' && m.size % C === 0);
}

/** Floats between staged rows of W: one more where W is even, so that neighbouring rows start in different banks. */
export function paddedRow(W: number): number {
  return W > 1 && W % 2 === 0 ? W + 1 : W;
}

/** Floats between the rows of a row-major ψ ([C + psiHalo][F], what a bounded term also reads): paddedRow(F). */
export function psiRowStride(q: Pick<PrefixPlan, 'F'>): number {
  return paddedRow(q.F);
}

/** The bounded terms' frontier nodes, each once: staged query side first, declared term by term. */
function stagedFeatures(p: Program, sizes: Sizes, L: Layout, terms: readonly Term[], prefix: readonly PrefixPlan[]): { staged: StagedFeature[]; declared: StagedFeature[] } {
  const seen = new Map<Id, StagedFeature>();
  const declared: StagedFeature[] = [];
  for (const t of terms) {
    if (t.form.kind === 'prefix') continue;
    const fr = frontier(p, t.score);
    for (const side of ['query', 'key'] as const) {
      for (const id of fr[side]) {
        if (seen.has(id)) continue;
        const axes = rowAxes(p, L, id);
        // A feature a prefix term already stages (φ as a query feature, ψ as a key feature) is read from there.
        const alias = prefix.find((q) => (side === 'query' ? q.form.phi : q.form.psi) === id && axes.length === 1 && axes[0] === q.feature) ?? null;
        const W = count(axes, sizes);
        const stride = alias ? (side === 'key' ? psiRowStride(alias) : W) : paddedRow(W);
        const f: StagedFeature = { id, side, axes, W, stride, alias };
        seen.set(id, f);
        declared.push(f);
      }
    }
  }
  const all = [...seen.values()];
  return { staged: [...all.filter((f) => f.side === 'query'), ...all.filter((f) => f.side === 'key')], declared };
}

// Whether, and how, a kernel keeps its prefix terms' state in the registers of subgroup lanes (the `rs` switch,
// ChunkKernelSpec.resident; resident-shape.ts and resident.ts derive and emit the rest): subgroup g owns Cw of the
// tile's R value columns, lane l features FL·l … FL·l + FL − 1 (FL = F / SG). Where it does not apply, asking for it is
// refused with the reason.
export interface ResidentShape {
  /** Lanes a subgroup (the adapter's fixed subgroup size). */
  readonly SG: number;
  /** Subgroups a workgroup (threads / SG). */
  readonly W: number;
  /** Value columns a subgroup owns (R / W): 1, 2 or 4, one register (vecFL) each for every prefix term. */
  readonly Cw: number;
  /** Rows a block of the φ·S_prev reduction: after it, lane l holds row l / Cw, column l % Cw (SG / Cw rows). */
  readonly RB: number;
  /** Blocks a chunk (C / RB). */
  readonly NB: number;
}

/** The kernel's resident shape, undefined where `rs` is not asked for; throws, naming why, where it is asked and does not apply. */
export function residentShape(spec: ChunkKernelSpec, prefix: readonly PrefixPlan[]): ResidentShape | undefined {
  if (!spec.resident) return undefined;
  const { chunk: C, cols: R, threads: WG } = spec.schedule;
  const refuse = (why: string): never => {
    throw new Error(`${spec.program.name}: rs (the state in subgroup lanes' registers) does not apply: ${why}`);
  };
  const SG = spec.subgroupSize;
  if (!SG) refuse(`the adapter has no fixed subgroup size (it needs the 'subgroups' feature and subgroupMinSize = subgroupMaxSize)`);
  const sg = SG!;
  if (spec.io) refuse('a kernel with its own memory interface (a gradient stage)');
  if (!prefix.length) refuse('the kernel has no prefix term, so no state');
  for (const q of prefix) {
    if (![1, 2, 4].some((fl) => q.F === fl * sg)) refuse(`term ${q.term.name} has ${q.F} features; a lane holds 1, 2 or 4 of them, so it needs F = ${sg}, ${2 * sg} or ${4 * sg} (1, 2 or 4 × the subgroup size ${sg})`);
    if (q.exportOpen && !q.openGroup) refuse(`term ${q.term.name} exports its last group apart (past_groups, a decoding state) but its groups fit a chunk: the resident kernel keeps a group apart only where it spans several chunks`);
  }
  if (WG % sg) refuse(`${WG} threads are not whole subgroups of ${sg}`);
  const W = WG / sg;
  const Cw = R / W;
  if (![1, 2, 4].includes(Cw)) refuse(`${R} columns over ${W} subgroups (${WG} threads / ${sg}) is not 1, 2 or 4 columns a subgroup`);
  const RB = sg / Cw;
  if (C % RB) refuse(`chunk ${C} is not a multiple of the ${RB} rows a reduction block takes (subgroup size ${sg} / ${Cw} columns a subgroup)`);
  return { SG: sg, W, Cw, RB, NB: C / RB };
}

