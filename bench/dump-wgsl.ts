// Dumps the WGSL of every kernel of every shipped variant in every form, at fixed axis sizes, into a folder:
// a refactor of the kernel generators is checked by dumping before and after and comparing (`--compare`:
// statement by statement, identifiers renamed in order of first use, so names and whitespace may differ).
//
//   npx tsx bench/dump-wgsl.ts DIR                  writes DIR/<variant>/<form>/<n>-<label>.wgsl and plan.json
//   npx tsx bench/dump-wgsl.ts --compare OLD NEW    lists the kernels whose statements differ
//
// Forms: fused chunked under several schedules (one segmented, one exporting the decoding state), unfused,
// recurrent (the software and the hardware split), tree, tree commit, the folded tree step and its packed commit (the
// tree kernels under both splits too) and naive; the leaky (noncausal) variant
// only in the forms that accept it.
// A form a variant refuses is recorded as its error message, so a refusal that changes shows up as well.
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { sharedFloats, type ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { naivePlan } from '../backends/wgsl/naive.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { treeCommitPlan, treePlan } from '../backends/wgsl/tree.ts';
import { treeFoldCommitPlan, treeFoldPlan } from '../backends/wgsl/tree-fold.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes } from '../src/inputs.ts';
import { candidateSchedules, defaultSchedule } from '../backends/wgsl/chunk-schedules.ts';

const VARIANTS = ['examples/paper', 'examples/variants'].flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.la')).sort().map((f) => join(d, f)));

/** Two size sets: the tests' tiny axes, and wider ones that take the staging loops' non-unrolled path. */
const SIZES: readonly Readonly<Record<string, number>>[] = [{ h: 2, d: 4, e: 6 }, { h: 4, d: 32, e: 32 }];

const SCHEDULES: readonly [string, ChunkSchedule][] = [
  ['c16-r4-w64', { chunk: 16, cols: 4, threads: 64 }],
  ['c4-r2-w32', { chunk: 4, cols: 2, threads: 32 }],
  ['c32-r32-w128', { chunk: 32, cols: 32, threads: 128 }],
  ['c64-r8-w256', { chunk: 64, cols: 8, threads: 256 }],
];

function dump(out: string): void {
  for (const file of VARIANTS) {
    const c = compileFile(file);
    const p = c.program;
    SIZES.forEach((want, si) => {
      const sizes = axisSizes(c.source, Object.fromEntries(Object.entries(want).filter(([a]) => c.source.axes[a]?.kind === 'free')));
      const forms: [string, () => Plan][] = [
        ...SCHEDULES.map(([tag, s]): [string, () => Plan] => [`chunked-${tag}`, () => lowerChunked(p, sizes, { fuse: true, schedule: s })]),
        ['chunked-segmented', () => lowerChunked(p, sizes, { fuse: true, schedule: { chunk: 8, cols: 4, threads: 64, segment: 4 } })],
        ['chunked-export', () => lowerChunked(p, sizes, { fuse: true, schedule: { chunk: 16, cols: 4, threads: 64 }, exportState: true })],
        ['chunked-export-c4', () => lowerChunked(p, sizes, { fuse: true, schedule: { chunk: 4, cols: 8, threads: 32 }, exportState: true })],
        ['unfused', () => lowerChunked(p, sizes, { fuse: false, schedule: { chunk: 16, cols: 4, threads: 64 } })],
        ['recurrent', () => recurrentPlan(p, sizes)],
        ['recurrent-hardware', () => recurrentPlan(p, sizes, undefined, { hardware: true })],
        ['tree', () => treePlan(p, sizes, 16)],
        ['tree-commit', () => treeCommitPlan(p, sizes, 16)],
        ['tree-hardware', () => treePlan(p, sizes, 16, { hardware: true })],
        ['tree-fold', () => treeFoldPlan(p, sizes, 16)],
        ['tree-fold-commit', () => treeFoldCommitPlan(p, sizes, 16)],
        ['tree-fold-hardware', () => treeFoldPlan(p, sizes, 16, { hardware: true })],
        ['tree-fold-commit-hardware', () => treeFoldCommitPlan(p, sizes, 16, { hardware: true })],
        ['naive', () => naivePlan(c.source, sizes)],
      ];
      for (const [form, make] of forms) {
        const dir = join(out, p.name, `s${si}`, form);
        mkdirSync(dir, { recursive: true });
        let plan: Plan;
        try {
          plan = make();
        } catch (e) {
          writeFileSync(join(dir, 'error.txt'), `${(e as Error).message}\n`);
          continue;
        }
        plan.kernels.forEach((k, n) => writeFileSync(join(dir, `${n}-${k.label}.wgsl`), k.code));
        // Workgroup memory the chunked kernels declare (what sharedFloats must agree with).
        const declared = plan.kernels.map((k) => [...k.code.matchAll(/var<workgroup> \w+: array<\w+, (\d+)>/g)].reduce((n, m) => n + Number(m[1]), 0));
        const meta = {
          declaredWorkgroupFloats: declared,
          form: plan.form,
          schedule: plan.schedule,
          buffers: plan.buffers.map((b) => ({ name: b.name, role: b.role, floats: b.floats(3, 37), shape: b.shape(3, 37) })),
          kernels: plan.kernels.map((k) => ({ label: k.label, bindings: k.bindings, workgroups: [k.workgroups(3, 37), k.workgroups(1, 1), k.workgroups(2, 700)], launch: k.launch })),
        };
        writeFileSync(join(dir, 'plan.json'), JSON.stringify(meta, null, 1));
      }
      const shared = SCHEDULES.map(([tag, s]) => {
        try {
          return [tag, sharedFloats(p, sizes, p.terms, p.output, s)];
        } catch (e) {
          return [tag, (e as Error).message];
        }
      });
      writeFileSync(join(out, p.name, `s${si}`, 'shared-floats.json'), JSON.stringify(Object.fromEntries(shared), null, 1));
    });
    // The schedules the heuristic picks at benchmark sizes under two adapters' limits (they rest on sharedFloats).
    const picks: Record<string, unknown> = {};
    for (const d of [64, 128]) {
      const sizes = axisSizes(c.source, Object.fromEntries(Object.entries({ h: 16, d, e: d }).filter(([a]) => c.source.axes[a]?.kind === 'free')));
      for (const [tag, limits] of [['48k-1024', { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 }], ['32k-1024', { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 }], ['16k-256', { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 }]] as const) {
        try {
          const cands = candidateSchedules(limits, p, sizes);
          picks[`d${d}-${tag}`] = { candidates: cands.length, hardware: defaultSchedule(cands, false), software: defaultSchedule(cands, true) };
        } catch (e) {
          picks[`d${d}-${tag}`] = (e as Error).message;
        }
      }
    }
    writeFileSync(join(out, p.name, 'default-schedules.json'), JSON.stringify(picks, null, 1));
  }
}

// ---- comparison ------------------------------------------------------------------------------------------
const TOKEN = /\d+(?:\.\d*)?(?:[eE][-+]?\d+)?[uif]?|[A-Za-z_][A-Za-z0-9_]*|\S/g;

/**
 * Statements of a WGSL text (split at `;`, `{` and `}`), comments and blank space dropped, every declared name
 * (module-level, parameter, `let`, `var`, loop variable) replaced by d<k>, k counting declarations in order, and
 * every use by its declaration's: two kernels that differ only in names, and in reusing a name in sibling blocks,
 * give the same statements. Struct fields and builtins stay as written.
 */
function canonical(code: string): string[] {
  const tokens = code.replace(/\/\/[^\n]*/g, '').match(TOKEN) ?? [];
  const scopes: Map<string, string>[] = [new Map()];
  let declared = 0;
  let declareNext = false; // after let / const / var / fn / struct
  let template = false; // inside var<…>
  let params = 0; // parenthesis depth inside a function's parameter list
  let openedByHeader = false; // a `for (` header or a function's parameters already opened the body's scope
  let struct = false;
  const out: string[] = [];
  let stmt: string[] = [];
  const flush = () => {
    if (stmt.length) out.push(stmt.join(' '));
    stmt = [];
  };
  const lookup = (id: string) => {
    for (let k = scopes.length - 1; k >= 0; k--) if (scopes[k].has(id)) return scopes[k].get(id)!;
    return id;
  };
  const declare = (id: string) => {
    const name = `d${declared++}`;
    scopes[scopes.length - 1].set(id, name);
    stmt.push(name);
  };
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k];
    if (struct) {
      stmt.push(tok);
      if (tok === '}') (struct = false), flush();
      continue;
    }
    const ident = /^[A-Za-z_]/.test(tok);
    if (ident && template) stmt.push(tok);
    else if (ident && declareNext) {
      declareNext = false;
      const kind = tokens[k - 1];
      declare(tok);
      if (kind === 'struct') struct = true;
      if (kind === 'fn') (scopes.push(new Map()), (params = -1), (openedByHeader = true));
    } else if (ident && params > 0 && tokens[k + 1] === ':') declare(tok);
    else if (ident && tokens[k - 1] === '.') stmt.push(tok);
    else if (ident) {
      stmt.push(lookup(tok));
      if (['let', 'const', 'var', 'fn', 'struct'].includes(tok)) declareNext = true;
      if (tok === 'for') (scopes.push(new Map()), (openedByHeader = true));
    } else {
      stmt.push(tok);
      if (tok === '<' && declareNext) template = true;
      else if (tok === '>' && template) template = false;
      else if (tok === '(' && params !== 0) params = params < 0 ? 1 : params + 1;
      else if (tok === ')' && params > 0) params--;
      else if (tok === '{') {
        if (openedByHeader) openedByHeader = false;
        else scopes.push(new Map());
        flush();
      } else if (tok === '}') (scopes.pop(), flush());
      else if (tok === ';') flush();
    }
  }
  flush();
  return out;
}

function files(dir: string, rel = ''): string[] {
  if (!existsSync(join(dir, rel))) return [];
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(dir, join(rel, e.name)) : [join(rel, e.name)]));
}

function compare(a: string, b: string): number {
  const all = [...new Set([...files(a), ...files(b)])].sort();
  let bad = 0;
  for (const f of all) {
    const [x, y] = [join(a, f), join(b, f)];
    if (!existsSync(x) || !existsSync(y)) {
      console.log(`${f}: only in ${existsSync(x) ? a : b}`);
      bad++;
      continue;
    }
    const [tx, ty] = [readFileSync(x, 'utf8'), readFileSync(y, 'utf8')];
    if (!f.endsWith('.wgsl')) {
      if (tx !== ty) console.log(`${f}: differs`), bad++;
      continue;
    }
    const [cx, cy] = [canonical(tx), canonical(ty)];
    const differ = [...Array(Math.max(cx.length, cy.length)).keys()].filter((n) => cx[n] !== cy[n]);
    if (differ.length) {
      console.log(`${f}: ${differ.length} of ${cx.length}/${cy.length} statements differ`);
      for (const at of differ.slice(0, 4)) console.log(`  ${at}\n  - ${cx[at] ?? '(end)'}\n  + ${cy[at] ?? '(end)'}`);
      bad++;
    }
  }
  console.log(`${all.length} files, ${bad} differ`);
  return bad;
}

const USAGE = 'usage: npx tsx bench/dump-wgsl.ts DIR | --compare OLD NEW | --help';

/** What the command line asks for; anything else is a usage error (an option is never taken for a folder name). */
export type DumpCommand = { readonly kind: 'help' } | { readonly kind: 'dump'; readonly dir: string } | { readonly kind: 'compare'; readonly old: string; readonly new: string };

export function parseDumpArgs(argv: readonly string[]): DumpCommand {
  let parsed;
  try {
    // strict: an unknown option (`--hlep`) is refused here instead of becoming the output folder's name.
    parsed = parseArgs({ args: [...argv], options: { help: { type: 'boolean', short: 'h' }, compare: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.compare) {
    if (positionals.length !== 2) throw new Error(`--compare takes two folders, OLD and NEW (got ${positionals.length})\n${USAGE}`);
    return { kind: 'compare', old: positionals[0], new: positionals[1] };
  }
  if (positionals.length !== 1) throw new Error(`expected one output folder (got ${positionals.length})\n${USAGE}`);
  return { kind: 'dump', dir: positionals[0] };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let cmd: DumpCommand | undefined;
  try {
    cmd = parseDumpArgs(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 2;
  }
  if (cmd?.kind === 'help') console.log(`${USAGE}\n  DIR                write DIR/<variant>/<form>/<n>-<label>.wgsl and plan.json\n  --compare OLD NEW  list the kernels whose statements differ`);
  else if (cmd?.kind === 'compare') process.exitCode = compare(cmd.old, cmd.new) ? 1 : 0;
  else if (cmd?.kind === 'dump') dump(cmd.dir);
}
