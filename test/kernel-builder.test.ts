// The WGSL kernel builder (backends/wgsl/wgsl-block.ts, kernel-builder.ts): names it chooses never collide with
// a visible declaration, and the workgroup memory the scheduler counts (sharedFloats) is what the generated
// kernel declares, read back from its WGSL text.
import { describe, expect, it } from 'vitest';
import { sharedFloats } from '../backends/wgsl/chunked.ts';
import { itemsOver } from '../backends/wgsl/chunked/analysis.ts';
import { KernelBuilder } from '../backends/wgsl/kernel-builder.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { Block, Scope } from '../backends/wgsl/wgsl-block.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes } from '../src/inputs.ts';
import { DECODABLE } from './helpers/variants.ts';

describe('Block names', () => {
  it('take the stem when nothing visible has it, a numbered stem when something does, and the stem again in a sibling block', () => {
    const b = Block.top(new Scope(null));
    const x = b.let('x', '1.0');
    const inner: string[] = [];
    b.block('', (c) => inner.push(c.let('x', '2.0'), c.let('x', '3.0')));
    b.block('', (c) => inner.push(c.let('x', '4.0')));
    expect([x, ...inner]).toEqual(['x', 'x_1', 'x_2', 'x_1']);
    expect(b.render()).toEqual(['let x = 1.0;', '{', '  let x_1 = 2.0;', '  let x_2 = 3.0;', '}', '{ let x_1 = 4.0; }']);
  });
  it('refuse a fixed name that is already visible', () => {
    const b = Block.top(new Scope(null));
    b.define('c0', '0u');
    b.for('j', '0u', (j) => `${j} < 4u`, (l) => expect(() => l.define('c0', '1u')).toThrow(/'c0' declared twice/));
  });
  it('keep locals apart from the module: a local never takes a binding or workgroup array name', () => {
    const kb = new KernelBuilder(64, ['lid']);
    const vs = kb.workgroup('vs', 8);
    const out = kb.storage('out:o', true, { always: true });
    expect([kb.body.let('vs', '0.0'), kb.body.let('out_o', '0.0'), kb.body.let('lid', '0u')]).toEqual(['vs_1', 'out_o_1', 'lid_1']);
    expect([vs.name, out.name, kb.workgroupFloats()]).toEqual(['vs', 'out_o', 8]);
  });
});

/** Floats of workgroup memory a WGSL module declares, read from its text. */
function declaredFloats(code: string): number {
  // a vec4<f32> element is four floats (chunked/analysis.ts CHUNK_DEFAULTS.vec4: φ, ψ and z as vec4)
  return [...code.matchAll(/var<workgroup> \w+: array<(vec4<f32>|\w+), (\d+)>/g)].reduce((n, m) => n + Number(m[2]) * (m[1] === 'vec4<f32>' ? 4 : 1), 0);
}

describe('sharedFloats', () => {
  const SCHEDULES = [
    { chunk: 16, cols: 4, threads: 64 },
    { chunk: 32, cols: 8, threads: 128 },
  ];
  it.each(DECODABLE)('%s: equals the workgroup memory its fused chunk kernel declares', (file) => {
    const c = compileFile(file);
    const sizes = axisSizes(c.source, Object.fromEntries(Object.entries({ h: 2, d: 8, e: 6 }).filter(([a]) => c.source.axes[a]?.kind === 'free')));
    for (const s of SCHEDULES) {
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: s });
      const declared = Math.max(...plan.kernels.map((k) => declaredFloats(k.code)));
      expect(sharedFloats(c.program, sizes, c.program.terms, c.program.output, s)).toBe(declared);
    }
  });
  // The unfused plan's term kernels write num/den parts (gla's once declared 544 floats more than the estimate:
  // a schedule passed the fit check and then failed pipeline creation on lavapipe's 32 KB).
  it.each(DECODABLE)('%s: equals the workgroup memory its unfused term kernels declare', (file) => {
    const c = compileFile(file);
    const sizes = axisSizes(c.source, Object.fromEntries(Object.entries({ h: 2, d: 8, e: 6 }).filter(([a]) => c.source.axes[a]?.kind === 'free')));
    for (const s of SCHEDULES) {
      const plan = lowerChunked(c.program, sizes, { fuse: false, schedule: s });
      const declared = Math.max(...plan.kernels.map((k) => declaredFloats(k.code)));
      const p = c.program;
      expect(Math.max(...p.terms.filter((t) => !t.noncausal).map((t) => sharedFloats(p, sizes, [t], itemsOver(p.output, [t]), s, true)))).toBe(declared);
    }
  });
});
