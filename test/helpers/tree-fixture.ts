// What every GPU tree test sets up before its first tree: the parameters (drawn once, uploaded, and kept in float64
// for the oracles), the tensors it uploads and allocates (released together), the layer over the parameters, and
// the float64 recurrent and tree forms over the same parameters.
import { Recurrent } from '../../backends/cpu/recurrent.ts';
import { TreeForm } from '../../backends/cpu/tree.ts';
import type { Program } from '../../src/ir/types.ts';
import type { Gpu } from '../../src/runtime/device.ts';
import { allocTensor, releaseTensor, uploadTensor, type GpuTensor } from '../../src/runtime/gpu-tensor.ts';
import type { TreeAttention, TreeAttentionFactory } from '../../src/runtime/tree-attention.ts';
import type { Tensor } from '../../src/tensor.ts';

export interface TreeFixture {
  /** Uploads a tensor, released with the fixture. */
  upload(label: string, t: Tensor): GpuTensor;
  /** Allocates a tensor, released with the fixture. */
  alloc(label: string, shape: number[]): GpuTensor;
  /** The parameters in float64 (the oracles') and on the GPU, by parameter name. */
  readonly params64: Record<string, Tensor>;
  readonly paramBufs: Record<string, GPUBuffer>;
  /** The factory's layer over paramBufs. */
  readonly layer: TreeAttention;
  readonly rec: Recurrent;
  readonly treeCpu: TreeForm;
  /** Output floats per token. */
  readonly per: number;
  /** Releases every tensor uploaded or allocated through the fixture. */
  release(): void;
}

/** `fixed`: inputs drawn for the program (makeInputs), of which the parameters are taken. */
export function treeFixture(g: Gpu, factory: TreeAttentionFactory, program: Program, sizes: Record<string, number>, fixed: Record<string, Tensor>): TreeFixture {
  const owned: GpuTensor[] = [];
  const keep = (t: GpuTensor) => {
    owned.push(t);
    return t;
  };
  const upload = (label: string, t: Tensor) => keep(uploadTensor(g, label, t));
  const params64: Record<string, Tensor> = {};
  const paramBufs: Record<string, GPUBuffer> = {};
  for (const d of program.params) {
    params64[d.name] = { shape: fixed[d.name].shape, data: Float64Array.from(fixed[d.name].data) };
    paramBufs[d.name] = upload(`param:${d.name}`, fixed[d.name]).buffer;
  }
  return {
    upload,
    alloc: (label, shape) => keep(allocTensor(g, label, shape)),
    params64,
    paramBufs,
    layer: factory.layer(paramBufs),
    rec: new Recurrent(program, params64, sizes),
    treeCpu: new TreeForm(program, params64, sizes),
    per: program.outAxes.reduce((n, a) => n * sizes[a], 1),
    release: () => {
      for (const t of owned.splice(0)) releaseTensor(g, t);
    },
  };
}
