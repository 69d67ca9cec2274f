// linattn train sizes the attention's gradient plan for its micro-batch: run-training hands --batch to the
// PrepareAttention context, and the trainable factory's request carries it to gradPlanFor, whose grid-fill rule
// (grad-schedule.ts fillGrid) narrows a hardware adapter's column tiles at a small batch. Software adapters keep
// their schedule. The plans are data, so the factory's request is checked on mock adapters without a device.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { differentiate } from '../passes/autodiff.ts';
import { execute } from '../src/cli/command.ts';
import { trainWith } from '../src/cli/train.ts';
import type { AttentionContext } from '../src/model/attention-context.ts';
import { axisSizes } from '../src/inputs.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { gradPlanFor } from '../src/runtime/gradient.ts';
import { trainingGradRequest } from '../src/runtime/trainable-attention.ts';

const root = mkdtempSync(join(tmpdir(), 'linattn-train-batch-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const adapter = (isSoftware: boolean) =>
  ({ isSoftware, limits: { maxComputeWorkgroupStorageSize: 49152, maxStorageBuffersPerShaderStage: 8, maxComputeInvocationsPerWorkgroup: 1024 } }) as unknown as Gpu;

describe('the training gradient plan at the micro-batch', () => {
  const p = loadVariant('examples/paper/elu_dwconv.la');
  const gp = differentiate(p);
  const sizes = axisSizes(p, { h: 16, d: 64, e: 64 });
  const cols = (gpu: Gpu, batch?: number) => gradPlanFor(gpu, gp, sizes, trainingGradRequest(batch === undefined ? {} : { batch }, true)).schedule.cols;

  it('hardware, b 1: the columns narrow to fill the GPU (32 → 8); at b 4 and without a batch they stay 32', () => {
    expect(cols(adapter(false))).toBe(32);
    expect(cols(adapter(false), 1)).toBe(8);
    expect(cols(adapter(false), 4)).toBe(32);
  });

  it('software: the batch changes nothing; a given schedule wins over the batch', () => {
    expect(cols(adapter(true), 1)).toBe(cols(adapter(true)));
    const schedule = { chunk: 16, cols: 16, threads: 256 };
    expect(trainingGradRequest({ batch: 1, schedule }, false)).toEqual({ fuse: true, accumulate: true, stored: false, schedule, batch: 1 });
    expect(gradPlanFor(adapter(false), gp, sizes, trainingGradRequest({ batch: 1, schedule }, true)).schedule.cols).toBe(16);
  });

  it('linattn train hands --batch to the attention factory', async () => {
    const seen: (number | undefined)[] = [];
    const capture = (ctx: AttentionContext) => {
      seen.push(ctx.batch);
      throw new Error('captured');
    };
    let err = '';
    const io = { stdout: () => {}, stderr: (s: string) => void (err += s) };
    const argv = ['--config', 'examples/models/tiny/config.json', '--data', 'examples/data/kjv-excerpt.txt', '--out', join(root, 'run'), '--steps', '1', '--batch', '3', '--block', '16'];
    expect(await execute(trainWith(capture), argv, io)).toBe(1);
    expect(err).toMatch(/captured/);
    expect(seen).toEqual([3]);
  });
});
