// The emitted TypeScript module (backends/ts): it type-checks under strict options against @webgpu/types with
// zero diagnostics, imports nothing and names no WebGPU global, and, imported and run on Dawn, equals the
// float64 parallel form.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { compileToTs, leadingComment, WEBGPU_DEFAULT_LIMITS } from '../backends/ts/compile.ts';
import { emitTypeScriptModule } from '../backends/ts/emit.ts';
import { sharedFloats } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { runPasses } from '../passes/pipeline.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { makeInputs } from '../src/inputs.ts';
import type { Program } from '../src/ir/types.ts';
import { relativeError, toFloat64 } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const ELU_DWCONV = `# elu+1 linear attention with a masked depthwise convolution on V.
# o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + 1e-6) + Σ_l w[h, :, l] ⊙ v_{t−l}
variant elu_dwconv
size K = 4
input q[h, d], k[h, d], v[h, e]
param w[h, e, K]
let fq = elu(q) + 1
let fk = elu(k) + 1
term lin  : causal    score dot(fq[i], fk[j], d) value v
term conv : window(K) score w[K = lag]           value v
output normalize(lin, 1e-6) + conv`;

const LLAMA = `# Linearised LLaMA: a local group term, a global past_groups term and the masked convolution.
variant llama_linearized
size C = 4
size K = 3
input q[h, d], k[h, d], v[h, e]
param w[h, K]
let qn = q / norm(q, d)
let kn = k / norm(k, d)
term local  : group(C)       score relu(dot(qn[i], kn[j], d)) ** 2 value v
term global : past_groups(C) score dot(qn[i], kn[j], d)            value v
term conv   : window(K)      score w[K = lag]                       value v
output local + global + conv`;

const GLA = `# Gated linear attention with a per-feature gate.
variant gla
input q[h, d], k[h, d], v[h, e], a[h, d]
term gla : causal score sum(q[i] * decay(a) * k[j], d) value v
output gla`;

const AXES = { h: 2, d: 4, e: 4 };

interface Case {
  readonly title: string;
  readonly source: string;
  readonly form: 'chunked' | 'unfused';
}

const CASES: readonly Case[] = [
  { title: 'elu+1 with DWConv, fused chunked plan', source: ELU_DWCONV, form: 'chunked' },
  { title: 'linearised LLaMA (group, past_groups, conv), fused chunked plan', source: LLAMA, form: 'chunked' },
  { title: 'GLA, unfused plan (feature kernels, per-term kernels, combine)', source: GLA, form: 'unfused' },
];

const dir = mkdtempSync(join(tmpdir(), 'linattn-emit-ts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function compile(c: Case): { program: Program; code: string } {
  const program = runPasses(compileSource(c.source, `${c.title}.la`));
  const schedule = { chunk: 4, cols: 2, threads: 32 };
  const { code } = compileToTs(program, { axes: AXES, form: c.form, schedule, source: c.source, file: `${program.name}.la` });
  return { program, code };
}

/** Type-checks one file; returns the diagnostics as `file:line:col message`. */
function typeCheck(file: string, lib: string[], skipLibCheck: boolean, onlyThisFile: boolean): string[] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib,
    types: ['@webgpu/types'], // no @types/node: the module must not need Node
    skipLibCheck,
    noUnusedLocals: true,
    noUnusedParameters: true,
    noImplicitReturns: true,
    noImplicitOverride: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    noPropertyAccessFromIndexSignature: true,
  };
  const program = ts.createProgram([file], options);
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => !onlyThisFile || d.file?.fileName === file)
    .map((d) => {
      const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
      return `${d.file?.fileName ?? '?'}:${where ? `${where.line + 1}:${where.character + 1}` : ''} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
}

/** Imports, require calls and WebGPU/Node globals that a module for any WebGPU host must not use. */
function hostDependencies(code: string): string[] {
  const sf = ts.createSourceFile('module.ts', code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const banned = new Set(['GPUBufferUsage', 'GPUMapMode', 'GPUShaderStage', 'navigator', 'process', 'require', 'globalThis', 'window', 'Buffer']);
  const found: string[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isImportDeclaration(n) || ts.isImportEqualsDeclaration(n) || ts.isExportDeclaration(n)) found.push(n.getText(sf));
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) found.push(n.getText(sf));
    if (ts.isIdentifier(n) && banned.has(n.text) && !ts.isPropertyAccessExpression(n.parent)) found.push(n.text);
    if (ts.isIdentifier(n) && banned.has(n.text) && ts.isPropertyAccessExpression(n.parent) && n.parent.expression === n) found.push(n.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

describe('emitted TypeScript module', () => {
  CASES.forEach((c, n) => {
    describe(c.title, () => {
      const { program, code } = compile(c);
      const file = join(dir, `${program.name}-${c.form}.ts`);
      writeFileSync(file, code);

      it('type-checks with zero diagnostics under strict options, with the DOM lib (a browser) and without it', () => {
        expect(typeCheck(file, ['lib.es2022.d.ts', 'lib.dom.d.ts'], false, false)).toEqual([]);
        expect(typeCheck(file, ['lib.es2022.d.ts'], true, true)).toEqual([]);
      });

      it('imports nothing and reads no WebGPU or Node global (flags are numbers)', () => {
        expect(hostDependencies(code)).toEqual([]);
      });

      it("exports run typed by the variant's tensors, and the variant's metadata", async () => {
        expect(code).toMatch(/export async function run\(device: GPUDevice, inputs: Inputs, _?params: Params, shape: Shape\): Promise<Float32Array>/);
        for (const d of program.inputs) expect(code).toMatch(new RegExp(`readonly ${d.name}: Float32Array;`));
        expect(code).toContain(leadingComment(c.source).split('\n')[0]);
        const mod = (await import(pathToFileURL(file).href)) as { variant: { name: string; inputs: { name: string; axes: string[] }[]; params: unknown[]; outAxes: string[]; sizes: Record<string, number> } };
        expect(mod.variant.name).toBe(program.name);
        expect(mod.variant.inputs.map((d) => d.name)).toEqual(program.inputs.map((d) => d.name));
        expect(mod.variant.inputs.map((d) => d.axes)).toEqual(program.inputs.map((d) => [...d.axes]));
        expect(mod.variant.params.length).toBe(program.params.length);
        expect(mod.variant.outAxes).toEqual([...program.outAxes]);
        expect(mod.variant.sizes).toMatchObject(AXES);
      });

      it('run on Dawn equals the float64 parallel form (b = 2, t = 11, a chunk of 4 that does not divide t)', async () => {
        const g = await gpu();
        const mod = (await import(pathToFileURL(file).href)) as {
          run: (device: GPUDevice, inputs: Record<string, Float32Array>, params: Record<string, Float32Array>, shape: { b: number; t: number }) => Promise<Float32Array>;
        };
        const seed = 700 + n;
        const [b, t] = [2, 11];
        const x = makeInputs(program, { b, t, axes: AXES, seed });
        const inputs = Object.fromEntries(program.inputs.map((d) => [d.name, x[d.name].data]));
        const params = Object.fromEntries(program.params.map((d) => [d.name, x[d.name].data]));
        const want = evaluateParallel(program, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, toFloat64(v)])));
        const got = await mod.run(g.device, inputs, params, { b, t });
        expect(got.length).toBe(want.data.length);
        expectRelClose(got, want.data, 1e-4, `${program.name} (${c.form}) seed ${seed}`);
        // A second call reuses the device's cached pipelines and must give the same result.
        const again = await mod.run(g.device, inputs, params, { b, t });
        expect(relativeError(again, got)).toBe(0);
        // A tensor of the wrong length is refused with its name and shape.
        const name = program.inputs[0].name;
        await expect(mod.run(g.device, { ...inputs, [name]: inputs[name].subarray(1) }, params, { b, t })).rejects.toThrow(new RegExp(`input ${name} \\[b, t,`));
      });
    });
  });
});

describe('compileToTs', () => {
  it("chooses a schedule that fits WebGPU's default workgroup memory, so the module runs on any device", () => {
    const program = runPasses(compileSource(ELU_DWCONV, 'elu_dwconv.la'));
    const { plan, code } = compileToTs(program, { source: ELU_DWCONV });
    const s = { chunk: plan.schedule.chunk, cols: plan.schedule.cols, threads: plan.schedule.threads };
    expect(sharedFloats(program, plan.sizes, program.terms, program.output, s) * 4).toBeLessThanOrEqual(WEBGPU_DEFAULT_LIMITS.maxComputeWorkgroupStorageSize);
    expect(s.threads).toBeLessThanOrEqual(WEBGPU_DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup);
    expect(code).toContain('elu+1 linear attention with a masked depthwise convolution on V.');
  });

  it('says how it chose the schedule', () => {
    const program = runPasses(compileSource(ELU_DWCONV, 'elu_dwconv.la'));
    const { plan, scheduleChoice } = compileToTs(program);
    const s = plan.schedule;
    expect(scheduleChoice).toMatch(new RegExp(`^schedule chunk ${s.chunk}, cols ${s.cols}, threads ${s.threads}: the heuristic's pick of \\d+ schedules that fit WebGPU's default limits \\(16384 bytes of workgroup memory, 256 invocations per workgroup\\)$`));
    expect(compileToTs(program, { schedule: { chunk: 4, cols: 2, threads: 32 } }).scheduleChoice).toBe('schedule chunk 4, cols 2, threads 32 (given)');
  });

  it('is what `linattn compile --emit ts` writes, and --verbose prints the schedule choice', () => {
    const out = join(dir, 'cli-elu_dwconv.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/linattn.ts', 'compile', 'examples/paper/elu_dwconv.la', '--emit', 'ts', '--axis', 'h=2', '--out', out, '--verbose'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^plan chunked: 1 kernel\(s\); schedule chunk \d+, cols \d+, threads \d+: the heuristic's pick of \d+ schedules that fit WebGPU's default limits/m);
    const program = runPasses(compileSource(readFileSync('examples/paper/elu_dwconv.la', 'utf8'), 'examples/paper/elu_dwconv.la'));
    const want = compileToTs(program, { axes: { h: 2 }, source: readFileSync('examples/paper/elu_dwconv.la', 'utf8'), file: 'examples/paper/elu_dwconv.la' });
    expect(readFileSync(out, 'utf8')).toBe(want.code);
  });

  it('takes the leading # comment of a .la file as the documentation', () => {
    expect(leadingComment('# one\n#   two\n#\nvariant x\n# not this')).toBe('one\n  two');
  });
});

describe('emitTypeScriptModule refuses what it cannot write out', () => {
  const program = runPasses(compileSource(ELU_DWCONV, 'elu_dwconv.la'));
  const sizes = { h: 2, d: 4, e: 4, K: 4 };
  const schedule = { chunk: 4, cols: 2, threads: 32 };

  it('a kernel without a launch formula', () => {
    const plan = lowerChunked(program, sizes, { fuse: true, schedule });
    const bare = { ...plan, kernels: plan.kernels.map(({ launch: _launch, ...k }) => k) };
    expect(() => emitTypeScriptModule(bare, program)).toThrow(/has no launch formula \(Kernel\.launch\)/);
  });

  it('a launch formula that disagrees with the kernel', () => {
    const plan = lowerChunked(program, sizes, { fuse: true, schedule });
    const wrong = { ...plan, kernels: plan.kernels.map((k) => ({ ...k, launch: { kind: 'fixed' as const, x: 999, perBatchY: true as const } })) };
    expect(() => emitTypeScriptModule(wrong, program)).toThrow(/launch .* gives \[999,1,1\] at b=1, t=1, but the kernel dispatches/);
  });

  it('a plan lowered from another program', () => {
    const plan = lowerChunked(program, sizes, { fuse: true, schedule });
    expect(() => emitTypeScriptModule({ ...plan, variant: 'other' }, program)).toThrow(/was not lowered from elu_dwconv/);
  });
});
