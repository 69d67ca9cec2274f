// The chunked kernel: one workgroup per (batch b, head slice s, tile of value columns) walks the sequence in
// chunks of C positions. Per chunk it stages the features in workgroup memory, builds one score matrix A per
// output group (the prefix terms' masked φψᵀ with their decay, the bounded terms' scores), multiplies A by the
// chunk's values, adds φ·S_prev for the prefix terms, adds the direct (convolution) taps that read the previous
// chunk's last values, normalises, writes o, and folds the chunk into S. One pass over V for every term.
//
//   o_i = Σ_groups [ Σ_{j∈chunk∪halo} A_g[i,j] v_j + Σ_k φ_k,i·(decay_i ⊙ S_k) ] / (den_g + eps)   (norm groups)
//   S_k ← decay_chunk ⊙ S_k + Σ_j (decay_{j→end} ψ_k,j) ⊗ v_j
//
// The same template, given one term and `partial` output, is the unfused per-term kernel.
import { lagRange } from '../../src/ir/masks.ts';
import type { Id, Node, OutputItem, Program, Term } from '../../src/ir/types.ts';
import { count, maskCondition, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { bindingDecls, DIMS_WGSL, wgslName, type Kernel } from './plan.ts';
import { ringIndex, type StateLayout } from './recurrent.ts';

export interface ChunkSchedule {
  readonly chunk: number; // C
  readonly cols: number; // R: value columns per workgroup
  readonly threads: number;
  /**
   * Chunks per segment (absent: the whole sequence is one segment, one kernel). Segmented plans run three
   * launches: each segment's own state in parallel, an exclusive scan over segments, then every segment's
   * outputs in parallel from its incoming state: b·heads·tiles·segments workgroups instead of b·heads·tiles.
   */
  readonly segment?: number;
}

/** Segment states in global memory: [b, NS, nseg, F, NR] for S_k and [b, NS, nseg, F] for z_k. */
export const segBuffer = (what: 'S' | 'z', k: number) => `seg:${what}${k}`;

export interface ChunkKernelSpec {
  readonly program: Program;
  readonly sizes: Sizes;
  readonly terms: readonly Term[];
  /** Output items over those terms. `partial`: write num/den per item instead of o. */
  readonly items: readonly OutputItem[];
  readonly partial: boolean;
  readonly schedule: ChunkSchedule;
  /** Nodes read from materialised `feat:ID` buffers instead of being computed in the kernel. */
  readonly materialised: ReadonlySet<Id>;
  readonly label: string;
  /** Write the final state (S, z, open group, rings) for decoding to continue from; the call must start at position 0. */
  readonly exportState?: StateLayout;
  /** One launch of a segmented plan: 'state' writes each segment's own S, z; 'output' starts from the scanned ones. */
  readonly segmented?: 'state' | 'output';
}

/** How the kernel splits the output axes: HA indexes workgroups, RA the value columns. */
export interface Layout {
  readonly head: readonly string[];
  readonly rest: readonly string[];
  readonly aTerms: readonly Term[]; // go through the score matrix A
  readonly directTerms: readonly Term[]; // evaluated per (i, j, column)
  readonly halo: number;
}

export function scoreAxes(p: Program, t: Term): readonly string[] {
  return p.nodes[t.score].type.axes;
}

export function layoutOf(p: Program, terms: readonly Term[], chunk?: number): Layout {
  const prefix = terms.filter((t) => t.form.kind === 'prefix');
  const headOf = (t: Term) => scoreAxes(p, t);
  const head = prefix.length ? headOf(prefix[0]) : (terms.find((t) => t.form.kind === 'quadratic') ? headOf(terms.find((t) => t.form.kind === 'quadratic')!) : []);
  for (const t of prefix) {
    if (headOf(t).join() !== head.join()) throw new Error(`prefix terms with different score axes ([${headOf(t)}] vs [${head}]) cannot share a chunk kernel`);
  }
  const same = (t: Term) => headOf(t).length === head.length && headOf(t).every((a) => head.includes(a));
  const aTerms = terms.filter((t) => t.form.kind === 'prefix' || (t.form.kind === 'quadratic' && same(t)));
  const directTerms = terms.filter((t) => !aTerms.includes(t));
  let halo = 0;
  for (const t of terms) {
    if (t.form.kind === 'prefix') continue;
    const r = lagRange(t.mask);
    if (!r) throw new Error(`term ${t.name} has an unbounded mask`);
    // A group term whose groups align with the chunks never reaches into the previous chunk.
    const group = t.mask.find((m) => m.kind === 'group');
    const aligned = group && chunk !== undefined && chunk % group.size === 0;
    halo = Math.max(halo, aligned ? 0 : r[1]);
  }
  const rest = p.outAxes.filter((a) => !head.includes(a));
  return { head: p.outAxes.filter((a) => head.includes(a)), rest, aTerms, directTerms, halo };
}

/** How far back the score matrices reach: the halo of the bounded terms that go through A (0 when none). */
export function aHalo(p: Program, L: Layout, chunk: number): number {
  let h = 0;
  for (const t of L.aTerms) {
    if (t.form.kind === 'prefix') continue;
    const group = t.mask.find((m) => m.kind === 'group');
    if (group && chunk % group.size === 0) continue;
    h = Math.max(h, lagRange(t.mask)![1]);
  }
  return Math.min(h, L.halo);
}

/** Query- and key-side subexpressions of a bounded term's score that are staged per chunk row. */
export function frontier(p: Program, root: Id): { query: Id[]; key: Id[] } {
  const query = new Set<Id>();
  const key = new Set<Id>();
  const visit = (id: Id) => {
    const n = p.nodes[id];
    if (n.type.side === 'query') return void query.add(id);
    if (n.type.side === 'key') return void key.add(id);
    if (n.type.side !== 'pair') return;
    if (n.op === 'decay' && p.nodes[n.x].type.side === 'token') throw new Error(`decay by a per-token gate inside a bounded term is not supported by the chunked kernel`);
    for (const o of operandsOf(n)) visit(o);
  };
  visit(root);
  return { query: [...query], key: [...key] };
}

function operandsOf(n: Node): Id[] {
  switch (n.op) {
    case 'input': case 'param': case 'const': case 'position': return [];
    case 'binary': case 'matmul': return [n.a, n.b];
    case 'concat': return [...n.xs];
    case 'select': return [n.x, n.index];
    default: return [n.x];
  }
}

interface PrefixInfo {
  term: Term;
  k: number;
  F: number;
  feature: string | null;
  gateWidth: number; // 0: no decay; 1: scalar; F: per feature
  gatePerFeature: boolean;
  /** past_groups(G) with G a multiple of the chunk: the open group is kept in So/zo until it closes. */
  openGroup: number;
  /** Rows of psi before the chunk (HALO when a bounded term reads ψ as its key feature, else 0). */
  psiHalo: number;
  /** ψ staged feature-major ([F][C+1], padded against bank conflicts) for the score tiles; row-major when a bounded term reads it too. */
  transposed: boolean;
}

/** Index of ψ_k[row, f] in workgroup memory (row counted from the chunk start). */
function psiAt(q: PrefixInfo, C: number, row: string, f: string): string {
  return q.transposed ? `psi${q.k}[(${f}) * ${C + 1}u + ${row}]` : `psi${q.k}[((${row}) + ${q.psiHalo}u) * ${q.F}u + ${f}]`;
}

/** Staging: at most this many slots of one array unrolled, and only for expressions of at most this many lines. */
const MAX_UNROLL = 8;
const MAX_SLOT_LINES = 12;

/**
 * The micro-tile along an axis of n elements shared by `cols` columns: the largest of 4, 2, 1 dividing n that
 * still gives each of the WG invocations work (n / tile · cols ≥ WG), else 1 — a larger tile reuses each
 * loaded element more, but leaves invocations idle and the phase longer.
 */
function microTile(n: number, cols: number, WG: number): number {
  const fits = [4, 2, 1].filter((m) => n % m === 0);
  return fits.find((m) => (n / m) * cols >= WG) ?? 1;
}

/**
 * The score phase's micro-tile: TI rows × TJ columns per invocation, the largest (of 4×4, 4×2, 2×2, 2×1, 1×1)
 * that still gives every invocation of the workgroup a tile, so that the phase is not left to a few of them.
 */
export function scoreTile(C: number, CA: number, WG: number): { TI: number; TJ: number; NTI: number; NTJ: number } {
  const shapes = [[4, 4], [4, 2], [2, 2], [2, 1], [1, 1]].filter(([ti]) => C % ti === 0);
  const tile = (ti: number, tj: number) => ({ TI: ti, TJ: tj, NTI: C / ti, NTJ: Math.ceil(CA / tj) });
  for (const [ti, tj] of shapes) if ((C / ti) * Math.ceil(CA / tj) >= WG) return tile(ti, tj);
  const [ti, tj] = shapes[shapes.length - 1];
  return tile(ti, tj);
}

/**
 * Output items as the kernel accumulates them: in a final-output kernel every unnormalised term adds into one
 * group (one shared score matrix); each normalised item keeps its own. Partial kernels keep items as given.
 */
export function kernelItems(items: readonly OutputItem[], partial: boolean): OutputItem[] {
  if (partial) return [...items];
  const plain = items.flatMap((it) => (it.kind === 'term' ? [it.term] : []));
  const norms = items.filter((it) => it.kind === 'norm');
  return [...(plain.length ? [{ kind: 'norm', terms: plain, eps: -1 } as OutputItem] : []), ...norms];
}

/** Workgroup memory (in f32s) a spec needs; the scheduler keeps it under the adapter's limit. */
export function sharedFloats(p: Program, sizes: Sizes, terms: readonly Term[], items: readonly OutputItem[], s: ChunkSchedule): number {
  const L = layoutOf(p, terms, s.chunk);
  const C = s.chunk;
  const R = s.cols;
  const CH = C + L.halo;
  let n = CH * R; // values
  const keyIds = new Set(terms.filter((t) => t.form.kind !== 'prefix').flatMap((t) => frontier(p, t.score).key));
  const staged = new Set<Id>();
  for (const t of terms) {
    if (t.form.kind !== 'prefix') continue;
    const F = t.form.feature ? sizes[t.form.feature] : 1;
    const pg = t.mask[0].kind === 'past_groups' ? t.mask[0].size : 0;
    n += (2 * C + (keyIds.has(t.form.psi) ? L.halo : 1)) * F + F * R + F + (t.form.decay ? C * F : 0) + (pg > C ? F * R + F : 0);
    staged.add(t.form.phi).add(t.form.psi);
  }
  for (const t of terms) {
    if (t.form.kind === 'prefix') continue;
    const fr = frontier(p, t.score);
    for (const [ids, rows] of [[fr.query, C], [fr.key, CH]] as const) {
      for (const id of ids) {
        if (staged.has(id)) continue;
        staged.add(id);
        n += rows * count(p.nodes[id].type.axes.filter((a) => !L.head.includes(a)), sizes);
      }
    }
  }
  const groups = kernelItems(items, false).filter((it) => (it.kind === 'term' ? [it.term] : it.terms).some((nm) => L.aTerms.some((t) => t.name === nm)));
  const CA = C + aHalo(p, L, C);
  n += groups.length * C * CA;
  n += items.length * C; // row denominators (at most one per item)
  n += groups.length * C * scoreTile(C, CA, s.threads).NTJ; // their partial sums
  return n;
}

export function chunkKernel(spec: ChunkKernelSpec): Kernel {
  const { program: p, sizes, terms, schedule } = spec;
  // eps < 0 marks the merged group of unnormalised terms.
  const items = kernelItems(spec.items, spec.partial);
  const C = schedule.chunk;
  const R = schedule.cols;
  const WG = schedule.threads;
  const L = layoutOf(p, terms, C);
  const HALO = L.halo;
  const CH = C + HALO;
  // The score matrices reach back only as far as the bounded terms they hold (convolutions are direct taps).
  const AH = aHalo(p, L, C);
  const CA = C + AH;
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const RT = Math.ceil(NR / R);
  const per = count(p.outAxes, sizes);
  for (const t of terms) {
    const m = t.mask.find((x) => x.kind === 'past_groups' || (x.kind === 'group' && t.form.kind === 'prefix'));
    if (m && 'size' in m && C % m.size !== 0 && m.size % C !== 0) throw new Error(`chunk ${C} must divide or be a multiple of the group size ${m.size} (term ${t.name})`);
  }

  // ---- buffers -------------------------------------------------------------------------------------------
  const usedInputs = new Set<string>();
  const usedParams = new Set<string>();
  const usedFeats = new Set<Id>();
  const usedState = new Set<string>();
  const st = spec.exportState;
  const stateRef = (name: string) => {
    usedState.add(name);
    return wgslName(name);
  };
  const RING = st?.ring ?? 0;
  const ringPer = new Map(st?.rings.map((r) => [r.id, r]) ?? []);
  const resolverFor = (batch: string): Resolver => (n, idx: Index, where) => {
    if (spec.materialised.has(n.id)) {
      usedFeats.add(n.id);
      return `${wgslName(`feat:${n.id}`)}[${offset(n.type.axes, sizes, idx, `${batch} * dims.t + ${where}`)}]`;
    }
    if (n.op === 'input') {
      usedInputs.add(n.name);
      return `${wgslName(`in:${n.name}`)}[${offset(n.type.axes, sizes, idx, `${batch} * dims.t + ${where}`)}]`;
    }
    if (n.op === 'param') {
      usedParams.add(n.name);
      return `${wgslName(`param:${n.name}`)}[${offset(n.type.axes, sizes, idx)}]`;
    }
    return null;
  };

  // ---- index helpers -------------------------------------------------------------------------------------
  // head index: ix_<a> for a ∈ HA from `s`; column index cx_<a> for a ∈ RA from the tile's column `col`.
  const headIdx: Record<string, string> = {};
  const headLines: string[] = [];
  {
    let stride = 1;
    for (let k = L.head.length - 1; k >= 0; k--) {
      const a = L.head[k];
      headLines.unshift(`  let hx_${a} = (s / ${stride}u) % ${sizes[a]}u;`);
      headIdx[a] = `hx_${a}`;
      stride *= sizes[a];
    }
  }
  const colIdx = (col: string, tag: string): { lines: string[]; idx: Record<string, string> } => {
    const idx: Record<string, string> = {};
    const lines: string[] = [];
    let stride = 1;
    for (let k = L.rest.length - 1; k >= 0; k--) {
      const a = L.rest[k];
      lines.unshift(`let ${tag}_${a} = (${col} / ${stride}u) % ${sizes[a]}u;`);
      idx[a] = `${tag}_${a}`;
      stride *= sizes[a];
    }
    return { lines, idx };
  };

  const decls: string[] = [];
  const body: string[] = [];
  const emitGen = (g: ExprGen) => body.push(g.code());
  const line = (s: string) => body.push(s);

  // ---- prefix terms --------------------------------------------------------------------------------------
  const keyFeatureIds = new Set(terms.filter((t) => t.form.kind !== 'prefix').flatMap((t) => frontier(p, t.score).key));
  const queryFeatureIds = new Set(terms.filter((t) => t.form.kind !== 'prefix').flatMap((t) => frontier(p, t.score).query));
  const prefix: PrefixInfo[] = [];
  terms.forEach((t) => {
    if (t.form.kind !== 'prefix') return;
    const f = t.form;
    const F = f.feature ? sizes[f.feature] : 1;
    const k = prefix.length;
    let gateWidth = 0;
    let gatePerFeature = false;
    if (f.decay) {
      const gid = f.decay.kind === 'constant' ? f.decay.gamma : f.decay.alpha;
      gatePerFeature = !!f.feature && p.nodes[gid].type.axes.includes(f.feature);
      gateWidth = gatePerFeature ? F : 1;
    }
    const pg = t.mask[0].kind === 'past_groups' ? t.mask[0].size : 0;
    const openGroup = pg && pg > C ? pg : 0;
    const psiHalo = keyFeatureIds.has(f.psi) ? HALO : 0;
    const transposed = !keyFeatureIds.has(f.psi);
    prefix.push({ term: t, k, F, feature: f.feature, gateWidth, gatePerFeature, openGroup, psiHalo, transposed });
    decls.push(`var<workgroup> phi${k}: array<f32, ${C * F}>;`);
    decls.push(transposed ? `var<workgroup> psi${k}: array<f32, ${(C + 1) * F}>; // [f][row], rows padded to ${C + 1}` : `var<workgroup> psi${k}: array<f32, ${(C + psiHalo) * F}>; // also the key feature of a bounded term, with its halo`);
    decls.push(`var<workgroup> S${k}: array<f32, ${F * R}>;`);
    decls.push(`var<workgroup> z${k}: array<f32, ${F}>;`);
    if (openGroup) decls.push(`var<workgroup> So${k}: array<f32, ${F * R}>; // the group still open (past_groups(${openGroup}) spans several chunks)`, `var<workgroup> zo${k}: array<f32, ${F}>;`);
    if (gateWidth) decls.push(`var<workgroup> lg${k}: array<f32, ${C * gateWidth}>; // inclusive Σ log(decay) from the chunk start`);
  });

  /** past_groups size of a prefix term whose last group decoding keeps open (state export), else 0. */
  const openOf = (q: PrefixInfo) => (st?.prefix.find((e) => e.term.name === q.term.name)?.open ? (q.term.mask[0] as { size: number }).size : 0);
  /** z_k[f] ← decay ⊙ z_k[f] + Σ_j decay_{j→end} ψ_k,j[f] (for a term with no open group), `f` in scope. */
  const zUpdate = (q: PrefixInfo, ind: string) => {
    const last = q.gateWidth ? `lg${q.k}[(n - 1u) * ${q.gateWidth}u + ${q.gatePerFeature ? 'f' : '0u'}]` : '0.0';
    const lj = q.gateWidth ? `lg${q.k}[j * ${q.gateWidth}u + ${q.gatePerFeature ? 'f' : '0u'}]` : '0.0';
    line(`${ind}let lend = ${last};`);
    line(`${ind}var acc: f32 = z${q.k}[f] * exp(lend);`);
    line(`${ind}for (var j: u32 = 0u; j < n; j++) { acc = acc + ${psiAt(q, C, 'j', 'f')} * exp(lend - ${lj}); }`);
    line(`${ind}z${q.k}[f] = acc;`);
  };

  // ---- bounded-term frontiers ----------------------------------------------------------------------------
  const qFront = new Map<Id, { name: string; axes: string[]; W: number; alias?: boolean }>();
  const kFront = new Map<Id, { name: string; axes: string[]; W: number; alias?: boolean }>();
  for (const t of terms) {
    if (t.form.kind === 'prefix') continue;
    const fr = frontier(p, t.score);
    for (const [set, map, rows, tag] of [[fr.query, qFront, C, 'qf'], [fr.key, kFront, CH, 'kf']] as const) {
      for (const id of set) {
        if (map.has(id)) continue;
        const axes = p.nodes[id].type.axes.filter((a) => !L.head.includes(a));
        const W = count(axes, sizes);
        // A feature a prefix term already stages (φ as a query feature, ψ as a key feature) is read from there.
        const alias = prefix.find((q) => {
          const f = q.term.form as Extract<Term['form'], { kind: 'prefix' }>;
          return (tag === 'qf' ? f.phi : f.psi) === id && axes.length === 1 && axes[0] === q.feature;
        });
        if (alias) {
          map.set(id, { name: `${tag === 'qf' ? 'phi' : 'psi'}${alias.k}`, axes, W, alias: true });
          continue;
        }
        map.set(id, { name: `${tag}${id}`, axes, W });
        decls.push(`var<workgroup> ${tag}${id}: array<f32, ${rows * W}>;`);
      }
    }
  }
  decls.push(`var<workgroup> vs: array<f32, ${CH * R}>; // values of rows c0-${HALO} … c0+${C - 1}, this workgroup's columns`);

  // ---- output groups that use A ---------------------------------------------------------------------------
  const groupTerms = items.map((it) => (it.kind === 'term' ? [it.term] : [...it.terms]).map((nm) => terms.find((t) => t.name === nm)!));
  const aGroups = groupTerms.map((ts, g) => (ts.some((t) => L.aTerms.includes(t)) ? g : -1)).filter((g) => g >= 0);
  for (const g of aGroups) decls.push(`var<workgroup> A${g}: array<f32, ${C * CA}>;`);

  // ---- the value node (all terms of one kernel share it) --------------------------------------------------
  const valueId = terms[0].value;
  for (const t of terms) if (t.value !== valueId) throw new Error(`terms ${terms[0].name} and ${t.name} have different values; they need separate kernels`);

  // ================================ kernel body ============================================================
  const seg = spec.segmented;
  const G = schedule.segment ?? 0;
  if (seg && (!G || st || prefix.some((q) => q.gateWidth || q.openGroup || q.term.mask[0].kind !== 'causal'))) {
    throw new Error(`${p.name}: a segmented chunk plan needs plain causal prefix terms (no decay, no groups) and no state export`);
  }
  const segS = (q: PrefixInfo) => wgslName(segBuffer('S', q.k));
  const segZ = (q: PrefixInfo) => wgslName(segBuffer('z', q.k));
  const segBase = (q: PrefixInfo, what: 'S' | 'z') => `((b * ${NS}u + s) * nseg + sg) * ${what === 'S' ? q.F * NR : q.F}u`;
  if (seg) line(`  let nseg = (((dims.t + ${C - 1}u) / ${C}u) + ${G - 1}u) / ${G}u;`);
  // Zero the state (or, for a segment's outputs, load the state the scan left for it).
  line('  for (var x: u32 = lid; x < ' + Math.max(1, ...prefix.map((q) => q.F * R), 1) + 'u; x += WG) {');
  for (const q of prefix) {
    if (seg === 'output') {
      line(`    if (x < ${q.F * R}u) { let col = tile * ${R}u + x % ${R}u; S${q.k}[x] = select(0.0, ${segS(q)}[${segBase(q, 'S')} + (x / ${R}u) * ${NR}u + col], col < ${NR}u); }`);
      line(`    if (x < ${q.F}u) { z${q.k}[x] = ${segZ(q)}[${segBase(q, 'z')} + x]; }`);
      continue;
    }
    line(`    if (x < ${q.F * R}u) { S${q.k}[x] = 0.0; }` + `\n    if (x < ${q.F}u) { z${q.k}[x] = 0.0; }`);
    if (q.openGroup) line(`    if (x < ${q.F * R}u) { So${q.k}[x] = 0.0; }` + `\n    if (x < ${q.F}u) { zo${q.k}[x] = 0.0; }`);
  }
  line('  }');
  line('  workgroupBarrier();');
  line(`  let nchunks = (dims.t + ${C - 1}u) / ${C}u;`);
  line(seg ? `  for (var c: u32 = sg * ${G}u; c < min(nchunks, (sg + 1u) * ${G}u); c++) {` : '  for (var c: u32 = 0u; c < nchunks; c++) {');
  line(`    let c0 = c * ${C}u;`);
  line(`    let n = min(${C}u, dims.t - c0);`);
  for (const q of prefix) {
    if (!q.openGroup) continue;
    line(`    if (c0 % ${q.openGroup}u == 0u && c0 > 0u) { // a new group starts: the open one joins S${q.k}`);
    line(`      for (var x: u32 = lid; x < ${q.F * R}u; x += WG) { S${q.k}[x] = S${q.k}[x] + So${q.k}[x]; So${q.k}[x] = 0.0; }`);
    line(`      for (var x: u32 = lid; x < ${q.F}u; x += WG) { z${q.k}[x] = z${q.k}[x] + zo${q.k}[x]; zo${q.k}[x] = 0.0; }`);
    line('    }');
  }

  // Stage the chunk's rows in workgroup memory: φ, ψ (and log-gates) of each prefix term, the bounded terms'
  // query/key features and the values (with halo). The loops are unrolled into slots of straight-line code
  // with clamped positions and `select` for the rows outside the sequence, and every slot of a batch computes
  // before any stores: all their global loads are in flight together instead of one latency per loop trip.
  {
    const slots: { compute: string[]; store: string[] }[] = [];
    /** Slots covering N elements; `make(u, xc, xs)` gets the slot's clamped index and its guard-free index. */
    const loops: string[] = [];
    let next = 0;
    const unroll = (N: number, make: (u: number, xc: string) => { compute: string[]; store: string[] }) => {
      const U = Math.ceil(N / WG);
      // Heavy expressions (a reduction per element) and long arrays stay in a loop of a few slots per trip:
      // straight-line code grows with them, and so does the shader compiler's time.
      const heavy = make(next++, 'lid').compute.length > MAX_SLOT_LINES;
      if (U <= MAX_UNROLL && !heavy) {
        for (let u = 0; u < U; u++) {
          const full = (u + 1) * WG <= N;
          const xs = `(lid + ${u * WG}u)`;
          const s = make(next++, full ? xs : `min(${xs}, ${N - 1}u)`);
          slots.push({ compute: s.compute, store: full ? s.store : [`if (${xs} < ${N}u) {`, ...s.store.map((l) => '  ' + l), '}'] });
        }
        return;
      }
      const UB = heavy ? 1 : MAX_UNROLL;
      const trip: { compute: string[]; store: string[] }[] = [];
      for (let u = 0; u < UB; u++) {
        const xs = `(xb + ${u * WG}u)`;
        const s = make(next++, UB * WG <= N && N % (UB * WG) === 0 ? xs : `min(${xs}, ${N - 1}u)`);
        trip.push({ compute: s.compute, store: [`if (${xs} < ${N}u) {`, ...s.store.map((l) => '  ' + l), '}'] });
      }
      loops.push(`for (var xb: u32 = lid; xb < ${N}u; xb += ${UB * WG}u) {`, ...trip.flatMap((t) => t.compute).map((l) => '  ' + l.trimStart()), ...trip.flatMap((t) => t.store).map((l) => '  ' + l), '}');
    };
    // A slot's expression in its own block (generated helpers such as concat's `cat0` reuse names); only val<u> leaves it.
    const scoped = (g: ExprGen, assign: string, u: number) => [`var val${u}: f32 = 0.0;`, '{', ...g.code().split('\n').filter((l) => l.trim()), assign, '}'];
    const gen = (tag: string, u: number) => new ExprGen(p, sizes, resolverFor('b'), { i: `tpos${u}`, j: `tpos${u}` }, 0, tag);
    for (const q of prefix) {
      const f = q.term.form as Extract<Term['form'], { kind: 'prefix' }>;
      for (const [arr, id, halo] of [[`phi${q.k}`, f.phi, 0], [`psi${q.k}`, f.psi, q.psiHalo]] as const) {
        unroll((C + halo) * q.F, (u, xc) => {
          const g = gen(`${arr}_${u}_`, u);
          const idx: Record<string, string> = { ...headIdx };
          if (q.feature) idx[q.feature] = `(x${u} % ${q.F}u)`;
          const compute = [
            `let x${u} = ${xc}; let row${u} = i32(x${u} / ${q.F}u) - ${halo};`,
            `let ok${u} = row${u} < i32(n) && i32(c0) + row${u} >= 0;`,
            `let tpos${u} = select(0u, u32(i32(c0) + row${u}), ok${u});`,
          ];
          const v = g.value(id, idx, `tpos${u}`);
          const store: string[] = [];
          if (st && ringPer.has(id)) {
            // A bounded term reads this feature as its key (through the alias): decoding needs its last rows too.
            store.push(`if (ok${u} && tile == 0u && row${u} >= 0 && tpos${u} + ${RING}u >= dims.t) { ${stateRef(`state:ring${id}`)}[${ringIndex(ringPer.get(id)!, RING, `tpos${u} % ${RING}u`, offset(p.nodes[id].type.axes, sizes, idx))}] = val${u}; }`);
          }
          store.push(arr.startsWith('psi') && q.transposed ? `${arr}[(x${u} % ${q.F}u) * ${C + 1}u + x${u} / ${q.F}u] = val${u};` : `${arr}[x${u}] = val${u};`);
          return { compute: [...compute, ...scoped(g, `val${u} = select(0.0, ${v}, ok${u});`, u)], store };
        });
      }
      if (q.gateWidth) {
        const d = f.decay!;
        const gid = d.kind === 'constant' ? d.gamma : d.alpha;
        unroll(C * q.gateWidth, (u, xc) => {
          const g = gen(`lg${q.k}_${u}_`, u);
          const idx: Record<string, string> = { ...headIdx };
          if (q.gatePerFeature) idx[q.feature!] = `(x${u} % ${q.gateWidth}u)`;
          const compute = [`let x${u} = ${xc}; let row${u} = x${u} / ${q.gateWidth}u; let ok${u} = row${u} < n; let tpos${u} = select(0u, c0 + row${u}, ok${u});`];
          const v = g.value(gid, idx, `tpos${u}`);
          return { compute: [...compute, ...scoped(g, `val${u} = select(0.0, log(max(${v}, 1e-30)), ok${u});`, u)], store: [`lg${q.k}[x${u}] = val${u};`] };
        });
      }
    }
    for (const [map, rows, base] of [[qFront, C, 0], [kFront, CH, HALO]] as const) {
      for (const [id, fr] of map) {
        if (fr.alias) continue;
        unroll(rows * fr.W, (u, xc) => {
          const g = gen(`${fr.name}_${u}_`, u);
          const { lines, idx } = unflattenLocal(fr.axes, sizes, `(x${u} % ${fr.W}u)`, `fx${id}_${u}`);
          const compute = [
            `let x${u} = ${xc}; let tposi${u} = i32(c0) + i32(x${u} / ${fr.W}u) - ${base};`,
            `let ok${u} = tposi${u} >= 0 && u32(tposi${u}) < dims.t; let tpos${u} = select(0u, u32(tposi${u}), ok${u});`,
            ...lines,
          ];
          const v = g.value(id, { ...headIdx, ...idx }, `tpos${u}`);
          const store: string[] = [];
          if (st && ringPer.has(id) && map === kFront) {
            store.push(`if (ok${u} && tile == 0u && tpos${u} + ${RING}u >= dims.t) { ${stateRef(`state:ring${id}`)}[${ringIndex(ringPer.get(id)!, RING, `tpos${u} % ${RING}u`, offset(p.nodes[id].type.axes, sizes, { ...headIdx, ...idx }))}] = val${u}; }`);
          }
          store.push(`${fr.name}[x${u}] = val${u};`);
          return { compute: [...compute, ...scoped(g, `val${u} = select(0.0, ${v}, ok${u});`, u)], store };
        });
      }
    }
    unroll(CH * R, (u, xc) => {
      const g = gen(`v_${u}_`, u);
      const { lines, idx } = colIdx(`col${u}`, `vc${u}`);
      const compute = [
        `let x${u} = ${xc}; let col${u} = tile * ${R}u + x${u} % ${R}u; let tposi${u} = i32(c0) + i32(x${u} / ${R}u) - ${HALO};`,
        `let ok${u} = tposi${u} >= 0 && u32(tposi${u}) < dims.t && col${u} < ${NR}u; let tpos${u} = select(0u, u32(tposi${u}), ok${u});`,
        ...lines,
      ];
      const v = g.value(valueId, { ...headIdx, ...idx }, `tpos${u}`);
      const store: string[] = [];
      if (st && ringPer.has(valueId)) {
        store.push(`if (ok${u} && tpos${u} + ${RING}u >= dims.t) { ${stateRef(`state:ring${valueId}`)}[${ringIndex(ringPer.get(valueId)!, RING, `tpos${u} % ${RING}u`, offset(p.nodes[valueId].type.axes, sizes, { ...headIdx, ...idx }))}] = val${u}; }`);
      }
      store.push(`vs[x${u}] = val${u};`);
      return { compute: [...compute, ...scoped(g, `val${u} = select(0.0, ${v}, ok${u});`, u)], store };
    });
    // Batches of slots: each batch's loads are issued together, then stored (bounded register use).
    const BATCH = 16;
    for (let s0 = 0; s0 < slots.length; s0 += BATCH) {
      const batch = slots.slice(s0, s0 + BATCH);
      line('    {');
      for (const s of batch) for (const l of s.compute) line('      ' + l.trimStart());
      for (const s of batch) for (const l of s.store) line('      ' + l);
      line('    }');
    }
    for (const l of loops) line('    ' + l);
  }
  line('    workgroupBarrier();');
  // Inclusive cumulative log-decay along the chunk (one invocation per gate column).
  for (const q of prefix) {
    if (!q.gateWidth) continue;
    line(`    for (var x: u32 = lid; x < ${q.gateWidth}u; x += WG) {`);
    line('      var acc: f32 = 0.0;');
    line(`      for (var r: u32 = 0u; r < ${C}u; r++) { acc = acc + lg${q.k}[r * ${q.gateWidth}u + x]; lg${q.k}[r * ${q.gateWidth}u + x] = acc; }`);
    line('    }');
  }
  if (prefix.some((q) => q.gateWidth)) line('    workgroupBarrier();');

  // Row denominators of the normalised groups (the row sums of A plus φ·z), once per row rather than per column:
  // the score invocations leave partial sums (their tile's row sums, a strided share of φ·z) in denp, and one
  // short phase adds them up.
  const denGroups = items.map((it, g) => (spec.partial || (it.kind === 'norm' && it.eps >= 0) ? g : -1)).filter((g) => g >= 0);
  const tileNTJ = scoreTile(C, CA, WG).NTJ;
  for (const g of denGroups) decls.push(`var<workgroup> rowden${g}: array<f32, ${C}>;`);
  for (const g of denGroups) if (aGroups.includes(g)) decls.push(`var<workgroup> denp${g}: array<f32, ${C * tileNTJ}>;`);
  // Score matrices A_g[il, ja], ja over the A halo + chunk: each invocation owns a TI×TJ micro-tile (rows
  // ti + m·NTI, columns tj + n·NTJ, strided so that neighbouring invocations read neighbouring ψ), so every
  // φ and ψ it loads from workgroup memory feeds TJ or TI products.
  if (aGroups.length && seg !== 'state') {
    const { TI, TJ, NTI, NTJ } = scoreTile(C, CA, WG);
    const cells: [number, number][] = [];
    for (let m = 0; m < TI; m++) for (let n = 0; n < TJ; n++) cells.push([m, n]);
    line(`    for (var x: u32 = lid; x < ${NTI * NTJ}u; x += WG) {`);
    line(`      let ti = x / ${NTJ}u; let tj = x % ${NTJ}u;`);
    for (const g of aGroups) for (const [m, n] of cells) line(`      var a${g}_${m}_${n}: f32 = 0.0;`);
    for (const g of aGroups) {
      for (const t of groupTerms[g]) {
        if (t.form.kind !== 'prefix') continue;
        const q = prefix.find((x) => x.term === t)!;
        line(`      { // term ${t.name} (prefix): φ_i·ψ_j over the tile${q.gateWidth ? ', with decay' : ''}`);
        for (const [m, n] of cells) line(`        var d_${m}_${n}: f32 = 0.0;`);
        for (let n = 0; n < TJ; n++) line(`        let jl_${n} = u32(clamp(i32(tj + ${n * NTJ}u) - ${AH}, 0, ${C - 1}));`);
        line(`        for (var f: u32 = 0u; f < ${q.F}u; f++) {`);
        for (let m = 0; m < TI; m++) line(`          let p_${m} = phi${q.k}[(ti + ${m * NTI}u) * ${q.F}u + f];`);
        for (let n = 0; n < TJ; n++) line(`          let q_${n} = ${psiAt(q, C, `jl_${n}`, 'f')};`);
        for (const [m, n] of cells) {
          const decayF = q.gatePerFeature ? ` * exp(lg${q.k}[(ti + ${m * NTI}u) * ${q.F}u + f] - lg${q.k}[jl_${n} * ${q.F}u + f])` : '';
          line(`          d_${m}_${n} = d_${m}_${n} + p_${m} * q_${n}${decayF};`);
        }
        line('        }');
        for (const [m, n] of cells) {
          line(`        { let il = ti + ${m * NTI}u; let jj = tj + ${n * NTJ}u; let ia = c0 + il; let ja_i = i32(c0) + i32(jj) - ${AH}; let ja = u32(max(ja_i, 0));`);
          const decayS = q.gateWidth === 1 ? ` * exp(lg${q.k}[il] - lg${q.k}[jl_${n}])` : '';
          line(`          if (il < n && jj >= ${AH}u && jj < ${CA}u && ja_i >= 0 && (${maskCondition(t.mask, 'ia', 'ja')})) { a${g}_${m}_${n} = a${g}_${m}_${n} + d_${m}_${n}${decayS}; } }`);
        }
        line('      }');
      }
    }
    for (const [m, n] of cells) {
      line(`      { let il = ti + ${m * NTI}u; let jj = tj + ${n * NTJ}u;`);
      line(`        if (jj < ${CA}u) {`);
      line(`          let ia = c0 + il; let ja_i = i32(c0) + i32(jj) - ${AH}; let ja = u32(max(ja_i, 0)); let valid = il < n && ja_i >= 0;`);
      for (const g of aGroups) {
        for (const t of groupTerms[g]) {
          if (!L.aTerms.includes(t) || t.form.kind === 'prefix') continue;
          line(`          if (valid && (${maskCondition(t.mask, 'ia', 'ja')})) { // term ${t.name} (${t.form.kind})`);
          const gen = new ExprGen(p, sizes, stagedResolver(resolverFor('b'), qFront, kFront, sizes, 'il', `(jj + ${HALO - AH}u)`), { i: 'ia', j: 'ja' }, 12, `A${g}_${t.name.replace(/\W/g, '_')}_`);
          const sv = gen.value(t.score, { ...headIdx }, 'ja');
          emitGen(gen);
          line(`            a${g}_${m}_${n} = a${g}_${m}_${n} + ${sv};`);
          line('          }');
        }
        line(`          A${g}[il * ${CA}u + jj] = a${g}_${m}_${n};`);
      }
      line('        }');
      line('      }');
    }
    // This tile's share of the row denominators: its row sums of A, and φ·z over the features f ≡ tj (mod NTJ).
    for (const g of denGroups) {
      if (!aGroups.includes(g)) continue;
      for (let m = 0; m < TI; m++) {
        line(`      { let il = ti + ${m * NTI}u; var dp: f32 = ${[...Array(TJ).keys()].map((n) => `a${g}_${m}_${n}`).join(' + ')};`);
        for (const t of groupTerms[g]) {
          if (t.form.kind !== 'prefix') continue;
          const q = prefix.find((x) => x.term === t)!;
          const dec = q.gatePerFeature ? ` * exp(lg${q.k}[il * ${q.F}u + f])` : q.gateWidth === 1 ? ` * exp(lg${q.k}[il])` : '';
          line(`        for (var f: u32 = tj; f < ${q.F}u; f += ${NTJ}u) { dp = dp + phi${q.k}[il * ${q.F}u + f]${dec} * z${q.k}[f]; } // φ·z for ${t.name}`);
        }
        line(`        denp${g}[il * ${NTJ}u + tj] = dp; }`);
      }
    }
    line('    }');
    line('    workgroupBarrier();');
  }

  // Sum the partial denominators; the same phase folds the chunk into z (φ·z above read the previous z).
  const zEarly = denGroups.length && seg !== 'state' ? prefix.filter((q) => !q.openGroup && !openOf(q)) : [];
  if (denGroups.length && seg !== 'state') {
    const jobs = C + zEarly.reduce((a, q) => a + q.F, 0);
    line(`    for (var x: u32 = lid; x < ${jobs}u; x += WG) {`);
    line(`      if (x < ${C}u) {`);
    line('        let il = x;');
    for (const g of denGroups) {
      line(`        var den${g}: f32 = 0.0;`);
      if (aGroups.includes(g)) line(`        for (var u: u32 = 0u; u < ${tileNTJ}u; u++) { den${g} = den${g} + denp${g}[il * ${tileNTJ}u + u]; }`);
      line(`        rowden${g}[il] = den${g};`);
    }
    let from = C;
    for (const q of zEarly) {
      line(`      } else if (x < ${from + q.F}u) {`);
      line(`        let f = x - ${from}u;`);
      zUpdate(q, '        ');
      from += q.F;
    }
    line('      }');
    line('    }');
    line('    workgroupBarrier();');
  }

  // (A segment-state launch writes no outputs.)
  if (seg !== 'state') {
    // Outputs: each invocation owns TM rows (ti + m·NTO) of one value column, so each value and state element it
    // loads feeds TM rows.
    const TM = microTile(C, R, WG);
    const NTO = C / TM;
    const rows = [...Array(TM).keys()];
    line(`    for (var x: u32 = lid; x < ${NTO * R}u; x += WG) {`);
    line(`      let ti = x / ${R}u; let cl = x % ${R}u; let col = tile * ${R}u + cl;`);
    line(`      if (col < ${NR}u) {`);
    {
      const { lines, idx } = colIdx('col', 'oc');
      for (const l of lines) line('        ' + l);
      const fullIdx: Record<string, string> = { ...headIdx, ...idx };
      for (const m of rows) line(`        var o_${m}: f32 = 0.0;`);
      items.forEach((it, g) => {
        const normed = it.kind === 'norm' && it.eps >= 0;
        const withDen = denGroups.includes(g);
        line(`        { // output group ${g}: ${it.kind === 'norm' ? (normed ? `normalize(${it.terms.join(' + ')})` : it.terms.join(' + ')) : it.term}`);
        for (const m of rows) line(`          var num_${m}: f32 = 0.0; var den_${m}: f32 = ${withDen ? `rowden${g}[ti + ${m * NTO}u]` : '0.0'};`);
        if (aGroups.includes(g)) {
          line(`          for (var jj: u32 = 0u; jj < ${CA}u; jj++) {`);
          line(`            let vv = vs[(jj + ${HALO - AH}u) * ${R}u + cl];`);
          for (const m of rows) line(`            num_${m} = num_${m} + A${g}[(ti + ${m * NTO}u) * ${CA}u + jj] * vv;`);
          line('          }');
        }
        for (const t of groupTerms[g]) {
          if (t.form.kind === 'prefix') {
            const q = prefix.find((x) => x.term === t)!;
            line(`          for (var f: u32 = 0u; f < ${q.F}u; f++) { // φ·S_prev for ${t.name}`);
            line(`            let sv = S${q.k}[f * ${R}u + cl];`);
            for (const m of rows) {
              const il = `(ti + ${m * NTO}u)`;
              const dec = q.gatePerFeature ? ` * exp(lg${q.k}[${il} * ${q.F}u + f])` : q.gateWidth === 1 ? ` * exp(lg${q.k}[${il}])` : '';
              line(`            num_${m} = num_${m} + phi${q.k}[${il} * ${q.F}u + f]${dec} * sv;`);
            }
            line('          }');
          } else if (!L.aTerms.includes(t)) {
            const r = lagRange(t.mask)!;
            for (const m of rows) {
              line(`          { let il = ti + ${m * NTO}u; let ia = c0 + il;`);
              line(`            for (var lag: i32 = ${r[0]}; lag <= ${r[1]}; lag++) { // direct taps of ${t.name}`);
              line(`              let ja_i = i32(ia) - lag;`);
              line(`              if (il >= n || ja_i < 0 || ja_i >= i32(dims.t)) { continue; }`);
              line('              let ja = u32(ja_i);');
              line(`              if (!(${maskCondition(t.mask, 'ia', 'ja')})) { continue; }`);
              line(`              let jj = u32(i32(il) - lag + ${HALO});`);
              const gen = new ExprGen(p, sizes, stagedResolver(resolverFor('b'), qFront, kFront, sizes, 'il', 'jj'), { i: 'ia', j: 'ja' }, 14, `d${m}_${t.name.replace(/\W/g, '_')}_`);
              const sv = gen.value(t.score, fullIdx, 'ja');
              emitGen(gen);
              line(`              num_${m} = num_${m} + ${sv} * vs[jj * ${R}u + cl];${withDen ? ` den_${m} = den_${m} + ${sv};` : ''}`);
              line('            }');
              line('          }');
            }
          }
        }
        for (const m of rows) {
          line(`          { let il = ti + ${m * NTO}u; let ia = c0 + il;`);
          line('            if (il < n) {');
          if (spec.partial) {
            line(`              let o_off = (b * dims.t + ia) * ${per}u + ${offset(p.outAxes, sizes, fullIdx)};`);
            line(`              part_${g}_num[o_off] = num_${m}; part_${g}_den[o_off] = den_${m};`);
          } else {
            line(normed ? `              o_${m} = o_${m} + num_${m} / (den_${m} + ${(it as { eps: number }).eps});` : `              o_${m} = o_${m} + num_${m};`);
          }
          line('            }');
          line('          }');
        }
        line('        }');
      });
      if (!spec.partial) {
        for (const m of rows) line(`        { let ia = c0 + ti + ${m * NTO}u; if (ti + ${m * NTO}u < n) { out_o[(b * dims.t + ia) * ${per}u + ${offset(p.outAxes, sizes, fullIdx)}] = o_${m}; } }`);
      }
    }
    line('      }');
    line('    }');
  }
  if (prefix.length) {
    line('    workgroupBarrier();');
    // Fold the chunk into the state.
    for (const q of prefix) {
      if (q.openGroup) {
        // The chunk lies inside one group, which stays open: it joins S when the next group starts.
        line(`    for (var x: u32 = lid; x < ${q.F * R}u; x += WG) { // So${q.k} += Σ_j ψ_j ⊗ v_j`);
        line(`      let f = x / ${R}u; let cl = x % ${R}u;`);
        line(`      var acc: f32 = So${q.k}[x];`);
        line(`      for (var j: u32 = 0u; j < n; j++) { acc = acc + ${psiAt(q, C, 'j', 'f')} * vs[(j + ${HALO}u) * ${R}u + cl]; }`);
        line(`      So${q.k}[x] = acc;`);
        line('    }');
        line(`    for (var f: u32 = lid; f < ${q.F}u; f += WG) {`);
        line(`      var acc: f32 = zo${q.k}[f];`);
        line(`      for (var j: u32 = 0u; j < n; j++) { acc = acc + ${psiAt(q, C, 'j', 'f')}; }`);
        line(`      zo${q.k}[f] = acc;`);
        line('    }');
        continue;
      }
      const last = q.gateWidth ? `lg${q.k}[(n - 1u) * ${q.gateWidth}u + ${q.gatePerFeature ? 'f' : '0u'}]` : '0.0';
      const lj = q.gateWidth ? `lg${q.k}[j * ${q.gateWidth}u + ${q.gatePerFeature ? 'f' : '0u'}]` : '0.0';
      const open = openOf(q);
      if (!open) {
        // Each invocation owns TF features (tf + m·NTF) of one column: a value loaded once feeds TF products.
        const TF = microTile(q.F, R, WG);
        const NTF = q.F / TF;
        const fs = [...Array(TF).keys()];
        line(`    for (var x: u32 = lid; x < ${NTF * R}u; x += WG) { // S${q.k} ← decay ⊙ S${q.k} + Σ_j ψ_j ⊗ v_j`);
        line(`      let tf = x / ${R}u; let cl = x % ${R}u;`);
        for (const m of fs) {
          line(`      let f_${m} = tf + ${m * NTF}u;`);
          if (q.gateWidth) line(`      let lend_${m} = ${q.gatePerFeature ? last.replace(/ f\]$/, ` f_${m}]`) : last};`);
          line(`      var acc_${m}: f32 = S${q.k}[f_${m} * ${R}u + cl]${q.gateWidth ? ` * exp(lend_${m})` : ''};`);
        }
        line('      for (var j: u32 = 0u; j < n; j++) {');
        line(`        let vv = vs[(j + ${HALO}u) * ${R}u + cl];`);
        for (const m of fs) {
          const w = q.gateWidth ? ` * exp(lend_${m} - ${q.gatePerFeature ? lj.replace(/ f\]$/, ` f_${m}]`) : lj})` : '';
          line(`        acc_${m} = acc_${m} + ${psiAt(q, C, 'j', `f_${m}`)}${w} * vv;`);
        }
        line('      }');
        for (const m of fs) line(`      S${q.k}[f_${m} * ${R}u + cl] = acc_${m};`);
        line('    }');
        if (!zEarly.includes(q)) {
          line(`    for (var f: u32 = lid; f < ${q.F}u; f += WG) {`);
          zUpdate(q, '      ');
          line('    }');
        }
        continue;
      }
      line(`    for (var x: u32 = lid; x < ${q.F * R}u; x += WG) { // S${q.k} ← decay ⊙ S${q.k} + Σ_j ψ_j ⊗ v_j`);
      line(`      let f = x / ${R}u; let cl = x % ${R}u;`);
      line(`      let lend = ${last};`);
      line(`      var acc: f32 = S${q.k}[x] * exp(lend);`);
      if (open) {
        // Decoding keeps the last (open) group apart: it joins S only when the next group starts.
        line(`      let tg = ${open}u * ((dims.t - 1u) / ${open}u);`);
        line('      var accOpen: f32 = 0.0;');
        line(`      for (var j: u32 = 0u; j < n; j++) { let pv = ${psiAt(q, C, 'j', 'f')} * vs[(j + ${HALO}u) * ${R}u + cl]; if (c0 + j >= tg) { accOpen = accOpen + pv; } else { acc = acc + pv; } }`);
        line(`      if (c + 1u == nchunks && tile * ${R}u + cl < ${NR}u) { ${stateRef(`state:So${q.k}`)}[((b * ${NS}u + s) * ${q.F}u + f) * ${NR}u + tile * ${R}u + cl] = accOpen; }`);
      } else {
        line(`      for (var j: u32 = 0u; j < n; j++) { acc = acc + ${psiAt(q, C, 'j', 'f')} * exp(lend - ${lj}) * vs[(j + ${HALO}u) * ${R}u + cl]; }`);
      }
      line(`      S${q.k}[x] = acc;`);
      line('    }');
      line(`    for (var f: u32 = lid; f < ${q.F}u; f += WG) {`);
      line(`      let lend = ${last};`);
      line(`      var acc: f32 = z${q.k}[f] * exp(lend);`);
      if (open) {
        line(`      let tg = ${open}u * ((dims.t - 1u) / ${open}u);`);
        line('      var accOpen: f32 = 0.0;');
        line(`      for (var j: u32 = 0u; j < n; j++) { let pz = ${psiAt(q, C, 'j', 'f')}; if (c0 + j >= tg) { accOpen = accOpen + pz; } else { acc = acc + pz; } }`);
        line(`      if (c + 1u == nchunks && tile == 0u) { ${stateRef(`state:zo${q.k}`)}[(b * ${NS}u + s) * ${q.F}u + f] = accOpen; }`);
      } else {
        line(`      for (var j: u32 = 0u; j < n; j++) { acc = acc + ${psiAt(q, C, 'j', 'f')} * exp(lend - ${lj}); }`);
      }
      line(`      z${q.k}[f] = acc;`);
      line('    }');
    }
  }
  line('    workgroupBarrier();');
  line('  }');
  if (seg === 'state') {
    for (const q of prefix) {
      line(`  for (var x: u32 = lid; x < ${q.F * R}u; x += WG) { // this segment's own S${q.k}, for the scan`);
      line(`    let col = tile * ${R}u + x % ${R}u;`);
      line(`    if (col < ${NR}u) { ${segS(q)}[${segBase(q, 'S')} + (x / ${R}u) * ${NR}u + col] = S${q.k}[x]; }`);
      line('  }');
      line(`  for (var f: u32 = lid; f < ${q.F}u; f += WG) { if (tile == 0u) { ${segZ(q)}[${segBase(q, 'z')} + f] = z${q.k}[f]; } }`);
    }
  }
  if (st) {
    for (const q of prefix) {
      line(`  for (var x: u32 = lid; x < ${q.F * R}u; x += WG) { // export S${q.k}`);
      line(`    let f = x / ${R}u; let col = tile * ${R}u + x % ${R}u;`);
      line(`    if (col < ${NR}u) { ${stateRef(`state:S${q.k}`)}[((b * ${NS}u + s) * ${q.F}u + f) * ${NR}u + col] = S${q.k}[x]; }`);
      line('  }');
      line(`  for (var f: u32 = lid; f < ${q.F}u; f += WG) { if (tile == 0u) { ${stateRef(`state:z${q.k}`)}[(b * ${NS}u + s) * ${q.F}u + f] = z${q.k}[f]; } }`);
      if (q.openGroup) {
        line(`  for (var x: u32 = lid; x < ${q.F * R}u; x += WG) {`);
        line(`    let f = x / ${R}u; let col = tile * ${R}u + x % ${R}u;`);
        line(`    if (col < ${NR}u) { ${stateRef(`state:So${q.k}`)}[((b * ${NS}u + s) * ${q.F}u + f) * ${NR}u + col] = So${q.k}[x]; }`);
        line('  }');
        line(`  for (var f: u32 = lid; f < ${q.F}u; f += WG) { if (tile == 0u) { ${stateRef(`state:zo${q.k}`)}[(b * ${NS}u + s) * ${q.F}u + f] = zo${q.k}[f]; } }`);
      }
    }
  }

  // ---- bindings (known only after generating the body) ---------------------------------------------------
  const bindings: { buffer: string; write: boolean }[] = [];
  for (const d of p.inputs) if (usedInputs.has(d.name)) bindings.push({ buffer: `in:${d.name}`, write: false });
  for (const d of p.params) if (usedParams.has(d.name)) bindings.push({ buffer: `param:${d.name}`, write: false });
  for (const id of [...usedFeats].sort((a, b) => a - b)) bindings.push({ buffer: `feat:${id}`, write: false });
  for (const b of st?.buffers ?? []) if (usedState.has(b.name)) bindings.push({ buffer: b.name, write: true });
  if (seg) for (const q of prefix) bindings.push({ buffer: segBuffer('S', q.k), write: seg === 'state' }, { buffer: segBuffer('z', q.k), write: seg === 'state' });
  if (spec.partial) items.forEach((_, g) => bindings.push({ buffer: `${spec.label}:part${g}:num`, write: true }, { buffer: `${spec.label}:part${g}:den`, write: true }));
  else bindings.push({ buffer: 'out:o', write: true });
  let decl = bindingDecls(bindings);
  if (spec.partial) {
    items.forEach((_, g) => {
      decl = decl.replace(`${wgslName(`${spec.label}:part${g}:num`)}:`, `part_${g}_num:`).replace(`${wgslName(`${spec.label}:part${g}:den`)}:`, `part_${g}_den:`);
    });
  }

  const code = `// chunked kernel ${spec.label} for ${p.name}: terms ${terms.map((t) => `${t.name} (${t.form.kind})`).join(', ')}
// chunk ${C}, ${R} value columns per workgroup, halo ${HALO}, head axes [${L.head.join(', ')}], column axes [${L.rest.join(', ')}]
${DIMS_WGSL}
${decl}
const WG = ${WG}u;
${decls.join('\n')}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x / ${RT}u;
  let tile = wid.x % ${RT}u;
${seg ? '  let sg = wid.y; // segment\n  let b = wid.z;' : '  let b = wid.y;'}
${headLines.join('\n')}
${body.join('\n')}
}
`;
  if (seg) return { label: spec.label, code, bindings, workgroups: (b, t) => [NS * RT, Math.ceil(Math.ceil(t / C) / G), b] };
  return { label: spec.label, code, bindings, workgroups: (b) => [NS * RT, b, 1], launch: { kind: 'fixed', x: NS * RT, perBatchY: true } };
}

function unflattenLocal(axes: readonly string[], sizes: Sizes, flat: string, tag: string): { lines: string[]; idx: Record<string, string> } {
  const idx: Record<string, string> = {};
  const lines: string[] = [];
  let stride = 1;
  for (let k = axes.length - 1; k >= 0; k--) {
    const a = axes[k];
    lines.unshift(`let ${tag}_${a} = (${flat} / ${stride}u) % ${sizes[a]}u;`);
    idx[a] = `${tag}_${a}`;
    stride *= sizes[a];
  }
  return { lines, idx };
}

/** Reads staged query/key features from workgroup memory (rows `il` / `jj`), everything else as `base`. */
function stagedResolver(
  base: Resolver,
  q: ReadonlyMap<Id, { name: string; axes: string[]; W: number }>,
  k: ReadonlyMap<Id, { name: string; axes: string[]; W: number }>,
  sizes: Sizes,
  il: string,
  jj: string,
): Resolver {
  return (n, idx, where) => {
    const fq = q.get(n.id);
    if (fq) return `${fq.name}[${il} * ${fq.W}u + ${offset(fq.axes, sizes, idx) }]`;
    const fk = k.get(n.id);
    if (fk) return `${fk.name}[${jj} * ${fk.W}u + ${offset(fk.axes, sizes, idx)}]`;
    return base(n, idx, where);
  };
}

/** Whether a program's chunk plan may be segmented: every prefix term plainly causal, without decay or groups. */
export function segmentable(p: Program, sizes: Sizes): { S: { k: number; F: number }[]; NS: number; NR: number } | undefined {
  const prefix = p.terms.filter((t) => t.form.kind === 'prefix');
  if (!prefix.length) return undefined;
  for (const t of prefix) {
    if (t.form.kind !== 'prefix' || t.form.decay || t.mask.length !== 1 || t.mask[0].kind !== 'causal') return undefined;
  }
  const L = layoutOf(p, p.terms);
  return {
    S: prefix.map((t, k) => ({ k, F: t.form.kind === 'prefix' && t.form.feature ? sizes[t.form.feature] : 1 })),
    NS: count(L.head, sizes),
    NR: count(L.rest, sizes),
  };
}
