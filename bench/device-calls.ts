// Counts what a piece of host code asks of the device — buffers, bind groups, queue writes, submits — by
// wrapping those methods while it runs: a step that repeats per call what could be made once shows here on any
// adapter, lavapipe included, where its host time is hidden behind a slow GPU.

export type DeviceCall = 'createBuffer' | 'createBindGroup' | 'createCommandEncoder' | 'writeBuffer' | 'submit';

/** Runs `run` with the device's and its queue's methods counted; they are restored afterwards. */
export async function countDeviceCalls<T>(device: GPUDevice, run: () => Promise<T>): Promise<{ result: T; calls: Record<DeviceCall, number> }> {
  const calls: Record<DeviceCall, number> = { createBuffer: 0, createBindGroup: 0, createCommandEncoder: 0, writeBuffer: 0, submit: 0 };
  const wrapped: [Record<string, unknown>, DeviceCall][] = [
    [device as unknown as Record<string, unknown>, 'createBuffer'],
    [device as unknown as Record<string, unknown>, 'createBindGroup'],
    [device as unknown as Record<string, unknown>, 'createCommandEncoder'],
    [device.queue as unknown as Record<string, unknown>, 'writeBuffer'],
    [device.queue as unknown as Record<string, unknown>, 'submit'],
  ];
  const restore: (() => void)[] = [];
  for (const [target, name] of wrapped) {
    const original = target[name] as (...a: unknown[]) => unknown;
    // An own property shadows the prototype's method; deleting it afterwards restores the method.
    const own = Object.prototype.hasOwnProperty.call(target, name);
    restore.push(own ? () => void (target[name] = original) : () => void delete target[name]);
    target[name] = (...a: unknown[]) => {
      calls[name]++;
      return original.apply(target, a);
    };
  }
  try {
    return { result: await run(), calls };
  } finally {
    for (const r of restore) r();
  }
}
