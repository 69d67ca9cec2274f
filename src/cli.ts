// The `linattn` command line: parses arguments and calls the library. Errors print as file:line:col with the
// source line and a caret (DSL) or name the file and tensor (data); exit code 2 for usage, 1 for failures.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { compileFile, planFor, runCompiled, timePlan, type Compiled, type Form } from './runtime/compiler.ts';
import { formatDiagnostic } from './frontend/diagnostics.ts';
import { axisSizes, makeInputs } from './inputs.ts';
import { readSafetensors, writeSafetensors } from './io/safetensors.ts';
import { printProgram, printTerm } from './ir/print.ts';
import { SourceError } from './ir/span.ts';
import { isDecodable } from './ir/types.ts';
import { PASSES } from '../passes/pipeline.ts';
import { getDevice } from './runtime/dawn.ts';
import { compiledAttentionFactory } from './runtime/compiled-attention.ts';
import { generateCommand, initModelCommand } from './model/commands.ts';
import type { Tensor } from './tensor.ts';

class UsageError extends Error {}

const USAGE = `linattn — a compiler and runtime for causal linear attention

  linattn check FILE.la…                         parse, check and classify every term; say which forms run it
  linattn ir FILE.la [--print-after=PASS|all]    print the IR (after the parser, or after a pass)
  linattn compile FILE.la --emit wgsl|ts [--out PATH] [--axis h=4 …] [--form chunked|parallel] [--no-fuse] [--verbose]
  linattn inputs FILE.la --b B --t T [--axis NAME=SIZE …] [--seed S] --out FILE.safetensors
  linattn run FILE.la --inputs IN.safetensors --out OUT.safetensors [--device gpu|cpu]
                      [--form parallel|recurrent|chunked] [--no-fuse] [--autotune] [--time] [--verbose]
  linattn init-model --config CONFIG.json --out DIR [--seed N]
  linattn generate --model DIR --prompt "…" [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device gpu|cpu]
                   [--speculate ngram|medusa|oracle|draft:DIR [--tree SPEC] [--max-nodes N]]   (docs/speculative.md)

Common: --size NAME=N overrides a variant's \`size\` declaration. Passes: ${PASSES.map((p) => p.name).join(', ')}.`;

function pairs(list: readonly string[] | undefined, what: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of list ?? []) {
    const m = /^([A-Za-z_]\w*)=(\d+)$/.exec(s);
    if (!m) throw new UsageError(`--${what} takes NAME=SIZE, got '${s}'`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

function int(v: string | undefined, name: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}

const FORMS: readonly Form[] = ['parallel', 'recurrent', 'chunked'];

function formsOf(c: Compiled): string {
  if (isDecodable(c.program)) return 'parallel, chunked, recurrent, tree (speculative verification)';
  const leaky = c.program.terms.filter((t) => t.noncausal).map((t) => t.name);
  return `parallel only: term ${leaky.join(', ')} is noncausal (reads positions after i), so decoding, chunked prefill and speculative verification refuse it`;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 2;
  }
  if (cmd === 'init-model') return initModelCommand(rest);
  if (cmd === 'generate') {
    return generateCommand(rest, { prepareAttention: ({ gpu, config, program }) => compiledAttentionFactory(gpu, program, config.numHeads, config.headDim) });
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      'print-after': { type: 'string' },
      emit: { type: 'string' },
      out: { type: 'string' },
      inputs: { type: 'string' },
      device: { type: 'string', default: 'gpu' },
      form: { type: 'string', default: 'chunked' },
      'no-fuse': { type: 'boolean', default: false },
      autotune: { type: 'boolean', default: false },
      time: { type: 'boolean', default: false },
      verbose: { type: 'boolean', short: 'v', default: false },
      axis: { type: 'string', multiple: true },
      size: { type: 'string', multiple: true },
      b: { type: 'string' },
      t: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
    },
  });
  const sizes = pairs(values.size, 'size');
  const log = (s: string) => process.stderr.write(s + '\n');
  const file = () => {
    if (positionals.length !== 1) throw new UsageError(`linattn ${cmd} takes one variant file`);
    return positionals[0];
  };
  switch (cmd) {
    case 'check': {
      if (!positionals.length) throw new UsageError('linattn check takes one or more variant files');
      let bad = 0;
      for (const f of positionals) {
        try {
          const c = compileFile(f, { sizes });
          process.stdout.write(`${f}: ok — ${c.program.terms.map((t) => `${t.name}: ${t.form.kind}`).join(', ')}; forms: ${formsOf(c)}\n`);
          if (values.verbose) for (const t of c.program.terms) process.stdout.write(`  ${printTerm(t)}\n`);
        } catch (e) {
          bad++;
          report(e);
        }
      }
      return bad ? 1 : 0;
    }
    case 'ir': {
      const after = values['print-after'];
      if (after && after !== 'all' && !PASSES.some((p) => p.name === after)) {
        throw new UsageError(`--print-after: unknown pass '${after}' (passes: ${PASSES.map((p) => p.name).join(', ')}, or all)`);
      }
      const c = compileFile(file(), {
        sizes,
        onPass: (name, p) => {
          if (after === 'all' || after === name) process.stdout.write(`// ---- after ${name}\n${printProgram(p)}`);
        },
      });
      if (!after) process.stdout.write(printProgram(c.source));
      return 0;
    }
    case 'inputs': {
      const c = compileFile(file(), { sizes });
      const out = values.out ?? (() => { throw new UsageError('--out FILE.safetensors is required'); })();
      const tensors = makeInputs(c.source, { b: int(values.b, 'b', 1), t: int(values.t, 't', 64), axes: pairs(values.axis, 'axis'), seed: int(values.seed, 'seed', 0) });
      writeSafetensors(out, tensors, { variant: c.source.name });
      process.stdout.write(`wrote ${out}: ${Object.entries(tensors).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ')}\n`);
      return 0;
    }
    case 'compile': {
      const f = file();
      const c = compileFile(f, { sizes });
      const emit = values.emit ?? 'wgsl';
      const requested = pairs(values.axis, 'axis');
      const form = values.form as Form;
      if (form !== 'chunked' && form !== 'parallel') throw new UsageError(`compile: --form takes chunked or parallel (the naive quadratic plan), got '${values.form}'`);
      if (emit === 'wgsl') {
        // WGSL for the adapter at hand: the schedule fits this device's limits.
        const axes = axisSizes(c.source, requested);
        const gpu = await getDevice({ backend: values.backend });
        const plan = planFor(gpu, c, axes, { form, fuse: !values['no-fuse'] });
        if (values.verbose) log(`plan ${plan.form}: ${plan.kernels.length} kernel(s); schedule ${JSON.stringify(plan.schedule)} (within ${gpu.adapterName}'s limits); axes ${JSON.stringify(axes)}`);
        const dir = values.out ?? `out/${c.source.name}`;
        mkdirSync(dir, { recursive: true });
        for (const k of plan.kernels) writeFileSync(join(dir, `${k.label}.wgsl`), k.code);
        process.stdout.write(`wrote ${plan.kernels.length} kernel(s) to ${dir}/: ${plan.kernels.map((k) => `${k.label}.wgsl`).join(', ')}\n`);
        return 0;
      }
      if (emit === 'ts') {
        // A module for whatever device its user has: no adapter is opened, the schedule fits WebGPU's default limits.
        const { compileToTs } = await import('../backends/ts/compile.ts');
        const tsForm = form === 'parallel' ? 'naive' : values['no-fuse'] ? 'unfused' : 'chunked';
        const { code, plan, scheduleChoice } = compileToTs(form === 'parallel' ? c.source : c.program, { axes: requested, form: tsForm, source: readFileSync(f, 'utf8'), file: f });
        if (values.verbose) log(`plan ${plan.form}: ${plan.kernels.length} kernel(s); ${scheduleChoice}; axes ${JSON.stringify(plan.sizes)}`);
        const out = values.out ?? `out/${c.source.name}.ts`;
        mkdirSync(join(out, '..'), { recursive: true });
        writeFileSync(out, code);
        process.stdout.write(`wrote ${out} (${code.split('\n').length} lines, ${plan.kernels.length} kernel(s))\n`);
        return 0;
      }
      throw new UsageError(`--emit takes wgsl or ts, got '${emit}'`);
    }
    case 'run': {
      const f = file();
      const form = values.form as Form;
      if (!FORMS.includes(form)) throw new UsageError(`--form takes ${FORMS.join(', ')}, got '${values.form}'`);
      const device = values.device;
      if (device !== 'gpu' && device !== 'cpu') throw new UsageError(`--device takes gpu or cpu, got '${device}'`);
      const inPath = values.inputs ?? (() => { throw new UsageError('--inputs IN.safetensors is required'); })();
      const outPath = values.out ?? (() => { throw new UsageError('--out OUT.safetensors is required'); })();
      const c = compileFile(f, { sizes });
      if (form !== 'parallel' && !isDecodable(c.program)) {
        const t = c.program.terms.find((x) => x.noncausal)!;
        throw new Error(`${f}: term ${t.name} is noncausal (its mask reads positions after i, the leak of an unmasked convolution); ` + `only --form parallel can run it`);
      }
      const tensors = loadInputs(inPath, c);
      const gpu = device === 'gpu' ? await getDevice({ backend: values.backend }) : undefined;
      if (gpu && values.verbose) log(`device: ${gpu.adapterName}`);
      const t0 = performance.now();
      const r = await runCompiled(c, tensors, { device, form, fuse: !values['no-fuse'], gpu, autotune: values.autotune, log: values.verbose ? log : undefined });
      const wall = performance.now() - t0;
      writeSafetensors(outPath, { o: r.o }, { variant: c.source.name, device, form });
      let timing = `${wall.toFixed(1)} ms wall`;
      if (values.time && gpu && r.plan) {
        const s = r.o.shape;
        const tm = await timePlan(gpu, r.plan, tensors, s[0], s[1]);
        timing += `, ${tm.ms.toFixed(3)} ms GPU (median of 20, ${tm.method})`;
      }
      const split = r.slices && r.slices > 1 ? `, ${r.slices} batch slices to fit the device's limits` : '';
      process.stdout.write(`wrote ${outPath}: o [${r.o.shape.join(', ')}] (${device}, ${form}${form === 'chunked' && device === 'gpu' ? (values['no-fuse'] ? ', unfused' : ', fused') : ''}${split}; ${timing})\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${cmd}'\n\n${USAGE}`);
  }
}

/** Reads a safetensors file and checks it holds exactly the tensors the variant declares. */
function loadInputs(path: string, c: Compiled): Record<string, Tensor> {
  if (!existsSync(path)) throw new Error(`${path}: no such file (make one with: linattn inputs ${c.source.file} --b 1 --t 64 --out ${basename(path)})`);
  const map = readSafetensors(path);
  const out: Record<string, Tensor> = {};
  for (const d of [...c.source.inputs, ...c.source.params]) {
    const t = map.get(d.name);
    const isInput = c.source.inputs.includes(d);
    const shape = `[${[...(isInput ? ['b', 't'] : []), ...d.axes].join(', ')}]`;
    if (!t) throw new Error(`${path}: missing tensor '${d.name}' (${isInput ? 'input' : 'parameter'} ${shape}); it holds ${[...map.keys()].join(', ') || 'nothing'}`);
    if (t.dtype !== 'F32') throw new Error(`${path}: tensor '${d.name}' is ${t.dtype}; linattn run takes float32 (F32) ${isInput ? 'inputs' : 'parameters'} (convert it, or make inputs with linattn inputs)`);
    out[d.name] = { shape: t.shape, data: t.data };
  }
  return out;
}

function report(e: unknown): void {
  if (e instanceof SourceError && e.span) {
    let source = '';
    try {
      source = readFileSync(e.span.file, 'utf8');
    } catch {
      /* the message still names the place */
    }
    process.stderr.write(formatDiagnostic(e, source) + '\n');
  } else if (e instanceof UsageError) {
    process.stderr.write(`linattn: ${e.message}\n(see linattn --help)\n`);
  } else {
    process.stderr.write(`linattn: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.env.LINATTN_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    report(e);
    process.exit(e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1);
  },
);
