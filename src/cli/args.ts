// Argument parsing for every command: node:util's parseArgs, strict, with its errors turned into the one
// usage error of the CLI (exit code 2) worded for a person ("unknown option '--model'", naming the command),
// and the small checks commands share (NAME=SIZE pairs, integers, required options, one-of choices).
import { parseArgs } from 'node:util';
import type { PrologueRequest } from '../runtime/plan-choice.ts';

/** A mistake in how a command was called: the CLI prints it with the command's usage and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
}

export type Options = Readonly<Record<string, OptionSpec>>;
export type Values = Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;

export interface ParsedArgs {
  readonly values: Values;
  readonly positionals: readonly string[];
}

/** Parses `argv` against `options`; `command` names the command in every error. */
export function parseCommandArgs(command: string, argv: readonly string[], options: Options, allowPositionals: boolean): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: options as Record<string, OptionSpec>, strict: true, allowPositionals });
    return { values, positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    if (!err.code?.startsWith('ERR_PARSE_ARGS')) throw e;
    const quoted = /'([^']*)'/.exec(err.message)?.[1] ?? '';
    const known = Object.keys(options).map((o) => `--${o}`).join(', ');
    switch (err.code) {
      case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
        throw new UsageError(`unknown option '${quoted}' (linattn ${command} takes ${known})`);
      case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
        throw new UsageError(`unexpected argument '${quoted}' (linattn ${command} takes only options)`);
      case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
        const name = quoted.split(' ')[0];
        if (/does not take an argument/.test(err.message)) throw new UsageError(`${name} takes no value`);
        if (/ambiguous/.test(err.message)) throw new UsageError(`${name}'s value starts with a dash: write ${name}=VALUE`);
        throw new UsageError(`${name} needs a value`);
      }
      default:
        throw new UsageError(err.message);
    }
  }
}

/** A string option's value, or undefined. */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function required(values: Values, name: string, what = 'is required'): string {
  const v = str(values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} ${what}`);
  return v;
}

/** `--name NAME=SIZE` repeated → { NAME: SIZE }. */
export function pairs(values: Values, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  const list = values[name];
  for (const s of Array.isArray(list) ? list.map(String) : []) {
    const m = /^([A-Za-z_]\w*)=(\d+)$/.exec(s);
    if (!m) throw new UsageError(`--${name} takes NAME=SIZE, got '${s}'`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

/** A non-negative integer option, `dflt` when absent (required when there is no default). */
export function int(values: Values, name: string, dflt?: number): number {
  const v = str(values, name);
  if (v === undefined) {
    if (dflt === undefined) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}

/** A number option passing `check` (`want` says what passes), or undefined when absent. */
export function number(values: Values, name: string, check: (n: number) => boolean, want: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${want}, got ${JSON.stringify(v)}`);
  return n;
}

/** One of `allowed`, `dflt` when absent. */
export function choice<T extends string>(values: Values, name: string, allowed: readonly T[], dflt: T): T {
  const v = str(values, name) ?? dflt;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${name} takes ${allowed.join(' or ')}, got '${v}'`);
  return v as T;
}

/** --fuse / --no-fuse force the plan; neither leaves it to the cost model (src/runtime/plan-choice.ts). */
export function fuseFlag(values: Readonly<Record<string, unknown>>): boolean | undefined {
  if (values.fuse && values['no-fuse']) throw new UsageError('--fuse and --no-fuse contradict each other');
  return values['no-fuse'] ? false : values.fuse ? true : undefined;
}

/** --prologue model|all|none: a fused plan's feature nodes computed once per token first (plan-choice.ts). */
export function prologueFlag(values: Values): PrologueRequest | undefined {
  if (str(values, 'prologue') === undefined) return undefined;
  if (values['no-fuse']) throw new UsageError('--prologue is for the fused plan; --no-fuse computes every feature in its own kernel');
  return choice(values, 'prologue', ['model', 'all', 'none'] as const, 'model');
}
