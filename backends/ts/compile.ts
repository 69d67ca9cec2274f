// `linattn compile VARIANT.la --emit ts`: a classified program → a plan at concrete sizes → a TypeScript module.
// The schedule defaults to what fits WebGPU's *default* limits (16 KiB of workgroup memory, 256 invocations),
// because the module runs on whatever device its user has, not on the adapter it was compiled beside.
import type { Program } from '../../src/ir/types.ts';
import { axisSizes } from '../../src/inputs.ts';
import { candidateSchedules, defaultSchedule, type ScheduleLimits } from '../wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../wgsl/chunked.ts';
import { lowerChunked } from '../wgsl/lower.ts';
import { naivePlan } from '../wgsl/naive.ts';
import type { Plan } from '../wgsl/plan.ts';
import { emitTypeScriptModule } from './emit.ts';

/** The limits every WebGPU device has at least (the spec's defaults). */
export const WEBGPU_DEFAULT_LIMITS = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 } as const;

export interface CompileToTsOptions {
  /** Sizes of free axes (h, d, e …); the ones not given take makeInputs' defaults (h = 2, d = e = m = 8). */
  readonly axes?: Readonly<Record<string, number>>;
  /** chunked (fused, the default), unfused (a kernel per term) or naive (quadratic, also for noncausal ablations). */
  readonly form?: 'chunked' | 'unfused' | 'naive';
  /** The chunk schedule; by default the heuristic's choice within `limits`. */
  readonly schedule?: ChunkSchedule;
  /** The limits the schedule must fit; WebGPU's defaults unless the module targets a known adapter. */
  readonly limits?: ScheduleLimits;
  /** The variant's .la source: its leading `#` comment becomes the module's documentation. */
  readonly source?: string;
  /** The variant's path, named in the module's header. */
  readonly file?: string;
}

export interface CompiledTs {
  readonly code: string;
  readonly plan: Plan;
  /** How the schedule was chosen, in one line (for `linattn compile --emit ts --verbose`). */
  readonly scheduleChoice: string;
}

/** `program` must have been through the passes (runPasses). */
export function compileToTs(program: Program, options: CompileToTsOptions = {}): CompiledTs {
  const sizes = axisSizes(program, options.axes ?? {});
  const form = options.form ?? 'chunked';
  let plan: Plan;
  let scheduleChoice: string;
  if (form === 'naive') {
    plan = naivePlan(program, sizes);
    scheduleChoice = 'naive form: no chunk schedule';
  } else {
    const limits = options.limits ?? WEBGPU_DEFAULT_LIMITS;
    const chosen = options.schedule ? { schedule: options.schedule, of: 0 } : chooseDefault(program, sizes, limits);
    plan = lowerChunked(program, sizes, { fuse: form === 'chunked', schedule: chosen.schedule });
    const s = chosen.schedule;
    const text = `schedule chunk ${s.chunk}, cols ${s.cols}, threads ${s.threads}`;
    const within = `${limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory, ${limits.maxComputeInvocationsPerWorkgroup} invocations per workgroup`;
    scheduleChoice = options.schedule
      ? `${text} (given)`
      : `${text}: the heuristic's pick of ${chosen.of} schedule${chosen.of === 1 ? '' : 's'} that fit ${options.limits ? 'the given limits' : "WebGPU's default limits"} (${within})`;
  }
  const doc = options.source === undefined ? undefined : leadingComment(options.source);
  return { code: emitTypeScriptModule(plan, program, { doc, file: options.file }), plan, scheduleChoice };
}

function chooseDefault(p: Program, sizes: Readonly<Record<string, number>>, limits: NonNullable<CompileToTsOptions['limits']>): { schedule: ChunkSchedule; of: number } {
  const candidates = candidateSchedules(limits, p, sizes);
  const s = defaultSchedule(candidates);
  if (!s) {
    throw new Error(
      `${p.name}: no chunk schedule fits ${limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory at ${JSON.stringify(sizes)}; ` +
        'emit the unfused or naive form, use smaller feature axes, or give the limits of the adapter the module targets',
    );
  }
  return { schedule: s, of: candidates.length };
}

/** The `#` comment lines that open a .la file, without the markers. */
export function leadingComment(source: string): string {
  const lines: string[] = [];
  for (const line of source.split('\n')) {
    const m = /^\s*#\s?(.*)$/.exec(line);
    if (!m) break;
    lines.push(m[1].trimEnd());
  }
  return lines.join('\n').trim();
}
