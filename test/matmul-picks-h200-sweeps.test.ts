// The H200's default picks against the H200's own sweeps (committed under bench/results/): where matmulPathFor puts
// the skinny kernel, that sweep's confirmed best was the skinny kernel, at least ~5 % ahead of the former pick, and
// chooseSkinny's default knobs are the knobs it ran (or within 2.5 % of its best); where the path stays, the skinny
// kernel was not 5 % ahead (above the decode step's 8 rows); and the prefill's tiled pick at M 2048 is the fastest
// tile timed. Reads the figures; runs nothing on a GPU.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { matmulKernel, matmulPathFor, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import type { MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { EPS } from './helpers/fused-matmul.ts';
import { H200 } from './helpers/projections.ts';

interface SmallMFigure {
  readonly projection: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
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
      if (matmulPathFor(p, H200) === 'skinny') {
        expect(best.family, what).toBe('skinny');
        // The argmax LM head at 17 rows: 79.01 → 75.37 µs (0.954).
        expect(gain, what).toBeLessThan(0.96);
        expect(matmulKernel(H200, p).tuning.skinny, what).toEqual(skinny.tuning.skinny);
      } else if (p.M > 8) {
        expect(gain, what).toBeGreaterThan(0.95);
      }
      // The default knobs are the sweep's best skinny knobs, or within 2.5 % of them (down at 17 and 65 rows).
      const knobs = matmulKernel(H200, p, { path: 'skinny' }).tuning.skinny;
      const swept = read<SmallMFigure>('h200-small-m-skinny.json').filter(
        (f) => f.projection === figures[0].projection && f.M === p.M && f.family === 'skinny' && JSON.stringify(f.tuning.skinny) === JSON.stringify(knobs),
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
