// The H200's default picks for the bench model's decode batches (M 1, 3, 8), each run at its own M with small N and K (what a pick fixes —
// lanes, loads, columns per thread, blocks, slices — does not depend on N and K; the real shapes would take minutes on
// lavapipe), against the float64 formula. The H200's workgroup memory is capped at the test device's.
import { describe, it } from 'vitest';
import { checkH200Pick, SHAPES } from './helpers/projections.ts';

describe('the default small-M and rows picks for an H200 equal the float64 formula at odd sizes: decode batches (M 1, 3, 8)', () => {
  const [, projections] = SHAPES[0];
  for (const M of [1, 3, 8]) {
    for (const [i, p] of projections.entries()) {
      it(`M = ${M}: ${p.name}`, () => checkH200Pick(p, M, 4000 + 10 * M + i));
    }
  }
});
