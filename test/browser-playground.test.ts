// The playground (examples/playground, `npm run playground`) driven in headless Chromium like a person would:
// load it, break a variant by typing, read the error with its line, column and caret, fix it, run the forms on the
// page's WebGPU and read their error against the float64 oracle the page computes. Also measures the compile
// each edit triggers for every shipped variant (target ≤ 50 ms) and saves a screenshot to out/playground.png.
import { mkdirSync } from 'node:fs';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shippedVariants } from '../examples/playground/build.ts';
import { launchChromium, type Chromium } from './helpers/chromium.ts';
import { startPlayground, type Playground } from './helpers/playground.ts';

const COMPILE_TARGET_MS = 50;
const TOLERANCE = 1e-4;
const SCREENSHOT = 'out/playground.png';

let server: Playground | undefined;
let chromium: Chromium | undefined;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  server = await startPlayground();
  chromium = await launchChromium();
  page = await chromium.browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => void (m.type() === 'error' && pageErrors.push(m.text())));
  await page.goto(server.url);
  await page.waitForSelector('body[data-ready]', { timeout: 60_000 });
});

afterAll(async () => {
  await chromium?.close();
  server?.stop();
});

const text = (selector: string) => page.$eval(selector, (e) => (e as HTMLElement).innerText);
const seq = () => page.$eval('#diagnostics', (e) => Number((e as HTMLElement).dataset.seq ?? 0));

/** Waits for the compile after `edit` (the page recompiles EDIT_DEBOUNCE_MS after the last keystroke). */
async function afterCompile(edit: () => Promise<unknown>): Promise<{ state: string; ms: number }> {
  const before = await seq();
  await edit();
  await page.waitForFunction((n) => Number(document.getElementById('diagnostics')!.dataset.seq) > n, { timeout: 30_000 }, before);
  return page.evaluate(() => ({
    state: document.getElementById('diagnostics')!.dataset.state!,
    ms: Number(document.getElementById('compile-ms')!.dataset.ms),
  }));
}

/** Selects characters [start, end) of the editor's text, so that typing replaces them. */
async function selectInEditor(start: number, end: number): Promise<void> {
  await page.focus('#source');
  await page.$eval('#source', (e, s, t) => (e as HTMLTextAreaElement).setSelectionRange(s, t), start, end);
}

async function pickVariant(path: string): Promise<void> {
  await afterCompile(() => page.select('#variant', path));
}

/** Clicks Run and returns the new first row of the results table. */
async function run(form: string): Promise<{ status: string; error: number; gpuMs: number; cells: string[] }> {
  await page.select('#form', form);
  const rows = await page.$$eval('#results-body tr', (r) => r.length);
  await page.waitForFunction(() => !(document.getElementById('run') as HTMLButtonElement).disabled, { timeout: 60_000 });
  await page.click('#run');
  await page.waitForFunction((n) => document.querySelectorAll('#results-body tr').length > n, { timeout: 280_000 }, rows);
  return page.$eval('#results-body tr', (tr) => {
    const d = (tr as HTMLElement).dataset;
    return { status: d.status!, error: Number(d.error), gpuMs: Number(d.gpuMs), cells: [...tr.querySelectorAll('td')].map((td) => td.textContent!) };
  });
}

describe('the playground in headless Chromium', () => {
  it('loads every shipped variant, names its WebGPU adapter and compiles the default variant', async () => {
    const options = await page.$$eval('#variant option', (o) => o.map((x) => (x as HTMLOptionElement).value));
    expect(options).toEqual(shippedVariants().map((v) => v.path));
    expect(await page.$eval('#variant', (e) => (e as HTMLSelectElement).value)).toBe('examples/paper/elu_dwconv.la');
    const adapter = await text('#adapter');
    console.log(`playground adapter: ${adapter}`);
    expect(adapter).toMatch(/^WebGPU: \S/);
    expect(await page.$eval('#adapter', (e) => e.className)).toBe('adapter ok');
    expect(await text('#diagnostics')).toMatch(/^ok: variant elu_dwconv; terms lin \(prefix\), conv \(toeplitz\)/);
    expect(await text('#ir')).toMatch(/^variant elu_dwconv\n/);
    expect(await text('#wgsl')).toMatch(/@compute @workgroup_size/);
  });

  it("shows an edit's error with its line, column and caret as you type, and clears it once fixed", async () => {
    const source = await page.$eval('#source', (e) => (e as HTMLTextAreaElement).value);
    const at = source.indexOf('fk[j], d)') + 'fk[j], '.length; // the axis of lin's dot product
    const line = source.slice(0, at).split('\n').length;
    const col = at - source.lastIndexOf('\n', at - 1);

    const broken = await afterCompile(async () => {
      await selectInEditor(at, at + 1);
      await page.keyboard.type('e');
    });
    expect(broken.state).toBe('error');
    const diag = (await text('#diagnostics')).split('\n');
    expect(diag[0]).toBe(`examples/paper/elu_dwconv.la:${line}:${col}: dot over axis 'e', but operand 1 has axes [h, d]`);
    expect(diag[1]).toBe(`  ${source.split('\n')[line - 1].replace('fk[j], d)', 'fk[j], e)')}`);
    expect(diag[2].indexOf('^')).toBe(col - 1 + 2);
    expect(await page.$eval('.backdrop mark', (m) => m.textContent)).toBe('e');
    expect(await page.$$eval('.gutter .error', (g) => g.map((x) => x.textContent))).toEqual([String(line)]);
    expect(await page.$eval('#run', (b) => (b as HTMLButtonElement).disabled)).toBe(true);

    const fixed = await afterCompile(async () => {
      await selectInEditor(at, at + 1);
      await page.keyboard.type('d');
    });
    expect(fixed.state).toBe('ok');
    expect(await page.$('.backdrop mark')).toBeNull();
    expect(await page.$$('.gutter .error')).toEqual([]);
  });

  it("runs the fused, unfused and recurrent forms on the page's GPU within 1e-4 of the page's float64 oracle", async () => {
    for (const form of ['chunked', 'unfused', 'recurrent']) {
      const r = await run(form);
      console.log(`playground run: ${r.cells.join(' | ')}`);
      expect(r.status, r.cells.join(' | ')).toBe('ok');
      expect(r.error).toBeLessThan(TOLERANCE);
      expect(r.gpuMs).toBeGreaterThan(0);
    }
    await afterCompile(() => page.select('#form', 'chunked')); // the fused kernel's WGSL on screen
    mkdirSync('out', { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    console.log(`playground screenshot: ${SCREENSHOT}`);
  });

  it('says which forms refuse a leaky (noncausal) variant, as the CLI does, and runs it in the naive form', async () => {
    await pickVariant('examples/paper/leaky_dwconv.la');
    expect(await text('#diagnostics')).toContain('forms: naive quadratic only: term conv is noncausal (reads positions after i)');
    expect(await page.$$eval('#form option', (o) => o.map((x) => x.textContent))).toEqual([
      'fused chunked (refuses noncausal terms)',
      'unfused chunked (refuses noncausal terms)',
      'recurrent (decode form) (refuses noncausal terms)',
      'naive quadratic',
    ]);
    await afterCompile(() => page.select('#form', 'chunked'));
    expect(await text('#wgsl-title')).toMatch(/fused chunked: refused/);
    expect(await text('#wgsl')).toMatch(/term conv is noncausal .*parallel form only/);
    const refused = await run('recurrent');
    expect(refused.status).toBe('refused');
    expect(refused.cells.join(' ')).toMatch(/term conv is noncausal .*cannot be decoded/);
    const naive = await run('naive');
    console.log(`playground run: ${naive.cells.join(' | ')}`);
    expect(naive.status).toBe('ok');
    expect(naive.error).toBeLessThan(TOLERANCE);
  });

  it(`compiles every shipped variant on each edit (source → checked IR → passes → WGSL) within ${COMPILE_TARGET_MS} ms`, async () => {
    await page.select('#form', 'chunked');
    const rows: string[] = [];
    const slow: string[] = [];
    for (const v of shippedVariants()) {
      await pickVariant(v.path);
      const ms: number[] = [];
      for (let k = 0; k < 3; k++) {
        // An edit that keeps the variant valid: a space at the end of the text.
        const r = await afterCompile(async () => {
          await selectInEditor(1e6, 1e6);
          await page.keyboard.type(' ');
        });
        expect(r.state, v.path).toBe('ok');
        ms.push(r.ms);
      }
      const median = [...ms].sort((a, b) => a - b)[1];
      rows.push(`${v.path.padEnd(36)} ${median.toFixed(1).padStart(6)} ms  (edits: ${ms.map((x) => x.toFixed(1)).join(', ')})`);
      if (median > COMPILE_TARGET_MS) slow.push(`${v.path}: ${median.toFixed(1)} ms`);
    }
    console.log(`compile on each edit in Chromium, median of 3 edits, fused chunked form:\n${rows.join('\n')}`);
    expect(slow).toEqual([]);
  });

  it('raised no error in the page', () => {
    expect(pageErrors).toEqual([]);
  });
});
