/**
 * Randomized SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 with re-orthonormalisation between
 * power iterations) and exact spectra of base-model weight matrices.
 *
 * Rule of the project: every product that touches the m×n weight runs in onnxruntime; TypeScript
 * only decomposes l×l matrices (l = k + p) in fp64. Orthonormalisation of a tall block Y is
 * CholeskyQR2: Gram YᵀY in ORT (fp64), Cholesky in TS, second pass on Q = Y·R₁⁻¹ (Gram again in
 * ORT), and Q = Y·(R₁⁻¹R₂⁻¹) is formed inside the next ORT graph (it never comes back to JS
 * except for the final U).
 *
 * `fullSpectrum` computes every singular value through the fp64 Gram of the smaller side: for
 * d ≤ 256 the dense TS eigen solver (`symEigTridiag`, JAMA tred2/tql2 port), above that the
 * two-stage reduction of twostage.ts (band form with all O(d³) products in ORT, bulge chasing
 * in TS) and implicit QL on the tridiagonal, values only. Without `force` it is still limited to
 * min(m, n) ≤ FULL_SPECTRUM_MAX_DIM (callers choose rsvd beyond; `force` lifts the limit).
 */
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';
import { batchedGram } from '../engine/products';
import { cholesky } from '../linalg/decomp';
import { mat, type Mat } from '../linalg/dense';
import { symEigTridiag, tridiagQL } from '../linalg/eigen';
import { tridiagonalizeTwoStage } from './twostage';

export { symEigTridiag };
import { Rng } from '../util/rng';

const DOUBLE = 11;
const FLOAT = 1;

export interface RsvdOptions {
  /** Oversampling p (default 8). */
  oversample?: number;
  /** Power iterations q (default 2). */
  powerIters?: number;
  /** Seed of the Gaussian test matrix (default 1234). */
  seed?: number;
}

export interface RsvdResult {
  /** m×k left singular vectors, row-major fp64. */
  U: Float64Array;
  /** k singular values, descending. */
  S: Float64Array;
  /** n×k right singular vectors, row-major fp64 (W ≈ U diag(S) Vᵀ). */
  V: Float64Array;
  m: number;
  n: number;
  k: number;
}

// ---------------------------------------------------------------------------------------------
// Small fp64 helpers (l×l only)

/** Inverse of an upper-triangular n×n matrix. */
export function invUpper(R: Mat): Mat {
  const n = R.rows;
  const X = mat(n, n);
  for (let j = 0; j < n; j++) {
    X.data[j * n + j] = 1 / R.data[j * n + j];
    for (let i = j - 1; i >= 0; i--) {
      let s = 0;
      for (let k = i + 1; k <= j; k++) s += R.data[i * n + k] * X.data[k * n + j];
      X.data[i * n + j] = -s / R.data[i * n + i];
    }
  }
  return X;
}

function mul(a: Mat, b: Mat): Mat {
  const c = mat(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) for (let k = 0; k < a.cols; k++) {
    const v = a.data[i * a.cols + k];
    if (v === 0) continue;
    for (let j = 0; j < b.cols; j++) c.data[i * b.cols + j] += v * b.data[k * b.cols + j];
  }
  return c;
}

/**
 * "R⁻¹" of a Gram matrix G = YᵀY such that Y·R⁻¹ has orthonormal columns. Cholesky when G is
 * numerically positive definite; otherwise the eigen pseudo-inverse square root V·Λ^{-1/2}
 * (directions with λ < 1e-14·λmax become zero columns).
 */
export function orthoFactor(G: Mat): Mat {
  const R = cholesky(G);
  if (R) {
    let ok = true;
    for (let i = 0; i < R.rows; i++) if (!(R.data[i * R.rows + i] > 1e-150)) ok = false;
    if (ok) {
      const X = invUpper(R);
      if (X.data.every(Number.isFinite)) return X;
    }
  }
  const n = G.rows;
  const { values, vectors } = symEigTridiag(G.data, n, true);
  const vmax = Math.max(values[0], 0);
  const X = mat(n, n);
  for (let j = 0; j < n; j++) {
    const lam = values[j];
    if (!(lam > 1e-14 * vmax)) continue;
    const f = 1 / Math.sqrt(lam);
    for (let i = 0; i < n; i++) X.data[i * n + j] = vectors![j * n + i] * f;
  }
  return X;
}

// ---------------------------------------------------------------------------------------------
// ORT graphs

function sampleGraph(): Uint8Array {
  // Y = W·X (fp32 product), Yd = double(Y), G = YdᵀYd
  const g = new GraphBuilder('rsvd_sample');
  g.input('W', 'float32', ['m', 'n']);
  g.input('X', 'float32', ['n', 'l']);
  const y = g.op('Cast', [g.op('MatMul', ['W', 'X'])], { to: DOUBLE }, 'Y');
  g.op('MatMul', [g.op('Transpose', [y], { perm: [1, 0] }), y], {}, 'G');
  g.output('Y', 'float64', ['m', 'l']);
  g.output('G', 'float64', ['l', 'l']);
  return g.build();
}

function orthoGramGraph(): Uint8Array {
  // Q = Y·R, G = QᵀQ (second CholeskyQR pass), all fp64, small
  const g = new GraphBuilder('rsvd_orthogram');
  g.input('Y', 'float64', ['m', 'l']);
  g.input('R', 'float64', ['l', 'l']);
  const q = g.op('MatMul', ['Y', 'R']);
  g.op('MatMul', [g.op('Transpose', [q], { perm: [1, 0] }), q], {}, 'G');
  g.output('G', 'float64', ['l', 'l']);
  return g.build();
}

function powerTGraph(): Uint8Array {
  // Q = float(Y·R) (m×l); Z = (Qᵀ·W)ᵀ (n×l) without transposing W; G = ZᵀZ
  const g = new GraphBuilder('rsvd_powerT');
  g.input('W', 'float32', ['m', 'n']);
  g.input('Y', 'float64', ['m', 'l']);
  g.input('R', 'float64', ['l', 'l']);
  const q = g.op('Cast', [g.op('MatMul', ['Y', 'R'])], { to: FLOAT });
  const zt = g.op('MatMul', [g.op('Transpose', [q], { perm: [1, 0] }), 'W']); // l×n
  const ztd = g.op('Cast', [zt], { to: DOUBLE });
  g.op('Transpose', [ztd], { perm: [1, 0] }, 'Z');
  g.op('MatMul', [ztd, 'Z'], {}, 'G');
  g.output('Z', 'float64', ['n', 'l']);
  g.output('G', 'float64', ['l', 'l']);
  return g.build();
}

function powerGraph(): Uint8Array {
  // Qz = float(Z·R) (n×l); Y = W·Qz; G = YᵀY
  const g = new GraphBuilder('rsvd_power');
  g.input('W', 'float32', ['m', 'n']);
  g.input('Z', 'float64', ['n', 'l']);
  g.input('R', 'float64', ['l', 'l']);
  const qz = g.op('Cast', [g.op('MatMul', ['Z', 'R'])], { to: FLOAT });
  const y = g.op('Cast', [g.op('MatMul', ['W', qz])], { to: DOUBLE }, 'Y');
  g.op('MatMul', [g.op('Transpose', [y], { perm: [1, 0] }), y], {}, 'G');
  g.output('Y', 'float64', ['m', 'l']);
  g.output('G', 'float64', ['l', 'l']);
  return g.build();
}

function projectGraph(): Uint8Array {
  // Q = Y·R (fp64, m×l); Bm = Qᵀ·W (l×n, fp32 product); G = Bm·Bmᵀ (fp64)
  const g = new GraphBuilder('rsvd_project');
  g.input('W', 'float32', ['m', 'n']);
  g.input('Y', 'float64', ['m', 'l']);
  g.input('R', 'float64', ['l', 'l']);
  g.op('MatMul', ['Y', 'R'], {}, 'Q');
  const qf = g.op('Cast', ['Q'], { to: FLOAT });
  const b = g.op('Cast', [g.op('MatMul', [g.op('Transpose', [qf], { perm: [1, 0] }), 'W'])], { to: DOUBLE }, 'Bm');
  g.op('MatMul', [b, g.op('Transpose', [b], { perm: [1, 0] })], {}, 'G');
  g.output('Q', 'float64', ['m', 'l']);
  g.output('Bm', 'float64', ['l', 'n']);
  g.output('G', 'float64', ['l', 'l']);
  return g.build();
}

function finishGraph(): Uint8Array {
  // U = Q·Ub (m×k); V = Bmᵀ·Vs (n×k) with Vs = Ub·Σ⁻¹
  const g = new GraphBuilder('rsvd_finish');
  g.input('Q', 'float64', ['m', 'l']);
  g.input('Bm', 'float64', ['l', 'n']);
  g.input('Ub', 'float64', ['l', 'k']);
  g.input('Vs', 'float64', ['l', 'k']);
  g.op('MatMul', ['Q', 'Ub'], {}, 'U');
  g.op('MatMul', [g.op('Transpose', ['Bm'], { perm: [1, 0] }), 'Vs'], {}, 'V');
  g.output('U', 'float64', ['m', 'k']);
  g.output('V', 'float64', ['n', 'k']);
  return g.build();
}

type T = ReturnType<Engine['tensor']>;

async function run(engine: Engine, key: string, build: () => Uint8Array, feeds: Record<string, T>): Promise<Record<string, T>> {
  const s = await engine.session(key, build);
  return engine.run(s, feeds);
}

function gramMat(t: T, l: number): Mat {
  return { rows: l, cols: l, data: Float64Array.from(t.data as Float64Array) };
}

/** CholeskyQR2: returns R⁻¹ (l×l) with Y·R⁻¹ orthonormal, given Y (on the ORT side) and G = YᵀY. */
async function cholQR2(engine: Engine, Y: T, G: Mat): Promise<Mat> {
  const l = G.rows;
  const R1 = orthoFactor(G);
  const r = await run(engine, 'rsvd_orthogram', orthoGramGraph, { Y, R: engine.tensor('float64', R1.data, [l, l]) });
  const R2 = orthoFactor(gramMat(r.G, l));
  return mul(R1, R2);
}

/**
 * Top-k singular triplets of an m×n fp32 row-major matrix by randomized SVD.
 * Cost: (2q + 2) passes over W in ORT + O(l³) in TS, l = k + p ≤ min(m, n).
 */
export async function rsvd(engine: Engine, W: Float32Array, m: number, n: number, k: number, opts: RsvdOptions = {}): Promise<RsvdResult> {
  if (W.length !== m * n) throw new Error(`rsvd: ${W.length} values for ${m}×${n}`);
  const p = opts.oversample ?? 8;
  const q = opts.powerIters ?? 2;
  k = Math.min(k, m, n);
  const l = Math.min(k + p, m, n);
  const rng = new Rng(opts.seed ?? 1234);
  const X = new Float32Array(n * l);
  for (let i = 0; i < X.length; i++) X[i] = rng.normal();
  const Wt = engine.tensor('float32', W, [m, n]);
  let r = await run(engine, 'rsvd_sample', sampleGraph, { W: Wt, X: engine.tensor('float32', X, [n, l]) });
  let Y = r.Y;
  let R = await cholQR2(engine, Y, gramMat(r.G, l));
  for (let it = 0; it < q; it++) {
    const z = await run(engine, 'rsvd_powerT', powerTGraph, { W: Wt, Y, R: engine.tensor('float64', R.data, [l, l]) });
    const Rz = await cholQR2(engine, z.Z, gramMat(z.G, l));
    r = await run(engine, 'rsvd_power', powerGraph, { W: Wt, Z: z.Z, R: engine.tensor('float64', Rz.data, [l, l]) });
    Y = r.Y;
    R = await cholQR2(engine, Y, gramMat(r.G, l));
  }
  const pr = await run(engine, 'rsvd_project', projectGraph, { W: Wt, Y, R: engine.tensor('float64', R.data, [l, l]) });
  // B Bᵀ = Ub Λ Ubᵀ (l×l, fp64)
  const { values, vectors } = symEigTridiag(pr.G.data as Float64Array, l, true);
  const S = new Float64Array(k);
  const Ub = new Float64Array(l * k), Vs = new Float64Array(l * k);
  for (let j = 0; j < k; j++) {
    const s = Math.sqrt(Math.max(values[j], 0));
    S[j] = s;
    const inv = s > 1e-300 * Math.sqrt(Math.max(values[0], 0)) && s > 0 ? 1 / s : 0;
    for (let i = 0; i < l; i++) {
      Ub[i * k + j] = vectors![j * l + i];
      Vs[i * k + j] = vectors![j * l + i] * inv;
    }
  }
  const f = await run(engine, 'rsvd_finish', finishGraph, {
    Q: pr.Q, Bm: pr.Bm, Ub: engine.tensor('float64', Ub, [l, k]), Vs: engine.tensor('float64', Vs, [l, k]),
  });
  return { U: f.U.data as Float64Array, S, V: f.V.data as Float64Array, m, n, k };
}

// ---------------------------------------------------------------------------------------------
// Exact spectra (small sides only)

/** Largest min(m, n) for which exact full spectra / full singular bases are computed. */
export const FULL_SPECTRUM_MAX_DIM = 1024;

/**
 * All min(m, n) singular values (descending) of an m×n fp32 matrix: fp64 Gram of the smaller side
 * in ORT, eigenvalues in TS. Only for min(m, n) ≤ 1024 (the TS eigen solver is O(d³); see
 * estimateFullSpectrumSeconds). Accuracy: absolute error ≈ 1e-16·σ₁²/σ on σ, i.e. the smallest
 * singular values of ill-conditioned matrices (κ > 1e7) are not resolved (Gram squares κ).
 */
export async function fullSpectrum(engine: Engine, W: Float32Array, m: number, n: number, opts: { force?: boolean } = {}): Promise<Float64Array> {
  const d = Math.min(m, n);
  if (d > FULL_SPECTRUM_MAX_DIM && !opts.force) {
    throw new Error(`fullSpectrum: min(m, n) = ${d} > ${FULL_SPECTRUM_MAX_DIM}; the exact spectrum would take ~${estimateFullSpectrumSeconds(m, n).toFixed(0)} s here, use rsvd for the top singular values`);
  }
  const G = await batchedGram(engine, W, 1, m, n, m <= n ? 'rows' : 'cols');
  // Small d: dense TS eigen solver. Larger: two-stage reduction (BLAS-3 band form in ORT, bulge
  // chasing in TS, twostage.ts) without recording Q2, then QL on the tridiagonal (values only).
  const values = d <= TWO_STAGE_FROM ? symEigTridiag(G, d, false).values
    : tridiagQL(...dAndE(await tridiagonalizeTwoStage(engine, G, d, { wantQ: false }))).values;
  return values.map((v) => Math.sqrt(Math.max(v, 0)));
}

/** Below this size the dense TS eigen solver is as fast as the two-stage route. */
const TWO_STAGE_FROM = 256;
const dAndE = (t: { d: Float64Array; e: Float64Array }): [Float64Array, Float64Array] => [t.d, t.e];

let eigSecondsPerCube: number | undefined;

/** Measures the TS eigen solver once (n = 160, values only) and returns seconds per n³. */
export function calibrateEig(): number {
  if (eigSecondsPerCube !== undefined) return eigSecondsPerCube;
  const n = 160;
  const rng = new Rng(7);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = rng.normal();
  symEigTridiag(a, n, false); // warm-up (JIT)
  const t0 = process.hrtime.bigint();
  symEigTridiag(a, n, false);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  eigSecondsPerCube = s / n ** 3;
  return eigSecondsPerCube;
}

/**
 * Estimate of fullSpectrum's time on this machine. d ≤ 256: fp64 Gram in ORT at ~50 GF/s plus the
 * dense TS eigen solver (calibrateEig, cubic). Larger d: Gram + two-stage band reduction
 * (≈ 3·d³ fp64 flops in ORT at ~40 GF/s including the lazy corrections) + bulge chasing
 * (≈ 6·d²·b flops in TS, b = 32) + QL values (≈ 30·d² TS flops), the TS rate taken from
 * calibrateEig (n = 160 dense solver ≈ 4/3·n³ flops).
 */
export function estimateFullSpectrumSeconds(m: number, n: number): number {
  const d = Math.min(m, n), D = Math.max(m, n);
  // d ≥ 512 with more than one run's elements: symmetric blocks, half the flops (products.ts)
  const gram = ((d >= 512 ? 1.1 : 2) * d * d * D) / 50e9;
  if (d <= TWO_STAGE_FROM) return gram + calibrateEig() * d ** 3;
  const tsRate = 4 / 3 / calibrateEig();
  return gram + (3 * d ** 3) / 40e9 + (6 * d * d * 32 + 30 * d * d) / tsRate;
}
