// How the decode step's work spreads over the GPU (recurrent.ts). A decoding call has t = 1: its parallelism is
// (batch, head slice, value column) × (feature row of S or lag of a bounded term), and the serial part is each
// thread's walk along the second factor. One workgroup per (batch, head slice) with one thread per column — what
// the step ran first — is 32 workgroups at batch 1 for a 32-head model, each thread walking 128 features and 64
// lags: latency on a 132-SM GPU. The split puts `columns` columns in a workgroup (column blocks of a head slice
// in separate workgroups) and `slices` threads on each column, each walking ⌈F / slices⌉ rows of S and every
// `slices`-th lag; the slices' partial sums are added in workgroup memory, in slice order. The batch multiplies the
// workgroups (grid [NW, b, 1]), so the split is chosen for the batch a step runs at: batch 1's narrow blocks at
// batch 8 launched 3072 workgroups of 128 threads on the H200's 132 SMs for elu_dwconv 12 × 64, 16.8 µs a layer
// where batch 1's 384 took ~10 µs; blocks 8× wider bring batch 8 back to 384.
/** Threads of a workgroup: `columns` value columns × `slices` slices of the feature rows and lags. */
export interface RecurrentSplit {
  readonly columns: number;
  readonly slices: number;
}

/** Workgroups a launch should reach: twice the compute units of a large GPU (132 on the H200). */
const TARGET_WORKGROUPS = 264;
const HARDWARE_THREADS = 256;
const COLUMN_CHOICES = [64, 32, 16, 8, 4, 2];

/**
 * The split for NS head slices of NR columns whose longest serial walk is `reach` (the most features of a prefix
 * term or lags of a bounded term), at batch `b`. A hardware adapter: the widest column block that still gives
 * TARGET_WORKGROUPS at that batch (else 2 columns), the remaining threads of 256 on slices, no more slices than `reach` rounded up to a
 * power of two. A software adapter runs workgroups on a few CPU threads, where every workgroup recomputes the
 * staged features: one workgroup per head slice, 64 threads on columns, no slices (what its tests are timed for).
 */
export function recurrentSplit(NS: number, NR: number, reach: number, software: boolean, b = 1): RecurrentSplit {
  if (software) return { columns: 64, slices: 1 };
  const columns = COLUMN_CHOICES.find((c) => b * NS * Math.ceil(NR / c) >= TARGET_WORKGROUPS) ?? COLUMN_CHOICES[COLUMN_CHOICES.length - 1];
  let slices = 1;
  while (slices < reach && columns * slices * 2 <= HARDWARE_THREADS) slices *= 2;
  return { columns, slices };
}
