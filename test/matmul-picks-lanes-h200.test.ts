// The lanes kernel's picks on the H200 held to what calls 157 and 158 measured (bench/results/h200-skinny-probe-picks.json:
// bench/skinny-probe.ts --M 1,5,17 --max 4, the chooser's pick for the plain problem beside the probe's best variants,
// re-timed in alternating rounds; q|k|v and o at 5 and 17 rows again in call 158, after the kernel summed each output's
// partials where it is read). Each of today's picks for the 12-layer model's plain projections must be a kernel that run
// timed — the pick of then, or one of the variants, matched by its knobs — and within 25 % of the shape's fastest.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { matmulKernel } from '../backends/wgsl/matmul.ts';
import { describeLanes } from '../backends/wgsl/matmul-lanes.ts';
import { H200 } from './helpers/projections.ts';
import type { Figure } from '../bench/skinny-probe.ts';

const file = JSON.parse(readFileSync(new URL('../bench/results/h200-skinny-probe-picks.json', import.meta.url), 'utf8')) as { adapter: string; figures: Figure[] };
const H200_SUBGROUPS = { ...H200, subgroupSize: 32 };

describe("the lanes kernel's H200 picks against calls 157–158's figures", () => {
  it('was measured on the H200 with the lanes kernel as the pick', () => {
    expect(file.adapter).toContain('nvidia-h200');
    expect(file.figures.filter((f) => f.design === 'pick').every((f) => f.kernel.startsWith('pick: lanes'))).toBe(true);
  });

  const shapes = [...new Map(file.figures.map((f) => [`${f.projection} ${f.M}`, f])).values()];
  for (const s of shapes) {
    it(`${s.projection} at ${s.M} rows (${s.N} × ${s.K})`, () => {
      const confirmed = file.figures.filter((f) => f.projection === s.projection && f.M === s.M && f.stage === 'confirm');
      const best = Math.min(...confirmed.map((f) => f.usPerDispatch));
      const k = matmulKernel(H200_SUBGROUPS, { M: s.M, N: s.N, K: s.K, transposeB: true });
      expect(k.path).toBe('lanes');
      const t = k.tuning.lanes!;
      const v = { M: s.M, N: s.N, K: s.K, lanes: t.lanes!, slices: t.slices!, colGroups: t.colGroups!, colsPerThread: t.colsPerThread!, depth: t.depth!, rowBlocks: t.rowBlocks!, x: t.x!, reduce: t.reduce! };
      const same = (f: Figure) =>
        f.design === 'pick'
          ? f.kernel.includes(describeLanes(v))
          : f.variant !== undefined && f.variant.vec === 1 && (['lanes', 'slices', 'colGroups', 'colsPerThread', 'depth', 'rowBlocks', 'x', 'reduce'] as const).every((key) => f.variant![key] === v[key]);
      const timed = confirmed.find(same) ?? file.figures.find((f) => f.projection === s.projection && f.M === s.M && same(f));
      expect(timed, `today's pick (${describeLanes(v)}) was not timed in calls 157–158`).toBeDefined();
      expect(timed!.usPerDispatch / best, `${describeLanes(v)}: ${timed!.usPerDispatch} µs against the best ${best}`).toBeLessThanOrEqual(1.25);
    });
  }
});
