// The playground page: pick a shipped variant or edit one; every edit recompiles (debounced) and shows the
// diagnostics with their caret, the IR after the selected pass and the chosen form's WGSL; Run executes that
// form on this browser's WebGPU and checks it against the float64 oracle computed here.
import { formatDiagnostic, gpuFromAdapter, isDecodable, printProgram, type Gpu } from '../../../src/runtime/browser.ts';
import {
  compileEdit, FORMS, formsSummary, isSourceError, STAGE_NAMES, SWIFTSHADER_MAX_AUTO_CHUNK, WEBGPU_SPEC_DEFAULTS, type EditResult, type FormId, type Target,
} from './compile.ts';
import { Editor } from './editor.ts';
import { checkShape, runForm, shapeAxes, type Shape } from './run.ts';

interface ShippedVariant {
  readonly path: string;
  readonly text: string;
}

const EDIT_DEBOUNCE_MS = 150;
const DEFAULT_VARIANT = 'examples/paper/elu_dwconv.la';

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`playground: #${id} is missing from index.html`);
  return el as T;
};

const ui = {
  variant: $<HTMLSelectElement>('variant'),
  reset: $<HTMLButtonElement>('reset'),
  adapter: $('adapter'),
  compileMs: $('compile-ms'),
  diagnostics: $('diagnostics'),
  pass: $<HTMLSelectElement>('pass'),
  ir: $('ir'),
  wgslTitle: $('wgsl-title'),
  wgsl: $('wgsl'),
  form: $<HTMLSelectElement>('form'),
  chunk: $<HTMLSelectElement>('chunk'),
  shape: { b: $<HTMLInputElement>('b'), t: $<HTMLInputElement>('t'), h: $<HTMLInputElement>('h'), d: $<HTMLInputElement>('d') },
  seed: $<HTMLInputElement>('seed'),
  run: $<HTMLButtonElement>('run'),
  runStatus: $('run-status'),
  results: $<HTMLTableSectionElement>('results-body'),
};

let shipped: ShippedVariant[] = [];
const edits = new Map<string, string>(); // unsaved text per variant path, kept while switching
let gpu: Gpu | undefined;
let last: EditResult | undefined;
let compiles = 0;
let running = false;

const editor = new Editor($('editor'), (text) => {
  edits.set(ui.variant.value, text);
  scheduleCompile();
});

let timer: ReturnType<typeof setTimeout> | undefined;
function scheduleCompile(): void {
  clearTimeout(timer);
  timer = setTimeout(recompile, EDIT_DEBOUNCE_MS);
}

function shape(): Shape {
  const n = (el: HTMLInputElement) => Number(el.value);
  return { b: n(ui.shape.b), t: n(ui.shape.t), h: n(ui.shape.h), d: n(ui.shape.d) };
}

function target(): Target {
  return {
    form: ui.form.value as FormId,
    axes: shapeAxes(shape()),
    limits: gpu?.limits ?? WEBGPU_SPEC_DEFAULTS,
    software: gpu?.isSoftware ?? false,
    chunk: ui.chunk.value === 'auto' ? 'auto' : Number(ui.chunk.value),
    maxAutoChunk: gpu && /swiftshader/i.test(gpu.adapterName) ? SWIFTSHADER_MAX_AUTO_CHUNK : undefined,
  };
}

function recompile(): void {
  clearTimeout(timer);
  let r: EditResult;
  try {
    checkShape(shape());
    r = compileEdit(editor.value, ui.variant.value, target());
  } catch (e) {
    r = { ok: false, error: new Error(`shape: ${(e as Error).message}`), ms: 0 };
  }
  last = r;
  compiles++;
  ui.compileMs.textContent = `compiled in ${r.ms.toFixed(1)} ms`;
  ui.compileMs.dataset.ms = String(r.ms);
  ui.diagnostics.dataset.seq = String(compiles);
  document.body.classList.toggle('stale', !r.ok);
  if (!r.ok) {
    const e = r.error;
    editor.mark(isSourceError(e) ? e.span : undefined);
    ui.diagnostics.className = 'diagnostics error';
    ui.diagnostics.dataset.state = 'error';
    ui.diagnostics.textContent = isSourceError(e) ? formatDiagnostic(e, editor.value) : e.message;
    ui.run.disabled = true;
    return; // the IR and WGSL of the last good compile stay on screen, dimmed
  }
  editor.mark(undefined);
  const c = r.compiled;
  ui.diagnostics.className = 'diagnostics ok';
  ui.diagnostics.dataset.state = 'ok';
  ui.diagnostics.textContent = [
    `ok: variant ${c.program.name}; terms ${c.program.terms.map((t) => `${t.name} (${t.form.kind})`).join(', ')}`,
    `forms: ${formsSummary(c.program)}`,
  ].join('\n');
  const leaky = !isDecodable(c.program);
  for (const o of ui.form.options) {
    const f = FORMS.find((x) => x.id === o.value)!;
    o.text = leaky && f.id !== 'naive' ? `${f.label} (refuses noncausal terms)` : f.label;
  }
  renderIr();
  renderWgsl();
  ui.run.disabled = running || !gpu;
}

function renderIr(): void {
  if (!last?.ok) return;
  const stage = last.compiled.stages.find((s) => s.name === ui.pass.value) ?? last.compiled.stages[0];
  ui.ir.textContent = printProgram(stage.program);
}

function renderWgsl(): void {
  if (!last?.ok) return;
  const { plan, sizes } = last.compiled;
  const form = FORMS.find((f) => f.id === ui.form.value)!;
  const at = Object.entries(sizes).map(([a, n]) => `${a}=${n}`).join(' ');
  if (plan instanceof Error) {
    ui.wgslTitle.textContent = `WGSL · ${form.label}: refused`;
    ui.wgsl.className = 'code refused';
    ui.wgsl.textContent = plan.message;
    return;
  }
  const t = target();
  const capped = t.chunk === 'auto' && t.maxAutoChunk && 'chunk' in plan.schedule ? ` (auto: ≤ ${t.maxAutoChunk} on SwiftShader)` : '';
  const schedule = Object.entries(plan.schedule).map(([k, n]) => `${k} ${n}`).join(', ') + capped;
  ui.wgslTitle.textContent = `WGSL · ${form.label}: ${plan.kernels.length} kernel${plan.kernels.length === 1 ? '' : 's'} at ${at}${schedule ? ` · ${schedule}` : ''}`;
  ui.wgsl.className = 'code';
  ui.wgsl.textContent = plan.kernels.map((k, n) => `// ── kernel ${n + 1}/${plan.kernels.length}: ${k.label} ──\n${k.code.trim()}\n`).join('\n');
}

function pickVariant(path: string): void {
  ui.variant.value = path;
  editor.value = edits.get(path) ?? shipped.find((v) => v.path === path)!.text;
  history.replaceState(null, '', `#${path}`);
  recompile();
}

function fmtMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

function cell(text: string, className = ''): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

const TOLERANCE = 1e-4;

async function run(): Promise<void> {
  recompile(); // an edit still waiting for its debounce runs now: what runs is what the editor shows
  if (!gpu || !last?.ok || running) return;
  running = true;
  ui.run.disabled = true;
  const s = shape();
  const form = FORMS.find((f) => f.id === ui.form.value)!;
  const c = last.compiled;
  ui.runStatus.textContent = `running ${form.label} and the float64 oracle…`;
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r))); // let the status paint before the oracle blocks
  const row = document.createElement('tr');
  row.append(cell(c.program.name), cell(form.label), cell(`b=${s.b} t=${s.t} h=${s.h} d=e=${s.d}`));
  try {
    const r = await runForm(gpu, c, editor.value, target(), s, Number(ui.seed.value) || 0);
    const ok = r.error <= TOLERANCE;
    row.dataset.status = ok ? 'ok' : 'fail';
    row.dataset.error = String(r.error);
    row.dataset.gpuMs = String(r.gpuMs);
    row.append(
      cell(String(r.kernels), 'num'),
      cell(r.error.toExponential(2), 'num'),
      cell(fmtMs(r.gpuMs), 'num'),
      cell(`${r.timing}, median of ${r.iters}${r.slices > 1 ? `, ${r.slices} batch slices` : ''}`, 'dim'),
      cell(`${fmtMs(r.oracleMs)}${r.oracleReused ? ' (reused)' : ''}`, 'num'),
      cell(ok ? 'ok' : `FAIL (> ${TOLERANCE})`, ok ? 'ok' : 'fail'),
    );
    ui.runStatus.textContent = '';
  } catch (e) {
    row.dataset.status = 'refused';
    const td = cell((e as Error).message, 'fail');
    td.colSpan = 6;
    row.append(td);
    ui.runStatus.textContent = '';
  } finally {
    ui.results.prepend(row);
    running = false;
    ui.run.disabled = !last?.ok;
  }
}

async function openGpu(): Promise<void> {
  if (!('gpu' in navigator)) {
    ui.adapter.textContent = `no WebGPU in this browser${isSecureContext ? '' : ' (the page is not a secure context: open it on 127.0.0.1)'}; Chromium: --enable-unsafe-webgpu`;
    ui.adapter.className = 'adapter fail';
    return;
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    ui.adapter.textContent = 'WebGPU: no adapter (Chromium without a GPU: start it with --enable-unsafe-webgpu)';
    ui.adapter.className = 'adapter fail';
    return;
  }
  gpu = await gpuFromAdapter(adapter, { report: (line) => (ui.runStatus.textContent = line) });
  ui.adapter.textContent = `WebGPU: ${gpu.adapterName}${gpu.isSoftware ? ' · software' : ''}${gpu.hasTimestamps ? ' · timestamps' : ''}`;
  ui.adapter.className = 'adapter ok';
  recompile(); // the device's limits may allow another chunk schedule than the spec's defaults
}

async function main(): Promise<void> {
  for (const f of FORMS) ui.form.add(new Option(f.label, f.id));
  for (const c of ['auto', '4', '8', '16', '32', '64']) ui.chunk.add(new Option(c, c));
  for (const s of STAGE_NAMES) ui.pass.add(new Option(s === 'as written' ? 'as written (frontend)' : `after ${s}`, s));
  ui.pass.value = STAGE_NAMES[STAGE_NAMES.length - 1];
  shipped = (await (await fetch('variants.json')).json()) as ShippedVariant[];
  const groups = new Map<string, HTMLOptGroupElement>();
  for (const v of shipped) {
    const dir = v.path.slice(0, v.path.lastIndexOf('/'));
    if (!groups.has(dir)) groups.set(dir, Object.assign(document.createElement('optgroup'), { label: dir }));
    groups.get(dir)!.append(new Option(v.path.slice(dir.length + 1), v.path));
  }
  ui.variant.append(...groups.values());
  const fromHash = decodeURIComponent(location.hash.slice(1));
  pickVariant(shipped.some((v) => v.path === fromHash) ? fromHash : DEFAULT_VARIANT);

  ui.variant.addEventListener('change', () => pickVariant(ui.variant.value));
  ui.reset.addEventListener('click', () => {
    edits.delete(ui.variant.value);
    pickVariant(ui.variant.value);
  });
  ui.pass.addEventListener('change', renderIr);
  ui.form.addEventListener('change', recompile);
  ui.chunk.addEventListener('change', recompile);
  for (const el of [...Object.values(ui.shape)]) el.addEventListener('change', recompile);
  ui.run.addEventListener('click', () => void run());
  await openGpu().catch((e: Error) => {
    ui.adapter.textContent = `WebGPU: ${e.message}`;
    ui.adapter.className = 'adapter fail';
  });
  document.body.dataset.ready = 'true';
}

void main();
