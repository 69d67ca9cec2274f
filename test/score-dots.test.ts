// A bounded term's dot products over the score tile, register-blocked (chunked/score-dots.ts): each invocation's
// TI × TJ cells take their products in one loop over the feature axis, each query row's and key row's feature loaded
// once a step, and each cell's score reads its sum. What the kernels compute is held to the float64 oracle by
// test/gpu-chunked.test.ts and test/gpu-forms.test.ts (llama_linearized fused and unfused over many schedules, every
// variant's forms; a loop one step short fails them); this file checks which kernels take the tile and its shape.
import { describe, expect, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';

const kernels = (name: string, fuse: boolean, schedule = { chunk: 16, cols: 8, threads: 256 }) => {
  const c = compileFile(`examples/${name}.la`);
  return lowerChunked(c.program, axisSizes(c.source, { h: 2, d: 8, e: 8 }), { fuse, schedule }).kernels;
};
const products = (code: string) => code.match(/ = dt\d+_\d+_\d+ \+ dq_\d+ \* dk_\d+;/g) ?? [];

describe('the score tile\'s dot products, register-blocked', () => {
  it.each([
    ['paper/llama_linearized', '.term.local'],
    ['paper/flash', '.term.local'],
  ])('%s: its group term\'s kernel takes every cell\'s product in one loop, each sum read by its cell', (name, label) => {
    const k = kernels(name, false).find((x) => x.label.endsWith(label))!;
    // 256 invocations over a 16 × 64 tile (chunk 16, halo 48): 2 × 2 cells an invocation, four products a step
    expect(products(k.code)).toHaveLength(4);
    expect(k.code.match(/let dq_\d+ = /g)).toHaveLength(2);
    expect(k.code.match(/let dk_\d+ = /g)).toHaveLength(2);
    expect(k.code).toMatch(/if \(dany\) \{/);
    // no cell runs a dot product of its own over the staged features any more
    expect(k.code).not.toMatch(/for \(var l: u32 = 0u; l < 8u; l\+\+\) \{\s*let x\d+ = qf/);
    expect(k.code.match(/let x\d+ = dt\d+_\d+_\d+; \/\/ %\d+ sum/g)).toHaveLength(4);
  });

  it('llama_linearized fused: the same tile reads q̂ and k̂ where the global term stages them (φ and ψ)', () => {
    const [k] = kernels('paper/llama_linearized', true);
    expect(products(k.code).length).toBeGreaterThan(0);
    expect(k.code).toMatch(/let dq_0 = phi\d+\[/);
    expect(k.code).toMatch(/let dk_0 = psi\d+\[djr_0 \* 9u \+ l\]/); // ψ's rows padded to 8 + 1
  });

  it.each(['paper/elu_dwconv', 'variants/retnet', 'paper/performer'])('%s (no bounded dot product): no such loop', (name) => {
    for (const fuse of [true, false]) for (const k of kernels(name, fuse)) expect(k.code, k.label).not.toMatch(/dany|dt\d+_/);
  });
});
