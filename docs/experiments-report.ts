// docs/experiments.md from a run of bench/experiments.ts: `npx tsx docs/experiments-report.ts [EXPERIMENTS.json]`
// (default out/experiments/experiments.json). Copies the JSON and the runs' train_log.jsonl files to
// docs/experiments/ (the data every figure comes from), draws the loss curves as SVG there, and writes the page.
// Every number on the page is read from the JSON or the logs, and every sentence that compares variants is a rule
// over those numbers (verdicts(), below): what it says follows from the run, whichever way it came out.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ExperimentReport, RunRecord } from '../bench/experiments.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Relative differences of perplexity below this are ties: one seed cannot tell them apart. */
export const TIE = 0.01;

type LogEntry = Record<string, number>;

export interface Verdict {
  readonly claim: string;
  readonly outcome: 'agrees' | 'disagrees' | 'inconclusive' | 'not measured';
  readonly because: string;
}

const f4 = (x: number) => x.toFixed(4);
const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

/** a's perplexity against b's: lower, higher or a tie, with the difference. */
function comparePpl(a: RunRecord, b: RunRecord): { sign: -1 | 0 | 1; text: string } {
  const d = b.val_perplexity - a.val_perplexity;
  const rel = d / b.val_perplexity;
  if (Math.abs(rel) < TIE) return { sign: 0, text: `${a.name}'s validation perplexity (${f2(a.val_perplexity)}) is within ${pct(TIE)} of ${b.name}'s (${f2(b.val_perplexity)})` };
  return rel > 0
    ? { sign: -1, text: `${a.name}'s validation perplexity is lower than ${b.name}'s by ${f2(d)} (${f2(a.val_perplexity)} against ${f2(b.val_perplexity)}, ${pct(rel)})` }
    : { sign: 1, text: `${a.name}'s validation perplexity is higher than ${b.name}'s by ${f2(-d)} (${f2(a.val_perplexity)} against ${f2(b.val_perplexity)}, ${pct(-rel)})` };
}

/** The page's statements about the paper's claims, each derived from the numbers. */
export function verdicts(r: ExperimentReport): Verdict[] {
  const run = (n: string) => r.runs.find((x) => x.name === n);
  const out: Verdict[] = [];
  const elu = run('elu');
  // 1. augmentation lowers perplexity
  for (const name of ['elu_aug', 'llama_linearized', 'relu_aug']) {
    const aug = run(name);
    const claim = name === 'elu_aug'
      ? 'The masked depthwise convolution lowers perplexity (elu_aug against elu: the same layer with and without it)'
      : name === 'llama_linearized'
        ? 'The paper\'s augmented layer (local + grouped + masked conv) lowers perplexity against an earlier linear attention (elu)'
        : 'ReLU linear attention with the masked conv against elu (a different feature map as well: a weaker comparison)';
    if (!aug || !elu) {
      out.push({ claim, outcome: 'not measured', because: `the run has no ${!aug ? name : 'elu'}` });
      continue;
    }
    const c = comparePpl(aug, elu);
    out.push({ claim, outcome: c.sign < 0 ? 'agrees' : c.sign > 0 ? 'disagrees' : 'inconclusive', because: `${c.text}.` });
  }
  // 2. the leak: the teacher-forced loss looks good, the causally consistent one shows what generation gets
  const leaky = run('leaky_dwconv');
  const masked = run('elu_aug');
  const claim = 'The unmasked (leaky) convolution makes the teacher-forced loss look good while generation fails';
  if (!leaky?.causal) out.push({ claim, outcome: 'not measured', because: 'the run has no leaky_dwconv with its causally consistent loss' });
  else {
    const lc = leaky.causal;
    const gap = lc.causal_loss - lc.teacher_forced_loss;
    const parts = [`on ${lc.tokens} held-out tokens leaky_dwconv's teacher-forced loss is ${f4(lc.teacher_forced_loss)} nats/token and its causally consistent loss (every position from its prefix alone) ${f4(lc.causal_loss)}: ${gap >= 0 ? 'higher' : 'lower'} by ${f4(Math.abs(gap))} (perplexity ${f2(lc.teacher_forced_perplexity)} → ${f2(lc.causal_perplexity)})`];
    let looksGood = true;
    let fails = gap > TIE * lc.teacher_forced_loss;
    if (masked?.causal) {
      const mc = masked.causal;
      looksGood = lc.teacher_forced_loss < mc.teacher_forced_loss;
      parts.push(`teacher-forced it ${looksGood ? 'beats' : 'does not beat'} the masked elu_aug (${f4(mc.teacher_forced_loss)})`);
      const worse = lc.causal_loss > mc.causal_loss;
      parts.push(`causally it is ${worse ? 'worse than' : 'no worse than'} elu_aug (${f4(mc.causal_loss)}, whose two losses differ by ${f4(Math.abs(mc.causal_loss - mc.teacher_forced_loss))})`);
      fails &&= worse;
    }
    if (leaky.sample.judge_loss !== undefined && masked?.sample.judge_loss !== undefined && r.judge) {
      parts.push(`its greedy sample costs ${r.judge.name} ${f4(leaky.sample.judge_loss)} nats/token against ${f4(masked.sample.judge_loss)} for elu_aug's (held-out text: ${f4(r.judge.val_loss)})`);
    }
    out.push({ claim, outcome: looksGood && fails ? 'agrees' : !looksGood && !fails ? 'disagrees' : 'inconclusive', because: `${parts.join('; ')}.` });
  }
  // 3. linear attention against the softmax baseline: with RoPE when it ran (the baseline with a position encoding)
  const soft = run('softmax_rope') ?? run('softmax');
  const linear = r.runs.filter((x) => !x.name.startsWith('softmax') && !x.noncausal);
  if (soft && linear.length) {
    const best = [...linear].sort((a, b) => a.val_perplexity - b.val_perplexity)[0];
    const c = comparePpl(best, soft);
    const behind = linear.filter((x) => comparePpl(x, soft).sign > 0).map((x) => x.name);
    out.push({
      claim: 'Linear attention trails softmax attention in a decoder (the gap the paper\'s methods narrow)',
      outcome: behind.length === linear.length ? 'agrees' : c.sign < 0 ? 'disagrees' : 'inconclusive',
      because: `the best causal linear variant is ${best.name}: ${c.text}; ${behind.length} of ${linear.length} causal linear variants are behind ${soft.name} (${behind.join(', ') || 'none'}).`,
    });
  }
  return out;
}

function readLog(path: string): LogEntry[] {
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEntry);
}

const COLORS = ['#222222', '#1b7837', '#5aae61', '#2166ac', '#762a83', '#b2182b', '#e08214', '#8c510a'];

/** A line plot: one series per run, x step, y loss (linear), with axes and a legend. */
export function lineChart(title: string, series: readonly { name: string; points: readonly [number, number][]; dashed?: boolean; markers?: boolean }[], yLabel: string): string {
  const W = 760;
  const H = 420;
  const L = 60;
  const R = 170;
  const T = 34;
  const B = 44;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const x0 = Math.min(...xs, 0);
  const x1 = Math.max(...xs, 1);
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const pad = (hi - lo) * 0.05 || 0.1;
  const [y0, y1] = [lo - pad, hi + pad];
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ticks = (a: number, b: number, n: number) => {
    const step = 10 ** Math.floor(Math.log10((b - a) / n));
    const m = [1, 2, 5, 10].find((k) => (b - a) / (k * step) <= n)! * step;
    const out: number[] = [];
    for (let v = Math.ceil(a / m) * m; v <= b + 1e-9; v += m) out.push(Number(v.toPrecision(12)));
    return out;
  };
  const parts: string[] = [];
  for (const v of ticks(y0, y1, 6)) parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(v).toFixed(1)}" y2="${py(v).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end" font-size="11">${v}</text>`);
  for (const v of ticks(x0, x1, 8)) parts.push(`<text x="${px(v).toFixed(1)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${v}</text>`);
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#888"/>`);
  series.forEach((s, k) => {
    const c = COLORS[k % COLORS.length];
    const d = s.points.filter((p) => Number.isFinite(p[1])).map((p, i) => `${i ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>`);
    if (s.markers) for (const p of s.points) parts.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3" fill="${c}"/>`);
    parts.push(`<line x1="${W - R + 12}" x2="${W - R + 34}" y1="${T + 10 + k * 18}" y2="${T + 10 + k * 18}" stroke="${c}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/><text x="${W - R + 40}" y="${T + 14 + k * 18}" font-size="12">${esc(s.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${L}" y="20" font-size="13">${esc(title)}</text>
<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">step</text>
<text x="14" y="${(T + H - B) / 2}" font-size="12" transform="rotate(-90 14 ${(T + H - B) / 2})" text-anchor="middle">${esc(yLabel)}</text>
${parts.join('\n')}
</svg>
`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Mean of each window of `w` consecutive points (the per-step loss is noisy). */
function smooth(points: readonly [number, number][], w: number): [number, number][] {
  const out: [number, number][] = [];
  for (let k = 0; k < points.length; k += w) {
    const chunk = points.slice(k, k + w);
    out.push([chunk[chunk.length - 1][0], chunk.reduce((s, p) => s + p[1], 0) / chunk.length]);
  }
  return out;
}

export function renderReport(r: ExperimentReport, logs: ReadonlyMap<string, LogEntry[]>, json: string): { md: string; svgs: Record<string, string> } {
  const steps = r.settings.steps;
  const w = Math.max(1, Math.round(steps / 60));
  const train = r.runs.map((x) => ({ name: x.name, points: smooth((logs.get(x.name) ?? []).filter((e) => e['loss'] !== undefined).map((e) => [e['step'], e['loss']] as [number, number]), w) }));
  const val = r.runs.map((x) => ({ name: x.name, markers: true, points: (logs.get(x.name) ?? []).filter((e) => e['val_loss'] !== undefined).map((e) => [e['step'], e['val_loss']] as [number, number]) }));
  const svgs: Record<string, string> = {
    'train-loss.svg': lineChart(`training loss (mean of every ${w} steps), ${r.model.config}, ${r.adapter}`, train, 'nats / token'),
    'val-loss.svg': lineChart(`validation loss on the held-out ${r.data.val_tokens} tokens (teacher-forced)`, val, 'nats / token'),
  };
  const soft = r.runs.find((x) => x.name === 'softmax');
  const small = r.software || r.model.layers < 4;
  const lines: string[] = [
    '# Experiments: the paper\'s claims in miniature',
    '',
    `<!-- generated by docs/experiments-report.ts from ${json}; do not edit by hand -->`,
    '',
    `Generated by \`docs/experiments-report.ts\` from [\`${json}\`](${json.replace(/^docs\//, '')}) (the run's own JSON) and its runs' \`train_log.jsonl\` (copied beside it). ` +
      `Run ${r.status === 'complete' ? '' : '**cut short** ('}${r.status === 'complete' ? '' : `${r.runs.length} runs finished) `}on ${r.adapter}, ${r.date.slice(0, 10)}: \`${r.command}\`.`,
    '',
  ];
  if (small) {
    lines.push(
      `> **A smoke run.** This page was generated from a run of the ${r.model.layers}-layer, hidden-${r.model.hidden} model for ${steps} steps${r.software ? ' on a software adapter' : ''}: it shows the pipeline end to end, and its numbers say nothing about the claims. The H200 run of the nano model replaces it (DEVELOPERS.md says how).`,
      '',
    );
  }
  lines.push(
    '## Setup',
    '',
    `Every run: the model of \`${r.model.config}\` (${r.model.layers} layers, hidden ${r.model.hidden}, ${r.model.heads} heads of ${r.model.head_dim}, SwiGLU ${r.model.intermediate}, vocabulary ${r.model.vocab}) with only \`attention.variant\` changed; ` +
      `\`${r.data.file}\` (${r.data.tokens} tokens: ${r.data.train_tokens} train, the last ${r.data.val_tokens} held out); ${steps} steps of ${r.settings.batch} × ${r.settings.block} tokens ` +
      `(${(steps * r.settings.batch * r.settings.block / 1e6).toFixed(2)} M tokens; steps: ${r.settings.steps_from}), AdamW at lr ${r.settings.lr} (warmup ${r.settings.warmup}, cosine to lr/10), seed ${r.settings.seed}. ` +
      `Validation every ${r.settings.eval_every} steps on the whole held-out text. The held-out text's unigram entropy is ${f4(r.data.unigram_nats)} nats/token.`,
    '',
    '| variant | what | options |',
    '|---|---|---|',
    ...r.runs.map((x) => `| ${x.name} | ${x.what} | \`${JSON.stringify(x.options)}\` |`),
    '',
    '## Results',
    '',
    `| variant | validation loss | validation perplexity | ${soft ? 'vs softmax | ' : ''}last training loss | training tokens/s |`,
    `|---|---:|---:|${soft ? '---:|' : ''}---:|---:|`,
    ...r.runs.map((x) => `| ${x.name}${x.noncausal ? ' (noncausal: teacher-forced)' : ''} | ${f4(x.val_loss)} | ${f2(x.val_perplexity)} | ${soft ? `${x === soft ? '—' : `${x.val_perplexity >= soft.val_perplexity ? '+' : '−'}${pct(Math.abs(x.val_perplexity / soft.val_perplexity - 1))}`} | ` : ''}${f4(x.train_loss)} | ${Number.isFinite(x.tokens_per_s) ? Math.round(x.tokens_per_s).toLocaleString('en-US') : '—'} |`),
    '',
    `Tokens/s: training steps only (from the log's clock, the first three steps and the intervals holding an evaluation or a save left out), the same ${r.settings.batch} × ${r.settings.block} tokens a step for every variant.`,
    '',
    '![training loss](experiments/train-loss.svg)',
    '',
    '![validation loss](experiments/val-loss.svg)',
    '',
  );
  const causal = r.runs.filter((x) => x.causal);
  if (causal.length) {
    lines.push(
      '## The leak: teacher-forced against causally consistent loss',
      '',
      'Teacher-forced, every position of a window sees the whole window, and a noncausal variant\'s convolution reads the next token. Causally consistent (`linattn eval --causal`), every position is predicted from its prefix alone (the prefix runs as a sequence of its own), which is all a model generating text ever has. For a causal variant the two are the same number.',
      '',
      '| variant | held-out tokens | teacher-forced loss | causally consistent loss | difference |',
      '|---|---:|---:|---:|---:|',
      ...causal.map((x) => `| ${x.name} | ${x.causal!.tokens} | ${f4(x.causal!.teacher_forced_loss)} | ${f4(x.causal!.causal_loss)} | ${f4(x.causal!.causal_loss - x.causal!.teacher_forced_loss)} |`),
      '',
    );
  }
  lines.push(
    '## Where the miniature agrees or disagrees with the paper',
    '',
    `Each line below is computed from the table above by \`verdicts()\` in docs/experiments-report.ts; one seed per variant, so a perplexity difference under ${pct(TIE)} is called a tie (inconclusive).`,
    '',
    ...verdicts(r).map((v) => `- **${v.outcome}** — ${v.claim}: ${v.because}`),
    '',
    ...limits(r, logs),
    '## Greedy samples',
    '',
    `Each trained model continues the prompt ${JSON.stringify(r.runs[0]?.sample.prompt ?? '')} greedily on the GPU.${r.judge ? ` Each continuation is scored by the ${r.judge.name} model (mean nats/token, teacher-forced; held-out text costs it ${f4(r.judge.val_loss)}): a lower figure reads more like the training text.` : ''}`,
    '',
  );
  for (const x of r.runs) {
    lines.push(`**${x.name}** (${x.sample.how}${x.sample.judge_loss !== undefined ? `; ${r.judge!.name} scores it ${f4(x.sample.judge_loss)}` : ''}):`, '', '```text', (x.sample.prompt + x.sample.text).replace(/```/g, "'''"), '```', '');
  }
  return { md: lines.join('\n'), svgs };
}

/** What the run's setup cannot tell, with its own numbers: how much text each model saw, seeds, position encoding. */
function limits(r: ExperimentReport, logs: ReadonlyMap<string, LogEntry[]>): string[] {
  const seen = r.settings.steps * r.settings.batch * r.settings.block;
  // still falling: the last evaluation lower than the one before by more than the tie threshold
  const falling = r.runs.filter((x) => {
    const v = (logs.get(x.name) ?? []).filter((e) => e.val_loss !== undefined).map((e) => e.val_loss);
    return v.length >= 2 && v[v.length - 1] < v[v.length - 2] * (1 - TIE);
  });
  return [
    '### What this run cannot tell',
    '',
    `- Each model saw ${(seen / 1e6).toFixed(2)} M tokens, ${(seen / r.data.train_tokens).toFixed(2)} passes over the training text; the validation loss of ${falling.length} of ${r.runs.length} runs still fell by more than ${pct(TIE)} over the last evaluation interval (${falling.map((x) => x.name).join(', ') || 'none'}), so the ranking of variants early in training need not hold at the paper's scale.`,
    '- One seed per variant: differences near the tie threshold are noise.',
    r.runs.some((x) => x.name === 'softmax_rope')
      ? '- Only softmax_rope has a position encoding: plain softmax attention sees order only through the causal mask, the linear variants through their decays or the convolutions of the augmented ones (the last K tokens in order).'
      : '- No variant has a position encoding (the config has none): softmax attention sees order only through the causal mask, while the convolutions of the augmented variants read the last K tokens in order. A softmax baseline with RoPE (`npm run experiments` runs softmax_rope now) is the fairer comparison and is not in this run.',
    '',
  ];
}

export function writeReport(jsonPath: string, docsDir = join(ROOT, 'docs')): string {
  const r = JSON.parse(readFileSync(jsonPath, 'utf8')) as ExperimentReport;
  const from = dirname(jsonPath);
  const dataDir = join(docsDir, 'experiments');
  rmSync(join(dataDir, 'logs'), { recursive: true, force: true });
  mkdirSync(join(dataDir, 'logs'), { recursive: true });
  const logs = new Map<string, LogEntry[]>();
  for (const x of r.runs) {
    const src = join(from, x.log);
    if (!existsSync(src)) throw new Error(`${src}: the run's log is missing (the report draws its curves from it)`);
    copyFileSync(src, join(dataDir, 'logs', `${x.name}.jsonl`));
    logs.set(x.name, readLog(src));
  }
  // the copied JSON points at the copied logs
  const copy = { ...r, runs: r.runs.map((x) => ({ ...x, dir: `logs`, log: `logs/${x.name}.jsonl` })) };
  writeFileSync(join(dataDir, 'experiments.json'), JSON.stringify(copy, null, 2) + '\n');
  const json = relative(ROOT, join(dataDir, 'experiments.json'));
  const { md, svgs } = renderReport(r, logs, json);
  for (const [name, svg] of Object.entries(svgs)) writeFileSync(join(dataDir, name), svg);
  const page = join(docsDir, 'experiments.md');
  writeFileSync(page, md);
  return page;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const page = writeReport(process.argv[2] ?? join(ROOT, 'out/experiments/experiments.json'));
  console.log(`wrote ${relative(process.cwd(), page)} and docs/experiments/`);
}
