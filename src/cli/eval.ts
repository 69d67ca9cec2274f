// `linattn eval --model DIR --data FILE… [--json] [--device gpu|cpu] [--causal]`: a model's mean cross-entropy and
// perplexity on text (src/model/train/evaluate.ts), teacher-forced, and with --causal also each position predicted
// from its prefix alone (what a noncausal model's generation sees).
import type { PrepareAttention } from '../model/attention-context.ts';
import { DataFileError } from '../model/train/data.ts';
import { evaluateModel } from '../model/train/evaluate.ts';
import { HF_ATTENTIONS } from '../model/hf-config.ts';
import { compiledAttentionFactory } from '../runtime/compiled-attention.ts';
import { getDevice } from '../runtime/dawn.ts';
import { choice, number, required, UsageError } from './args.ts';
import type { Command } from './command.ts';

const compiledAttention: PrepareAttention = ({ gpu, config, program }) => compiledAttentionFactory(gpu, program, config.numHeads, config.headDim);

export function evalWith(prepareAttention: PrepareAttention): Command {
  return {
    name: 'eval',
    synopsis: 'linattn eval --model DIR --data FILE… [--json] [--device gpu|cpu] [--block T] [--batch B] [--held-out F] [--windows N] [--causal] [--attention KIND]',
    summary: 'Measure a model\'s loss (mean nats per token) and perplexity on text files.',
    help: [
      'The text is read as consecutive windows of --block tokens, each token predicted from the ones before it in its',
      'window (a tail shorter than a window is left out).',
      '',
      '  --model DIR     config.json, model.safetensors and the tokenizer (required): linattn\'s layout or a Hugging Face',
      '                  LLaMA directory',
      '  --data FILE…    UTF-8 text files, repeatable (required)',
      '  --json          print one JSON object: {"loss", "perplexity", "tokens", "block", "device"}, with --causal also',
      '                  "causal_loss" and "causal_perplexity"',
      '  --device D      gpu (default: the compiled variant) or cpu (the float64 model)',
      '  --block T       tokens per window (default: the block the model was trained with, else 256)',
      '  --batch B       windows per forward pass (default 8)',
      '  --held-out F    only the last fraction F of the tokens: what linattn train held out (its 0.1), so that',
      '                  --data the run trained on evaluates its validation text',
      '  --windows N     the first N windows only (default: all)',
      '  --causal        also the causally consistent loss: every position predicted from its prefix alone (each',
      '                  prefix runs as a sequence of its own: T forward passes per batch). For a causal model it equals',
      '                  the teacher-forced loss; a noncausal one (leaky_dwconv) reads later tokens when teacher-forced',
      `  --attention K   Hugging Face directories: auto (default), ${HF_ATTENTIONS.join(', ')}`,
    ].join('\n'),
    options: {
      model: { type: 'string' }, data: { type: 'string', multiple: true }, json: { type: 'boolean' }, device: { type: 'string' },
      block: { type: 'string' }, batch: { type: 'string' }, windows: { type: 'string' }, 'held-out': { type: 'string' }, causal: { type: 'boolean' }, attention: { type: 'string' },
    },
    async run({ values }, io) {
      const model = required(values, 'model');
      const data = (values['data'] as string[] | undefined) ?? [];
      if (data.length === 0) throw new UsageError('--data FILE is required');
      const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
      const posInt = (n: number) => Number.isInteger(n) && n >= 1;
      const block = number(values, 'block', posInt, 'a positive integer');
      const batch = number(values, 'batch', posInt, 'a positive integer');
      const windows = number(values, 'windows', posInt, 'a positive integer');
      const heldOut = number(values, 'held-out', (x) => x > 0 && x < 1, 'a fraction in (0, 1)');
      const attention = choice(values, 'attention', ['auto', ...HF_ATTENTIONS] as const, 'auto');
      const causal = values['causal'] === true;
      try {
        const r = await evaluateModel({
          model, data, device, causal, attention, ...(block !== undefined && { block }), ...(batch !== undefined && { batch }), ...(windows !== undefined && { windows }), ...(heldOut !== undefined && { heldOut }),
          gpu: async () => ({ gpu: await getDevice(), prepareAttention }),
        });
        const c = r.causal;
        if (values['json'] === true) {
          io.stdout(`${JSON.stringify({ loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, block: r.block, device: r.device, ...(c && { causal_loss: c.loss, causal_perplexity: c.perplexity }) })}\n`);
        } else {
          io.stdout(`loss ${r.loss.toFixed(4)} nats/token, perplexity ${r.perplexity.toFixed(3)} over ${r.tokens} tokens (windows of ${r.block}; ${r.device})\n`);
          if (c) io.stdout(`causally consistent (each position from its prefix alone): loss ${c.loss.toFixed(4)} nats/token, perplexity ${c.perplexity.toFixed(3)}\n`);
        }
        return 0;
      } catch (e) {
        if (e instanceof DataFileError) {
          io.stderr(`linattn eval: ${e.message}\n`);
          return 1;
        }
        throw e;
      }
    },
  };
}

export const evalCommand: Command = evalWith(compiledAttention);
