import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { Rng } from '../../src/core/util/rng';
import { householderQR, symEig } from '../../src/core/linalg/decomp';
import { mat } from '../../src/core/linalg/dense';
import { estimateFullSpectrumSeconds, fullSpectrum, rsvd, symEigTridiag } from '../../src/core/base/rsvd';
import { DecompCache } from '../../src/core/base/cache';

const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });

function orthonormal(n: number, k: number, rng: Rng): Float64Array {
  const { Q } = householderQR(mat(n, k, rng.normals(n * k)));
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) out[i * k + j] = Q.data[i * Q.cols + j];
  return out;
}

/** W = U diag(s) Vᵀ (m×n, fp32) with orthonormal U (m×d), V (n×d). */
function planted(m: number, n: number, s: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  const d = s.length;
  const U = orthonormal(m, d, rng), V = orthonormal(n, d, rng);
  const W = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let x = 0;
    for (let t = 0; t < d; t++) x += U[i * d + t] * s[t] * V[j * d + t];
    W[i * n + j] = x;
  }
  return W;
}

function orthErr(X: Float64Array, rows: number, k: number): number {
  let e = 0;
  for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) {
    let d = 0;
    for (let i = 0; i < rows; i++) d += X[i * k + a] * X[i * k + b];
    e = Math.max(e, Math.abs(d - (a === b ? 1 : 0)));
  }
  return e;
}

test('symEigTridiag matches Jacobi symEig (values, residuals, orthogonality)', () => {
  const rng = new Rng(5);
  for (const n of [1, 2, 7, 40]) {
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
    const ref = symEig(mat(n, n, a));
    const { values, vectors } = symEigTridiag(a, n, true);
    const vo = symEigTridiag(a, n, false).values;
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(values[i] - ref.values[i]) < 1e-12, `n=${n} λ${i}`);
      assert.ok(Math.abs(vo[i] - ref.values[i]) < 1e-12, `values-only n=${n} λ${i}`);
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let c = 0; c < n; c++) s += a[r * n + c] * vectors![i * n + c];
        assert.ok(Math.abs(s - values[i] * vectors![i * n + r]) < 1e-12);
      }
    }
  }
});

test('rsvd: top-16 of a decaying spectrum, q=2: rel. error < 1e-3, U/V orthonormal < 1e-5', async () => {
  const m = 300, n = 200, k = 16;
  const s = Array.from({ length: 120 }, (_, i) => 3 * 0.85 ** i);
  const W = planted(m, n, s, 11);
  const r = await rsvd(engine, W, m, n, k, { oversample: 8, powerIters: 2 });
  for (let i = 0; i < k; i++) assert.ok(Math.abs(r.S[i] - s[i]) / s[i] < 1e-3, `σ${i}: ${r.S[i]} vs ${s[i]}`);
  assert.ok(orthErr(r.U, m, k) < 1e-5, `U orth ${orthErr(r.U, m, k)}`);
  assert.ok(orthErr(r.V, n, k) < 1e-5, `V orth ${orthErr(r.V, n, k)}`);
  // wide matrix, q = 0 still finds a sharply decaying spectrum
  const W2 = planted(80, 260, Array.from({ length: 60 }, (_, i) => 0.5 ** i), 12);
  const r2 = await rsvd(engine, W2, 80, 260, 6, { powerIters: 0 });
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(r2.S[i] - 0.5 ** i) / 0.5 ** i < 1e-3, `wide σ${i}`);
  assert.ok(orthErr(r2.V, 260, 6) < 1e-5);
  // deterministic
  const again = await rsvd(engine, W, m, n, k, { oversample: 8, powerIters: 2 });
  assert.deepEqual(Array.from(again.S), Array.from(r.S));
});

test('rsvd on a rank-deficient matrix (rank 5 < k + p) stays finite', async () => {
  const W = planted(120, 90, [5, 4, 3, 2, 1], 13);
  const r = await rsvd(engine, W, 120, 90, 8);
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(r.S[i] - (5 - i)) < 1e-4, `σ${i} ${r.S[i]}`);
  for (let i = 5; i < 8; i++) assert.ok(r.S[i] < 1e-4);
  assert.ok(r.U.every(Number.isFinite) && r.V.every(Number.isFinite));
});

test('fullSpectrum: all singular values, refuses large sides, time estimate', async () => {
  const s = Array.from({ length: 50 }, (_, i) => 2 / (1 + i));
  const W = planted(70, 50, s, 14);
  const all = await fullSpectrum(engine, W, 70, 50);
  assert.equal(all.length, 50);
  for (let i = 0; i < 50; i++) assert.ok(Math.abs(all[i] - s[i]) < 1e-5, `σ${i}`);
  await assert.rejects(() => fullSpectrum(engine, new Float32Array(2000 * 1100), 2000, 1100), /1100 > 1024/);
  const t = estimateFullSpectrumSeconds(4096, 1024);
  assert.ok(t > 0.01 && t < 600, `estimate ${t}`);
});

test('DecompCache: miss, hit, key change, corruption, size cap', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-cache-'));
  const file = path.join(dir, 'w.safetensors');
  fs.writeFileSync(file, 'x');
  const cache = new DecompCache(path.join(dir, 'c'), { maxBytes: 4000 });
  const key = DecompCache.keyFor(file, 't', 'm1');
  let calls = 0;
  const compute = () => { calls++; return { arrays: { S: Float64Array.of(1, 2, 3), rows: new Float64Array(4).fill(0.5) }, meta: { count: 3 } }; };
  const a = await cache.getOrCompute(key, compute);
  assert.equal(a.cached, false);
  const b = await cache.getOrCompute(key, compute);
  assert.equal(b.cached, true);
  assert.equal(calls, 1);
  assert.deepEqual(Array.from(b.arrays.S), [1, 2, 3]);
  assert.deepEqual(b.meta, { count: 3 });
  // other method / modified file → different key
  assert.equal(cache.get({ ...key, method: 'm2' }), undefined);
  assert.equal(cache.get({ ...key, mtimeMs: key.mtimeMs + 1 }), undefined);
  // corrupt the data: ignored, deleted, recomputed
  const bin = fs.readdirSync(cache.dir).find((f) => f.endsWith('.bin'))!;
  const buf = fs.readFileSync(path.join(cache.dir, bin));
  buf[buf.length - 10] ^= 0xff;
  fs.writeFileSync(path.join(cache.dir, bin), buf);
  const c = await cache.getOrCompute(key, compute);
  assert.equal(c.cached, false);
  assert.equal(calls, 2);
  assert.equal(cache.stats.corrupt, 1);
  // truncated file and garbage index
  fs.writeFileSync(path.join(cache.dir, bin), buf.subarray(0, 20));
  fs.writeFileSync(path.join(cache.dir, 'index.json'), '{not json');
  assert.equal(cache.get(key), undefined);
  // size cap: LRU eviction keeps total ≤ maxBytes
  for (let i = 0; i < 10; i++) cache.put(DecompCache.keyFor(file, `t${i}`, 'm'), { S: new Float64Array(100) });
  const total = fs.readdirSync(cache.dir).filter((f) => f.endsWith('.bin')).reduce((s, f) => s + fs.statSync(path.join(cache.dir, f)).size, 0);
  assert.ok(total <= 4000, `total ${total}`);
  assert.ok(cache.stats.evicted > 0);
  assert.ok(cache.get(DecompCache.keyFor(file, 't9', 'm')), 'newest entry kept');
});
