// The model's attention variant: its .la file compiled with the config's options, checked to fit the
// model (inputs q[h, d], k[h, d], v[h, e] and output [h, e] with h = num_attention_heads and
// d = e = head_dim), and its `param` declarations turned into checkpoint tensors with shapes and an
// initialisation that keeps a random model stable.
import { runPasses } from '../../passes/pipeline.ts';
import { loadVariant } from '../io/variant-file.ts';
import { axisSize, ShapeError } from '../ir/shapes.ts';
import type { Program } from '../ir/types.ts';
import type { ModelConfig } from './config.ts';
import { ModelFileError } from './errors.ts';
import type { AttentionParamInit } from './init-model.ts';

export interface ModelVariant {
  /** The variant as written (the CPU oracle's input). */
  readonly program: Program;
  /** After the pass pipeline: every term classified, ready for the GPU backends. */
  readonly compiled: Program;
  /** The variant's parameters as stored per layer (`model.layers.N.self_attn.<name>`). */
  readonly params: readonly AttentionParamInit[];
}

/** Compiles config.attention.variant with the options that name its `size` declarations. */
export function loadModelVariant(config: ModelConfig): ModelVariant {
  const file = config.attention.variant;
  let program: Program;
  try {
    const declared = loadVariant(file).sizes;
    const sizes = Object.fromEntries(Object.entries(config.attention.options).filter(([name]) => name in declared));
    program = loadVariant(file, { sizes, ...(config.rope && { rope: config.rope }) });
  } catch (e) {
    if (e instanceof Error && e.name === 'SourceError') {
      const span = (e as Error & { span?: { file: string; line: number; col: number } }).span;
      throw new ModelFileError(span ? `${span.file}:${span.line}:${span.col}` : file, 'variant', e.message);
    }
    throw new ModelFileError(config.file, 'attention.variant', (e as Error).message);
  }
  if (config.rope && !program.nodes.some((n) => n.op === 'rope')) {
    throw new ModelFileError(config.file, 'rope_theta', `the config sets a rotary position encoding, but the variant ${program.name} (${file}) applies no rope(…)`);
  }
  const params = variantParamSpecs(program, config);
  let compiled: Program;
  try {
    compiled = runPasses(program);
  } catch (e) {
    throw new ModelFileError(file, 'variant', `the compiler's passes failed: ${(e as Error).message}`);
  }
  return { program, compiled, params };
}

/** Sizes of the model-fixed axes (h, d, e) and the variant's own sizes (K, …). */
function axisSizes(program: Program, config: ModelConfig): Record<string, number> {
  const sizes: Record<string, number> = { ...program.sizes, h: config.numHeads, d: config.headDim, e: config.headDim };
  for (const name of Object.keys(program.axes)) {
    try {
      axisSize(program.axes, sizes, name);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      // A free axis the model does not fix; reported below where a declaration uses it.
    }
  }
  return sizes;
}

function resolveAxes(program: Program, config: ModelConfig, decl: { name: string; axes: readonly string[] }, kind: string): number[] {
  const sizes = axisSizes(program, config);
  return decl.axes.map((a) => {
    const n = sizes[a];
    if (n === undefined) {
      throw new ModelFileError(program.file, `${kind} ${decl.name}`, `axis '${a}' has no size: the model fixes h (heads), d and e (head_dim), the variant's sizes fix ${Object.keys(program.sizes).join(', ') || 'nothing else'}`);
    }
    return n;
  });
}

/** The per-layer checkpoint tensors of the variant's parameters, with their initialisation. */
export function variantParamSpecs(program: Program, config: ModelConfig): AttentionParamInit[] {
  checkFitsModel(program, config);
  const decayBases = new Set<string>();
  const convTaps = new Set<string>();
  const paramName = (id: number) => {
    const n = program.nodes[id];
    return n.op === 'param' ? n.name : undefined;
  };
  for (const n of program.nodes) {
    if (n.op === 'decay') {
      const name = paramName(n.x);
      if (name) decayBases.add(name);
    } else if (n.op === 'select') {
      const name = paramName(n.x);
      if (name) convTaps.add(name);
    }
  }
  return program.params.map((p) => ({
    name: p.name,
    shape: resolveAxes(program, config, p, 'param'),
    // γ^(i−j) needs 0 < γ < 1 (RetNet's per-head rates); convolution taps fade with the lag.
    init: decayBases.has(p.name) ? 'retention' : convTaps.has(p.name) ? 'decay' : 'normal',
  }));
}

/** Inputs q, k, v and the output must be [heads, head_dim] per token, as the model supplies them. */
export function checkFitsModel(program: Program, config: ModelConfig): void {
  const want = [config.numHeads, config.headDim];
  const names = program.inputs.map((i) => i.name);
  for (const name of ['q', 'k', 'v']) {
    const decl = program.inputs.find((i) => i.name === name);
    if (!decl) {
      throw new ModelFileError(program.file, `input ${name}`, `the model supplies inputs q, k, v; ${program.name} declares ${names.join(', ')}`);
    }
    const shape = resolveAxes(program, config, decl, 'input');
    if (shape.length !== 2 || shape[0] !== want[0] || shape[1] !== want[1]) {
      throw new ModelFileError(program.file, `input ${name}`, `must be [h, head_dim] = [${want.join(', ')}] per token, got [${decl.axes.join(', ')}] = [${shape.join(', ')}]`);
    }
  }
  const extra = names.filter((n) => !['q', 'k', 'v'].includes(n));
  if (extra.length > 0) throw new ModelFileError(program.file, `input ${extra[0]}`, 'the model supplies only q, k and v');
  const out = resolveAxes(program, config, { name: 'o', axes: program.outAxes }, 'output');
  if (out.length !== 2 || out[0] !== want[0] || out[1] !== want[1]) {
    throw new ModelFileError(program.file, 'output', `must be [h, head_dim] = [${want.join(', ')}] per token, got [${program.outAxes.join(', ')}] = [${out.join(', ')}]`);
  }
}
