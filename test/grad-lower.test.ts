// The gradient plans as data (backends/wgsl/grad-lower.ts), without a device: the fused plan of every shipped
// variant takes fewer launches than the unfused one and stays within WebGPU's default 8 storage buffers and the
// workgroup memory it was given; elu_dwconv's fused plan is the one DEVELOPERS.md describes; reversal, shifts and
// padding are index transforms in the readers (no kernel copies a tensor); and sections that add into what an
// earlier one stored wait for it.
import { describe, expect, it } from 'vitest';
import { lowerGrad, type GradPlan } from '../backends/wgsl/grad-lower.ts';
import { differentiate } from '../passes/autodiff.ts';
import { axisSizes } from '../src/inputs.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { VARIANTS } from './references/index.ts';

const LIMIT = 49152;
const lower = (file: string, fuse: boolean, stored = false, sizes: Record<string, number> = { h: 16, d: 16, e: 16 }, storageBuffers = 8): GradPlan => {
  const p = loadVariant(file);
  return lowerGrad(differentiate(p), axisSizes(p, sizes), { fuse, stored, schedule: { chunk: 32, cols: 32, threads: 256 }, workgroupFloats: LIMIT / 4, storageBuffers });
};
const workgroupBytes = (code: string) => [...code.matchAll(/var<workgroup> \w+: array<f32, (\d+)>/g)].reduce((n, m) => n + 4 * Number(m[1]), 0);

describe('gradient plans', () => {
  it.each(VARIANTS.map((v) => v.file))('%s: fused takes fewer launches than unfused, within 8 storage buffers and the workgroup memory', (file) => {
    const fused = lower(file, true);
    const unfused = lower(file, false);
    expect(fused.kernels.length).toBeLessThan(unfused.kernels.length);
    for (const k of [...fused.kernels, ...unfused.kernels]) {
      expect(k.bindings.length, k.label).toBeLessThanOrEqual(8);
      expect(workgroupBytes(k.code), k.label).toBeLessThanOrEqual(LIMIT);
    }
    // every stage that stores something runs (the cotangent and gate maps are computed where they are read)
    const ran = new Set(fused.kernels.flatMap((k) => k.stages));
    for (const st of unfused.kernels.flatMap((k) => k.stages)) if (!['cotangents', 'gates'].includes(st)) expect(ran.has(st), st).toBe(true);
  });

  it('elu_dwconv, fused with the normalisers kept (16 storage buffers): reverse dv, dψ and the convolution in one kernel writing dk and dv; dφ writing dq; the taps; the sums', () => {
    const plan = lower('examples/paper/elu_dwconv.la', true, true, undefined, 16);
    expect(plan.kernels.map((k) => k.stages)).toEqual([
      ['adj.lin.value', 'token-sweep', 'adj.lin.j.fk', 'adj.conv.value'],
      ['adj.lin.i.fq', 'token-sweep'],
      ['adj.conv.s.w'],
      ['param-sums'],
    ]);
    // with WebGPU's 8 storage buffers the reverse kernel has no binding left for dk and dv: the sweep writes them
    expect(lower('examples/paper/elu_dwconv.la', true, true).kernels.map((k) => k.stages)).toContainEqual(['token-sweep']);
    const [reverse, forward] = plan.kernels;
    expect(reverse.bindings.filter((b) => b.write).map((b) => b.buffer).sort()).toEqual(['grad:dk', 'grad:dv']);
    expect(forward.bindings.filter((b) => b.write).map((b) => b.buffer)).toEqual(['grad:dq']);
    // the kept n and z are read, not recomputed; dv = adj.value + adj.conv.value: the later section adds after a storage barrier
    expect(plan.buffers.filter((b) => b.role === 'input').map((b) => b.name)).toEqual(expect.arrayContaining(['keep:n.0', 'keep:z.0', 'in:do']));
    expect(reverse.code).toMatch(/storageBarrier\(\);[\s\S]*epilogue: dv/);
    expect(lower('examples/paper/elu_dwconv.la', true).kernels[0].stages).toEqual(['recompute.n.0', 'recompute.z.0']);
  });

  it('reads reversed, shifted and padded tensors through index transforms: no kernel only copies', () => {
    for (const file of ['examples/variants/gla.la', 'examples/paper/flash.la']) {
      const plan = lower(file, true);
      for (const k of plan.kernels) expect(k.stages.length, k.label).toBeGreaterThan(0);
      const text = plan.kernels.map((k) => k.code).join('\n');
      expect(text).toMatch(/dims\.t - 1u - /); // reversal
      expect(text).toMatch(/< dims\.pad/); // past the end of the tensor: padding or the gate's one
    }
    const gla = lower('examples/variants/gla.la', true).kernels.map((k) => k.code).join('\n');
    expect(gla).toMatch(/\+ 1u\)/); // the gate read one position later
    expect(lower('examples/paper/flash.la', true, false, { h: 2, d: 4, e: 4 }).kernels.some((k) => k.pad === 64)).toBe(true); // group 64: T padded
  });
});
