/**
 * Two-stage tridiagonalisation (src/core/base/twostage.ts) against numpy (test/fixtures/twostage/gen.py:
 * LAPACK eigvalsh / eigh / svd in float64 of hash-generated matrices recomputed here exactly).
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { applyTwoStageQ, applyTwoStageQt, bulgeChase, tridiagonalizeTwoStage } from '../../src/core/base/twostage';
import { tridiagQL } from '../../src/core/linalg/eigen';
import { fullSpectrum } from '../../src/core/base/rsvd';

const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });
const REF = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../test/fixtures/twostage/twostage.json'), 'utf8'));

function hmat(r: number, c: number, salt: number): Float64Array {
  const a = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) a[i * c + j] = ((i * 7919 + j * 104729 + i * j * 31 + salt * 65537) % 1000) / 1000 - 0.5;
  return a;
}
function hsym(n: number, salt: number): Float64Array {
  const h = hmat(n, n, salt), a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = h[i * n + j];
  return a;
}
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => { let e = 0; for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i])); return e; };

/** Checks Qᵀ then Q returns Y, and A·Y = Q·T·Qᵀ·Y (T from d, e). */
function checkTransform(A: Float64Array, n: number, t: Awaited<ReturnType<typeof tridiagonalizeTwoStage>>, k = 3): { orth: number; resid: number } {
  const Y = hmat(n, k, 9);
  const X = applyTwoStageQt(t, Y.slice(), k);
  const back = applyTwoStageQ(t, X.slice(), k);
  const TX = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let q = 0; q < k; q++) TX[i * k + q] = t.d[i] * X[i * k + q] + (i > 0 ? t.e[i - 1] * X[(i - 1) * k + q] : 0) + (i < n - 1 ? t.e[i] * X[(i + 1) * k + q] : 0);
  const QTQY = applyTwoStageQ(t, TX, k);
  const AY = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { const a = A[i * n + j]; for (let q = 0; q < k; q++) AY[i * k + q] += a * Y[j * k + q]; }
  // Qᵀ preserves norms (orthogonal)
  let ny = 0, nx = 0;
  for (let i = 0; i < n * k; i++) { ny += Y[i] * Y[i]; nx += X[i] * X[i]; }
  return { orth: Math.max(maxAbs(back, Y), Math.abs(Math.sqrt(nx) - Math.sqrt(ny)) / Math.sqrt(ny)), resid: maxAbs(AY, QTQY) };
}

test('two-stage: eigenvalues of symmetric matrices vs numpy eigvalsh; Q orthogonal; A = Q·T·Qᵀ (ORT band stage + TS tail)', async () => {
  for (const [key, b, S] of [['sym300', 16, 32], ['sym520', 32, 64]] as const) {
    const ref = REF[key];
    const n = ref.n as number;
    const A = hsym(n, ref.salt);
    const t = await tridiagonalizeTwoStage(engine, A.slice(), n, { b, S });
    assert.ok(t.q1.start.length > 0 && t.q2 && t.q2.pos.length > n, `${key}: reflectors recorded`);
    const values = tridiagQL(t.d, t.e).values;
    const scale = Math.abs(ref.eigvalsDesc[0]) + Math.abs(ref.eigvalsDesc[n - 1]);
    const ev = maxAbs(values, ref.eigvalsDesc) / scale;
    assert.ok(ev < 1e-12, `${key}: eigenvalue error ${ev}`);
    // k = 3: remainder columns only; k = 9: the 4-column register blocks plus one remainder column
    for (const k of [3, 9]) {
      const { orth, resid } = checkTransform(A, n, t, k);
      assert.ok(orth < 1e-12, `${key}, k=${k}: Q not orthogonal (${orth})`);
      assert.ok(resid < 1e-11 * scale, `${key}, k=${k}: ‖A·Y − Q·T·Qᵀ·Y‖ = ${resid}`);
    }
  }
});

test('two-stage on a rank-deficient Gram (400×400, rank 360): λ and |Uᵀy| vs numpy eigh', async () => {
  const ref = REF.gram400;
  const m = ref.m as number, n = ref.n as number;
  const W = hmat(m, n, ref.salt);
  const G = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j <= i; j++) { let s = 0; for (let c = 0; c < n; c++) s += W[i * n + c] * W[j * n + c]; G[i * m + j] = G[j * m + i] = s; }
  const t = await tridiagonalizeTwoStage(engine, G.slice(), m, { b: 16, S: 64 });
  const y = hmat(m, 1, ref.ySalt);
  const { values, X } = tridiagQL(t.d, t.e, applyTwoStageQt(t, y.slice(), 1), 1);
  const lmax = ref.eigvalsDesc[0];
  assert.ok(maxAbs(values, ref.eigvalsDesc) / lmax < 1e-12, `eigenvalues ${maxAbs(values, ref.eigvalsDesc) / lmax}`);
  // nonzero eigenvalues are simple here: |u_iᵀy| entrywise; the 40-dim null space: its total mass
  let ce = 0, nullMine = 0, nullRef = 0;
  for (let i = 0; i < n; i++) ce = Math.max(ce, Math.abs(Math.abs(X![i]) - ref.absUty[i]));
  for (let i = n; i < m; i++) { nullMine += X![i] ** 2; nullRef += ref.absUty[i] ** 2; }
  assert.ok(ce < 1e-8, `|Uᵀy| error ${ce}`);
  assert.ok(Math.abs(nullMine - nullRef) < 1e-9, `null-space mass ${nullMine} vs ${nullRef}`);
  const { orth, resid } = checkTransform(G, m, t);
  assert.ok(orth < 1e-12 && resid < 1e-11 * lmax, `orth ${orth}, resid ${resid}`);
});

test('bulge chasing alone: a band matrix (b = 5) → tridiagonal with numpy\'s eigenvalues; wantQ = false records nothing', () => {
  const m = 60, b = 5, ld = 2 * b + 1;
  const A = hsym(m, 7);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) if (Math.abs(i - j) > b) A[i * m + j] = 0;
  const band = { m, b, ld, a: new Float64Array(m * ld) };
  for (let c = 0; c < m; c++) for (let r = c; r <= Math.min(m - 1, c + b); r++) band.a[c * ld + r - c] = A[r * m + c];
  const res = bulgeChase({ ...band, a: band.a.slice() }, false);
  assert.equal(res.q2, undefined);
  const ev = maxAbs(tridiagQL(res.d, res.e).values, REF.band60.eigvalsDesc);
  assert.ok(ev < 1e-13, `eigenvalue error ${ev}`);
  const withQ = bulgeChase({ ...band, a: band.a.slice() }, true);
  assert.ok(withQ.q2 && withQ.q2.pos.length > m, 'reflectors recorded');
  // trace and Frobenius norm are invariants of the orthogonal similarity
  let tr = 0, fr = 0, tr2 = 0, fr2 = 0;
  for (let i = 0; i < m; i++) { tr += A[i * m + i]; for (let j = 0; j < m; j++) fr += A[i * m + j] ** 2; }
  for (let i = 0; i < m; i++) { tr2 += res.d[i]; fr2 += res.d[i] ** 2 + (i < m - 1 ? 2 * res.e[i] ** 2 : 0); }
  assert.ok(Math.abs(tr - tr2) < 1e-12 && Math.abs(fr - fr2) < 1e-11, `invariants ${tr} ${tr2} ${fr} ${fr2}`);
});

test('fullSpectrum above the dense limit (300×340 fp32, two-stage route) vs numpy svd', async () => {
  const ref = REF.svd300x340;
  const W = Float32Array.from(hmat(ref.m, ref.n, ref.salt));
  const s = await fullSpectrum(engine, W, ref.m, ref.n);
  assert.equal(s.length, 300);
  const err = maxAbs(s, ref.sigma) / ref.sigma[0];
  assert.ok(err < 1e-12, `σ error ${err}`);
});

test('two-stage on tiny matrices (m = 1…9): closed form for m ≤ 2, trace and Frobenius invariants, Q orthogonal and A = Q·T·Qᵀ above', async () => {
  for (let m = 1; m <= 9; m++) {
    const A = hsym(m, 11 + m);
    const t = await tridiagonalizeTwoStage(engine, A.slice(), m, {});
    const values = tridiagQL(t.d, t.e).values;
    if (m === 1) assert.ok(Math.abs(values[0] - A[0]) < 1e-15);
    if (m === 2) {
      const [a, b, c] = [A[0], A[1], A[3]];
      const mid = (a + c) / 2, rad = Math.sqrt(((a - c) / 2) ** 2 + b * b);
      assert.ok(Math.abs(values[0] - (mid + rad)) < 1e-14 && Math.abs(values[1] - (mid - rad)) < 1e-14, `m=2: ${values}`);
    }
    let tr = 0, fr = 0, trT = 0, frT = 0;
    for (let i = 0; i < m; i++) { tr += A[i * m + i]; trT += values[i]; frT += values[i] ** 2; for (let j = 0; j < m; j++) fr += A[i * m + j] ** 2; }
    assert.ok(Math.abs(tr - trT) < 1e-13 && Math.abs(fr - frT) < 1e-12, `m=${m}: trace ${tr} vs ${trT}, ‖A‖² ${fr} vs ${frT}`);
    if (m >= 3) {
      const { orth, resid } = checkTransform(A, m, t);
      assert.ok(orth < 1e-14 && resid < 1e-13, `m=${m}: orth ${orth} resid ${resid}`);
    }
  }
});
