// Where a long prefill is cut into command buffers, each submitted as soon as it is encoded: the GPU starts on
// the first layer while the host still encodes the rest, so only the first piece's encode and submit stand
// between the call and the GPU's work. On the H200 a 2048-token prefill of the 12-layer model spent 0.67 ms
// encoding and 0.34 submitting one command buffer before its 12.9 ms of GPU work could begin (issue 15); a layer
// there is ~1 ms of GPU time against ~0.05 ms of encoding, so after a first piece of one layer the host stays
// ahead. Pieces of 1, 3 and the remaining layers: the second is small too, so that the GPU never waits on a
// long encode, and the count stays at 3 submits (each costs the host a fixed share).

/** Layer counts after which a prefill's command buffer is submitted (pieces of 1, 3, then the rest). */
export const PREFILL_CUT_LAYERS = [1, 4] as const;
/**
 * Below this many rows a prefill stays one command buffer: its layers take the GPU about as long as the host
 * takes to encode them, and a decode-sized step pays a submit per piece for nothing.
 */
export const PREFILL_SPLIT_MIN_ROWS = 256;

/** The cut points (layers encoded before each extra submit) of a prefill of `rows` rows through `layers` layers. */
export function prefillCuts(layers: number, rows: number, split = true): number[] {
  if (!split || rows < PREFILL_SPLIT_MIN_ROWS) return [];
  return PREFILL_CUT_LAYERS.filter((c) => c < layers);
}
