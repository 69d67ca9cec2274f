// The plumbing every bench script shares: running its main when node was started on it (a test may import it
// without running anything), reading a flag's value, naming the adapter a report's figures come from, and writing
// the report as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Gpu } from '../src/runtime/device.ts';

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

/** The value after `flag` on the command line (`--steps 5`), or undefined. */
export function flagValue(args: readonly string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Where a report's figures come from: the adapter, Dawn's toggles (src/runtime/dawn-flags.ts), and when. */
export interface AdapterHeader {
  readonly adapter: string;
  /** Dawn toggles the adapter was opened with (src/runtime/dawn-flags.ts). */
  readonly toggles: readonly string[];
  readonly software: boolean;
  readonly date: string;
}

export function adapterHeader(gpu: Gpu): AdapterHeader {
  return { adapter: gpu.adapterName, toggles: gpu.toggles, software: gpu.isSoftware, date: new Date().toISOString() };
}
