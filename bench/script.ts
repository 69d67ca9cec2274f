// The plumbing every bench script shares: running its main when node was started on it (a test may import it
// without running anything), and writing its report as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Runs `main` when the module at `url` (its import.meta.url) is the script node was started with, then exits 0; a
 * failure prints the error (its stack where `stack`, else its message) and exits 1.
 */
export function runIfMain(url: string, main: () => Promise<void>, opts: { readonly stack?: boolean } = {}): void {
  if (!(process.argv[1] && url === pathToFileURL(process.argv[1]).href)) return;
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e instanceof Error ? (opts.stack ? e.stack ?? e.message : e.message) : e);
      process.exit(1);
    },
  );
}

/** Writes `report` as indented JSON to dir/name (dir made if need be) and says where; returns the path. */
export function writeReport(dir: string, name: string, report: unknown): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${file}`);
  return file;
}
