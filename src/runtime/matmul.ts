// Running the matmul kernels of backends/wgsl/matmul.ts: a plan compiles the chosen kernel (through the
// pipeline cache) and holds its shape uniform; `bindMatmul` makes a bind group per operand set, checked
// against the problem's shape; `encodeMatmul` records the dispatch into a caller's compute pass, so a layer
// can batch many dispatches in one pass.
import { matmulKernel, matmulPathFor, type MatmulKernel, type MatmulOptions, type MatmulProblem } from '../../backends/wgsl/matmul.ts';
import { lanesPathFits } from '../../backends/wgsl/matmul-lanes-choice.ts';
import { outputColumns, outputCount } from '../../backends/wgsl/matmul-fusion.ts';
import { numel } from '../tensor.ts';
import { BufferUsage, type Gpu } from './device.ts';
import { allocTensor, type GpuTensor } from './gpu-tensor.ts';
import { compileKernel } from './pipeline-cache.ts';

export interface MatmulPlan extends Omit<MatmulKernel, 'params' | 'bindings'> {
  readonly pipeline: GPUComputePipeline;
  /** Uniform Params { M, N, K } for this plan's shape. */
  readonly params: GPUBuffer;
  /** Names of the kernel's bindings in binding order (matmul-fusion.ts's list). */
  readonly bindings: readonly string[];
}

/** Compiles (or fetches from the pipeline cache) the kernel for `problem` and makes its uniform. */
/**
 * The options a problem is planned with: `opts`, and LINATTN_LANES's say over the lanes kernel
 * (backends/wgsl/matmul-lanes.ts): '0' keeps the paths the few-row matmuls took before it where the default would be
 * it (a switch for benches that time both in one process, and a way back should it misbehave on some GPU); '1' takes
 * it wherever it would be the default on a hardware adapter, a software one included (lavapipe's subgroups are fixed
 * at 8: the tests run a model's decode and tree steps on it). Every caller that needs a kernel's grid without compiling it
 * (lm-head-parts.ts) asks matmulKernel with these options, so the two agree.
 */
export function matmulOptions(gpu: Gpu, problem: MatmulProblem, opts: MatmulOptions = {}): MatmulOptions {
  // LINATTN_LANES_ROW_GROUPS='65:2,65:32000:3' (benches): at M rows (and N columns, where given: that entry first) the
  // lanes kernel, wherever it can serve, with G workgroups along the rows.
  const entries = process.env.LINATTN_LANES_ROW_GROUPS?.split(',').map((e) => e.split(':').map(Number)) ?? [];
  const entry = entries.find((e) => e.length === 3 && e[0] === problem.M && e[1] === problem.N) ?? entries.find((e) => e.length === 2 && e[0] === problem.M);
  if (entry && opts.lanes?.rowGroups === undefined && lanesPathFits(problem) === undefined) opts = { path: 'lanes', ...opts, lanes: { ...opts.lanes, rowGroups: entry[entry.length - 1] } };
  const say = process.env.LINATTN_LANES;
  if (opts.path !== undefined || (say !== '0' && say !== '1')) return opts;
  if (say === '1') return matmulPathFor(problem, { isSoftware: false, subgroupSize: gpu.subgroupSize }) === 'lanes' ? { ...opts, path: 'lanes' } : opts;
  return matmulPathFor(problem, gpu) === 'lanes' ? { ...opts, path: matmulPathFor(problem, { isSoftware: gpu.isSoftware }) } : opts;
}

export async function planMatmul(gpu: Gpu, problem: MatmulProblem, opts: MatmulOptions = {}): Promise<MatmulPlan> {
  const k = matmulKernel(gpu, problem, matmulOptions(gpu, problem, opts));
  const pipeline = await compileKernel(gpu, { label: k.label, code: k.code, bindings: k.bindings.map((b) => b.kind) });
  const params = gpu.device.createBuffer({ label: `${k.label} params`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(params, 0, k.params);
  return { ...k, pipeline, params, bindings: k.bindings.map((b) => b.name) };
}

function checkOperand(plan: MatmulPlan, role: string, t: GpuTensor, rows: number, cols: number): void {
  const last = t.shape[t.shape.length - 1];
  if (numel(t.shape) !== rows * cols || last !== cols) {
    throw new Error(
      `${plan.label}: ${role} '${t.name}' has shape [${t.shape.join(', ')}], expected [${rows}, ${cols}] (leading axes may be flattened)`,
    );
  }
}

/** The accepted-row prologue's trees (backends/wgsl/matmul-heads.ts): [M, nodes] each, and `nodes` in a 16-byte uniform. */
export interface AcceptedRowTrees {
  readonly tokens: GPUBuffer;
  readonly parents: GPUBuffer;
  readonly picks: GPUBuffer;
  /** u32 [M]: each tree's accepted node, written. */
  readonly accepted: GPUBuffer;
  readonly nodes: GPUBuffer;
}

/**
 * The bind group of one operand set; make it once and reuse it across steps. `c` is the output, or the
 * outputs of a split in order; `gain` is the rmsnorm prologue's gain vector [K] (for 'heads residual' followed
 * by the bias, [K + the stack's columns]); `trees` the accepted-row prologue's, whose A holds every tree's rows.
 */
export function bindMatmul(
  gpu: Gpu,
  plan: MatmulPlan,
  a: GpuTensor,
  b: GpuTensor,
  c: GpuTensor | readonly GpuTensor[],
  extra: { readonly gain?: GpuTensor; readonly trees?: AcceptedRowTrees } = {},
): GPUBindGroup {
  const { M, N, K, transposeB, fusion } = plan.problem;
  if (plan.problem.transposeA) checkOperand(plan, 'A', a, K, M);
  else if (fusion?.acceptedRow) checkOperand(plan, 'A', a, M * Math.max(1, numel(a.shape) / K / M), K);
  else checkOperand(plan, 'A', a, M, K);
  if (transposeB) checkOperand(plan, 'W', b, N, K);
  else checkOperand(plan, 'B', b, K, N);
  const outs = Array.isArray(c) ? (c as readonly GpuTensor[]) : [c as GpuTensor];
  if (outs.length !== outputCount(fusion)) throw new Error(`${plan.label}: ${outs.length} output tensor(s) for ${outputCount(fusion)} output(s)`);
  // The argmax epilogue writes a (value, column) pair per row and workgroup.
  // A window's output is the whole wider tensor.
  const cols = fusion?.window ? fusion.window.stride : fusion?.epilogue === 'argmax' ? 2 * plan.workgroups[0] : outputColumns(fusion, N);
  // 'heads residual' writes the heads' blocks of rows [heads·M, K].
  const heads = fusion?.epilogue === 'heads residual';
  for (const o of outs) checkOperand(plan, 'C', o, heads ? (cols / K) * M : plan.splits * M, heads ? K : cols);
  if (fusion?.rmsnorm) {
    if (!extra.gain) throw new Error(`${plan.label}: the rmsnorm prologue needs its gain vector`);
    checkOperand(plan, heads ? 'gain and bias' : 'gain', extra.gain, 1, heads ? K + cols : K);
  }
  if (fusion?.acceptedRow && !extra.trees) throw new Error(`${plan.label}: the accepted-row prologue needs the trees`);
  const byName: Record<string, GPUBuffer> = { A: a.buffer, W: b.buffer, params: plan.params };
  outs.forEach((o, i) => (byName[`C${i}`] = o.buffer));
  if (extra.gain) byName.G = extra.gain.buffer;
  if (extra.trees) Object.assign(byName, { T: extra.trees.tokens, P: extra.trees.parents, Pk: extra.trees.picks, Acc: extra.trees.accepted, tree: extra.trees.nodes });
  return gpu.device.createBindGroup({
    label: `${plan.label} (${a.name}, ${b.name} → ${outs.map((o) => o.name).join(', ')})`,
    layout: plan.pipeline.getBindGroupLayout(0),
    entries: plan.bindings.map((name, binding) => ({ binding, resource: { buffer: byName[name] } })),
  });
}

/** Records the matmul into `pass` (no submit), so callers can batch dispatches in one pass. */
export function encodeMatmul(pass: GPUComputePassEncoder, plan: MatmulPlan, bindGroup: GPUBindGroup): void {
  pass.setPipeline(plan.pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...plan.workgroups);
}

const planCache = new WeakMap<Gpu, Map<string, Promise<MatmulPlan>>>();

function cachedPlan(gpu: Gpu, problem: MatmulProblem, opts: MatmulOptions): Promise<MatmulPlan> {
  let plans = planCache.get(gpu);
  if (!plans) {
    plans = new Map();
    planCache.set(gpu, plans);
  }
  const key = JSON.stringify([problem, opts]);
  let plan = plans.get(key);
  if (!plan) {
    plan = planMatmul(gpu, problem, opts);
    plans.set(key, plan);
    plan.catch(() => plans.delete(key));
  }
  return plan;
}

/** One-shot convenience: plans, allocates C named `out`, submits. Hot paths use plan/bind/encode. */
export async function matmul(
  gpu: Gpu,
  a: GpuTensor,
  b: GpuTensor,
  opts: MatmulOptions & { transposeB?: boolean; out?: string } = {},
): Promise<GpuTensor> {
  const transposeB = opts.transposeB ?? false;
  const K = a.shape[a.shape.length - 1];
  const M = numel(a.shape) / K;
  const N = transposeB ? b.shape[0] : b.shape[b.shape.length - 1];
  const plan = await cachedPlan(gpu, { M, N, K, transposeB }, opts);
  const c = allocTensor(gpu, opts.out ?? `${a.name}·${b.name}${transposeB ? 'ᵀ' : ''}`, [M, N]);
  const encoder = gpu.device.createCommandEncoder({ label: plan.label });
  const pass = encoder.beginComputePass({ label: plan.label });
  encodeMatmul(pass, plan, bindMatmul(gpu, plan, a, b, c));
  pass.end();
  gpu.device.queue.submit([encoder.finish()]);
  return c;
}
