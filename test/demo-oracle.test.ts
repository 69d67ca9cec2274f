// The demo's oracle on a causal prefix (src/cli/demo-oracle.ts): on a hardware GPU's shape it runs the float64 oracle
// on the first sequence's first tokens only and compares the GPU's output there. That is exact only if a causal
// layer's outputs on a prefix of the inputs are the whole run's outputs there: checked here in float64 on the CPU, for
// the paper's layer (a convolution window beside the prefix sum), a decayed one and a grouped one, and the extent the
// budget picks.
import { describe, expect, it } from 'vitest';
import { evaluateRecurrent } from '../backends/cpu/recurrent.ts';
import { causalSlice, ORACLE_BUDGET, oracleExtent } from '../src/cli/demo-oracle.ts';
import { makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';

describe("the demo's oracle on a causal prefix", () => {
  it.each([['examples/paper/elu_dwconv.la'], ['examples/variants/retnet.la'], ['examples/paper/llama_linearized.la']])(
    '%s: the oracle on the first sequence\'s first tokens equals the whole run\'s outputs there',
    (file) => {
      const c = compileFile(file);
      const x = makeInputs(c.source, { b: 3, t: 40, axes: { h: 2, d: 8, e: 8 }, seed: 5 });
      const whole = evaluateRecurrent(c.program, x);
      const inputs = new Set(c.source.inputs.map((d) => d.name));
      for (const [b, t] of [[1, 17], [2, 33], [3, 40]] as const) {
        const sliced = Object.fromEntries(Object.entries(x).map(([k, v]) => [k, inputs.has(k) ? causalSlice(v, b, t) : v]));
        const prefix = evaluateRecurrent(c.program, sliced);
        expect(prefix.shape).toEqual([b, t, ...whole.shape.slice(2)]);
        expect(Array.from(prefix.data), `${file} b ${b} t ${t}`).toEqual(Array.from(causalSlice(whole, b, t).data));
      }
    },
  );

  it('runs the whole shape within the budget, else the first sequence and a multiple of 64 tokens', () => {
    expect(oracleExtent(2, 1000, 4, 32, 32)).toEqual({ whole: true, b: 2, t: 1000 }); // lavapipe's demo shape
    expect(oracleExtent(4, 4096, 16, 64, 64)).toEqual({ whole: false, b: 1, t: 512 }); // the paper's: 512 · 65,536 ≤ budget
    expect(512 * 16 * 64 * 64).toBeLessThanOrEqual(ORACLE_BUDGET);
    expect(oracleExtent(2, 200, 2, 16, 16, 20_000)).toEqual({ whole: false, b: 1, t: 64 }); // at least 64 tokens
    expect(oracleExtent(1, 50, 2, 16, 16, 1)).toEqual({ whole: false, b: 1, t: 50 }); // never past t
    expect(() => causalSlice({ shape: [2, 10, 3], data: new Float64Array(60) }, 3, 5)).toThrow(/outside the tensor's \[2, 10\]/);
  });
});
