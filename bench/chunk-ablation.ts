// Where a fused chunk kernel's time goes, phase by phase: the kernel as generated, then copies of it with one phase's
// inner loop deleted from the WGSL text, each timed on the same inputs, rounds alternating. A copy computes nonsense;
// only its time is read: the drop against the whole kernel is what that phase's loop costs (the barriers between
// phases stay, so the phases' costs need not add up to the whole). This is a diagnostic for deciding what to speed
// up, not a check: every ablation names the generated line it looks for and the bench stops when one is missing, so
// a change in the generator shows up here instead of timing the wrong kernel.
//
//   npx tsx bench/chunk-ablation.ts [--variant elu_dwconv] [--b 4] [--h 16] [--t 4096] [--d 64]
//                                   [--schedule 32x32x512[v4][ht][so]] [--rounds 3] [--iters 20] [--out DIR]
//
// The phases (the prefix term's φ·ψ scores, its φ·z denominators, the row denominators' and z's serial sums, the
// convolution's taps, A·V, φ·S_prev, the state update) are found by the comments and statements the generator
// writes for them (backends/wgsl/chunked/*.ts); a variant without one reports it absent.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Plan } from '../backends/wgsl/plan.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, timePlan } from '../src/runtime/compiler.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { parseSchedule, scheduleSwitches, switchOptions } from './schedules.ts';
import { VARIANT_FILES_FOR_BENCH } from './report.ts';

/** A phase: a marker (a comment or a statement the generator writes) and which loop of it to delete. */
interface Ablation {
  readonly name: string;
  readonly marker: string;
  /**
   * 'enclosing': the innermost `for` holding the marker (or the marker's own line when it is a one-line loop); 'next':
   * the first `for` after it; 'block': the innermost block holding it (unrolled code, no loop of its own).
   */
  readonly loop: 'enclosing' | 'next' | 'block';
}

const ABLATIONS: readonly Ablation[] = [
  { name: 'scores φ·ψ', marker: '(prefix): φ_i·ψ_j over the tile', loop: 'next' },
  { name: 'denominators φ·z', marker: '// φ·z for ', loop: 'enclosing' },
  { name: 'row denominators (serial)', marker: 'den1 = den1 + denp1', loop: 'enclosing' },
  { name: 'z update (serial)', marker: 'acc = acc + psi0', loop: 'enclosing' },
  { name: 'convolution taps', marker: '// direct taps of ', loop: 'enclosing' },
  { name: 'convolution taps (hoisted)', marker: '// hoisted taps of ', loop: 'block' },
  { name: 'A·V', marker: 'let vv = vs[(jj + ', loop: 'enclosing' },
  { name: 'φ·S_prev', marker: '// φ·S_prev for ', loop: 'enclosing' },
  { name: 'state update', marker: 'S0 ← decay', loop: 'next' },
];

const indent = (line: string) => line.length - line.trimStart().length;
const isFor = (line: string) => /^\s*for \(/.test(line);

/** The code with every loop `a` names deleted, and how many it deleted (0: the marker is not in the code). */
export function ablate(code: string, a: Ablation): { code: string; loops: number } {
  const lines = code.split('\n');
  const drop = new Set<number>();
  lines.forEach((line, i) => {
    if (!line.includes(a.marker)) return;
    let start = -1;
    if (a.loop === 'next') {
      for (let j = i + 1; j < lines.length && start < 0; j++) if (isFor(lines[j])) start = j;
    } else if (a.loop === 'block') {
      for (let j = i - 1; j >= 0 && start < 0; j--) if (lines[j].trimEnd().endsWith('{') && indent(lines[j]) < indent(line)) start = j;
    } else if (isFor(line)) start = i;
    else for (let j = i - 1; j >= 0 && start < 0; j--) if (isFor(lines[j]) && indent(lines[j]) < indent(line)) start = j;
    if (start < 0) throw new Error(`ablation '${a.name}': no ${a.loop === 'block' ? 'block' : 'loop'} ${a.loop === 'next' ? 'after' : 'around'} line ${i + 1}: ${line.trim()}`);
    // The loop runs to the line where its braces balance.
    let depth = 0;
    for (let j = start; j < lines.length; j++) {
      for (const ch of lines[j]) depth += ch === '{' ? 1 : ch === '}' ? -1 : 0;
      drop.add(j);
      if (depth === 0) break;
    }
  });
  const starts = [...drop].filter((i) => !drop.has(i - 1)).length;
  return { code: lines.filter((_, i) => !drop.has(i)).join('\n'), loops: starts };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      variant: { type: 'string', default: 'elu_dwconv' },
      b: { type: 'string', default: '4' },
      h: { type: 'string', default: '16' },
      t: { type: 'string', default: '4096' },
      d: { type: 'string', default: '64' },
      schedule: { type: 'string', default: '32x32x512' },
      rounds: { type: 'string', default: '3' },
      iters: { type: 'string', default: '20' },
      out: { type: 'string' },
    },
  });
  const gpu = await getDevice();
  const file = VARIANT_FILES_FOR_BENCH.find((f) => f.includes(`/${values.variant}.la`)) ?? values.variant!;
  const c = compileFile(file);
  const [B, H, T, D] = [values.b, values.h, values.t, values.d].map(Number);
  const axes: Record<string, number> = {};
  for (const [name, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[name] = name === 'h' ? H : D;
  const sizes = axisSizes(c.source, axes);
  // trailing v4, ht, fx, ov, so or np as bench/kernels.ts --schedules reads them: φ and z as vec4, tap weights hoisted, both off,
  // the outputs beside the state update on or off, prefetching off
  const switches = scheduleSwitches(values.schedule!);
  const schedule = parseSchedule(switches.schedule);
  if (schedule === 'default') throw new Error('--schedule: give one (CxRxT[sG][v4][ht][fx][ov][so][np])');
  const base = lowerChunked(c.program, sizes, { fuse: true, schedule, ...switchOptions(switches), ...(switches.np && { prefetch: false }) });
  const chunk = base.kernels.findIndex((k) => /\.chunked$/.test(k.label));
  if (chunk < 0) throw new Error(`${c.source.name}: no chunk kernel in the plan (${base.kernels.map((k) => k.label).join(', ')})`);
  const forms: { name: string; loops: number; plan: Plan; ms: number[] }[] = [{ name: 'whole kernel', loops: 0, plan: base, ms: [] }];
  for (const a of ABLATIONS) {
    const { code, loops } = ablate(base.kernels[chunk].code, a);
    if (loops === 0) {
      console.log(`${a.name}: not in this kernel`);
      continue;
    }
    forms.push({ name: a.name, loops, plan: { ...base, kernels: base.kernels.map((k, i) => (i === chunk ? { ...k, code } : k)) }, ms: [] });
  }
  const x = makeInputs(c.source, { b: B, t: T, axes, seed: 1 });
  // One untimed pass over every form first: the clocks rise and the pipelines compile.
  for (const f of forms) await timePlan(gpu, f.plan, x, B, T, 3);
  for (let r = 0; r < Number(values.rounds); r++) for (const f of forms) f.ms.push((await timePlan(gpu, f.plan, x, B, T, Number(values.iters))).ms);
  const whole = median(forms[0].ms);
  console.log(`${gpu.adapterName}: ${c.source.name} B ${B} H ${H} T ${T} D ${D}, ${values.schedule}, ${base.kernels.length} launch(es); the chunk kernel's phases, each loop deleted in turn (median of ${values.rounds} rounds)`);
  for (const f of forms) {
    const ms = median(f.ms);
    const drop = f === forms[0] ? '' : `  −${(whole - ms).toFixed(3)} ms (${(((whole - ms) / whole) * 100).toFixed(0)} %)`;
    console.log(`  ${f.name.padEnd(28)} ${ms.toFixed(3)} ms${f.loops ? ` (${f.loops} loop${f.loops > 1 ? 's' : ''} deleted)` : ''}${drop}   rounds ${f.ms.map((m) => m.toFixed(3)).join(' ')}`);
  }
  const out = values.out ?? process.env.OUT;
  if (out) writeFileSync(join(out, 'chunk-ablation.json'), JSON.stringify({ adapter: gpu.adapterName, variant: c.source.name, b: B, h: H, t: T, d: D, schedule: values.schedule, forms: forms.map((f) => ({ name: f.name, loops: f.loops, ms: f.ms, medianMs: median(f.ms) })) }, null, 1));
}

await main();
