// A partial chunk kernel (the unfused plan: a kernel per term, summed by the combine kernel) writes a denominator
// only for a normalised output item, the only part the combine divides (chunked/analysis.ts partDen). Before call 118
// every part wrote one: llama_linearized's local kernel summed a 79-long row of its score tile on 16 invocations
// behind a barrier every chunk for a buffer nothing read (H200, b 4: 3.898 → 3.690 ms; flash 3.874 → 3.686). The
// forms' values are held to the float64 oracle by test/gpu-forms.test.ts (every variant unfused); this file checks
// what is bound and written.
import { describe, expect, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';

const plan = (name: string) => {
  const c = compileFile(`examples/paper/${name}.la`);
  return lowerChunked(c.program, axisSizes(c.source, { h: 2, d: 8, e: 8 }), { fuse: false, schedule: { chunk: 16, cols: 8, threads: 256 } });
};
const dens = (p: ReturnType<typeof plan>) => p.buffers.filter((b) => b.name.endsWith(':den')).map((b) => b.name);

describe('the unfused plan writes denominators only where an item is normalised', () => {
  it('llama_linearized (local + global + conv, no normalisation): no denominator buffer, none bound or written', () => {
    const p = plan('llama_linearized');
    expect(dens(p)).toEqual([]);
    const terms = p.kernels.filter((k) => k.label.includes('.term.'));
    expect(terms.map((k) => k.label)).toEqual(['llama_linearized.term.local', 'llama_linearized.term.global', 'llama_linearized.term.conv']);
    for (const k of terms) {
      expect(k.bindings.map((x) => x.buffer).filter((x) => x.endsWith(':den')), k.label).toEqual([]);
      expect(k.code, k.label).toMatch(/part_0_num\[o_off\] = /);
      expect(k.code, k.label).not.toMatch(/part_0_den|denp|rowden/);
    }
    const combine = p.kernels.find((k) => k.label.endsWith('.combine'))!;
    expect(combine.code.match(/_num\[flat\]/g)).toHaveLength(3);
    expect(combine.code).not.toMatch(/_den/);
  });

  it("elu_dwconv (normalised linear term + conv): the linear term's kernel writes its denominator, the conv's does not", () => {
    const p = plan('elu_dwconv');
    const terms = p.kernels.filter((k) => k.label.includes('.term.'));
    expect(terms).toHaveLength(2);
    const [linear, conv] = terms;
    expect(linear.code).toMatch(/part_0_den\[o_off\] = /);
    expect(conv.code).not.toMatch(/part_0_den/);
    expect(dens(p)).toEqual([`${linear.label}:part0:den`]);
    const combine = p.kernels.find((k) => k.label.endsWith('.combine'))!;
    expect(combine.code).toMatch(/\/ \(.*_den\[flat\] \+ /);
  });
});
