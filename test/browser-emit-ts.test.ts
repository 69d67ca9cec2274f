// The `linattn compile --emit ts` module of every shipped causal variant, run in headless Chromium on a device
// with WebGPU's default limits (what the module promises to need), against the float64 oracle computed in the
// same page by the playground's bundle of the compiler (/linattn.js: evaluateParallel of the variant as written).
//
// The module is compileToTs's output (what the CLI writes: test/emit-ts.test.ts checks the two are equal),
// transpiled to JavaScript by esbuild and imported from a blob: URL. Its schedule is the heuristic's pick among
// chunk-4 schedules: Chromium's CPU adapter, SwiftShader, takes minutes to create the pipeline of a chunk-32
// kernel (examples/playground/page/compile.ts, SWIFTSHADER_MAX_AUTO_CHUNK), and t = 11 then spans three chunks,
// the last one partial.
import { transform } from 'esbuild';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileToTs, WEBGPU_DEFAULT_LIMITS } from '../backends/ts/compile.ts';
import { candidateSchedules, defaultSchedule } from '../backends/wgsl/chunk-schedules.ts';
import { shippedVariants } from '../examples/playground/build.ts';
import { runPasses } from '../passes/pipeline.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { axisSizes } from '../src/inputs.ts';
import { isDecodable } from '../src/ir/types.ts';
import { launchChromium, type Chromium } from './helpers/chromium.ts';
import { startPlayground, type Playground } from './helpers/playground.ts';

const AXES = { h: 2, d: 4, e: 4 };
const [B, T] = [2, 11];
const CHUNK = 4;
const TOLERANCE = 1e-4;

const causal = shippedVariants()
  .map((v) => ({ ...v, program: runPasses(compileSource(v.text, v.path)) }))
  .filter((v) => isDecodable(v.program));

async function emittedJs(v: (typeof causal)[number]): Promise<string> {
  const sizes = axisSizes(v.program, AXES);
  const schedule = defaultSchedule(candidateSchedules(WEBGPU_DEFAULT_LIMITS, v.program, sizes).filter((s) => s.chunk === CHUNK), true);
  if (!schedule) throw new Error(`${v.path}: no chunk-${CHUNK} schedule fits WebGPU's default limits at ${JSON.stringify(sizes)}`);
  const { code } = compileToTs(v.program, { axes: AXES, schedule, source: v.text, file: v.path });
  return (await transform(code, { loader: 'ts', format: 'esm', target: 'es2022' })).code;
}

interface PageResult {
  readonly name: string;
  readonly length: number;
  readonly expected: number;
  readonly error: number;
  readonly again: number;
  readonly runMs: number;
}

/** In the page: import the module, run it on a default-limits device, compare with the page's oracle. */
function runInPage(page: Page, js: string, v: { text: string; path: string }, seed: number): Promise<PageResult> {
  return page.evaluate(
    async (js, text, path, axes, b, t, seed) => {
      type Module = {
        variant: { name: string; inputs: { name: string }[]; params: { name: string }[] };
        run: (device: GPUDevice, inputs: Record<string, Float32Array>, params: Record<string, Float32Array>, shape: { b: number; t: number }) => Promise<Float32Array>;
      };
      const g = globalThis as { defaultDevice?: GPUDevice; importModule?: (url: string) => Promise<unknown> };
      const L = (await g.importModule!(`${location.origin}/linattn.js`)) as typeof import('../src/runtime/browser.ts');
      const url = URL.createObjectURL(new Blob([js], { type: 'text/javascript' }));
      const mod = (await g.importModule!(url)) as Module;
      URL.revokeObjectURL(url);
      g.defaultDevice ??= await (await navigator.gpu.requestAdapter())!.requestDevice(); // no required limits: the spec's defaults
      const source = L.compileSource(text, path);
      const x = L.makeInputs(source, { b, t, axes, seed });
      const pick = (decls: { name: string }[]) => Object.fromEntries(decls.map((d) => [d.name, x[d.name].data as Float32Array]));
      const started = performance.now();
      const got = await mod.run(g.defaultDevice, pick(mod.variant.inputs), pick(mod.variant.params), { b, t });
      const runMs = performance.now() - started;
      const again = await mod.run(g.defaultDevice, pick(mod.variant.inputs), pick(mod.variant.params), { b, t });
      const want = L.evaluateParallel(source, x);
      return {
        name: mod.variant.name,
        length: got.length,
        expected: want.data.length,
        error: L.relativeError(got, want.data),
        again: L.relativeError(again, got),
        runMs,
      };
    },
    js,
    v.text,
    v.path,
    AXES,
    B,
    T,
    seed,
  );
}

let server: Playground | undefined;
let chromium: Chromium | undefined;
let page: Page;
const report: string[] = [];

beforeAll(async () => {
  server = await startPlayground();
  chromium = await launchChromium();
  page = await chromium.browser.newPage();
  await page.goto(`${server.url}variants.json`); // a page of the playground's origin: a secure context with WebGPU
  // The page's own dynamic import, defined from a string: an import() inside a function handed to page.evaluate
  // would be rewritten by vitest's module transform into a call that exists only in Node.
  await page.evaluate('globalThis.importModule = (url) => import(url)');
});

afterAll(async () => {
  if (report.length) console.log(`emitted modules in Chromium vs the page's float64 oracle (b ${B}, t ${T}, ${JSON.stringify(AXES)}, chunk ${CHUNK}):\n${report.join('\n')}`);
  await chromium?.close();
  server?.stop();
});

describe('the emitted TypeScript module in headless Chromium', () => {
  it('covers every shipped variant whose terms are all causal (read from the files, not the IR)', () => {
    const written = shippedVariants().filter((v) => !/^\s*term\s+\w+\s*:\s*noncausal\b/m.test(v.text));
    expect(causal.map((v) => v.path)).toEqual(written.map((v) => v.path));
    expect(causal.length).toBeGreaterThanOrEqual(16);
  });

  causal.forEach((v, n) => {
    it(`${v.path}: equals the page's float64 oracle within ${TOLERANCE} on a default-limits device`, async () => {
      const seed = 900 + n;
      const r = await runInPage(page, await emittedJs(v), v, seed);
      report.push(`${v.path.padEnd(36)} error ${r.error.toExponential(2)}  first run ${r.runMs.toFixed(0)} ms (pipelines included)`);
      expect(r.name).toBe(v.program.name);
      expect(r.length).toBe(r.expected);
      expect(r.error, `${v.path} seed ${seed}`).toBeLessThan(TOLERANCE);
      expect(r.again).toBe(0); // a second call reuses the device's cached pipelines
    });
  });
});
