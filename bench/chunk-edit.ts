// Trying a change to the fused chunk kernel by hand before building it into the generator: the kernel as generated
// at a schedule, beside copies of it edited by hand (WGSL files), each run on the same inputs and checked against the
// generated kernel's output (itself checked against float64 by the tests and by bench/kernels.ts), then timed with
// rounds alternating. An edited copy that disagrees is reported and not timed. This is a diagnostic: the point is to
// learn which change is worth generating, not to ship the edited text.
//
//   npx tsx bench/chunk-edit.ts --print > base.wgsl            the generated chunk kernel, to edit
//   npx tsx bench/chunk-edit.ts NAME=edited.wgsl …              check and time each against it
//                                                              (~NAME: an ablation, timed even though it disagrees)
//        [--variant elu_dwconv] [--b 4] [--h 16] [--t 4096] [--d 64] [--schedule 32x32x512] [--rounds 3] [--iters 20]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Plan } from '../backends/wgsl/plan.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, timePlan } from '../src/runtime/compiler.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { median } from '../src/runtime/timing.ts';
import { relativeError } from '../src/tensor.ts';
import { parseSchedule, scheduleSwitches, switchOptions } from './schedules.ts';
import { VARIANT_FILES_FOR_BENCH } from './report.ts';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      variant: { type: 'string', default: 'elu_dwconv' },
      b: { type: 'string', default: '4' },
      h: { type: 'string', default: '16' },
      t: { type: 'string', default: '4096' },
      d: { type: 'string', default: '64' },
      schedule: { type: 'string', default: '32x32x512' },
      rounds: { type: 'string', default: '3' },
      iters: { type: 'string', default: '20' },
      print: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const file = VARIANT_FILES_FOR_BENCH.find((f) => f.includes(`/${values.variant}.la`)) ?? values.variant!;
  const c = compileFile(file);
  const [B, H, T, D] = [values.b, values.h, values.t, values.d].map(Number);
  const axes: Record<string, number> = {};
  for (const [name, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[name] = name === 'h' ? H : D;
  const sizes = axisSizes(c.source, axes);
  const switches = scheduleSwitches(values.schedule!);
  const schedule = parseSchedule(switches.schedule);
  if (schedule === 'default') throw new Error('--schedule: give one (CxRxT[sG][v4][ht][fx][ov][so][rq][sq][np][rs])');
  // the device first: an `rs` schedule is generated for its subgroup size
  const gpu = await getDevice();
  const base = lowerChunked(c.program, sizes, { fuse: true, schedule, ...switchOptions(switches), ...(switches.np && { prefetch: false }), ...(switches.rs && { resident: true, subgroupSize: gpu.subgroupSize }) });
  const chunk = base.kernels.findIndex((k) => /\.chunked$/.test(k.label));
  if (chunk < 0) throw new Error(`${c.source.name}: no chunk kernel in the plan (${base.kernels.map((k) => k.label).join(', ')})`);
  if (values.print) {
    process.stdout.write(base.kernels[chunk].code);
    return;
  }
  const forms: { name: string; plan: Plan; ms: number[]; err?: number }[] = [{ name: 'generated', plan: base, ms: [] }];
  for (const p of positionals) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new Error(`'${p}': give NAME=FILE.wgsl`);
    const code = readFileSync(p.slice(eq + 1), 'utf8');
    forms.push({ name: p.slice(0, eq), plan: { ...base, kernels: base.kernels.map((k, i) => (i === chunk ? { ...k, code } : k)) }, ms: [] });
  }
  const x = makeInputs(c.source, { b: B, t: T, axes, seed: 1 });
  const want = await (await PlanRunner.create(gpu, base)).run(x, B, T);
  const timed = [forms[0]];
  for (const f of forms.slice(1)) {
    try {
      const got = await (await PlanRunner.create(gpu, f.plan)).run(x, B, T);
      f.err = relativeError(got.data, want.data);
    } catch (e) {
      console.log(`${f.name}: does not run: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    // A name starting with '~' is an ablation (a phase deleted): timed whatever it computes.
    if (!(f.err < 1e-5) && !f.name.startsWith('~')) console.log(`${f.name}: disagrees with the generated kernel (relative error ${f.err}); not timed`);
    else timed.push(f);
  }
  for (const f of timed) await timePlan(gpu, f.plan, x, B, T, 3);
  for (let r = 0; r < Number(values.rounds); r++) for (const f of timed) f.ms.push((await timePlan(gpu, f.plan, x, B, T, Number(values.iters))).ms);
  const whole = median(forms[0].ms);
  console.log(`${gpu.adapterName}: ${c.source.name} B ${B} H ${H} T ${T} D ${D}, ${values.schedule}: the generated chunk kernel beside hand-edited copies (median of ${values.rounds} rounds)`);
  for (const f of timed) {
    const ms = median(f.ms);
    console.log(`  ${f.name.padEnd(20)} ${ms.toFixed(3)} ms  ×${(ms / whole).toFixed(3)}${f.err === undefined ? '' : `  err ${f.err.toExponential(1)}`}   rounds ${f.ms.map((m) => m.toFixed(3)).join(' ')}`);
  }
  const out = values.out ?? process.env.OUT;
  if (out) writeFileSync(join(out, `chunk-edit-${c.source.name}-d${D}.json`), JSON.stringify({ adapter: gpu.adapterName, variant: c.source.name, b: B, h: H, t: T, d: D, schedule: values.schedule, forms: timed.map((f) => ({ name: f.name, err: f.err, ms: f.ms, medianMs: median(f.ms) })) }, null, 1));
}

await main();
