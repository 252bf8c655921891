/**
 * fp64 decompositions for small matrices (see dense.ts for why they are hand-written).
 * - householderR: R factor of a tall-skinny m×n QR (n small), O(m n²)
 * - householderQR: thin Q (m×n) and R
 * - cholesky: upper R with RᵀR = G, or undefined when G is not numerically positive definite
 * - svd: one-sided Jacobi (Hestenes) SVD of an m×n matrix (m ≥ n after transposition), high
 *   relative accuracy, singular values sorted descending
 * - symEig: cyclic Jacobi eigen-decomposition of a symmetric matrix, eigenvalues descending
 */
import { Mat, mat, transpose } from './dense';

/**
 * Householder QR of a tall m×n matrix given column-major (`cols[j]` is column j, length m).
 * Overwrites `cols`. Returns R (n×n, upper triangular, row-major), and when `wantQ` the thin Q.
 */
export function householderQRColumns(cols: Float64Array[], m: number, wantQ = false): { R: Mat; Q?: Mat } {
  const n = cols.length;
  if (n > m) throw new Error(`householderQR: ${m}×${n} is wide; transpose first`);
  const vs: Float64Array[] = [];
  const betas: number[] = [];
  const R = mat(n, n);
  for (let k = 0; k < n; k++) {
    const x = cols[k];
    // norm of x[k:]
    let scaleV = 0;
    for (let i = k; i < m; i++) scaleV = Math.max(scaleV, Math.abs(x[i]));
    let alpha = 0;
    if (scaleV > 0) {
      let s = 0;
      for (let i = k; i < m; i++) s += (x[i] / scaleV) ** 2;
      alpha = scaleV * Math.sqrt(s);
    }
    const v = new Float64Array(m - k);
    let beta = 0;
    if (alpha !== 0) {
      const sign = x[k] >= 0 ? 1 : -1;
      const r = -sign * alpha;
      for (let i = k; i < m; i++) v[i - k] = x[i];
      v[0] -= r;
      let vv = 0;
      for (let i = 0; i < v.length; i++) vv += v[i] * v[i];
      beta = vv > 0 ? 2 / vv : 0;
      x[k] = r;
      for (let i = k + 1; i < m; i++) x[i] = 0;
      // apply to remaining columns
      for (let j = k + 1; j < n; j++) {
        const c = cols[j];
        let d = 0;
        for (let i = k; i < m; i++) d += v[i - k] * c[i];
        d *= beta;
        if (d !== 0) for (let i = k; i < m; i++) c[i] -= d * v[i - k];
      }
    }
    vs.push(v);
    betas.push(beta);
  }
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) R.data[i * n + j] = cols[j][i];
  if (!wantQ) return { R };
  // Q = H0 H1 ... H(n-1) applied to the first n columns of I.
  const Q = mat(m, n);
  const qc: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const e = new Float64Array(m);
    e[j] = 1;
    for (let k = n - 1; k >= 0; k--) {
      const v = vs[k];
      const beta = betas[k];
      if (beta === 0) continue;
      let d = 0;
      for (let i = k; i < m; i++) d += v[i - k] * e[i];
      d *= beta;
      for (let i = k; i < m; i++) e[i] -= d * v[i - k];
    }
    qc.push(e);
  }
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) Q.data[i * n + j] = qc[j][i];
  return { R, Q };
}

/** Column-major copy of a row-major matrix (columns become contiguous arrays). */
export function toColumns(a: Mat): Float64Array[] {
  const cols: Float64Array[] = [];
  for (let j = 0; j < a.cols; j++) cols.push(new Float64Array(a.rows));
  for (let i = 0; i < a.rows; i++) {
    const row = i * a.cols;
    for (let j = 0; j < a.cols; j++) cols[j][i] = a.data[row + j];
  }
  return cols;
}

/** R of QR(a) for a tall matrix a (m ≥ n). */
export function householderR(a: Mat): Mat {
  return householderQRColumns(toColumns(a), a.rows).R;
}

export function householderQR(a: Mat): { Q: Mat; R: Mat } {
  const { Q, R } = householderQRColumns(toColumns(a), a.rows, true);
  return { Q: Q!, R };
}

/**
 * Cholesky of a symmetric positive definite G = RᵀR, R upper triangular.
 * Returns undefined when a pivot is not positive (G singular or indefinite to working precision).
 */
export function cholesky(g: Mat): Mat | undefined {
  const n = g.rows;
  const R = mat(n, n);
  const d = R.data;
  for (let j = 0; j < n; j++) {
    let s = g.data[j * n + j];
    for (let k = 0; k < j; k++) s -= d[k * n + j] * d[k * n + j];
    if (!(s > 0)) return undefined;
    const rjj = Math.sqrt(s);
    d[j * n + j] = rjj;
    for (let i = j + 1; i < n; i++) {
      let t = g.data[j * n + i];
      for (let k = 0; k < j; k++) t -= d[k * n + j] * d[k * n + i];
      d[j * n + i] = t / rjj;
    }
  }
  return R;
}

export interface SVDResult {
  /** m×k left singular vectors (k = min(m, n)). */
  U: Mat;
  /** k singular values, descending. */
  S: Float64Array;
  /** n×k right singular vectors (A = U diag(S) Vᵀ). */
  V: Mat;
}

/**
 * One-sided Jacobi SVD. Accurate to high relative precision for each singular value
 * (Demmel & Veselić), which matters for κ of ill-conditioned LoRA factors.
 */
export function svd(a: Mat, opts: { wantU?: boolean; wantV?: boolean; maxSweeps?: number } = {}): SVDResult {
  const wantU = opts.wantU ?? true;
  const wantV = opts.wantV ?? true;
  if (a.rows < a.cols) {
    const r = svd(transpose(a), { wantU: wantV, wantV: wantU, maxSweeps: opts.maxSweeps });
    return { U: r.V, S: r.S, V: r.U };
  }
  const m = a.rows, n = a.cols;
  const cols = toColumns(a);
  for (const c of cols) for (let i = 0; i < m; i++) if (!Number.isFinite(c[i])) throw new Error('svd: matrix has NaN or Inf entries');
  const V: Float64Array[] = [];
  if (wantV) for (let j = 0; j < n; j++) { const e = new Float64Array(n); e[j] = 1; V.push(e); }
  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) { let s = 0; for (let i = 0; i < m; i++) s += cols[j][i] ** 2; norms[j] = s; }
  const tol = 1e-15;
  const maxSweeps = opts.maxSweeps ?? 60;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    // Exact norms once per sweep; within the sweep they are updated analytically (α' = α − tγ,
    // β' = β + tγ), which saves a third of the work per rotation.
    if (sweep > 0) for (let j = 0; j < n; j++) { const c = cols[j]; let s2 = 0; for (let i = 0; i < m; i++) s2 += c[i] * c[i]; norms[j] = s2; }
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const cp = cols[p], cq = cols[q];
        const alpha = norms[p], beta = norms[q];
        let gamma = 0;
        for (let i = 0; i < m; i++) gamma += cp[i] * cq[i];
        if (gamma === 0 || Math.abs(gamma) <= tol * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = cp[i], y = cq[i];
          cp[i] = c * x - s * y;
          cq[i] = s * x + c * y;
        }
        norms[p] = alpha - t * gamma;
        norms[q] = beta + t * gamma;
        if (wantV) {
          const vp = V[p], vq = V[q];
          for (let i = 0; i < n; i++) {
            const x = vp[i], y = vq[i];
            vp[i] = c * x - s * y;
            vq[i] = s * x + c * y;
          }
        }
      }
    }
    if (!rotated) break;
  }
  const sv = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let scaleV = 0;
    for (let i = 0; i < m; i++) scaleV = Math.max(scaleV, Math.abs(cols[j][i]));
    let s = 0;
    if (scaleV > 0) for (let i = 0; i < m; i++) s += (cols[j][i] / scaleV) ** 2;
    sv[j] = scaleV * Math.sqrt(s);
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => sv[y] - sv[x]);
  const S = new Float64Array(n);
  const U = mat(wantU ? m : 0, wantU ? n : 0);
  const Vm = mat(wantV ? n : 0, wantV ? n : 0);
  order.forEach((j, k) => {
    S[k] = sv[j];
    if (wantU) {
      if (sv[j] > 0) for (let i = 0; i < m; i++) U.data[i * n + k] = cols[j][i] / sv[j];
    }
    if (wantV) for (let i = 0; i < n; i++) Vm.data[i * n + k] = V[j][i];
  });
  if (wantU) completeOrthonormalColumns(U, S);
  return { U, S, V: Vm };
}

/** Replaces zero columns of U (from zero singular values) with orthonormal completions. */
function completeOrthonormalColumns(U: Mat, S: Float64Array): void {
  const m = U.rows, n = U.cols;
  for (let k = 0; k < n; k++) {
    if (S[k] > 0) continue;
    for (let e = 0; e < m; e++) {
      const v = new Float64Array(m);
      v[e] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < n; j++) {
          if (j === k || (S[j] === 0 && j > k)) continue;
          let d = 0;
          for (let i = 0; i < m; i++) d += U.data[i * n + j] * v[i];
          for (let i = 0; i < m; i++) v[i] -= d * U.data[i * n + j];
        }
      }
      let nv = 0;
      for (let i = 0; i < m; i++) nv += v[i] * v[i];
      nv = Math.sqrt(nv);
      if (nv > 1e-8) {
        for (let i = 0; i < m; i++) U.data[i * n + k] = v[i] / nv;
        break;
      }
    }
  }
}

/** Singular values only. */
export function singularValues(a: Mat): Float64Array {
  return svd(a, { wantU: false, wantV: false }).S;
}

/**
 * Symmetric eigen-decomposition by cyclic Jacobi rotations. Returns eigenvalues descending and the
 * eigenvectors as columns of `vectors`.
 */
export function symEig(a: Mat, maxSweeps = 100): { values: Float64Array; vectors: Mat } {
  const n = a.rows;
  if (a.cols !== n) throw new Error('symEig: matrix is not square');
  const A = Float64Array.from(a.data);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
    const s = 0.5 * (A[i * n + j] + A[j * n + i]);
    A[i * n + j] = s; A[j * n + i] = s;
  }
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0, total = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { const v = A[i * n + j] ** 2; total += v; if (i !== j) off += v; }
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const app = A[p * n + p], aqq = A[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => A[y * n + y] - A[x * n + x]);
  const values = new Float64Array(n);
  const vectors = mat(n, n);
  order.forEach((j, k) => {
    values[k] = A[j * n + j];
    for (let i = 0; i < n; i++) vectors.data[i * n + k] = V[i * n + j];
  });
  return { values, vectors };
}

/** Condition number σ_max/σ_min of singular values (descending); Infinity when σ_min = 0. */
export function conditionNumber(s: ArrayLike<number>): number {
  if (s.length === 0) return NaN;
  const max = s[0], min = s[s.length - 1];
  if (max === 0) return NaN;
  return min === 0 ? Infinity : max / min;
}
