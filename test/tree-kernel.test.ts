// What the tree kernel (backends/wgsl/tree.ts) computes once and shares, read from its plan without a device:
// the exactness of every form is test/tree-gpu.test.ts's (against float64 and sequential decoding); these say
// which path of the kernel those GPU tests exercise for each variant.
import { describe, expect, it } from 'vitest';
import { analyseTree, rowReductions } from '../backends/wgsl/tree-analysis.ts';
import { scorePerColumn } from '../backends/wgsl/tree-bounded.ts';
import { treeCommitPlan, treePlan } from '../backends/wgsl/tree.ts';
import { treeFoldCommitPlan, treeFoldPlan } from '../backends/wgsl/tree-fold.ts';
import { SOFTWARE_TREE_SPLIT, treeSplit } from '../backends/wgsl/tree-split.ts';
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
    expect(llama.code).toMatch(/let top = .*an % 4u\)/); // group(4): no lag past n's offset in its group
    const dw = per('elu_dwconv');
    expect(dw.lag).toEqual([]); // w[h, e, K]: one tap per channel
    expect(dw.code).not.toMatch(/bsc/);
  });
});

describe('tree kernel: row reductions (llama_linearized: q/‖q‖, k/‖k‖ over d)', () => {
  const { program, sizes } = compiled('llama_linearized', { h: 3, d: 5, e: 7 });
  const a = analyseTree(program, sizes, 9);
  const code = treePlan(program, sizes, 9).kernels[0].code;
  const norms = program.nodes.filter((n) => n.op === 'norm').map((n) => n.id);

  it('finds the norm inside a feature map, at the position its `at` reads it, and nothing inside it', () => {
    const global = program.terms.find((t) => t.name === 'global')!;
    const form = global.form as { phi: number; psi: number };
    const pos = { i: 'an', j: 'aJ' };
    const phi = rowReductions(program, form.phi, 'an', pos, a.L.head);
    const psi = rowReductions(program, form.psi, 'x', pos, a.L.head);
    expect(phi.length).toBe(1);
    expect(psi.length).toBe(1);
    expect(norms).toContain(phi[0].id);
    expect(norms).toContain(psi[0].id);
    expect(phi[0].id).not.toBe(psi[0].id);
    expect(psi[0].where).toBe('aJ'); // kn[j]: the key position, whatever position the term is evaluated at
    // An element of a feature (one d) is no row reduction: its axes are not all head axes.
    expect(rowReductions(program, form.phi, 'an', pos, []).length).toBe(0);
  });

  it("stages a path node's key norm once per lag, read by every element of its key features", () => {
    expect(code).toMatch(/var<workgroup> red\d+: array<f32, 4>/); // C = 4: one tile of 4 lags
    expect(code).toMatch(/= red\d+\[e \/ 5u\]; \/\/ %\d+ norm/);
  });

  it("commits a path entry's key norm once per entry, for the global term's ψ and for the rings", () => {
    const commit = treeCommitPlan(program, sizes, 9).kernels[0].code;
    expect(commit).toMatch(/= redp\d+\[e \/ \d+u\]; \/\/ %\d+ norm/);
    expect(commit).toMatch(/= redr\d+\[e \/ 5u\]; \/\/ %\d+ norm/);
  });
});

describe('tree kernels: the split of a workgroup (tree-split.ts)', () => {
  // elu_dwconv at the model's shape, 12 heads × 64: what the H200 runs.
  const { program, sizes } = compiled('elu_dwconv', { h: 12, d: 64, e: 64 });

  it('gives a hardware adapter 256 threads, 4 slices of 16 state rows per column and staged tile values; a software adapter the 64-thread kernels', () => {
    expect(treeSplit(64, 64, false)).toEqual({ threads: 256, slices: 4, stageValues: true, tile: 16 });
    expect(treeSplit(128, 64, false)).toEqual({ threads: 256, slices: 2, stageValues: true, tile: 16 });
    expect(treeSplit(3, 4, false)).toEqual({ threads: 256, slices: 4, stageValues: true, tile: 16 });
    expect(treeSplit(64, 64, true)).toEqual(SOFTWARE_TREE_SPLIT);
    expect(treeSplit(64, 64, false, 128)).toEqual({ threads: 128, slices: 2, stageValues: true, tile: 16 });
    expect(() => treeSplit(64, 64, false, 48)).toThrow(/at least the 64 value columns/);
    expect(() => treeSplit(64, 64, false, 100)).toThrow(/multiple of 16/);
    // Larger path tiles (TreeOptions.tile): fewer feature lanes a score, values staged while a tile's fit 16 KB.
    expect(treeSplit(64, 64, false, 256, 64)).toEqual({ threads: 256, slices: 4, stageValues: true, tile: 64 });
    expect(treeSplit(64, 64, false, 256, 128)).toEqual({ threads: 256, slices: 4, stageValues: false, tile: 128 });
    expect(() => treeSplit(64, 64, false, 256, 48)).toThrow(/48 ancestors a path tile; a power of two dividing the 256 threads/);
    expect(() => treeSplit(64, 64, false, 128, 256)).toThrow(/256 ancestors a path tile/);
    const wide = treeFoldPlan(program, sizes, 16, { hardware: true, tile: 64 }).kernels[0].code;
    expect(wide).toContain('var<workgroup> vals: array<f32, 4096>');
    expect(wide).toContain('64 ancestors a tile');
    const hw = treeFoldPlan(program, sizes, 16, { hardware: true }).kernels[0].code;
    expect(hw).toContain('@workgroup_size(256)');
    expect(hw).toContain('4 slices of 16 rows per column');
    expect(hw).toContain('var<workgroup> vals: array<f32, 1024>');
    const sw = treeFoldPlan(program, sizes, 16).kernels[0].code;
    expect(sw).toContain('@workgroup_size(64)');
    expect(sw).not.toContain('rows per column');
    expect(sw).not.toContain('vals');
  });

  it('launches as many commit workgroups under either split: one state element a thread at 256 threads where 64 kept 4', () => {
    const grid = (hardware: boolean) => treeFoldCommitPlan(program, sizes, 16, { hardware }).kernels[0].workgroups(1, 1);
    expect(grid(true)).toEqual(grid(false));
    expect(grid(false)).toEqual([12 * 16, 1, 1]);
  });
});
