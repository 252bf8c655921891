/**
 * Tiny reverse-mode autodiff over ONNX ops (static shapes), emitting forward AND backward nodes
 * into one in-memory ONNX model (GraphBuilder, opset 17). onnxruntime-node has no training API,
 * so a training step is an ordinary inference graph whose outputs are the loss, the gradients
 * (or, with optim.ts, the updated parameters and optimizer moments).
 *
 *   const t = new Tape('step', 'float32');
 *   const W = t.input('W', [4, 3]);                 // differentiable graph input
 *   const x = t.input('x', [8, 4]);
 *   const loss = t.reduceMean(t.pow(t.matmul(x, W), 2));
 *   const [gW] = t.grad(loss, [W]);
 *   t.output(loss, 'loss'); t.output(gW, 'gW');
 *   const bytes = t.build();
 *
 * Every gradient rule is written with Tape ops themselves (so backward graphs are plain ONNX) and
 * is checked against central finite differences in fp64 (test/unit/train-autodiff.test.ts).
 * Shapes are static: a graph is built per (batch size, model) and cached by the caller.
 */
import { GraphBuilder, ElemType, AttrValue } from '../engine/graph';

export type FloatType = 'float32' | 'float64';

export interface V {
  readonly id: number;
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: ElemType;
}

/** Builds the input gradients of one node: `need[i]` says whether input i wants a gradient. */
type GradRule = (g: V, need: boolean[]) => (V | undefined)[];

interface TapeNode {
  out: V;
  inputs: V[];
  rule?: GradRule;
}

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`broadcast: incompatible shapes [${a}] and [${b}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

export class Tape {
  readonly g: GraphBuilder;
  private readonly nodes: TapeNode[] = [];
  private nextId = 0;
  private readonly intConsts = new Map<string, string>();
  private readonly scalarConsts = new Map<string, V>();

  constructor(name: string, public readonly dtype: FloatType = 'float32') {
    this.g = new GraphBuilder(name);
  }

  private mk(name: string, shape: readonly number[], dtype: ElemType): V {
    return { id: this.nextId++, name, shape: [...shape], dtype };
  }

  // ---- leaves --------------------------------------------------------------------------------

  /** Graph input (float inputs are differentiable when passed to grad()). */
  input(name: string, shape: number[], dtype: ElemType = this.dtype): V {
    this.g.input(name, dtype, shape);
    return this.mk(name, shape, dtype);
  }

  constant(values: ArrayLike<number>, shape: number[], dtype: ElemType = this.dtype): V {
    return this.mk(this.g.constant(values, dtype, shape), shape, dtype);
  }

  scalar(x: number, dtype: ElemType = this.dtype): V {
    const key = `${dtype}:${x}`;
    let v = this.scalarConsts.get(key);
    if (!v) this.scalarConsts.set(key, (v = this.constant([x], [], dtype)));
    return v;
  }

  /** int64 constant (shapes, axes, pads) by name; shared. */
  ints(values: number[]): string {
    const key = values.join(',');
    let n = this.intConsts.get(key);
    if (!n) this.intConsts.set(key, (n = this.g.constant(values, 'int64', [values.length])));
    return n;
  }

  output(v: V, name?: string): string {
    let n = v.name;
    if (name && name !== v.name) n = this.g.op('Identity', [v.name], {}, name);
    this.g.output(n, v.dtype, [...v.shape]);
    return n;
  }

  build(): Uint8Array {
    return this.g.build();
  }

  private node(type: string, inputs: V[], shape: number[], opts: { attrs?: Record<string, AttrValue>; extra?: string[]; dtype?: ElemType; rule?: GradRule } = {}): V {
    const out = this.g.op(type, [...inputs.map((v) => v.name), ...(opts.extra ?? [])], opts.attrs ?? {});
    const v = this.mk(out, shape, opts.dtype ?? inputs[0].dtype);
    this.nodes.push({ out: v, inputs, rule: opts.rule });
    return v;
  }

  // ---- elementwise ---------------------------------------------------------------------------

  add(a: V, b: V): V {
    return this.node('Add', [a, b], broadcastShape(a.shape, b.shape), {
      rule: (g, need) => [need[0] ? this.unbroadcast(g, a.shape) : undefined, need[1] ? this.unbroadcast(g, b.shape) : undefined],
    });
  }

  sub(a: V, b: V): V {
    return this.node('Sub', [a, b], broadcastShape(a.shape, b.shape), {
      rule: (g, need) => [need[0] ? this.unbroadcast(g, a.shape) : undefined, need[1] ? this.unbroadcast(this.neg(g), b.shape) : undefined],
    });
  }

  mul(a: V, b: V): V {
    return this.node('Mul', [a, b], broadcastShape(a.shape, b.shape), {
      rule: (g, need) => [need[0] ? this.unbroadcast(this.mul(g, b), a.shape) : undefined, need[1] ? this.unbroadcast(this.mul(g, a), b.shape) : undefined],
    });
  }

  div(a: V, b: V): V {
    const out: V = this.node('Div', [a, b], broadcastShape(a.shape, b.shape), {
      rule: (g, need) => [
        need[0] ? this.unbroadcast(this.div(g, b), a.shape) : undefined,
        need[1] ? this.unbroadcast(this.neg(this.div(this.mul(g, out), b)), b.shape) : undefined,
      ],
    });
    return out;
  }

  neg(a: V): V {
    return this.node('Neg', [a], [...a.shape], { rule: (g) => [this.neg(g)] });
  }

  scale(a: V, c: number): V {
    return this.mul(a, this.scalar(c, a.dtype));
  }

  exp(a: V): V {
    const out: V = this.node('Exp', [a], [...a.shape], { rule: (g) => [this.mul(g, out)] });
    return out;
  }

  log(a: V): V {
    return this.node('Log', [a], [...a.shape], { rule: (g) => [this.div(g, a)] });
  }

  sqrt(a: V): V {
    const out: V = this.node('Sqrt', [a], [...a.shape], { rule: (g) => [this.div(this.scale(g, 0.5), out)] });
    return out;
  }

  /** a ** c for a constant exponent c. */
  pow(a: V, c: number): V {
    return this.node('Pow', [a, this.scalar(c, a.dtype)], [...a.shape], {
      rule: (g) => [this.mul(g, c === 2 ? this.scale(a, 2) : this.scale(this.pow(a, c - 1), c))],
    });
  }

  /** Elementwise select; `cond` is bool and not differentiable. */
  where(cond: V, a: V, b: V): V {
    const shape = broadcastShape(cond.shape, broadcastShape(a.shape, b.shape));
    return this.node('Where', [cond, a, b], shape, {
      dtype: a.dtype,
      rule: (g, need) => {
        const z = this.scalar(0, g.dtype);
        return [
          undefined,
          need[1] ? this.unbroadcast(this.where(cond, g, z), a.shape) : undefined,
          need[2] ? this.unbroadcast(this.where(cond, z, g), b.shape) : undefined,
        ];
      },
    });
  }

  // ---- shape ops -----------------------------------------------------------------------------

  transpose(a: V, perm?: number[]): V {
    const p = perm ?? a.shape.map((_, i) => a.shape.length - 1 - i);
    const inv = new Array<number>(p.length);
    p.forEach((q, i) => (inv[q] = i));
    return this.node('Transpose', [a], p.map((q) => a.shape[q]), { attrs: { perm: p }, rule: (g) => [this.transpose(g, inv)] });
  }

  /** Swaps the last two axes. */
  mT(a: V): V {
    const r = a.shape.length;
    return this.transpose(a, [...Array(r - 2).keys(), r - 1, r - 2]);
  }

  reshape(a: V, shape: number[]): V {
    if (numel(shape) !== numel(a.shape)) throw new Error(`reshape: [${a.shape}] -> [${shape}]`);
    return this.node('Reshape', [a], shape, { extra: [this.ints(shape)], rule: (g) => [this.reshape(g, [...a.shape])] });
  }

  expand(a: V, shape: number[]): V {
    const s = broadcastShape(a.shape, shape);
    return this.node('Expand', [a], s, { extra: [this.ints(s)], rule: (g) => [this.unbroadcast(g, a.shape)] });
  }

  concat(xs: V[], axis: number): V {
    const ax = normAxis(axis, xs[0].shape.length);
    const shape = [...xs[0].shape];
    shape[ax] = xs.reduce((s, x) => s + x.shape[ax], 0);
    return this.node('Concat', xs, shape, {
      attrs: { axis: ax },
      rule: (g, need) => {
        let off = 0;
        return xs.map((x, i) => {
          const s = off;
          off += x.shape[ax];
          return need[i] ? this.slice(g, [s], [s + x.shape[ax]], [ax]) : undefined;
        });
      },
    });
  }

  /** Step-1 slice with non-negative static starts/ends. */
  slice(a: V, starts: number[], ends: number[], axes: number[]): V {
    const shape = [...a.shape];
    const ax = axes.map((x) => normAxis(x, a.shape.length));
    ax.forEach((x, i) => (shape[x] = Math.min(ends[i], a.shape[x]) - starts[i]));
    return this.node('Slice', [a], shape, {
      extra: [this.ints(starts), this.ints(ends), this.ints(ax)],
      rule: (g) => {
        const r = a.shape.length;
        const pads = new Array<number>(2 * r).fill(0);
        ax.forEach((x, i) => {
          pads[x] = starts[i];
          pads[r + x] = a.shape[x] - Math.min(ends[i], a.shape[x]);
        });
        return [this.pad(g, pads)];
      },
    });
  }

  /** Constant zero padding (ONNX pads layout [begin..., end...], non-negative). */
  pad(a: V, pads: number[]): V {
    const r = a.shape.length;
    const shape = a.shape.map((d, i) => d + pads[i] + pads[r + i]);
    return this.node('Pad', [a], shape, {
      extra: [this.ints(pads)],
      attrs: { mode: 'constant' },
      rule: (g) => [this.slice(g, a.shape.map((_, i) => pads[i]), a.shape.map((d, i) => pads[i] + d), a.shape.map((_, i) => i))],
    });
  }

  // ---- reductions / products -----------------------------------------------------------------

  reduceSum(a: V, axes?: number[], keepdims = false): V {
    const ax = (axes ?? a.shape.map((_, i) => i)).map((x) => normAxis(x, a.shape.length));
    const kept = a.shape.map((d, i) => (ax.includes(i) ? 1 : d));
    const shape = keepdims ? kept : a.shape.filter((_, i) => !ax.includes(i));
    return this.node('ReduceSum', [a], shape, {
      extra: [this.ints(ax)],
      attrs: { keepdims: keepdims ? 1 : 0 },
      rule: (g) => [this.expand(keepdims ? g : this.reshape(g, kept), [...a.shape])],
    });
  }

  reduceMean(a: V, axes?: number[], keepdims = false): V {
    const ax = (axes ?? a.shape.map((_, i) => i)).map((x) => normAxis(x, a.shape.length));
    const n = ax.reduce((s, i) => s * a.shape[i], 1);
    return this.scale(this.reduceSum(a, ax, keepdims), 1 / n);
  }

  /** Sums `g` down to `shape` (reverse of numpy broadcasting). */
  unbroadcast(g: V, shape: readonly number[]): V {
    let v = g;
    const lead = v.shape.length - shape.length;
    if (lead > 0) v = this.reduceSum(v, [...Array(lead).keys()], false);
    const axes = shape.map((d, i) => (d === 1 && v.shape[i] !== 1 ? i : -1)).filter((i) => i >= 0);
    if (axes.length) v = this.reduceSum(v, axes, true);
    return v;
  }

  /** Batched matrix product (rank ≥ 2 each, numpy broadcasting over batch axes). */
  matmul(a: V, b: V): V {
    if (a.shape.length < 2 || b.shape.length < 2) throw new Error('matmul: rank ≥ 2 required');
    const [n, k] = a.shape.slice(-2), [k2, m] = b.shape.slice(-2);
    if (k !== k2) throw new Error(`matmul: [${a.shape}] @ [${b.shape}]`);
    const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return this.node('MatMul', [a, b], [...batch, n, m], {
      rule: (g, need) => [
        need[0] ? this.unbroadcast(this.matmul(g, this.mT(b)), a.shape) : undefined,
        need[1] ? this.unbroadcast(this.matmul(this.mT(a), g), b.shape) : undefined,
      ],
    });
  }

  softmax(a: V, axis = -1): V {
    const ax = normAxis(axis, a.shape.length);
    const out: V = this.node('Softmax', [a], [...a.shape], {
      attrs: { axis: ax },
      rule: (g) => [this.mul(out, this.sub(g, this.reduceSum(this.mul(g, out), [ax], true)))],
    });
    return out;
  }

  logSoftmax(a: V, axis = -1): V {
    const ax = normAxis(axis, a.shape.length);
    const out: V = this.node('LogSoftmax', [a], [...a.shape], {
      attrs: { axis: ax },
      rule: (g) => [this.sub(g, this.mul(this.exp(out), this.reduceSum(g, [ax], true)))],
    });
    return out;
  }

  /** Row gather along axis 0 (embedding lookup); `idx` is int64 and not differentiable. */
  gather(table: V, idx: V): V {
    const rest = table.shape.slice(1);
    return this.node('Gather', [table, idx], [...idx.shape, ...rest], {
      attrs: { axis: 0 },
      dtype: table.dtype,
      rule: (g) => {
        const zeros = this.node('Expand', [this.scalar(0, table.dtype)], [...table.shape], { extra: [this.ints([...table.shape])] });
        const ix = this.node('Unsqueeze', [idx], [...idx.shape, 1], { extra: [this.ints([idx.shape.length])] });
        return [this.node('ScatterND', [zeros, ix, g], [...table.shape], { attrs: { reduction: 'add' } }), undefined];
      },
    });
  }

  // ---- non-differentiable helpers ------------------------------------------------------------

  /** One-hot float [..., depth] of int64 labels (Equal against a range + Cast). */
  oneHot(labels: V, depth: number, dtype: ElemType = this.dtype): V {
    const range = this.mk(this.g.constant([...Array(depth).keys()], 'int64', [depth]), [depth], 'int64');
    const ix = this.node('Unsqueeze', [labels], [...labels.shape, 1], { extra: [this.ints([labels.shape.length])] });
    const eq = this.node('Equal', [ix, range], [...labels.shape, depth], { dtype: 'bool' });
    return this.node('Cast', [eq], [...labels.shape, depth], { attrs: { to: onnxType(dtype) }, dtype });
  }

  /** Mean cross-entropy of logits [N, C] against int64 labels [N] (LogSoftmax · one-hot). */
  crossEntropy(logits: V, labels: V): V {
    const C = logits.shape[logits.shape.length - 1];
    const lsm = this.logSoftmax(logits, -1);
    return this.neg(this.reduceMean(this.reduceSum(this.mul(lsm, this.oneHot(labels, C, logits.dtype)), [-1])));
  }

  /** Int64 argmax along the last axis (no gradient). */
  argmax(a: V): V {
    return this.node('ArgMax', [a], a.shape.slice(0, -1), { attrs: { axis: a.shape.length - 1, keepdims: 0 }, dtype: 'int64' });
  }

  /** Raw ONNX node without a gradient rule (for optimizer updates etc.). */
  raw(type: string, inputs: V[], shape: number[], attrs: Record<string, AttrValue> = {}, dtype?: ElemType): V {
    return this.node(type, inputs, shape, { attrs, dtype });
  }

  // ---- reverse mode --------------------------------------------------------------------------

  /**
   * Appends the backward graph of `loss` (any shape: seeded with ones) and returns d loss / d wrt[i]
   * (zeros when a parameter does not influence the loss).
   */
  grad(loss: V, wrt: V[]): V[] {
    const req = new Set<number>(wrt.map((v) => v.id));
    const nodes = this.nodes.slice();
    for (const n of nodes) if (n.rule && n.inputs.some((i) => req.has(i.id))) req.add(n.out.id);
    const grads = new Map<number, V>();
    grads.set(loss.id, this.expand(this.scalar(1, loss.dtype), [...loss.shape]));
    for (let k = nodes.length - 1; k >= 0; k--) {
      const n = nodes[k];
      const g = grads.get(n.out.id);
      if (!g || !n.rule) continue;
      const need = n.inputs.map((i) => req.has(i.id));
      if (!need.some(Boolean)) continue;
      const gi = n.rule(g, need);
      n.inputs.forEach((inp, i) => {
        const d = gi[i];
        if (!need[i] || !d) return;
        const prev = grads.get(inp.id);
        grads.set(inp.id, prev ? this.add(prev, d) : d);
      });
    }
    return wrt.map((w) => grads.get(w.id) ?? this.expand(this.scalar(0, w.dtype), [...w.shape]));
  }
}

function onnxType(t: ElemType): number {
  return { float32: 1, float64: 11, float16: 10, int64: 7, int32: 6, bool: 9 }[t];
}
