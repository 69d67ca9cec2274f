// The variant-independent half of an emitted module, as AST: the kernel and buffer record types, WebGPU flag
// constants, `grid`, the per-device pipeline cache and the body of `run`. Everything here uses only the
// GPUDevice it is handed: no imports, no Node APIs, no WebGPU globals (Dawn installs none unless asked), so
// the same module runs in a browser and under Dawn.
import type ts from 'typescript';
import {
  array, arrayT, arrow, asConst, await_, bin, booleanT, call, chain, cond, constStmt, destructure, doc, exprStmt, fn, fnT, forOf, id, ifStmt,
  index, interfaceDecl, json, letStmt, lineComments, literalT, method, newExpr, not, num, numberT, obj, param, prop, readonlyArrayT, ret, spread, str,
  stringT, template, throwError, tryFinally, tupleT, typeLit, typeRef, unionT, type Expr,
} from './ast.ts';

/** Names the variant-specific declarations use; emit.ts declares the values. */
export const NAMES = {
  compiled: 'Compiled',
  kernels: 'KERNELS',
  buffers: 'BUFFERS',
  kernelSpec: 'KernelSpec',
  bufferSpec: 'BufferSpec',
  grid: 'grid',
} as const;

export const dims3 = () => tupleT(numberT(), numberT(), numberT());

export function recordTypes(): ts.Statement[] {
  return [
    doc(
      interfaceDecl(NAMES.kernelSpec, [
        { name: 'label', type: stringT() },
        { name: 'code', type: stringT(), doc: 'WGSL; entry point `main`.' },
        {
          name: 'bindings',
          type: readonlyArrayT(typeLit([{ name: 'buffer', type: stringT() }, { name: 'write', type: booleanT() }])),
          doc: 'Storage buffers at bindings 1, 2, …; binding 0 is the `Dims` uniform (b, t, pos0, pad).',
        },
        { name: 'workgroups', type: fnT([['b', numberT()], ['t', numberT()]], dims3()), doc: 'Workgroups to dispatch for b sequences of t tokens.' },
      ]),
      'One compute kernel of the plan.',
    ),
    doc(
      interfaceDecl(NAMES.bufferSpec, [
        { name: 'name', type: stringT() },
        { name: 'role', type: unionT(...['input', 'param', 'output', 'scratch'].map(literalT)) },
        { name: 'shape', type: stringT(), doc: 'The shape over axis names and sizes, for error messages.' },
        { name: 'floats', type: fnT([['b', numberT()], ['t', numberT()]], numberT()), doc: 'Size in f32 elements for b sequences of t tokens.' },
      ]),
      'One buffer of the plan.',
    ),
    doc(
      interfaceDecl(NAMES.compiled, [
        { name: 'kernel', type: typeRef(NAMES.kernelSpec) },
        { name: 'pipeline', type: typeRef('GPUComputePipeline') },
        { name: 'layout', type: typeRef('GPUBindGroupLayout') },
      ]),
      'One kernel compiled on one device.',
    ),
  ];
}

export function flagConstants(): ts.Statement[] {
  const usage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };
  return [
    doc(
      constStmt('USAGE', asConst(obj(Object.fromEntries(Object.entries(usage).map(([k, v]) => [k, num(v, true)])), true))),
      "GPUBufferUsage bits (fixed by the WebGPU spec), as numbers: Dawn need not install WebGPU's globals.",
    ),
    doc(constStmt('MAP_READ', num(0x1, true)), 'GPUMapMode.READ.'),
    doc(constStmt('COMPUTE', num(0x4, true)), 'GPUShaderStage.COMPUTE.'),
  ];
}

/** grid(n, size): n invocations in workgroups of `size`, folded into 2-D past 65535 workgroups per dimension. */
export function gridFunction(): ts.Statement {
  const groups = call(prop('Math', 'max'), num(1), call(prop('Math', 'ceil'), bin(id('n'), '/', id('size'))));
  return doc(
    fn(NAMES.grid, [param('n', numberT()), param('size', numberT())], dims3(), [
      constStmt('groups', groups),
      ifStmt(bin(id('groups'), '<=', num(65535)), [ret(array([id('groups'), num(1), num(1)]))]),
      constStmt('y', call(prop('Math', 'ceil'), bin(id('groups'), '/', num(65535)))),
      ret(array([call(prop('Math', 'ceil'), bin(id('groups'), '/', id('y'))), id('y'), num(1)])),
    ]),
    'A 1-D launch of n invocations in workgroups of `size`, folded into 2-D past the 65535 limit.',
  );
}

/** `const compiled = new WeakMap<GPUDevice, …>()` and `pipelines(device)`, which compiles every kernel once per device. */
export function pipelineCache(): ts.Statement[] {
  const compiledT = typeRef(NAMES.compiled);
  const compiledArrayT = arrayT(compiledT);
  const entryT = typeRef('GPUBindGroupLayoutEntry');
  const layoutEntries = array(
    [
      obj({ binding: num(0), visibility: id('COMPUTE'), buffer: obj({ type: str('uniform') }) }),
      spread(
        method(prop('k', 'bindings'), 'map', arrow([param('bd'), param('n')], obj({
          binding: bin(id('n'), '+', num(1)),
          visibility: id('COMPUTE'),
          buffer: obj({ type: cond(prop('bd', 'write'), str('storage'), str('read-only-storage')) }),
        }), { ret: entryT })),
      ),
    ],
    true,
  );
  const compileOne = arrow(
    [param('k', typeRef(NAMES.kernelSpec))],
    [
      constStmt('layout', method('device', 'createBindGroupLayout', obj({ label: prop('k', 'label'), entries: layoutEntries }, true))),
      constStmt('shader', method('device', 'createShaderModule', obj({ label: prop('k', 'label'), code: prop('k', 'code') }))),
      constStmt(
        'pipeline',
        await_(
          method('device', 'createComputePipelineAsync', obj({
            label: prop('k', 'label'),
            layout: method('device', 'createPipelineLayout', obj({ label: prop('k', 'label'), bindGroupLayouts: array([id('layout')]) })),
            compute: obj({ module: id('shader'), entryPoint: str('main') }),
          }, true)),
        ),
      ),
      ret(obj({ kernel: id('k'), pipeline: id('pipeline'), layout: id('layout') })),
    ],
    { async: true, ret: typeRef('Promise', compiledT) },
  );
  return [
    doc(
      constStmt('compiled', newExpr('WeakMap', [], [typeRef('GPUDevice'), typeRef('Promise', compiledArrayT)])),
      'Pipelines per device, compiled on the first run.',
    ),
    doc(
      fn('pipelines', [param('device', typeRef('GPUDevice'))], typeRef('Promise', compiledArrayT), [
        letStmt('made', method('compiled', 'get', id('device'))),
        ifStmt(bin(id('made'), '===', id('undefined')), [
          exprStmt(bin(id('made'), '=', call(prop('Promise', 'all'), method(NAMES.kernels, 'map', compileOne)))),
          exprStmt(method('compiled', 'set', id('device'), id('made'))),
          // A failed compile must not stay cached: the next call retries (and reports the error again).
          exprStmt(method('made', 'catch', arrow([], [exprStmt(method('compiled', 'delete', id('device')))]))),
        ]),
        ret(id('made')),
      ]),
      "The plan's pipelines on `device`, with explicit bind-group layouts (unused bindings stay bound).",
    ),
  ];
}

export interface RunSpec {
  readonly variant: string;
  /** Plan buffer name → the caller's array (inputs.q, params.w). */
  readonly host: readonly (readonly [string, Expr])[];
}

/** The statements of `run(device, inputs, params, shape)`: validate, upload, one compute pass, read o back. */
export function runBody(spec: RunSpec): ts.Statement[] {
  const v = spec.variant;
  const bufferUsage = chain('|', prop('USAGE', 'STORAGE'), prop('USAGE', 'COPY_DST'), prop('USAGE', 'COPY_SRC'));
  const loop = forOf('spec', id(NAMES.buffers), [
    constStmt('floats', method('spec', 'floats', id('b'), id('t'))),
    constStmt('data', index('host', prop('spec', 'name'))),
    ifStmt(chain('&&', bin(id('data'), '===', id('undefined')), bin(bin(prop('spec', 'role'), '===', str('input')), '||', bin(prop('spec', 'role'), '===', str('param')))), [
      throwError(`${v}: missing `, prop('spec', 'role'), ' ', prop('spec', 'shape')),
    ]),
    ifStmt(chain('&&', bin(id('data'), '!==', id('undefined')), bin(prop('data', 'length'), '!==', id('floats'))), [
      throwError(`${v}: `, prop('spec', 'role'), ' ', prop('spec', 'shape'), ' needs ', id('floats'), ' floats at b = ', id('b'), ', t = ', id('t'), ', got ', prop('data', 'length')),
    ]),
    constStmt('made', method('device', 'createBuffer', obj({
      label: template(`${v} `, prop('spec', 'name')),
      size: bin(call(prop('Math', 'max'), num(1), id('floats')), '*', num(4)),
      usage: bufferUsage,
    }))),
    exprStmt(method('owned', 'push', id('made'))),
    exprStmt(method('buffers', 'set', prop('spec', 'name'), id('made'))),
    lineComments(
      ifStmt(bin(id('data'), '!==', id('undefined')), [
        exprStmt(method(prop('device', 'queue'), 'writeBuffer', id('made'), num(0), prop('data', 'buffer'), prop('data', 'byteOffset'), prop('data', 'byteLength'))),
      ]),
      'Written from the ArrayBuffer behind the view, so arrays over shared memory are accepted too.',
    ),
  ]);
  const dispatch = forOf('c', id('kernels'), [
    constStmt('k', prop('c', 'kernel')),
    constStmt('entries', array([obj({ binding: num(0), resource: obj({ buffer: id('dims') }) })]), arrayT(typeRef('GPUBindGroupEntry'))),
    exprStmt(method(prop('k', 'bindings'), 'forEach', arrow([param('bd'), param('i')], [
      exprStmt(method('entries', 'push', obj({ binding: bin(id('i'), '+', num(1)), resource: obj({ buffer: call('buffer', prop('bd', 'buffer')) }) }))),
    ]))),
    exprStmt(method('pass', 'setPipeline', prop('c', 'pipeline'))),
    exprStmt(method('pass', 'setBindGroup', num(0), method('device', 'createBindGroup', obj({ label: prop('k', 'label'), layout: prop('c', 'layout'), entries: id('entries') })))),
    destructure(['x', 'y', 'z'], method('k', 'workgroups', id('b'), id('t')), 'array'),
    exprStmt(method('pass', 'dispatchWorkgroups', id('x'), id('y'), id('z'))),
  ]);
  return [
    destructure(['b', 't'], id('shape'), 'object'),
    ifStmt(not(chain('&&', call(prop('Number', 'isInteger'), id('b')), bin(num(1), '<=', id('b')), call(prop('Number', 'isInteger'), id('t')), bin(num(1), '<=', id('t')))), [
      throwError(`${v}: shape.b and shape.t must be positive integers, got b = `, id('b'), ', t = ', id('t')),
    ]),
    constStmt('host', obj(Object.fromEntries(spec.host.map(([k, e]) => [k, e])), true), typeRef('Readonly', typeRef('Record', stringT(), unionT(typeRef('Float32Array'), typeRef('undefined'))))),
    constStmt('kernels', await_(call('pipelines', id('device')))),
    constStmt('buffers', newExpr('Map', [], [stringT(), typeRef('GPUBuffer')])),
    constStmt('owned', array([]), arrayT(typeRef('GPUBuffer'))),
    constStmt('buffer', arrow([param('name', stringT())], [
      constStmt('found', method('buffers', 'get', id('name'))),
      ifStmt(bin(id('found'), '===', id('undefined')), [throwError(`${v}: the plan has no buffer `, id('name'))]),
      ret(id('found')),
    ], { ret: typeRef('GPUBuffer') })),
    exprStmt(method('device', 'pushErrorScope', str('validation'))),
    tryFinally(
      [
        loop,
        constStmt('dims', method('device', 'createBuffer', obj({ label: str(`${v} dims`), size: num(16), usage: bin(prop('USAGE', 'UNIFORM'), '|', prop('USAGE', 'COPY_DST')) }))),
        exprStmt(method('owned', 'push', id('dims'))),
        exprStmt(method(prop('device', 'queue'), 'writeBuffer', id('dims'), num(0), method('Uint32Array', 'of', id('b'), id('t'), num(0), num(0)))),
        constStmt('encoder', method('device', 'createCommandEncoder', obj({ label: str(v) }))),
        constStmt('pass', method('encoder', 'beginComputePass', obj({ label: str(v) }))),
        dispatch,
        exprStmt(method('pass', 'end')),
        constStmt('out', call('buffer', str('out:o'))),
        constStmt('readback', method('device', 'createBuffer', obj({ label: str(`${v} readback`), size: prop('out', 'size'), usage: bin(prop('USAGE', 'MAP_READ'), '|', prop('USAGE', 'COPY_DST')) }))),
        exprStmt(method('owned', 'push', id('readback'))),
        exprStmt(method('encoder', 'copyBufferToBuffer', id('out'), num(0), id('readback'), num(0), prop('out', 'size'))),
        exprStmt(method(prop('device', 'queue'), 'submit', array([method('encoder', 'finish')]))),
        exprStmt(await_(method('readback', 'mapAsync', id('MAP_READ')))),
        constStmt('result', newExpr('Float32Array', [method(method('readback', 'getMappedRange'), 'slice', num(0))])),
        exprStmt(method('readback', 'unmap')),
        ret(id('result')),
      ],
      [
        lineComments(
          constStmt('error', await_(method('device', 'popErrorScope'))),
          "A validation error (a bad binding, an oversized dispatch) is thrown here rather than lost in the device's log.",
        ),
        forOf('made', id('owned'), [exprStmt(method('made', 'destroy'))]),
        ifStmt(bin(id('error'), '!==', json(null)), [throwError(`${v}: `, prop('error', 'message'))]),
      ],
    ),
  ];
}
