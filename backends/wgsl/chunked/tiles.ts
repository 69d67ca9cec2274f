// Micro-tiles of the chunk kernel's phases: how many rows/columns each invocation owns, chosen so that every
// invocation of the workgroup has work while each element loaded from workgroup memory feeds several products.

/**
 * The micro-tile along an axis of n elements shared by `cols` columns: the largest of 4, 2, 1 dividing n that
 * still gives each of the WG invocations work (n / tile · cols ≥ WG), else 1 — a larger tile reuses each
 * loaded element more, but leaves invocations idle and the phase longer.
 */
export function microTile(n: number, cols: number, WG: number): number {
  const fits = [4, 2, 1].filter((m) => n % m === 0);
  return fits.find((m) => (n / m) * cols >= WG) ?? 1;
}

/**
 * The score phase's micro-tile: TI rows × TJ columns per invocation, the largest (of 4×4, 4×2, 2×2, 2×1, 1×1)
 * that still gives every invocation of the workgroup a tile, so that the phase is not left to a few of them.
 * NTI × NTJ tiles cover the C × CA score matrix.
 */
export function scoreTile(C: number, CA: number, WG: number, block = 1): { TI: number; TJ: number; NTI: number; NTJ: number } {
  // A blocked schedule (ChunkSchedule.block) takes `block` columns (ψ rows) an invocation whatever the invocations
  // left idle, and rows as microTile over those tiles, where that loads less a product than the unblocked tile
  // (which at chunk 64 and 1024 threads is 2 × 2 against 1 × 4); columns past CA are clamped on load, never stored.
  if (block > 1) {
    const plain = scoreTile(C, CA, WG);
    const NTJ = Math.ceil(CA / block);
    const TI = microTile(C, NTJ, WG);
    const loads = (ti: number, tj: number) => (ti + tj) / (ti * tj);
    return loads(TI, block) < loads(plain.TI, plain.TJ) ? { TI, TJ: block, NTI: C / TI, NTJ } : plain;
  }
  const shapes = [[4, 4], [4, 2], [2, 2], [2, 1], [1, 1]].filter(([ti]) => C % ti === 0);
  const tile = (ti: number, tj: number) => ({ TI: ti, TJ: tj, NTI: C / ti, NTJ: Math.ceil(CA / tj) });
  for (const [ti, tj] of shapes) if ((C / ti) * Math.ceil(CA / tj) >= WG) return tile(ti, tj);
  const [ti, tj] = shapes[shapes.length - 1];
  return tile(ti, tj);
}

/**
 * A register block over an n × R phase (outputs: C rows × R columns; the state update: F features × R columns):
 * TN columns per invocation — the schedule's `block`, or the largest divisor of R below it, so that the R / TN
 * column lanes cover the tile exactly — and TM rows by microTile over those lanes. An invocation's TM·TN
 * accumulators then take TM + TN workgroup loads per step where one column's took TM + 1 for TM products.
 */
export function blockTile(n: number, R: number, WG: number, block = 1): { TM: number; TN: number; NT: number; RB: number } {
  const TN = [block, 4, 2, 1].filter((x) => x <= block && R % x === 0)[0];
  const TM = microTile(n, R / TN, WG);
  return { TM, TN, NT: n / TM, RB: R / TN };
}

/** vec4s per key column of a score matrix stored as row quads (chunked/row-quads.ts): C/4, padded by one against bank conflicts. */
export const quadStride = (C: number) => C / 4 + 1;
