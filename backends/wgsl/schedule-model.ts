// A cost model of the chunk kernel on an adapter, for choosing schedules and fused vs unfused plans without a
// timing run. A launch of W workgroups runs in waves over the adapter's compute units; a unit holds as many
// workgroups at once as its workgroup memory and invocations allow. Each workgroup walks its ceil(t / C) chunks in
// sequence (a segmented schedule: G chunks twice, plus a scan over segments), so the kernel's time is
//   waves · steps · (latency + ops of one step at the rate the unit shares among its resident workgroups)
// bounded below by its global-memory traffic at the adapter's bandwidth; a kernel that loads each chunk's rows while
// the chunk before computes (chunked/staging.ts prefetchSlots) waits less of that latency. The chunk step's operations are the
// score tile (C² per feature, or per pair's score ops for a quadratic term), A·V (C²·R), φ·S and the state update
// (2·C·F·R each workgroup's R columns), and the prologue that computes the features of C rows inline
// (element-ops.ts) — the last two are repeated by every column tile, which is what makes narrow tiles cost more
// work for more workgroups. The constants are an H100/H200 class GPU's (SM count from the adapter, 228 KB of
// shared memory and, by its registers, 1024 resident chunk-kernel threads per SM, ~14 chunk-kernel operations
// per cycle per SM: it reads both operands of every multiply-add from workgroup memory; fitted on the H200) and are
// rough: the figures rank schedules and plans (bench/model-fit.ts sets them beside the H200's measurements);
// they are not predictions to quote. src/runtime/adapter-model.ts builds the adapter's.
import { operands, type OutputItem, type Program, type Term } from '../../src/ir/types.ts';
import { layoutOf, prefetchedLoads, sharedFloats, type ChunkKernelSpec, type ChunkSchedule } from './chunked.ts';
import { analyseChunk, partDen, scoreReach, scoresInChunk } from './chunked/analysis.ts';
import { stagedReductions } from './chunked/row-reductions.ts';
import { blockTile, scoreTile } from './chunked/tiles.ts';
import { count, type Sizes } from './common.ts';
import { elementOps } from './element-ops.ts';
import { stagedElementOps, stagedRowOps } from './row-quantity-ops.ts';
import { rowWidth } from './row-quantities.ts';
import { featureCount, frontier, prefixGate, rowAxes } from './layout.ts';

export interface AdapterModel {
  /** Compute units that run workgroups side by side (SMs; CPU cores for a software adapter). */
  readonly computeUnits: number;
  /** Workgroup memory (bytes) and invocations one unit holds across its resident workgroups. */
  readonly unitWorkgroupBytes: number;
  readonly unitInvocations: number;
  /** The largest workgroup memory one workgroup may declare (the adapter's limit). */
  readonly maxWorkgroupBytes: number;
  /** Chunk-kernel operations (multiply-adds through workgroup memory) per µs per unit. */
  readonly unitOpsPerUs: number;
  /** Elementwise operations per µs per unit (feature and combine kernels: registers, all lanes). */
  readonly unitElementOpsPerUs: number;
  /** Fixed time of one sequential chunk step: its barriers and dependent global loads (µs). */
  readonly stepLatencyUs: number;
  /** Global-memory bandwidth (bytes per µs) and the cost of one launch (µs). */
  readonly bytesPerUs: number;
  readonly launchUs: number;
  /** Invocations a workgroup needs to use its unit's rate, and the share of that rate a lone workgroup reaches. */
  readonly fullRateInvocations: number;
  readonly loneShare: number;
  /** A lone workgroup whose unit could hold another (launchCost): its operations per µs and fixed time a step (µs). */
  readonly roomOpsPerUs: number;
  readonly roomStepUs: number;
  /**
   * A kernel whose staging is prefetched (chunked/staging.ts prefetchSlots) no longer waits a step for its rows: this
   * share of their arrival time (the loads it holds at its unit's share of the bandwidth), at most the step's fixed
   * time, comes off that fixed time, for a lone workgroup with room (roomStepUs) and for one that fills its unit
   * (stepLatencyUs).
   */
  readonly prefetchRoomShare: number;
  readonly prefetchLoneShare: number;
  /** A feature that reads many inputs per element (MANY_READS_OPS) computed inline in a chunk kernel: its rate (per µs per unit). */
  readonly inlineElementOpsPerUs: number;
  /** Such a feature computed once in its own feature kernel (fusion-model.ts featureKernelCost): its rate (per µs per unit). */
  readonly manyReadsKernelOpsPerUs: number;
  /**
   * A row quantity staged per chunk (chunked/row-reductions.ts: llama's ‖q‖, ‖k‖) is one invocation's loop along its row:
   * µs a step per operation of that loop, on the step's critical path however many workgroups share the unit.
   */
  readonly rowSerialUsPerOp: number;
  /** A fused kernel that keeps a past_groups group open beside a bounded term's score tile: µs more a step (chunkKernelCost). */
  readonly openGroupStepUs: number;
}

/**
 * Operations per element (elementOps) from which a feature map reads many inputs per element (performer's projection:
 * 327 at d 64, llama's L2 norm: 130, hedgehog's softmax over a projection) rather than being elementwise (elu + 1: 4,
 * cosformer's re-weighting: 9–10): fusion-model.ts's PROLOGUE_MIN_OPS, and the features inlineElementOpsPerUs prices.
 */
export const MANY_READS_OPS = 32;

/** An H100/H200-class GPU with `computeUnits` SMs (see the file's comment for where the constants come from). */
export function hardwareModel(computeUnits: number, maxWorkgroupBytes: number): AdapterModel {
  return {
    computeUnits,
    unitWorkgroupBytes: 228 * 1024,
    // An SM schedules 2048 threads but its 64K registers hold 1024 of the chunk kernel's (~64 registers each: its
    // score, state and output accumulators), so a second 1024-thread workgroup waits for the first. On the H200
    // elu's unfused chunk kernel at chunk 32, 16 columns, 1024 threads (256 workgroups, 128 steps each) ran
    // 3.43 ms: two waves of 128 steps at a lone workgroup's rate, not the one wave the model assumed at 2048
    // (1.97 ms); retnet's and mamba2's fused kernels there (3.13 ms) the same.
    unitInvocations: 1024,
    maxWorkgroupBytes,
    // The unit's rate with its resident workgroups sharing it, and a lone workgroup's share of it (loneShare below).
    // Call 9 timed 32×16 at 512 threads, two workgroups sharing each SM in one wave: retnet's and mamba2's fused
    // kernels 2.62 and 2.71 ms where 1024 threads (one a unit, two waves) had run 3.13, gla's 7.62 where 12.1.
    // 16 a cycle with a lone workgroup at half of it had the two sharing at 1.72 ms (retnet), twice the speed of
    // 1024 threads; 10 a cycle, a lone workgroup at 0.8 of it, put them at 2.34 and 3.18 (gla 8.32 and 10.65).
    // Refitted to the toggled figures (bench/results/h200-kernels.json, all its rows: calls 25, 26 and 30, Dawn
    // without its robustness clamps), against which 10 a cycle ran 1.4–1.8× high (elu fused 1.94 ms est. against
    // 1.07, retnet 2.09 against 1.15): 14 a cycle with loneShare 0.9 has the least estimate error over those rows
    // (1.16×; the worst plan llama's fused kernel, 1.82× low) with the measured plan the model ranks cheapest the
    // fastest in every row (test/model-picks-h200.test.ts), and still ranks every pair of schedules of the
    // pre-toggle rows (h200-kernels-fit.json) over 10 % apart as measured (test/model-fit.test.ts).
    // bench/model-search.ts's grid (10–24 a cycle, loneShare 0.6–0.9, unitElementOpsPerUs 32–128 a cycle,
    // stepLatencyUs 0.5–1.5, bytesPerUs 2.5e6–4.5e6) left the last three where they were (48, 1 µs, 3.5e6): at 14
    // and 0.9 any of them from 32 to 128, 0.5 to 1 µs and 2.5e6 to 4.5e6 keeps the picks and the error within
    // 1.15–1.21×; 1.5 µs turns hedgehog's. 16 a cycle errs 1.145× at best but puts llama's fused plan 2.07× low.
    unitOpsPerUs: 14 * 1700,
    // Not the SM's 128 FP32 lanes a cycle: a feature kernel's counted operation (element-ops.ts) is a multiply-add
    // with its loads (hedgehog's projection reads q and the weights per product). Fitted to hedgehog's two softmax
    // feature kernels, 25027 operations an element: its unfused plan ran 169 ms on the H200 and the prologue plan
    // 180, where 128 a cycle put both at 62; 48 also puts performer's (2.74 ms) and llama's within 10 %.
    unitElementOpsPerUs: 48 * 1700,
    // Refitted with the rate: at 2 µs the 256 steps of elu_aug's unfused 16×32×1024 (above) cost it its measured lead
    // over 32×16×512; 1 µs has the least estimate error over the 132-unit rows (bench/model-fit.ts, 1.10×).
    stepLatencyUs: 1,
    // Fitted to the fused kernels of llama_linearized and flash (calls 169–170, B 4 H 16 T 4096 D 64; flash is
    // llama's layer without the norms and the convolution): with its norms staged in the kernel llama's fused kernel
    // ran 2.73, 3.05 and 4.61 ms at 16×32, 32×16 and 16×16 (512 threads) where flash's ran 1.69 at 16×32 — each
    // chunk's ‖q‖ and ‖k‖ rows (16 + 64) are loops of 64 loads and multiply-adds on one invocation a row, 3.7 µs a
    // step. At 0.013 µs an operation of those loops the three estimates are 0.97–1.01× their times (0.68–0.79×
    // without); the model then puts the norms in a prologue (llama 16×32 with them there: 1.64 ms).
    rowSerialUsPerOp: 0.013,
    // A fused kernel that keeps a past_groups group open (its So in registers, folded by the whole workgroup after
    // the outputs: chunked/state.ts) beside a bounded term's score tile — flash's and llama's — came in at 0.9–1.07×
    // its estimate where their unfused plans come in at 1.2–1.6× and the rest of the zoo at 1.7–1.9×: flash 16×32×512
    // 1.69 ms (est. 1.82) against unfused 1.46 (est. 1.99) at b 4, so the model took the fused plan. Not derived: the
    // per-row work of the two plans is the same (the unfused kernels walk chunks of 32, the fused one of 16); fitted
    // so that the fused plans rank as measured at b 1, 4 and 8 (calls 169–170: at b 4 flash 1.69 against 1.45 unfused,
    // llama with its norms in a prologue 1.64 against 1.56; at b 1, segmented, 0.60 against 1.02 and 1.10).
    openGroupStepUs: 2.5,
    bytesPerUs: 3.5e6,
    launchUs: 4,
    // A workgroup of fewer invocations keeps each busy with more of the step, alone or sharing its unit (launchCost's
    // `own`). Call 9 ran the segmented 16×64 tile at 256 threads, four workgroups a unit, 1.4–1.6× slower than
    // 8×64 at 512 (two a unit) for the same operations: elu 2.44 against 1.73 ms, elu_aug 2.74 against 1.88,
    // performer 5.38 against 3.30; the model, which had four of 256 at the unit's full rate, estimated 1.37 against
    // 1.79 (elu). At 384 the 256-thread workgroup runs at two thirds of the rate: 2.89 against 1.95.
    fullRateInvocations: 384,
    // Not half: a lone 1024-thread workgroup of elu_aug's unfused kernel at 16×32 (128 workgroups, one a unit, 256
    // steps) ran 2.49 ms in all where 32×16×512 (two a unit, 128 steps, twice the tiles' score work) ran 3.25; at half
    // the model had them at 3.15 and 2.32, at 0.8 2.63 and 2.80. At 0.7 that pair reverses; above 0.8 512 threads'
    // lead over 1024 at 32×16 (retnet: measured 1.19×) shrinks, 1.22× at 0.9 and 1.11× at 1, and the estimate
    // error over the 132-unit rows grows from 1.10× to 1.13× and 1.16×. The toggles moved it (unitOpsPerUs above):
    // on bench/results/h200-kernels.json a lone 1024-thread workgroup runs nearer its unit's rate, elu's unfused
    // 16×32×1024 1.51 ms, est. 1.61 at 0.9 and 1.75 at 0.8, retnet's fused 1.15, est. 1.42 and 1.57; at 0.8
    // hedgehog's unfused plan (2.54 ms) is estimated above its prologue plan at 8×64×512 in segments of 16 (3.00).
    // Only for a workgroup that fills its unit's registers alone (launchCost: one whose unit could hold a second
    // runs at the full rate, test/model-d128-schedules.test.ts).
    loneShare: 0.9,
    // A lone workgroup whose unit could hold a second (launchCost's `room`): its products' rate and fixed time a step.
    // At the shared rate (14 a cycle) and stepLatencyUs, as c4b817b had it, the step's operations cost too much and its
    // fixed part too little: elu_dwconv at d 64 (b 4, h 16, t 4096; calls 52 and 54, bench/results/h200-around-picks
    // .json) ran 32×32×512, 128 steps of 247K operations, in 1.013–1.022 ms and 16×32×512, 256 of 101K, in 1.066–1.075,
    // est. 1.463 and 1.349: 7.9 and 4.2 µs a step, which no rate puts in that order with 1 µs fixed (the pair needs
    // fixed µs × operations per µs above 45K; 1 µs and 14 a cycle give 23.8K). The room schedules alone fit 1.5 µs
    // + 23 a cycle (16×32×512 est. 1.051, 32×32×512 1.006, 8×64×512 1.907 against 1.938, d 128's 8×64×512 2.955
    // against 2.954), but that puts them 1.3–1.6× below the shared, segmented and 1024-thread schedules the model
    // still has that far high (16×16×512 1.226 ms, est. 1.973; 16×32×512s4 1.118, est. 1.590; 16×32×1024 1.126, est.
    // 1.470) and turns cosformer's pick to its unfused plan (bench/results/h200-kernels-fit.json: 30 % slower). 2 µs
    // and 18 a cycle keep the pair's ratio (est. 1.301 against 1.368: 0.95, measured 0.95) at the others' level of
    // error (8×64×512 1.938, est. 2.484; d 128's 2.954, est. 3.829, still its pick); of the file's pairs over 10 %
    // apart one more is ranked as measured (d 128's 4×64×512 4.326 against 4×64×1024 4.788) and one less (8×32×512
    // 1.436 against 32×16×256 2.119, est. 2.988 and 2.601): test/model-around-picks.test.ts.
    roomOpsPerUs: 18 * 1700,
    roomStepUs: 2,
    // Fitted to the kernels the H200 timed with and without prefetched staging (bench/results/h200-chunk-prefetch.json:
    // call 61, and call 60's defaults; before it, h200-around-picks.json's calls 52–54 and h200-kernels.json's 57–58).
    // A step's saving against its arrival time (the held loads at 3.5e6 / 132 bytes a µs), with one 512-thread
    // workgroup a unit (room): elu_dwconv d 64 32×32×512 (11 loads a thread, 22 KB: 0.85 µs) 1.014 → 0.926 ms, 0.69 µs
    // of 128 steps (0.81 of it); 16×32×512 (6: 0.46 µs) 1.066 → 0.979, 0.34 µs (0.73); d 128 8×64×512 (6) 2.955 →
    // 2.809, 0.28 µs of 512 (0.61); retnet 32×32×512 0.955 → 0.861 (0.86); gla 16×32×512 1.779 → 1.675 (0.76); elu
    // 32×32×512 0.890 → 0.744 (1.48). 0.75 of the arrival, at most all of roomStepUs. With one 1024-thread workgroup
    // filling its unit, whose 32 warps already overlap part of the wait: elu_dwconv 32×32×1024 (6 loads: 0.93 µs)
    // 1.070 → 1.045, 0.20 µs; 16×32×1024 0.21 µs of 0.46; d 128 8×64×1024 0.12 of 0.46; llama_linearized's unfused
    // kernels at 16×32×1024 (9, 3 and 3 loads) 4.237 → 3.899 ms, 1.32 µs a step of their 2.31. Half the arrival up to
    // stepLatencyUs (0.47, 0.23, 0.23 and 0.96 µs) is between them; at 0.375 of it uncapped flash's unfused pick moved
    // to a 1024-thread schedule not timed since prefetching. Without the two, the prefetched kernels were estimated
    // 1.3–1.7× their time and the segmented ones, which prefetch their state launch at most, 0.95–1.12×: the model
    // picked performer's segmented prologue plan (1.987 ms, est. 2.218) over the prologue plan at 32×32×512 (1.740,
    // est. 2.291) and its unfused plan (1.897): h200-performer-plans.json, call 66. Workgroups sharing a unit are left
    // as they were (launchCost has them hiding each other's waits already), though the H200 sped the shared 32×16×512
    // up too (1.624 → 1.334 ms).
    prefetchRoomShare: 0.75,
    prefetchLoneShare: 0.5,
    // A feature kernel's elementwise rate (48 a cycle) undercharged the features that read many inputs per element
    // inline: performer's fused plan at 16×64×512 in segments of 16 ran 2.467 ms with ψ inline and 1.987 with ψ in a
    // prologue (performer_aug 2.591 and 2.127; h200-kernels.json, call 62), 0.48 and 0.46 ms apart where the model had
    // 0.13; at 32 a cycle it has 0.45 for both. Such a feature is staged one element per loop trip (staging.ts: a
    // reduction per element is not unrolled) by the kernel's one or two workgroups a unit, where a feature kernel
    // keeps its units full. The elementwise maps stay at 48: at 32 cosformer's fused plan (1.916 ms) is estimated above
    // its unfused one (2.254).
    inlineElementOpsPerUs: 32 * 1700,
    // The same features in a feature kernel of their own (a prologue, or the unfused plan's) run faster than the
    // elementwise rate: a dot product over the row (performer's ω·k, llama's and hedgehog's norms) is loads the
    // invocations of a row share, one FMA each. At 48 a cycle the model put performer's prologue and unfused plans at
    // 1.28–1.38× their times (h200-kernels.json, call 93: prologue 1.61 ms, est. 2.22; unfused 1.77, est. 2.28;
    // h200-performer-plans.json likewise at five schedules) while its fused plans sat at 0.95–1.11×, and so at b 8
    // picked performer's fused plan (3.52 ms) over the unfused one (3.26). 96 a cycle puts performer's prologue plans at
    // 0.98× (1.711 against 1.740 at 32×32×512) and hedgehog's at 1.17× (1.34× at 48); the geometric mean error over
    // h200-kernels.json goes 1.32× → 1.28×. Call 112 timed what it moved, beside the code before (bench/results/
    // h200-feature-rate.json): performer's b 8 pick, now the prologue plan at 16×64×512, 2.936 ms against the old pick's
    // 3.522 (unfused 3.261), performer_aug 3.133 against 3.573; at b 1 the segmented prologue plan with both features
    // in the prologue 0.443 against 0.479 with one; and llama_linearized's key feature, which the model now puts in a
    // prologue of the fused plan, 5.033 against 6.414 inline (its unfused pick, 4.260, stays the fastest). The
    // elementwise maps stay at 48.
    manyReadsKernelOpsPerUs: 96 * 1700,
  };
}

/** A CPU's software Vulkan (lavapipe): one workgroup per core at a time, ~5 GFLOP/s in all. */
export function softwareModel(cores: number, maxWorkgroupBytes: number): AdapterModel {
  return {
    computeUnits: cores,
    unitWorkgroupBytes: maxWorkgroupBytes,
    unitInvocations: 1024,
    maxWorkgroupBytes,
    unitOpsPerUs: 2500 / cores,
    unitElementOpsPerUs: 2500 / cores,
    stepLatencyUs: 5,
    rowSerialUsPerOp: 0,
    openGroupStepUs: 0,
    bytesPerUs: 1e4,
    launchUs: 30,
    // a core runs a workgroup's invocations in turn at its full rate, however many there are
    fullRateInvocations: 1,
    loneShare: 1,
    roomOpsPerUs: 2500 / cores,
    roomStepUs: 5,
    // not measured on a CPU: prefetching left unpriced
    prefetchRoomShare: 0,
    prefetchLoneShare: 0,
    inlineElementOpsPerUs: 2500 / cores,
    manyReadsKernelOpsPerUs: 2500 / cores,
  };
}

export interface KernelEstimate {
  readonly us: number;
  readonly workgroups: number;
  /** Workgroups one unit holds at once (by workgroup memory and invocations). */
  readonly resident: number;
  readonly waves: number;
  readonly steps: number;
}

/**
 * A launch of `workgroups` workgroups, each `steps` sequential steps of `stepOps` operations, moving `bytes`;
 * `prefetchedBytes`: what each workgroup loads a chunk ahead, a step (0 where its staging is not prefetched).
 */
export function launchCost(
  m: AdapterModel,
  k: { workgroups: number; threads: number; workgroupBytes: number; steps: number; stepOps: number; bytes: number; parallelism?: number; registerShare?: number; featureOps?: number; prefetchedBytes?: number; serialUs?: number },
): KernelEstimate {
  // unitInvocations counts invocations of one prefix term's registers. A busy invocation (one of a step's
  // independent outputs, `parallelism`) holds `registerShare` sets of accumulators (its score, output and state
  // accumulators per prefix term: chunkKernelCost); an idle one only the kernel's own.
  const busy = Math.min(k.threads, k.parallelism ?? k.threads);
  const invocations = Math.floor(m.unitInvocations / Math.max(k.threads, busy * (k.registerShare ?? 1)));
  const resident = Math.max(1, Math.min(k.workgroupBytes ? Math.floor(m.unitWorkgroupBytes / k.workgroupBytes) : 32, invocations, 32));
  const waves = Math.ceil(k.workgroups / (m.computeUnits * resident));
  // Workgroups sharing a unit in one wave share its rate and hide each other's step latency (barriers, loads);
  // a lone workgroup stalls at its own barriers (loneShare of the unit's rate at best). A workgroup of fewer
  // invocations than fullRateInvocations reaches that share of the rate (`own`) whether alone or not: four of 256
  // sharing a unit ran slower than two of 512 on the H200 (fullRateInvocations). Invocations beyond a step's
  // independent outputs (`parallelism`) idle.
  const sharing = Math.min(resident, Math.ceil(k.workgroups / m.computeUnits));
  const own = Math.min(1, busy / m.fullRateInvocations);
  // First (c4b817b): a lone workgroup whose unit could hold another (resident ≥ 2: fewer invocations, registers to spare) ran at the
  // unit's full rate: call 48's elu_dwconv at d 128, 8×64×512 (128 workgroups, one a unit, 512 steps of 164K
  // operations), ran 5.8 µs a step, est. 8.5 at loneShare, and lost the pick to 16×32×512 (3.652 ms against 2.965).
  // At the full rate it is picked, and so is 16×32×512 over 16×64×512 in segments of 16 at d 64, which call 50 timed
  // side by side: elu_dwconv 1.067 against 1.277 ms, elu 0.948 against 1.069, relu_aug 1.061 against 1.193. The
  // unfused plans moved from 1024 to 512 invocations with it: llama_linearized's 4.236 → 4.516 ms, flash's 4.059 →
  // 4.170 (their pick is still the faster plan), elu's 1.506 → 1.435.
  // Such a workgroup's step is its own fixed time (roomStepUs, not stepLatencyUs: nothing of another workgroup's to
  // hide it behind) and its products at its own rate (roomOpsPerUs, in place of unitOpsPerUs; own and the lone
  // lanes' share as before); a lone workgroup that fills its unit's registers keeps loneShare of the shared rate.
  // The features it computes inline (`featureOps` of stepOps: elementwise work in registers, counted at unitOpsPerUs
  // / unitElementOpsPerUs) keep the rate they had: at the room rate llama_linearized's fused plan at 8×32×512 came out
  // below its unfused plan (measured 1.47× faster at 8×32×1024 with the toggles, 2.86× before) and performer's φ inline under 3× its prologue
  // (test/prologue-model.test.ts).
  const room = sharing === 1 && resident >= 2;
  const featureOps = Math.min(k.featureOps ?? 0, k.stepOps);
  const alone = m.unitOpsPerUs * own * (resident >= 2 ? 1 : m.loneShare);
  const shared = m.unitOpsPerUs * own * Math.min(1, (sharing * busy * m.loneShare) / m.fullRateInvocations);
  // A lone workgroup whose loads are issued a chunk ahead does not wait for them at the step's start: the share of
  // their arrival (at its unit's share of the bandwidth, at most the fixed time) that the H200 measured comes off the
  // fixed time (prefetchRoomShare, prefetchLoneShare).
  const arrivalUs = ((k.prefetchedBytes ?? 0) * m.computeUnits) / m.bytesPerUs;
  const hidden = (fixedUs: number, share: number) => share * Math.min(fixedUs, arrivalUs);
  const stepUs = room
    ? m.roomStepUs - hidden(m.roomStepUs, m.prefetchRoomShare) + ((k.stepOps - featureOps) * m.unitOpsPerUs) / (m.roomOpsPerUs * shared) + featureOps / shared
    : Math.max(m.stepLatencyUs - (sharing === 1 ? hidden(m.stepLatencyUs, m.prefetchLoneShare) : 0) + k.stepOps / alone, (sharing * k.stepOps) / shared);
  const us = Math.max(waves * k.steps * (stepUs + (k.serialUs ?? 0)), k.bytes / m.bytesPerUs) + m.launchUs;
  return { us, workgroups: k.workgroups, resident, waves, steps: k.steps };
}

/** An elementwise launch (a feature map or the combine kernel): `elements` outputs of `ops` each, all lanes busy. */
export function elementwiseCost(m: AdapterModel, elements: number, ops: number, bytes: number): number {
  return Math.max((elements * ops) / (m.unitElementOpsPerUs * m.computeUnits), bytes / m.bytesPerUs) + m.launchUs;
}

export interface ChunkKernelModel {
  readonly program: Program;
  readonly sizes: Sizes;
  readonly terms: readonly Term[];
  readonly items: readonly OutputItem[];
  readonly schedule: ChunkSchedule;
  /** Nodes read from materialised feature buffers (unfused) instead of computed in the kernel. */
  readonly materialised: ReadonlySet<number>;
  /** Writes numerator and denominator parts (unfused) instead of the output. */
  readonly partial: boolean;
  /** false: lowered without prefetched staging (ChunkKernelSpec.prefetch), as every kernel was before call 60. */
  readonly prefetch?: boolean;
}

/**
 * The elements per token a chunk kernel of `terms` reads: the program inputs its terms reach and the materialised
 * feature buffers it reads in their place, split into those every column tile reads whole (q, k, features) and
 * those each tile reads only its columns of (`once`: v). Only what the terms reach: an unfused convolution's
 * kernel reads v and never q, k, whose 32 tiles' reads (at h 16, e 64, 32 columns) the model once charged it
 * — 1.9 ms of traffic at b 4, t 4096 for a kernel that reads 17 MB.
 */
function tokenReads(p: Program, sizes: Sizes, terms: readonly Term[], materialised: ReadonlySet<number>, cols: readonly string[]): { perTile: number; once: number } {
  const seen = new Set<number>();
  const out = { perTile: 0, once: 0 };
  const visit = (id: number): void => {
    if (seen.has(id)) return;
    seen.add(id);
    const n = p.nodes[id];
    if (materialised.has(id) || n.op === 'input') {
      const axes = n.type.axes;
      out[cols.every((a) => axes.includes(a)) ? 'once' : 'perTile'] += count(axes, sizes);
      return;
    }
    for (const x of operands(n)) visit(x);
  };
  for (const term of terms) for (const id of [term.score, term.value]) visit(id);
  return out;
}

/** The group a past_groups term keeps open across chunks of C (chunked/analysis.ts PrefixPlan.openGroup), or 0. */
const openGroupOf = (t: Term, C: number) => (t.mask[0]?.kind === 'past_groups' && t.mask[0].size > C ? t.mask[0].size : 0);

/** The extra operations of a product weighed by a per-feature gate's exponential (see chunkKernelCost). */
const GATED_PRODUCT_OPS = 0.75;
/**
 * A bounded term's score operations (elementOps of its score: llama's relu(q̂·k̂)², flash's) at this share of a
 * prefix product's price. The term's key rows were staged W floats apart until call 125, so every key load of its dot
 * products hit one bank 32 times over, and the model's rates took that in; padded, llama_linearized's local kernel ran
 * 1.530 → 0.771 ms and flash's 1.774 → 1.028 (h200-bank-pad.json). At 1 the model put flash's fused plan at 2.8× its
 * time (5.86 ms est., 2.09 measured, call 127), at 0.5 still over 2×; at 0.35 it is 1.8× (3.78) and llama's b 8 fused
 * plan 0.57× (5.07 against 8.89), the widest misses left, every row of h200-kernels.json and h200-kernels-b8.json
 * within 2× (test/model-picks-h200.test.ts), every pick within 5 % of the fastest plan measured.
 */
const BOUNDED_SCORE_OPS = 0.35;

/** Column tiles the chunk kernel of `terms` runs per (b, head): each recomputes the rows' features it stages. */
export function columnTiles(p: Program, sizes: Sizes, terms: readonly Term[], s: ChunkSchedule): number {
  const NR = count(layoutOf(p, terms).rest, sizes);
  return Math.ceil(NR / Math.min(s.cols, NR));
}

/** The chunk kernel of `terms` under its schedule at (b, t); undefined when its workgroup memory does not fit. */
export function chunkKernelCost(m: AdapterModel, k: ChunkKernelModel, b: number, t: number): KernelEstimate | undefined {
  const { program: p, sizes, schedule: s } = k;
  // the row quantities staged per chunk (chunked/row-reductions.ts) only where their features are computed inline
  const bytesShared = sharedFloats(p, sizes, k.terms, k.items, s, undefined, k.materialised) * 4;
  if (bytesShared > m.maxWorkgroupBytes) return undefined;
  const L = layoutOf(p, k.terms);
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const R = Math.min(s.cols, NR);
  const tiles = Math.ceil(NR / R);
  const C = s.chunk;
  const leaves = k.materialised;
  // A staged element computed inline costs its operations (element-ops.ts). The model once added 64 per element,
  // fitted to elu fused at 6.8–8.6 ms beside unfused 1.9–2.1 on the H200; three alternating rounds (call 8,
  // bench/results/README.md) showed that figure a slow first round (8.18, then 1.73, 1.73 ms), elu fused no slower
  // than elu_aug's superset (1.88), which leaves the constant nothing to explain.
  let ops = C * R; // the value rows staged
  // A segmented schedule's first launch only folds each chunk's keys and values into its segment's state: no
  // scores, no φ·S, no outputs (chunked/analysis.ts: segmented 'state'). Charging it the full step, as the model
  // did, put elu's segmented fused plan (chunk 8, 64 columns, 512 threads, segments of 16) at 2.2 ms against the
  // H200's 1.73; its half of a step made it 1.7 (1.95 at the rates call 9 refitted, below).
  let stateOps = C * R;
  let stateFeatureOps = 0;
  // The rows' features computed inline, each node once however many terms read it (chunked/analysis.ts stages a
  // bounded term's frontier node that is also a prefix term's φ or ψ as an alias): elements per step by node.
  // Computed in registers by the kernel's threads and stored once, at a feature kernel's rate (unitElementOpsPerUs)
  // rather than the products' through workgroup memory: charged at the products' rate, the features inline put
  // llama's fused plan at 30.6 ms, performer's at 6.5 and hedgehog's at 727 where the H200 ran 15.4, 3.30 and 318;
  // at the elementwise rate (both passes of a segmented schedule) 17.4, 3.34 and 245.
  // The row quantities a staged feature reads (llama's ‖rope(q)‖ over d, hedgehog's q @ W and its softmaxes' max and
  // Σ exp) are staged once per row before the features, rows c0 − halo … c0 + C − 1 (chunked/row-reductions.ts's
  // stagedReductions: the generator's own list), and read by each element as a load: charged per row, not per
  // element. Hedgehog's features, each charged its whole softmax (25027 operations an element at d 64, m 64), put
  // its plans at 245, 160 and 160 ms where the H200 ran the staged kernels in 4.88, 3.00 and 2.54 (call 30).
  const rate = m.unitOpsPerUs / m.unitElementOpsPerUs;
  // features that read many inputs per element at their inline rate (inlineElementOpsPerUs)
  const rateOf = (id: number) => (elementOps(p, sizes, id) >= MANY_READS_OPS ? m.unitOpsPerUs / m.inlineElementOpsPerUs : rate);
  const spec = { program: p, sizes, terms: k.terms, items: k.items, partial: k.partial, schedule: s, materialised: leaves, label: 'model', ...(k.prefetch === false && { prefetch: false }) };
  const rowsOf = (segmented?: 'state') => {
    const r = stagedRowOps(p, sizes, stagedReductions(analyseChunk({ ...spec, ...(segmented && { segmented }) })), leaves);
    return { ...r, ops: r.quantities.reduce((n, { q, ops }) => n + (C + q.halo) * ops * rate, 0) };
  };
  const rows = rowsOf();
  // each staged row quantity that reads the kernel's inputs (level 1: a loop of loads from memory, where a later
  // level reads the staged ones from workgroup memory) is one invocation's loop an element of a row (chunked/stage.ts
  // emitReductions: W of them a row, hedgehog's q @ W; one for a norm), a trip per WG elements: rowSerialUsPerOp a
  // step per operation of the loop
  const serialOf = (r: ReturnType<typeof rowsOf>) =>
    r.quantities.reduce((n, { q, ops }) => {
      if (q.level !== 1) return n;
      const W = rowWidth(q, sizes);
      return n + Math.ceil(((C + q.halo) * W) / s.threads) * (ops / W);
    }, 0) * m.rowSerialUsPerOp;
  // a segmented schedule's state launch stages only what ψ (and the values) read
  const stateRows = s.segment ? rowsOf('state') : undefined;
  const inline = (id: number, at = rows) => 1 + stagedElementOps(p, sizes, id, at) * rateOf(id);
  const staged = new Map<number, number>();
  const stage = (id: number, elements: number) => staged.set(id, Math.max(staged.get(id) ?? 0, elements));
  for (const term of k.terms) {
    const f = term.form;
    if (f.kind === 'prefix') {
      const F = featureCount(f, sizes);
      // + the state S (F × R) read and written once per step whatever C: what makes very small chunks lose
      const { scores, outputs, fold } = blockedShares(C, F, R, s);
      // a term that pairs no rows of one chunk (analysis.ts scoresInChunk) has no C × C tile and no A·V
      const tile = scoresInChunk(term, C) ? 1 : 0;
      ops += tile * C * C * (F * scores + R * outputs) + C * F * R * outputs + C * F * R * fold + 2 * F * R;
      stateOps += C * F * R * fold + 2 * F * R + (s.segment ? C * F * inline(f.psi, stateRows!) : 0);
      if (s.segment) stateFeatureOps += C * F * (inline(f.psi, stateRows!) - 1);
      stage(f.phi, C * F);
      stage(f.psi, C * F);
      const gate = prefixGate(p, f);
      if (gate) stage(gate.id, C * (gate.perFeature ? F : 1));
      // A per-feature gate (gla's α[h, d]) weighs each product of the score tile, of φ·S and of the state update by
      // its own exp(Λ_i,f − Λ_j,f) (chunked/scores.ts, outputs.ts, state.ts): an exponential and two workgroup loads
      // more per product. On the H200 (chunk 32, 16 columns, 1024 threads) gla's fused kernel ran 12.1 ms where
      // retnet's, the same tile with a scalar decay, ran 3.13: 3 more per product then. With Dawn's toggles
      // (bench/results/h200-kernels.json, gla and retnet at 16×32×1024) gla ran 1.85 ms fused and 2.61 unfused,
      // retnet 1.15 and 1.71: 1.6× and 1.5×, where 3 put gla at 3.65× its time (6.75 ms est.); 0.75 puts its estimates at 1.53× and 1.50× retnet's.
      if (gate?.perFeature) ops += GATED_PRODUCT_OPS * (C * C * F + 2 * C * F * R);
    } else if (f.kind === 'toeplitz') {
      ops += C * (f.lags[1] - f.lags[0] + 1) * R;
    } else {
      const fr = frontier(p, term.score);
      const rows = new Set([...fr.query, ...fr.key]);
      for (const id of rows) stage(id, C * count(rowAxes(p, L, id), sizes));
      // C × (C + reach) scores and products. A group wider than the chunk (llama_linearized's local term, group 64 at
      // chunk 8; flash's) reaches back over the group's earlier rows: from none at the group's first chunk to all but
      // one chunk's at its last, half its reach on average. The model once left the reach out, charging C × C: on the
      // H200 llama's fused plan at 8×32×512 ran 6.44 ms at b 4 and 12.87 at b 8, est. 3.93 and 4.41, and the model
      // picked it at b 8 over the unfused plan's 6.38 (call 101). The whole reach put flash's and llama's plans at
      // 1.3–2.0× their times, none left out at 0.55–0.83×.
      const reach = scoreReach(layoutOf(p, k.terms, C), term, C);
      ops += C * (C + (term.mask.some((x) => x.kind === 'group') ? reach / 2 : reach)) * (BOUNDED_SCORE_OPS * elementOps(p, sizes, term.score, rows) + R);
    }
  }
  // the part of ops that is the features' elementwise work (launchCost's featureOps)
  let featureOps = rows.ops;
  for (const [id, elements] of staged) {
    ops += elements * inline(id);
    featureOps += elements * (inline(id) - 1);
  }
  ops += rows.ops;
  if (stateRows) {
    stateOps += stateRows.ops;
    stateFeatureOps += stateRows.ops;
  }
  const chunks = Math.ceil(t / C);
  const seg = s.segment;
  // What it reads per token: each tile reads a token tensor whole unless it has the tile's column axes (v: each tile
  // reads its own columns); the output (or its two parts) is written once.
  const reads = tokenReads(p, sizes, k.terms, leaves, L.rest);
  // a partial kernel writes its numerator, and its denominator where its item is normalised (analysis.ts partDen)
  const bytes = 4 * b * t * (tiles * reads.perTile + reads.once + (k.partial && k.items.some(partDen) ? 2 : 1) * count(p.outAxes, sizes));
  // the output tile (C × R) is the narrowest of a step's phases that every variant has.
  // Each prefix term adds its accumulators to a busy invocation's registers, so fewer of its workgroups share a unit
  // (launchCost's registerShare). On the H200 (call 15, b 4, h 16, t 4096, d 64) cosformer's kernel of two prefix
  // terms ran segmented at 8×64×512 and 8×64×1024 (segments of 16) alike, 4.54 and 4.56 ms: one 512-thread
  // workgroup a unit, not two; its unsegmented 16×32 (128 workgroups, one a unit whatever the registers) 2.99 ms.
  // The model had the 512-thread segmented kernel two a unit at 3.90 ms, below 16×32's 4.05, and chose it.
  const prefixTerms = k.terms.filter((term) => term.form.kind === 'prefix').length;
  // A blocked schedule (ChunkSchedule.block) holds the same C·R independent accumulators, TN to an invocation: the
  // same registers and the same chains to hide latency behind, so its parallelism and register share stay C·R's.
  const openBeside = k.terms.some((t) => t.form.kind === 'prefix' && openGroupOf(t, C) > 0) && k.terms.some((t) => t.form.kind !== 'prefix' && t.form.kind !== 'toeplitz');
  const open = openBeside ? m.openGroupStepUs : 0;
  const base = { threads: s.threads, workgroupBytes: bytesShared, stepOps: ops, featureOps, bytes, parallelism: C * R, registerShare: Math.max(1, prefixTerms), serialUs: serialOf(rows) + open };
  // What a workgroup loads a chunk ahead, a step: the generator's own decision (a segmented plan's two launches each
  // decide theirs: performer's state pass prefetches ψ from its prologue, its output pass stages φ inline, in a loop).
  const prefetchedBytes = (segmented?: 'state' | 'output') => 4 * s.threads * (heldLoads({ ...spec, ...(segmented && { segmented }) }) ?? 0);
  if (!seg) return launchCost(m, { ...base, workgroups: b * NS * tiles, steps: chunks, prefetchedBytes: prefetchedBytes() });
  // Segmented: the segments' states (G steps), a scan over segments, then every segment's outputs (G steps) — or
  // every span's (ChunkSchedule.span: P segments, G·P steps), the state launch folding none of the last span's.
  const nseg = Math.ceil(chunks / seg);
  const P = Math.max(1, s.span ?? 1);
  const nspan = Math.ceil(nseg / P);
  const folded = P > 1 ? (nspan - 1) * P : nseg;
  const pass = launchCost(m, { ...base, workgroups: b * NS * tiles * nspan, steps: seg * P, prefetchedBytes: prefetchedBytes('output') });
  const state = launchCost(m, { ...base, serialUs: serialOf(stateRows!) + open, prefetchedBytes: prefetchedBytes('state'), stepOps: stateOps, featureOps: stateFeatureOps, workgroups: Math.max(1, b * NS * tiles * folded), steps: seg, bytes: (4 * b * t * (tiles * reads.perTile + reads.once) * folded) / nseg });
  // the scan launch walks every segment; over spans there is none, and the output launch's workgroups sum the states
  // of the segments before their span, eight loads a trip (chunked/segments.ts sumsOwnSpans)
  const scanUs = P > 1 ? Math.ceil(((nspan - 1) * P) / 8) * m.stepLatencyUs : nseg * m.stepLatencyUs + m.launchUs;
  return { ...pass, us: state.us + pass.us + scanUs, steps: seg + seg * P + nseg };
}

/**
 * prefetchedLoads of a spec the model prices, remembered per program (its nodes: estimatePlan takes the causal part
 * afresh each call): choosing a plan prices each candidate schedule with each prologue tried, and declaring the kernel
 * each time doubled the time choosePlan took (performer: 0.25 → 0.5 s). The key is what the staging depends on: the
 * sizes, the terms (and so their output items), the schedule, the materialised nodes and the launch.
 */
function heldLoads(spec: ChunkKernelSpec): number | null {
  const seen = heldCache.get(spec.program.nodes) ?? new Map<string, number | null>();
  heldCache.set(spec.program.nodes, seen);
  const s = spec.schedule;
  const key = [
    Object.entries(spec.sizes).join(), spec.terms.map((t) => t.name).join(), [s.chunk, s.cols, s.threads, s.segment ?? 0, s.block ?? 1].join(),
    [...spec.materialised].sort((a, b) => a - b).join(), spec.partial, spec.segmented ?? '', spec.prefetch ?? true,
  ].join('|');
  if (!seen.has(key)) seen.set(key, prefetchedLoads(spec));
  return seen.get(key)!;
}
const heldCache = new WeakMap<Program['nodes'], Map<string, number | null>>();

/**
 * The share of an unblocked product's cost that a product of the score tile (φ·ψ), of the outputs (A·V, φ·S) and of
 * the state update costs under the schedule's register blocking: workgroup loads per multiply-add, (TM + TN)/(TM·TN)
 * for a TM × TN block, over the unblocked kernel's tile's (chunked/tiles.ts; the score tile taken as C × C). The rate
 * unitOpsPerUs was fitted to unblocked kernels only, each of whose products reads its operands from workgroup
 * memory; 1 without blocking, so that the fitted estimates stay as they were. A guess until the H200 times blocked
 * beside unblocked (bench/kernels.ts --schedules): it charges a blocked product by its loads alone.
 */
export function blockedShares(C: number, F: number, R: number, s: ChunkSchedule): { scores: number; outputs: number; fold: number } {
  if (!s.block || s.block <= 1) return { scores: 1, outputs: 1, fold: 1 };
  const loads = (tm: number, tn: number) => (tm + tn) / (tm * tn);
  const share = (n: number) => {
    const blocked = blockTile(n, R, s.threads, s.block);
    const plain = blockTile(n, R, s.threads);
    return loads(blocked.TM, blocked.TN) / loads(plain.TM, 1);
  };
  const [bs, ps] = [scoreTile(C, C, s.threads, s.block), scoreTile(C, C, s.threads)]; // the blocked tile only where it loads less
  return { scores: loads(bs.TI, bs.TJ) / loads(ps.TI, ps.TJ), outputs: share(C), fold: share(F) };
}
