// The H200's default picks for the bench model's draft trees (M 17, 65), each run at its own M with small N and K (what a pick fixes —
// lanes, loads, columns per thread, blocks, slices — does not depend on N and K; the real shapes would take minutes on
// lavapipe), against the float64 formula. The H200's workgroup memory is capped at the test device's.
import { describe, it } from 'vitest';
import { checkH200Pick, SHAPES } from './helpers/projections.ts';

describe('the default small-M and rows picks for an H200 equal the float64 formula at odd sizes: draft trees (M 17, 65)', () => {
  const [, projections] = SHAPES[0];
  for (const M of [17, 65]) {
    for (const [i, p] of projections.entries()) {
      // The 65-row LM head's pick (rows kernel, 2 blocks of 33 rows × 8 loads, unchanged by the H200 sweep's rule)
      // compiles for minutes on lavapipe; blocks and several loads per slice at 65 rows are run by q|k|v's and gate|up's.
      if (M === 65 && p.name === 'lm head') continue;
      it(`M = ${M}: ${p.name}`, () => checkH200Pick(p, M, 4000 + 10 * M + i));
    }
  }
});
