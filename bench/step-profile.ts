// A step's GPU time kernel by kernel (src/runtime/dispatch-profile.ts's per-dispatch times summed by kernel) beside
// the weight bytes each of its matmuls reads, and the table that sets steps side by side. bench/speculative.ts
// and bench/hf_decode.ts print it: the column against the decode step says where a tree step's extra time goes.
import type { StepPlan } from '../src/model/gpu-step-plan.ts';
import type { MatmulPlan } from '../src/runtime/matmul.ts';
import { summarizeDispatches, type DispatchTime, type LeftOut } from '../src/runtime/dispatch-profile.ts';

/** One matmul of a step: its shape and the bytes of weight it reads (all layers). */
export interface MatmulRead {
  readonly matmul: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** Dispatches of this plan per step (layers, or 1 for the LM head's parts). */
  readonly count: number;
  readonly bytes: number;
}

/** One step's dispatches summed by kernel, with its matmuls' weight traffic. */
export interface StepProfile {
  readonly step: string;
  readonly rows: number;
  readonly dispatches: number;
  /** Sum of the per-dispatch times (each in its own pass: a little above the step's own time). */
  readonly gpuMs: number;
  readonly kernels: readonly { readonly kernel: string; readonly dispatches: number; readonly ms: number }[];
  /** Bytes of weights the step's matmuls read from memory, counting a weight once per workgroup row reading it. */
  readonly weightBytes: number | undefined;
  readonly matmuls?: readonly MatmulRead[];
  /** The step's time with every dispatch in one pass, steps back to back (dispatch-profile.ts timeStepStream). */
  readonly streamMs?: number;
  /** What each kernel's dispatches add to the step back to back (dispatch-profile.ts timeLeavingOut), most first. */
  readonly leaveOut?: { readonly fullMs: number; readonly rows: readonly LeftOut[] };
}

export interface StepMatmuls {
  readonly qkv: MatmulPlan;
  readonly o: MatmulPlan;
  readonly gateUp: MatmulPlan;
  readonly down: MatmulPlan;
  readonly lm: { readonly plans: readonly MatmulPlan[] };
}

/**
 * Weight bytes per matmul of a step of `layers` layers. A weight is read once per workgroup row that walks it
 * (grid y): the small-M kernel's row blocks share one, a rows kernel with several row blocks reads it again.
 */
export function matmulReads(m: StepMatmuls, layers: number): MatmulRead[] {
  const read = (p: MatmulPlan) => p.problem.N * p.problem.K * 4 * p.workgroups[1];
  const row = (matmul: string, p: MatmulPlan, count: number): MatmulRead => ({ matmul, M: p.problem.M, N: p.problem.N, K: p.problem.K, count, bytes: count * read(p) });
  return [
    row('q|k|v proj', m.qkv, layers), row('o proj', m.o, layers), row('gate|up proj', m.gateUp, layers), row('down proj', m.down, layers),
    ...m.lm.plans.map((p, i) => row(m.lm.plans.length > 1 ? `lm head part ${i}` : 'lm head', p, 1)),
  ];
}

/** A greedy tree step's matmuls: its LM head is the one with the argmax epilogue when the plan has it (no logits read). */
export function treeStepMatmuls(plan: StepPlan): StepMatmuls {
  return { ...plan.matmuls, lm: plan.argmaxHead?.plans ?? plan.matmuls.lm };
}

export function stepProfile(step: string, rows: number, times: readonly DispatchTime[], matmuls?: readonly MatmulRead[], weightBytes?: number): StepProfile {
  return {
    step, rows, dispatches: times.length, gpuMs: times.reduce((a, t) => a + t.ms, 0), kernels: summarizeDispatches(times),
    weightBytes: weightBytes ?? matmuls?.reduce((a, m) => a + m.bytes, 0),
    ...(matmuls && { matmuls }),
  };
}

/** Rows of a table: ms (dispatches) per kernel for each step, totals, the ratio to the first (the decode step), weights read. */
export function profileTable(profiles: readonly StepProfile[], column: (p: StepProfile) => string): string[][] {
  const kernels = [...new Set(profiles.flatMap((p) => p.kernels.map((k) => k.kernel)))];
  const cell = (p: StepProfile, k: string) => {
    const e = p.kernels.find((x) => x.kernel === k);
    return e ? `${e.ms.toFixed(3)} (${e.dispatches})` : '—';
  };
  const rows = [
    ['kernel', ...profiles.map(column)],
    ...kernels.map((k) => [k, ...profiles.map((p) => cell(p, k))]),
    ['total', ...profiles.map((p) => `${p.gpuMs.toFixed(3)} (${p.dispatches})`)],
    ['× decode', ...profiles.map((p) => `${(p.gpuMs / profiles[0].gpuMs).toFixed(2)}×`)],
    ...(profiles.some((p) => p.streamMs !== undefined)
      ? [
          ['one pass, back to back', ...profiles.map((p) => (p.streamMs === undefined ? '—' : p.streamMs.toFixed(3)))],
          ['× decode (back to back)', ...profiles.map((p) => (p.streamMs === undefined || profiles[0].streamMs === undefined ? '—' : `${(p.streamMs / profiles[0].streamMs).toFixed(2)}×`))],
        ]
      : []),
    ['weights read (MB)', ...profiles.map((p) => (p.weightBytes === undefined ? '—' : (p.weightBytes / 1e6).toFixed(1)))],
  ];
  const names = [...new Set(profiles.flatMap((p) => (p.matmuls ?? []).map((m) => m.matmul)))];
  for (const name of names) {
    rows.push([`  ${name} (MB)`, ...profiles.map((p) => {
      const m = p.matmuls?.find((x) => x.matmul === name);
      return m ? `${(m.bytes / 1e6).toFixed(1)} M${m.M}×N${m.N}×K${m.K}` : '—';
    })]);
  }
  return rows;
}

/** The table as text lines, columns aligned. */
export function formatTable(title: string, rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return [title, ...rows.map((row) => '  ' + row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '))];
}

/** Rows of a table: ms each kernel adds to each step run back to back (leaving its dispatches out), steps as columns. */
export function leaveOutTable(profiles: readonly StepProfile[], column: (p: StepProfile) => string): string[][] {
  const shown = profiles.filter((p) => p.leaveOut);
  const kernels = [...new Set(shown.flatMap((p) => p.leaveOut!.rows.map((r) => r.kernel)))];
  const cell = (p: StepProfile, k: string) => {
    const r = p.leaveOut!.rows.find((x) => x.kernel === k);
    return r ? `${r.addsMs.toFixed(3)} (${r.dispatches})` : '—';
  };
  return [
    ['kernel', ...shown.map(column)],
    ...kernels.map((k) => [k, ...shown.map((p) => cell(p, k))]),
    ['sum of the above', ...shown.map((p) => p.leaveOut!.rows.reduce((a, r) => a + r.addsMs, 0).toFixed(3))],
    ['the whole step', ...shown.map((p) => p.leaveOut!.fullMs.toFixed(3))],
  ];
}
