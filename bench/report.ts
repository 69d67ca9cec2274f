// Shared bits of the benchmark reports: which variants to run and a small dependency-free SVG bar plot.
import { DECODABLE_VARIANTS } from './variant-list.ts';

export const VARIANT_FILES_FOR_BENCH = DECODABLE_VARIANTS;

interface PlotRow {
  variant: string;
  t: number;
  d: number;
  fusedMs: number;
  unfusedMs: number;
  naiveMs: number | null;
}

/** Grouped horizontal bars (log scale) of fused / unfused / naive time per (variant, t, d). */
export function svgPlot(rows: readonly PlotRow[], adapter: string): string {
  const bar = 9;
  const gap = 8;
  const left = 260;
  const width = 900;
  const all = rows.flatMap((r) => [r.fusedMs, r.unfusedMs, r.naiveMs ?? r.fusedMs]);
  const lo = Math.log10(Math.max(1e-4, Math.min(...all, 1)));
  const hi = Math.log10(Math.max(...all, 1e-3)) + 0.2;
  const x = (ms: number) => ((Math.log10(ms) - lo) / (hi - lo)) * (width - left - 20);
  const colors = ['#1b7837', '#e08214', '#b2182b'];
  const parts: string[] = [];
  let y = 40;
  for (const r of rows) {
    parts.push(`<text x="${left - 6}" y="${y + bar * 1.5 + 3}" text-anchor="end" font-size="11">${r.variant} t=${r.t} d=${r.d}</text>`);
    [r.fusedMs, r.unfusedMs, r.naiveMs].forEach((ms, k) => {
      if (ms === null) return;
      parts.push(`<rect x="${left}" y="${y + k * bar}" width="${Math.max(1, x(ms)).toFixed(1)}" height="${bar - 1}" fill="${colors[k]}"/>`);
      parts.push(`<text x="${left + x(ms) + 4}" y="${y + k * bar + bar - 2}" font-size="8">${ms.toFixed(3)} ms</text>`);
    });
    y += 3 * bar + gap;
  }
  const legend = ['fused chunked', 'unfused', 'naive quadratic'].map((l, k) => `<rect x="${left + k * 140}" y="12" width="10" height="10" fill="${colors[k]}"/><text x="${left + k * 140 + 14}" y="21" font-size="11">${l}</text>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 30}" font-family="sans-serif">
<text x="8" y="21" font-size="12">GPU time (log scale), ${adapter.replace(/[<>&]/g, '')}</text>${legend}
${parts.join('\n')}
</svg>
`;
}
