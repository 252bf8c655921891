/**
 * Device-resident path (src/core/engine/resident.ts) through the CPU provider: the same code that
 * keeps tensors on a GPU ('gpu-buffer') runs here with location 'cpu'. References are computed
 * from the definitions in plain TS (fp64), not by the engine.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Engine } from '../../src/core/engine/ort';
import { ResidentAdamLsq, ResidentMatrix } from '../../src/core/engine/resident';
import { Rng } from '../../src/core/demo/makeDemo';

const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });

test('resident matrix: uploaded once, W·X and Wᵀ·X downloaded, vs fp64 TS products', async () => {
  const rng = new Rng(5);
  const m = 70, n = 50, k = 3;
  const W = Float32Array.from({ length: m * n }, () => rng.normal());
  const R = await ResidentMatrix.upload(engine, W, m, n);
  assert.equal(R.location, engine.deviceLocation);
  assert.equal(engine.deviceLocation, 'cpu');
  for (let rep = 0; rep < 2; rep++) {
    const X = Float32Array.from({ length: n * k }, () => rng.normal());
    const Y = await R.times(X, k);
    const Z = Float32Array.from({ length: m * k }, () => rng.normal());
    const V = await R.timesT(Z, k);
    let e1 = 0, e2 = 0;
    for (let i = 0; i < m; i++) for (let q = 0; q < k; q++) { let s = 0; for (let j = 0; j < n; j++) s += W[i * n + j] * X[j * k + q]; e1 = Math.max(e1, Math.abs(s - Y[i * k + q])); }
    for (let j = 0; j < n; j++) for (let q = 0; q < k; q++) { let s = 0; for (let i = 0; i < m; i++) s += W[i * n + j] * Z[i * k + q]; e2 = Math.max(e2, Math.abs(s - V[j * k + q])); }
    assert.ok(e1 < 1e-4 && e2 < 1e-4, `product errors ${e1} ${e2}`);
  }
  R.dispose();
});

test('resident Adam: parameters and moments stay device-side across 25 steps; trajectory = TS Adam', async () => {
  const rng = new Rng(9);
  const r = 40, c = 8, k = 2, lr = 0.05;
  const A = Float32Array.from({ length: r * c }, () => rng.normal());
  const Y = Float32Array.from({ length: r * k }, () => rng.normal());
  const opt = await ResidentAdamLsq.create(engine, A, Y, r, c, k, lr);
  // TS reference (fp64) of the same Adam on loss = mean((Aθ − Y)²), grad = (2/r)·Aᵀ(Aθ − Y)
  const th = new Float64Array(c * k), mm = new Float64Array(c * k), vv = new Float64Array(c * k);
  const losses: number[] = [], ref: number[] = [];
  for (let t = 1; t <= 25; t++) {
    losses.push(await opt.step());
    assert.deepEqual(opt.locations, Array(5).fill('cpu'));
    const Rm = new Float64Array(r * k);
    let loss = 0;
    for (let i = 0; i < r; i++) for (let q = 0; q < k; q++) { let s = -Y[i * k + q]; for (let j = 0; j < c; j++) s += A[i * c + j] * th[j * k + q]; Rm[i * k + q] = s; loss += s * s; }
    ref.push(loss / (r * k));
    const lrT = (lr * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.9 ** t);
    for (let j = 0; j < c; j++) for (let q = 0; q < k; q++) {
      let g = 0;
      for (let i = 0; i < r; i++) g += A[i * c + j] * Rm[i * k + q];
      g *= 2 / r;
      const x = j * k + q;
      mm[x] = 0.9 * mm[x] + 0.1 * g;
      vv[x] = 0.999 * vv[x] + 0.001 * g * g;
      th[x] -= (lrT * mm[x]) / (Math.sqrt(vv[x]) + 1e-8);
    }
  }
  for (let t = 0; t < 25; t++) assert.ok(Math.abs(losses[t] - ref[t]) <= 1e-4 * ref[t], `step ${t + 1}: ${losses[t]} vs ${ref[t]}`);
  assert.ok(losses[24] < 0.8 * losses[0], 'loss decreases');
  const theta = await opt.parameters();
  let te = 0;
  for (let i = 0; i < c * k; i++) te = Math.max(te, Math.abs(theta[i] - th[i]));
  assert.ok(te < 1e-4, `θ error ${te}`);
});
