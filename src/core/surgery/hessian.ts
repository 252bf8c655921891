/**
 * Condition number of the Hessian of the factorised least-squares loss
 *     f(U, V) = ½‖U Vᵀ − T‖²_F,  U n×r, V m×r,
 * with respect to the stacked factors (papers.md §1.4, port of `condition_number` in the BaLoRA
 * repo's synthetic/utils.py and of ref/hessian_cond.py). GL(r) invariance gives r² zero
 * eigenvalues, which are skipped: κ = λ_max / λ_(r²+1)-th smallest.
 *
 * The explicit Hessian is (n+m)r square; this is for small illustrative sizes only (the per-module
 * UI uses the closed forms below).
 */
import { Mat, mat } from '../linalg/dense';
import { symEig } from '../linalg/decomp';

/** Explicit Hessian of ½‖UVᵀ − T‖² at (U, V); variables ordered vec(U) row-major then vec(V). */
export function factorisedHessian(U: Mat, V: Mat, T: Mat): Mat {
  const n = U.rows, r = U.cols, m = V.rows;
  if (V.cols !== r || T.rows !== n || T.cols !== m) throw new Error('factorisedHessian: shape mismatch');
  if ((n + m) * r > 4096) throw new Error(`factorisedHessian: ${(n + m) * r} variables is too large for an explicit Hessian`);
  // Residual R = U Vᵀ − T
  const R = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
    let s = -T.data[i * m + j];
    for (let k = 0; k < r; k++) s += U.data[i * r + k] * V.data[j * r + k];
    R[i * m + j] = s;
  }
  const N = (n + m) * r;
  const H = mat(N, N);
  const dU = new Float64Array(n * r), dV = new Float64Array(m * r), dR = new Float64Array(n * m);
  for (let col = 0; col < N; col++) {
    dU.fill(0); dV.fill(0);
    if (col < n * r) dU[col] = 1; else dV[col - n * r] = 1;
    // dR = dU Vᵀ + U dVᵀ
    for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += dU[i * r + k] * V.data[j * r + k] + U.data[i * r + k] * dV[j * r + k];
      dR[i * m + j] = s;
    }
    // gU = dR V + R dV  (n×r);  gV = dRᵀ U + Rᵀ dU  (m×r)
    for (let i = 0; i < n; i++) for (let k = 0; k < r; k++) {
      let s = 0;
      for (let j = 0; j < m; j++) s += dR[i * m + j] * V.data[j * r + k] + R[i * m + j] * dV[j * r + k];
      H.data[(i * r + k) * N + col] = s;
    }
    for (let j = 0; j < m; j++) for (let k = 0; k < r; k++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += dR[i * m + j] * U.data[i * r + k] + R[i * m + j] * dU[i * r + k];
      H.data[(n * r + j * r + k) * N + col] = s;
    }
  }
  return H;
}

export interface HessianCondition {
  kappa: number;
  lambdaMax: number;
  /** Smallest eigenvalue after skipping the r² smallest (the GL(r) null directions). */
  lambdaMinNonzero: number;
  /** The r² skipped eigenvalues (ascending); ≈ 0 at minimisers. */
  skipped: number[];
}

/** κ = λ_max / λ_(r²+1)-th smallest of the explicit Hessian at (U, V). */
export function hessianCondition(U: Mat, V: Mat, T: Mat): HessianCondition {
  const r = U.cols;
  const H = factorisedHessian(U, V, T);
  const asc = Array.from(symEig(H).values).reverse();
  const lmax = asc[asc.length - 1];
  const lmin = asc[r * r];
  return { kappa: lmax / lmin, lambdaMax: lmax, lambdaMinNonzero: lmin, skipped: asc.slice(0, r * r) };
}

/** Closed form for a balanced minimiser of a rank-r target with singular values σ (descending): 2σ₁/σ_r. */
export function balancedHessianKappa(sigma: ArrayLike<number>): number {
  const s1 = sigma[0], sr = smallestPositive(sigma);
  return sr > 0 ? (2 * s1) / sr : Infinity;
}

/**
 * Closed form for the UNIFORMLY rescaled minimiser (cU, V/c) of a balanced one: σ₁(c⁴+1)/σ_r (c and
 * 1/c give the same κ; c = 1 is the balanced value 2σ₁/σ_r). Matches the explicit Hessian for
 * exact-rank targets (κ = 8, 68, 1028, 16388 for σ = (4, 1), c = 1, 2, 4, 8). Only valid for a
 * uniform imbalance c·I: for real factors use factorHessianKappa.
 */
export function scaledHessianKappa(sigma: ArrayLike<number>, c: number): number {
  const C = Math.max(Math.abs(c), 1 / Math.abs(c));
  const s1 = sigma[0], sr = smallestPositive(sigma);
  return sr > 0 ? (s1 * (C ** 4 + 1)) / sr : Infinity;
}

/**
 * Effective scale imbalance c of factors (B, A) relative to the balanced factorisation of the
 * same product: c = (‖B‖_F/‖A‖_F)^{1/2} (c = 1 when ‖A‖ = ‖B‖, e.g. after rebalancing).
 * Descriptive only: κ_H depends on the whole imbalance, not on c (see factorHessianKappa).
 */
export function factorScaleImbalance(normA: number, normB: number): number {
  return normA > 0 && normB > 0 ? Math.sqrt(normB / normA) : NaN;
}

/**
 * Hessian condition number of L(B, A) = ½‖s·B·A − M‖²_F at a minimiser (s·B·A = M), from the
 * singular values of the factors alone, for ANY (non-uniform) imbalance.
 *
 * Derivation: at zero residual the Hessian is JᵀJ with J(dB, dA) = s·(dB·A + B·dA). Its nonzero
 * eigenvalues are those of J·Jᵀ: X ↦ s²·(B·Bᵀ·X + X·Aᵀ·A) on out×in matrices, i.e.
 * s²·(β_i + α_j) with β = eig(B·Bᵀ) (σ_i(B)², padded with out − r zeros) and α = eig(Aᵀ·A)
 * (σ_j(A)², padded with in − r zeros), excluding the (0, 0) pairs. The r² GL(r) null directions
 * (B·R, R⁻¹·A) are the remaining zeros. s² cancels in the ratio:
 *     κ_H = (σ₁(B)² + σ₁(A)²) / min over nonzero pairs,
 * which is (σ₁(B)² + σ₁(A)²) / min(σ_r(B)², σ_r(A)²) when out > r and in > r (every real LoRA
 * module), 2σ₁/σ_r of s·B·A/s when balanced, σ₁(c⁴+1)/σ_r for the uniform (cU, V/c).
 * A rank-deficient factor (σ_r = 0, e.g. B = 0 before training) leaves more than r² zero
 * eigenvalues: κ_H = ∞.
 *
 * @param sigmaB singular values of B (out×r), any order; @param sigmaA of A (r×in).
 */
export function factorHessianKappa(sigmaB: ArrayLike<number>, sigmaA: ArrayLike<number>, outF: number, inF: number): number {
  const b = Array.from(sigmaB, (x) => x * x).sort((x, y) => y - x);
  const a = Array.from(sigmaA, (x) => x * x).sort((x, y) => y - x);
  const r = b.length;
  if (r === 0 || a.length !== r) return NaN;
  if (!(b[r - 1] > 0) || !(a[r - 1] > 0)) return Infinity;
  const max = b[0] + a[0];
  // smallest nonzero β_i + α_j: a pure β (paired with a zero α) exists when in > r, a pure α when out > r.
  let min = b[r - 1] + a[r - 1];
  if (inF > r) min = Math.min(min, b[r - 1]);
  if (outF > r) min = Math.min(min, a[r - 1]);
  return max / min;
}

function smallestPositive(s: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < s.length; i++) if (s[i] > 0 && (m === 0 || s[i] < m)) m = s[i];
  return m;
}

/** The reference cases of papers.md §1.4 / ref/out_hessian.txt (for the CLI demo and tests). */
export function hessianDemoCases(): { label: string; kappa: number; lambdaMax: number; lambdaMinNonzero: number; closedForm?: number }[] {
  const n = 5, r = 2;
  const E = mat(n, n); E.data[0] = 4; E.data[n + 1] = 1;
  const Ub = mat(n, r); Ub.data[0] = 2; Ub.data[r + 1] = 1;
  const scaled = (M: Mat, d: number[]) => { const o = mat(M.rows, M.cols, M.data); for (let i = 0; i < M.rows; i++) for (let k = 0; k < r; k++) o.data[i * r + k] *= d[k]; return o; };
  const out: { label: string; kappa: number; lambdaMax: number; lambdaMinNonzero: number; closedForm?: number }[] = [];
  for (const c of [1, 2, 4, 8]) {
    const h = hessianCondition(scaled(Ub, [c, c]), scaled(Ub, [1 / c, 1 / c]), E);
    out.push({ label: `(cU, V/c), c=${c}`, ...pick(h), closedForm: scaledHessianKappa([4, 1], c) });
  }
  for (const c of [2, 4]) {
    const h = hessianCondition(scaled(Ub, [c, 1 / c]), scaled(Ub, [1 / c, c]), E);
    out.push({ label: `R=diag(${c},1/${c})`, ...pick(h) });
  }
  const E3 = mat(n, n, E.data); E3.data[2 * n + 2] = 0.5;
  for (const c of [1, 4]) {
    const h = hessianCondition(scaled(Ub, [c, c]), scaled(Ub, [1 / c, 1 / c]), E3);
    out.push({ label: `rank-3 target (4,1,0.5), r=2, c=${c}`, ...pick(h) });
  }
  return out;
}

function pick(h: HessianCondition) {
  return { kappa: h.kappa, lambdaMax: h.lambdaMax, lambdaMinNonzero: h.lambdaMinNonzero };
}
