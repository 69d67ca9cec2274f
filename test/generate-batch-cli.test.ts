// `linattn generate` with several --prompt: one batch of prompts of different lengths, each continuation printed under
// a '--- i of n ---' line; with --speculate, batch speculation, its report counting the sequences whose output equals
// plain decoding's. The float64 CPU batch's texts are each prompt's own generation; the GPU batch's are the CPU's.
// With --batch N below the prompts' count (some from --prompts-file), continuous batching: the same texts, with and
// without --speculate. A .jsonl prompts file gives prompts budgets of their own: each text is that prompt's alone.
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

const root = mkdtempSync(join(tmpdir(), 'generate-batch-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function capture(): CommandIo & { out: string; err: string } {
  const io = { out: '', err: '', stdout: (s: string) => void (io.out += s), stderr: (s: string) => void (io.err += s) };
  return io;
}

let target: string;
let draft: string;
beforeAll(async () => {
  for (const [name, heads, seed] of [['target', 2, 1], ['draft', 0, 2]] as const) {
    const json = JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;
    json['attention'] = { ...(json['attention'] as object), variant: resolve(import.meta.dirname, '../examples/paper/elu_dwconv.la') };
    if (heads) json['medusa'] = { num_heads: heads };
    writeFileSync(join(root, `${name}.json`), JSON.stringify(json));
    const io = capture();
    expect(await execute(initModelCommand, ['--config', join(root, `${name}.json`), '--out', join(root, name), '--seed', String(seed)], io), io.err).toBe(0);
  }
  target = join(root, 'target');
  draft = join(root, 'draft');
});

const prepareAttention = ({ gpu, config, program }: AttentionContext) => compiledAttentionFactory(gpu, program, config.numHeads, config.headDim);
const PROMPTS = ['abcabcabc', 'xy', 'the cat sat on the mat'];

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = capture();
  const code = await execute(generateWith(prepareAttention), ['--model', target, '--max-tokens', '10', ...args], io);
  return { code, out: io.out, err: io.err };
}

/** The texts under the '--- i of n ---' lines. */
function sections(out: string, n: number): string[] {
  const parts = out.split(/^--- \d+ of \d+ ---\n/m);
  expect(parts[0]).toBe('');
  expect(parts).toHaveLength(n + 1);
  return parts.slice(1).map((p) => p.replace(/\n$/, ''));
}

describe('linattn generate with several --prompt', () => {
  it("prints each prompt's continuation: in float64 each is its own generation, on the GPU the same texts", async () => {
    const alone = [];
    for (const p of PROMPTS) {
      const r = await run(['--prompt', p, '--device', 'cpu']);
      expect(r.code, r.err).toBe(0);
      alone.push(r.out.replace(/\n$/, ''));
    }
    const args = PROMPTS.flatMap((p) => ['--prompt', p]);
    const cpu = await run([...args, '--device', 'cpu']);
    expect(cpu.code, cpu.err).toBe(0);
    expect(sections(cpu.out, 3)).toEqual(alone);
    expect(cpu.err).toMatch(/prefill: \d+ tokens \(3 prompts\)/);
    const gpu = await run([...args, '--device', 'gpu']);
    expect(gpu.code, gpu.err).toBe(0);
    expect(sections(gpu.out, 3)).toEqual(alone);
  });

  it.each([['cpu'], ['gpu']])('with --speculate, batch speculation equals plain batched decoding in every sequence (--device %s)', async (device) => {
    const args = [...PROMPTS.flatMap((p) => ['--prompt', p]), '--device', device];
    const plain = await run(args);
    expect(plain.code, plain.err).toBe(0);
    const want = sections(plain.out, 3);
    const chained = device === 'gpu' ? [['--speculate', 'medusa', '--tree', 'chain:2', '--chain-steps', '2']] : [];
    for (const extra of [['--speculate', 'medusa'], ...chained, ['--speculate', 'ngram', '--tree', 'top:2', '--max-nodes', '4'], ['--speculate', 'lookup', '--tree', 'chain:3'], ['--speculate', 'adaptive', '--tree', 'best:2', '--max-nodes', '4'], ['--speculate', 'oracle', '--tree', '[[0],[0,0],[1]]']]) {
      const r = await run([...args, ...extra]);
      expect(r.code, `${extra.join(' ')}: ${r.err}`).toBe(0);
      expect(sections(r.out, 3), extra.join(' ')).toEqual(want);
      expect(r.err, extra.join(' ')).toMatch(/speculative batch of 3 .*verification steps.*tokens\/s/);
      expect(r.err, extra.join(' ')).toMatch(/speed-up [\d.]+×; output identical to plain decoding in 3 of 3 sequences\n/);
    }
    // Without --tree a batch is cost-aware: plain steps or a tree for every sequence, step by step (the report's auto line).
    const auto = await run([...args, '--speculate', 'medusa']);
    expect(auto.err).toMatch(/--tree auto, --max-nodes \d+/);
    expect(auto.err).toMatch(/\nauto \(credited by slower-half\): [^\n]*\d+% of tokens at [\d.]+ tokens\/s \(\d+ decisions\)/);
    expect(auto.err).toMatch(/\nthe batch's tail, after its first sequence ended: [\d.]+ of [\d.]+ ms\n/);
    // Credited with every token instead (--batch-credit tokens): the same text.
    const byTokens = await run([...args, '--speculate', 'medusa', '--batch-credit', 'tokens']);
    expect(byTokens.code, byTokens.err).toBe(0);
    expect(sections(byTokens.out, 3)).toEqual(want);
    expect(byTokens.err).toMatch(/\nauto \(credited by tokens\): [^\n]*\d+% of tokens at/);
    const byMakespan = await run([...args, '--speculate', 'medusa', '--batch-credit', 'makespan']);
    expect(byMakespan.code, byMakespan.err).toBe(0);
    expect(sections(byMakespan.out, 3)).toEqual(want);
    expect(byMakespan.err).toMatch(/\nauto \(credited by makespan\): /);
  });

  it("--auto-state with a batch: the second run starts from the first's measurements (a batch's own: one sequence's are other options) and adds its own", async () => {
    const file = join(root, 'batch-auto-state.json');
    const args = [...PROMPTS.flatMap((p) => ['--prompt', p]), '--device', 'gpu', '--speculate', 'medusa', '--auto-state', file];
    const first = await run(args);
    expect(first.code, first.err).toBe(0);
    expect(first.err).toContain(`auto: measured afresh; kept for the next run in ${file}`);
    const once = JSON.parse(readFileSync(file, 'utf8')) as { labels: string[]; options: { decisions: number }[] };
    const decisions = (s: typeof once) => s.options.reduce((a, o) => a + o.decisions, 0);
    expect(once.labels[0]).toBe('plain');
    expect(decisions(once)).toBeGreaterThan(0);
    const second = await run(args);
    expect(second.code, second.err).toBe(0);
    expect(second.out).toBe(first.out); // greedy: the same texts whatever the controller picks
    expect(second.err).toContain(`auto: started from the measurements of earlier runs in ${file}`);
    expect(decisions(JSON.parse(readFileSync(file, 'utf8')) as typeof once)).toBeGreaterThan(decisions(once));
    writeFileSync(file, 'not json');
    const broken = await run(args);
    expect(broken.code).toBe(1);
    expect(broken.err).toContain(file);
    expect(broken.err).toMatch(/not the JSON --auto-state writes/);
  });

  it('--batch 2 with five prompts (three from --prompts-file): continuous batching, each text the one-batch run\'s', async () => {
    const file = join(root, 'prompts.txt');
    writeFileSync(file, 'in the beginning\n\nand it came to pass\nq\n');
    const all = [...PROMPTS.slice(0, 2), 'in the beginning', 'and it came to pass', 'q'];
    const oneBatch = await run(all.flatMap((p) => ['--prompt', p]));
    expect(oneBatch.code, oneBatch.err).toBe(0);
    const continuous = await run([...PROMPTS.slice(0, 2).flatMap((p) => ['--prompt', p]), '--prompts-file', file, '--batch', '2']);
    expect(continuous.code, continuous.err).toBe(0);
    expect(sections(continuous.out, 5)).toEqual(sections(oneBatch.out, 5));
    expect(continuous.err).toMatch(/^continuous batching: 5 prompts \(\d+ tokens\) through 2 sequences, 3 prefilled in a finished one's place; 50 new tokens in \d+ steps, [\d.]+ tokens\/s, \d+ % of the decode steps' picks new tokens/);
    // With --speculate: each sequence verifying its own tree, refilled as its prompt ends; plain continuous batching the baseline.
    const speculative = await run([...all.flatMap((p) => ['--prompt', p]), '--batch', '2', '--speculate', 'ngram', '--tree', 'chain:3']);
    expect(speculative.code, speculative.err).toBe(0);
    expect(sections(speculative.out, 5)).toEqual(sections(oneBatch.out, 5));
    expect(speculative.err).toMatch(/^speculative 5 prompts through 2 sequences \(continuous batching, 3 refills in [\d.]+ ms, 3 of them prefilled ahead\) \(ngram, --tree chain:3, --max-nodes 3; .*\): 50 tokens in \d+ verification steps/);
    expect(speculative.err).toMatch(/plain decoding of the prompts, continuous batching, same run: 50 tokens, [\d.]+ tokens\/s; speed-up [\d.]+×; output identical to plain decoding in 5 of 5 sequences\n/);
    const cpu = await run([...all.flatMap((p) => ['--prompt', p]), '--batch', '2', '--device', 'cpu']);
    expect(cpu.code).toBe(2);
    expect(cpu.out).toBe('');
    expect(cpu.err).toMatch(/continuous batching\) runs on the GPU: not with --device cpu/);
    const missing = await run(['--prompts-file', join(root, 'none.txt')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain(`--prompts-file ${join(root, 'none.txt')}: no such file`);
  });

  it('a .jsonl prompts file gives each prompt its own max_tokens: one batch (GPU, CPU), continuous, speculative; bad lines by FILE:LINE', async () => {
    const file = join(root, 'requests.jsonl');
    const asked = [['in the beginning', 3], ['abcabcabc', undefined], ['xy', 6], ['and it came to pass', 1]] as const;
    writeFileSync(file, asked.map(([prompt, n]) => JSON.stringify({ prompt, ...(n !== undefined && { max_tokens: n }) })).join('\n\n') + '\n');
    // Each prompt alone in float64 with its budget (--max-tokens 10 where it gives none).
    const alone: string[] = [];
    for (const [prompt, n] of asked) {
      const r = await run(['--prompt', prompt, '--device', 'cpu', '--max-tokens', String(n ?? 10)]);
      expect(r.code, r.err).toBe(0);
      alone.push(r.out.replace(/\n$/, ''));
    }
    for (const extra of [[], ['--device', 'cpu'], ['--batch', '2'], ['--batch', '2', '--speculate', 'medusa', '--tree', 'chain:2']]) {
      const r = await run(['--prompts-file', file, ...extra]);
      expect(r.code, `${extra.join(' ')}: ${r.err}`).toBe(0);
      expect(sections(r.out, 4), extra.join(' ')).toEqual(alone);
    }
    for (const [line, message] of [
      ['{"prompt": "ab", "max_tokens": 0}', /requests-bad.jsonl:2: "max_tokens" must be a positive integer, got 0/],
      ['{"prompt": 3}', /requests-bad.jsonl:2: "prompt" must be a string/],
      ['{"prompt": "ab", "temperature": 1}', /requests-bad.jsonl:2: unknown field "temperature"/],
      ['"ab"', /requests-bad.jsonl:2: not a JSON object/],
      ['{"prompt": "ab",', /requests-bad.jsonl:2: not a JSON object \(.*\); a .jsonl prompts file holds/],
    ] as const) {
      const bad = join(root, 'requests-bad.jsonl');
      writeFileSync(bad, `{"prompt": "ok"}\n${line}\n`);
      const r = await run(['--prompts-file', bad]);
      expect(r.code, line).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(message);
    }
  });

  it('refuses a draft model for a batch, and an over-long prompt by its number, before any output', async () => {
    const r = await run(['--prompt', 'ab', '--prompt', 'cd', '--speculate', `draft:${draft}`]);
    expect(r.code).not.toBe(0);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/draft:DIR takes one --prompt/);
    const chained = await run(['--prompt', 'ab', '--prompt', 'cd', '--speculate', 'lookup', '--tree', 'chain:2', '--chain-steps', '2']);
    expect(chained.code).not.toBe(0);
    expect(chained.out).toBe('');
    expect(chained.err).toMatch(/--chain-steps with several --prompt takes --speculate medusa/);
    const long = await run(['--prompt', 'ab', '--prompt', 'x'.repeat(4100), '--max-tokens', '10']);
    expect(long.code).not.toBe(0);
    expect(long.out).toBe('');
    expect(long.err).toMatch(/prompt 2 \(\d+ tokens\) \+ --max-tokens 10 exceed max_position_embeddings/);
  });
});
