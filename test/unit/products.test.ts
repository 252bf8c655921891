/**
 * batchedGram: Grams of stacked matrices in fp64 on onnxruntime, including single matrices larger
 * than one run (summed over row / column blocks so memory stays ≈ the input). Reference: the
 * definition, summed in fp64 here.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Engine } from '../../src/core/engine/ort';
import { batchedGram, MAX_RUN_ELEMENTS } from '../../src/core/engine/products';
import { Rng } from '../../src/core/util/rng';

function refGram(X: ArrayLike<number>, L: number, p: number, q: number, side: 'rows' | 'cols'): Float64Array {
  const k = side === 'cols' ? q : p;
  const G = new Float64Array(L * k * k);
  for (let b = 0; b < L; b++) {
    const o = b * p * q;
    // cols: transpose first so the inner loop runs over contiguous memory (same sums)
    let Xt: Float64Array | undefined;
    if (side === 'cols') { Xt = new Float64Array(p * q); for (let t = 0; t < p; t++) for (let i = 0; i < q; i++) Xt[i * p + t] = X[o + t * q + i]; }
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
      let s = 0;
      if (Xt) { const oi = i * p, oj = j * p; for (let t = 0; t < p; t++) s += Xt[oi + t] * Xt[oj + t]; }
      else for (let t = 0; t < q; t++) s += X[o + i * q + t] * X[o + j * q + t];
      G[b * k * k + i * k + j] = s;
    }
  }
  return G;
}

test('batchedGram equals the fp64 definition for small stacks and for single matrices larger than one run', async () => {
  const engine = new Engine();
  const rng = new Rng(11);
  try {
    const cases: [number, number, number, 'rows' | 'cols'][] = [
      [5, 7, 3, 'cols'], [5, 3, 9, 'rows'],
      [1, MAX_RUN_ELEMENTS + 12345, 3, 'cols'], // tall B factor: row blocks
      [2, 3, MAX_RUN_ELEMENTS + 777, 'rows'],   // wide A factors: column blocks (copied into bounded scratch)
      [1, 520, 4100, 'rows'],                   // a weight's rows-Gram (p ≥ gramTuning.symMinRows): symmetric row blocks 511 + 9
      [1, 4100, 520, 'cols'],                   // its cols-Gram (q ≥ symMinRows): column blocks of X copied, 511 + 9
    ];
    for (const [L, p, q, side] of cases) {
      for (const f64 of [false, true]) {
        const X = f64 ? new Float64Array(L * p * q) : new Float32Array(L * p * q);
        for (let i = 0; i < X.length; i++) X[i] = rng.normal();
        const G = await batchedGram(engine, X, L, p, q, side);
        const R = refGram(X, L, p, q, side);
        assert.equal(G.length, R.length);
        for (let i = 0; i < R.length; i++) {
          const tol = 1e-12 * Math.max(1, Math.abs(R[i]), side === 'cols' ? p : q);
          assert.ok(Math.abs(G[i] - R[i]) <= tol, `${L}×${p}×${q} ${side} ${f64 ? 'f64' : 'f32'} [${i}]: ${G[i]} vs ${R[i]}`);
        }
      }
    }
  } finally {
    await engine.dispose();
  }
});
