/**
 * Symmetric eigen-decomposition by Householder tridiagonalisation + implicit QL (the classic
 * tred2/tql2 pair, as in JAMA), O(n³) with small constants: much faster than cyclic Jacobi for
 * values only. Used for r×r Gram matrices of LoRA factors and for base-model spectra up to n ≈ 1024.
 */
/**
 * Eigenvalues (descending) of a symmetric n×n row-major matrix and, when wanted, eigenvectors as
 * ROWS of `vectors` (row j = eigenvector of values[j]). O(n³); fine up to n ≈ 1024.
 */
export function symEigTridiag(a: ArrayLike<number>, n: number, wantVectors = true): { values: Float64Array; vectors?: Float64Array } {
  // V[i][j] row-major, initialised with A (symmetrised).
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) V[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
  const d = new Float64Array(n), e = new Float64Array(n);
  if (n === 0) return { values: d, vectors: wantVectors ? V : undefined };
  // tred2
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) { d[k] /= scale; h += d[k] * d[k]; }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        V[j * n + i] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j] * d[k];
          e[k] += V[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) { e[j] /= h; f += e[j] * d[j]; }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  if (wantVectors) {
    for (let i = 0; i < n - 1; i++) {
      V[(n - 1) * n + i] = V[i * n + i];
      V[i * n + i] = 1;
      const h = d[i + 1];
      if (h !== 0) {
        for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
        for (let j = 0; j <= i; j++) {
          let g = 0;
          for (let k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
          for (let k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
        }
      }
      for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
    }
    for (let j = 0; j < n; j++) { d[j] = V[(n - 1) * n + j]; V[(n - 1) * n + j] = 0; }
    V[(n - 1) * n + n - 1] = 1;
  } else {
    for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
    // d currently holds h values for i ≥ 1 in the loop above; the diagonal of T is the diagonal
    // left in V after the reduction.
    for (let j = 0; j < n; j++) d[j] = V[j * n + j];
  }
  e[0] = 0;
  // Eigenvectors transposed: Vt row i = column i of V (contiguous rotations in tql2).
  let Vt: Float64Array | undefined;
  if (wantVectors) {
    Vt = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) Vt[i * n + k] = V[k * n + i];
  }
  // tql2 on (d, e) with e shifted so that e[i] = T[i+1, i]; rotations applied to the rows of Vt.
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  const r = tridiagQL(d, e, Vt, Vt ? n : 0);
  return { values: r.values, vectors: r.X };
}

/**
 * Implicit QL (JAMA tql2) on the tridiagonal (d, e) (e[i] = T[i+1, i]); every rotation applied to
 * the rows of X (n×k), so on return X = Zᵀ·X₀ where T = Z·Λ·Zᵀ. Returns eigenvalues DESCENDING
 * and Zᵀ·X₀ with rows in that order. k = 0: values only, O(n²).
 */
export function tridiagQL(d0: ArrayLike<number>, e0: ArrayLike<number>, X?: Float64Array, k = 0): { values: Float64Array; X?: Float64Array } {
  const n = d0.length;
  const d = Float64Array.from(d0), e = new Float64Array(n);
  for (let i = 0; i < n - 1; i++) e[i] = e0[i];
  const M = X && k > 0 ? X : undefined;
  let f = 0, tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) break;
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.sqrt(p * p + 1);
        if (!Number.isFinite(r)) r = Math.abs(p);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = 1, c3 = 1;
        const el1 = e[l + 1];
        let s = 0, s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.sqrt(p * p + e[i] * e[i]);
          e[i + 1] = s * r;
          // r = 0 (p = e[i] = 0, exactly rank-deficient input): the identity rotation, not 0/0
          s = r === 0 ? 0 : e[i] / r;
          c = r === 0 ? 1 : p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (M) {
            const o0 = i * k, o1 = (i + 1) * k;
            for (let q = 0; q < k; q++) {
              const hq = M[o1 + q], vq = M[o0 + q];
              M[o1 + q] = s * vq + c * hq;
              M[o0 + q] = c * vq - s * hq;
            }
          }
        }
        p = dl1 === 0 ? 0 : (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = new Float64Array(n);
  let out: Float64Array | undefined;
  if (M) out = new Float64Array(n * k);
  order.forEach((src, dst) => {
    values[dst] = d[src];
    if (M) out!.set(M.subarray(src * k, src * k + k), dst * k);
  });
  return { values, X: out };
}

