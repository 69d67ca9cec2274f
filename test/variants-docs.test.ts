// docs/variants.md lists every variant with its current terms, state and line count.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderTable, variantFiles } from '../docs/variants-table.ts';

describe('docs/variants.md', () => {
  it('holds the table docs/variants-table.ts generates (run it after changing a .la file)', () => {
    expect(readFileSync('docs/variants.md', 'utf8')).toContain(renderTable());
  });

  it('has a row for every .la file', () => {
    const doc = readFileSync('docs/variants.md', 'utf8');
    for (const f of variantFiles()) expect(doc).toContain(`(../${f})`);
  });

  it('keeps every variant file within 20 lines', () => {
    for (const f of variantFiles()) expect(readFileSync(f, 'utf8').trimEnd().split('\n').length, f).toBeLessThanOrEqual(20);
  });
});
