// The prefill's four projections on the tiled matmul (matmul-tiled.ts), fused as the model runs them (the norms
// in q|k|v's and gate|up's prologue, SwiGLU in gate|up's epilogue, the residual adds), over the tile
// configurations below (and the kernel's options on the tiles it picks today: double buffering, an unrolled K
// loop, vec4 loads; named 'db', 'unroll', 'v4'): which tile each shape wants, beside the chooser's pick (backends/wgsl/matmul.ts
// chooseTile), so one run on the H200 is enough to refit it. After each shape's sweep its best three and the pick
// are timed again with the full warm-up in alternating rounds ('confirm'; clock drift hits them alike).
//
//   npx tsx bench/tiled.ts [--M 2048] [--small] [--reps N] [--options-only]
//
// --options-only: the pick and the option tiles alone (not the 15 plain configurations).
//
// Shapes: decode.ts's model (hidden 768, 12 heads × 64, intermediate 2048); --small (and any software adapter)
// its small model at M 256. Split K is not swept: the tiled kernel's split K writes partial products for a
// separate sum and takes no epilogue, so it cannot serve the fused projections. Writes tiled.json to $OUT, else out/.
import { matmulKernel, matmulFlops, TILE_128_SWIGLU, TILE_64_PAIRED, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import { outputColumns, outputCount, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { TILE_128, TILE_64, tiledThreads, type MatmulTile } from '../backends/wgsl/matmul-tiled.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { allocTensor, releaseTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { timeDispatches } from '../src/runtime/timing.ts';
import { FULL, SMALL, type ModelShape } from './decode.ts';
import { fillRandom } from './roofline.ts';
import { flagValue, runIfMain, writeReport } from './script.ts';

const EPS = { eps: 1e-5 };
const SWEEP_WARMUP_MS = 20;
const CONFIRM_BEST = 3;
const CONFIRM_ROUNDS = 2;

interface Projection {
  readonly name: string;
  readonly N: number;
  readonly K: number;
  readonly fusion: MatmulFusion;
}

/** The four matmuls of a prefill layer, as gpu-step-plan.ts plans them. */
function projections(s: ModelShape): Projection[] {
  return [
    { name: 'q|k|v (+norm, split)', N: 3 * s.hidden, K: s.hidden, fusion: { rmsnorm: EPS, epilogue: { split: 3 } } },
    { name: 'o (+= residual)', N: s.hidden, K: s.hidden, fusion: { epilogue: 'accumulate' } },
    { name: 'gate|up (+norm, swiglu)', N: 2 * s.intermediate, K: s.hidden, fusion: { rmsnorm: EPS, epilogue: 'swiglu' } },
    { name: 'down (+= residual)', N: s.hidden, K: s.intermediate, fusion: { epilogue: 'accumulate' } },
  ];
}

/** BM×BN×BK, TM×TN per thread: 64 to 256 threads, tiles from 32×32 to 128×128 (invalid ones are skipped). */
const CANDIDATES: readonly MatmulTile[] = [
  [128, 128, 16, 8, 8], [128, 128, 8, 8, 8], [128, 64, 16, 8, 8], [64, 128, 16, 8, 8], [128, 64, 16, 8, 4],
  [64, 128, 16, 4, 8], [64, 64, 16, 8, 4], [64, 64, 16, 4, 8], [64, 64, 16, 4, 4], [64, 64, 32, 8, 4], [64, 64, 8, 4, 4],
  [32, 64, 16, 4, 8], [64, 32, 16, 8, 4], [32, 32, 16, 4, 4], [32, 32, 16, 4, 8],
].map(([BM, BN, BK, TM, TN]) => ({ BM, BN, BK, TM, TN }));

/**
 * The inner-structure options of matmul-tiled.ts on the tiles the prefill picks today: double buffering (one barrier
 * per K step), the K loop unrolled, vec4 loads along K (every prefill K is a multiple of 4), alone and combined.
 */
const OPTION_BASES: readonly MatmulTile[] = [TILE_64, TILE_64_PAIRED, TILE_128, TILE_128_SWIGLU];
const OPTIONS: readonly Pick<MatmulTile, 'doubleBuffer' | 'unrollK' | 'vec4Loads'>[] = [
  { doubleBuffer: true }, { unrollK: true }, { doubleBuffer: true, unrollK: true },
  { vec4Loads: true }, { vec4Loads: true, doubleBuffer: true }, { vec4Loads: true, doubleBuffer: true, unrollK: true },
];
const WITH_OPTIONS: readonly MatmulTile[] = OPTION_BASES.flatMap((t) => OPTIONS.map((o) => ({ ...t, ...o })));

const tileName = (t: MatmulTile) => `${t.BM}×${t.BN}×${t.BK} ${t.TM}×${t.TN}${t.doubleBuffer ? ' db' : ''}${t.unrollK ? ' unroll' : ''}${t.vec4Loads ? ' v4' : ''}`;

export interface TiledFigure {
  readonly projection: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly tile: string;
  readonly threads: number;
  readonly workgroups: number;
  readonly us: number;
  readonly tflops: number;
  readonly pick: boolean;
  readonly stage: 'sweep' | 'confirm';
}

interface Operands {
  readonly a: GpuTensor;
  readonly w: GpuTensor;
  readonly gain: GpuTensor;
  readonly outs: readonly GpuTensor[];
}

function operands(gpu: Gpu, p: Projection, M: number): Operands {
  const tensor = (name: string, shape: number[], seed: number) => {
    const t = allocTensor(gpu, name, shape);
    fillRandom(gpu, t, seed, 0.1);
    return t;
  };
  return {
    a: tensor('x', [M, p.K], 1),
    w: tensor('w', [p.N, p.K], 2),
    gain: tensor('gain', [p.K], 3),
    outs: Array.from({ length: outputCount(p.fusion) }, (_, i) => tensor(`y${i}`, [M, outputColumns(p.fusion, p.N)], 4 + i)),
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => flagValue(args, flag);
  const gpu = await getDevice();
  const small = args.includes('--small') || gpu.isSoftware;
  const shape = small ? SMALL : FULL;
  const M = Number(valueOf('--M') ?? (small ? 256 : 2048));
  const reps = Number(valueOf('--reps') ?? (small ? 2 : 10));
  console.log(`tiled matmuls of a prefill on ${gpu.adapterName}, M ${M}; ${reps} dispatches per timed pass`);
  const figures: TiledFigure[] = [];
  const summary: string[][] = [['projection', 'N×K', 'pick', 'pick µs', 'TFLOP/s', 'best', 'best µs', 'TFLOP/s', 'gain']];

  for (const p of projections(shape)) {
    const problem: MatmulProblem = { M, N: p.N, K: p.K, transposeB: true, fusion: p.fusion };
    // The chooser's tile (what the model runs when M > 128, where the tiled path is the default).
    const pickTile = matmulKernel(gpu, problem, { path: 'tiled' }).tuning.tile!;
    const o = operands(gpu, p, M);
    const measure = async (tile: MatmulTile, stage: TiledFigure['stage'], warmupMs?: number): Promise<TiledFigure | undefined> => {
      let plan;
      try {
        plan = await planMatmul(gpu, problem, { path: 'tiled', tile, label: `bench ${p.name}` });
      } catch {
        return undefined; // a tile that does not divide among its threads, pair columns or fit the adapter
      }
      const group = bindMatmul(gpu, plan, o.a, o.w, o.outs, p.fusion.rmsnorm ? { gain: o.gain } : {});
      const t = await timeDispatches(
        gpu,
        (pass) => {
          for (let r = 0; r < reps; r++) encodeMatmul(pass, plan, group);
        },
        { warmup: 2, iters: gpu.isSoftware ? 3 : 20, label: plan.label, ...(warmupMs !== undefined && { warmupMs }) },
      );
      plan.params.destroy();
      const us = (t.medianMs * 1000) / reps;
      const [x, y] = tiledThreads(tile);
      return {
        projection: p.name, M, N: p.N, K: p.K, tile: tileName(tile), threads: x * y,
        workgroups: plan.workgroups[0] * plan.workgroups[1], us, tflops: matmulFlops(problem) / (us * 1e6),
        pick: tileName(tile) === tileName(pickTile), stage,
      };
    };
    const log = (f: TiledFigure) =>
      console.log(`  ${f.stage === 'confirm' ? 'confirm ' : ''}${p.name}  ${f.tile.padEnd(16)} ${String(f.threads).padStart(4)} threads ${String(f.workgroups).padStart(5)} wg  ${f.us.toFixed(1).padStart(8)} µs  ${f.tflops.toPrecision(3).padStart(5)} TFLOP/s${f.pick ? '  ← pick' : ''}`);

    // The pick first, with the full warm-up (the clocks come up), then the sweep.
    const swept: { tile: MatmulTile; f: TiledFigure }[] = [];
    const sweep = args.includes('--options-only') ? WITH_OPTIONS : [...CANDIDATES, ...WITH_OPTIONS];
    for (const tile of [pickTile, ...sweep.filter((c) => tileName(c) !== tileName(pickTile))]) {
      const f = await measure(tile, 'sweep', swept.length === 0 ? undefined : SWEEP_WARMUP_MS);
      if (!f) continue;
      figures.push(f);
      swept.push({ tile, f });
      log(f);
    }
    const best = [...swept].filter((s) => !s.f.pick).sort((a, b) => a.f.us - b.f.us).slice(0, CONFIRM_BEST);
    const candidates = [swept.find((s) => s.f.pick)!, ...best];
    const fastest = new Map<string, TiledFigure>();
    for (let round = 0; round < CONFIRM_ROUNDS; round++) {
      for (const c of candidates) {
        const f = (await measure(c.tile, 'confirm'))!;
        const prev = fastest.get(f.tile);
        if (!prev || f.us < prev.us) fastest.set(f.tile, f);
      }
    }
    for (const f of fastest.values()) {
      figures.push(f);
      log(f);
    }
    const confirmed = [...fastest.values()].sort((a, b) => a.us - b.us);
    const pick = confirmed.find((f) => f.pick)!;
    const top = confirmed[0];
    summary.push([p.name, `${p.N}×${p.K}`, pick.tile, pick.us.toFixed(1), pick.tflops.toPrecision(3), top.tile, top.us.toFixed(1), top.tflops.toPrecision(3), `${((pick.us / top.us - 1) * 100).toFixed(0)}%`]);
    for (const t of [o.a, o.w, o.gain, ...o.outs]) releaseTensor(gpu, t);
  }

  console.log(`\nbest tile per projection at M ${M} (confirm figures) on ${gpu.adapterName}:`);
  const widths = summary[0].map((_, i) => Math.max(...summary.map((r) => r[i].length)));
  for (const r of summary) console.log('  ' + r.map((c, i) => c.padEnd(widths[i])).join('  '));
  writeReport(process.env.OUT ?? 'out', 'tiled.json', { adapter: gpu.adapterName, date: new Date().toISOString(), shape, M, reps, figures });
}

runIfMain(import.meta.url, main);
