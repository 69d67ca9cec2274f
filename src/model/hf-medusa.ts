// Medusa heads in the Medusa project's layout (FasterDecoding/Medusa; the paper's LinearizedLLM/llama-2-7b-medusa-head-*):
// a directory with config.json {"medusa_num_heads", "medusa_num_layers", "base_model_name_or_path"} and
// medusa_lm_head.safetensors, the state dict of its medusa_head (a list of Sequential(ResBlock, Linear)):
//
//   {N}.0.linear.weight  [hidden, hidden]   {N}.0.linear.bias  [hidden]   {N}.1.weight  [vocab, hidden]
//
// (sometimes under a "medusa_head." prefix), i.e. logits_N = W_N · (x + silu(L_N x + b_N)): our Medusa format with a
// bias (weights.ts). One residual block per head (medusa_num_layers 1), as the paper and this runtime use. Their
// released heads are a PyTorch pickle, medusa_lm_head.pt, which is refused with the one line that converts it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../io/safetensors-file.ts';
import type { ModelConfig } from './config.ts';
import { ModelFileError, shapeString } from './errors.ts';
import { pickleAdvice } from './hf-checkpoint.ts';
import type { MedusaHeadWeights } from './weights.ts';

export const MEDUSA_FILE = 'medusa_lm_head.safetensors';

export interface HfMedusa {
  readonly file: string;
  readonly heads: readonly MedusaHeadWeights<Float32Array>[];
}

/** The heads at `path` (a directory or the .safetensors file), checked against the base model's config. */
export function loadHfMedusa(path: string, base: ModelConfig): HfMedusa {
  const isDir = existsSync(path) && statSync(path).isDirectory();
  const dir = isDir ? path : undefined;
  if (!isDir && path.endsWith('.pt')) throw new ModelFileError(path, 'file', pickleAdvice(path, path.replace(/\.pt$/, '.safetensors')));
  const file = isDir ? join(path, MEDUSA_FILE) : path;
  if (!existsSync(file)) {
    const pt = dir && join(dir, 'medusa_lm_head.pt');
    if (pt && existsSync(pt)) throw new ModelFileError(pt, 'file', pickleAdvice(pt, file));
    throw new ModelFileError(file, 'file', 'no Medusa heads here (expected medusa_lm_head.safetensors)');
  }
  let declared: number | undefined;
  if (dir && existsSync(join(dir, 'config.json'))) {
    const cfgFile = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    const layers = cfg['medusa_num_layers'] ?? 1;
    if (layers !== 1) throw new ModelFileError(cfgFile, 'medusa_num_layers', `only 1 residual block per head is supported, got ${JSON.stringify(layers)}`);
    const n = cfg['medusa_num_heads'];
    if (n !== undefined && !(Number.isInteger(n) && (n as number) >= 1)) throw new ModelFileError(cfgFile, 'medusa_num_heads', `expected a positive integer, got ${JSON.stringify(n)}`);
    declared = n as number | undefined;
  }
  const f = SafetensorsFile.open(file);
  try {
    const prefix = f.names.some((n) => n.startsWith('medusa_head.')) ? 'medusa_head.' : '';
    const stored = new Set(f.names.map((n) => /^(?:medusa_head\.)?(\d+)\./.exec(n)?.[1]).filter((x): x is string => x !== undefined).map(Number));
    const count = declared ?? stored.size;
    if (count === 0) throw new ModelFileError(file, 'file', `no Medusa head tensors ({N}.0.linear.weight, {N}.0.linear.bias, {N}.1.weight); it holds ${f.names.slice(0, 5).join(', ')}`);
    const H = base.hiddenSize;
    const read = (name: string, shape: readonly number[]) => {
      const full = prefix + name;
      const info = f.info(full);
      if (!info) throw new ModelFileError(file, full, `missing tensor (expected shape ${shapeString(shape)})`);
      if (info.shape.join() !== shape.join()) throw new ModelFileError(file, full, `expected shape ${shapeString(shape)} (hidden_size ${H}, vocab_size ${base.vocabSize} of ${base.file}), got ${shapeString(info.shape)}`);
      return f.read(full);
    };
    const heads: MedusaHeadWeights<Float32Array>[] = [];
    for (let n = 0; n < count; n++) {
      heads.push({ proj: read(`${n}.0.linear.weight`, [H, H]), bias: read(`${n}.0.linear.bias`, [H]), lmHead: read(`${n}.1.weight`, [base.vocabSize, H]) });
    }
    for (const name of f.names) {
      const m = new RegExp(`^${prefix.replace('.', '\\.')}(\\d+)\\.(0\\.linear\\.weight|0\\.linear\\.bias|1\\.weight)$`).exec(name);
      if (!m) throw new ModelFileError(file, name, 'unexpected tensor (a Medusa head holds {N}.0.linear.weight, {N}.0.linear.bias, {N}.1.weight: one residual block)');
    }
    return { file, heads };
  } finally {
    f.close();
  }
}
