// `linattn generate --model DIR --prompt "…"`: stream a continuation of the prompt, then prefill and decode
// tokens/s; with --speculate, plain and speculative decoding of the same prompt (src/speculative/run-speculative.ts).
// --prompt given several times: one batch (prompts of any lengths), each continuation printed when all are done;
// with --speculate, batch speculation (src/speculative/run-speculative-batch.ts).
// Everything that can fail on the user's files (config, variant, tokenizer, checkpoint, device) is loaded and
// checked before the first byte of output, so a bad input prints one error naming the file and the field or
// tensor, exits non-zero, and leaves no partial output.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { PrepareAttention } from '../model/attention-context.ts';
import { cpuAttentionSessionFromVariant } from '../model/cpu-attention.ts';
import { cpuModel } from '../model/cpu-forward.ts';
import { generateCpu, generateGpu, type GenerateResult } from '../model/generate.ts';
import { generateContinuousGpu } from '../model/generate-continuous.ts';
import { GpuModel } from '../model/gpu-model.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { HF_ATTENTIONS } from '../model/hf-config.ts';
import { loadModelDir } from '../model/model-dir.ts';
import { compiledAttentionFactory } from '../runtime/compiled-attention.ts';
import { getDevice } from '../runtime/dawn.ts';
import { runSpeculativeGenerate } from '../speculative/run-speculative.ts';
import { runSpeculativeBatch } from '../speculative/run-speculative-batch.ts';
import { choice, number, required, str, UsageError } from './args.ts';
import type { Command } from './command.ts';
import { parseSpeculateArgs } from './speculate-args.ts';

/** The model's attention layers: the compiled variant of its config. */
const compiledAttention: PrepareAttention = ({ gpu, config, program, onPlanChoice }) =>
  compiledAttentionFactory(gpu, program, config.numHeads, config.headDim, {
    ...(config.maxPositionEmbeddings !== undefined && { maxLength: config.maxPositionEmbeddings }),
    ...(onPlanChoice && { onChoice: onPlanChoice }),
  });

/** `linattn generate` whose GPU attention layers come from `prepare` (tests: a reference kernel). */
export function generateWith(prepare: PrepareAttention): Command {
  return {
    name: 'generate',
    synopsis:
      'linattn generate --model DIR --prompt "…" [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device gpu|cpu]\n' +
      '                 [--attention KIND] [--medusa DIR] [--verbose] [--prompts-file FILE] [--batch N]\n' +
      '                 [--speculate ngram|lookup|adaptive|medusa|oracle|draft:DIR [--tree SPEC|auto] [--max-nodes N] [--chain-steps R] [--auto-state FILE] [--explore-share X]\n' +
      '                  [--batch-credit makespan|slower-half|tokens]]',
    summary: 'Continue a prompt with a model directory (linattn init-model makes one), streaming the text.',
    help: [
      'Prints the text on stdout, then prefill and decode tokens/s on stderr.',
      '',
      '  --model DIR          config.json, model.safetensors and the tokenizer (required); linattn init-model\'s',
      '                       layout or a Hugging Face LLaMA directory (shards with model.safetensors.index.json too)',
      `  --attention KIND     Hugging Face directories: auto (default), ${HF_ATTENTIONS.join(', ')}`,
      '  --medusa DIR         Medusa heads in the Medusa project\'s layout (medusa_lm_head.safetensors and its',
      '                       config.json) for --speculate medusa; a .pt pickle is refused with how to convert it',
      '  --prompt TEXT        required; several --prompt: one batch (any lengths), each continuation printed after a',
      '                       --- i of n --- line once all are done',
      '  --prompts-file FILE  more prompts, one a line (empty lines skipped), after any --prompt; a FILE.jsonl holds',
      '                       {"prompt": "…", "max_tokens": N} a line, max_tokens (optional) that prompt\'s own budget',
      '  --batch N            sequences decoding together (default: every prompt in one batch); with more prompts than',
      '                       N, continuous batching: a sequence that finishes takes the next prompt, prefilled in its',
      '                       place while the others decode on (on the GPU; greedy, each prompt gets the tokens it would',
      '                       alone); with --speculate, each sequence verifying its own tree, against plain continuous',
      '                       batching of the same prompts',
      '  --max-tokens N       default 64 (a prompt\'s max_tokens in a .jsonl prompts file comes first)',
      '  --temperature T      0 (default) is greedy; with --top-k K (0: all) and --top-p P (1: all)',
      '  --seed S             default 0',
      '  --device D           gpu (default) or cpu (the float64 model)',
      '  -v, --verbose        also print the attention layers\' prefill plan choice (schedule, prologue, estimates)',
      '  --speculate SOURCE   speculative decoding with drafts from ngram (prompt lookup, ranked candidates), lookup',
      '                       (prompt lookup as one chain copied from the latest longest match), adaptive (an online',
      '                       tri-gram table whose branches follow observed acceptance), medusa (the checkpoint\'s',
      '                       heads), oracle (plain decoding replayed) or draft:DIR (a small model); reports the',
      '                       mean accepted length and the speed-up over plain decoding of the same prompt; several',
      '                       --prompt: batch speculation (not draft:DIR; a fixed tree, by default the chain of the',
      '                       draft\'s depth: Medusa\'s heads, else 4)',
      '  --tree SPEC          the token tree: [[0],[0,0],[1]] (static), top:K, best:K or chain:N (docs/speculative.md);',
      '                       auto (the default) measures plain decoding and a few trees as it runs and uses the',
      '                       fastest, so speculation that does not pay falls back to plain decoding; greedy',
      '                       medusa (and, for one prompt, lookup) on the GPU measure their chains run 4 steps per submit',
      '                       (chain:K×4), a chosen chain running on while auto keeps choosing it',
      '  --max-nodes N        draft nodes per step (default: the static tree\'s size, or 16; auto: of its largest tree)',
      '  --chain-steps R      greedy --speculate medusa with a static --tree, or lookup with --tree chain:N: R tree',
      '                       steps per submit, drafting and acceptance on the GPU, one readback per R steps (default: off)',
      '  --auto-state FILE    --tree auto: start from the measurements in FILE (written by an earlier run; nothing measured',
      '                       is explored again) and write this run\'s back, so repeated generations explore once; by',
      '                       default on a hardware GPU a file in ~/.cache/linattn/speculation ($LINATTN_CACHE_DIR) keyed by',
      '                       the model, draft, adapter, trees and sequences (and continuous batching); none: afresh, nothing kept',
      '  --explore-share X    --tree auto: past its first decision, auto explores a tree only while the trees it explored',
      '                       took at most this share of the run\'s time (default 1: each option up to twice, whatever',
      '                       that costs), so that exploring costs a run at most about that share',
      '  --batch-credit C     --tree auto with several --prompt: what a decision is credited with: slower-half (default:',
      '                       what each step takes off the mean remaining budget of the slower half of the sequences,',
      '                       times the live ones: the batch ends with its slowest), makespan (off the longest) or tokens',
      '',
      'On a hardware GPU plain decoding and the trees first run once, untimed, on the prompt (their pipelines and recordings',
      'are built then, not inside the timed runs or auto\'s first decisions); LINATTN_SPECULATE_WARMUP=0 skips that, =1 forces it.',
    ].join('\n'),
    options: {
      model: { type: 'string' }, prompt: { type: 'string', multiple: true }, 'prompts-file': { type: 'string' }, batch: { type: 'string' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' },
      'top-k': { type: 'string' }, 'top-p': { type: 'string' }, seed: { type: 'string' }, device: { type: 'string' },
      speculate: { type: 'string' }, tree: { type: 'string' }, 'max-nodes': { type: 'string' }, 'chain-steps': { type: 'string' }, 'auto-state': { type: 'string' }, 'explore-share': { type: 'string' }, 'batch-credit': { type: 'string' }, attention: { type: 'string' }, medusa: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
    },
    async run({ values }, io) {
      // -v: the attention layers' prefill plan decision on stderr, where the throughput lines go (stdout is the text).
      const prepareAttention: PrepareAttention = values.verbose
        ? (ctx) => prepare({ ...ctx, onPlanChoice: (why) => io.stderr(`attention prefill plan (${ctx.program.name}, fused chunk kernel): ${why}\n`) })
        : prepare;
      const dir = resolve(required(values, 'model'));
      const requests = [...((values.prompt as string[] | undefined) ?? []).map((text): PromptRequest => ({ text })), ...promptsFile(str(values, 'prompts-file'))];
      if (requests.length === 0) throw new UsageError('--prompt (or --prompts-file) is required');
      const prompts = requests.map((r) => r.text);
      const givenMax = number(values, 'max-tokens', (n) => Number.isInteger(n) && n >= 1, 'a positive integer') ?? 64;
      // A prompt's own budget (a .jsonl prompts file's "max_tokens") or --max-tokens; a lone prompt's is the run's.
      const budgets = requests.map((r) => r.maxTokens ?? givenMax);
      const ownBudgets = budgets.some((n) => n !== givenMax);
      const maxTokens = prompts.length === 1 ? budgets[0] : givenMax;
      const temperature = number(values, 'temperature', (n) => n >= 0, 'a number >= 0') ?? 0;
      const topK = number(values, 'top-k', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer') ?? 0;
      const topP = number(values, 'top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]') ?? 1;
      const seed = number(values, 'seed', Number.isSafeInteger, 'an integer') ?? 0;
      const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
      const speculate = parseSpeculateArgs(values);
      const slots = number(values, 'batch', (n) => Number.isInteger(n) && n >= 1, 'a positive integer');
      const continuous = slots !== undefined && slots < prompts.length;
      if (continuous && device === 'cpu') throw new UsageError(`--batch ${slots} with ${prompts.length} prompts (continuous batching) runs on the GPU: not with --device cpu`);

      // Everything the run needs, checked before any output. On the GPU a Hugging Face checkpoint's weights are read
      // from their files as they are uploaded (lazy), so a large model passes through the host once.
      const medusaDir = str(values, 'medusa');
      const { config, variant, weights } = loadModelDir(dir, {
        attention: choice(values, 'attention', ['auto', ...HF_ATTENTIONS] as const, 'auto'),
        ...(medusaDir !== undefined && { medusa: resolve(medusaDir) }),
        lazy: device === 'gpu',
      });
      const tokenizer = loadTokenizer(config);
      const batch = prompts.map((prompt, i) => {
        const ids = [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...tokenizer.encode(prompt)];
        const which = prompts.length > 1 ? ` ${i + 1}` : '';
        if (ids.length === 0) throw new UsageError(`--prompt${which} is empty and the tokenizer has no BOS token to start from`);
        const max = config.maxPositionEmbeddings;
        if (max !== undefined && ids.length + budgets[i] > max) {
          const asked = requests[i].maxTokens !== undefined ? `its max_tokens ${budgets[i]} (${requests[i].where})` : `--max-tokens ${budgets[i]}`;
          throw new UsageError(`prompt${which} (${ids.length} tokens) + ${asked} exceed max_position_embeddings ${max} of ${config.file}`);
        }
        return ids;
      });
      const ids = batch[0];
      const sampling = { temperature, topK, topP };

      if (speculate && batch.length > 1) {
        await runSpeculativeBatch({
          args: speculate, device, config, variant, weights, tokenizer, ids, prompts: batch, maxTokens, sampling, seed,
          ...(continuous && { slots }), ...(ownBudgets && { budgets }),
          stdout: io.stdout, stderr: io.stderr,
          ...(device === 'gpu' && { gpu: await getDevice(), prepareAttention }),
          ...(process.env.LINATTN_SPECULATE_WARMUP !== undefined && { warmUp: !['', '0', 'false'].includes(process.env.LINATTN_SPECULATE_WARMUP) }),
        });
        return 0;
      }
      if (speculate) {
        await runSpeculativeGenerate({
          args: speculate, device, config, variant, weights, tokenizer, ids, maxTokens, sampling, seed,
          stdout: io.stdout, stderr: io.stderr,
          ...(device === 'gpu' && { gpu: await getDevice(), prepareAttention }),
          ...(process.env.LINATTN_SPECULATE_WARMUP !== undefined && { warmUp: !['', '0', 'false'].includes(process.env.LINATTN_SPECULATE_WARMUP) }),
        });
        return 0;
      }
      // Continuous batching, or one batch whose prompts ask for budgets of their own (each sequence stops at its own).
      if (continuous || (ownBudgets && device === 'gpu' && batch.length > 1)) {
        const gpu = await getDevice();
        const model = await GpuModel.create(gpu, config, weights, await prepareAttention({ gpu, config, program: variant.compiled, source: variant.program }), { timestamps: false });
        const through = slots !== undefined && continuous ? slots : batch.length;
        try {
          const r = await generateContinuousGpu(model, tokenizer, batch, { slots: through, maxTokens: budgets, sampling, seed });
          for (const [s, text] of r.texts.entries()) io.stdout(`--- ${s + 1} of ${batch.length} ---\n${text}\n`);
          const made = r.tokens.reduce((n, t) => n + t.length, 0);
          io.stderr(
            `${continuous ? 'continuous batching' : 'one batch'}: ${batch.length} prompts (${r.promptTokens} tokens) through ${through} sequences, ${r.refills} prefilled in a finished one's place; ` +
              `${made} new tokens in ${r.steps} steps, ${r.tokensPerS.toFixed(1)} tokens/s, ${(100 * r.occupancy).toFixed(0)} % of the decode steps' picks new tokens ` +
              `(${gpu.adapterName}, ${r.tokens.every((t, i) => t.length === budgets[i]) ? (ownBudgets ? 'every prompt its max_tokens' : `max ${maxTokens} tokens`) : 'some stopped at EOS'})\n`,
          );
        } finally {
          await model.destroy();
        }
        return 0;
      }
      let result: GenerateResult;
      let where: string;
      let model: GpuModel | undefined;
      try {
        if (device === 'gpu') {
          const gpu = await getDevice();
          // No timestamps: this command reports tokens/s only, and each step's query writes, resolve and copy cost
          // the pipelined loop (call 48: 2,420 against 2,301 tokens/s at batch 1; bench/decode-pipeline.ts).
          model = await GpuModel.create(gpu, config, weights, await prepareAttention({ gpu, config, program: variant.compiled, source: variant.program }), { timestamps: false });
          where = gpu.adapterName;
          result = await generateGpu(model, tokenizer, batch, { maxTokens, sampling, seed, ...(batch.length === 1 && { onText: (text: string) => io.stdout(text) }) });
        } else {
          const cpu = cpuModel(config, weights);
          const attention = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
          where = 'CPU float64';
          result = generateCpu(cpu, attention, tokenizer, batch, { maxTokens: Math.max(...budgets), sampling, seed, ...(batch.length === 1 && { onText: (text: string) => io.stdout(text) }) });
          // Budgets of their own: each sequence's first max_tokens (a sequence's tokens do not depend on the others').
          if (ownBudgets) {
            const tokens = result.tokens.map((t, i) => t.slice(0, budgets[i]));
            result = { ...result, tokens, texts: tokens.map((t) => tokenizer.decode(t.filter((id) => id !== tokenizer.eos))) };
          }
        }
      } finally {
        await model?.destroy();
      }
      if (batch.length === 1) io.stdout('\n');
      else for (const [s, text] of result.texts.entries()) io.stdout(`--- ${s + 1} of ${batch.length} ---\n${text}\n`);
      const decoded = result.tokens.reduce((n, t) => n + t.length - 1, 0);
      const decode = result.decodeTokensPerS === undefined
        ? 'decode: 0 tokens'
        : `decode: ${decoded} tokens, ${result.decodeTokensPerS.toFixed(1)} tokens/s`;
      io.stderr(
        `prefill: ${result.promptTokens} tokens${batch.length > 1 ? ` (${batch.length} prompts)` : ''}, ${result.prefillTokensPerS.toFixed(1)} tokens/s; ${decode}` +
          ` (${where}, ${result.stopReason === 'eos' ? 'stopped at EOS' : `max ${maxTokens} tokens`})\n`,
      );
      return 0;
    },
  };
}

export const generateCommand: Command = generateWith(compiledAttention);

/** A prompt and, from a .jsonl prompts file, its own budget and where it was given (FILE:LINE). */
interface PromptRequest {
  readonly text: string;
  readonly maxTokens?: number;
  readonly where?: string;
}

/**
 * The prompts in FILE (none without a file), one a line, empty lines skipped. A FILE ending in .jsonl holds a JSON object
 * a line, {"prompt": "…"} with an optional "max_tokens" (a positive integer: that prompt's budget, for requests asking
 * for different lengths); a bad line is named by FILE:LINE.
 */
function promptsFile(file: string | undefined): PromptRequest[] {
  if (file === undefined) return [];
  if (!existsSync(file)) throw new UsageError(`--prompts-file ${file}: no such file`);
  const lines = readFileSync(file, 'utf8').split(/\r?\n/).map((line, i) => ({ line, at: `${file}:${i + 1}` })).filter((l) => l.line.trim() !== '');
  if (lines.length === 0) throw new UsageError(`--prompts-file ${file}: no prompts (every line is empty)`);
  if (!file.endsWith('.jsonl')) return lines.map((l) => ({ text: l.line }));
  return lines.map(({ line, at }) => {
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new UsageError(`${at}: not a JSON object (${(e as Error).message}); a .jsonl prompts file holds {"prompt": "…", "max_tokens": N} a line`);
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new UsageError(`${at}: not a JSON object; a .jsonl prompts file holds {"prompt": "…", "max_tokens": N} a line`);
    const { prompt, max_tokens: max, ...rest } = o as Record<string, unknown>;
    const unknown = Object.keys(rest);
    if (unknown.length) throw new UsageError(`${at}: unknown field "${unknown[0]}" (a line takes "prompt" and "max_tokens")`);
    if (typeof prompt !== 'string') throw new UsageError(`${at}: "prompt" must be a string`);
    if (max !== undefined && !(typeof max === 'number' && Number.isInteger(max) && max >= 1)) throw new UsageError(`${at}: "max_tokens" must be a positive integer, got ${JSON.stringify(max)}`);
    return { text: prompt, ...(max !== undefined && { maxTokens: max }), where: at };
  });
}
