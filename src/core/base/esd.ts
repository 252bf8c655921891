/**
 * WeightWatcher-style empirical spectral density (ESD) metrics (peers.md §1.2–1.3).
 *
 * Convention (as WeightWatcher): eigenvalues λ_i = σ_i², the squared singular values of W with
 * NO 1/N normalisation (ESD of WᵀW, N ≥ M).
 *
 * - log_norm = log10 ‖W‖_F² (= log10 Σλ over the FULL spectrum; pass `frobeniusSq` — it is exact also
 *   when only the top-k σ are known, where Σ_top-k λ would understate it); log_spectral_norm = log10
 *   λmax; stable_rank = ‖W‖_F²/λmax
 * - alpha: WW's own 'ww' power-law fit (WW_powerlaw.py): λ ≤ 1e-5 dropped, sorted ascending; for
 *   every candidate xmin = λ_i (all but the largest) the continuous MLE α = 1 + n/Σ ln(λ/xmin) over
 *   the tail λ ≥ xmin, and D = max |1 − (λ/xmin)^{1−α} − j/n| (j = 0..n−1); xmin minimises D.
 *   sigma = (α − 1)/√n, num_pl_spikes = n (tail size).
 * - alpha_weighted = α·log10 λmax; log_alpha_norm = log10 Σ λ^α
 * - alpha is only fitted on a FULL spectrum (all min(N, M) σ) with at least MIN_EVALS = 50 usable
 *   eigenvalues (> 1e-5; WeightWatcher's min_evals rule): `alpha_status` says 'fitted', 'truncated'
 *   (top-k spectrum: the tail fit would describe the top k only) or 'not fittable' (< 50, e.g. any
 *   ΔW of rank 16); alpha and the quantities built on it are NaN otherwise.
 * - entropy = −Σ p ln p / ln(rank), p = σ²/Σσ², rank = #σ > σmax·max(N, M)·eps(fp64) (WeightWatcher
 *   upcasts to fp64 before numpy's matrix_rank rule); both need the full spectrum (NaN otherwise).
 * - mp_softrank = λ₊/λmax with the Marchenko–Pastur bulk edge λ₊ = σ²_mp·N·(1 + 1/√Q)², Q = N/M.
 *   σ²_mp is estimated as the element variance ‖W‖_F²/(N·M) (= Σλ/(N·M)); WW instead fits the
 *   bulk (mp_fit=True), so values differ when strong spikes inflate the Frobenius norm. num_spikes
 *   = #λ > λ₊ (no Tracy–Widom margin).
 * - warnings: truncated spectrum, alpha not fittable, fewer than 50 eigenvalues in the fitted tail, alpha > 8
 *   (usually spurious), alpha < 2 ('over-trained' in WW), alpha > 6 ('under-trained' in WW).
 */

export interface EsdMetrics {
  N: number;
  M: number;
  num_evals: number;
  lambda_max: number;
  sv_max: number;
  sv_min: number;
  norm: number;
  log_norm: number;
  spectral_norm: number;
  log_spectral_norm: number;
  stable_rank: number;
  alpha: number;
  alpha_weighted: number;
  log_alpha_norm: number;
  xmin: number;
  D: number;
  sigma: number;
  num_pl_spikes: number;
  entropy: number;
  matrix_rank: number;
  sigma_mp: number;
  bulk_max: number;
  mp_softrank: number;
  num_spikes: number;
  /** Whether all min(N, M) singular values were supplied. */
  full_spectrum: boolean;
  alpha_status: AlphaStatus;
  warnings: string[];
}

import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';

export const EVALS_THRESH = 1e-5;
/** WeightWatcher's DEFAULT_MIN_EVALS: no power-law fit on fewer eigenvalues. */
export const MIN_EVALS = 50;
const EPS64 = 2.220446049250313e-16;

export type AlphaStatus = 'fitted' | 'truncated' | 'not fittable';

export interface EsdOptions {
  /** ‖W‖_F² computed from the matrix itself: log_norm, stable_rank and the MP bulk are exact with it. */
  frobeniusSq?: number;
}

export interface PowerLawFit {
  alpha: number;
  xmin: number;
  D: number;
  sigma: number;
  n: number;
}

/** WeightWatcher 'ww' power-law fit on eigenvalues (any order). NaN fit when < 2 usable values. */
export function fitPowerLaw(evals: ArrayLike<number>): PowerLawFit {
  const data = Float64Array.from(Array.from(evals).filter((x) => x > EVALS_THRESH)).sort();
  const N = data.length;
  if (N < 2) return { alpha: NaN, xmin: NaN, D: NaN, sigma: NaN, n: N };
  const logd = data.map(Math.log);
  // suffix sums of log
  const suf = new Float64Array(N + 1);
  for (let i = N - 1; i >= 0; i--) suf[i] = suf[i + 1] + logd[i];
  let bestD = Infinity, bestI = 0, bestA = NaN;
  for (let i = 0; i < N - 1; i++) {
    const n = N - i;
    const alpha = 1 + n / (suf[i] - n * logd[i]);
    let D = 1;
    if (alpha > 1) {
      D = 0;
      const xmin = data[i];
      for (let j = 0; j < n; j++) {
        const v = Math.abs(1 - Math.pow(data[i + j] / xmin, 1 - alpha) - j / n);
        if (v > D) D = v;
      }
    }
    if (D < bestD) { bestD = D; bestI = i; bestA = alpha; }
  }
  const n = N - bestI;
  return { alpha: bestA, xmin: data[bestI], D: bestD, sigma: (bestA - 1) / Math.sqrt(n), n };
}

/**
 * ESD metrics from singular values σ (any order) of an N×M matrix (the function uses N ≥ M by
 * swapping). With fewer than min(N, M) values the spectrum is treated as truncated: alpha, entropy
 * and matrix_rank are NaN, and log_norm needs `opts.frobeniusSq` (NaN without it).
 */
export function esdMetrics(singularValues: ArrayLike<number>, rows: number, cols: number, opts: EsdOptions = {}): EsdMetrics {
  const N = Math.max(rows, cols), M = Math.min(rows, cols);
  const sv = Float64Array.from(singularValues).sort().reverse();
  const lam = sv.map((s) => s * s);
  const warnings: string[] = [];
  const full = lam.length >= M;
  const sumLam = lam.reduce((a, b) => a + b, 0);
  const fro = opts.frobeniusSq;
  // ‖W‖_F²: exact from the matrix when given; Σλ only when the spectrum is complete.
  const norm = fro !== undefined && Number.isFinite(fro) ? fro : full ? sumLam : NaN;
  const lmax = lam[0] ?? 0;
  const usable = lam.filter((l) => l > EVALS_THRESH).length;
  const status: AlphaStatus = !full ? 'truncated' : usable < MIN_EVALS ? 'not fittable' : 'fitted';
  const fit = status === 'fitted' ? fitPowerLaw(lam) : { alpha: NaN, xmin: NaN, D: NaN, sigma: NaN, n: NaN };
  const alpha = fit.alpha;
  let lan = 0;
  for (const l of lam) if (l > 0) lan += Math.pow(l, alpha);
  let rank = NaN, ent = NaN;
  if (full) {
    const tol = (sv[0] ?? 0) * N * EPS64;
    rank = sv.filter((s) => s > tol).length;
    ent = 0;
    if (sumLam > 0 && rank > 1) {
      for (const l of lam) {
        const p = l / sumLam;
        if (p > 0) ent -= p * Math.log(p);
      }
      ent /= Math.log(rank);
    }
  }
  const Q = N / M;
  const sigma2 = M > 0 ? norm / (N * M) : NaN;
  const bulkMax = sigma2 * N * (1 + 1 / Math.sqrt(Q)) ** 2;
  // spikes: exact on a full spectrum; on a truncated one only when some supplied λ is inside the bulk
  const above = lam.filter((l) => l > bulkMax).length;
  const numSpikes = full || above < lam.length ? above : NaN;
  if (!full) warnings.push(`only ${lam.length} of ${M} eigenvalues supplied (truncated spectrum): alpha, entropy and matrix rank need the full spectrum${fro === undefined ? '; log_norm needs ‖W‖_F' : ''}`);
  else if (status === 'not fittable') warnings.push(`alpha not fittable: ${usable} eigenvalues above ${EVALS_THRESH} (< ${MIN_EVALS}, WeightWatcher's min_evals)`);
  if (status === 'fitted') {
    if (fit.n < MIN_EVALS) warnings.push(`power-law fit uses ${fit.n} eigenvalues in the tail (< ${MIN_EVALS}): alpha is statistically weak`);
    if (alpha > 8) warnings.push(`alpha = ${alpha.toFixed(2)} > 8: the power-law fit is probably spurious`);
    else if (alpha > 6) warnings.push(`alpha = ${alpha.toFixed(2)} > 6: under-trained (WeightWatcher convention)`);
    if (alpha < 2) warnings.push(`alpha = ${alpha.toFixed(2)} < 2: over-trained (WeightWatcher convention)`);
  }
  return {
    N, M, num_evals: lam.length, lambda_max: lmax, sv_max: sv[0] ?? NaN, sv_min: full ? (sv[sv.length - 1] ?? NaN) : NaN,
    norm, log_norm: Math.log10(norm), spectral_norm: lmax, log_spectral_norm: Math.log10(lmax), stable_rank: norm / lmax,
    alpha, alpha_weighted: alpha * Math.log10(lmax), log_alpha_norm: status === 'fitted' ? Math.log10(lan) : NaN, xmin: fit.xmin, D: fit.D, sigma: fit.sigma,
    num_pl_spikes: fit.n, entropy: ent, matrix_rank: rank, sigma_mp: Math.sqrt(sigma2), bulk_max: bulkMax,
    mp_softrank: bulkMax / lmax, num_spikes: numSpikes, full_spectrum: full, alpha_status: status, warnings,
  };
}

function frobeniusGraph(): Uint8Array {
  const g = new GraphBuilder('esd_frobenius_sq');
  g.input('W', 'float32', ['m', 'n']);
  g.op('ReduceSumSquare', [g.op('Cast', ['W'], { to: 11 })], { keepdims: 0 }, 'f');
  g.output('f', 'float64', []);
  return g.build();
}

/** ‖W‖_F² of a float32 matrix, accumulated in fp64 by onnxruntime (pass it as EsdOptions.frobeniusSq). */
export async function frobeniusSquared(engine: Engine, W: Float32Array, m: number, n: number): Promise<number> {
  if (W.length !== m * n) throw new Error(`frobeniusSquared: ${W.length} values for ${m}×${n}`);
  const s = await engine.session('esd_frobenius_sq', frobeniusGraph);
  const out = await engine.run(s, { W: engine.tensor('float32', W, [m, n]) });
  return (out.f.data as Float64Array)[0];
}

export interface Histogram {
  /** bins+1 edges (log-spaced), counts per bin, density = count / (total · width). */
  edges: number[];
  counts: number[];
  density: number[];
}

/** Log-binned histogram of positive values (e.g. eigenvalues) for the ESD plot. */
export function logHistogram(values: ArrayLike<number>, bins = 50): Histogram {
  const v = Array.from(values).filter((x) => x > 0 && Number.isFinite(x));
  if (v.length === 0) return { edges: [], counts: [], density: [] };
  let mn = Infinity, mx = -Infinity;
  for (const x of v) { if (x < mn) mn = x; if (x > mx) mx = x; }
  let lo = Math.log10(mn), hi = Math.log10(mx);
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const edges = Array.from({ length: bins + 1 }, (_, i) => 10 ** (lo + ((hi - lo) * i) / bins));
  const counts = new Array<number>(bins).fill(0);
  for (const x of v) {
    const b = Math.min(bins - 1, Math.max(0, Math.floor(((Math.log10(x) - lo) / (hi - lo)) * bins)));
    counts[b]++;
  }
  const density = counts.map((c, i) => c / (v.length * (edges[i + 1] - edges[i])));
  return { edges, counts, density };
}
