// The decode step's matmuls one by one (M = batch rows ≤ 8), as the model runs them — fused prologue and
// epilogue included — in GB/s of weights read, next to the adapter's copy bandwidth: which projection is
// far from the bound, and (--sweep) which lanes × unroll × columns per thread would serve it better than the chooser's pick:
// after each projection's sweep its best three and the chooser's pick are timed again with the full warm-up ('confirm').
// Above 8 rows (a draft tree: --M 17,65) each figure also has its GFLOP/s and, beside it, the same matmul on the
// other path of 9–128 rows (the rows kernel of matmul-rows.ts for wide matrices, the blocked small-M kernel for
// narrow ones: matmulPathFor) and with the blocked kernel's row blocks on the grid (its first form); --sweep also
// sweeps the rows kernel's slices × loads per tile × columns per thread; and the tiled kernel (more than 128 rows).
// Every M also times the register-blocked skinny kernel (matmul-skinny.ts) at its default knobs, and --sweep its knobs
// around them (skinnySweep). `--family skinny` sweeps that family alone (both its forms: weights staged in workgroup
// memory, and in registers), times the LM head with the argmax epilogue a tree step runs, and leaves out the other
// paths' extra figures: at --M 5,17,65 a run took about a minute on the H200 with the staged form alone.
// `--family skinny-reg` sweeps the register form only, beside the chooser's pick, and (with or without --sweep) times
// the register form's default knobs, x staged and x from memory, beside the staged defaults (the chooser's pick, or
// timed as well where the pick is the register form); `skinny-staged` sweeps the staged form only.
// Every kernel is first compared with the float64 formula on the bench's operands (small-m-check.ts; --no-check skips it).
// The run ends with the best per shape (the confirmed figures: the chooser's pick and the sweep's best three) and
// its family, and a 12-layer step's projections summed both ways (small-m-summary.ts).
//
//   npx tsx bench/small-m.ts [--small | --shape 7b] [--M 1,8,17,65] [--sweep] [--family all|small-m|rows|skinny|skinny-reg|skinny-staged] [--no-check] [--reps N]
//
// Shapes: decode.ts's model (hidden 768, 12 heads × 64, intermediate 2048, vocab 32000); --small (and any
// software adapter) its small model; --shape 7b LLaMA-2-7B's (hidden 4096, intermediate 11008). Each pass records `reps` dispatches of one kernel, rotating over
// enough copies of the weight that they do not fit in the last-level cache (a decode step reads 418 MB,
// so no weight is in cache when its projection runs). Writes small-m.json to $OUT if set, else out/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { matmulPathFor, type MatmulOptions, type MatmulPath, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import { skinnySweep } from '../backends/wgsl/matmul-skinny-choice.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { outputColumns, outputCount, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { allocTensor, releaseTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { timeDispatches } from '../src/runtime/timing.ts';
import { FULL, SMALL, type ModelShape } from './decode.ts';
import { Float64Check } from './small-m-check.ts';
import { printBestPerShape } from './small-m-summary.ts';

/** LLaMA-2-7B's projection shapes (bench/hf_decode.ts's llama7b), in decode.ts's ModelShape terms. */
const LLAMA7B_SHAPE: ModelShape = { layers: 32, hidden: 4096, heads: 32, intermediate: 11008, vocab: 32000, K: 4 };
import { fillRandom, measureCopyBandwidth } from './roofline.ts';
import { flagValue, runIfMain } from './script.ts';

interface Projection {
  readonly name: string;
  readonly N: number;
  readonly K: number;
  readonly fusion?: MatmulFusion;
}

const EPS = { eps: 1e-5 };
/** A sweep's kernels follow the chosen one's sustained warm-up: the clocks are up, a short one suffices. */
const SWEEP_WARMUP_MS = 20;
/** Timed passes per swept kernel (the confirm stage re-times the best with the full count). */
const SWEEP_ITERS = 10;
/**
 * A short warm-up can read slow when the clocks sagged during a pipeline compile (bench/results/README.md), so after
 * a projection's sweep its best CONFIRM_BEST and the chooser's pick are timed again with the full warm-up, in
 * CONFIRM_ROUNDS alternating rounds (clock drift hits them alike); each keeps its faster round.
 */
const CONFIRM_BEST = 3;
const CONFIRM_ROUNDS = 2;

/** The five matmuls of a fused decode step (gpu-step-plan.ts); `argmaxHead`: the LM head as a greedy tree step runs it. */
function projections(s: ModelShape, argmaxHead = false): Projection[] {
  const hd = s.hidden; // heads × headDim = hidden in decode.ts's shapes
  return [
    { name: 'q|k|v (+norm, split)', N: 3 * hd, K: s.hidden, fusion: { rmsnorm: EPS, epilogue: { split: 3 } } },
    { name: 'o (+= residual)', N: s.hidden, K: hd, fusion: { epilogue: 'accumulate' } },
    { name: 'gate|up (+norm, swiglu)', N: 2 * s.intermediate, K: s.hidden, fusion: { rmsnorm: EPS, epilogue: 'swiglu' } },
    { name: 'down (+= residual)', N: s.hidden, K: s.intermediate, fusion: { epilogue: 'accumulate' } },
    argmaxHead
      ? { name: 'lm head (+norm, argmax)', N: s.vocab, K: s.hidden, fusion: { rmsnorm: EPS, epilogue: 'argmax' } }
      : { name: 'lm head (+norm)', N: s.vocab, K: s.hidden, fusion: { rmsnorm: EPS } },
  ];
}

export interface SmallMFigure {
  readonly projection: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly kernel: string;
  /** The kernel's path: 'small-m', 'rows', 'skinny' or 'tiled'. */
  readonly family: MatmulPath;
  /** The options that pick this kernel again (matmulKernel's `tuning`). */
  readonly tuning: MatmulOptions;
  readonly lanes?: number;
  readonly unroll?: number;
  readonly cols?: number;
  readonly rowBlocks?: number;
  readonly usPerDispatch: number;
  /** Weight bytes / time. */
  readonly gbPerS: number;
  /** 2·M·N·K / time. */
  readonly gflopPerS: number;
  /**
   * 'confirm': re-timed after its projection's sweep with the full warm-up, beside the chooser's pick re-timed the
   * same way (the faster of CONFIRM_ROUNDS alternating rounds); `sweepUs` is what the sweep measured.
   */
  readonly stage?: 'confirm';
  readonly sweepUs?: number;
  readonly rank?: 'chooser' | 1 | 2 | 3;
}

/** x, gain, outputs and enough weight copies to miss the cache: made once per projection and M, shared by the sweep. */
interface Operands {
  readonly a: GpuTensor;
  readonly gain: GpuTensor;
  readonly outs: readonly GpuTensor[];
  readonly weights: readonly GpuTensor[];
  /** Every kernel is compared with the float64 formula on these operands before it is timed (off: --no-check). */
  readonly check?: Float64Check;
}

function operands(gpu: Gpu, p: Projection, M: number, reps: number, cacheBytes: number, check: boolean): Operands {
  const tensor = (name: string, shape: number[], seed: number) => {
    const t = allocTensor(gpu, name, shape);
    fillRandom(gpu, t, seed, 0.1);
    return t;
  };
  const copies = Math.max(1, Math.min(reps, Math.ceil(cacheBytes / (p.N * p.K * 4))));
  const [a, gain] = [tensor('x', [M, p.K], 1), tensor('gain', [p.K], 2)];
  const weights = Array.from({ length: copies }, (_, i) => tensor(`w${i}`, [p.N, p.K], 10 + i));
  return {
    a,
    gain,
    // The argmax epilogue's output (a pair per workgroup) is sized per kernel, in measure.
    outs: p.fusion?.epilogue === 'argmax' ? [] : Array.from({ length: outputCount(p.fusion) }, (_, i) => tensor(`y${i}`, [M, outputColumns(p.fusion, p.N)], 3 + i)),
    weights,
    ...(check && { check: new Float64Check(gpu, p, M, { a, gain, w: weights[0] }) }),
  };
}

function release(gpu: Gpu, o: Operands): void {
  for (const t of [o.a, o.gain, ...o.outs, ...o.weights]) releaseTensor(gpu, t);
}

async function measure(gpu: Gpu, p: Projection, M: number, opts: MatmulOptions, reps: number, o: Operands, warmupMs?: number, iters?: number): Promise<SmallMFigure> {
  const problem: MatmulProblem = { M, N: p.N, K: p.K, transposeB: true, ...(p.fusion && { fusion: p.fusion }) };
  const wrong = await o.check?.wrong(opts);
  if (wrong) throw new Error(`not timed, wrong against the float64 formula: ${wrong}`);
  const plan = await planMatmul(gpu, problem, { label: `bench ${p.name}`, ...opts });
  const pairs = p.fusion?.epilogue === 'argmax' ? allocTensor(gpu, 'partials', [M, 2 * plan.workgroups[0]]) : undefined;
  const outs = pairs ? [pairs] : o.outs;
  const groups = o.weights.map((w) => bindMatmul(gpu, plan, o.a, w, outs, p.fusion?.rmsnorm ? { gain: o.gain } : {}));
  const t = await timeDispatches(
    gpu,
    (pass) => {
      for (let r = 0; r < reps; r++) encodeMatmul(pass, plan, groups[r % groups.length]);
    },
    { warmup: 2, iters: gpu.isSoftware ? 3 : iters ?? 20, label: plan.label, ...(warmupMs !== undefined && { warmupMs }) },
  );
  plan.params.destroy();
  if (pairs) releaseTensor(gpu, pairs);
  const us = (t.medianMs * 1000) / reps;
  return {
    projection: p.name, M, N: p.N, K: p.K, kernel: plan.kernel, family: plan.path, tuning: plan.tuning,
    ...(opts.smallMLanes !== undefined && { lanes: opts.smallMLanes }),
    ...(opts.smallMUnroll !== undefined && { unroll: opts.smallMUnroll }),
    ...(opts.smallMCols !== undefined && { cols: opts.smallMCols }),
    ...(opts.smallMRowBlocks !== undefined && { rowBlocks: opts.smallMRowBlocks }),
    usPerDispatch: us, gbPerS: (p.N * p.K * 4) / (us * 1e3), gflopPerS: (2 * M * p.N * p.K) / (us * 1e3),
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => flagValue(args, flag);
  const gpu = await getDevice();
  const small = args.includes('--small') || gpu.isSoftware;
  // --shape 7b: LLaMA-2-7B's projections (a tree step of the linearized 7B model runs them at M 17–65).
  const shape = args.includes('--shape') && valueOf('--shape') === '7b' ? LLAMA7B_SHAPE : small ? SMALL : FULL;
  const Ms = (valueOf('--M') ?? '1,8').split(',').map(Number);
  const reps = Number(valueOf('--reps') ?? (small ? 4 : 40));
  const sweep = args.includes('--sweep');
  // Families the sweep covers; 'skinny' alone also drops the other paths' extra figures and times the argmax head.
  // 'skinny-reg' is 'skinny' with the register form's knobs only (matmul-skinny.ts's stageWeights false), timed against
  // the chooser's pick (the skinny kernel's default form where the skinny path is the default: the register form or
  // the staged form's fitted defaults, matmul-skinny-choice.ts's defaultStageWeights); 'skinny-staged' the
  // staged form's only (the sweep before the register form existed). 'skinny' sweeps both.
  const family = valueOf('--family') ?? 'all';
  if (!['all', 'small-m', 'rows', 'skinny', 'skinny-reg', 'skinny-staged'].includes(family)) throw new Error(`--family takes all, small-m, rows, skinny, skinny-reg or skinny-staged, not ${family}`);
  const skinnyOnly = family.startsWith('skinny');
  const sweeps = (f: MatmulPath) => family === 'all' || family === f || (f === 'skinny' && skinnyOnly);
  const skinnyForms = family === 'skinny-reg' ? 'registers' : family === 'skinny-staged' ? 'staged' : 'both';
  const check = !args.includes('--no-check');
  const wrong: string[] = [];
  /** A kernel that cannot be made for the shape is skipped quietly; one that failed the float64 check, loudly. */
  const skip = (e: unknown): undefined => {
    const message = e instanceof Error ? e.message : String(e);
    if (message.startsWith('not timed')) {
      wrong.push(message);
      console.log(`  !! ${message}`);
    }
    return undefined;
  };
  // More than an H100's 50 MB L2 per pass, so every rep reads its weight from memory.
  const cacheBytes = small ? 1 << 20 : 192 << 20;

  const copy = await measureCopyBandwidth(gpu, { bytes: small ? 16 << 20 : 256 << 20, iters: 20 });
  console.log(`small-M matmuls on ${gpu.adapterName}; copy bandwidth ${copy.gbPerS.toFixed(1)} GB/s (read+write); ${reps} dispatches per timed pass`);
  const figures: SmallMFigure[] = [];
  const rows: string[][] = [['projection', 'M', 'N×K', 'µs', 'GB/s', 'of copy', 'GFLOP/s', 'kernel']];
  const row = (f: SmallMFigure) => {
    const r = [f.projection, String(f.M), `${f.N}×${f.K}`, f.usPerDispatch.toFixed(2), f.gbPerS.toFixed(1), `${((100 * f.gbPerS) / copy.gbPerS).toFixed(0)}%`, f.gflopPerS.toFixed(1), f.kernel];
    rows.push(r);
    console.log('  … ' + r.join('  ')); // as measured, so that a run cut short still shows what it had
  };
  /** The sweep's best CONFIRM_BEST kernels (not the chooser's own) and the chooser's pick, re-timed with the full warm-up. */
  const confirm = async (p: Projection, M: number, o: Operands, chosen: SmallMFigure, swept: readonly { f: SmallMFigure; opts: MatmulOptions }[]) => {
    const pick = { f: chosen, opts: chosen.tuning };
    const seen = new Set([pick.f.kernel]);
    const best: { f: SmallMFigure; opts: MatmulOptions }[] = [];
    for (const s of [...swept].sort((a, b) => a.f.usPerDispatch - b.f.usPerDispatch)) {
      if (best.length === CONFIRM_BEST) break;
      if (seen.has(s.f.kernel)) continue; // the same kernel reached through other knobs (lanes capped by a row block)
      seen.add(s.f.kernel);
      best.push(s);
    }
    const candidates = [pick, ...best];
    const fastest: (SmallMFigure | undefined)[] = candidates.map(() => undefined);
    for (let round = 0; round < CONFIRM_ROUNDS; round++) {
      for (const [i, c] of candidates.entries()) {
        const f = await measure(gpu, p, M, c.opts, reps, o);
        if (!fastest[i] || f.usPerDispatch < fastest[i]!.usPerDispatch) fastest[i] = f;
      }
    }
    for (const [i, f] of fastest.entries()) {
      const rank = i === 0 ? ('chooser' as const) : (i as 1 | 2 | 3);
      const confirmed: SmallMFigure = { ...f!, stage: 'confirm', rank, sweepUs: candidates[i].f.usPerDispatch };
      figures.push(confirmed);
      row({ ...confirmed, projection: `  confirm ${rank === 'chooser' ? "chooser's pick" : `sweep #${rank}`} (sweep/first ${candidates[i].f.usPerDispatch.toFixed(2)} µs)` });
    }
  };
  const outDir = process.env.OUT ?? 'out';
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'small-m.json');
  const save = () => writeFileSync(file, JSON.stringify({ adapter: gpu.adapterName, date: new Date().toISOString(), shape, copy, reps, figures }, null, 2) + '\n');
  for (const M of Ms) {
    for (const p of projections(shape, skinnyOnly)) {
      const o = operands(gpu, p, M, reps, cacheBytes, check);
      const chosen = await measure(gpu, p, M, {}, reps, o);
      figures.push(chosen);
      row(chosen);
      const chosenPath = matmulPathFor({ M, N: p.N, K: p.K, transposeB: true, ...(p.fusion && { fusion: p.fusion }) }, gpu);
      if (chosenPath !== 'skinny') {
        const skinny = await measure(gpu, p, M, { path: 'skinny' }, reps, o).catch(skip);
        if (skinny) {
          figures.push(skinny);
          row({ ...skinny, projection: '  skinny (default knobs) instead' });
        }
      }
      if (M <= 8 && p.fusion?.epilogue === 'argmax') {
        // The greedy decode step's head: the small-M kernel (ARGMAX_SMALL_M_MAX) beside the rows kernel it replaced.
        const other = await measure(gpu, p, M, { path: chosenPath === 'rows' ? 'small-m' : 'rows' }, reps, o).catch(skip);
        if (other) {
          figures.push(other);
          row({ ...other, projection: `  ${chosenPath === 'rows' ? 'small-m' : 'rows'} kernel instead` });
        }
      }
      if (M > 1 && family === 'skinny-reg') {
        // The staged form's defaults where the chooser's pick is the register form (the skinny kernel's default form there).
        if (chosen.tuning.skinny?.stageWeights === false) {
          const staged = await measure(gpu, p, M, { path: 'skinny', skinny: { stageWeights: true } }, reps, o).catch(skip);
          if (staged) {
            figures.push(staged);
            row({ ...staged, projection: '  skinny, weights staged (default knobs)' });
          }
        }
        // The register form at its default knobs, x staged and x from memory: the quick comparison without --sweep.
        for (const [stageX, label] of [[true, 'x staged'], [false, 'x from memory']] as const) {
          const reg = await measure(gpu, p, M, { path: 'skinny', skinny: { stageWeights: false, stageX } }, reps, o).catch(skip);
          if (reg) {
            figures.push(reg);
            row({ ...reg, projection: `  skinny, weights in registers, ${label} (default knobs)` });
          }
        }
      }
      if (M > 8 && !skinnyOnly) {
        // The other path of 9–128 rows (the rows kernel or the blocked small-M kernel), and the blocked kernel's
        // first form (its row blocks on the grid).
        const other = await measure(gpu, p, M, { path: chosenPath === 'rows' ? 'small-m' : 'rows' }, reps, o);
        figures.push(other);
        row({ ...other, projection: `  ${chosenPath === 'rows' ? 'blocked small-m' : 'rows kernel'} instead` });
        const onGrid = await measure(gpu, p, M, { path: 'small-m', smallMRowBlocks: 1 }, reps, o);
        figures.push(onGrid);
        row({ ...onGrid, projection: '  row blocks on the grid' });
        // The tiled kernel (what more than 128 rows take): at 7B's widths a 65-row tree is compute-bound, and
        // its 64-row tiles may beat the weight-streaming kernels there.
        const tiled = await measure(gpu, p, M, { path: 'tiled' }, reps, o).catch(skip);
        if (tiled) {
          figures.push(tiled);
          row({ ...tiled, projection: '  tiled instead' });
        }
      }
      if (sweep) {
        const swept: { f: SmallMFigure; opts: MatmulOptions }[] = [];
        const time = async (opts: MatmulOptions) => {
          const f = await measure(gpu, p, M, opts, reps, o, SWEEP_WARMUP_MS, SWEEP_ITERS).catch(skip);
          if (!f) return;
          figures.push(f);
          swept.push({ f, opts });
        };
        const colsChoices = M > 1 && p.fusion?.epilogue !== 'swiglu' ? [1, 2, 4] : [1];
        if (sweeps('small-m')) for (const lanes of [8, 16, 32, 64, 128, 256]) {
          for (const unroll of [2, 4, 8]) {
            for (const cols of colsChoices) await time({ path: 'small-m', smallMLanes: lanes, smallMUnroll: unroll, smallMCols: cols });
          }
        }
        if (M > 8 && sweeps('rows')) {
          // The rows kernel: slices along K × weight loads per tile × columns per thread (column threads chosen).
          for (const slices of [1, 2, 4, 8]) {
            for (const unroll of [1, 2, 4, 8]) {
              for (const colsPerThread of p.fusion?.epilogue === 'swiglu' ? [1] : [1, 2]) await time({ path: 'rows', rows: { slices, unroll, colsPerThread } });
            }
          }
        }
        // The skinny kernel: rows × columns per thread, column threads, slices (matmul-skinny-choice.ts's skinnySweep).
        if (M > 1 && sweeps('skinny')) {
          const problem = { M, N: p.N, K: p.K, ...(p.fusion && { fusion: p.fusion }) };
          for (const skinny of skinnySweep(gpu, problem, skinnyForms)) await time({ path: 'skinny', skinny });
        }
        await confirm(p, M, o, chosen, swept);
      }
      release(gpu, o);
      save();
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) console.log('  ' + r.map((c, i) => (i >= 1 && i <= 6 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  '));
  printBestPerShape(figures, shape.layers);
  if (check) console.log(wrong.length ? `${wrong.length} kernels failed the float64 check and were not timed (the lines marked !!)` : 'every kernel timed matched the float64 formula first');

  save();
  console.log(`wrote ${file}`);
}

runIfMain(import.meta.url, main);
