// The experiments pipeline (bench/experiments.ts → experiments.json → docs/experiments-report.ts → a page with SVG
// curves) on lavapipe with the tiny model for a few steps, and the report's statements as rules over the numbers:
// the same comparison reads "agrees", "disagrees" or "inconclusive" as the perplexities come out.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runExperiments, trainingSpeed, type ExperimentReport, type RunRecord } from '../bench/experiments.ts';
import { verdicts, writeReport } from '../docs/experiments-report.ts';

const root = mkdtempSync(join(tmpdir(), 'linattn-experiments-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('npm run experiments -- --smoke, then the report', () => {
  it('trains elu, elu_aug and leaky_dwconv the same steps, measures the leak, samples, writes the JSON, the page and the curves', async () => {
    const out = join(root, 'run');
    const lines: string[] = [];
    const r = await runExperiments({ smoke: true, variants: ['elu', 'elu_aug', 'leaky_dwconv'], steps: 3, out, causalWindows: 1, sampleTokens: 6, log: (l) => void lines.push(l) });
    expect(r.status).toBe('complete');
    expect(r.runs.map((x) => [x.name, x.steps])).toEqual([['elu', 3], ['elu_aug', 3], ['leaky_dwconv', 3]]);
    for (const x of r.runs) {
      expect(x.val_perplexity).toBeCloseTo(Math.exp(x.val_loss), 9);
      expect(x.val_loss).toBeLessThan(Math.log(257) + 0.5);
      expect(x.sample.text.length).toBeGreaterThan(0);
      expect(Number.isFinite(x.sample.judge_loss)).toBe(true);
    }
    const leaky = r.runs.find((x) => x.name === 'leaky_dwconv')!;
    expect(leaky.noncausal).toBe(true);
    expect(leaky.causal!.tokens).toBe(32);
    expect(Math.abs(leaky.causal!.causal_loss - leaky.causal!.teacher_forced_loss)).toBeGreaterThan(1e-4);
    const control = r.runs.find((x) => x.name === 'elu_aug')!.causal!;
    expect(Math.abs(control.causal_loss - control.teacher_forced_loss)).toBeLessThan(1e-4 * control.teacher_forced_loss);
    expect(r.judge?.name).toBe('elu_aug');
    expect(lines.join('\n')).toMatch(/leaky_dwconv\s+3\s/);
    const saved = JSON.parse(readFileSync(join(out, 'experiments.json'), 'utf8')) as ExperimentReport;
    expect(saved.runs.length).toBe(3);

    const docs = join(root, 'docs');
    const page = readFileSync(writeReport(join(out, 'experiments.json'), docs), 'utf8');
    for (const f of ['train-loss.svg', 'val-loss.svg', 'experiments.json', 'logs/elu.jsonl']) expect(existsSync(join(docs, 'experiments', f)), f).toBe(true);
    expect(readFileSync(join(docs, 'experiments', 'train-loss.svg'), 'utf8')).toMatch(/<path d="M/);
    expect(page).toContain('A smoke run');
    expect(page).toContain(`| elu | ${saved.runs[0].val_loss.toFixed(4)} |`);
    expect(page).toMatch(/- \*\*(agrees|disagrees|inconclusive)\*\* — The masked depthwise convolution lowers perplexity/);
  }, 600_000); // the config's limit: with a cold shader cache it took 216 s of a 2-core CI run
});

const run = (name: string, ppl: number, extra: Partial<RunRecord> = {}): RunRecord => ({
  name, variant: '', options: {}, what: '', noncausal: false, attention_params: 0, steps: 1, train_loss: 1, val_loss: Math.log(ppl), val_perplexity: ppl,
  tokens_per_s: 1, train_seconds: 1, calibration_ms_per_step: 1, dir: '', log: '', sample: { prompt: '', text: '', tokens: 0, how: '' }, ...extra,
});
const report = (runs: RunRecord[]): ExperimentReport => ({ runs } as unknown as ExperimentReport);
const outcome = (r: ExperimentReport, claim: RegExp) => verdicts(r).find((v) => claim.test(v.claim))!;

describe('the report’s verdicts follow the numbers', () => {
  it('augmentation: lower perplexity agrees, higher disagrees, within 1 % is inconclusive; a missing run is not measured', () => {
    const masked = /masked depthwise convolution lowers/;
    expect(outcome(report([run('elu', 10), run('elu_aug', 9)]), masked).outcome).toBe('agrees');
    expect(outcome(report([run('elu', 10), run('elu_aug', 9)]), masked).because).toContain('lower than elu\'s by 1.00 (9.00 against 10.00, 10.0 %)');
    expect(outcome(report([run('elu', 10), run('elu_aug', 11)]), masked).outcome).toBe('disagrees');
    expect(outcome(report([run('elu', 10), run('elu_aug', 9.95)]), masked).outcome).toBe('inconclusive');
    expect(outcome(report([run('elu_aug', 9)]), masked).outcome).toBe('not measured');
  });

  it('the leak: agrees only when leaky looks better teacher-forced and is worse causally than the masked control', () => {
    const causal = (tf: number, c: number) => ({ windows: 1, tokens: 10, teacher_forced_loss: tf, causal_loss: c, teacher_forced_perplexity: Math.exp(tf), causal_perplexity: Math.exp(c) });
    const leak = /leaky\) convolution/;
    const control = run('elu_aug', 9, { causal: causal(2.2, 2.2) });
    expect(outcome(report([control, run('leaky_dwconv', 5, { noncausal: true, causal: causal(1.6, 3.1) })]), leak).outcome).toBe('agrees');
    expect(outcome(report([control, run('leaky_dwconv', 9, { noncausal: true, causal: causal(2.25, 2.26) })]), leak).outcome).toBe('disagrees');
    expect(outcome(report([control, run('leaky_dwconv', 5, { noncausal: true, causal: causal(1.6, 2.1) })]), leak).outcome).toBe('inconclusive');
  });

  it('training tokens/s leaves out the first steps and the intervals holding an evaluation', () => {
    const log = [1, 2, 3, 4, 5, 6].map((s) => ({ step: s, loss: 1, tokens: 100 * s, elapsed_s: s + (s > 4 ? 10 : 0) }));
    // step 4 evaluates (evalEvery 4): 4 → 5 is left out; 3 → 4 and 5 → 6 count, 100 tokens in 1 s each
    expect(trainingSpeed([...log, { step: 4, val_loss: 1 }], 4, 6).tokensPerS).toBe(100);
  });
});
