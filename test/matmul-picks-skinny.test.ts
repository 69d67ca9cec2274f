// The skinny kernel's default knobs for an H200 (matmul-skinny-choice.ts) at the bench model's tree sizes, each run at
// its own M with small N and K (what the knobs fix — rows and columns per thread, column threads, slices, loads per
// tile — does not depend on N and K), against the float64 formula. The H200's workgroup memory is capped at the test
// device's. A few picks only: lavapipe compiles the larger register blocks (6–8 rows × 4 weight rows at 4 loads per
// tile) for minutes; these cover 64 slices reduced in six halvings (o at 5 rows), 16 slices of 4 loads per tile (q|k|v,
// gate|up at 5 rows: where the H200 keeps the small-M kernel, the skinny kernel's knobs still fitted) and 17 row threads of 4
// rows (o at 65). The shapes where the skinny kernel is the default run in matmul-picks-tree.test.ts (gate|up at 17 and 65
// rows, q|k|v and the LM head at 65) and, for the argmax LM head, matmul-skinny.test.ts.
import { describe, it } from 'vitest';
import { checkH200Pick, SHAPES } from './helpers/projections.ts';

describe("the skinny kernel's default knobs for an H200 equal the float64 formula at odd sizes", () => {
  const [, projections] = SHAPES[0];
  const cases: readonly (readonly [number, string])[] = [[5, 'q|k|v'], [5, 'o'], [5, 'gate|up'], [65, 'o']];
  for (const [i, [M, name]] of cases.entries()) {
    const p = projections.find((q) => q.name === name)!;
    it(`M = ${M}: ${p.name}`, () => checkH200Pick(p, M, 5000 + i, { path: 'skinny' }));
  }
});
