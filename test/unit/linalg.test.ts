/**
 * Dense fp64 decompositions (src/core/linalg) against numpy/LAPACK reference values
 * (test/fixtures/numpy/linalg.json, written by gen_reference.py) plus algebraic invariants.
 *
 * Tolerances: all inputs are the exact doubles numpy used. Backward-stable SVD/QR/Cholesky/eigh
 * give errors ≲ c·n·ε·‖A‖ (ε = 2^-53 ≈ 1.1e-16), so singular values are compared with an
 * absolute tolerance of 1e-13·σ₁ (≈ 64·n·ε for n ≤ 64 plus slack) and a relative 1e-12; factors
 * (R, Cholesky) with 1e-12·‖A‖-scaled absolute tolerances. The graded κ≈1e8 case keeps the same
 * absolute bound (LAPACK's small σ are only accurate to ε·σ₁, not relatively).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cholesky, conditionNumber, householderQR, householderR, singularValues, svd, symEig } from '../../src/core/linalg/decomp';
import { frobenius, mat, Mat, matmul, transpose } from '../../src/core/linalg/dense';
import { assertClose } from './tolerance';
import { symEigTridiag } from '../../src/core/linalg/eigen';

const repoRoot = path.resolve(__dirname, '../../..');
interface LinCase {
  name: string; rows: number; cols: number; data: number[]; sv: number[];
  qrR?: number[]; cholG?: number[]; cholR?: number[]; eigValues?: number[];
}
const ref: { cases: LinCase[] } = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test/fixtures/numpy/linalg.json'), 'utf8'));
const A = (c: LinCase): Mat => mat(c.rows, c.cols, c.data);

function maxAbs(m: Mat): number {
  let x = 0;
  for (const v of m.data) x = Math.max(x, Math.abs(v));
  return x;
}

function assertOrthonormalCols(Q: Mat, tol: number, label: string): void {
  const G = matmul(transpose(Q), Q);
  const k = Q.cols;
  const I = new Float64Array(k * k);
  for (let i = 0; i < k; i++) I[i * k + i] = 1;
  assertClose(G.data, I, { abs: tol }, label);
}

test('fixture sanity: linalg.json has the planned cases', () => {
  const names = ref.cases.map((c) => c.name);
  for (const n of ['square1', 'square64', 'tall200x16', 'rankdef30x20r5', 'graded20k1e8', 'zero5x3', 'wide12x30']) assert.ok(names.includes(n), n);
});

for (const c of ref.cases) {
  test(`svd vs numpy: ${c.name} (${c.rows}×${c.cols})`, () => {
    const a = A(c);
    const s1 = c.sv[0] ?? 0;
    const { U, S, V } = svd(a);
    const k = Math.min(c.rows, c.cols);
    assert.equal(S.length, k);
    assertClose(S, c.sv, { rel: 1e-12, abs: 1e-13 * s1 }, `${c.name} σ`);
    for (let i = 1; i < k; i++) assert.ok(S[i] <= S[i - 1], `${c.name}: σ not descending at ${i}: ${S[i - 1]} < ${S[i]}`);
    for (let i = 0; i < k; i++) assert.ok(S[i] >= 0, `${c.name}: σ[${i}] = ${S[i]} < 0`);
    // U diag(S) Vᵀ reconstructs A
    assert.equal(U.rows, c.rows); assert.equal(U.cols, k); assert.equal(V.rows, c.cols); assert.equal(V.cols, k);
    const US = mat(U.rows, k);
    for (let i = 0; i < U.rows; i++) for (let j = 0; j < k; j++) US.data[i * k + j] = U.data[i * k + j] * S[j];
    const rec = matmul(US, transpose(V));
    assertClose(rec.data, a.data, { abs: 1e-12 * Math.max(s1, 1e-300) + 1e-300 }, `${c.name} U·S·Vᵀ`);
    assertOrthonormalCols(V, 1e-12, `${c.name} VᵀV`);
    // U is orthonormal on the columns with σ > 0 (and completed for σ = 0)
    assertOrthonormalCols(U, 1e-10, `${c.name} UᵀU`);
    assertClose(singularValues(a), S, { rel: 0, abs: 0 }, `${c.name} singularValues == svd().S`);
  });
}

for (const c of ref.cases.filter((x) => x.qrR)) {
  test(`householderQR vs numpy R: ${c.name}`, () => {
    const a = A(c);
    const n = c.cols;
    const { Q, R } = householderQR(a);
    // sign-normalise: diag(R) ≥ 0 (flip rows of R and columns of Q together)
    for (let i = 0; i < n; i++) {
      if (R.data[i * n + i] < 0) {
        for (let j = 0; j < n; j++) R.data[i * n + j] = -R.data[i * n + j];
        for (let r = 0; r < Q.rows; r++) Q.data[r * n + i] = -Q.data[r * n + i];
      }
    }
    const scaleA = frobenius(a);
    assertClose(R.data, c.qrR!, { rel: 1e-11, abs: 1e-12 * scaleA }, `${c.name} R`);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.ok(R.data[i * n + j] === 0, `${c.name}: R[${i},${j}] below the diagonal is ${R.data[i * n + j]}`);
    assertOrthonormalCols(Q, 1e-13 * c.rows, `${c.name} QᵀQ`);
    assertClose(matmul(Q, R).data, a.data, { abs: 1e-13 * scaleA }, `${c.name} Q·R`);
    const AtA = matmul(transpose(a), a);
    assertClose(matmul(transpose(R), R).data, AtA.data, { abs: 1e-12 * scaleA * scaleA }, `${c.name} RᵀR = AᵀA`);
    // R-only entry point agrees with the full one up to row signs
    const R2 = householderR(a);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      assert.ok(Math.abs(Math.abs(R2.data[i * n + j]) - Math.abs(R.data[i * n + j])) <= 1e-13 * scaleA, `${c.name}: householderR[${i},${j}]`);
    }
  });
}

for (const c of ref.cases.filter((x) => x.cholG)) {
  test(`cholesky vs numpy: ${c.name}`, () => {
    const n = c.cols;
    const G = mat(n, n, c.cholG!);
    const R = cholesky(G);
    assert.ok(R, `${c.name}: cholesky returned undefined for an SPD matrix`);
    const g = maxAbs(G);
    assertClose(R.data, c.cholR!, { rel: 1e-12, abs: 1e-13 * Math.sqrt(g) }, `${c.name} chol R`);
    assertClose(matmul(transpose(R), R).data, G.data, { abs: 1e-13 * g }, `${c.name} RᵀR = G`);
  });
}

for (const c of ref.cases.filter((x) => x.eigValues)) {
  test(`symEig vs numpy eigvalsh: ${c.name}`, () => {
    const a = A(c);
    const n = c.cols;
    const S = mat(n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) S.data[i * n + j] = (a.data[i * n + j] + a.data[j * n + i]) / 2;
    const { values, vectors } = symEig(S);
    const scaleS = Math.max(...c.eigValues!.map(Math.abs), 1e-300);
    assertClose(values, c.eigValues!, { abs: 1e-13 * scaleS * n }, `${c.name} λ`);
    for (let i = 1; i < n; i++) assert.ok(values[i] <= values[i - 1], `${c.name}: eigenvalues not descending at ${i}`);
    assertOrthonormalCols(vectors, 1e-12, `${c.name} eigenvectors`);
    // S·V = V·diag(λ)
    const SV = matmul(S, vectors);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      const want = vectors.data[i * n + j] * values[j];
      assert.ok(Math.abs(SV.data[i * n + j] - want) <= 1e-12 * scaleS * n, `${c.name}: (S·V − V·Λ)[${i},${j}] = ${SV.data[i * n + j] - want}`);
    }
  });
}

test('cholesky rejects singular and indefinite matrices', () => {
  assert.equal(cholesky(mat(2, 2, [1, 1, 1, 1])), undefined);
  assert.equal(cholesky(mat(2, 2, [1, 2, 2, 1])), undefined);
  assert.equal(cholesky(mat(3, 3)), undefined);
});

test('svd: zero matrix has zero σ, NaN/Inf input throws, rank-deficient σ tail is tiny', () => {
  assertClose(singularValues(mat(4, 6)), [0, 0, 0, 0], { abs: 0 }, 'zero σ');
  assert.throws(() => svd(mat(2, 2, [1, NaN, 0, 1])), /NaN or Inf/);
  assert.throws(() => svd(mat(2, 2, [1, Infinity, 0, 1])), /NaN or Inf/);
  const rd = ref.cases.find((c) => c.name === 'rankdef30x20r5')!;
  const s = singularValues(A(rd));
  for (let i = 5; i < s.length; i++) assert.ok(s[i] <= 1e-13 * s[0], `rank-deficient σ[${i}] = ${s[i]} not ≈ 0`);
  assert.ok(s[4] > 1e-3 * s[0]);
});

test('svd: wide matrix equals svd of its transpose; exact diagonal case', () => {
  const w = ref.cases.find((c) => c.name === 'wide12x30')!;
  const a = A(w);
  assertClose(singularValues(a), singularValues(transpose(a)), { rel: 1e-13, abs: 1e-14 * w.sv[0] }, 'σ(A) vs σ(Aᵀ)');
  // diag(3, -5, 0.5) permuted: σ = 5, 3, 0.5 exactly
  const d = mat(3, 3, [0, -5, 0, 3, 0, 0, 0, 0, 0.5]);
  assertClose(singularValues(d), [5, 3, 0.5], { rel: 1e-15 }, 'diag σ');
});

test('conditionNumber conventions (descending σ)', () => {
  assert.equal(conditionNumber([4, 2]), 2);
  assert.equal(conditionNumber([4, 0]), Infinity);
  assert.ok(Number.isNaN(conditionNumber([0, 0])));
  assert.ok(Number.isNaN(conditionNumber([])));
  const g = ref.cases.find((c) => c.name === 'graded20k1e8')!;
  const k = conditionNumber(singularValues(A(g)));
  // numpy's κ on the same matrix; σ_min is only accurate to ~ε·σ₁ in both, i.e. ~1e-8 relative → κ to ~1e-7
  assertClose(k, g.sv[0] / g.sv[g.sv.length - 1], { rel: 1e-6 }, 'κ graded');
  assert.ok(k > 5e7 && k < 2e8, `κ ${k}`);
});

test('symEigTridiag on an exactly rank-deficient matrix (all entries c): eigenvalues n·c and 0, orthonormal vectors, no NaN', () => {
  for (const n of [2, 5, 32]) {
    const c = Math.fround(1.28);
    const { values, vectors } = symEigTridiag(new Float64Array(n * n).fill(c), n, true);
    assert.ok(values.every(Number.isFinite), `n=${n}: ${values}`);
    const sorted = [...values].sort((a, b) => b - a);
    assert.ok(Math.abs(sorted[0] - n * c) <= 1e-12 * n * c, `n=${n}: λ₁ ${sorted[0]}`);
    for (let i = 1; i < n; i++) assert.ok(Math.abs(sorted[i]) <= 1e-12 * n * c, `n=${n}: λ${i + 1} ${sorted[i]}`);
    const V = vectors!;
    assert.ok(V.every(Number.isFinite));
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += V[i * n + a] * V[i * n + b];
      assert.ok(Math.abs(dot - (a === b ? 1 : 0)) < 1e-12, `n=${n}: VᵀV[${a},${b}] = ${dot}`);
    }
  }
});
