// What a command is to the CLI: its usage (the synopsis the overview lists, and the help `linattn NAME --help`
// prints), its options, and a handler. `execute` is the one path every command takes: `--help`, parsing,
// and turning any error into a message and an exit code (2 for a usage mistake, 1 for a failure).
import { readFileSync } from 'node:fs';
import { formatDiagnostic } from '../frontend/diagnostics.ts';
import { SourceError } from '../ir/span.ts';
import { parseCommandArgs, UsageError, type Options, type ParsedArgs } from './args.ts';

export interface CommandIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export const processIo: CommandIo = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
};

export interface Command {
  readonly name: string;
  /** How it is called, one line per form, e.g. 'linattn ir FILE.la [--print-after=PASS|all]'. */
  readonly synopsis: string;
  /** One line for the overview. */
  readonly summary: string;
  /** What `linattn NAME --help` adds below the synopsis: what it does, each option. */
  readonly help: string;
  readonly options: Options;
  /** Whether it takes positional arguments (variant files). */
  readonly positionals?: boolean;
  run(args: ParsedArgs, io: CommandIo): Promise<number>;
}

/** `linattn NAME --help`. */
export function commandUsage(c: Command): string {
  return `usage: ${c.synopsis}\n\n${c.summary}\n\n${c.help}\n`;
}

const wantsHelp = (argv: readonly string[]) => {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
};

/** Runs `c` on `argv`; every error is printed to io.stderr, and the exit code returned. */
export async function execute(c: Command, argv: readonly string[], io: CommandIo = processIo): Promise<number> {
  if (wantsHelp(argv)) {
    io.stdout(commandUsage(c));
    return 0;
  }
  try {
    return await c.run(parseCommandArgs(c.name, argv, c.options, c.positionals ?? false), io);
  } catch (e) {
    return reportError(e, c, io);
  }
}

/** Prints `e` for a person (a DSL error with its line and caret) and returns the exit code. */
export function reportError(e: unknown, c: Command, io: CommandIo): number {
  if (e instanceof UsageError) {
    io.stderr(`linattn ${c.name}: ${e.message}\nusage: ${c.synopsis}\n(linattn ${c.name} --help says more)\n`);
    return 2;
  }
  if (e instanceof SourceError && e.span) {
    io.stderr(`${formatDiagnostic(e, sourceOf(e.span.file))}\n`);
    return 1;
  }
  io.stderr(`linattn ${c.name}: ${e instanceof Error ? e.message : String(e)}\n`);
  if (process.env.LINATTN_DEBUG && e instanceof Error) io.stderr(`${e.stack}\n`);
  return 1;
}

/** The text of the file a diagnostic points into ('' when it cannot be read: the message still names the place). */
export function sourceOf(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
