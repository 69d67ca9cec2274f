// The one variant file a command takes as its positional argument.
import { UsageError } from './args.ts';

export function oneVariantFile(positionals: readonly string[]): string {
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `takes one variant file, got ${positionals.length}` : 'give a variant file (FILE.la)');
  return positionals[0];
}
