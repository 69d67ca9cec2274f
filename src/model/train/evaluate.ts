// `linattn eval` as a library call: the mean cross-entropy (nats per token) of a model directory on text files,
// over consecutive windows of `block` predictions (data.ts's evaluationBatches), and its perplexity e^loss. On the
// GPU the model's inference path (GpuModel.forwardLogits: the compiled variant's chunked form, any variant) gives
// the logits and the host takes the float64 cross-entropy; on the CPU the float64 model with the variant's
// parallel form does all of it. Both read the same windows, so their losses agree to float32 rounding.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Gpu } from '../../runtime/device.ts';
import type { PrepareAttention } from '../attention-context.ts';
import { loadConfig } from '../config.ts';
import { cpuAttentionFromVariant } from '../cpu-attention.ts';
import { cpuModel } from '../cpu-forward.ts';
import { ModelFileError } from '../errors.ts';
import { GpuModel } from '../gpu-model.ts';
import { loadTokenizer } from '../tokenizer.ts';
import { loadModelVariant } from '../variant.ts';
import { loadWeights } from '../weights.ts';
import { MODEL_FILE, readState, STATE_FILE } from './checkpoint.ts';
import { crossEntropy, cpuLoss } from './cpu-grad.ts';
import { evaluationBatches, loadCorpus } from './data.ts';
import type { TokenBatch } from './trainer.ts';

export interface EvalRequest {
  readonly model: string;
  readonly data: readonly string[];
  readonly device: 'gpu' | 'cpu';
  /** Default: the block the model was trained with (trainer_state.json), else 256 (or max_position_embeddings). */
  readonly block?: number;
  /** Windows per forward pass (default 8). */
  readonly batch?: number;
  readonly gpu?: () => Promise<{ readonly gpu: Gpu; readonly prepareAttention: PrepareAttention }>;
}

export interface EvalResult {
  /** Mean nats per predicted token. */
  readonly loss: number;
  readonly perplexity: number;
  /** Tokens predicted. */
  readonly tokens: number;
  readonly block: number;
  readonly device: string;
}

export async function evaluateModel(req: EvalRequest): Promise<EvalResult> {
  const dir = resolve(req.model);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFileError(dir, 'directory', 'model directory not found');
  const config = loadConfig(join(dir, 'config.json'));
  const tokenizer = loadTokenizer(config);
  const variant = loadModelVariant(config);
  const weights = loadWeights(config, join(dir, MODEL_FILE), variant.params);
  const trained = existsSync(join(dir, STATE_FILE)) ? readState(join(dir, STATE_FILE)).options.block : undefined;
  const block = req.block ?? trained ?? Math.min(256, config.maxPositionEmbeddings ?? 256);
  const max = config.maxPositionEmbeddings;
  if (max !== undefined && block > max) throw new Error(`--block ${block} exceeds max_position_embeddings ${max} of ${config.file}`);
  const corpus = loadCorpus(req.data, tokenizer);
  if (corpus.tokens.length < block + 1) {
    throw new Error(`${req.data.join(', ')}: ${corpus.tokens.length} tokens are too few for one window of --block ${block} (+1); use a shorter --block`);
  }
  const batches = evaluationBatches(corpus.tokens, req.batch ?? 8, block);
  const rows = (ids: ArrayLike<number>, b: TokenBatch) => Array.from({ length: b.b }, (_, s) => Array.from({ length: b.t }, (_, i) => ids[s * b.t + i]));
  let total = 0;
  let tokens = 0;
  let device: string;
  if (req.device === 'cpu') {
    const cpu = cpuModel(config, weights);
    const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    for (const b of batches) {
      total += cpuLoss(cpu, rows(b.inputs, b), rows(b.targets, b), attention) * b.b * b.t;
      tokens += b.b * b.t;
    }
    device = 'CPU float64';
  } else {
    if (!req.gpu) throw new Error('no GPU was given for --device gpu');
    const { gpu, prepareAttention } = await req.gpu();
    const model = await GpuModel.create(gpu, config, weights, await prepareAttention({ gpu, config, program: variant.compiled, source: variant.program }), { timestamps: false });
    try {
      for (const b of batches) {
        const logits = await model.forwardLogits(rows(b.inputs, b));
        total += crossEntropy(Float64Array.from(logits), Array.from(b.targets), config.vocabSize).loss * b.b * b.t;
        tokens += b.b * b.t;
      }
    } finally {
      await model.destroy();
    }
    device = gpu.adapterName;
  }
  const loss = total / tokens;
  return { loss, perplexity: Math.exp(loss), tokens, block, device };
}
