/**
 * Two-stage tridiagonalisation of a symmetric m×m fp64 matrix G (the Gram of a weight matrix):
 *
 *   Stage 1 (band form, O(m³) in onnxruntime): G = Q1·B·Q1ᵀ, B banded with half-bandwidth b, by
 *   blocked Householder QR of b-column panels (LAPACK dsytrd_sy2sb). ORT outputs of the size of
 *   the trailing matrix are expensive here (fresh pages: ~1 ms per MB on this machine, perf.md §1),
 *   so the updates are LAZY within a superblock of S columns: the reflectors V and the
 *   corrections W of the superblock are kept (N×S each) and every product that needs the current
 *   trailing matrix reads the superblock's first matrix A and subtracts V·Wᵀ + W·Vᵀ on the fly
 *   (all products have N×b outputs). Once per superblock one Gemm materialises the new trailing
 *   matrix A ← A[S:, S:] − V·Wᵀ − W·Vᵀ. The panel QR (N×b) and the b×b work run in TS.
 *   Every O(m³) flop is a matrix–matrix product in ORT (BLAS-3), unlike the one-stage dsytrd
 *   whose symmetric matrix–vector products stream the trailing matrix once per column.
 *
 *   Stage 2 (band → tridiagonal, O(m²·b) in TS, fp64): Householder bulge chasing (the sequential
 *   form of LAPACK dsytrd_sb2st / dsb2st_kernels, lower storage with 2b+1 diagonals for the
 *   bulge). B = Q2·T·Q2ᵀ with Q2 = H_1·H_2⋯H_K, each H_i a reflector of length ≤ b.
 *
 * Q = Q1·Q2 is never formed: applyTwoStageQt / applyTwoStageQ apply it to m×k blocks in
 * O(m²·k) (the k tuned vectors of the intruder analysis, or nothing for eigenvalues only).
 * Written here rather than taken from a library because no npm package offers a growable-memory
 * LAPACK (perf.md §3) and the O(m³) part must run in onnxruntime (architecture rule).
 */
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';

export const DEFAULT_BAND = 16;
export const DEFAULT_SUPER = 256;

/** Q1 = P_0·P_1⋯, P_j = I − V_j·T_j·V_jᵀ acting on rows start_j…m−1 (V_j rows×nref, row-major). */
export interface BandQ {
  /** Per panel: first global row, row count, reflector count, offset of V_j in v, offset of T_j in t. */
  start: Int32Array;
  rows: Int32Array;
  nref: Int32Array;
  vOff: Float64Array;
  tOff: Float64Array;
  v: Float64Array;
  t: Float64Array;
}

/** Q2 = H_1⋯H_K, H_i = I − τ_i·v_i·v_iᵀ on rows pos_i…pos_i+len_i−1 (v_i[0] = 1 stored). */
export interface ChaseQ {
  pos: Int32Array;
  len: Int32Array;
  off: Float64Array;
  v: Float64Array;
  tau: Float64Array;
}

export interface TwoStage {
  m: number;
  b: number;
  d: Float64Array;
  e: Float64Array;
  q1: BandQ;
  q2?: ChaseQ;
}

/** Seconds of the last reduction (diagnostics for the benches). */
export const twoStageProfile = { band: 0, bandOrt: 0, cols: 0, x: 0, mat: 0, chase: 0 };
const now = (): number => Number(process.hrtime.bigint()) / 1e9;

// ---------------------------------------------------------------------------------------------
// growable typed buffers

class GrowF64 {
  a: Float64Array;
  n = 0;
  constructor(cap: number) { this.a = new Float64Array(Math.max(16, cap)); }
  reserve(extra: number): number {
    if (this.n + extra > this.a.length) {
      const b = new Float64Array(Math.max(this.n + extra, Math.ceil(this.a.length * 1.5)));
      b.set(this.a.subarray(0, this.n));
      this.a = b;
    }
    const o = this.n;
    this.n += extra;
    return o;
  }
  done(): Float64Array { return this.a.slice(0, this.n); }
}
class GrowI32 {
  a: Int32Array;
  n = 0;
  constructor(cap: number) { this.a = new Int32Array(Math.max(16, cap)); }
  push(x: number): void {
    if (this.n === this.a.length) { const b = new Int32Array(this.a.length * 2); b.set(this.a); this.a = b; }
    this.a[this.n++] = x;
  }
  done(): Int32Array { return this.a.slice(0, this.n); }
}

// ---------------------------------------------------------------------------------------------
// band storage: lower, column-major, LD = 2b+1 diagonals: (r, c), r ≥ c, r − c ≤ 2b at c·LD + r − c

class Band {
  readonly ld: number;
  readonly a: Float64Array;
  constructor(readonly m: number, readonly b: number) {
    this.ld = 2 * b + 1;
    this.a = new Float64Array(m * this.ld);
  }
  set(r: number, c: number, v: number): void {
    if (r < c) { const t = r; r = c; c = t; }
    if (r - c <= this.b) this.a[c * this.ld + r - c] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// panel QR (TS): P is rows×bc column-major (bc columns of length rows); returns V (row-major
// rows×nref, unit lower trapezoidal), T (nref×nref upper triangular, row-major), R entries written
// into the band by the caller (P is overwritten with R in its upper trapezoid).

function panelQR(P: Float64Array, rows: number, bc: number): { V: Float64Array; T: Float64Array; nref: number; tau: Float64Array } {
  const nref = Math.min(rows, bc);
  const tau = new Float64Array(nref);
  for (let j = 0; j < nref; j++) {
    const col = j * rows;
    let ss = 0;
    for (let i = j + 1; i < rows; i++) ss += P[col + i] * P[col + i];
    const alpha = P[col + j];
    if (ss === 0) { tau[j] = 0; continue; }
    const beta = -(alpha >= 0 ? 1 : -1) * Math.sqrt(alpha * alpha + ss);
    const t = (beta - alpha) / beta;
    const sc = 1 / (alpha - beta);
    for (let i = j + 1; i < rows; i++) P[col + i] *= sc;
    P[col + j] = beta;
    tau[j] = t;
    // apply H_j = I − t v vᵀ (v = [1; P[j+1:, j]]) to the columns j+1…bc−1
    for (let q = j + 1; q < bc; q++) {
      const cq = q * rows;
      let s = P[cq + j];
      for (let i = j + 1; i < rows; i++) s += P[col + i] * P[cq + i];
      s *= t;
      P[cq + j] -= s;
      for (let i = j + 1; i < rows; i++) P[cq + i] -= s * P[col + i];
    }
  }
  // V row-major rows×nref
  const V = new Float64Array(rows * nref);
  for (let j = 0; j < nref; j++) {
    const col = j * rows;
    V[j * nref + j] = 1;
    for (let i = j + 1; i < rows; i++) V[i * nref + j] = P[col + i];
  }
  // T (dlarft, forward, columnwise): T[0:j, j] = −τ_j·T[0:j, 0:j]·(V[:, 0:j]ᵀ v_j)
  const T = new Float64Array(nref * nref);
  const w = new Float64Array(nref);
  for (let j = 0; j < nref; j++) {
    T[j * nref + j] = tau[j];
    if (tau[j] === 0 || j === 0) continue;
    w.fill(0, 0, j);
    for (let i = j; i < rows; i++) {
      const vij = V[i * nref + j];
      if (vij === 0) continue;
      const o = i * nref;
      for (let q = 0; q < j; q++) w[q] += V[o + q] * vij;
    }
    for (let q = 0; q < j; q++) {
      let s = 0;
      for (let r = q; r < j; r++) s += T[q * nref + r] * w[r];
      T[q * nref + j] = -tau[j] * s;
    }
  }
  return { V, T, nref, tau };
}

/** Z = V·T (rows×nref), then W = X − ½·V·(Tᵀ·(Vᵀ·X)) in place of X (rows×bc, only nref columns used). */
function correction(V: Float64Array, T: Float64Array, X: Float64Array, rows: number, nref: number, ldx: number): void {
  const VtX = new Float64Array(nref * nref);
  for (let i = 0; i < rows; i++) {
    const vo = i * nref, xo = i * ldx;
    for (let a = 0; a < nref; a++) {
      const v = V[vo + a];
      if (v === 0) continue;
      for (let c = 0; c < nref; c++) VtX[a * nref + c] += v * X[xo + c];
    }
  }
  const M = new Float64Array(nref * nref); // Tᵀ·VtX
  for (let a = 0; a < nref; a++) for (let c = 0; c < nref; c++) {
    let s = 0;
    for (let q = 0; q <= a; q++) s += T[q * nref + a] * VtX[q * nref + c];
    M[a * nref + c] = s;
  }
  for (let i = 0; i < rows; i++) {
    const vo = i * nref, xo = i * ldx;
    for (let c = 0; c < nref; c++) {
      let s = 0;
      for (let a = 0; a < nref; a++) s += V[vo + a] * M[a * nref + c];
      X[xo + c] -= 0.5 * s;
    }
  }
}

function timesT(V: Float64Array, T: Float64Array, rows: number, nref: number, out: Float64Array, ldo: number, rowOff: number): void {
  for (let i = 0; i < rows; i++) {
    const vo = i * nref, oo = (rowOff + i) * ldo;
    for (let c = 0; c < nref; c++) {
      let s = 0;
      for (let a = 0; a <= c; a++) s += V[vo + a] * T[a * nref + c];
      out[oo + c] = s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ORT graphs (symbolic N, fixed S and b)

function colsGraph(S: number, b: number): Uint8Array {
  // A[:, c:c+b] − Vs·Ws[c:c+b]ᵀ − Ws·Vs[c:c+b]ᵀ
  const g = new GraphBuilder(`ts_cols_${S}_${b}`);
  g.input('A', 'float64', ['N', 'N']);
  g.input('Vs', 'float64', ['N', S]);
  g.input('Ws', 'float64', ['N', S]);
  g.input('c0', 'int64', [1]);
  g.input('c1', 'int64', [1]);
  const ax0 = g.constant([0], 'int64', [1]), ax1 = g.constant([1], 'int64', [1]);
  const Ac = g.op('Slice', ['A', 'c0', 'c1', ax1]);
  const Vr = g.op('Slice', ['Vs', 'c0', 'c1', ax0]);
  const Wr = g.op('Slice', ['Ws', 'c0', 'c1', ax0]);
  const t1 = g.op('Gemm', ['Vs', Wr], { transB: 1 });
  const t2 = g.op('Gemm', ['Ws', Vr], { transB: 1 });
  g.op('Sub', [g.op('Sub', [Ac, t1]), t2], {}, 'Y');
  g.output('Y', 'float64', ['N', b]);
  return g.build();
}

function xGraph(S: number, b: number): Uint8Array {
  // Z = V·T; X = A·Z − Vs·(Wsᵀ·Z) − Ws·(Vsᵀ·Z); W = X − ½·V·(Tᵀ·(Vᵀ·X))   (V zero above the panel)
  const g = new GraphBuilder(`ts_x_${S}_${b}`);
  g.input('A', 'float64', ['N', 'N']);
  g.input('Vs', 'float64', ['N', S]);
  g.input('Ws', 'float64', ['N', S]);
  g.input('V', 'float64', ['N', b]);
  g.input('T', 'float64', [b, b]);
  const Z = g.op('MatMul', ['V', 'T']);
  const AZ = g.op('MatMul', ['A', Z]);
  const WZ = g.op('Gemm', ['Ws', Z], { transA: 1 });
  const VZ = g.op('Gemm', ['Vs', Z], { transA: 1 });
  const X = g.op('Sub', [AZ, g.op('Add', [g.op('MatMul', ['Vs', WZ]), g.op('MatMul', ['Ws', VZ])])]);
  const M = g.op('Gemm', ['T', g.op('Gemm', ['V', X], { transA: 1 })], { transA: 1 });
  const half = g.constant([0.5], 'float64', [1]);
  g.op('Sub', [X, g.op('Mul', [g.op('MatMul', ['V', M]), half])], {}, 'Y');
  g.output('Y', 'float64', ['N', b]);
  return g.build();
}

function matGraph(S: number): Uint8Array {
  // A[S:, S:] − [Vs Ws][S:]·[Ws Vs][S:]ᵀ
  const g = new GraphBuilder(`ts_mat_${S}`);
  g.input('A', 'float64', ['N', 'N']);
  g.input('Vs', 'float64', ['N', S]);
  g.input('Ws', 'float64', ['N', S]);
  const BIG = 2 ** 62;
  const s1 = g.constant([S], 'int64', [1]), e1 = g.constant([BIG], 'int64', [1]), ax0 = g.constant([0], 'int64', [1]);
  const s2 = g.constant([S, S], 'int64', [2]), e2 = g.constant([BIG, BIG], 'int64', [2]), ax01 = g.constant([0, 1], 'int64', [2]);
  const C = g.op('Slice', ['A', s2, e2, ax01]);
  const V = g.op('Slice', ['Vs', s1, e1, ax0]);
  const W = g.op('Slice', ['Ws', s1, e1, ax0]);
  const L = g.op('Neg', [g.op('Concat', [V, W], { axis: 1 })]);
  const R = g.op('Concat', [W, V], { axis: 1 });
  g.op('Gemm', [L, R, C], { transB: 1 }, 'Y');
  g.output('Y', 'float64', ['M', 'M']);
  return g.build();
}

// ---------------------------------------------------------------------------------------------
// stage 1

interface Stage1Out { band: Band; q1: BandQ }

class Q1Builder {
  start = new GrowI32(256); rows = new GrowI32(256); nref = new GrowI32(256);
  vOff: number[] = []; tOff: number[] = [];
  v: GrowF64; t: GrowF64;
  constructor(m: number, b: number) { this.v = new GrowF64((m * m) / 2 + m * b); this.t = new GrowF64(m * b + b * b); }
  add(start: number, rows: number, nref: number, V: Float64Array, T: Float64Array): void {
    this.start.push(start); this.rows.push(rows); this.nref.push(nref);
    const ov = this.v.reserve(V.length); this.v.a.set(V, ov); this.vOff.push(ov);
    const ot = this.t.reserve(T.length); this.t.a.set(T, ot); this.tOff.push(ot);
  }
  done(): BandQ {
    return { start: this.start.done(), rows: this.rows.done(), nref: this.nref.done(), vOff: Float64Array.from(this.vOff), tOff: Float64Array.from(this.tOff), v: this.v.done(), t: this.t.done() };
  }
}

/**
 * One panel of width bc at local column c of the current trailing matrix (global offset p):
 * `col` is the CURRENT column block rows c…N−1 (N−c rows × bc, row-major, ld bc). Writes the
 * diagonal block and R into the band, factors the sub-panel, records Q1's factor.
 * Returns V, T (or undefined when nothing is below the band).
 */
function panelStep(col: Float64Array, N: number, c: number, bc: number, p: number, band: Band, q1: Q1Builder): { V: Float64Array; T: Float64Array; nref: number } | undefined {
  for (let i = 0; i < bc; i++) for (let q = 0; q <= i; q++) band.set(p + c + i, p + c + q, col[i * bc + q]);
  const rows = N - c - bc;
  if (rows <= 0) return undefined;
  const P = new Float64Array(rows * bc);
  for (let i = 0; i < rows; i++) for (let q = 0; q < bc; q++) P[q * rows + i] = col[(bc + i) * bc + q];
  const { V, T, nref } = panelQR(P, rows, bc);
  for (let q = 0; q < bc; q++) for (let i = 0; i <= Math.min(q, rows - 1); i++) band.set(p + c + bc + i, p + c + q, P[q * rows + i]);
  q1.add(p + c + bc, rows, nref, V, T);
  return { V, T, nref };
}

/** Dense right-looking reduction of a small trailing matrix A (N×N, row-major, consumed) in TS. */
function stage1TS(A: Float64Array, N: number, p: number, b: number, band: Band, q1: Q1Builder): void {
  for (let c = 0; c < N; c += b) {
    const bc = Math.min(b, N - c);
    const col = new Float64Array((N - c) * bc);
    for (let i = c; i < N; i++) for (let q = 0; q < bc; q++) col[(i - c) * bc + q] = A[i * N + c + q];
    const f = panelStep(col, N, c, bc, p, band, q1);
    if (!f) break;
    const r0 = c + bc, rows = N - r0, { V, T, nref } = f;
    const Z = new Float64Array(rows * nref);
    timesT(V, T, rows, nref, Z, nref, 0);
    const X = new Float64Array(rows * nref);
    for (let i = 0; i < rows; i++) {
      const ao = (r0 + i) * N + r0;
      for (let j = 0; j < rows; j++) {
        const a = A[ao + j];
        if (a === 0) continue;
        const zo = j * nref, xo = i * nref;
        for (let q = 0; q < nref; q++) X[xo + q] += a * Z[zo + q];
      }
    }
    correction(V, T, X, rows, nref, nref);
    for (let i = 0; i < rows; i++) {
      const ao = (r0 + i) * N + r0, vi = i * nref;
      for (let j = 0; j < rows; j++) {
        let s = 0;
        const vj = j * nref;
        for (let q = 0; q < nref; q++) s += X[vi + q] * V[vj + q] + V[vi + q] * X[vj + q];
        A[ao + j] -= s;
      }
    }
  }
}

async function stage1(engine: Engine, G: Float64Array, m: number, b: number, S: number, token?: Cancel, onProgress?: (f: number) => void): Promise<Stage1Out> {
  const band = new Band(m, b);
  const q1 = new Q1Builder(m, b);
  let A = G, N = m, p = 0;
  const tailN = Math.max(S + 2 * b, 192);
  if (N > tailN) {
    const colsS = await engine.session(`ts_cols_${S}_${b}`, () => colsGraph(S, b));
    const xS = await engine.session(`ts_x_${S}_${b}`, () => xGraph(S, b));
    const matS = await engine.session(`ts_mat_${S}`, () => matGraph(S));
    const c0 = new BigInt64Array(1), c1 = new BigInt64Array(1);
    const VsBuf = new Float64Array(N * S), WsBuf = new Float64Array(N * S), VpBuf = new Float64Array(N * b);
    while (N > tailN) {
      if (token?.cancelled || token?.isCancellationRequested) throw new Error('cancelled');
      const Vs = VsBuf.subarray(0, N * S), Ws = WsBuf.subarray(0, N * S), Vp = VpBuf.subarray(0, N * b);
      Vs.fill(0); Ws.fill(0);
      const tA = engine.tensor('float64', A, [N, N]);
      const tV = engine.tensor('float64', Vs, [N, S]), tW = engine.tensor('float64', Ws, [N, S]), tVp = engine.tensor('float64', Vp, [N, b]);
      const tc0 = engine.tensor('int64', c0, [1]), tc1 = engine.tensor('int64', c1, [1]);
      for (let c = 0; c < S; c += b) {
        c0[0] = BigInt(c); c1[0] = BigInt(c + b);
        let t0 = now();
        const Ycols = (await engine.run(colsS, { A: tA, Vs: tV, Ws: tW, c0: tc0, c1: tc1 })).Y.data as Float64Array;
        twoStageProfile.cols += now() - t0;
        const f = panelStep(Ycols.subarray(c * b), N, c, b, p, band, q1)!;
        const r0 = c + b, rows = N - r0, { V, T } = f; // rows > 2b here, so nref = b
        Vp.fill(0, 0, r0 * b);
        Vp.set(V, r0 * b);
        t0 = now();
        const Wr = ((await engine.run(xS, { A: tA, Vs: tV, Ws: tW, V: tVp, T: engine.tensor('float64', T, [b, b]) })).Y.data as Float64Array).subarray(r0 * b);
        twoStageProfile.x += now() - t0;
        for (let i = 0; i < rows; i++) {
          const so = (r0 + i) * S + c, vo = i * b;
          for (let q = 0; q < b; q++) { Vs[so + q] = V[vo + q]; Ws[so + q] = Wr[vo + q]; }
        }
      }
      const t0 = now();
      A = (await engine.run(matS, { A: tA, Vs: tV, Ws: tW })).Y.data as Float64Array;
      twoStageProfile.mat += now() - t0;
      p += S;
      N -= S;
      onProgress?.(p / m);
      await new Promise<void>((res) => setImmediate(res));
    }
  }
  stage1TS(A.length === N * N ? A : A.slice(0, N * N), N, p, b, band, q1);
  return { band, q1: q1.done() };
}

// ---------------------------------------------------------------------------------------------
// stage 2: bulge chasing (TS, fp64)

interface Cancel { cancelled?: boolean; isCancellationRequested?: boolean }

/** Band → tridiagonal; records the reflectors when wantQ. The band is consumed. */
export function bulgeChase(band: { a: Float64Array; ld: number; m: number; b: number }, wantQ: boolean): { d: Float64Array; e: Float64Array; q2?: ChaseQ } {
  const { a, ld, m, b } = band;
  const at = (r: number, c: number): number => c * ld + r - c; // r ≥ c
  const pos = new GrowI32(wantQ ? (m * m) / (2 * b) + m : 16), len = new GrowI32(wantQ ? (m * m) / (2 * b) + m : 16);
  const offs: GrowF64 = new GrowF64(wantQ ? (m * m) / (2 * b) + m : 16);
  const vs = new GrowF64(wantQ ? (m * m) / 2 + m * b : 16), taus = new GrowF64(wantQ ? (m * m) / (2 * b) + m : 16);
  const v = new Float64Array(b + 1), w = new Float64Array(2 * b + 2);
  const record = (p0: number, l: number, t: number): void => {
    if (!wantQ || t === 0) return;
    pos.push(p0); len.push(l);
    offs.a[offs.reserve(1)] = vs.n;
    const o = vs.reserve(l);
    vs.a.set(v.subarray(0, l), o);
    taus.a[taus.reserve(1)] = t;
  };
  /** Householder from x = column c, rows r0…r0+l−1; v, returns τ; column becomes β e1. */
  const house = (c: number, r0: number, l: number): number => {
    const base = at(r0, c);
    const alpha = a[base];
    let ss = 0;
    for (let i = 1; i < l; i++) ss += a[base + i] * a[base + i];
    v[0] = 1;
    if (ss === 0) { for (let i = 1; i < l; i++) v[i] = 0; return 0; }
    const beta = -(alpha >= 0 ? 1 : -1) * Math.sqrt(alpha * alpha + ss);
    const sc = 1 / (alpha - beta);
    for (let i = 1; i < l; i++) { v[i] = a[base + i] * sc; a[base + i] = 0; }
    a[base] = beta;
    return (beta - alpha) / beta;
  };
  /** Symmetric two-sided H·D·H on the diagonal block rows/cols s…s+l−1 (lower part stored). */
  const symApply = (s: number, l: number, t: number): void => {
    if (t === 0) return;
    // w = t·D·v
    for (let i = 0; i < l; i++) w[i] = 0;
    for (let c = 0; c < l; c++) {
      const cb = (s + c) * ld, vc = v[c];
      let acc = a[cb] * vc; // diagonal
      for (let r = c + 1; r < l; r++) {
        const x = a[cb + r - c];
        acc += x * v[r];
        w[r] += x * vc;
      }
      w[c] += acc;
    }
    let wv = 0;
    for (let i = 0; i < l; i++) { w[i] *= t; wv += w[i] * v[i]; }
    const al = -0.5 * t * wv;
    for (let i = 0; i < l; i++) w[i] += al * v[i];
    for (let c = 0; c < l; c++) {
      const cb = (s + c) * ld, vc = v[c], wc = w[c];
      for (let r = c; r < l; r++) a[cb + r - c] -= v[r] * wc + w[r] * vc;
    }
  };
  /** Block rows j1…j1+lm−1, cols s…s+ln−1 ← block·H (H on cols, reflector v of length ln). */
  const rightApply = (j1: number, lm: number, s: number, ln: number, t: number): void => {
    if (t === 0) return;
    for (let i = 0; i < lm; i++) w[i] = 0;
    for (let c = 0; c < ln; c++) {
      const vc = v[c];
      if (vc === 0) continue;
      const cb = (s + c) * ld + j1 - (s + c);
      for (let i = 0; i < lm; i++) w[i] += a[cb + i] * vc;
    }
    for (let c = 0; c < ln; c++) {
      const tv = t * v[c];
      if (tv === 0) continue;
      const cb = (s + c) * ld + j1 - (s + c);
      for (let i = 0; i < lm; i++) a[cb + i] -= w[i] * tv;
    }
  };
  /** Block rows j1…j1+lm−1, cols s…s+ln−1 ← H·block (H on rows, reflector v of length lm). */
  const leftApply = (j1: number, lm: number, s: number, ln: number, t: number): void => {
    if (t === 0) return;
    for (let c = 0; c < ln; c++) {
      const cb = (s + c) * ld + j1 - (s + c);
      let acc = 0;
      for (let i = 0; i < lm; i++) acc += v[i] * a[cb + i];
      acc *= t;
      for (let i = 0; i < lm; i++) a[cb + i] -= acc * v[i];
    }
  };
  for (let j = 0; j < m - 2; j++) {
    let st = j + 1, ed = Math.min(j + b, m - 1);
    let l = ed - st + 1;
    let t = house(j, st, l);
    record(st, l, t);
    symApply(st, l, t);
    for (;;) {
      const j1 = ed + 1, j2 = Math.min(ed + b, m - 1);
      if (j1 > j2) break;
      const lm = j2 - j1 + 1, ln = ed - st + 1;
      rightApply(j1, lm, st, ln, t);
      t = house(st, j1, lm);
      record(j1, lm, t);
      if (ln > 1) leftApply(j1, lm, st + 1, ln - 1, t);
      symApply(j1, lm, t);
      st = j1; ed = j2; l = lm;
    }
  }
  const d = new Float64Array(m), e = new Float64Array(m);
  for (let i = 0; i < m; i++) { d[i] = a[i * ld]; if (i < m - 1) e[i] = a[i * ld + 1]; }
  return { d, e, q2: wantQ ? { pos: pos.done(), len: len.done(), off: offs.done(), v: vs.done(), tau: taus.done() } : undefined };
}

// ---------------------------------------------------------------------------------------------
// driver and Q application

/**
 * G (m×m fp64 symmetric, consumed) = Q·T·Qᵀ. wantQ = false skips recording Q2 (eigenvalues only;
 * Q1 is still returned since it costs nothing extra).
 */
export async function tridiagonalizeTwoStage(engine: Engine, G: Float64Array, m: number, opts: { b?: number; S?: number; wantQ?: boolean; token?: Cancel; onProgress?: (f: number) => void } = {}): Promise<TwoStage> {
  if (G.length !== m * m) throw new Error(`tridiagonalizeTwoStage: ${G.length} values for ${m}×${m}`);
  const b = Math.max(2, Math.min(opts.b ?? DEFAULT_BAND, Math.max(2, m - 1)));
  const S = Math.max(b, Math.floor((opts.S ?? DEFAULT_SUPER) / b) * b);
  let t0 = now();
  Object.assign(twoStageProfile, { cols: 0, x: 0, mat: 0 });
  const { band, q1 } = await stage1(engine, G, m, b, S, opts.token, (f) => opts.onProgress?.(0.8 * f));
  twoStageProfile.band = now() - t0;
  twoStageProfile.bandOrt = twoStageProfile.cols + twoStageProfile.x + twoStageProfile.mat;
  t0 = now();
  const { d, e, q2 } = bulgeChase(band, opts.wantQ !== false);
  twoStageProfile.chase = now() - t0;
  opts.onProgress?.(1);
  return { m, b, d, e, q1, q2 };
}

/*
 * Applying Q = Q1·Q2 to an m×k block (k = 2r = 32 tuned columns in the intruder route) is
 * ≈ 4·m²·k flops of fp64 TypeScript (2 GFLOP at m = 4096). The kernels below are register-blocked
 * (2 reflectors × 4 columns in s = VᵀX, 2 rows × 4 columns in X −= V·U, 4 columns per chase
 * reflector) with the row loop in L1-sized chunks: each X element loaded feeds several
 * multiply-adds instead of one load + one store per multiply-add. Same arithmetic as the plain
 * loops up to summation order.
 */
const ROW_CHUNK = 128;

/** s (nref×k) = V[rows×nref]ᵀ · X[start:start+rows, :k]. */
function panelVtX(V: Float64Array, vo: number, nref: number, rows: number, X: Float64Array, xo0: number, k: number, s: Float64Array): void {
  s.fill(0, 0, nref * k);
  const k4 = k - (k % 4);
  for (let i0 = 0; i0 < rows; i0 += ROW_CHUNK) {
    const i1 = Math.min(rows, i0 + ROW_CHUNK);
    let a = 0;
    for (; a + 1 < nref; a += 2) {
      const so0 = a * k, so1 = so0 + k;
      for (let q = 0; q < k4; q += 4) {
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        for (let i = i0; i < i1; i++) {
          const vr = vo + i * nref + a, xo = xo0 + i * k + q;
          const v0 = V[vr], v1 = V[vr + 1];
          const x0 = X[xo], x1 = X[xo + 1], x2 = X[xo + 2], x3 = X[xo + 3];
          c00 += v0 * x0; c01 += v0 * x1; c02 += v0 * x2; c03 += v0 * x3;
          c10 += v1 * x0; c11 += v1 * x1; c12 += v1 * x2; c13 += v1 * x3;
        }
        s[so0 + q] += c00; s[so0 + q + 1] += c01; s[so0 + q + 2] += c02; s[so0 + q + 3] += c03;
        s[so1 + q] += c10; s[so1 + q + 1] += c11; s[so1 + q + 2] += c12; s[so1 + q + 3] += c13;
      }
      for (let q = k4; q < k; q++) {
        let c0 = 0, c1 = 0;
        for (let i = i0; i < i1; i++) { const x = X[xo0 + i * k + q], vr = vo + i * nref + a; c0 += V[vr] * x; c1 += V[vr + 1] * x; }
        s[so0 + q] += c0; s[so1 + q] += c1;
      }
    }
    for (; a < nref; a++) {
      const so = a * k;
      for (let q = 0; q < k; q++) {
        let c = 0;
        for (let i = i0; i < i1; i++) c += V[vo + i * nref + a] * X[xo0 + i * k + q];
        s[so + q] += c;
      }
    }
  }
}

/** X[start:start+rows, :k] −= V[rows×nref] · U (nref×k). */
function panelXminusVU(V: Float64Array, vo: number, nref: number, rows: number, X: Float64Array, xo0: number, k: number, U: Float64Array): void {
  const k4 = k - (k % 4);
  let i = 0;
  for (; i + 1 < rows; i += 2) {
    const vr0 = vo + i * nref, vr1 = vr0 + nref, xa = xo0 + i * k, xb = xa + k;
    for (let q = 0; q < k4; q += 4) {
      let a0 = X[xa + q], a1 = X[xa + q + 1], a2 = X[xa + q + 2], a3 = X[xa + q + 3];
      let b0 = X[xb + q], b1 = X[xb + q + 1], b2 = X[xb + q + 2], b3 = X[xb + q + 3];
      for (let c = 0; c < nref; c++) {
        const u = c * k + q;
        const u0 = U[u], u1 = U[u + 1], u2 = U[u + 2], u3 = U[u + 3];
        const va = V[vr0 + c], vb = V[vr1 + c];
        a0 -= va * u0; a1 -= va * u1; a2 -= va * u2; a3 -= va * u3;
        b0 -= vb * u0; b1 -= vb * u1; b2 -= vb * u2; b3 -= vb * u3;
      }
      X[xa + q] = a0; X[xa + q + 1] = a1; X[xa + q + 2] = a2; X[xa + q + 3] = a3;
      X[xb + q] = b0; X[xb + q + 1] = b1; X[xb + q + 2] = b2; X[xb + q + 3] = b3;
    }
    for (let q = k4; q < k; q++) {
      let a0 = X[xa + q], b0 = X[xb + q];
      for (let c = 0; c < nref; c++) { const u = U[c * k + q]; a0 -= V[vr0 + c] * u; b0 -= V[vr1 + c] * u; }
      X[xa + q] = a0; X[xb + q] = b0;
    }
  }
  for (; i < rows; i++) {
    const vr = vo + i * nref, xa = xo0 + i * k;
    for (let q = 0; q < k; q++) {
      let a0 = X[xa + q];
      for (let c = 0; c < nref; c++) a0 -= V[vr + c] * U[c * k + q];
      X[xa + q] = a0;
    }
  }
}

function applyPanel(q1: BandQ, j: number, X: Float64Array, k: number, transpose: boolean, s: Float64Array): void {
  const start = q1.start[j], rows = q1.rows[j], nref = q1.nref[j];
  const vo = q1.vOff[j], to = q1.tOff[j];
  const V = q1.v, T = q1.t;
  // s = Vᵀ·X[start:] (nref×k)
  panelVtX(V, vo, nref, rows, X, start * k, k, s);
  // u = T·s or Tᵀ·s (T upper triangular)
  const u = s.subarray(nref * k, 2 * nref * k);
  u.fill(0);
  for (let a = 0; a < nref; a++) {
    const uo = a * k;
    if (!transpose) {
      for (let c = a; c < nref; c++) { const tac = T[to + a * nref + c]; if (tac === 0) continue; const so = c * k; for (let q = 0; q < k; q++) u[uo + q] += tac * s[so + q]; }
    } else {
      for (let c = 0; c <= a; c++) { const tca = T[to + c * nref + a]; if (tca === 0) continue; const so = c * k; for (let q = 0; q < k; q++) u[uo + q] += tca * s[so + q]; }
    }
  }
  panelXminusVU(V, vo, nref, rows, X, start * k, k, u);
}

function applyChase(q2: ChaseQ, i: number, X: Float64Array, k: number, s: Float64Array): void {
  const p0 = q2.pos[i], l = q2.len[i], o = q2.off[i], t = q2.tau[i], v = q2.v;
  const k4 = k - (k % 4);
  const x0 = p0 * k;
  for (let q = 0; q < k4; q += 4) {
    let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (let r = 0; r < l; r++) { const vr = v[o + r], xo = x0 + r * k + q; c0 += vr * X[xo]; c1 += vr * X[xo + 1]; c2 += vr * X[xo + 2]; c3 += vr * X[xo + 3]; }
    c0 *= t; c1 *= t; c2 *= t; c3 *= t;
    for (let r = 0; r < l; r++) { const vr = v[o + r], xo = x0 + r * k + q; X[xo] -= vr * c0; X[xo + 1] -= vr * c1; X[xo + 2] -= vr * c2; X[xo + 3] -= vr * c3; }
  }
  for (let q = k4; q < k; q++) {
    let c = 0;
    for (let r = 0; r < l; r++) c += v[o + r] * X[x0 + r * k + q];
    c *= t;
    for (let r = 0; r < l; r++) X[x0 + r * k + q] -= v[o + r] * c;
  }
  void s;
}

/** X (m×k row-major, in place) ← Qᵀ·X. */
export function applyTwoStageQt(ts: TwoStage, X: Float64Array, k: number): Float64Array {
  if (!ts.q2) throw new Error('applyTwoStageQt: Q2 was not recorded (wantQ: false)');
  const s = new Float64Array(2 * ts.b * k + k);
  for (let j = 0; j < ts.q1.start.length; j++) applyPanel(ts.q1, j, X, k, true, s);
  for (let i = 0; i < ts.q2.pos.length; i++) applyChase(ts.q2, i, X, k, s);
  return X;
}

/** X (m×k row-major, in place) ← Q·X. */
export function applyTwoStageQ(ts: TwoStage, X: Float64Array, k: number): Float64Array {
  if (!ts.q2) throw new Error('applyTwoStageQ: Q2 was not recorded (wantQ: false)');
  const s = new Float64Array(2 * ts.b * k + k);
  for (let i = ts.q2.pos.length - 1; i >= 0; i--) applyChase(ts.q2, i, X, k, s);
  for (let j = ts.q1.start.length - 1; j >= 0; j--) applyPanel(ts.q1, j, X, k, false, s);
  return X;
}
