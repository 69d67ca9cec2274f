// What the tree kernel (backends/wgsl/tree.ts) computes once and shares, read from its plan without a device:
// the exactness of every form is test/tree-gpu.test.ts's (against float64 and sequential decoding); these say
// which path of the kernel those GPU tests exercise for each variant.
import { describe, expect, it } from 'vitest';
import { analyseTree } from '../backends/wgsl/tree-analysis.ts';
import { scorePerColumn } from '../backends/wgsl/tree-bounded.ts';
import { treePlan } from '../backends/wgsl/tree.ts';
import { runPasses } from '../passes/pipeline.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { axisSizes } from '../src/inputs.ts';
import { VARIANTS } from './references/index.ts';

function compiled(name: string, axes: Record<string, number>) {
  const c = VARIANTS.find((v) => v.file.endsWith(`/${name}.la`))!;
  const source = loadVariant(c.file, { sizes: c.sizes });
  return { program: runPasses(source), sizes: axisSizes(source, axes) };
}

describe('tree kernel: bounded terms', () => {
  it('scores a term once per lag unless its score varies along the output columns (a per-channel convolution)', () => {
    const per = (name: string) => {
      const { program, sizes } = compiled(name, { h: 3, d: 5, e: 7 });
      const a = analyseTree(program, sizes, 9);
      const bounded = program.terms.filter((t) => t.form.kind !== 'prefix');
      return { lag: bounded.filter((t) => !scorePerColumn(a, t)).map((t) => t.name), code: treePlan(program, sizes, 9).kernels[0].code };
    };
    const llama = per('llama_linearized');
    expect(llama.lag.sort()).toEqual(['conv', 'local']); // w[h, K] and a dot over d: one value per (head, lag)
    expect(llama.code).toMatch(/var<workgroup> bsc: /);
    const dw = per('elu_dwconv');
    expect(dw.lag).toEqual([]); // w[h, e, K]: one tap per channel
    expect(dw.code).not.toMatch(/bsc/);
  });
});
