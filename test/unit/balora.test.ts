import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { fromRows, mat, matmul, transpose, frobenius, maxAbsDiff, Mat } from '../../src/core/linalg/dense';
import { svd } from '../../src/core/linalg/decomp';
import { balanceFactors, balanceGap } from '../../src/core/surgery/balora';
import { balancedHessianKappa, hessianCondition, hessianDemoCases, scaledHessianKappa } from '../../src/core/surgery/hessian';
import { Rng } from '../../src/core/util/rng';

const close = (a: number, b: number, tol: number, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b} (tol ${tol})`);

// papers.md §1.7 (ref/out_balora_proj.txt)
const B0 = fromRows([[1, 0], [2, 1], [0, 3], [1, 1]]);
const A0 = fromRows([[1, 2, 0], [0, 1, -1]]);

test('BaLoRA projection: §1.7 deterministic values', () => {
  const { A, B, sigma } = balanceFactors(A0, B0);
  close(sigma[0], 7.623328, 5e-7, 'σ1'); close(sigma[1], 2.425875, 5e-7, 'σ2');
  const AAt = matmul(A, transpose(A)), BtB = matmul(transpose(B), B);
  for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) {
    const want = i === j ? sigma[i] : 0;
    close(AAt.data[i * 2 + j], want, 1e-13, `A'A'ᵀ[${i},${j}]`);
    close(BtB.data[i * 2 + j], want, 1e-13, `B'ᵀB'[${i},${j}]`);
  }
  const AtA = matmul(transpose(A), A);
  const want = [[1.210485, 2.106079, 0.314892], [2.106079, 6.210546, -1.998388], [0.314892, -1.998388, 2.628172]];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) close(AtA.data[i * 3 + j], want[i][j], 5e-7, `A'ᵀA'[${i},${j}]`);
  close(frobenius(A), 3.170048, 5e-7, '‖A\'‖'); close(frobenius(B), 3.170048, 5e-7, '‖B\'‖');
  close(balanceGap(A0, B0), 9.16515138991168, 1e-12, 'gap before');
  assert.ok(balanceGap(A, B) < 1e-13, `gap after ${balanceGap(A, B)}`);
  assert.ok(maxAbsDiff(matmul(B, A), matmul(B0, A0)) < 1e-13, 'B\'A\' = BA');
});

test('BaLoRA projection: idempotent, nuclear-norm identity, canonical SVD factorisation', () => {
  const p1 = balanceFactors(A0, B0);
  const p2 = balanceFactors(p1.A, p1.B);
  assert.ok(maxAbsDiff(matmul(transpose(p2.A), p2.A), matmul(transpose(p1.A), p1.A)) < 1e-13, 'A\'ᵀA\' unchanged');
  assert.ok(maxAbsDiff(matmul(p2.B, transpose(p2.B)), matmul(p1.B, transpose(p1.B))) < 1e-13, 'B\'B\'ᵀ unchanged');
  const nuc = svd(matmul(B0, A0)).S.reduce((a, b) => a + b, 0);
  close(frobenius(p1.A) ** 2 + frobenius(p1.B) ** 2, 2 * nuc, 1e-12, '‖A\'‖²+‖B\'‖² = 2‖BA‖_*');
  close(2 * nuc, 20.098406306751176, 1e-12, 'reference nuclear norm');
  // rectangular random case, r = 5
  const rng = new Rng(3);
  const A = mat(5, 17, rng.normals(85)), B = mat(23, 5, rng.normals(115, 4));
  const p = balanceFactors(A, B);
  assert.ok(maxAbsDiff(matmul(p.B, p.A), matmul(B, A)) < 1e-12 * frobenius(matmul(B, A)));
  assert.ok(balanceGap(p.A, p.B) < 1e-12 * p.sigma[0]);
});

test('BaLoRA projection edge cases: B = 0 gives zero factors; rank-deficient and wide factors', () => {
  const z = balanceFactors(A0, mat(4, 2));
  assert.equal(frobenius(z.A), 0); assert.equal(frobenius(z.B), 0);
  // rank-1 product with r = 2 (B has two equal columns)
  const Bd = fromRows([[1, 1], [2, 2], [0, 0], [1, 1]]);
  const d = balanceFactors(A0, Bd);
  assert.ok(maxAbsDiff(matmul(d.B, d.A), matmul(Bd, A0)) < 1e-13);
  assert.ok(d.sigma[1] < 1e-14 && balanceGap(d.A, d.B) < 1e-13);
  // wide B (out = 2 < r = 3) and wide Aᵀ (in = 2 < r)
  const rng = new Rng(5);
  const Aw = mat(3, 2, rng.normals(6)), Bw = mat(2, 3, rng.normals(6));
  const w = balanceFactors(Aw, Bw);
  assert.ok(maxAbsDiff(matmul(w.B, w.A), matmul(Bw, Aw)) < 1e-13);
  assert.ok(balanceGap(w.A, w.B) < 1e-13);
});

test('Hessian condition number: reference values of ref/out_hessian.txt and closed forms', () => {
  const cases = hessianDemoCases();
  const want = [8, 68, 1028, 16388, 80, 1280, 16, 1372.0091];
  const lmax = [8, 17, 64.25, 256.0625, 20, 80, 8, 64.25];
  cases.forEach((c, i) => {
    const tol = i === 7 ? 5e-5 : 1e-9 * want[i];
    close(c.kappa, want[i], tol, c.label);
    close(c.lambdaMax, lmax[i], 1e-9 * lmax[i], `${c.label} λmax`);
    if (c.closedForm !== undefined) assert.equal(c.closedForm, want[i]);
  });
  assert.equal(balancedHessianKappa([4, 1]), 8);
  assert.equal(scaledHessianKappa([4, 1], 8), 16388);
  assert.equal(scaledHessianKappa([4, 1], 1 / 2), 68);
  // the r² skipped eigenvalues are zero at an exact minimiser
  const U = mat(5, 2); U.data[0] = 2; U.data[3] = 1;
  const E = mat(5, 5); E.data[0] = 4; E.data[6] = 1;
  const h = hessianCondition(U, U, E);
  assert.ok(h.skipped.every((x) => Math.abs(x) < 1e-12), `skipped ${h.skipped}`);
});

// papers.md §1.6: synthetic experiment (paper Fig. 3), sign update, n = m = 20, r = 4.
test('synthetic Fig. 3: BaLoRA median excess loss at step 100 is several times lower than LoRA', () => {
  const n = 20, m = 20, r = 4, steps = 100, ntraj = 8;
  const rng = new Rng(44);
  const T = mat(n, m, rng.normals(n * m)), W0 = mat(n, m, rng.normals(n * m));
  const E = mat(n, m); for (let i = 0; i < n * m; i++) E.data[i] = T.data[i] - W0.data[i];
  const s = svd(E).S;
  let opt = 0; for (let i = r; i < s.length; i++) opt += 0.5 * s[i] ** 2;
  const grid = Array.from({ length: 50 }, (_, i) => 1e-5 + (i * (0.3 - 1e-5)) / 49); // linspace(1e-5, 0.3, 50) as the reference
  const sign = (g: Float64Array) => g.map((x) => x / (Math.abs(x) + 1e-8));
  const run = (L0: Mat, R0: Mat, lr: number, balanced: boolean): number => {
    let L = mat(n, r, L0.data), R = mat(r, m, R0.data);
    let loss = Infinity;
    for (let t = 0; t < steps; t++) {
      const Res = matmul(L, R);
      let l = 0;
      for (let i = 0; i < n * m; i++) { Res.data[i] -= E.data[i]; l += 0.5 * Res.data[i] ** 2; }
      loss = l;
      if (!(l < 1e5)) return Infinity;
      const gL = sign(matmul(Res, transpose(R)).data), gR = sign(matmul(transpose(L), Res).data);
      for (let i = 0; i < gL.length; i++) L.data[i] -= lr * gL[i];
      for (let i = 0; i < gR.length; i++) R.data[i] -= lr * gR[i];
      if (balanced) { const p = balanceFactors(R, L); L = p.B; R = p.A; }
    }
    return loss; // loss at iteration 99 (before the last update), as the reference script
  };
  const excess: Record<string, number[]> = { LoRA: [], BaLoRA: [] };
  for (let k = 0; k < ntraj; k++) {
    const L0 = mat(n, r), R0 = mat(r, m, rng.normals(r * m));
    for (const [name, bal] of [['BaLoRA', true], ['LoRA', false]] as const) {
      let best = Infinity;
      for (const lr of grid) best = Math.min(best, run(L0, R0, lr, bal));
      excess[name].push(best - opt);
    }
  }
  const median = (x: number[]) => { const y = [...x].sort((a, b) => a - b); return (y[3] + y[4]) / 2; };
  const lora = median(excess.LoRA), balora = median(excess.BaLoRA);
  console.log(`synthetic fig3 (sign update): median excess loss at step 100: LoRA ${lora.toFixed(3)}, BaLoRA ${balora.toFixed(3)}, ratio ${(lora / balora).toFixed(1)}`);
  assert.ok(balora > 0 && lora / balora >= 3, `LoRA ${lora} vs BaLoRA ${balora}`);
});
