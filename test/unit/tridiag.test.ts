import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { Rng } from '../../src/core/util/rng';
import { symEigTridiag, fullSpectrum } from '../../src/core/base/rsvd';
import { DecompCache } from '../../src/core/base/cache';
import { applyQ, applyQt, estimateExactLargeSeconds, exactBaseProjector, lanczosTopK, tridiagonalize, tridiagQL } from '../../src/core/base/tridiag';
import { baseLeftBasis, findIntruders } from '../../src/core/base/intruders';

const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });
const FIX = path.resolve(__dirname, '../../../test/fixtures/base');

function randSym(n: number, rng: Rng): Float64Array {
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
  return a;
}
function randMat(r: number, c: number, rng: Rng): Float64Array {
  const y = new Float64Array(r * c);
  for (let i = 0; i < y.length; i++) y[i] = rng.normal();
  return y;
}
/** C = U·Y with U rows = eigenvectors (n×n), Y n×k. */
function explicitC(U: Float64Array, n: number, Y: Float64Array, k: number, rows = n): Float64Array {
  const C = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) {
    let s = 0;
    for (let q = 0; q < n; q++) s += U[i * n + q] * Y[q * k + j];
    C[i * k + j] = s;
  }
  return C;
}

test('blocked tridiagonalisation + QL: eigenvalues and U0ᵀY vs symEigTridiag (n = 50..600, ORT panels)', async () => {
  const rng = new Rng(11);
  for (const [n, nb] of [[50, 8], [200, 16], [333, 16], [600, 32]]) {
    const A = randSym(n, rng);
    const ref = symEigTridiag(A, n, true);
    const tri = await tridiagonalize(engine, A.slice(), n, { nb });
    const k = 4;
    const Y = randMat(n, k, rng);
    const { values, X } = tridiagQL(tri.d, tri.e, applyQt(tri, Y.slice(), k), k);
    const lmax = Math.max(Math.abs(ref.values[0]), Math.abs(ref.values[n - 1]));
    let ev = 0, ce = 0;
    for (let i = 0; i < n; i++) ev = Math.max(ev, Math.abs(values[i] - ref.values[i]) / lmax);
    const C = explicitC(ref.vectors!, n, Y, k);
    for (let i = 0; i < n * k; i++) ce = Math.max(ce, Math.abs(Math.abs(X![i]) - Math.abs(C[i])));
    assert.ok(ev < 1e-10, `n=${n}: eigenvalue error ${ev}`);
    assert.ok(ce < 1e-8, `n=${n}: |C| error ${ce}`);
    // Q orthogonal: Q·Qᵀ·Y = Y
    const back = applyQ(tri, applyQt(tri, Y.slice(), k), k);
    let qe = 0;
    for (let i = 0; i < n * k; i++) qe = Math.max(qe, Math.abs(back[i] - Y[i]));
    assert.ok(qe < 1e-12, `n=${n}: QQᵀ error ${qe}`);
  }
});

test('5-fold eigenvalue: projection norms within the cluster match; other rows match entrywise', async () => {
  const rng = new Rng(5);
  const n = 300;
  const U = symEigTridiag(randSym(n, rng), n, true).vectors!; // rows: a random orthonormal basis
  const lam = new Float64Array(n);
  for (let i = 0; i < n; i++) lam[i] = 10 - (i * 7) / n;
  for (let i = 100; i < 105; i++) lam[i] = 3.25; // exact 5-fold cluster (sorted position preserved)
  const A = new Float64Array(n * n);
  for (let q = 0; q < n; q++) for (let i = 0; i < n; i++) {
    const a = lam[q] * U[q * n + i];
    for (let j = 0; j < n; j++) A[i * n + j] += a * U[q * n + j];
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) A[i * n + j] = A[j * n + i] = 0.5 * (A[i * n + j] + A[j * n + i]);
  const order = Array.from(lam.keys()).sort((a, b) => lam[b] - lam[a]);
  const k = 3;
  const Y = randMat(n, k, rng);
  const Cref = explicitC(U, n, Y, k);
  const tri = await tridiagonalize(engine, A.slice(), n, { nb: 16 });
  const { values, X } = tridiagQL(tri.d, tri.e, applyQt(tri, Y.slice(), k), k);
  for (let r = 0; r < n; r++) assert.ok(Math.abs(values[r] - lam[order[r]]) < 1e-10 * 10, `λ[${r}]`);
  for (let j = 0; j < k; j++) {
    let a = 0, b = 0;
    for (let r = 0; r < n; r++) {
      const src = order[r];
      if (lam[src] === 3.25) { a += X![r * k + j] ** 2; b += Cref[src * k + j] ** 2; }
      else assert.ok(Math.abs(Math.abs(X![r * k + j]) - Math.abs(Cref[src * k + j])) < 1e-8, `row ${r} col ${j}`);
    }
    assert.ok(Math.abs(Math.sqrt(a) - Math.sqrt(b)) < 1e-10, `cluster norm col ${j}: ${Math.sqrt(a)} vs ${Math.sqrt(b)}`);
  }
});

test('exactBaseProjector: σ and U0ᵀY vs the exact basis (tall and wide W0), cache round trip', async () => {
  const rng = new Rng(21);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tri-cache-'));
  try {
    for (const [m, n] of [[260, 180], [180, 260]]) {
      const W = new Float32Array(m * n);
      for (let i = 0; i < W.length; i++) W[i] = rng.normal();
      const cache = new DecompCache(dir);
      const key = { file: `/virtual/${m}x${n}`, tensor: 'w', mtimeMs: 1, size: 2 };
      const p1 = await exactBaseProjector(engine, W, m, n, { cache, key, nb: 16 });
      const p2 = await exactBaseProjector(engine, W, m, n, { cache, key, nb: 16 });
      assert.equal(p1.cached, false);
      assert.equal(p2.cached, true);
      const sv = await fullSpectrum(engine, W, m, n);
      const d = Math.min(m, n);
      assert.equal(p1.sigma.length, d);
      for (let i = 0; i < d; i++) assert.ok(Math.abs(p1.sigma[i] - sv[i]) < 1e-9 * sv[0], `σ[${i}]`);
      const basis = await baseLeftBasis(engine, W, m, n, { exact: true });
      const k = 5;
      const Y = randMat(m, k, rng);
      const Cref = explicitC(basis.rows, m, Y, k, d);
      for (const p of [p1, p2]) {
        const C = p.project(Y, k);
        assert.equal(C.length, d * k);
        let err = 0;
        // rows of tiny σ (Gram eigenvalue ~ 0 when m > n is a (m−n)-fold cluster) are excluded
        for (let i = 0; i < d * k; i++) err = Math.max(err, Math.abs(Math.abs(C[i]) - Math.abs(Cref[i])));
        assert.ok(err < 1e-8, `${m}×${n}: |C| error ${err}`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Lanczos on T + F·K·Fᵀ: top-k eigenpairs vs dense', async () => {
  const rng = new Rng(3);
  const n = 400, t = 4, k = 6;
  const A = randSym(n, rng);
  const tri = await tridiagonalize(engine, A.slice(), n, { nb: 16 });
  const F = randMat(n, t, rng);
  const K = new Float64Array(t * t);
  for (let a = 0; a < t; a++) { K[a * t + a] = 3 + a; }
  K[1] = K[t] = 0.5;
  // dense H = T + F K Fᵀ
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    H[i * n + i] = tri.d[i];
    if (i + 1 < n) H[i * n + i + 1] = H[(i + 1) * n + i] = tri.e[i];
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let a = 0; a < t; a++) for (let b = 0; b < t; b++) s += F[i * t + a] * K[a * t + b] * F[j * t + b];
    H[i * n + j] += s;
  }
  const ref = symEigTridiag(H, n, true);
  const lz = lanczosTopK(tri.d, tri.e, F, t, K, k);
  for (let c = 0; c < k; c++) {
    assert.ok(Math.abs(lz.values[c] - ref.values[c]) < 1e-10 * Math.abs(ref.values[0]), `θ${c}`);
    let dot = 0;
    for (let i = 0; i < n; i++) dot += lz.X[i * k + c] * ref.vectors![c * n + i];
    assert.ok(Math.abs(Math.abs(dot) - 1) < 1e-9, `vector ${c}: |dot| = ${Math.abs(dot)}`);
  }
});

test("planted intruder fixture (64×64): 'exact-large' gives the exact mode's counts and max|cos|", async () => {
  const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'intruders.json'), 'utf8')) as { d: number; W0: number[]; u: number[]; v: number[]; cases: { lambda: number; count: number }[] };
  const d = ref.d;
  const W0 = Float32Array.from(ref.W0);
  for (const c of ref.cases) {
    const delta = { B: Float32Array.from(ref.u), A: Float32Array.from(ref.v), r: 1, scale: c.lambda };
    const ex = await findIntruders(engine, W0, d, d, delta, { mode: 'exact' });
    const lg = await findIntruders(engine, W0, d, d, delta, { mode: 'exact-large' });
    assert.equal(lg.count, c.count, `λ=${c.lambda}`);
    assert.equal(lg.count, ex.count);
    for (let j = 0; j < 10; j++) assert.ok(Math.abs(lg.vectors[j].maxCos - ex.vectors[j].maxCos) < 1e-6, `λ=${c.lambda} j=${j}`);
  }
});

test("1024² with a rank-4 LoRA and a planted intruder: 'exact-large' vs the exact path", async () => {
  const m = 1024, n = 1024, r = 4;
  const rng = new Rng(77);
  const W0 = new Float32Array(m * n);
  for (let i = 0; i < W0.length; i++) W0[i] = rng.normal() / 32;
  const B = new Float32Array(m * r), A = new Float32Array(r * n);
  for (let i = 0; i < B.length; i++) B[i] = rng.normal() / 32;
  for (let i = 0; i < A.length; i++) A[i] = rng.normal() / 32;
  // planted intruder: a strong random rank-1 direction in column 0 of B / row 0 of A
  for (let i = 0; i < m; i++) B[i * r] = rng.normal() * 0.2;
  for (let j = 0; j < n; j++) A[j] = rng.normal() * 0.2;
  const delta = { B, A, r, scale: 1 };
  const ex = await findIntruders(engine, W0, m, n, delta, { mode: 'exact' });
  const lg = await findIntruders(engine, W0, m, n, delta, { mode: 'exact-large' });
  assert.ok(ex.count >= 1);
  assert.equal(lg.count, ex.count);
  let err = 0;
  for (let j = 0; j < 10; j++) {
    err = Math.max(err, Math.abs(lg.vectors[j].maxCos - ex.vectors[j].maxCos));
    assert.ok(Math.abs(lg.vectors[j].sigma - ex.vectors[j].sigma) < 1e-9 * ex.vectors[0].sigma, `σ${j}`);
  }
  assert.ok(err < 1e-6, `max|cos| error ${err}`);
  const est = await estimateExactLargeSeconds(engine, 4096, 4096);
  assert.ok(est.cold > 0 && est.cached > 0 && est.cached < est.cold);
});
