// A recorded step replays the dispatches it was given in order, with a pipeline or bind group that is already
// current not set again, and refuses what a replay could not repeat.
import { describe, expect, it } from 'vitest';
import { RecordedStep } from '../src/model/step-recording.ts';

/** Stand-ins: only identity matters to a recording. */
const pipeline = (name: string) => ({ label: name }) as unknown as GPUComputePipeline;
const group = (name: string) => ({ label: name }) as unknown as GPUBindGroup;

/** A pass that logs every call it receives. */
function loggingPass(log: string[]): GPUComputePassEncoder {
  return {
    setPipeline: (p: GPUComputePipeline) => log.push(`pipeline ${p.label}`),
    setBindGroup: (i: number, g: GPUBindGroup) => log.push(`group ${i} ${g.label}`),
    dispatchWorkgroups: (...grid: number[]) => log.push(`dispatch ${grid.join(',')}`),
  } as unknown as GPUComputePassEncoder;
}

describe('RecordedStep', () => {
  it('replays the recorded dispatches in order, skipping a pipeline or bind group that is already set', () => {
    const [a, b] = [pipeline('a'), pipeline('b')];
    const [g1, g2] = [group('g1'), group('g2')];
    const step = RecordedStep.record((pass) => {
      pass.setPipeline(a);
      pass.setBindGroup(0, g1);
      pass.dispatchWorkgroups(4);
      pass.setPipeline(a); // same pipeline, new group
      pass.setBindGroup(0, g2);
      pass.dispatchWorkgroups(2, 3);
      pass.setPipeline(b); // new pipeline, same group: bindings stay across setPipeline
      pass.dispatchWorkgroups(1, 1, 5);
    });
    expect(step.dispatches).toBe(3);
    const log: string[] = [];
    step.replay(loggingPass(log));
    expect(log).toEqual(['pipeline a', 'group 0 g1', 'dispatch 4', 'group 0 g2', 'dispatch 2,3', 'pipeline b', 'dispatch 1,1,5']);
    const again: string[] = [];
    step.replay(loggingPass(again));
    expect(again).toEqual(log);
  });

  it('refuses dynamic offsets, other bind groups, indirect dispatches and a dispatch before its pipeline', () => {
    const [p, g] = [pipeline('p'), group('g')];
    expect(() => RecordedStep.record((pass) => pass.setBindGroup(1, g))).toThrow(/bind group 0/);
    expect(() => RecordedStep.record((pass) => pass.setBindGroup(0, g, [0]))).toThrow(/dynamic offsets/);
    expect(() => RecordedStep.record((pass) => pass.dispatchWorkgroupsIndirect({} as GPUBuffer, 0))).toThrow(/indirect/);
    expect(() =>
      RecordedStep.record((pass) => {
        pass.setBindGroup(0, g);
        pass.dispatchWorkgroups(1);
      }),
    ).toThrow(/before its pipeline/);
    expect(() =>
      RecordedStep.record((pass) => {
        pass.setPipeline(p);
        pass.dispatchWorkgroups(1);
      }),
    ).toThrow(/before its pipeline and bind group/);
  });
});
