/**
 * Exact base projector for intruder dimensions on large sides (m > 1024), without forming U0.
 *
 * We need C = U0ᵀ·Y for k ≪ m vectors Y, where U0 = all left singular vectors of W0 (m×n).
 *   1. G = W0·W0ᵀ (m×m, fp64 Gram, onnxruntime).
 *   2. G = Q·T·Qᵀ by the TWO-STAGE reduction of twostage.ts (exactBaseProjector): band form by
 *      blocked Householder QR with every O(m³) product in ORT (BLAS-3, lazy updates within a
 *      superblock, small outputs), then bulge chasing band → tridiagonal in fp64 TS, O(m²·b).
 *      Q = Q1·Q2 is kept as its reflectors and applied to m×k blocks only (applyQ/applyQt).
 *      `tridiagonalize` below is the earlier one-stage blocked dsytrd (BLAS-2: one ORT symmetric
 *      matrix–vector product per column, memory-bound), kept as an independent cross-check.
 *   3. T = Z·Λ·Zᵀ by implicit QL (JAMA tql2) where, instead of accumulating Z (O(m³)), every
 *      Givens rotation is applied to the rows of X = QᵀY (m×k): this yields Zᵀ·X = U0ᵀ·Y directly
 *      in O(m²·k), backward stable, with no cluster/reorthogonalisation issue (unlike inverse
 *      iteration: on flat spectra, e.g. Marchenko–Pastur bulks, dstein-style clusters would span
 *      thousands of eigenvalues and reorthogonalisation would cost O(m³)).
 *   4. Cache (DecompCache): Q1's panels (V, T), Q2's reflectors, (d, e) of T and λ: ≈ m² + O(m)
 *      doubles (≈ 135 MB for m = 4096; the eigen-decomposition itself is never formed). A cached call costs QᵀY (O(m²k), TS) + the QL sweep with rotations on k vectors.
 *
 * σ(W0) = √λ(G) comes out of the same QL (values only) as a by-product.
 * Accuracy: eigenvectors of the Gram have absolute error ≈ ε·σ₁²/gap(λ); ample for max|cos|.
 */
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';
import { batchedGram, matmul64 } from '../engine/products';
import type { DecompCache, CacheKey } from './cache';
import { tridiagQL } from '../linalg/eigen';
import { applyTwoStageQ, applyTwoStageQt, tridiagonalizeTwoStage, DEFAULT_BAND, type TwoStage } from './twostage';

export { twoStageProfile } from './twostage';

export { tridiagQL };

export const DEFAULT_NB = 32;
/** Seconds spent in the ORT calls of the last tridiagonalisations (diagnostics). */
export const profile = { symv: 0, update: 0 };
/** Below this trailing size the reduction finishes in TS (ORT call overhead dominates). */
const TAIL = 160;

// ---------------------------------------------------------------------------------------------
// graphs

function symvGraph(nb: number): Uint8Array {
  const g = new GraphBuilder(`tri_symv_${nb}`);
  g.input('A', 'float64', ['N', 'N']);
  g.input('v', 'float64', ['N', 1]);
  g.input('vT', 'float64', [1, 'N']);
  g.input('V', 'float64', ['N', nb]);
  g.input('W', 'float64', ['N', nb]);
  g.input('idx', 'int64', [1]);
  g.input('vr', 'float64', [nb, 1]);
  g.input('wr', 'float64', [nb, 1]);
  const shp = g.constant([-1, 1], 'int64', [2]);
  const Av = g.op('MatMul', ['A', 'v']);
  const a1 = g.op('Reshape', [g.op('MatMul', ['vT', 'W']), shp]);
  const a2 = g.op('Reshape', [g.op('MatMul', ['vT', 'V']), shp]);
  g.op('Sub', [g.op('Sub', [Av, g.op('MatMul', ['V', a1])]), g.op('MatMul', ['W', a2])], {}, 'y');
  const row = g.op('Reshape', [g.op('Gather', ['A', 'idx'], { axis: 0 }), shp]);
  g.op('Sub', [g.op('Sub', [row, g.op('MatMul', ['V', 'wr'])]), g.op('MatMul', ['W', 'vr'])], {}, 'row');
  g.output('y', 'float64', ['N', 1]);
  g.output('row', 'float64', ['N', 1]);
  return g.build();
}

function updateGraph(nb: number): Uint8Array {
  // A[nb:, nb:] − VW[nb:, :]·WVt[:, nb:]   (VW = [V W], WVt = [W V]ᵀ)
  const g = new GraphBuilder(`tri_update_${nb}`);
  g.input('A', 'float64', ['N', 'N']);
  g.input('VW', 'float64', ['N', 2 * nb]);
  g.input('WVt', 'float64', [2 * nb, 'N']);
  const BIG = 2 ** 62;
  const s2 = g.constant([nb, nb], 'int64', [2]), e2 = g.constant([BIG, BIG], 'int64', [2]), ax2 = g.constant([0, 1], 'int64', [2]);
  const s1 = g.constant([nb], 'int64', [1]), e1 = g.constant([BIG], 'int64', [1]);
  const a0 = g.constant([0], 'int64', [1]), a1 = g.constant([1], 'int64', [1]);
  const As = g.op('Slice', ['A', s2, e2, ax2]);
  const P = g.op('Slice', ['VW', s1, e1, a0]);
  const R = g.op('Slice', ['WVt', s1, e1, a1]);
  g.op('Sub', [As, g.op('MatMul', [P, R])], {}, 'Y');
  g.output('Y', 'float64', ['M', 'M']);
  return g.build();
}

// ---------------------------------------------------------------------------------------------
// tridiagonalisation

/**
 * G = Q·T·Qᵀ. One-stage (tridiagonalize): Q = H_0·H_1⋯H_{m−2}, H_c = I − τ_c·v_c·v_cᵀ, v_c zero
 * above row c+1, v_c[c+1] = 1 (tau, refl). Two-stage (exactBaseProjector): Q = Q1·Q2 in `two`
 * (twostage.ts). applyQ / applyQt serve both.
 */
export interface Tridiag {
  m: number;
  /** Diagonal (m) and sub-diagonal (m, e[c] = T[c+1, c], e[m−1] = 0) of T. */
  d: Float64Array;
  e: Float64Array;
  tau?: Float64Array;
  /** Packed reflectors: v_c (rows c+1..m−1, m−c−1 values incl. the leading 1) at reflOffset(m, c). */
  refl?: Float64Array;
  two?: TwoStage;
}

export function reflOffset(m: number, c: number): number {
  return c * (m - 1) - (c * (c - 1)) / 2;
}

/** dlarfg on x (in place): returns [beta, tau]; x becomes v with x[0] = 1. */
function householder(x: Float64Array): [number, number] {
  const alpha = x[0];
  let ss = 0;
  for (let i = 1; i < x.length; i++) ss += x[i] * x[i];
  if (ss === 0) {
    x[0] = 1;
    return [alpha, 0];
  }
  const beta = -(alpha >= 0 ? 1 : -1) * Math.sqrt(alpha * alpha + ss);
  const tau = (beta - alpha) / beta;
  const sc = 1 / (alpha - beta);
  for (let i = 1; i < x.length; i++) x[i] *= sc;
  x[0] = 1;
  return [beta, tau];
}

/** Unblocked TS reduction of the trailing N×N block A (row-major, symmetric) at global offset p. */
function tailTridiagTS(A: Float64Array, N: number, p: number, out: Required<Omit<Tridiag, 'two'>>): void {
  const { m, d, e, tau, refl } = out;
  const y = new Float64Array(N);
  for (let c = 0; c < N - 1; c++) {
    d[p + c] = A[c * N + c];
    const len = N - c - 1;
    const x = new Float64Array(len);
    for (let i = 0; i < len; i++) x[i] = A[(c + 1 + i) * N + c];
    const [beta, t] = householder(x);
    e[p + c] = beta;
    tau[p + c] = t;
    refl.set(x, reflOffset(m, p + c));
    if (t === 0) continue;
    // y = t·A22·v; w = y − ½t(yᵀv)v; A22 −= v wᵀ + w vᵀ
    const o = c + 1;
    let yv = 0;
    for (let i = 0; i < len; i++) {
      let s = 0;
      const row = (o + i) * N + o;
      for (let j = 0; j < len; j++) s += A[row + j] * x[j];
      y[i] = t * s;
      yv += y[i] * x[i];
    }
    const al = -0.5 * t * yv;
    for (let i = 0; i < len; i++) y[i] += al * x[i];
    for (let i = 0; i < len; i++) {
      const row = (o + i) * N + o, xi = x[i], yi = y[i];
      for (let j = 0; j < len; j++) A[row + j] -= xi * y[j] + yi * x[j];
    }
  }
  d[p + N - 1] = A[(N - 1) * N + N - 1];
  e[p + N - 1] = 0;
}

/**
 * Blocked Householder tridiagonalisation of the symmetric m×m fp64 matrix G (consumed: its buffer
 * is handed to ORT and dropped). O(m³) in ORT, O(m²·nb) in TS.
 */
export async function tridiagonalize(engine: Engine, G: Float64Array, m: number, opts: { nb?: number; onProgress?: (done: number) => void; token?: { cancelled?: boolean; isCancellationRequested?: boolean } } = {}): Promise<Tridiag> {
  if (G.length !== m * m) throw new Error(`tridiagonalize: ${G.length} values for ${m}×${m}`);
  const nb = opts.nb ?? DEFAULT_NB;
  const out = { m, d: new Float64Array(m), e: new Float64Array(m), tau: new Float64Array(m), refl: new Float64Array((m * (m - 1)) / 2) };
  let A = G, N = m, p = 0;
  if (N > TAIL && N > 2 * nb) {
    const symv = await engine.session(`tri_symv_${nb}`, () => symvGraph(nb));
    const upd = await engine.session(`tri_update_${nb}`, () => updateGraph(nb));
    const idx = new BigInt64Array(1);
    const vr = new Float64Array(nb), wr = new Float64Array(nb);
    while (N > TAIL && N > 2 * nb) {
      if (opts.token?.cancelled || opts.token?.isCancellationRequested) throw new Error('cancelled');
      const V = new Float64Array(N * nb), W = new Float64Array(N * nb);
      const vfull = new Float64Array(N);
      let row = A.slice(0, N); // column 0 of the panel (= row 0, symmetric)
      const tA = engine.tensor('float64', A, [N, N]);
      const tV = engine.tensor('float64', V, [N, nb]), tW = engine.tensor('float64', W, [N, nb]);
      const tv = engine.tensor('float64', vfull, [N, 1]), tvT = engine.tensor('float64', vfull, [1, N]);
      const tidx = engine.tensor('int64', idx, [1]);
      const tvr = engine.tensor('float64', vr, [nb, 1]), twr = engine.tensor('float64', wr, [nb, 1]);
      for (let j = 0; j < nb; j++) {
        const c = j, gc = p + c, len = N - c - 1;
        out.d[gc] = row[c];
        const x = row.slice(c + 1);
        const [beta, t] = householder(x);
        out.e[gc] = beta;
        out.tau[gc] = t;
        out.refl.set(x, reflOffset(m, gc));
        vfull.fill(0);
        vfull.set(x, c + 1);
        for (let i = 0; i < len; i++) V[(c + 1 + i) * nb + j] = x[i];
        const nxt = Math.min(c + 1, N - 1);
        idx[0] = BigInt(nxt);
        for (let q = 0; q < nb; q++) { vr[q] = V[nxt * nb + q]; wr[q] = W[nxt * nb + q]; }
        const tp = now();
        const res = await engine.run(symv, { A: tA, v: tv, vT: tvT, V: tV, W: tW, idx: tidx, vr: tvr, wr: twr });
        const y = res.y.data as Float64Array;
        profile.symv += now() - tp;
        const rnext = res.row.data as Float64Array;
        // w = t·y (rows > c); w += −½ t (wᵀv) v
        let wv = 0;
        for (let i = c + 1; i < N; i++) wv += t * y[i] * vfull[i];
        const al = -0.5 * t * wv;
        for (let i = c + 1; i < N; i++) W[i * nb + j] = t * y[i] + al * vfull[i];
        // next column with this reflector's term
        if (j + 1 < nb) {
          const vn = V[(c + 1) * nb + j], wn = W[(c + 1) * nb + j];
          row = new Float64Array(N);
          for (let i = 0; i < N; i++) row[i] = rnext[i] - (V[i * nb + j] * wn + W[i * nb + j] * vn);
        }
      }
      // rank-2nb update of the trailing matrix
      const VW = new Float64Array(N * 2 * nb), WVt = new Float64Array(2 * nb * N);
      for (let i = 0; i < N; i++) {
        for (let q = 0; q < nb; q++) {
          const vq = V[i * nb + q], wq = W[i * nb + q];
          VW[i * 2 * nb + q] = vq;
          VW[i * 2 * nb + nb + q] = wq;
          WVt[q * N + i] = wq;
          WVt[(nb + q) * N + i] = vq;
        }
      }
      const tu = now();
      const r = await engine.run(upd, { A: tA, VW: engine.tensor('float64', VW, [N, 2 * nb]), WVt: engine.tensor('float64', WVt, [2 * nb, N]) });
      A = r.Y.data as Float64Array;
      profile.update += now() - tu;
      p += nb;
      N -= nb;
      opts.onProgress?.(p / m);
      await new Promise<void>((res) => setImmediate(res));
    }
  }
  tailTridiagTS(A.length === N * N ? A : A.slice(0, N * N), N, p, out);
  out.tau[m - 1] = 0;
  opts.onProgress?.(1);
  return out;
}

/** X ← (I − τ_c v_c v_cᵀ)·X for reflector c (rows c+1…m−1 of the m×k row-major X); `s` is k scratch. */
function applyReflector(t: Tridiag, c: number, X: Float64Array, k: number, s: Float64Array): void {
  const tc = t.tau![c];
  if (tc === 0) return;
  const { m } = t, refl = t.refl!;
  const off = reflOffset(m, c), len = m - c - 1, r0 = (c + 1) * k;
  s.fill(0);
  for (let i = 0; i < len; i++) {
    const vi = refl[off + i], o = r0 + i * k;
    for (let q = 0; q < k; q++) s[q] += vi * X[o + q];
  }
  for (let q = 0; q < k; q++) s[q] *= tc;
  for (let i = 0; i < len; i++) {
    const vi = refl[off + i], o = r0 + i * k;
    for (let q = 0; q < k; q++) X[o + q] -= s[q] * vi;
  }
}

/** X (m×k row-major, in place) ← Qᵀ·X (Q = H_0·H_1⋯H_{m−2}, so the reflectors apply in order). */
export function applyQt(t: Tridiag, X: Float64Array, k: number): Float64Array {
  if (t.two) return applyTwoStageQt(t.two, X, k);
  const s = new Float64Array(k);
  for (let c = 0; c < t.m - 1; c++) applyReflector(t, c, X, k, s);
  return X;
}

/** X (m×k row-major, in place) ← Q·X (the reflectors in reverse order). */
export function applyQ(t: Tridiag, X: Float64Array, k: number): Float64Array {
  if (t.two) return applyTwoStageQ(t.two, X, k);
  const s = new Float64Array(k);
  for (let c = t.m - 2; c >= 0; c--) applyReflector(t, c, X, k, s);
  return X;
}

// ---------------------------------------------------------------------------------------------
// tridiagonal eigen tools


// ---------------------------------------------------------------------------------------------
// projector

export interface BaseProjector {
  m: number;
  n: number;
  /** All min(m, n) singular values of W0, descending. */
  sigma: Float64Array;
  /** Eigenvalues of W0·W0ᵀ (m, descending). */
  lambda: Float64Array;
  tri: Tridiag;
  cached: boolean;
  /** C = U0ᵀ·Y: Y m×k row-major → min(m, n)×k (rows = base vectors by σ descending). */
  project(Y: Float64Array, k: number): Float64Array;
  /** Same for X already in the Q basis (X = QᵀY); X is consumed. */
  projectQ(X: Float64Array, k: number): Float64Array;
  seconds: { gram: number; tridiag: number; eig: number; cacheIO: number };
}

export interface ProjectorOptions {
  cache?: DecompCache;
  /** Identifies W0 in the cache (method is added here). */
  key?: Omit<CacheKey, 'method'>;
  token?: { cancelled?: boolean; isCancellationRequested?: boolean };
  onProgress?: (fraction: number, phase: string) => void;
  /** Half-bandwidth of the two-stage reduction's band form (default twostage.DEFAULT_BAND). */
  nb?: number;
}

const now = (): number => Number(process.hrtime.bigint()) / 1e9;

const I32 = (a: Int32Array): Float64Array => Float64Array.from(a);
/** Flat Float64Array record of a two-stage reduction (the DecompCache format). */
function packTwoStage(t: TwoStage): Record<string, Float64Array> {
  const q2 = t.q2!;
  return {
    d: t.d, e: t.e, b: Float64Array.of(t.b),
    q1start: I32(t.q1.start), q1rows: I32(t.q1.rows), q1nref: I32(t.q1.nref), q1vOff: t.q1.vOff, q1tOff: t.q1.tOff, q1v: t.q1.v, q1t: t.q1.t,
    q2pos: I32(q2.pos), q2len: I32(q2.len), q2off: q2.off, q2v: q2.v, q2tau: q2.tau,
  };
}
function unpackTwoStage(a: Record<string, Float64Array>, m: number): TwoStage {
  const need = ['b', 'q1start', 'q1rows', 'q1nref', 'q1vOff', 'q1tOff', 'q1v', 'q1t', 'q2pos', 'q2len', 'q2off', 'q2v', 'q2tau'];
  for (const k of need) if (!a[k]) throw new Error(`exactBaseProjector: cached decomposition lacks ${k}`);
  const np = a.q1start.length, nr = a.q2pos.length;
  if (a.q1rows.length !== np || a.q1nref.length !== np || a.q1vOff.length !== np || a.q1tOff.length !== np || a.q2len.length !== nr || a.q2off.length !== nr || a.q2tau.length !== nr) {
    throw new Error('exactBaseProjector: cached decomposition is inconsistent');
  }
  for (let j = 0; j < np; j++) {
    const st = a.q1start[j], rows = a.q1rows[j], nref = a.q1nref[j];
    if (!(st >= 0 && rows >= 1 && st + rows <= m && nref >= 1 && a.q1vOff[j] + rows * nref <= a.q1v.length && a.q1tOff[j] + nref * nref <= a.q1t.length)) throw new Error('exactBaseProjector: cached decomposition is inconsistent');
  }
  for (let i = 0; i < nr; i++) {
    const p = a.q2pos[i], l = a.q2len[i];
    if (!(p >= 0 && l >= 1 && p + l <= m && a.q2off[i] + l <= a.q2v.length)) throw new Error('exactBaseProjector: cached decomposition is inconsistent');
  }
  const b = a.b[0];
  return {
    m, b, d: a.d, e: a.e,
    q1: { start: Int32Array.from(a.q1start), rows: Int32Array.from(a.q1rows), nref: Int32Array.from(a.q1nref), vOff: a.q1vOff, tOff: a.q1tOff, v: a.q1v, t: a.q1t },
    q2: { pos: Int32Array.from(a.q2pos), len: Int32Array.from(a.q2len), off: a.q2off, v: a.q2v, tau: a.q2tau },
  };
}

/** Exact U0ᵀ·Y projector of W0 (m×n fp32): see the file comment. */
export async function exactBaseProjector(engine: Engine, W0: Float32Array, m: number, n: number, opts: ProjectorOptions = {}): Promise<BaseProjector> {
  if (W0.length !== m * n) throw new Error(`exactBaseProjector: ${W0.length} values for ${m}×${n}`);
  const seconds = { gram: 0, tridiag: 0, eig: 0, cacheIO: 0 };
  const compute = async (): Promise<{ arrays: Record<string, Float64Array>; meta: Record<string, unknown> }> => {
    let t0 = now();
    opts.onProgress?.(0, 'gram');
    const G = await batchedGram(engine, W0, 1, m, n, 'rows');
    seconds.gram = now() - t0;
    t0 = now();
    const two = await tridiagonalizeTwoStage(engine, G, m, { b: opts.nb, token: opts.token, onProgress: (f) => opts.onProgress?.(f, 'tridiagonalise') });
    seconds.tridiag = now() - t0;
    t0 = now();
    const lambda = tridiagQL(two.d, two.e).values;
    seconds.eig = now() - t0;
    return { arrays: { ...packTwoStage(two), lambda }, meta: { m, n, b: two.b } };
  };
  let entry: { arrays: Record<string, Float64Array>; cached: boolean };
  if (opts.cache && opts.key) {
    const t0 = now();
    entry = await opts.cache.getOrCompute({ ...opts.key, method: `tridiag-twostage-v1-${m}x${n}` }, compute);
    if (entry.cached) seconds.cacheIO = now() - t0;
    else seconds.cacheIO = Math.max(0, now() - t0 - seconds.gram - seconds.tridiag);
  } else entry = { ...(await compute()), cached: false };
  const a = entry.arrays;
  if (a.d?.length !== m || a.lambda?.length !== m) throw new Error('exactBaseProjector: cached decomposition has the wrong size');
  const tri: Tridiag = { m, d: a.d, e: a.e, two: unpackTwoStage(a, m) };
  const lambda = a.lambda;
  const dd = Math.min(m, n);
  const sigma = new Float64Array(dd);
  for (let i = 0; i < dd; i++) sigma[i] = Math.sqrt(Math.max(lambda[i], 0));
  const projectQ = (X: Float64Array, k: number): Float64Array => {
    if (X.length !== m * k) throw new Error(`project: ${X.length} values for ${m}×${k}`);
    const r = tridiagQL(tri.d, tri.e, X, k).X!;
    return dd < m ? r.slice(0, dd * k) : r;
  };
  return {
    m, n, sigma, lambda, tri, cached: entry.cached, seconds, projectQ,
    project: (Y, k) => projectQ(applyQt(tri, Float64Array.from(Y), k), k),
  };
}

// ---------------------------------------------------------------------------------------------
// tuned side: top-k eigenpairs of Qᵀ·(W0+ΔW)(W0+ΔW)ᵀ·Q = T + F·K·Fᵀ by Lanczos (O(m·r) matvec)

/**
 * Top-k eigenpairs of H = T + F·K·Fᵀ (T tridiagonal (d, e), F m×t row-major, K t×t symmetric) by
 * Lanczos with full reorthogonalisation, until every wanted Ritz pair has residual ≤ tol·‖H‖.
 * Returns values (descending) and vectors as COLUMNS of an m×k row-major matrix.
 */
export function lanczosTopK(d: Float64Array, e: Float64Array, F: Float64Array, t: number, K: Float64Array, k: number, opts: { tol?: number; maxSteps?: number; seed?: number } = {}): { values: Float64Array; X: Float64Array; steps: number; residual: number } {
  const m = d.length;
  const tol = opts.tol ?? 1e-12;
  const maxSteps = Math.min(m, opts.maxSteps ?? Math.max(600, 3 * k + 100));
  const Qv: Float64Array[] = [];
  const alpha: number[] = [], beta: number[] = [];
  const ft = new Float64Array(t), kt = new Float64Array(t);
  const matvec = (x: Float64Array, y: Float64Array): void => {
    for (let i = 0; i < m; i++) y[i] = d[i] * x[i] + (i > 0 ? e[i - 1] * x[i - 1] : 0) + (i < m - 1 ? e[i] * x[i + 1] : 0);
    ft.fill(0);
    for (let i = 0; i < m; i++) { const xi = x[i], o = i * t; for (let q = 0; q < t; q++) ft[q] += F[o + q] * xi; }
    for (let a = 0; a < t; a++) { let s = 0; for (let b = 0; b < t; b++) s += K[a * t + b] * ft[b]; kt[a] = s; }
    for (let i = 0; i < m; i++) { let s = 0; const o = i * t; for (let q = 0; q < t; q++) s += F[o + q] * kt[q]; y[i] += s; }
  };
  // deterministic start vector
  let seed = (opts.seed ?? 12345) >>> 0;
  const rnd = (): number => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed / 4294967296 - 0.5; };
  let q = new Float64Array(m);
  let nrm = 0;
  for (let i = 0; i < m; i++) { q[i] = rnd(); nrm += q[i] * q[i]; }
  nrm = Math.sqrt(nrm);
  for (let i = 0; i < m; i++) q[i] /= nrm;
  const w = new Float64Array(m);
  let hnorm = 0, steps = 0, resid = Infinity;
  for (let j = 0; j < maxSteps; j++) {
    Qv.push(q);
    matvec(q, w);
    let a = 0;
    for (let i = 0; i < m; i++) a += w[i] * q[i];
    alpha.push(a);
    for (let i = 0; i < m; i++) w[i] -= a * q[i] + (j > 0 ? beta[j - 1] * Qv[j - 1][i] : 0);
    for (let pass = 0; pass < 2; pass++) {
      for (const u of Qv) {
        let s = 0;
        for (let i = 0; i < m; i++) s += u[i] * w[i];
        for (let i = 0; i < m; i++) w[i] -= s * u[i];
      }
    }
    let b = 0;
    for (let i = 0; i < m; i++) b += w[i] * w[i];
    b = Math.sqrt(b);
    hnorm = Math.max(hnorm, Math.abs(a) + b + (j > 0 ? beta[j - 1] : 0));
    steps = j + 1;
    const check = steps >= Math.min(m, k + 2) && (steps % 10 === 0 || b <= tol * hnorm || steps === maxSteps);
    if (check) {
      const s = steps;
      const el = new Float64Array(s); el[s - 1] = 1;
      const r = tridiagQL(Float64Array.from(alpha), Float64Array.from([...beta, 0]), el, 1);
      resid = 0;
      for (let i = 0; i < Math.min(k, s); i++) resid = Math.max(resid, b * Math.abs(r.X![i]));
      if (resid <= tol * hnorm || b <= tol * hnorm) break;
    }
    if (b <= tol * hnorm) break;
    beta.push(b);
    const qn = new Float64Array(m);
    for (let i = 0; i < m; i++) qn[i] = w[i] / b;
    q = qn;
  }
  const s = steps;
  const aS = Float64Array.from(alpha.slice(0, s)), bS = Float64Array.from([...beta.slice(0, s - 1), 0]);
  const theta = tridiagQL(aS, bS).values;
  const kk = Math.min(k, s);
  const X = new Float64Array(m * kk);
  const prev: Float64Array[] = [];
  for (let c = 0; c < kk; c++) {
    const z = tridiagInverseIteration(aS, bS, theta[c], prev, hnorm);
    prev.push(z);
    for (let j = 0; j < s; j++) {
      const zj = z[j], u = Qv[j];
      if (zj === 0) continue;
      for (let i = 0; i < m; i++) X[i * kk + c] += zj * u[i];
    }
  }
  return { values: theta.slice(0, kk), X, steps, residual: resid / (hnorm || 1) };
}

/**
 * Eigenvector of the tridiagonal (d, e) for the (accurate) eigenvalue lam by inverse iteration
 * (LU with partial pivoting, 3 steps), orthogonalised against `prev` (vectors of the same or nearby
 * eigenvalues; callers pass the earlier vectors of a small set).
 */
export function tridiagInverseIteration(d: Float64Array, e: Float64Array, lam: number, prev: Float64Array[], scale: number): Float64Array {
  const n = d.length;
  const tiny = 2 ** -52 * (scale || 1);
  const U0 = new Float64Array(n), U1 = new Float64Array(n), U2 = new Float64Array(n), L = new Float64Array(n);
  const piv = new Uint8Array(n);
  let wd = d[0] - lam, ws = n > 1 ? e[0] : 0;
  for (let i = 0; i < n - 1; i++) {
    const ci = e[i], ad = d[i + 1] - lam, bn = i + 1 < n - 1 ? e[i + 1] : 0;
    if (Math.abs(ci) > Math.abs(wd)) {
      const l = wd / ci;
      U0[i] = ci; U1[i] = ad; U2[i] = bn; L[i] = l; piv[i] = 1;
      const nd = ws - l * ad, ns = -l * bn;
      wd = nd; ws = ns;
    } else {
      const l = wd === 0 ? 0 : ci / wd;
      U0[i] = wd === 0 ? tiny : wd; U1[i] = ws; U2[i] = 0; L[i] = l; piv[i] = 0;
      wd = ad - l * ws; ws = bn;
    }
  }
  U0[n - 1] = wd === 0 ? tiny : wd;
  for (let i = 0; i < n; i++) if (Math.abs(U0[i]) < tiny) U0[i] = U0[i] < 0 ? -tiny : tiny;
  let x = new Float64Array(n);
  let seed = 987654321;
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; x[i] = 0.5 + seed / 4294967296; }
  for (let it = 0; it < 4; it++) {
    for (const u of prev) {
      let s = 0;
      for (let i = 0; i < n; i++) s += u[i] * x[i];
      for (let i = 0; i < n; i++) x[i] -= s * u[i];
    }
    let nr = 0;
    for (let i = 0; i < n; i++) nr += x[i] * x[i];
    nr = Math.sqrt(nr) || 1;
    for (let i = 0; i < n; i++) x[i] /= nr;
    if (it === 3) break;
    const r = x.slice();
    for (let i = 0; i < n - 1; i++) {
      if (piv[i]) { const t = r[i]; r[i] = r[i + 1]; r[i + 1] = t; }
      r[i + 1] -= L[i] * r[i];
    }
    const y = new Float64Array(n);
    for (let i = n - 1; i >= 0; i--) {
      let s = r[i];
      if (i + 1 < n) s -= U1[i] * y[i + 1];
      if (i + 2 < n) s -= U2[i] * y[i + 2];
      y[i] = s / U0[i];
    }
    x = y;
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// time estimate

let calib: { gemm: number; bw: number; ts: number } | undefined;

/** Quick measurement (~0.2 s): ORT fp64 GEMM rate, ORT matvec bandwidth, TS scalar rate. */
export async function calibrateExactLarge(engine: Engine): Promise<{ gemm: number; bw: number; ts: number }> {
  if (calib) return calib;
  const N = 768;
  const a = new Float64Array(N * N).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  await matmul64(engine, a, N, N, a, N);
  let t0 = now();
  await matmul64(engine, a, N, N, a, N);
  const gemm = (2 * N ** 3) / Math.max(now() - t0, 1e-4);
  const M = 1536;
  const big = new Float64Array(M * M).fill(0.5), v = new Float64Array(M).fill(1);
  await matmul64(engine, big, M, M, v, 1);
  t0 = now();
  for (let r = 0; r < 5; r++) await matmul64(engine, big, M, M, v, 1);
  const bw = (5 * 8 * M * M) / Math.max(now() - t0, 1e-4);
  const x = new Float64Array(4096 * 10).fill(1);
  t0 = now();
  let s = 0;
  for (let r = 0; r < 50; r++) for (let i = 0; i < x.length; i++) { s += x[i] * 1.0000001; x[i] -= 1e-9 * s; }
  const ts = (50 * x.length * 4) / Math.max(now() - t0, 1e-4);
  calib = { gemm, bw, ts };
  return calib;
}

/**
 * Estimated seconds for the exact-large intruder route, from calibrateExactLarge's measurement:
 * cold = Gram (GEMM) + two-stage band stage (≈ 3·m³ fp64 flops of skinny ORT products, at about
 * half the square-GEMM rate, + the panel QRs ≈ 4·b·m² TS flops) + bulge chasing (≈ 6·m²·b TS flops)
 * + the cached part; cached = cache read + Q applied to QᵀF (2r columns) and back to k vectors
 * (Q1 and Q2: 4·m²·columns TS flops) + QL sweep on k vectors + Lanczos (~100 steps).
 */
export async function estimateExactLargeSeconds(engine: Engine, m: number, n: number, k = 10, r = 16, nb = DEFAULT_BAND): Promise<{ cold: number; cached: number }> {
  const c = await calibrateExactLarge(engine);
  // symmetric row blocks (products.ts symRowsGram): half of the 2·m²·n flops, ~10 % overhead
  const gram = (1.1 * m * m * n) / c.gemm;
  const band = (3 * m ** 3) / (c.gemm / 2) + (4 * nb * m * m) / c.ts;
  const chase = (6 * m * m * nb) / c.ts;
  // Q applied to 2r + k columns by the register-blocked kernels of twostage.ts (≈ 4× the plain rate)
  const ts = (m * m * (2 * r + k)) / c.ts + (m * m * (10 + 2.5 * k)) / c.ts + (4 * m * 100 * 100) / c.ts;
  const io = (8 * m * m) / 0.5e9 + (2 * m * n * r) / c.gemm + (12 * m * n) / c.bw;
  return { cold: gram + band + chase + ts + io, cached: ts + io };
}
