// What the playground does on each edit: source text → checked IR → every pass → the plan of the chosen form at
// the chosen sizes → its WGSL. Timed end to end (the target: ≤ 50 ms for every shipped variant), and
// kept free of the DOM so that a failure is a value the page renders.
import {
  axisSizes, compileSource, defaultFitting, isDecodable, lowerChunked, naivePlan, PASSES, recurrentPlan, runPasses,
  SourceError, type Plan, type Program,
} from '../../../src/runtime/browser.ts';

/** The forms the page runs; `naive` is the only one a noncausal (leaky) variant reaches. */
export const FORMS = [
  { id: 'chunked', label: 'fused chunked' },
  { id: 'unfused', label: 'unfused chunked' },
  { id: 'recurrent', label: 'recurrent (decode form)' },
  { id: 'naive', label: 'naive quadratic' },
] as const;
export type FormId = (typeof FORMS)[number]['id'];

/** The chunked kernel's schedule must fit these; the spec's defaults until the page has a device. */
export interface Limits {
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
}
export const WEBGPU_SPEC_DEFAULTS: Limits = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 };

/**
 * Chromium's CPU adapter (SwiftShader) compiles the chunked kernel slowly past a chunk of 8 rows. Measured with
 * Chromium 156: the fused pipeline of elu.la at d = e = 4 took 0.13 s at chunk 8, 0.34 s at 16, and had not
 * finished after 3 minutes at 32 (with the output loop's constant bound `jj < 32u` made the runtime `jj < n`,
 * 0.7 s); at d = e = 16 and chunk 8, elu.la 0.2 s, flash.la 13 s. So on SwiftShader the automatic choice stays
 * at or below this; a chunk picked by hand is taken as given.
 */
export const SWIFTSHADER_MAX_AUTO_CHUNK = 8;

export interface Target {
  readonly form: FormId;
  /** Free axis sizes (h, d, e); the variant's `size` declarations fix the rest. */
  readonly axes: Readonly<Record<string, number>>;
  readonly limits: Limits;
  /** A software adapter prefers small chunks (defaultSchedule's second argument). */
  readonly software: boolean;
  /** The chunk (rows per step of the chunked forms): 'auto' for the heuristic's choice. */
  readonly chunk: number | 'auto';
  /** An upper bound on the automatic chunk (SWIFTSHADER_MAX_AUTO_CHUNK on SwiftShader). */
  readonly maxAutoChunk?: number;
}

/** The chunked forms' schedule: the heuristic's pick among those that fit the limits (and the chunk asked for). */
function scheduleFor(program: Program, sizes: Readonly<Record<string, number>>, target: Target) {
  // the heuristic's pick among the schedules that fit, sized lazily (defaultFitting): this runs on every keystroke
  const pick = (accept?: (s: { chunk: number }) => boolean) => defaultFitting(target.limits, program, sizes, target.software, accept);
  const asked = target.chunk;
  const schedule = asked === 'auto' ? (pick((s) => s.chunk <= (target.maxAutoChunk ?? Infinity)) ?? pick()) : pick((s) => s.chunk === asked);
  if (!schedule) {
    const chunk = asked === 'auto' ? 'any chunk' : `chunk ${asked}`;
    throw new Error(`${program.name}: no schedule with ${chunk} fits ${target.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory at these sizes (or the chunk does not suit its groups); try another chunk or smaller feature axes`);
  }
  return schedule;
}

export interface Compiled {
  /** The program as written: what the float64 oracle evaluates. */
  readonly source: Program;
  /** After every pass: what the chunked and recurrent forms lower. */
  readonly program: Program;
  /** The IR as written, then after each pass, in order. */
  readonly stages: readonly { readonly name: string; readonly program: Program }[];
  readonly sizes: Readonly<Record<string, number>>;
  /** The chosen form's plan, or why the form refuses this variant (the backend's own words). */
  readonly plan: Plan | Error;
}

export type EditResult =
  | { readonly ok: true; readonly compiled: Compiled; readonly ms: number }
  | { readonly ok: false; readonly error: Error; readonly ms: number };

export function planOf(source: Program, program: Program, sizes: Readonly<Record<string, number>>, target: Target): Plan {
  switch (target.form) {
    case 'naive':
      return naivePlan(source, sizes);
    case 'recurrent':
      return recurrentPlan(program, sizes);
    case 'chunked':
    case 'unfused':
      if (!isDecodable(program)) {
        // As `linattn run` does: the backend can run a noncausal window beside chunked causal items (training and
        // eval use that), but a form the page offers for prefill must not read later positions.
        const leaky = program.terms.filter((t) => t.noncausal).map((t) => t.name);
        throw new Error(`term ${leaky.join(', ')} is noncausal (reads positions after i): parallel form only here, as in linattn run (training and eval add its window to chunked causal items)`);
      }
      return lowerChunked(program, sizes, { fuse: target.form === 'chunked', schedule: scheduleFor(program, sizes, target) });
  }
}

/** One edit's compile. Never throws: a SourceError (with its span) or any other error comes back as a value. */
export function compileEdit(text: string, file: string, target: Target): EditResult {
  const started = performance.now();
  try {
    const source = compileSource(text, file);
    const stages = [{ name: 'as written', program: source }];
    const program = runPasses(source, (name, p) => stages.push({ name, program: p }));
    const sizes = axisSizes(program, target.axes);
    let plan: Plan | Error;
    try {
      plan = planOf(source, program, sizes, target); // the kernels' WGSL is generated here
    } catch (e) {
      plan = e instanceof Error ? e : new Error(String(e));
    }
    return { ok: true, compiled: { source, program, stages, sizes, plan }, ms: performance.now() - started };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e : new Error(String(e)), ms: performance.now() - started };
  }
}

/** The pass names the IR view offers, in pipeline order. */
export const STAGE_NAMES = ['as written', ...PASSES.map((p) => p.name)];

/** Which forms run a program, in the CLI's words (`linattn check`). */
export function formsSummary(program: Program): string {
  if (isDecodable(program)) return 'fused chunked, unfused chunked, recurrent (decode), naive quadratic, tree (speculative verification)';
  const leaky = program.terms.filter((t) => t.noncausal).map((t) => t.name);
  return `naive quadratic only: term ${leaky.join(', ')} is noncausal (reads positions after i), so the chunked forms, decoding and speculative verification refuse it`;
}

export function isSourceError(e: Error): e is SourceError {
  return e instanceof SourceError;
}
