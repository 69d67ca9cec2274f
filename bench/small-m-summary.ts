// bench/small-m.ts's closing table: per projection and M, the chooser's pick beside the fastest kernel measured (the
// confirmed figures when the run swept: the pick and the sweep's best three, each re-timed with the full warm-up), each
// with its family (small-m, rows, skinny, tiled), and a step's projections summed both ways: what the chooser's rules
// should be fitted to.

/** What the table reads of a figure (small-m.ts's SmallMFigure). */
interface Figure {
  readonly projection: string;
  readonly M: number;
  readonly kernel: string;
  readonly family: string;
  readonly usPerDispatch: number;
  readonly stage?: 'confirm';
  readonly rank?: 'chooser' | 1 | 2 | 3;
}

export function printBestPerShape(figures: readonly Figure[], layers: number): void {
  const groups = new Map<string, Figure[]>();
  for (const f of figures) {
    const key = `${f.M}\u0000${f.projection}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const table = [['projection', 'M', 'chooser µs', 'family', 'skinny default µs', 'best µs', 'family', 'best / chooser', 'best kernel']];
  const steps = new Map<number, { chooser: number; best: number }>();
  for (const group of groups.values()) {
    const confirmed = group.filter((f) => f.stage === 'confirm');
    const chooser = confirmed.find((f) => f.rank === 'chooser') ?? group[0];
    const best = (confirmed.length > 0 ? confirmed : group).reduce((a, b) => (b.usPerDispatch < a.usPerDispatch ? b : a));
    const skinny = group.find((f) => f.family === 'skinny' && f.stage === undefined);
    const { projection, M } = chooser;
    table.push([projection, String(M), chooser.usPerDispatch.toFixed(2), chooser.family, skinny ? skinny.usPerDispatch.toFixed(2) : '-', best.usPerDispatch.toFixed(2), best.family, (best.usPerDispatch / chooser.usPerDispatch).toFixed(2), best.kernel]);
    // A step runs every projection but the LM head once per layer.
    const times = projection.startsWith('lm head') ? 1 : layers;
    const s = steps.get(M) ?? { chooser: 0, best: 0 };
    steps.set(M, { chooser: s.chooser + times * chooser.usPerDispatch, best: s.best + times * best.usPerDispatch });
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log('\nbest per shape (confirmed figures where swept):');
  for (const r of table) console.log('  ' + r.map((c, i) => c.padEnd(widths[i])).join('  '));
  console.log(`\na step's projections (${layers} layers of each but the LM head, once), µs:`);
  for (const [M, s] of [...steps].sort((a, b) => a[0] - b[0])) console.log(`  M ${M}: chooser ${s.chooser.toFixed(1)}, best ${s.best.toFixed(1)} (${(s.best / s.chooser).toFixed(2)}×)`);
}
