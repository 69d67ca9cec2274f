// The H200's default picks against the H200's own sweeps (committed under bench/results/): where matmulPathFor puts
// the skinny kernel, that sweep's confirmed best was the skinny kernel, at least ~5 % ahead of the former pick, and
// chooseSkinny's default knobs for the staged form are the knobs it ran (or within 2.5 % of its best); where the path
// stays, the skinny kernel was not 5 % ahead (above the decode step's 8 rows); every pick at 17 and 65 rows is the
// register form's sweep's best or within 3 % of it (that sweep timed the register form beside the picks of then);
// and the prefill's tiled pick at M 2048 is the fastest tile timed. Reads the figures; runs nothing on a GPU.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { matmulKernel, matmulPathFor, type MatmulOptions, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import type { MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { EPS } from './helpers/fused-matmul.ts';
import { H200 } from './helpers/projections.ts';

interface SmallMFigure {
  readonly projection: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly kernel: string;
  readonly family: string;
  readonly tuning: { readonly skinny?: object };
  readonly usPerDispatch: number;
  readonly stage?: string;
  readonly rank?: string | number;
}

interface TiledFigure {
  readonly projection: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly tile: string;
  readonly us: number;
  readonly stage: string;
}

/** The fusion of a bench projection, by its name's first word (bench/small-m.ts's and bench/tiled.ts's names). */
const FUSIONS: Record<string, MatmulFusion> = {
  'q|k|v': { rmsnorm: { eps: EPS }, epilogue: { split: 3 } },
  o: { epilogue: 'accumulate' },
  'gate|up': { rmsnorm: { eps: EPS }, epilogue: 'swiglu' },
  down: { epilogue: 'accumulate' },
  lm: { rmsnorm: { eps: EPS }, epilogue: 'argmax' },
};

function benchProblem(f: { projection: string; M: number; N: number; K: number }): MatmulProblem {
  const fusion = FUSIONS[f.projection.split(' ')[0]];
  if (!fusion) throw new Error(`no fusion known for the bench projection '${f.projection}'`);
  return { M: f.M, N: f.N, K: f.K, transposeB: true, fusion };
}

function read<T>(file: string): T[] {
  return (JSON.parse(readFileSync(new URL(`../bench/results/${file}`, import.meta.url), 'utf8')) as { figures: T[] }).figures;
}

function groupBy<T>(xs: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
  return m;
}

const fastest = <T>(xs: readonly T[], us: (x: T) => number): T => xs.reduce((a, b) => (us(b) < us(a) ? b : a));

/**
 * A figure's options as they read when it ran: the sweep files recorded a staged skinny kernel without stageWeights
 * (the staged form was every shape's default then), which now always names its form.
 */
function optionsOf(f: SmallMFigure): MatmulOptions {
  const t = f.tuning as MatmulOptions;
  return t.skinny ? { ...t, skinny: { ...t.skinny, stageWeights: t.skinny.stageWeights ?? true } } : t;
}

/** The staged form's knobs as a tuning now records them (stageWeights named). */
const stagedKnobs = (f: SmallMFigure) => optionsOf(f).skinny;

describe("the H200's picks against its sweeps (bench/results/h200-small-m-skinny.json, h200-tiled-prefill.json)", () => {
  const confirmed = groupBy(read<SmallMFigure>('h200-small-m-skinny.json').filter((f) => f.stage === 'confirm'), (f) => `${f.projection} M ${f.M}`);

  it('covers the bench model\'s five tree-step projections at 5, 17 and 65 rows', () => {
    expect(confirmed.size).toBe(15);
  });

  for (const [shape, figures] of confirmed) {
    it(`${shape}: the skinny path where the sweep has it ≥ ~5 % ahead, with the best knobs`, () => {
      const p = benchProblem(figures[0]);
      const former = figures.find((f) => f.rank === 'chooser')!;
      const best = fastest(figures, (f) => f.usPerDispatch);
      const skinny = fastest(figures.filter((f) => f.family === 'skinny'), (f) => f.usPerDispatch);
      const gain = best.usPerDispatch / former.usPerDispatch;
      const what = `${shape}: former pick ${former.usPerDispatch} µs (${former.family}), best ${best.usPerDispatch} (${best.family})`;
      // This sweep timed the staged form only: its default knobs, wherever the register form is now the default.
      const staged = matmulKernel(H200, p, { path: 'skinny', skinny: { stageWeights: true } }).tuning.skinny;
      if (matmulPathFor(p, H200) === 'skinny') {
        expect(best.family, what).toBe('skinny');
        // The argmax LM head at 17 rows: 79.01 → 75.37 µs (0.954).
        expect(gain, what).toBeLessThan(0.96);
        expect(staged, what).toEqual(stagedKnobs(skinny));
      } else if (p.M > 8) {
        expect(gain, what).toBeGreaterThan(0.95);
      }
      // The default knobs are the sweep's best skinny knobs, or within 2.5 % of them (down at 17 and 65 rows).
      const knobs = staged;
      const swept = read<SmallMFigure>('h200-small-m-skinny.json').filter(
        (f) => f.projection === figures[0].projection && f.M === p.M && f.family === 'skinny' && JSON.stringify(stagedKnobs(f)) === JSON.stringify(knobs),
      );
      expect(swept.length, `${shape}: the default knobs ${JSON.stringify(knobs)} were swept`).toBeGreaterThan(0);
      const ran = Math.min(...swept.map((f) => f.usPerDispatch));
      expect(ran / skinny.usPerDispatch, `${shape}: default knobs ${JSON.stringify(knobs)} ran ${ran} µs, the best ${skinny.usPerDispatch}`).toBeLessThan(1.025);
    });
  }

  it('a software adapter keeps the rows kernel where the H200 takes the skinny one (the sweep measured hardware)', () => {
    const software = { ...H200, isSoftware: true };
    for (const figures of confirmed.values()) {
      const p = benchProblem(figures[0]);
      if (matmulPathFor(p, H200) !== 'skinny') continue;
      expect(matmulPathFor(p, software), figures[0].projection).toBe('rows');
      expect(matmulKernel(software, p).path, figures[0].projection).toBe('rows');
    }
  });

  it('the tiled pick at M 2048 is the fastest confirmed tile, options included, for each prefill projection (gate|up: 128×128×8 db unroll v4)', () => {
    const tiled = groupBy(read<TiledFigure>('h200-tiled-prefill.json').filter((f) => f.stage === 'confirm'), (f) => f.projection);
    expect(tiled.size).toBe(4);
    for (const [projection, figures] of tiled) {
      const k = matmulKernel(H200, benchProblem(figures[0]));
      const t = k.tuning.tile!;
      expect(k.path, projection).toBe('tiled');
      const name = `${t.BM}×${t.BN}×${t.BK} ${t.TM}×${t.TN}${t.doubleBuffer ? ' db' : ''}${t.unrollK ? ' unroll' : ''}${t.vec4Loads ? ' v4' : ''}`;
      expect(name, projection).toBe(fastest(figures, (f) => f.us).tile);
    }
  });
});

describe("the H200's picks against the register form's sweep (bench/results/h200-small-m-skinny-reg.json)", () => {
  const file = read<SmallMFigure>('h200-small-m-skinny-reg.json');
  const shapes = groupBy(file, (f) => `${f.projection} M ${f.M}`);

  it("covers the bench model's five tree-step projections at 17 and 65 rows, each with figures confirmed", () => {
    expect(shapes.size).toBe(10);
    for (const figures of shapes.values()) expect(figures.filter((f) => f.stage === 'confirm').length).toBeGreaterThan(1);
  });

  for (const [shape, figures] of shapes) {
    it(`${shape}: the pick is the sweep's best or within 3 %`, () => {
      const p = benchProblem(figures[0]);
      const pick = matmulKernel(H200, p);
      // The figures of the pick's kernel (the same WGSL from the knobs it ran with); confirmed ones where there are.
      const ran = figures.filter((f) => matmulKernel(H200, p, optionsOf(f)).code === pick.code);
      expect(ran.length, `${shape}: ${pick.kernel} was timed`).toBeGreaterThan(0);
      const confirmed = ran.filter((f) => f.stage === 'confirm');
      const us = Math.min(...(confirmed.length > 0 ? confirmed : ran).map((f) => f.usPerDispatch));
      // A sweep figure can read slow (its short warm-up), never fast: the best is the fastest of all.
      const best = fastest(figures, (f) => f.usPerDispatch);
      expect(us / best.usPerDispatch, `${shape}: ${pick.kernel} ran ${us} µs, the best ${best.usPerDispatch} (${best.kernel})`).toBeLessThan(1.03);
    });
  }

  it('a software adapter keeps the staged form and its paths (the sweep measured hardware)', () => {
    const software = { ...H200, isSoftware: true };
    for (const figures of shapes.values()) {
      const p = benchProblem(figures[0]);
      expect(matmulPathFor(p, software), figures[0].projection).not.toBe('skinny');
      expect(matmulKernel(software, p, { path: 'skinny' }).tuning.skinny?.stageWeights, `${figures[0].projection} M ${p.M}`).toBe(true);
    }
  });
});

describe("the H200's picks at LLaMA-2-7B's shape against the register form's defaults (bench/results/h200-small-m-skinny-reg-7b.json)", () => {
  // Call 40: bench/small-m.ts --shape 7b --M 17,65 --family skinny-reg (the chooser's pick of then beside the staged
  // and register forms' defaults; cut off by its limit after q|k|v at 65 rows). The rows kernel, the pick of then at 17
  // rows for q|k|v, o and down, ran 1.2–2.8× the register form there (matmul-skinny-choice.ts SKINNY_LARGE_K).
  const file = read<SmallMFigure>('h200-small-m-skinny-reg-7b.json');
  const shapes = groupBy(file, (f) => `${f.projection} M ${f.M}`);
  for (const [shape, figures] of shapes) {
    it(`${shape}: the pick is the fastest kernel timed or within 3 %`, () => {
      const p = benchProblem(figures[0]);
      const pick = matmulKernel(H200, p);
      const ran = figures.filter((f) => matmulKernel(H200, p, optionsOf(f)).code === pick.code);
      expect(ran.length, `${shape}: ${pick.kernel} was timed`).toBeGreaterThan(0);
      const us = Math.min(...ran.map((f) => f.usPerDispatch));
      const best = fastest(figures, (f) => f.usPerDispatch);
      expect(us / best.usPerDispatch, `${shape}: ${pick.kernel} ran ${us} µs, the best ${best.usPerDispatch} (${best.kernel})`).toBeLessThan(1.03);
    });
  }
});

describe("the H200's decode picks against the small-M sweeps (bench/results/h200-small-m-decode.json, h200-small-m-decode-7b.json)", () => {
  // Call 8 swept the bench model's decode projections (hidden 768) at one row; calls 137 and 139 LLaMA-2-7B's at one
  // and 8 rows: lanes × loads (× columns) a thread of the small-M kernel, each figure with a short warm-up, the
  // chooser's pick and the sweep's best three then re-timed ('confirm'). The pick, by its kernel's description, must
  // be the swept best or close: at 7B the long-row rule (matmul.ts SMALL_M_LONG_ROW: 32 lanes, 4 loads, 4 columns
  // from 4 rows) took q|k|v from 76.4 to 52.6 µs at one row and from 143.9 to 80 at 8.
  for (const [file, Ms, within] of [['h200-small-m-decode.json', [1], 1.1], ['h200-small-m-decode-7b.json', [1, 8], 1.17]] as const) {
    const figures = read<SmallMFigure>(file).filter((f) => (Ms as readonly number[]).includes(f.M) && f.family === 'small-m');
    for (const [shape, fs] of groupBy(figures, (f) => `${f.projection} at ${f.M} row${f.M > 1 ? 's' : ''}`)) {
      it(`${file}: ${shape}`, () => {
        // the decode sweeps timed the LM head without its argmax epilogue ('lm head (+norm)')
        const p = fs[0].projection === 'lm head (+norm)' ? { ...benchProblem(fs[0]), fusion: { rmsnorm: { eps: EPS } } } : benchProblem(fs[0]);
        const pick = matmulKernel(H200, p);
        const ran = fs.filter((f) => f.kernel === pick.kernel);
        expect(ran.length, `${shape}: ${pick.kernel} was timed`).toBeGreaterThan(0);
        const us = Math.min(...ran.map((f) => f.usPerDispatch));
        const best = fastest(fs, (f) => f.usPerDispatch);
        expect(us / best.usPerDispatch, `${shape}: ${pick.kernel} ran ${us} µs, the best ${best.usPerDispatch} (${best.kernel})`).toBeLessThan(within);
      });
    }
  }
});
