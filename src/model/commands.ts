// The model's CLI commands, for src/cli.ts to dispatch to:
//
//   linattn init-model --config CONFIG.json --out DIR [--seed N]
//   linattn generate --model DIR --prompt "…" [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
//                    [--seed S] [--device gpu|cpu] [--speculate ngram|medusa|oracle|draft:DIR [--tree SPEC] [--max-nodes N]]
//   (--speculate: src/speculative/command.ts; docs/speculative.md)
//
// Each returns an exit code. Everything that can fail on the user's files (config, variant, tokenizer,
// checkpoint, device) is loaded and checked before the first byte of output, so a bad input prints one
// error naming the file and the field or tensor, exits non-zero, and leaves no partial output.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Program } from '../ir/types.ts';
import { type Gpu } from '../runtime/device.ts';
import { getDevice } from '../runtime/dawn.ts';
import { loadConfig, type ModelConfig } from './config.ts';
import { cpuAttentionSessionFromVariant } from './cpu-attention.ts';
import { cpuModel } from './cpu-forward.ts';
import { ModelFileError } from './errors.ts';
import { generateCpu, generateGpu, type GenerateResult } from './generate.ts';
import type { GpuAttentionFactory } from '../runtime/gpu-attention.ts';
import { GpuModel } from './gpu-model.ts';
import { initModel } from './init-model.ts';
import { loadTokenizer } from './tokenizer.ts';
import { loadModelVariant } from './variant.ts';
import { loadWeights } from './weights.ts';
import { parseSpeculateArgs, runSpeculativeGenerate, SpeculateUsageError } from '../speculative/command.ts';

export interface CommandIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const processIo: CommandIo = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
};

/** A usage mistake (exit code 2), as opposed to a bad file or a failed run (exit code 1). */
class UsageError extends Error {}

function parse(argv: readonly string[], options: Record<string, { type: 'string' | 'boolean' }>, usage: string) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\nusage: ${usage}`);
  }
}

function required(values: Record<string, unknown>, name: string, usage: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required\nusage: ${usage}`);
  return v;
}

function number(values: Record<string, unknown>, name: string, check: (n: number) => boolean, want: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${want}, got ${JSON.stringify(v)}`);
  return n;
}

function fail(io: CommandIo, command: string, e: unknown): number {
  if (e instanceof UsageError || e instanceof SpeculateUsageError) {
    io.stderr(`linattn ${command}: ${e.message}\n`);
    return 2;
  }
  io.stderr(`linattn ${command}: ${e instanceof Error ? e.message : String(e)}\n`);
  return 1;
}

const INIT_USAGE = 'linattn init-model --config CONFIG.json --out DIR [--seed N]';

/** Writes a randomly initialised checkpoint directory for CONFIG.json (see init-model.ts). */
export async function initModelCommand(argv: readonly string[], io: CommandIo = processIo): Promise<number> {
  try {
    const values = parse(argv, { config: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' } }, INIT_USAGE);
    const configPath = required(values, 'config', INIT_USAGE);
    const out = required(values, 'out', INIT_USAGE);
    const seed = number(values, 'seed', Number.isSafeInteger, 'an integer') ?? 0;
    const config = loadConfig(configPath);
    const variant = loadModelVariant(config);
    const result = initModel(configPath, out, seed, variant.params);
    const params = variant.params.map((p) => `${p.name} [${p.shape.join(', ')}] (${p.init ?? 'normal'})`).join(', ') || 'none';
    io.stdout(
      `wrote ${result.dir}: ${result.files.join(', ')}\n` +
        `  ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads of ${config.headDim}, vocab ${config.vocabSize}, seed ${seed}\n` +
        `  variant ${variant.program.name} (${config.attention.variant}), parameters per layer: ${params}\n`,
    );
    return 0;
  } catch (e) {
    return fail(io, 'init-model', e);
  }
}

/** What a GPU attention factory may need once the model is known. */
export interface AttentionContext {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  /** The variant compiled with the config's options, after the pass pipeline (terms classified). */
  readonly program: Program;
  /** The same variant as written, before any pass. */
  readonly source: Program;
}

export interface GenerateCommandOptions {
  /** The GPU attention layers (the compiled variant); or give `prepareAttention`. */
  readonly attention?: GpuAttentionFactory;
  /** Makes the factory once the device, config and variant are known (takes precedence over `attention`). */
  readonly prepareAttention?: (ctx: AttentionContext) => GpuAttentionFactory | Promise<GpuAttentionFactory>;
  readonly io?: CommandIo;
}

const GENERATE_USAGE =
  'linattn generate --model DIR --prompt "…" [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device gpu|cpu]' +
  ' [--speculate ngram|medusa|oracle|draft:DIR [--tree SPEC] [--max-nodes N]]';

/** Streams a continuation of --prompt to stdout, then prints prefill and decode tokens/s to stderr. */
export async function generateCommand(argv: readonly string[], options: GenerateCommandOptions = {}): Promise<number> {
  const io = options.io ?? processIo;
  let model: GpuModel | undefined;
  try {
    const values = parse(
      argv,
      {
        model: { type: 'string' }, prompt: { type: 'string' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' },
        'top-k': { type: 'string' }, 'top-p': { type: 'string' }, seed: { type: 'string' }, device: { type: 'string' },
        speculate: { type: 'string' }, tree: { type: 'string' }, 'max-nodes': { type: 'string' },
      },
      GENERATE_USAGE,
    );
    const dir = resolve(required(values, 'model', GENERATE_USAGE));
    const prompt = values['prompt'];
    if (typeof prompt !== 'string') throw new UsageError(`--prompt is required\nusage: ${GENERATE_USAGE}`);
    const maxTokens = number(values, 'max-tokens', (n) => Number.isInteger(n) && n >= 1, 'a positive integer') ?? 64;
    const temperature = number(values, 'temperature', (n) => n >= 0, 'a number >= 0') ?? 0;
    const topK = number(values, 'top-k', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer') ?? 0;
    const topP = number(values, 'top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]') ?? 1;
    const seed = number(values, 'seed', Number.isSafeInteger, 'an integer') ?? 0;
    const device = (values['device'] as string | undefined) ?? 'gpu';
    if (device !== 'gpu' && device !== 'cpu') throw new UsageError(`--device must be gpu or cpu, got ${JSON.stringify(device)}`);
    const speculate = parseSpeculateArgs(values);
    if (device === 'gpu' && !options.attention && !options.prepareAttention) {
      throw new Error('no GPU attention for the variant was given to generateCommand; use --device cpu');
    }

    // Everything the run needs, checked before any output.
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFileError(dir, 'directory', 'model directory not found');
    const config = loadConfig(join(dir, 'config.json'));
    const tokenizer = loadTokenizer(config);
    const variant = loadModelVariant(config);
    const weights = loadWeights(config, join(dir, 'model.safetensors'), variant.params);
    const ids = [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...tokenizer.encode(prompt)];
    if (ids.length === 0) throw new UsageError('--prompt is empty and the tokenizer has no BOS token to start from');
    const max = config.maxPositionEmbeddings;
    if (max !== undefined && ids.length + maxTokens > max) {
      throw new UsageError(`prompt (${ids.length} tokens) + --max-tokens ${maxTokens} exceed max_position_embeddings ${max} of ${config.file}`);
    }
    const sampling = { temperature, topK, topP };

    if (speculate) {
      const prepare = options.prepareAttention ?? (() => options.attention!);
      await runSpeculativeGenerate({
        args: speculate, device, config, variant, weights, tokenizer, ids, maxTokens, sampling, seed,
        stdout: io.stdout, stderr: io.stderr,
        ...(device === 'gpu' && { gpu: await getDevice(), prepareAttention: prepare }),
      });
      return 0;
    }
    let result: GenerateResult;
    let where: string;
    if (device === 'gpu') {
      const gpu = await getDevice();
      const factory = options.prepareAttention
        ? await options.prepareAttention({ gpu, config, program: variant.compiled, source: variant.program })
        : options.attention!;
      model = await GpuModel.create(gpu, config, weights, factory);
      where = gpu.adapterName;
      result = await generateGpu(model, tokenizer, [ids], { maxTokens, sampling, seed, onText: (text) => io.stdout(text) });
    } else {
      const cpu = cpuModel(config, weights);
      const attention = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      where = 'CPU float64';
      result = generateCpu(cpu, attention, tokenizer, [ids], { maxTokens, sampling, seed, onText: (text) => io.stdout(text) });
    }
    io.stdout('\n');
    const decode = result.decodeTokensPerS === undefined
      ? 'decode: 0 tokens'
      : `decode: ${result.tokens[0].length - 1} tokens, ${result.decodeTokensPerS.toFixed(1)} tokens/s`;
    io.stderr(
      `prefill: ${result.promptTokens} tokens, ${result.prefillTokensPerS.toFixed(1)} tokens/s; ${decode}` +
        ` (${where}, ${result.stopReason === 'eos' ? 'stopped at EOS' : `max ${maxTokens} tokens`})\n`,
    );
    return 0;
  } catch (e) {
    return fail(io, 'generate', e);
  } finally {
    await model?.destroy();
  }
}
