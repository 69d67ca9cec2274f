// What a training step's plan owns, gathered as it is built: its scratch buffers (labelled with the shape) and its
// bound dispatches, so that a failed build and a finished plan release the same things (gpu-train-step.ts,
// medusa-gpu-trainer.ts).
import { BufferUsage, type Gpu } from '../../runtime/device.ts';
import { destroyDispatch, type BoundDispatch } from '../../runtime/model-kernels.ts';

export interface StepResources {
  readonly made: GPUBuffer[];
  readonly dispatches: BoundDispatch[];
  /** A zeroed storage buffer of `floats` floats (at least 16 bytes), readable and writable by copies. */
  buffer(name: string, floats: number): GPUBuffer;
  /** Keeps `d` for release and returns it. */
  bound(d: BoundDispatch): BoundDispatch;
  destroy(): void;
}

export function stepResources(gpu: Gpu, tag: string): StepResources {
  const made: GPUBuffer[] = [];
  const dispatches: BoundDispatch[] = [];
  return {
    made,
    dispatches,
    buffer(name, floats) {
      const buf = gpu.device.createBuffer({ label: `${name} [${tag}]`, size: Math.max(16, floats * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
      made.push(buf);
      return buf;
    },
    bound(d) {
      dispatches.push(d);
      return d;
    },
    destroy() {
      for (const buf of made) buf.destroy();
      for (const d of dispatches) destroyDispatch(d);
    },
  };
}
