/**
 * Finite-difference checks of every gradient rule in src/core/train/autodiff.ts, in fp64 graphs.
 *
 * For an op f and random inputs x, the scalar L = Σ f(x) ⊙ W (W random, fixed) is differentiated by
 * the tape and by central differences (h = 1e-6, truncation O(h²)·|f'''| ≈ 1e-12, roundoff
 * ε·|L|/h ≈ 1e-10), and ‖g_tape − g_fd‖ / ‖g_fd‖ must be < 1e-6.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Tape, V } from '../../src/core/train/autodiff';
import { Engine } from '../../src/core/engine/ort';
import { Rng } from '../../src/core/util/rng';

const engine = new Engine({ intraOpThreads: 1 });
let caseId = 0;

interface InSpec {
  shape: number[];
  /** Values (default N(0,1)); int inputs are not differentiated. */
  values?: number[];
  int?: boolean;
  bool?: boolean;
  positive?: boolean;
}

async function check(label: string, specs: InSpec[], f: (t: Tape, xs: V[]) => V, tol = 1e-6): Promise<void> {
  const rng = new Rng(1000 + caseId);
  const t = new Tape(`fd${caseId++}`, 'float64');
  const xs = specs.map((s, i) => t.input(`x${i}`, s.shape, s.int ? 'int64' : s.bool ? 'bool' : 'float64'));
  const y = f(t, xs);
  const w = t.constant(rng.normals(y.shape.reduce((a, b) => a * b, 1)), [...y.shape]);
  const loss = t.reduceSum(t.mul(y, w));
  const diff = xs.filter((_, i) => !specs[i].int && !specs[i].bool);
  const grads = t.grad(loss, diff);
  t.output(loss, 'loss');
  grads.forEach((g, i) => t.output(g, `g${i}`));
  const sess = await engine.session(label + caseId, () => t.build());
  const vals = specs.map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.values) return Float64Array.from(s.values);
    const v = rng.normals(n);
    if (s.positive) for (let i = 0; i < n; i++) v[i] = 0.5 + Math.abs(v[i]);
    return v;
  });
  const feeds = (vs: Float64Array[]) => {
    const out: Record<string, ReturnType<Engine['tensor']>> = {};
    specs.forEach((s, i) => {
      if (s.int) out[`x${i}`] = engine.tensor('int64', BigInt64Array.from(Array.from(vs[i], (x) => BigInt(x))), s.shape);
      else if (s.bool) out[`x${i}`] = new (require('onnxruntime-node').Tensor)('bool', Uint8Array.from(vs[i]), s.shape);
      else out[`x${i}`] = engine.tensor('float64', vs[i], s.shape);
    });
    return out;
  };
  const res = await sess.run(feeds(vals));
  const h = 1e-6;
  let k = 0;
  for (let i = 0; i < specs.length; i++) {
    if (specs[i].int || specs[i].bool) continue;
    const g = res[`g${k++}`].data as Float64Array;
    const fd = new Float64Array(vals[i].length);
    for (let j = 0; j < vals[i].length; j++) {
      const x0 = vals[i][j];
      vals[i][j] = x0 + h;
      const lp = ((await sess.run(feeds(vals), ['loss'])).loss.data as Float64Array)[0];
      vals[i][j] = x0 - h;
      const lm = ((await sess.run(feeds(vals), ['loss'])).loss.data as Float64Array)[0];
      vals[i][j] = x0;
      fd[j] = (lp - lm) / (2 * h);
    }
    let num = 0, den = 0;
    for (let j = 0; j < fd.length; j++) { num += (g[j] - fd[j]) ** 2; den += fd[j] ** 2; }
    const rel = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
    assert.ok(den > 0, `${label}: zero gradient for input ${i}`);
    assert.ok(rel < tol, `${label}: input ${i} rel err ${rel.toExponential(2)}`);
  }
}

test('Add / Sub / Mul / Div with broadcasting', async () => {
  await check('add', [{ shape: [3, 4] }, { shape: [4] }], (t, [a, b]) => t.add(a, b));
  await check('sub', [{ shape: [3, 1] }, { shape: [2, 3, 4] }], (t, [a, b]) => t.sub(a, b));
  await check('mul', [{ shape: [2, 3, 4] }, { shape: [1, 3, 1] }], (t, [a, b]) => t.mul(a, b));
  await check('div', [{ shape: [3, 4] }, { shape: [3, 1], positive: true }], (t, [a, b]) => t.div(a, b));
  await check('neg/scale', [{ shape: [5] }], (t, [a]) => t.scale(t.neg(a), 0.3));
});

test('MatMul: 2-D, batched, broadcast batch', async () => {
  await check('mm2', [{ shape: [3, 4] }, { shape: [4, 5] }], (t, [a, b]) => t.matmul(a, b));
  await check('mm3', [{ shape: [2, 3, 4] }, { shape: [2, 4, 2] }], (t, [a, b]) => t.matmul(a, b));
  await check('mmb', [{ shape: [2, 3, 4] }, { shape: [4, 2] }], (t, [a, b]) => t.matmul(a, b));
});

test('Transpose / Reshape / Expand / Concat / Slice / Pad', async () => {
  await check('transpose', [{ shape: [2, 3, 4] }], (t, [a]) => t.transpose(a, [2, 0, 1]));
  await check('reshape', [{ shape: [2, 6] }], (t, [a]) => t.reshape(a, [3, 4]));
  await check('expand', [{ shape: [3, 1] }], (t, [a]) => t.expand(a, [2, 3, 4]));
  await check('concat', [{ shape: [2, 3] }, { shape: [2, 2] }], (t, [a, b]) => t.concat([a, b], 1));
  await check('slice', [{ shape: [3, 5] }], (t, [a]) => t.slice(a, [1, 1], [3, 4], [0, 1]));
  await check('pad', [{ shape: [2, 3] }], (t, [a]) => t.pad(a, [1, 0, 0, 2]));
});

test('Exp / Log / Sqrt / Pow / Where', async () => {
  await check('exp', [{ shape: [4] }], (t, [a]) => t.exp(a));
  await check('log', [{ shape: [4], positive: true }], (t, [a]) => t.log(a));
  await check('sqrt', [{ shape: [4], positive: true }], (t, [a]) => t.sqrt(a));
  await check('pow3', [{ shape: [4] }], (t, [a]) => t.pow(a, 3));
  await check('pow2', [{ shape: [4] }], (t, [a]) => t.pow(a, 2));
  await check('where', [{ shape: [2, 3], bool: true, values: [1, 0, 1, 0, 0, 1] }, { shape: [2, 3] }, { shape: [3] }], (t, [c, a, b]) => t.where(c, a, b));
});

test('ReduceSum / ReduceMean (axes, keepdims)', async () => {
  await check('rsum', [{ shape: [2, 3, 4] }], (t, [a]) => t.reduceSum(a, [1]));
  await check('rsumk', [{ shape: [2, 3, 4] }], (t, [a]) => t.reduceSum(a, [0, 2], true));
  await check('rmean', [{ shape: [2, 3, 4] }], (t, [a]) => t.reduceMean(a, [-1]));
  await check('rall', [{ shape: [2, 3] }], (t, [a]) => t.reduceMean(a));
});

test('Softmax / LogSoftmax / CrossEntropy', async () => {
  await check('softmax', [{ shape: [2, 3, 5] }], (t, [a]) => t.softmax(a, -1));
  await check('softmax1', [{ shape: [3, 4] }], (t, [a]) => t.softmax(a, 0));
  await check('logsoftmax', [{ shape: [3, 5] }], (t, [a]) => t.logSoftmax(a));
  await check('ce', [{ shape: [4, 6] }, { shape: [4], int: true, values: [0, 5, 2, 2] }], (t, [z, y]) => t.crossEntropy(z, y));
});

test('Gather (embedding, repeated indices accumulate)', async () => {
  await check('gather', [{ shape: [5, 3] }, { shape: [2, 3], int: true, values: [0, 4, 4, 1, 0, 4] }], (t, [e, i]) => t.gather(e, i));
});

test('composite: one attention block, gradients through shared weights', async () => {
  await check('attn', [{ shape: [2, 3, 4] }, { shape: [4, 4] }, { shape: [4, 4] }], (t, [x, wq, wv]) => {
    let h = x;
    for (let d = 0; d < 2; d++) {
      const q = t.matmul(h, t.transpose(wq));
      const s = t.softmax(t.scale(t.matmul(q, t.mT(h)), 0.5));
      h = t.add(h, t.matmul(s, t.matmul(h, wv)));
    }
    return h;
  });
});
