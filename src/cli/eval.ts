// `linattn eval --model DIR --data FILE… [--json] [--device gpu|cpu]`: a model's mean cross-entropy and perplexity
// on text (src/model/train/evaluate.ts).
import type { PrepareAttention } from '../model/attention-context.ts';
import { DataFileError } from '../model/train/data.ts';
import { evaluateModel } from '../model/train/evaluate.ts';
import { compiledAttentionFactory } from '../runtime/compiled-attention.ts';
import { getDevice } from '../runtime/dawn.ts';
import { choice, number, required, UsageError } from './args.ts';
import type { Command } from './command.ts';

const compiledAttention: PrepareAttention = ({ gpu, config, program }) => compiledAttentionFactory(gpu, program, config.numHeads, config.headDim);

export function evalWith(prepareAttention: PrepareAttention): Command {
  return {
    name: 'eval',
    synopsis: 'linattn eval --model DIR --data FILE… [--json] [--device gpu|cpu] [--block T] [--batch B]',
    summary: 'Measure a model\'s loss (mean nats per token) and perplexity on text files.',
    help: [
      'The text is read as consecutive windows of --block tokens, each token predicted from the ones before it in its',
      'window (a tail shorter than a window is left out).',
      '',
      '  --model DIR     config.json, model.safetensors and the tokenizer (required)',
      '  --data FILE…    UTF-8 text files, repeatable (required)',
      '  --json          print one JSON object: {"loss", "perplexity", "tokens", "block", "device"}',
      '  --device D      gpu (default: the compiled variant) or cpu (the float64 model)',
      '  --block T       tokens per window (default: the block the model was trained with, else 256)',
      '  --batch B       windows per forward pass (default 8)',
    ].join('\n'),
    options: {
      model: { type: 'string' }, data: { type: 'string', multiple: true }, json: { type: 'boolean' }, device: { type: 'string' },
      block: { type: 'string' }, batch: { type: 'string' },
    },
    async run({ values }, io) {
      const model = required(values, 'model');
      const data = (values['data'] as string[] | undefined) ?? [];
      if (data.length === 0) throw new UsageError('--data FILE is required');
      const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
      const posInt = (n: number) => Number.isInteger(n) && n >= 1;
      const block = number(values, 'block', posInt, 'a positive integer');
      const batch = number(values, 'batch', posInt, 'a positive integer');
      try {
        const r = await evaluateModel({
          model, data, device, ...(block !== undefined && { block }), ...(batch !== undefined && { batch }),
          gpu: async () => ({ gpu: await getDevice(), prepareAttention }),
        });
        if (values['json'] === true) io.stdout(`${JSON.stringify({ loss: r.loss, perplexity: r.perplexity, tokens: r.tokens, block: r.block, device: r.device })}\n`);
        else io.stdout(`loss ${r.loss.toFixed(4)} nats/token, perplexity ${r.perplexity.toFixed(3)} over ${r.tokens} tokens (windows of ${r.block}; ${r.device})\n`);
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
