// `linattn logits --model DIR --tokens 5,17,300 --out LOGITS.safetensors`: the model's logits at every position
// of one token sequence, from fresh state, as tensor `logits` [n, vocab] (float32): on the GPU (the chunked
// prefill form) or with the float64 CPU model. DIR is ours (init-model) or a Hugging Face LLaMA directory.
import { writeSafetensors } from '../io/safetensors.ts';
import { cpuAttentionFromVariant } from '../model/cpu-attention.ts';
import { cpuForward, cpuModel } from '../model/cpu-forward.ts';
import { GpuModel } from '../model/gpu-model.ts';
import { HF_ATTENTIONS } from '../model/hf-config.ts';
import { loadModelDir, type LoadedModel } from '../model/model-dir.ts';
import { compiledAttentionFactory } from '../runtime/compiled-attention.ts';
import { getDevice } from '../runtime/dawn.ts';
import { choice, required, UsageError } from './args.ts';
import type { Command } from './command.ts';

/** `5,17,300` → token ids (each a non-negative integer). */
export function parseTokenList(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => !/^\d+$/.test(s))) throw new UsageError(`--tokens takes comma-separated token ids (e.g. 5,17,300), got '${text}'`);
  return parts.map(Number);
}

export const logitsCommand: Command = {
  name: 'logits',
  synopsis: 'linattn logits --model DIR --tokens 5,17,300 --out LOGITS.safetensors [--device gpu|cpu] [--attention KIND]',
  summary: 'Write a model\'s logits at every position of a token sequence (tensor `logits` [n, vocab]).',
  help: [
    'Runs the whole sequence from fresh state and writes float32 logits [n, vocab] under the name `logits`.',
    '',
    '  --model DIR       a model directory: ours (linattn init-model) or a Hugging Face LLaMA checkpoint',
    '                    (config.json, model.safetensors or shards with model.safetensors.index.json)',
    '  --tokens IDS      comma-separated token ids (required)',
    '  --out FILE        where the logits go (required)',
    '  --device D        gpu (default) or cpu (the float64 model, the oracle)',
    `  --attention KIND  Hugging Face directories: auto (default: read from the checkpoint), ${HF_ATTENTIONS.join(', ')}`,
  ].join('\n'),
  options: { model: { type: 'string' }, tokens: { type: 'string' }, out: { type: 'string' }, device: { type: 'string' }, attention: { type: 'string' } },
  async run({ values }, io) {
    const dir = required(values, 'model', 'DIR is required');
    const tokens = parseTokenList(required(values, 'tokens', 'IDS is required (e.g. --tokens 5,17,300)'));
    const out = required(values, 'out', 'LOGITS.safetensors is required');
    const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
    const attention = choice(values, 'attention', ['auto', ...HF_ATTENTIONS] as const, 'auto');
    // On the GPU each weight is read from its file when uploaded, so a large model passes through the host once.
    const m = loadModelDir(dir, { attention, lazy: device === 'gpu' });
    const V = m.config.vocabSize;
    tokens.forEach((id, k) => {
      if (id >= V) throw new UsageError(`--tokens: id ${id} (position ${k}) is outside the vocabulary of ${m.config.file} (vocab_size ${V})`);
    });
    const max = m.config.maxPositionEmbeddings;
    if (max !== undefined && tokens.length > max) throw new UsageError(`--tokens: ${tokens.length} tokens exceed max_position_embeddings ${max} of ${m.config.file}`);
    const logits = device === 'cpu' ? cpuLogits(m, tokens) : await gpuLogits(m, tokens);
    const variant = m.attention ? `${m.attention.kind} (${m.attention.because})` : m.variant.program.name;
    writeSafetensors(out, { logits: { shape: [tokens.length, V], data: logits } }, { model: dir, device, attention: variant });
    io.stdout(`wrote ${out}: logits [${tokens.length}, ${V}] (${device}, ${m.format === 'huggingface' ? 'Hugging Face' : 'linattn'} model, attention ${variant})\n`);
    return 0;
  },
};

function cpuLogits(m: LoadedModel, tokens: readonly number[]): Float32Array {
  const cpu = cpuModel(m.config, m.weights);
  return Float32Array.from(cpuForward(cpu, [tokens], cpuAttentionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention))).logits.data);
}

async function gpuLogits(m: LoadedModel, tokens: readonly number[]): Promise<Float32Array> {
  const gpu = await getDevice();
  const factory = await compiledAttentionFactory(gpu, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: Math.max(tokens.length, 1) });
  const model = await GpuModel.create(gpu, m.config, m.weights, factory);
  try {
    return await model.forwardLogits([tokens]);
  } finally {
    await model.destroy();
  }
}
