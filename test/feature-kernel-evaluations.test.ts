// How much work the feature kernels (the unfused plan's and the prologue's: each feature node materialised as
// [b, t, …]) do per token, counted statically from their WGSL (test/helpers/wgsl-counts.ts) and their launch's
// invocations per token: a reduction's elements at most once per token, and hedgehog's softmaxes O(F + m)
// exponentials a token, not O(F·m) (issue 15: each feature element recomputed q @ W and its softmax's Σ exp).
import { describe, expect, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import type { Kernel } from '../backends/wgsl/plan.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { matchingExecutions, nodeEvaluations } from './helpers/wgsl-counts.ts';
import { DECODABLE } from './helpers/variants.ts';

const SCHEDULE = { chunk: 16, cols: 32, threads: 1024 };

/**
 * A feature kernel's body as the counter's "chunk loop" run once, and the factor from its counted invocations
 * (one workgroup of `size`) to a token's (`perToken` of its grid launch).
 */
function perToken(k: Kernel): { code: string; WG: number; scale: number } {
  if (k.launch?.kind !== 'grid') throw new Error(`${k.label}: not a grid launch`);
  const code = k.code.replace(/^fn main\(.*\{$/m, 'for (var c: u32 = 0u; c < 1u; c++) {');
  return { code, WG: k.launch.size, scale: k.launch.perToken / k.launch.size };
}

const featureKernels = (file: string) => {
  const c = compileFile(file);
  const sizes = axisSizes(c.source, Object.fromEntries(Object.entries({ h: 16, d: 64, e: 64 }).filter(([a]) => c.source.axes[a]?.kind === 'free')));
  const plan = lowerChunked(c.program, sizes, { fuse: false, schedule: SCHEDULE });
  return { p: c.program, sizes, kernels: plan.kernels.filter((k) => /\.feature%\d+$/.test(k.label)) };
};

describe('feature kernels', () => {
  it.each(DECODABLE.filter((f) => featureKernels(f).kernels.length))('%s: every element of a reduction under a feature evaluated at most once per token', (file) => {
    const { p, sizes, kernels } = featureKernels(file);
    for (const k of kernels) {
      const { code, WG, scale } = perToken(k);
      const node = p.nodes[Number(/%(\d+)$/.exec(k.label)![1])];
      // the feature's own elements per token: a reduction it reads once per element may be evaluated that often
      const per = node.type.axes.reduce((w, a) => w * sizes[a], 1);
      for (const r of p.nodes.filter((n) => (n.op === 'sum' || n.op === 'norm' || n.op === 'matmul') && n.type.side !== 'pair' && n.type.side !== 'param' && n.type.side !== 'const')) {
        const W = r.type.axes.reduce((w, a) => w * sizes[a], 1);
        const n = nodeEvaluations(code, r.id, 1, WG) * scale;
        expect(n, `${k.label}: %${r.id} ${r.op} evaluations per token`).toBeLessThanOrEqual(Math.max(W, per));
      }
    }
  });

  // φ = [softmax(q @ W, m), softmax(−q @ W, m)] over h heads (F = 2m): per token and head each softmax's Σ exp
  // takes m exponentials and each feature one (both branches of the concat's if-chain counted: 2F + 2m).
  it('hedgehog: q @ W once per (head, m) and O(F + m) exponentials per token and head, not O(F·m)', () => {
    const { sizes, kernels } = featureKernels(DECODABLE.find((f) => f.endsWith('/hedgehog.la'))!);
    const { h, m } = sizes;
    expect(kernels.length).toBe(2);
    for (const k of kernels) {
      const { code, WG, scale } = perToken(k);
      expect(matchingExecutions(code, /= acc\w* \+ \w+ \* \w+;/, 1, WG) * scale, `${k.label}: multiply-adds per token`).toBe(h * m * sizes.d);
      const exps = matchingExecutions(code, /exp\(/, 1, WG) * scale;
      expect(exps, `${k.label}: exponentials per token`).toBeGreaterThan(0);
      expect(exps, `${k.label}: exponentials per token`).toBeLessThanOrEqual(h * (2 * 2 * m + 2 * m));
    }
  });
});
