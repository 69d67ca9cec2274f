// `linattn eval` as a library call: the mean cross-entropy (nats per token) of a model directory on text files,
// over consecutive windows of `block` predictions (data.ts's evaluationBatches), and its perplexity e^loss. On the
// GPU the model's inference path (GpuModel.forwardLogits: the compiled variant's chunked form, any variant) gives
// the logits and the host takes the float64 cross-entropy; on the CPU the float64 model with the variant's
// parallel form does all of it. Both read the same windows, so their losses agree to float32 rounding. The model
// directory is either layout (model-dir.ts: ours, or a Hugging Face LLaMA directory).
//
// `causal`: besides that teacher-forced loss, the *causally consistent* one, each position's prediction computed
// from its prefix alone: the window's prefix of length L runs as a sequence of its own, for L = 1 … block, and
// only its last position's logits count. A causal variant gives the teacher-forced loss again (to rounding); a
// noncausal one (the leaky ablation, whose convolution reads later positions) gives what generation would see,
// which is the paper's point: its teacher-forced loss is an illusion. It costs `block` forward passes per batch.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Gpu } from '../../runtime/device.ts';
import type { PrepareAttention } from '../attention-context.ts';
import { cpuAttentionFromVariant } from '../cpu-attention.ts';
import { cpuForward, cpuModel } from '../cpu-forward.ts';
import { ModelFileError } from '../errors.ts';
import { GpuModel } from '../gpu-model.ts';
import type { HfAttention } from '../hf-config.ts';
import { loadModelDir } from '../model-dir.ts';
import { loadTokenizer } from '../tokenizer.ts';
import { readState, STATE_FILE } from './checkpoint.ts';
import { crossEntropy } from './cpu-grad.ts';
import { evaluationBatches, loadCorpus, splitCorpus } from './data.ts';
import type { TokenBatch } from './trainer.ts';

export interface EvalRequest {
  readonly model: string;
  readonly data: readonly string[];
  readonly device: 'gpu' | 'cpu';
  /** Default: the block the model was trained with (trainer_state.json), else 256 (or max_position_embeddings). */
  readonly block?: number;
  /** Windows per forward pass (default 8). */
  readonly batch?: number;
  /** The first N windows only (default: every window the text holds). */
  readonly windows?: number;
  /** Only the last fraction of the tokens: what `train` held out for validation (its valFraction, 0.1). */
  readonly heldOut?: number;
  /** Also the causally consistent loss (each position from its prefix alone). */
  readonly causal?: boolean;
  /** Hugging Face directories: which attention replaces LlamaAttention (default auto). */
  readonly attention?: HfAttention | 'auto';
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
  /** With `causal`: the same windows' loss with every position predicted from its prefix alone. */
  readonly causal?: { readonly loss: number; readonly perplexity: number };
}

export async function evaluateModel(req: EvalRequest): Promise<EvalResult> {
  const dir = resolve(req.model);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFileError(dir, 'directory', 'model directory not found');
  const { config, variant, weights } = loadModelDir(dir, { ...(req.attention && { attention: req.attention }) });
  const tokenizer = loadTokenizer(config);
  const trained = existsSync(join(dir, STATE_FILE)) ? readState(join(dir, STATE_FILE)).options.block : undefined;
  const block = req.block ?? trained ?? Math.min(256, config.maxPositionEmbeddings ?? 256);
  const max = config.maxPositionEmbeddings;
  if (max !== undefined && block > max) throw new Error(`--block ${block} exceeds max_position_embeddings ${max} of ${config.file}`);
  const corpus = loadCorpus(req.data, tokenizer);
  const text = req.heldOut !== undefined ? splitCorpus(corpus, req.heldOut, block).val : corpus.tokens;
  if (text.length < block + 1) {
    throw new Error(`${req.data.join(', ')}: ${text.length} tokens are too few for one window of --block ${block} (+1); use a shorter --block`);
  }
  const windows = req.windows ?? Infinity;
  const tokens = Number.isFinite(windows) ? text.subarray(0, Math.min(text.length, windows * block + 1)) : text;
  const batches = evaluationBatches(tokens, req.batch ?? 8, block);
  let forward: (rows: number[][]) => Promise<ArrayLike<number>>;
  let device: string;
  let done = async () => undefined as void;
  if (req.device === 'cpu') {
    const cpu = cpuModel(config, weights);
    const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    forward = async (rows) => cpuForward(cpu, rows, attention).logits.data;
    device = 'CPU float64';
  } else {
    if (!req.gpu) throw new Error('no GPU was given for --device gpu');
    const { gpu, prepareAttention } = await req.gpu();
    const model = await GpuModel.create(gpu, config, weights, await prepareAttention({ gpu, config, program: variant.compiled, source: variant.program }), { timestamps: false });
    forward = (rows) => model.forwardLogits(rows);
    done = () => model.destroy();
    device = gpu.adapterName;
  }
  const V = config.vocabSize;
  const rows = (ids: ArrayLike<number>, b: TokenBatch, t = b.t) => Array.from({ length: b.b }, (_, s) => Array.from({ length: t }, (_, i) => ids[s * b.t + i]));
  let total = 0;
  let causal = 0;
  let count = 0;
  try {
    for (const b of batches) {
      total += crossEntropy(Float64Array.from(await forward(rows(b.inputs, b))), Array.from(b.targets), V).loss * b.b * b.t;
      count += b.b * b.t;
      if (!req.causal) continue;
      for (let L = 1; L <= b.t; L++) {
        const logits = await forward(rows(b.inputs, b, L));
        for (let s = 0; s < b.b; s++) {
          const last = Float64Array.from({ length: V }, (_, v) => logits[(s * L + L - 1) * V + v]);
          causal += crossEntropy(last, [b.targets[s * b.t + L - 1]], V).loss;
        }
      }
    }
  } finally {
    await done();
  }
  const loss = total / count;
  return {
    loss, perplexity: Math.exp(loss), tokens: count, block, device,
    ...(req.causal && { causal: { loss: causal / count, perplexity: Math.exp(causal / count) } }),
  };
}
