/**
 * Small dense fp64 linear algebra for r×r / k×k problems (r, k ≤ a few hundred).
 *
 * Why hand-written: no npm package offers LAPACK with growable memory (shared/research/perf.md §3:
 * emlapack's heap cannot grow, `eigen` crashes for n ≥ 100, ml-matrix takes 20 s for a 1024² SVD).
 * We only ever decompose small matrices here — every product that touches a full weight matrix
 * goes through onnxruntime (src/core/engine) — and for those sizes these routines run in
 * microseconds to milliseconds with fp64 accuracy comparable to LAPACK (tested against numpy).
 *
 * Layout: row-major Float64Array with explicit rows/cols.
 */

export interface Mat {
  rows: number;
  cols: number;
  /** Row-major values, length rows*cols. */
  data: Float64Array;
}

export function mat(rows: number, cols: number, data?: ArrayLike<number>): Mat {
  const d = new Float64Array(rows * cols);
  if (data) {
    if (data.length !== rows * cols) throw new Error(`mat: ${data.length} values for a ${rows}×${cols} matrix`);
    d.set(data);
  }
  return { rows, cols, data: d };
}

export function fromRows(rows: number[][]): Mat {
  const r = rows.length;
  const c = r ? rows[0].length : 0;
  const m = mat(r, c);
  rows.forEach((row, i) => {
    if (row.length !== c) throw new Error('fromRows: ragged rows');
    m.data.set(row, i * c);
  });
  return m;
}

export function toRows(m: Mat): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < m.rows; i++) out.push(Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols)));
  return out;
}

export function identity(n: number): Mat {
  const m = mat(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function transpose(a: Mat): Mat {
  const t = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = a.data[i * a.cols + j];
  return t;
}

/** C = A·B (i-k-j loop order so the inner loop walks contiguous rows). */
export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`matmul: ${a.rows}×${a.cols} · ${b.rows}×${b.cols}`);
  const c = mat(a.rows, b.cols);
  const n = b.cols;
  for (let i = 0; i < a.rows; i++) {
    const ci = i * n;
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k];
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c.data[ci + j] += aik * b.data[bk + j];
    }
  }
  return c;
}

export function scale(a: Mat, s: number): Mat {
  const c = mat(a.rows, a.cols);
  for (let i = 0; i < a.data.length; i++) c.data[i] = a.data[i] * s;
  return c;
}

export function sub(a: Mat, b: Mat): Mat {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new Error('sub: shape mismatch');
  const c = mat(a.rows, a.cols);
  for (let i = 0; i < a.data.length; i++) c.data[i] = a.data[i] - b.data[i];
  return c;
}

export function frobenius(a: Mat | Float64Array | Float32Array): number {
  const d = 'data' in a ? a.data : a;
  // Scaled sum of squares avoids overflow/underflow for extreme values.
  let scaleV = 0, ssq = 1;
  for (let i = 0; i < d.length; i++) {
    const v = Math.abs(d[i]);
    if (v === 0) continue;
    if (scaleV < v) {
      ssq = 1 + ssq * (scaleV / v) ** 2;
      scaleV = v;
    } else ssq += (v / scaleV) ** 2;
  }
  return scaleV * Math.sqrt(ssq);
}

/** diag(d) · M */
export function scaleRows(m: Mat, d: ArrayLike<number>): Mat {
  const c = mat(m.rows, m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) c.data[i * m.cols + j] = d[i] * m.data[i * m.cols + j];
  return c;
}

/** M · diag(d) */
export function scaleCols(m: Mat, d: ArrayLike<number>): Mat {
  const c = mat(m.rows, m.cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) c.data[i * m.cols + j] = m.data[i * m.cols + j] * d[j];
  return c;
}

export function maxAbsDiff(a: Mat, b: Mat): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
  return m;
}
