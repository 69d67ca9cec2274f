// Fused or unfused, and the schedule, for a chunked plan on an adapter. `--fuse` / `--no-fuse` (fuse given)
// force the plan; otherwise a hardware GPU takes the cheaper by the schedule model (backends/wgsl/fusion-model.ts),
// each plan at its own best schedule, and a software adapter keeps the fused plan (fewer shaders for its slow
// compiler; its tests are timed so) unless that does not fit. A plan that does not fit falls back to the other
// with the reason, unless it was forced. The autotuner's cached winner (which it timed fused) is kept as is.
// When neither fits (based's Taylor features at d 64: the state S[f, e] alone is 1 MB), the unfused plan runs
// its wide prefix terms over tiles of features (backends/wgsl/feature-tiled.ts), if that fits.
// A fused plan may compute some feature nodes once per token in a prologue of feature kernels (lower.ts's
// `prologue`): on hardware the model decides per node (fusion-model.ts's decidePrologue) and ranks the fused plan
// with that prologue beside the two others; `prologue: 'all' | 'none'` forces it; a software adapter and the
// autotuner's winner keep every feature inline unless asked (the one shader their timings assume).
import { candidateSchedules, defaultSchedule } from '../../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import { defaultFeatureTiled, featureTiledSchedules, fusedTiledSchedule } from '../../backends/wgsl/feature-tile-schedules.ts';
import { featureNodes } from '../../backends/wgsl/feature-nodes.ts';
import { bestHybrid, chooseFusion, decidePrologue, estimatePlan, type PrologueDecision } from '../../backends/wgsl/fusion-model.ts';
import { outputPart } from '../../backends/wgsl/chunked/analysis.ts';
import { RESIDENT_CHUNK, residentDefault, residentLanes, residentPrefixSchedule } from '../../backends/wgsl/chunked/resident-default.ts';
import { weighSpans } from '../../backends/wgsl/chunked/span-default.ts';
import { statelessSegments } from '../../backends/wgsl/chunked/stateless-segments.ts';
import { isSoftmaxProgram } from '../../backends/wgsl/softmax-analysis.ts';
import { flashKernel } from '../../backends/wgsl/softmax-tiled.ts';
import type { Id, Program } from '../ir/types.ts';
import { adapterModel } from './adapter-model.ts';
import type { Gpu } from './device.ts';
import { cachedCandidate, chooseSchedule, MODEL_SHAPE, modelDefault } from './schedule.ts';

/** Features a lane from which the fused resident kernel is taken over the model's unfused pick (chooseBase). */
const WIDE_RESIDENT_LANES = 8;

export interface PlanChoice {
  readonly fuse: boolean;
  readonly schedule: ChunkSchedule;
  /** The unfused plan's prefix term kernels' schedule where `resident` (lower.ts residentSchedule). */
  readonly residentSchedule?: ChunkSchedule;
  /** Features per tile of the unfused plan's tiled terms (lower.ts's featureTile), when it needs them to fit. */
  readonly featureTile?: number;
  /** The fused plan over feature tiles (fuse and featureTile): the tiled terms' schedule; `schedule` is the others'. */
  readonly tileSchedule?: ChunkSchedule;
  /** The fused plan's feature nodes computed in a prologue (lower.ts); absent or empty: all inline. */
  readonly prologue?: ReadonlySet<Id>;
  /** The fused kernel keeps its state in subgroup lanes' registers (lower.ts `resident`; chunked/resident-default.ts). */
  readonly resident?: boolean;
  /** The model's decision per feature node, where it made one. */
  readonly decisions?: readonly PrologueDecision[];
  /** The decision in words, with both estimates where the model made it (for --verbose and compile -v). */
  readonly reason: string;
}

/** The fused plan's prologue: the model's per-node choice ('model'), every feature node, or none. */
export type PrologueRequest = 'model' | 'all' | 'none';

const ms = (us: number | undefined) => (us === undefined ? 'does not fit' : `${(us / 1e3).toFixed(3)} ms`);
const show = (s: ChunkSchedule) => `chunk ${s.chunk}, cols ${s.cols}, threads ${s.threads}${s.segment ? `, segments of ${s.segment}` : ''}${s.span && s.span > 1 ? ` in spans of ${s.span}` : ''}${s.block && s.block > 1 ? `, blocks of ${s.block} columns` : ''}`;

export interface PlanChoiceRequest {
  readonly fuse?: boolean;
  readonly schedule?: ChunkSchedule;
  readonly featureTile?: number;
  /** Absent: the model's choice where it ranks the plans (hardware, nothing forced), else every feature inline. */
  readonly prologue?: PrologueRequest;
}

/** The plan: fused or unfused and its schedule (chooseBase), then a fused plan's prologue. */
export function choosePlan(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, req: PlanChoiceRequest, shape?: { b: number; t: number }): PlanChoice {
  const at = shape ?? MODEL_SHAPE;
  const c = withResidentPrefix(gpu, p, sizes, req, at, withStatelessSegments(gpu, p, sizes, req, at, chooseBase(gpu, p, sizes, req, shape)));
  if (!c.fuse || isSoftmaxProgram(p) || c.prologue || c.resident || req.prologue === undefined) return c;
  if (req.prologue === 'all') {
    const all = new Set(featureNodes(outputPart(p, false)));
    return { ...c, prologue: all, reason: `${c.reason}; every feature node (${all.size}) in a prologue, as asked` };
  }
  if (req.prologue === 'none') return { ...c, prologue: new Set(), reason: `${c.reason}; every feature inline, as asked` };
  const d = decidePrologue(adapterModel(gpu), p, sizes, c.schedule, at.b, at.t);
  if (!d) return c;
  return { ...c, prologue: d.prologue, decisions: d.decisions, reason: `${c.reason}; prologue by the model: ${describePrologue(p, d.decisions)}` };
}

/**
 * An unfused pick with its stateless kernels over segments where its workgroups leave units idle
 * (chunked/stateless-segments.ts), on hardware and where no schedule was given.
 */
function withStatelessSegments(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, req: PlanChoiceRequest, at: { b: number; t: number }, c: PlanChoice): PlanChoice {
  if (c.fuse || c.featureTile !== undefined || gpu.isSoftware || req.schedule || isSoftmaxProgram(p)) return c;
  const s = statelessSegments(p, sizes, c.schedule, { ...at, units: adapterModel(gpu).computeUnits });
  return s === c.schedule ? c : { ...c, schedule: s, reason: `${c.reason}; its kernels without state over segments of ${s.segment} chunks (their workgroups leave units idle)` };
}

/**
 * An unfused pick with its prefix term kernels keeping their state in lanes' registers at a schedule of their own
 * (resident-default.ts residentPrefixSchedule: 4 or more features a lane), on hardware with a fixed subgroup size,
 * where no schedule was given and the plan walks chunks of fewer than 16 (resident-default.ts says why). Call 179
 * (d 128, H 16, T 4096; bench/results/h200-resident-prefix.json): flash's and llama_linearized's global term kernel 2.97 → 0.955 ms at b 4
 * (plans 7.70 → 5.69, 8.20 → 6.18 ms), 5.9–7.7 → 1.89 at b 8; cosformer's unfused plan 4.226 → 2.924 at b 4. Where its
 * workgroups leave units idle a lone prefix kernel runs over spans of segments (resident-default.ts; call 184, b 1: flash
 * 2.055 → 1.490 ms, llama_linearized 2.162 → 1.601, bench/results/h200-resident-prefix-spans.json).
 */
function withResidentPrefix(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, req: PlanChoiceRequest, at: { b: number; t: number }, c: PlanChoice): PlanChoice {
  if (c.fuse || c.featureTile !== undefined || gpu.isSoftware || req.schedule || isSoftmaxProgram(p)) return c;
  const rs = residentPrefixSchedule(p, sizes, gpu.subgroupSize, gpu.limits, c.schedule, { ...at, units: adapterModel(gpu).computeUnits });
  if (!rs) return c;
  // Its schedule then serves the stateless kernels alone (a group term's 64-row reach at chunks of 8), which ran faster
  // at 1024 invocations than at the 512 the model prices best (call 179, d 128: flash b 4 5.690 → 5.228 ms, b 8 11.339
  // → 10.410; llama_linearized 6.184 → 5.715, 12.196 → 11.325; the local term kernel 4.40 → 3.77 at b 4; call 184 side
  // by side: flash 5.730 → 5.235, llama 6.240 → 5.722).
  const wide = STATELESS_THREADS <= gpu.limits.maxComputeInvocationsPerWorkgroup && outputPart(p, false).terms.some((t) => t.form.kind !== 'prefix');
  const schedule = wide && c.schedule.threads < STATELESS_THREADS ? { ...c.schedule, threads: STATELESS_THREADS } : c.schedule;
  const more = schedule === c.schedule ? '' : `, its kernels without state at ${STATELESS_THREADS} invocations`;
  return { ...c, schedule, resident: true, residentSchedule: rs, reason: `${c.reason}; its prefix term kernels with the state in lanes' registers (${show(rs)})${more}` };
}

/** Invocations of the unfused plan's stateless kernels beside resident prefix kernels (withResidentPrefix). */
const STATELESS_THREADS = 1024;

/** The per-node decisions in words: `%8 prologue (inline 645.7 µs > 42.3 µs)`. */
export function describePrologue(p: Program, decisions: readonly PrologueDecision[]): string {
  if (!decisions.length) return 'no feature nodes';
  return decisions.map((d) => `%${d.id} ${p.nodes[d.id].op} ${d.prologue ? 'prologue' : 'inline'} (inline ${d.inlineUs.toFixed(1)} µs ${d.prologue ? '>' : '≤'} prologue ${d.prologueUs.toFixed(1)} µs)`).join(', ');
}

function chooseBase(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, req: PlanChoiceRequest, shape?: { b: number; t: number }): PlanChoice {
  const at = shape ?? MODEL_SHAPE;
  if (isSoftmaxProgram(p)) {
    const schedule = req.schedule ?? chooseSchedule(gpu, p, sizes, shape);
    return { fuse: true, schedule, reason: `softmax attention: ${flashKernel(schedule)} (nothing to fuse)` };
  }
  const model = adapterModel(gpu);
  // (undefined where the plan cannot take the schedule: a schedule given for the unfused plan, segmented for its
  // stateless kernels, may not segment the fused one)
  const estimate = (s: ChunkSchedule, fuse: boolean) => {
    try {
      return estimatePlan(model, p, sizes, s, fuse, at.b, at.t)?.us;
    } catch {
      return undefined;
    }
  };
  const unseg = (s: ChunkSchedule): ChunkSchedule => ({ chunk: s.chunk, cols: s.cols, threads: s.threads }); // the unfused plan has no segments
  const both = (s: ChunkSchedule) => `est. at b ${at.b}, t ${at.t} on ${model.computeUnits} units: fused ${ms(estimate(s, true))}, unfused ${ms(estimate(unseg(s), false))}`;
  if (req.schedule && req.featureTile !== undefined) return { fuse: false, schedule: req.schedule, featureTile: req.featureTile, reason: `schedule given (${show(req.schedule)}), unfused over tiles of ${req.featureTile} features` };
  if (req.schedule) return { fuse: req.fuse ?? true, schedule: req.schedule, reason: `schedule given (${show(req.schedule)}); ${both(req.schedule)}` };
  const fusedCands = candidateSchedules(gpu.limits, p, sizes);
  const cached = cachedCandidate(gpu, p, sizes, fusedCands, shape);
  if (cached && req.fuse !== false) return { fuse: true, schedule: cached, reason: `the autotuner's winner (${show(cached)}), timed fused` };
  const unfusedCands = candidateSchedules(gpu.limits, p, sizes, true);
  const pick = (fuse: boolean) => modelDefault(gpu, p, sizes, fuse ? fusedCands : unfusedCands, fuse, at, fuse);
  if (req.fuse !== undefined) {
    const s = pick(req.fuse);
    const rs = req.fuse && req.prologue !== 'all' ? residentChoice(gpu, p, sizes, 'fused as asked', at, s, req.prologue) : undefined;
    if (rs) return rs;
    const sp = req.fuse && req.prologue !== 'all' && s ? spanChoice(gpu, p, sizes, 'fused as asked', at, s, pick(false)) : undefined;
    if (sp) return sp;
    if (!s) return tiledOrThrow(gpu, p, sizes, req.fuse);
    const other = pick(!req.fuse);
    const est = (fuse: boolean, x: ChunkSchedule | undefined) => `${fuse ? 'fused' : 'unfused'} ${ms(x && estimate(x, fuse))}`;
    return { fuse: req.fuse, schedule: s, reason: `${req.fuse ? 'fused' : 'unfused'} as asked (${show(s)}); est. at b ${at.b}, t ${at.t} on ${model.computeUnits} units, each at its default: ${est(true, req.fuse ? s : other)}, ${est(false, req.fuse ? other : s)}` };
  }
  if (gpu.isSoftware) {
    const fused = defaultSchedule(fusedCands, true);
    if (fused) return { fuse: true, schedule: fused, reason: `software adapter: fused, one shader to compile (${show(fused)}); ${both(fused)}` };
    const unfused = defaultSchedule(unfusedCands, true);
    if (unfused) return { fuse: false, schedule: unfused, reason: `the fused kernel does not fit ${gpu.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory: unfused (${show(unfused)})` };
    return tiledOrThrow(gpu, p, sizes, undefined);
  }
  const fixed = req.prologue === 'all' ? new Set(featureNodes(outputPart(p, false))) : req.prologue === 'none' ? new Set<Id>() : undefined;
  const c = chooseFusion(model, p, sizes, { fused: fusedCands, unfused: unfusedCands.filter((s) => !s.segment) }, at.b, at.t, fixed);
  if (!c) return tiledOrThrow(gpu, p, sizes, undefined);
  const rs = c.fuse && !c.prologue?.size ? residentChoice(gpu, p, sizes, `fused (the model's pick: ${c.reason})`, at, c.schedule, req.prologue) : undefined;
  if (rs) return rs;
  const sp = c.fuse && !c.prologue?.size ? spanChoice(gpu, p, sizes, `fused (the model's pick: ${c.reason})`, at, c.schedule, c.unfused?.schedule) : undefined;
  if (sp) return sp;
  // A group open across chunks in lanes' registers beats the model's unfused pick where it applies (resident-default.ts
  // OPEN_GROUP_LANES: flash and llama_linearized at b 4 and 8, d 64).
  if (!c.fuse && keepsGroupOpen(p, RESIDENT_CHUNK)) {
    const open = residentChoice(gpu, p, sizes, `fused, against the model's unfused pick (${c.reason})`, at, undefined, req.prologue);
    if (open) return open;
  }
  // Where the prefix terms hold 8 or more features a lane (cosformer's and cosformer_aug's two terms of 128 at d 128) the
  // plain fused kernel the model prices is squeezed into small tiles (est. 27.9 ms at b 4) and the model picks the
  // unfused plan; where that plan's prefix kernels do not keep their state in lanes' registers (withResidentPrefix: b 1
  // and 2 on the H200, where its schedule walks chunks of 16 or more) the fused resident kernel runs faster (calls 177
  // and 180, bench/results/h200-cosformer-d128.json, h200-resident-prefix.json; cosformer ms fused resident / unfused:
  // b 1 1.112 over spans / 1.750, b 2 1.844 / 2.465).
  const lanes = c.fuse || residentPrefixSchedule(p, sizes, gpu.subgroupSize, gpu.limits, c.schedule) ? undefined : residentLanes(p, sizes, gpu.subgroupSize);
  if (lanes !== undefined && lanes >= WIDE_RESIDENT_LANES) {
    const wide = residentChoice(gpu, p, sizes, `fused, against the model's unfused pick (${c.reason}): the prefix terms hold ${lanes} features a lane`, at, undefined);
    if (wide) return wide;
  }
  // (The model's unfused pick stands against the fused resident kernel at fewer features a lane: a rule that took the
  // resident kernel where the plain fused estimate over its least measured gain, 1.18, was under the unfused one had only cosformer's and
  // cosformer_aug's b 8 rows behind it, and since the unfused plan's elementwise kernels sped up (call 126) their
  // unfused plans run 2.421 and 2.590 ms against the resident kernel's 2.812 and 2.863: call 127.)
  const withPrologue = c.fuse && c.prologue?.size ? c.hybrid!.decisions : undefined;
  const decided = withPrologue?.length ? `; per feature node: ${describePrologue(p, withPrologue)}` : '';
  return {
    fuse: c.fuse,
    schedule: c.schedule,
    ...(c.prologue && { prologue: c.prologue }),
    ...(withPrologue?.length && { decisions: withPrologue }),
    reason: `${c.fuse ? 'fused' : 'unfused'} (${show(c.schedule)}) on ${model.computeUnits} units at b ${at.b}, t ${at.t}: ${c.reason}${decided}`,
  };
}

/**
 * The fused plan with its state in subgroup lanes' registers, where that is the default (chunked/resident-default.ts
 * says where and why); undefined elsewhere. The schedule model does not price it: it is taken wherever the fused plan is.
 */
function residentChoice(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, why: string, at: { b: number; t: number }, plain: ChunkSchedule | undefined, prologue: PrologueRequest | undefined = 'model'): PlanChoice | undefined {
  if (gpu.isSoftware) return undefined; // timed on hardware only; a software adapter's tests assume the plain kernel
  const s = residentDefault(p, sizes, gpu.subgroupSize, gpu.limits, { ...at, units: adapterModel(gpu).computeUnits });
  if (!s) return undefined;
  // Timed with cheap features inline. Features the model would rather compute in a prologue (hedgehog's softmaxes)
  // keep the plain kernel: hedgehog inline ran 4.52 ms resident against 4.30 plain (and its plan is the prologue's).
  // (decided at the plain kernel's schedule `plain`: the resident one may not fit without the lanes' registers)
  // A group open across chunks (resident-default.ts OPEN_GROUP_LANES) was timed with the model's prologue at the
  // resident schedule (llama_linearized's norms): it takes that prologue.
  const open = keepsGroupOpen(p, s.chunk);
  if (!open && plain && decidePrologue(adapterModel(gpu), p, sizes, plain, at.b, at.t)?.prologue.size) return undefined;
  const d = open && prologue !== 'none' ? decidePrologue(adapterModel(gpu), p, sizes, s, at.b, at.t) : undefined;
  const pro = d?.prologue.size ? { prologue: d.prologue, decisions: d.decisions } : {};
  return {
    fuse: true, schedule: s, resident: true, ...pro,
    reason: `${why}; the state in subgroup lanes' registers (rs: ${gpu.subgroupSize} lanes a subgroup, each holding ${open ? 'two or more of the prefix terms\' features, a group open across chunks in registers too' : 'four or more of the prefix terms\' features'}; ${show(s)})${d?.prologue.size ? `; prologue by the model: ${describePrologue(p, d.decisions)}` : ''}`,
  };
}

/** Whether a prefix term of `p` keeps a group open across chunks of `chunk` rows (a past_groups term of longer groups). */
function keepsGroupOpen(p: Program, chunk: number): boolean {
  return p.terms.some((t) => t.form.kind === 'prefix' && t.mask[0]?.kind === 'past_groups' && t.mask[0].size > chunk);
}

/**
 * The fused plan over spans of segments (chunked/span-default.ts), where that candidate exists at this shape and the
 * model estimates it under the fused schedule it picked (`plain`), every feature inline; undefined elsewhere.
 */
function spanChoice(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, why: string, at: { b: number; t: number }, plain: ChunkSchedule, unfused: ChunkSchedule | undefined): PlanChoice | undefined {
  if (gpu.isSoftware) return undefined; // timed on hardware only
  const model = adapterModel(gpu);
  const w = weighSpans(model, p, sizes, gpu.limits, at.b, at.t, plain);
  if (!w || w.us >= w.plainUs) return undefined;
  const other = unfused ? estimatePlan(model, p, sizes, unfused, false, at.b, at.t)?.us : undefined;
  return { fuse: true, schedule: w.schedule, prologue: new Set(), reason: `${why}; over spans (${show(w.schedule)}: whole heads' columns a workgroup): est. fused ${ms(w.us)} over spans; at ${show(plain)} fused ${ms(w.plainUs)}, unfused ${ms(other)}` };
}

/** The unfused plan with feature-tiled terms, or the error saying that not even it fits. */
function tiledOrThrow(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, fuse: boolean | undefined): PlanChoice {
  // unless asked for the unfused plan: the fused plan over feature tiles (feature-tiled-plan.ts), tiles and the
  // other terms at schedules of their own, one kernel summing the tiles and combining
  const f = fuse === false ? undefined : fusedTiledSchedule(gpu.limits, p, sizes, gpu.isSoftware);
  if (!f && fuse) throw noFit(gpu, p, true);
  if (f) {
    const { featureTile, ...tile } = f.tile;
    return {
      fuse: true, schedule: f.rest, featureTile, tileSchedule: tile,
      reason: `neither the fused kernel nor every unfused term kernel fits in ${gpu.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory: fused over feature tiles, the wide prefix terms over tiles of ${featureTile} features (${show(tile)}), the others at ${show(f.rest)}`,
    };
  }
  const s = defaultFeatureTiled(featureTiledSchedules(gpu.limits, p, sizes), gpu.isSoftware);
  if (!s) throw noFit(gpu, p, fuse);
  const { featureTile, ...schedule } = s;
  const what = fuse === undefined ? 'neither the fused kernel nor every unfused term kernel fits' : 'not every unfused term kernel fits';
  return { fuse: false, schedule, featureTile, reason: `${what} in ${gpu.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory: unfused, the wide prefix terms over tiles of ${featureTile} features (${show(schedule)})` };
}

function noFit(gpu: Gpu, p: Program, fuse: boolean | undefined): Error {
  const what = fuse === undefined ? 'neither the fused kernel nor the unfused plan (not even with its feature axes tiled)' : fuse ? 'the fused kernel' : 'the unfused plan (not even with its feature axes tiled)';
  return new Error(
    `${p.name}: at these axis sizes ${what} fits in this adapter's ${gpu.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory ` +
      `(${gpu.adapterName}), at any chunk schedule${fuse ? '; try --no-fuse' : ''}; use smaller feature axes`,
  );
}

/**
 * The schedules the model's prefill may take: unsegmented, the schedule model's best among all, segmented ones
 * included (only where the variant's state simply adds up), or the one given. 'model' (the default): on hardware
 * 'segmented', on a software adapter 'unsegmented' (its shader timings assume one kernel). On the H200 (call 10,
 * 12 layers of elu_dwconv, b 1, t 2048, each kernel timed warm) the one kernel at chunk 32 × 16 columns launched
 * 48 workgroups and took 0.75 ms a layer; in segments of 4 (chunk 16, 32 columns, 512 threads: 768 + 780 + 768
 * workgroups) the three launches took 0.21 ms.
 */
export type PrefillScheduleRequest = 'model' | 'unsegmented' | 'segmented' | 'unfused' | ChunkSchedule;

/** A prefill's plan: the fused chunk plan at `schedule`, or (`fuse` false) the unfused plan, each kernel exporting its part. */
export interface PrefillChoice {
  readonly fuse: boolean;
  readonly schedule: ChunkSchedule;
  readonly prologue: ReadonlySet<Id>;
  /** The unfused plan's prefix kernels in lanes' registers at `residentSchedule` (lower.ts). */
  readonly residentSchedule?: ChunkSchedule;
  readonly reason: string;
}

/**
 * The model's prefill (compiled-attention.ts): a chunk plan that also exports the decoding state. On hardware, where
 * the plan choice at the model's shape (MODEL_SHAPE) is the unfused plan (flash's and llama_linearized's at d 128,
 * whose fused kernels fit only small tiles there), that plan, its kernels each exporting their part of the state;
 * else, or asked for a schedule, one fused chunk plan, whose schedule and prologue the model chooses: on hardware the
 * cheaper of every feature inline at chooseSchedule's schedule (or, asked 'segmented', the model's best of every
 * schedule) and the best unsegmented schedule with its model-decided prologue; on a software adapter every feature
 * inline (its shader timings assume one kernel) unless asked.
 */
export function choosePrefill(
  gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, prologue: PrologueRequest = 'model', asked: PrefillScheduleRequest = 'model',
): PrefillChoice {
  const none = new Set<Id>();
  if ((asked === 'model' && !gpu.isSoftware) || asked === 'unfused') {
    const c = isSoftmaxProgram(p) ? undefined : choosePlan(gpu, p, sizes, asked === 'unfused' ? { fuse: false } : {}, MODEL_SHAPE);
    if (c && !c.fuse && c.featureTile === undefined) {
      return { fuse: false, schedule: c.schedule, prologue: none, ...(c.resident && c.residentSchedule && { residentSchedule: c.residentSchedule }), reason: `unfused, ${asked === 'unfused' ? 'as asked' : `the plan choice's at b ${MODEL_SHAPE.b}, t ${MODEL_SHAPE.t}`} (${c.reason}), each kernel exporting its part of the decoding state` };
    }
    if (asked === 'unfused') throw new Error(`${p.name}: an unfused prefill was asked, but ${c ? 'its unfused plan tiles its feature axes' : 'softmax attention has one plan'}`);
  }
  const request = asked === 'model' ? (gpu.isSoftware ? 'unsegmented' : 'segmented') : asked;
  if (typeof request === 'object') {
    const all = prologue === 'all' && !isSoftmaxProgram(p);
    return { fuse: true, schedule: request, prologue: all ? new Set(featureNodes(outputPart(p, false))) : none, reason: `the schedule asked (${show(request)})${all ? ', every feature node in a prologue' : ''}` };
  }
  const schedule =
    request === 'segmented' && !isSoftmaxProgram(p)
      ? (modelDefault(gpu, p, sizes, candidateSchedules(gpu.limits, p, sizes), true, MODEL_SHAPE, true) ?? chooseSchedule(gpu, p, sizes))
      : chooseSchedule(gpu, p, sizes);
  if (isSoftmaxProgram(p)) return { fuse: true, schedule, prologue: none, reason: `softmax attention: ${flashKernel(schedule)} (no feature maps)` };
  if (prologue === 'none' || (prologue === 'model' && gpu.isSoftware)) return { fuse: true, schedule, prologue: none, reason: `every feature inline (${show(schedule)})${prologue === 'none' ? ', as asked' : ': software adapter'}` };
  if (prologue === 'all') return { fuse: true, schedule, prologue: new Set(featureNodes(outputPart(p, false))), reason: `every feature node in a prologue, as asked (${show(schedule)})` };
  const model = adapterModel(gpu);
  const { b, t } = MODEL_SHAPE;
  const inline = estimatePlan(model, p, sizes, schedule, true, b, t);
  const h = bestHybrid(model, p, sizes, candidateSchedules(gpu.limits, p, sizes).filter((s) => !s.segment), b, t);
  if (!inline || !h?.prologue.size || h.us >= inline.us) return { fuse: true, schedule, prologue: none, reason: `every feature inline (${show(schedule)}): est. ${ms(inline?.us)} ≤ with a prologue ${ms(h?.prologue.size ? h.us : undefined)}` };
  return { fuse: true, schedule: h.schedule, prologue: h.prologue, reason: `a prologue (${show(h.schedule)}): est. ${ms(h.us)} < every feature inline ${ms(inline.us)}; ${describePrologue(p, h.decisions)}` };
}
