// Mask semantics in one place: which (i, j) pairs a term sees, and the lag range that implies.
import type { MaskAtom } from './types.ts';

export function maskAtomAllows(m: MaskAtom, i: number, j: number): boolean {
  const lag = i - j;
  switch (m.kind) {
    case 'causal':
      return lag >= 0;
    case 'window':
      return lag >= 0 && lag < m.size;
    case 'group':
      return lag >= 0 && Math.floor(i / m.size) === Math.floor(j / m.size);
    case 'past_groups':
      return Math.floor(j / m.size) < Math.floor(i / m.size);
    case 'centered':
      return lag >= -(m.size - 1 - Math.floor(m.size / 2)) && lag <= Math.floor(m.size / 2);
  }
}

/** Does the intersection of the atoms admit the pair (i, j)? */
export function maskAllows(mask: readonly MaskAtom[], i: number, j: number): boolean {
  return mask.every((m) => maskAtomAllows(m, i, j));
}

export function maskToString(mask: readonly MaskAtom[]): string {
  return mask.map((m) => (m.kind === 'causal' ? 'causal' : `${m.kind}(${m.size})`)).join(' & ');
}

/** The lag range [lo, hi] a mask allows, or null when it is unbounded. */
export function lagRange(mask: readonly MaskAtom[]): [number, number] | null {
  let lo = -Infinity;
  let hi = Infinity;
  for (const m of mask) {
    switch (m.kind) {
      case 'causal': lo = Math.max(lo, 0); break;
      case 'window': lo = Math.max(lo, 0); hi = Math.min(hi, m.size - 1); break;
      case 'group': lo = Math.max(lo, 0); hi = Math.min(hi, m.size - 1); break;
      case 'past_groups': lo = Math.max(lo, 1); break;
      case 'centered': lo = Math.max(lo, -(m.size - 1 - Math.floor(m.size / 2))); hi = Math.min(hi, Math.floor(m.size / 2)); break;
    }
  }
  return Number.isFinite(lo) && Number.isFinite(hi) ? [lo, hi] : null;
}
