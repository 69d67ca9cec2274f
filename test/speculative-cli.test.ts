// `linattn generate --speculate …`: a run prints the speculative text and a report naming mean accepted
// length, tokens/s and the speed-up over plain decoding of the same prompt; bad options and checkpoints
// exit non-zero with a message before any output.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execute, type CommandIo } from '../src/cli/command.ts';
import { generateWith } from '../src/cli/generate.ts';
import { initModelCommand } from '../src/cli/init-model.ts';
import type { AttentionContext } from '../src/model/attention-context.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { TINY } from './helpers/speculative.ts';

const root = mkdtempSync(join(tmpdir(), 'speculative-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function capture(): CommandIo & { out: string; err: string } {
  const io = { out: '', err: '', stdout: (s: string) => void (io.out += s), stderr: (s: string) => void (io.err += s) };
  return io;
}

/** init-model of the tiny config with `edit` applied to its JSON. */
async function model(name: string, edit: (c: Record<string, unknown>) => void, seed = 1): Promise<string> {
  const json = JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;
  json['attention'] = { ...(json['attention'] as object), variant: resolve(import.meta.dirname, '../examples/paper/elu_dwconv.la') };
  edit(json);
  const config = join(root, `${name}.json`);
  writeFileSync(config, JSON.stringify(json));
  const io = capture();
  expect(await execute(initModelCommand, ['--config', config, '--out', join(root, name), '--seed', String(seed)], io), io.err).toBe(0);
  return join(root, name);
}

let target: string;
let draft: string;
let badVocab: string;
let leaky: string;
let noMedusa: string;
beforeAll(async () => {
  target = await model('target', (c) => void (c['medusa'] = { num_heads: 2 }));
  draft = await model('draft', (c) => void (c['num_hidden_layers'] = 1), 2);
  badVocab = await model('bad-vocab', (c) => void (c['vocab_size'] = 300), 3);
  leaky = await model('leaky', (c) => void (c['attention'] = { variant: resolve(import.meta.dirname, '../examples/paper/leaky_dwconv.la'), options: { K: 3 } }), 4);
  noMedusa = await model('no-medusa', () => undefined, 5);
});

const prepareAttention = ({ gpu, config, program }: AttentionContext) =>
  compiledAttentionFactory(gpu, program, config.numHeads, config.headDim);

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = capture();
  const code = await execute(generateWith(prepareAttention), ['--prompt', 'abcabcabc', '--max-tokens', '12', ...args], io);
  return { code, out: io.out, err: io.err };
}

describe('linattn generate --speculate', () => {
  it('after an untimed run of each tree (LINATTN_SPECULATE_WARMUP=1; the default on hardware) prints the same text, and auto the timed run\'s decisions', async () => {
    for (const extra of [['--speculate', 'medusa'], ['--speculate', 'medusa', '--tree', 'chain:2', '--chain-steps', '2'], ['--speculate', 'ngram', '--tree', 'top:2']]) {
      const args = ['--model', target, '--device', 'gpu', '--max-tokens', '24', ...extra];
      const cold = await run(args);
      process.env.LINATTN_SPECULATE_WARMUP = '1';
      try {
        const warm = await run(args);
        expect(warm.code, warm.err).toBe(0);
        expect(warm.out, extra.join(' ')).toBe(cold.out);
        expect(warm.err).toMatch(/output identical to plain decoding/);
        // auto's summary counts the timed run alone: its shares of the tokens add up to 100 %.
        const shares = [...warm.err.matchAll(/(\d+)% of tokens/g)].map((m) => Number(m[1]));
        if (extra.length === 2) expect(shares.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(98);
      } finally {
        delete process.env.LINATTN_SPECULATE_WARMUP;
      }
    }
  });

  it.each([['cpu'], ['gpu']])('reports accepted length, tokens/s and the speed-up over plain decoding (--device %s)', async (device) => {
    for (const [source, tree] of [['ngram', '[[0],[0,0],[1]]'], ['lookup', 'chain:3'], ['adaptive', 'best:2'], ['medusa', '[[0],[0,0],[1]]'], ['oracle', '[[0],[0,0],[1]]'], [`draft:${draft}`, '[[0],[0,0],[1]]']]) {
      const r = await run(['--model', target, '--device', device, '--speculate', source, '--tree', tree, '--max-nodes', '3']);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/mean accepted length \d+\.\d\d tokens\/step/);
      expect(r.err).toMatch(/plain decoding, same run: 12 tokens, [\d.]+ tokens\/s; speed-up [\d.]+×; output identical to plain decoding/);
      if (source === 'oracle') expect(r.err).toMatch(/mean accepted length 2\.75 /); // 11 tokens after the first: 3 + 3 + 3 + 2
    }
  });

  it('--chain-steps R chains greedy Medusa tree steps on the GPU, output identical to plain decoding', async () => {
    const r = await run(['--model', target, '--device', 'gpu', '--speculate', 'medusa', '--tree', 'chain:2', '--chain-steps', '3', '--max-tokens', '20']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/--tree chain:2, --chain-steps 3, --max-nodes 2/);
    expect(r.err).toMatch(/plain decoding, same run: 20 tokens, .*output identical to plain decoding/);
  });

  it('--speculate lookup --chain-steps R chains prompt lookup on the GPU, output identical to plain decoding', async () => {
    const r = await run(['--model', target, '--device', 'gpu', '--speculate', 'lookup', '--tree', 'chain:3', '--chain-steps', '4', '--max-tokens', '20']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/--tree chain:3, --chain-steps 4, --max-nodes 3/);
    expect(r.err).toMatch(/plain decoding, same run: 20 tokens, .*output identical to plain decoding/);
  });

  it.each([['cpu'], ['gpu']])('without --tree (or --tree auto) switches between plain runs and trees and prints what each mode did (--device %s)', async (device) => {
    for (const args of [['--speculate', 'adaptive'], ['--speculate', 'medusa'], ['--speculate', 'oracle', '--tree', 'auto', '--max-nodes', '7']]) {
      // A fresh controller: on a hardware GPU the default keeps measurements between runs (this file's earlier runs').
      const r = await run(['--model', target, '--device', device, ...args, '--max-tokens', '40', '--auto-state', 'none']);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/--tree auto, --max-nodes (16|7)\b/);
      expect(r.err).toMatch(/output identical to plain decoding/);
      if (args[1] === 'medusa') expect(r.err).not.toMatch(/chain:3/); // the target's 2 heads propose 2 levels at most
      if (args[1] === 'medusa' && device === 'gpu') {
        // Greedy Medusa on the GPU chains: auto offers the chained trees alone (chain:2, as deep as the 2 heads reach,
        // and Medusa's sparse tree for 2 heads, 4 steps a run) beside plain runs, and explores each.
        expect(r.err).toMatch(/\nauto: plain \d+% of tokens at [\d—]+ tokens\/s \(\d+ decisions\), chain:2×4 \d+% of tokens at [\d—]+ tokens\/s \(\d+ decisions\), \[\[0\],\[1\],\[2\],\[0,0\],\[0,1\],\[1,0\]\]×4 \d+% of tokens/);
      } else {
        // The controller explores every option first: plain (one run of 16) and at least chain:1 decoded some of the 39 tokens.
        expect(r.err).toMatch(/\nauto: plain \d+% of tokens at [\d—]+ tokens\/s \(\d+ decisions\), chain:1 \d+% of tokens at/);
        expect(r.err).not.toMatch(/×4/);
      }
    }
  });

  it.each([
    [['--speculate', 'lookahead'], 2, /unknown --speculate source "lookahead" \(ngram, lookup, adaptive, medusa, oracle or draft:DIR\)/],
    [['--speculate', 'ngram', '--tree', '[[0],[0,]]'], 2, /--tree "\[\[0\],\[0,\]\]": column 9: expected a rank/],
    [['--speculate', 'ngram', '--tree', '[[0],[0,0],[1]]', '--max-nodes', '2'], 2, /has 3 draft nodes, more than --max-nodes 2/],
    [['--speculate', 'ngram', '--max-nodes', 'many'], 2, /--max-nodes must be a positive integer/],
    [['--tree', 'chain:3'], 2, /--tree, --max-nodes, --chain-steps, --auto-state, --explore-share and --batch-credit need --speculate/],
    [['--speculate', 'ngram', '--prompt', 'xyz', '--batch-credit', 'time'], 2, /--batch-credit must be makespan, slower-half, tokens, got "time"/],
    [['--speculate', 'ngram', '--prompt', 'xyz', '--tree', 'chain:2', '--batch-credit', 'tokens'], 2, /--batch-credit is what --tree auto credits a batch's decisions with: it needs --tree auto/],
    [['--speculate', 'ngram', '--batch-credit', 'tokens'], 2, /--batch-credit is about a batch: it needs several --prompt/],
    [['--speculate', 'ngram', '--explore-share', '0'], 2, /--explore-share must be a number in \(0, 1\], got "0"/],
    [['--speculate', 'ngram', '--tree', 'chain:2', '--explore-share', '0.2'], 2, /--explore-share bounds --tree auto's exploration: it needs --tree auto/],
    [['--speculate', 'medusa', '--tree', 'chain:2', '--auto-state', 'x.json'], 2, /--auto-state FILE keeps --tree auto's measurements: it needs --tree auto/],
    [['--speculate', 'ngram', '--tree', 'chain:2', '--chain-steps', '2'], 2, /--chain-steps needs --speculate medusa and a static --tree/],
    [['--speculate', 'lookup', '--tree', '[[0],[1]]', '--chain-steps', '2'], 2, /or --speculate lookup and --tree chain:N/],
    [['--speculate', 'medusa', '--tree', 'chain:2', '--chain-steps', '0'], 2, /--chain-steps must be an integer in 1\.\.64/],
    [['--speculate', 'draft:/nonexistent/dir'], 1, /draft model directory not found/],
    [['--speculate', `draft:${'/nonexistent/dir'}`, '--tree', 'best:2', '--temperature', '0.8'], 2, /--tree best:2 places a sampled draft's candidates by their values/],
  ])('exits %j → %i', async (args, code, message) => {
    const r = await run(['--model', target, '--device', 'cpu', ...(args as string[])]);
    expect(r.code).toBe(code);
    expect(r.err).toMatch(message as RegExp);
    expect(r.out).toBe('');
  });

  it("--auto-state: the second run starts from the first's measurements and adds its own; a file that is not them names itself", async () => {
    const file = join(root, 'auto-state.json');
    const args = ['--model', target, '--device', 'gpu', '--speculate', 'medusa', '--auto-state', file];
    const first = await run(args);
    expect(first.code, first.err).toBe(0);
    const once = JSON.parse(readFileSync(file, 'utf8')) as { labels: string[]; options: { decisions: number }[] };
    expect(once.labels[0]).toBe('plain');
    const decisions = (s: typeof once) => s.options.reduce((a, o) => a + o.decisions, 0);
    expect(decisions(once)).toBeGreaterThan(0);
    const second = await run(args);
    expect(second.code, second.err).toBe(0);
    expect(second.out).toBe(first.out); // greedy: the same text whatever the controller picks
    const twice = JSON.parse(readFileSync(file, 'utf8')) as typeof once;
    expect(twice.labels).toEqual(once.labels);
    expect(decisions(twice)).toBeGreaterThan(decisions(once));
    // Measurements of other options (another tree budget) or a file that is not JSON: a clear error naming the file.
    const other = await run([...args, '--max-nodes', '1']);
    expect(other.code).toBe(1);
    expect(other.err).toContain(file);
    expect(other.err).toMatch(/saved measurements are of the options \[plain, .*\], this run offers \[plain, chain:1×4\]/);
    writeFileSync(file, 'not json');
    const broken = await run(args);
    expect(broken.code).toBe(1);
    expect(broken.err).toContain(file);
    expect(broken.err).toMatch(/not the JSON --auto-state writes/);
  });

  it('refuses a draft model with another vocabulary, Medusa without heads, and a noncausal variant', async () => {
    const vocab = await run(['--model', target, '--device', 'cpu', '--speculate', `draft:${badVocab}`]);
    expect(vocab.code).toBe(1);
    expect(vocab.err).toMatch(/vocab_size 300, the target 257.*share the target's tokenizer and vocabulary/);
    const medusa = await run(['--model', noMedusa, '--device', 'cpu', '--speculate', 'medusa']);
    expect(medusa.code).toBe(1);
    expect(medusa.err).toMatch(/--speculate medusa needs Medusa heads/);
    const noncausal = await run(['--model', leaky, '--device', 'cpu', '--speculate', 'ngram']);
    expect(noncausal.code).toBe(1);
    expect(noncausal.err).toMatch(/noncausal term conv; it cannot be decoded, so it cannot be speculated/);
    for (const r of [vocab, medusa, noncausal]) expect(r.out).toBe('');
  });
});
