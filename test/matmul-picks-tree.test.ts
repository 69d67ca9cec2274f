// The H200's default picks for the bench model's draft trees (M 17, 65), each run at its own M with small N and K (what a pick fixes —
// lanes, loads, columns per thread, blocks, slices — does not depend on N and K; the real shapes would take minutes on
// lavapipe), against the float64 formula. The H200's workgroup memory is capped at the test device's. Since the H200's
// skinny sweep (bench/results/h200-small-m-skinny.json) gate|up at both sizes, q|k|v and the LM head at 65 rows are the
// skinny kernel's picks (at 17 rows 6 rows per thread, 4 × 8 for the head at 65; since the register form's sweep,
// h200-small-m-skinny-reg.json, q|k|v and gate|up at 65 rows take it, 17 rows per thread with the weights in
// registers), the rest small-M and rows picks.
import { describe, it } from 'vitest';
import { checkH200Pick, SHAPES } from './helpers/projections.ts';

describe('the default small-M, rows and skinny picks for an H200 equal the float64 formula at odd sizes: draft trees (M 17, 65)', () => {
  const [, projections] = SHAPES[0];
  for (const M of [17, 65]) {
    for (const [i, p] of projections.entries()) {
      it(`M = ${M}: ${p.name}`, () => checkH200Pick(p, M, 4000 + 10 * M + i));
    }
  }
});
