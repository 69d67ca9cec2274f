// Text → IR: reads what print.ts writes, so that tests can state a pass's input and expected output as IR text
// (FileCheck style). Every node goes through GraphBuilder, so types are re-inferred rather than trusted, and the
// result is verified. Errors are SourceErrors at line:col of the IR text; nodes and terms read from text carry
// spans into it, so later errors (a pass rejecting a term) point at the IR line too.
//
// Beyond the printer's canonical text, hand-written IR may name values (%fq), omit `: side[axes]` annotations
// (checked when given), omit `axis` lines for free axes and the axes a concat/outer creates, write a mask's size
// as a `size` axis (window(K)), omit `form general`, and omit the output's `: [axes]`.
import { GraphBuilder } from './builder.ts';
import { checkRopeSpec, ropeOp, type RopeScaling } from './rope.ts';
import { SourceError, type Span } from './span.ts';
import {
  BINARY_FNS, UNARY_FNS, type AxisDef, type BinaryFn, type Decay, type Id, type MaskAtom, type Op, type OutputItem, type Program, type Side,
  type TensorDecl, type Term, type TermForm, type UnaryFn,
} from './types.ts';
import { VerifyError, verify } from './verify.ts';

type TokKind = 'ref' | 'name' | 'num' | 'punct';
interface Tok {
  readonly kind: TokKind;
  readonly text: string;
  readonly col: number; // 1-based
}

const TOKEN = /\s+|\/\/.*$|%[A-Za-z0-9_.]+|-?(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|Infinity(?![\w]))|NaN(?![\w])|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*|\.\.|[=[\](),:&+-]/y;
const SIDES: readonly Side[] = ['const', 'param', 'token', 'query', 'key', 'pair'];
const MASK_KINDS = ['causal', 'window', 'group', 'past_groups', 'centered'] as const;

/** Reads one program from IR text; `file` names the text in spans and errors. */
export function readProgram(text: string, file = '<ir>'): Program {
  return new IrReader(text, file).program();
}

class IrReader {
  private readonly g = new GraphBuilder();
  private readonly ids = new Map<string, Id>();
  private readonly inputs: TensorDecl[] = [];
  private readonly params: TensorDecl[] = [];
  private readonly lets: Record<string, Id> = {};
  private readonly terms: Term[] = [];
  private name: string | null = null;
  private output: { items: OutputItem[]; axes: string[] | null; span: Span } | null = null;
  // the current line
  private toks: Tok[] = [];
  private pos = 0;
  private line = 0;
  private lineText = '';

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  program(): Program {
    const lines = this.text.split('\n');
    lines.forEach((l, k) => {
      this.line = k + 1;
      this.lineText = l.replace(/\r$/, '');
      this.toks = this.lex(this.lineText);
      this.pos = 0;
      if (this.toks.length) this.statement();
    });
    this.line = lines.length;
    if (this.name === null) throw new SourceError('IR text has no `variant NAME` line', this.span(1, 1, 1));
    if (!this.output) throw new SourceError(`variant ${this.name} has no \`output\` line`, this.span(lines.length, 1, 1));
    if (!this.terms.length) throw new SourceError(`variant ${this.name} has no terms`, this.output.span);
    const axes = this.g.axes;
    const p: Program = {
      name: this.name,
      file: this.file,
      sizes: Object.fromEntries(Object.entries(axes).flatMap(([a, d]) => (d.kind === 'size' ? [[a, d.value]] : []))),
      axes,
      inputs: this.inputs,
      params: this.params,
      nodes: this.g.nodes,
      lets: this.lets,
      terms: this.terms,
      output: this.output.items,
      outAxes: this.output.axes ?? this.g.type(this.terms[0].value).axes,
    };
    try {
      verify(p);
    } catch (e) {
      if (!(e instanceof VerifyError)) throw e;
      throw new SourceError(e.message, this.blame(p, e.message) ?? this.output.span);
    }
    return p;
  }

  /** The place a verifier message is about: a term it names, else the first node it names. */
  private blame(p: Program, msg: string): Span | undefined {
    const body = msg.replace(/^IR of \S+ is invalid: /, '');
    if (body.startsWith('output')) return this.output?.span;
    const term = /^(?:prefix )?term (\S+?)(?:'s)? /.exec(body);
    const t = term && p.terms.find((x) => x.name === term[1]);
    if (t) return t.span;
    const node = /%(\d+)/.exec(body);
    return node ? p.nodes[Number(node[1])]?.span : undefined;
  }

  // ---- tokens ----

  private lex(line: string): Tok[] {
    const out: Tok[] = [];
    TOKEN.lastIndex = 0;
    while (TOKEN.lastIndex < line.length) {
      const at = TOKEN.lastIndex;
      const m = TOKEN.exec(line);
      if (!m) throw new SourceError(`unexpected character '${line[at]}'`, this.span(this.line, at + 1, 1));
      const s = m[0];
      if (/^\s/.test(s) || s.startsWith('//')) continue;
      const kind: TokKind = s.startsWith('%') ? 'ref' : /^-?(?:\d|Infinity$|NaN$)/.test(s) ? 'num' : /^[A-Za-z_]/.test(s) ? 'name' : 'punct';
      out.push({ kind, text: s, col: at + 1 });
    }
    return out;
  }

  private span(line: number, col: number, length: number): Span {
    return { file: this.file, line, col, length };
  }

  /** The span from token k to the end of the line (or to token `end`, exclusive). */
  private spanFrom(k: number, end = this.toks.length): Span {
    const first = this.toks[k] ?? { col: this.lineText.length + 1, text: '' };
    const last = this.toks[Math.max(k, end - 1)] ?? first;
    return this.span(this.line, first.col, Math.max(1, last.col + last.text.length - first.col));
  }

  private fail(message: string, tok = this.toks[this.pos]): never {
    const col = tok ? tok.col : this.lineText.trimEnd().length + 1;
    throw new SourceError(message, this.span(this.line, col, tok ? tok.text.length : 1));
  }

  private peek(text?: string): boolean {
    const t = this.toks[this.pos];
    return t !== undefined && (text === undefined || t.text === text);
  }

  private next(what: string, kind?: TokKind): Tok {
    const t = this.toks[this.pos];
    if (!t) this.fail(`expected ${what} at the end of the line`);
    if (kind && t.kind !== kind) this.fail(`expected ${what}, found '${t.text}'`, t);
    this.pos++;
    return t;
  }

  private expect(text: string): Tok {
    const t = this.toks[this.pos];
    if (!t || t.text !== text) this.fail(`expected '${text}'${t ? `, found '${t.text}'` : ' at the end of the line'}`, t);
    this.pos++;
    return t;
  }

  private ident(what: string): string {
    return this.next(what, 'name').text;
  }

  private number(what: string): number {
    return Number(this.next(what, 'num').text);
  }

  private end(): void {
    if (this.pos < this.toks.length) this.fail(`unexpected '${this.toks[this.pos].text}' at the end of the statement`);
  }

  /** `( a, b, … )` of names; `1` stands for a size-1 slot (null). */
  private nameList(): (string | null)[] {
    this.expect('(');
    const out: (string | null)[] = [];
    while (!this.peek(')')) {
      if (out.length) this.expect(',');
      const t = this.next('an axis name or 1');
      if (t.kind === 'num' && t.text === '1') out.push(null);
      else if (t.kind === 'name') out.push(t.text);
      else this.fail(`expected an axis name or 1, found '${t.text}'`, t);
    }
    this.expect(')');
    return out;
  }

  /** `[a, b, …]` of axis names. */
  private axisList(): string[] {
    this.expect('[');
    const out: string[] = [];
    while (!this.peek(']')) {
      if (out.length) this.expect(',');
      out.push(this.ident('an axis name'));
    }
    this.expect(']');
    return out;
  }

  private ref(): Id {
    const t = this.next('a value (%N)', 'ref');
    const id = this.ids.get(t.text);
    if (id === undefined) this.fail(`${t.text} is not defined before this line`, t);
    return id;
  }

  // ---- statements ----

  private statement(): void {
    const head = this.toks[0];
    if (this.name === null && !(head.kind === 'name' && head.text === 'variant')) this.fail('IR text starts with `variant NAME`', head);
    if (head.kind === 'ref') return this.nodeStatement();
    this.pos = 1;
    switch (head.text) {
      case 'variant':
        if (this.name !== null) this.fail('a second `variant` line (IR text holds one program)', head);
        this.name = this.ident('the variant name');
        return this.end();
      case 'axis':
        return this.axisStatement();
      case 'let': {
        const name = this.ident('a let name');
        this.expect('=');
        this.lets[name] = this.ref();
        return this.end();
      }
      case 'term':
        return this.termStatement();
      case 'output':
        return this.outputStatement();
      default:
        this.fail(`expected a statement (variant, axis, %N = …, let, term, output), found '${head.text}'`, head);
    }
  }

  private axisStatement(): void {
    const nameTok = this.next('an axis name', 'name');
    const kind = this.ident('free, size N, concat(…) or outer(…)');
    let def: AxisDef;
    switch (kind) {
      case 'free': def = { kind: 'free' }; break;
      case 'size': def = { kind: 'size', value: this.number('the size') }; break;
      case 'concat': def = { kind: 'concat', parts: this.nameList() }; break;
      case 'outer': {
        const of = this.nameList();
        if (of.length !== 1 || of[0] === null) this.fail('outer(AXIS) names one axis', this.toks[this.pos - 1]);
        def = { kind: 'outer', of: of[0] };
        break;
      }
      default: this.fail(`expected free, size N, concat(…) or outer(…), found '${kind}'`, this.toks[this.pos - 1]);
    }
    this.end();
    if (this.g.axes[nameTok.text]) this.fail(`axis '${nameTok.text}' is already defined`, nameTok);
    this.g.defineAxis(nameTok.text, def, this.spanFrom(1));
  }

  /** Defines an axis a node mentions but no `axis` line declared. */
  private implicitAxis(name: string, def: AxisDef): void {
    if (!this.g.axes[name]) this.g.defineAxis(name, def);
  }

  private nodeStatement(): void {
    const nameTok = this.toks[0];
    if (this.ids.has(nameTok.text)) this.fail(`${nameTok.text} is already defined`, nameTok);
    this.pos = 1;
    this.expect('=');
    const bodyStart = this.pos;
    const colon = this.toks.findIndex((t, k) => k > bodyStart && t.text === ':');
    const bodyEnd = colon < 0 ? this.toks.length : colon;
    const span = this.spanFrom(bodyStart, bodyEnd);
    const opTok = this.next('an op', 'name');
    let id: Id;
    if (opTok.text === 'input' || opTok.text === 'param') {
      const name = this.ident(`the ${opTok.text}'s name`);
      const axes = this.axisList();
      for (const a of axes) this.implicitAxis(a, { kind: 'free' });
      const known = [...this.inputs, ...this.params].find((d) => d.name === name);
      if (known) this.fail(`tensor '${name}' is already declared`, this.toks[bodyStart + 1]);
      id = this.g.leaf({ op: opTok.text, name }, axes, span);
      (opTok.text === 'input' ? this.inputs : this.params).push({ name, axes, id, span });
    } else {
      const op = this.op(opTok);
      id = this.g.add(op, span);
    }
    if (colon >= 0) {
      if (this.pos !== colon) this.fail(`unexpected '${this.toks[this.pos].text}' after the op`);
      this.pos++;
      const sideTok = this.next('a side (const, param, token, query, key, pair)', 'name');
      if (!SIDES.includes(sideTok.text as Side)) this.fail(`unknown side '${sideTok.text}' (sides: ${SIDES.join(', ')})`, sideTok);
      const axes = this.axisList();
      const t = this.g.type(id);
      if (t.side !== sideTok.text || t.axes.join() !== axes.join()) {
        this.fail(`${nameTok.text} is annotated ${sideTok.text}[${axes.join(', ')}] but its op gives ${t.side}[${t.axes.join(', ')}]`, sideTok);
      }
    }
    this.end();
    this.ids.set(nameTok.text, id);
  }

  /** The op of a node statement, after its op name. Property order matches the frontend's, so hash-consing agrees. */
  private op(opTok: Tok): Op {
    const name = opTok.text;
    if ((UNARY_FNS as readonly string[]).includes(name)) return { op: 'unary', fn: name as UnaryFn, x: this.ref() };
    if ((BINARY_FNS as readonly string[]).includes(name)) {
      const a = this.ref();
      return { op: 'binary', fn: name as BinaryFn, a, b: this.ref() };
    }
    switch (name) {
      case 'const':
        return { op: 'const', value: this.number('a number') };
      case 'position': {
        const w = this.ident('i or j');
        if (w !== 'i' && w !== 'j') this.fail(`a position is i or j, found '${w}'`, this.toks[this.pos - 1]);
        return { op: 'position', which: w };
      }
      case 'at.i':
      case 'at.j':
        return { op: 'at', x: this.ref(), which: name === 'at.i' ? 'i' : 'j' };
      case 'sum':
      case 'norm':
      case 'softmax': {
        const x = this.ref();
        this.expect('over');
        return { op: name, x, axis: this.ident('an axis') };
      }
      case 'matmul': {
        const a = this.ref();
        const b = this.ref();
        this.expect('over');
        return { op: 'matmul', a, b, axis: this.ident('an axis') };
      }
      case 'concat': {
        const xs: Id[] = [];
        while (this.toks[this.pos]?.kind === 'ref') xs.push(this.ref());
        if (xs.length < 2) this.fail('concat takes two or more values');
        this.expect('along');
        const parts = this.nameList();
        if (parts.length !== xs.length) this.fail(`concat of ${xs.length} values lists ${parts.length} parts`, this.toks[this.pos - 1]);
        this.expect('as');
        const axis = this.ident('the new axis');
        this.implicitAxis(axis, { kind: 'concat', parts });
        return { op: 'concat', xs, parts, axis };
      }
      case 'outer': {
        const x = this.ref();
        this.expect('over');
        const from = this.ident('an axis');
        this.expect('as');
        const axis = this.ident('the new axis');
        this.implicitAxis(axis, { kind: 'outer', of: from });
        return { op: 'outer', x, from, axis };
      }
      case 'select': {
        const x = this.ref();
        const axis = this.ident('an axis');
        this.expect('=');
        return { op: 'select', x, axis, index: this.ref() };
      }
      case 'decay':
        return { op: 'decay', x: this.ref() };
      case 'rope':
        return this.rope();
      default:
        this.fail(`unknown op '${name}'`, opTok);
    }
  }

  /** `rope %x over AXIS theta N [linear F | llama3 F LOW HIGH ORIGINAL] [inverse]`, as print.ts writes it. */
  private rope(): Op {
    const x = this.ref();
    this.expect('over');
    const axis = this.ident('an axis');
    this.expect('theta');
    const theta = this.number('theta');
    let scaling: RopeScaling = { kind: 'none' };
    if (this.peek('linear')) {
      this.pos++;
      scaling = { kind: 'linear', factor: this.number('the linear factor') };
    } else if (this.peek('llama3')) {
      this.pos++;
      scaling = {
        kind: 'llama3',
        factor: this.number('the llama3 factor'),
        lowFreqFactor: this.number('low_freq_factor'),
        highFreqFactor: this.number('high_freq_factor'),
        originalMaxPositions: this.number('original_max_position_embeddings'),
      };
    }
    let sign: 1 | -1 = 1;
    if (this.peek('inverse')) {
      this.pos++;
      sign = -1;
    }
    const spec = { theta, scaling };
    try {
      checkRopeSpec(spec);
    } catch (e) {
      this.fail((e as Error).message, this.toks[this.pos - 1]);
    }
    return ropeOp(x, axis, spec, sign);
  }

  private termStatement(): void {
    const span = this.spanFrom(0);
    const name = this.next('a term name', 'name');
    if (this.terms.some((t) => t.name === name.text)) this.fail(`term '${name.text}' is already declared`, name);
    this.expect(':');
    const noncausal = this.peek('noncausal');
    if (noncausal) this.pos++;
    const mask: MaskAtom[] = [this.maskAtom()];
    while (this.peek('&')) {
      this.pos++;
      mask.push(this.maskAtom());
    }
    this.expect('score');
    const score = this.ref();
    this.expect('value');
    const value = this.ref();
    let form: TermForm = { kind: 'general' };
    if (this.peek('form')) {
      this.pos++;
      form = this.form();
    }
    this.end();
    this.terms.push({ name: name.text, span, noncausal, mask, score, value, form });
  }

  private maskAtom(): MaskAtom {
    const t = this.next('a mask (causal, window(K), group(C), past_groups(C), centered(K))', 'name');
    const kind = t.text as (typeof MASK_KINDS)[number];
    if (!MASK_KINDS.includes(kind)) this.fail(`unknown mask '${t.text}' (masks: ${MASK_KINDS.join(', ')})`, t);
    if (kind === 'causal') return { kind };
    this.expect('(');
    const arg = this.next('a size');
    let size: number;
    if (arg.kind === 'num') size = Number(arg.text);
    else {
      const d = this.g.axes[arg.text];
      if (arg.kind !== 'name' || d?.kind !== 'size') this.fail(`${kind}(…) takes a number or a size axis, found '${arg.text}'`, arg);
      size = d.value;
    }
    if (!Number.isInteger(size) || size < 1) this.fail(`${kind}(${size}): the size must be a positive integer`, arg);
    this.expect(')');
    return { kind, size };
  }

  private form(): TermForm {
    const t = this.next('a form (general, quadratic, softmax, toeplitz, prefix)', 'name');
    switch (t.text) {
      case 'general':
        return { kind: 'general' };
      case 'quadratic':
        return { kind: 'quadratic' };
      case 'softmax':
        this.expect('logit');
        return { kind: 'softmax', logit: this.ref() };
      case 'toeplitz': {
        this.expect('lags');
        const lo = this.number('the lowest lag');
        this.expect('..');
        return { kind: 'toeplitz', lags: [lo, this.number('the highest lag')] };
      }
      case 'prefix': {
        this.expect('phi');
        const phi = this.ref();
        this.expect('psi');
        const psi = this.ref();
        this.expect('feature');
        let feature: string | null = null;
        if (this.peek('-')) this.pos++;
        else feature = this.ident('the feature axis or -');
        let decay: Decay | null = null;
        if (this.peek('decay')) {
          this.pos++;
          const k = this.ident('constant or gate');
          if (k === 'constant') decay = { kind: 'constant', gamma: this.ref() };
          else if (k === 'gate') decay = { kind: 'gate', alpha: this.ref() };
          else this.fail(`a decay is constant or gate, found '${k}'`, this.toks[this.pos - 1]);
        }
        return { kind: 'prefix', phi, psi, feature, decay };
      }
      default:
        this.fail(`unknown form '${t.text}' (forms: general, quadratic, softmax logit %N, toeplitz lags A..B, prefix phi … psi … feature …)`, t);
    }
  }

  private outputStatement(): void {
    if (this.output) this.fail('a second `output` line', this.toks[0]);
    const span = this.spanFrom(0);
    const items: OutputItem[] = [];
    const termName = () => {
      const t = this.next('a term name', 'name');
      if (!this.terms.some((x) => x.name === t.text)) this.fail(`unknown term '${t.text}' (terms: ${this.terms.map((x) => x.name).join(', ') || 'none yet'})`, t);
      return t.text;
    };
    do {
      if (items.length) this.expect('+');
      if (this.peek('normalize')) {
        this.pos++;
        this.expect('(');
        const terms = [termName()];
        while (this.peek('+')) {
          this.pos++;
          terms.push(termName());
        }
        this.expect(',');
        const eps = this.number('eps');
        this.expect(')');
        items.push({ kind: 'norm', terms, eps });
      } else items.push({ kind: 'term', term: termName() });
    } while (this.peek('+'));
    let axes: string[] | null = null;
    if (this.peek(':')) {
      this.pos++;
      axes = this.axisList();
    }
    this.end();
    this.output = { items, axes, span };
  }
}
