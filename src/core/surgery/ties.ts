/**
 * N-adapter merges with the semantics of PEFT's `LoraModel.add_weighted_adapter`
 * (peft/tuners/lora/model.py and peft/utils/merge_utils.py, read 2026-11; re-implemented here):
 *
 *   cat               B = [B₁ … Bₙ], A = [w₁s₁A₁; …; wₙsₙAₙ]: exact, r = Σ rᵢ (we fold √|wᵢsᵢ| into both
 *                     factors, sign into B: same product, balanced magnitudes).
 *   svd               best rank-k approximation of Σ wᵢsᵢBᵢAᵢ (k default max rᵢ), from the r×r core of
 *                     the concatenated factors (never forms ΔW).
 *   linear, ties, dare_linear, dare_ties, magnitude_prune
 *                     PEFT's "factor-level" variants: the A stack and the B stack are merged
 *                     SEPARATELY with weights √(wᵢ·sᵢ) (ranks must agree). The product then contains
 *                     cross terms BᵢAⱼ (PEFT issue #3004): we report that deviation per module
 *                     (`relErrToLinear`) instead of hiding it.
 *   ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd
 *                     the same task-tensor merge applied to the full ΔWᵢ = sᵢBᵢAᵢ with weights wᵢ, then
 *                     truncated to rank k. (PEFT multiplies get_delta_weight — which already holds sᵢ —
 *                     by wᵢ·sᵢ, i.e. scales twice; we use wᵢ·ΔWᵢ, the weighted sum the user asked for,
 *                     which equals PEFT whenever sᵢ = 1.)
 *
 * Task-tensor kernels (merge_utils): magnitude pruning keeps the k = ⌊density·numel⌋ largest |x|;
 * DARE keeps each entry with probability `density` and divides the kept ones by `density`; TIES
 * elects per entry the sign of Σᵢ tᵢ ("total") or Σᵢ sign(tᵢ) ("frequency") of the PRUNED, unweighted
 * tensors (≥ 0 → +), then averages the weighted entries that agree with it (disjoint merge,
 * divisor max(count, 1)). density ≥ 1 means no pruning.
 *
 * DARE randomness is reproducible: the keep mask of (seed, adapter index, module, tensor role) comes
 * from a counter-based generator (mulberry32 seeded by an FNV-1a hash of that key), so the same
 * command line writes the same adapter; callers (tests) may also pass the masks explicitly.
 *
 * Architecture: ΔWᵢ = sᵢBᵢAᵢ and every product touching a full matrix run in onnxruntime (fp64);
 * pruning, sign election and averaging are element-wise TypeScript loops; decompositions are
 * r×r (or k×k Gram eigenproblems of the smaller side, ≤ 1024; larger ones use randomized SVD).
 */
import { gramMat } from '../engine/kernels';
import { checkCombinable } from '../base/match';
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { DType, fromFloats } from '../formats/dtype';
import { FormatError, throwIfCancelled } from '../formats/errors';
import { openAdapter } from '../formats/open';
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';
import { matmul64 } from '../engine/products';
import { symEigTridiag } from '../linalg/eigen';
import { FULL_SPECTRUM_MAX_DIM, rsvd } from '../base/rsvd';
import { FactorPair, SurgeryOptions, balancedLowRank, lowRankDiff, productTolerance, provenance, readPair } from './balora';
import { configForRanks } from './rank';
import { OutTensor, assertNotInput, removeOutput, writeAdapterFolder } from '../formats/writer';

export type TaskMerge = 'linear' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune';
export type Combination = 'cat' | 'svd' | TaskMerge | 'ties_svd' | 'dare_linear_svd' | 'dare_ties_svd' | 'magnitude_prune_svd';

export const COMBINATIONS: readonly Combination[] = ['cat', 'svd', 'linear', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune', 'ties_svd', 'dare_linear_svd', 'dare_ties_svd', 'magnitude_prune_svd'];

/**
 * Maps the CLI's `--method` (cat|svd|ties|dare|magnitude, or any PEFT combination_type name) and
 * `--svd` to a PEFT combination type: dare → dare_linear, magnitude → magnitude_prune, `--svd`
 * selects the ΔW-level (`*_svd`) variant.
 */
export function resolveCombination(method: string, svd: boolean): Combination {
  const alias: Record<string, string> = { dare: 'dare_linear', magnitude: 'magnitude_prune', 'dare-ties': 'dare_ties', 'dare-linear': 'dare_linear', 'magnitude-prune': 'magnitude_prune' };
  let m = alias[method] ?? method;
  if (svd && m !== 'svd' && m !== 'cat' && !m.endsWith('_svd')) m = m === 'linear' ? 'svd' : `${m}_svd`;
  if (svd && m === 'cat') m = 'svd';
  if (!(COMBINATIONS as readonly string[]).includes(m)) throw new Error(`unknown merge method "${method}" (cat, svd, linear, ties, dare, dare_ties, magnitude, or a PEFT combination_type such as ties_svd)`);
  return m as Combination;
}

export const usesDensity = (c: Combination): boolean => /ties|dare|magnitude/.test(c);
export const isDeltaLevel = (c: Combination): boolean => c.endsWith('_svd');
export const taskKernel = (c: Combination): TaskMerge | undefined => (c === 'cat' || c === 'svd' ? undefined : (c.replace(/_svd$/, '') as TaskMerge));

// ---------------------------------------------------------------------------------------------
// Element-wise kernels (merge_utils semantics)
// ---------------------------------------------------------------------------------------------

/** Keep-mask of the k = ⌊density·n⌋ entries of largest |x| (ties: lower index first). density ≥ 1: all. */
export function magnitudeMask(t: ArrayLike<number>, density: number): Uint8Array {
  const n = t.length;
  const mask = new Uint8Array(n);
  if (density >= 1) return mask.fill(1);
  const k = Math.floor(density * n);
  if (k <= 0) return mask;
  // Threshold = k-th largest |x| by quickselect (O(n); a sort of a 4096×14336 ΔW takes ~30 s here);
  // entries above it are kept, then entries equal to it by increasing index until k (torch.topk
  // leaves the order of ties unspecified).
  const a = new Float64Array(n); // (typed-array from() with a map function is ~50× slower than this loop in V8)
  for (let i = 0; i < n; i++) a[i] = Math.abs(t[i]);
  const thr = kthSmallest(Float64Array.from(a), n - k);
  let kept = 0;
  for (let i = 0; i < n; i++) if (a[i] > thr) { mask[i] = 1; kept++; }
  for (let i = 0; i < n && kept < k; i++) if (a[i] === thr) { mask[i] = 1; kept++; }
  return mask;
}

/** The j-th smallest value (0-based) of `x` by Hoare quickselect with median-of-three pivots; reorders x. */
export function kthSmallest(x: Float64Array, j: number): number {
  let lo = 0, hi = x.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // median of three into x[mid]
    if (x[mid] < x[lo]) { const t = x[mid]; x[mid] = x[lo]; x[lo] = t; }
    if (x[hi] < x[lo]) { const t = x[hi]; x[hi] = x[lo]; x[lo] = t; }
    if (x[hi] < x[mid]) { const t = x[hi]; x[hi] = x[mid]; x[mid] = t; }
    const p = x[mid];
    let i = lo, k = hi;
    while (i <= k) {
      while (x[i] < p) i++;
      while (x[k] > p) k--;
      if (i <= k) { const t = x[i]; x[i] = x[k]; x[k] = t; i++; k--; }
    }
    if (j <= k) hi = k;
    else if (j >= i) lo = i;
    else return x[j];
  }
  return x[j];
}

/** FNV-1a 32-bit hash of a string (keys the DARE generator). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Reproducible DARE keep-mask: entry kept when u < density, u from mulberry32(seed ⊕ hash(key)). */
export function dareMask(n: number, density: number, seed: number, key: string): Uint8Array {
  const mask = new Uint8Array(n);
  if (density >= 1) return mask.fill(1);
  let s = (fnv1a(key) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < n; i++) {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    mask[i] = u < density ? 1 : 0;
  }
  return mask;
}

export interface TaskMergeOptions {
  density: number;
  majoritySign?: 'total' | 'frequency';
  /** DARE: keep-masks per task tensor (otherwise from `seed` and `keys`). */
  masks?: Uint8Array[];
  seed?: number;
  /** DARE: one key per task tensor (adapter index, module, role). */
  keys?: string[];
}

export interface TaskMergeStats {
  /** Fraction of entries where ≥ 2 pruned task tensors are non-zero. */
  overlap: number;
  /** Among those, the fraction where both signs occur (TIES discards the minority there). */
  signConflict: number;
  /** Per task tensor: Σ kept x² / Σ x² (before DARE's 1/density rescale). */
  retainedEnergy: number[];
  /** Fraction of entries kept, per task tensor. */
  kept: number[];
}

/**
 * PEFT's task-tensor merge of equally shaped tensors with weights (merge_utils.task_arithmetic,
 * ties, dare_linear, dare_ties, magnitude_prune). Returns the merged tensor and preview statistics.
 */
export function mergeTaskTensors(kind: TaskMerge, tensors: Float64Array[], weights: number[], o: TaskMergeOptions): { merged: Float64Array; stats: TaskMergeStats } {
  const n = tensors[0].length;
  for (const t of tensors) if (t.length !== n) throw new Error(`task tensors differ in size (${t.length} vs ${n})`);
  if (kind !== 'linear' && !(o.density >= 0)) throw new Error(`density must be ≥ 0, got ${o.density}`);
  const random = kind === 'dare_linear' || kind === 'dare_ties';
  if (random && !(o.density > 0)) throw new Error('DARE needs density > 0 (kept entries are divided by density)');
  const masks = tensors.map((t, i) => {
    if (kind === 'linear' || o.density >= 1) return new Uint8Array(n).fill(1);
    if (random) return o.masks?.[i] ?? dareMask(n, o.density, o.seed ?? 0, o.keys?.[i] ?? String(i));
    return magnitudeMask(t, o.density);
  });
  const rescale = random && o.density < 1 ? 1 / o.density : 1;
  const pruned = tensors.map((t, i) => {
    const p = new Float64Array(n);
    const m = masks[i];
    if (m.length !== n) throw new Error(`mask ${i} has ${m.length} entries, tensor has ${n}`);
    for (let j = 0; j < n; j++) if (m[j]) p[j] = t[j] * rescale;
    return p;
  });
  const merged = new Float64Array(n);
  const ties = kind === 'ties' || kind === 'dare_ties';
  const freq = o.majoritySign === 'frequency';
  let overlap = 0, conflict = 0;
  for (let j = 0; j < n; j++) {
    let pos = 0, neg = 0, tot = 0, sgn = 0;
    for (const p of pruned) {
      const v = p[j];
      if (v > 0) pos++; else if (v < 0) neg++;
      tot += v;
      sgn += Math.sign(v);
    }
    if (pos + neg >= 2) { overlap++; if (pos > 0 && neg > 0) conflict++; }
    if (!ties) {
      let s = 0;
      for (let i = 0; i < pruned.length; i++) s += weights[i] * pruned[i][j];
      merged[j] = s;
      continue;
    }
    const major = (freq ? sgn : tot) >= 0 ? 1 : -1;
    let s = 0, c = 0;
    for (let i = 0; i < pruned.length; i++) {
      const v = pruned[i][j];
      if (Math.sign(v) === major) { s += weights[i] * v; c++; }
    }
    merged[j] = s / Math.max(c, 1);
  }
  const retainedEnergy = tensors.map((t, i) => {
    let a = 0, k = 0;
    for (let j = 0; j < n; j++) { a += t[j] * t[j]; if (masks[i][j]) k += t[j] * t[j]; }
    return a > 0 ? k / a : 1;
  });
  const kept = masks.map((m) => m.reduce((s, v) => s + v, 0) / Math.max(n, 1));
  return { merged, stats: { overlap: overlap / Math.max(n, 1), signConflict: overlap ? conflict / overlap : 0, retainedEnergy, kept } };
}

/** Magnitude-pruning energy curve: Σ of the ⌊d·n⌋ largest x² / Σ x² at each density d. */
export function energyCurve(t: ArrayLike<number>, densities: number[]): number[] {
  const n = t.length;
  const sq = new Float64Array(n);
  let tot = 0;
  for (let i = 0; i < n; i++) { sq[i] = t[i] * t[i]; tot += sq[i]; }
  if (!(tot > 0)) return densities.map(() => 1);
  const work = new Float64Array(n);
  return densities.map((d) => {
    const k = Math.min(n, Math.floor(Math.min(d, 1) * n));
    if (k <= 0) return 0;
    if (k >= n) return 1;
    work.set(sq);
    const thr = kthSmallest(work, n - k); // the k-th largest x²
    let s = 0, c = 0;
    for (let i = 0; i < n; i++) if (sq[i] > thr) { s += sq[i]; c++; }
    return (s + (k - c) * thr) / tot;
  });
}

// ---------------------------------------------------------------------------------------------
// Truncated SVD of a dense fp64 matrix (ΔW-level methods)
// ---------------------------------------------------------------------------------------------

/**
 * Balanced factors (B = UΣ^½, A = Σ^½Vᵀ) of the best rank-k approximation of the m×n matrix D.
 * min(m, n) ≤ 1024: Gram of the smaller side in onnxruntime (fp64) + TS eigen solver, then the
 * other factor as D·V (ORT). Larger: randomized SVD (ORT, fp32 products, 4 power iterations).
 */
export async function truncatedFactors(engine: Engine, D: Float64Array, m: number, n: number, k: number): Promise<{ A: Float64Array; B: Float64Array; k: number; sigma: Float64Array; method: string }> {
  k = Math.max(0, Math.min(k, m, n));
  if (k === 0) return { A: new Float64Array(0), B: new Float64Array(0), k: 0, sigma: new Float64Array(0), method: 'empty' };
  const d = Math.min(m, n);
  if (d > FULL_SPECTRUM_MAX_DIM) {
    const r = await rsvd(engine, Float32Array.from(D), m, n, k, { powerIters: 4, oversample: 16 });
    const A = new Float64Array(k * n), B = new Float64Array(m * k);
    for (let j = 0; j < k; j++) {
      const sq = Math.sqrt(r.S[j]);
      for (let i = 0; i < m; i++) B[i * k + j] = r.U[i * k + j] * sq;
      for (let i = 0; i < n; i++) A[j * n + i] = r.V[i * k + j] * sq;
    }
    return { A, B, k, sigma: r.S, method: 'randomized-svd' };
  }
  const cols = n <= m; // Gram DᵀD (n×n) when n is the smaller side
  const G = await gramMat(engine, D, m, n, cols ? 'cols' : 'rows');
  const { values, vectors } = symEigTridiag(G.data, d, true);
  const sigma = new Float64Array(k);
  const Vk = new Float64Array(d * k); // eigenvectors as columns, scaled by σ^{-1/2}
  const Vs = new Float64Array(d * k); // scaled by σ^{1/2}
  for (let j = 0; j < k; j++) {
    const s = Math.sqrt(Math.max(values[j], 0));
    sigma[j] = s;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0, sq = Math.sqrt(s);
    for (let i = 0; i < d; i++) {
      const v = vectors![j * d + i];
      Vk[i * k + j] = v * inv;
      Vs[i * k + j] = v * sq;
    }
  }
  if (cols) {
    // B = D·V·Σ^{-½} (m×k), A = Σ^½·Vᵀ (k×n)
    const B = await matmul64(engine, D, m, n, Vk, k);
    const A = new Float64Array(k * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) A[j * n + i] = Vs[i * k + j];
    return { A, B: Float64Array.from(B), k, sigma, method: 'gram-eig' };
  }
  // A = Σ^{-½}·Uᵀ·D (k×n), B = U·Σ^½ (m×k)
  const Ut = new Float64Array(k * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) Ut[j * m + i] = Vk[i * k + j];
  const A = await matmul64(engine, Ut, k, m, D, n);
  return { A: Float64Array.from(A), B: Vs, k, sigma, method: 'gram-eig' };
}

function denseDiffGraph(): Uint8Array {
  const g = new GraphBuilder('dense_lowrank_diff');
  g.input('d', 'float64', ['m', 'n']);
  g.input('a', 'float64', ['r', 'n']);
  g.input('b', 'float64', ['m', 'r']);
  const e = g.op('Sub', [g.op('MatMul', ['b', 'a']), 'd']);
  g.op('ReduceSumSquare', [e], { keepdims: 0 }, 'errSq');
  g.op('ReduceSumSquare', ['d'], { keepdims: 0 }, 'refSq');
  g.output('errSq', 'float64', []);
  g.output('refSq', 'float64', []);
  return g.build();
}

/** ‖B·A − D‖_F and ‖D‖_F in onnxruntime. */
export async function denseLowRankDiff(engine: Engine, D: Float64Array, m: number, n: number, A: Float64Array, B: Float64Array, r: number): Promise<{ errFro: number; refFro: number }> {
  const s = await engine.session('dense_lowrank_diff', denseDiffGraph);
  const fix = r > 0 ? { A, B, r } : { A: new Float64Array(n), B: new Float64Array(m), r: 1 };
  const res = await engine.run(s, {
    d: engine.tensor('float64', D, [m, n]), a: engine.tensor('float64', fix.A, [fix.r, n]), b: engine.tensor('float64', fix.B, [m, fix.r]),
  });
  return { errFro: Math.sqrt((res.errSq.data as Float64Array)[0]), refFro: Math.sqrt((res.refSq.data as Float64Array)[0]) };
}

// ---------------------------------------------------------------------------------------------
// Adapter-level merge
// ---------------------------------------------------------------------------------------------

export interface MergeInput {
  adapter: Adapter;
  weight: number;
}

export interface MergeOptions extends SurgeryOptions {
  method: Combination;
  /** Fraction of entries kept by ties/dare/magnitude (0 < density ≤ 1). */
  density?: number;
  /** DARE seed (default 0). */
  seed?: number;
  /** Output rank for svd and *_svd (default max rᵢ of the module). */
  rank?: number;
  majoritySign?: 'total' | 'frequency';
  /** Combine adapters whose configs name different base models (refused otherwise; never when they share no module). */
  force?: boolean;
  /** Densities of the preview's energy curve. */
  previewDensities?: number[];
  /** DARE keep-masks by key `<adapter index>:<module>:<A|B|delta>` (tests; default: seeded generator). */
  maskFor?: (key: string, n: number) => Uint8Array | undefined;
}

export interface MergePreviewModule {
  name: string;
  /** Which tensors the task merge runs on: the A and B stacks (factor level) or ΔW. */
  level: 'factors' | 'delta';
  overlap: number;
  signConflict: number;
  /** Mean over adapters of the energy kept at `density`. */
  retainedEnergy: number;
  /** Per adapter, energy kept at `density`. */
  retainedPerAdapter: number[];
  /** Mean over adapters and task tensors of the magnitude-pruning energy at each preview density. */
  energyCurve: { density: number; retained: number }[];
}

export interface MergeModuleResult {
  name: string;
  rank: number;
  /** ‖ΔW_out − Σ wᵢsᵢΔWᵢ‖_F / ‖Σ wᵢsᵢΔWᵢ‖_F: distance from the plain weighted sum (0 for cat). */
  relErrToLinear: number;
  /** Same as relErrToLinear (the key of the two-adapter combine's JSON). */
  relErr: number;
  /** *_svd / svd: ‖ΔW_out − D_merged‖_F / ‖D_merged‖_F (the truncation error). */
  relErrToMerged?: number;
  /** max |written s·B·A − fp64 reference| (reference = the merge's own result before rounding). */
  maxAbsError: number;
  sigma?: number[];
}

export interface MergeResult {
  outDir: string;
  weightsFile: string;
  method: Combination;
  density?: number;
  seed?: number;
  weights: number[];
  adapters: string[];
  perModule: MergeModuleResult[];
  preview: MergePreviewModule[];
  verification: { maxAbsError: number; maxRelError: number; passed: boolean; modules: number };
  config: Record<string, unknown>;
  warnings: string[];
}

const DEFAULT_PREVIEW = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1];

interface ModuleParts { name: string; parts: { f: FactorPair; w: number; s: number; idx: number; m: LoraModule }[] }

function collectModules(inputs: MergeInput[]): ModuleParts[] {
  const names: string[] = [];
  const seen = new Set<string>();
  for (const { adapter } of inputs) for (const m of adapter.modules) if (!seen.has(m.name)) { seen.add(m.name); names.push(m.name); }
  return names.map((name) => {
    const parts: ModuleParts['parts'] = [];
    inputs.forEach(({ adapter, weight }, idx) => {
      const m = adapter.modules.find((x) => x.name === name);
      if (!m) return;
      if (m.magnitude) throw new FormatError(adapter.path, `${name}: DoRA modules cannot be merged (the magnitude vector depends on ΔW)`);
      if (m.conv) throw new FormatError(adapter.path, `${name}: conv LoRA modules cannot be merged by this command`);
      if (/lora_embedding_/.test(m.A.tensor.name)) throw new FormatError(adapter.path, `${name}: embedding LoRA modules cannot be merged by this command`);
      parts.push({ f: readPair(adapter, m), w: weight, s: m.scale, idx, m });
    });
    const f0 = parts[0].f;
    for (const p of parts) {
      if (p.f.inF !== f0.inF || p.f.outF !== f0.outF) throw new FormatError(inputs[p.idx].adapter.path, `${name}: ΔW is ${p.f.outF}×${p.f.inF} here but ${f0.outF}×${f0.inF} in ${inputs[parts[0].idx].adapter.path}`);
      if (p.m.fanInFanOut !== parts[0].m.fanInFanOut) throw new FormatError(inputs[p.idx].adapter.path, `${name}: fan_in_fan_out differs between adapters`);
    }
    return { name, parts };
  });
}

/** Concatenated factors whose product is Σ cᵢBᵢAᵢ, √|cᵢ| in each factor, sign in B. */
export function catFactors(parts: { f: FactorPair; c: number }[]): FactorPair {
  const r = parts.reduce((s, p) => s + p.f.r, 0);
  const { inF, outF, name } = parts[0].f;
  const A = new Float64Array(r * inF), B = new Float64Array(outF * r);
  let off = 0;
  for (const { f, c } of parts) {
    const sa = Math.sqrt(Math.abs(c)), sb = Math.sign(c) * sa;
    for (let i = 0; i < f.r * inF; i++) A[off * inF + i] = sa * f.A[i];
    for (let i = 0; i < outF; i++) for (let j = 0; j < f.r; j++) B[i * r + off + j] = sb * f.B[i * f.r + j];
    off += f.r;
  }
  return { name, A, B, r, inF, outF };
}

/** Task-tensor view of one module: stacks for the factor-level variants, or dense ΔWᵢ. */
async function deltaOf(engine: Engine, p: ModuleParts['parts'][number]): Promise<Float64Array> {
  const d = await matmul64(engine, p.f.B, p.f.outF, p.f.r, p.f.A, p.f.inF);
  const out = new Float64Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = d[i] * p.s;
  return out;
}

/** Preview of one module (no writing): sign conflicts and retained energy at `density` and along the curve. */
async function previewModule(engine: Engine, mp: ModuleParts, o: MergeOptions): Promise<MergePreviewModule> {
  const kernel = taskKernel(o.method) ?? 'linear';
  const density = usesDensity(o.method) ? o.density ?? 1 : 1;
  const dens = o.previewDensities ?? DEFAULT_PREVIEW;
  const groups: Float64Array[][] = [];
  if (isDeltaLevel(o.method)) groups.push(await Promise.all(mp.parts.map((p) => deltaOf(engine, p))));
  else { groups.push(mp.parts.map((p) => p.f.A)); groups.push(mp.parts.map((p) => p.f.B)); }
  let overlap = 0, conflict = 0;
  const per = mp.parts.map(() => 0);
  const curve = dens.map(() => 0);
  let cnt = 0;
  for (const [gi, g] of groups.entries()) {
    const sameSize = g.every((t) => t.length === g[0].length);
    if (sameSize) {
      const keys = mp.parts.map((p) => `${p.idx}:${mp.name}:${groups.length > 1 ? (gi ? 'B' : 'A') : 'delta'}`);
      const { stats } = mergeTaskTensors(kernel === 'linear' ? 'magnitude_prune' : kernel, g, mp.parts.map(() => 1), { density, majoritySign: o.majoritySign, seed: o.seed, keys, masks: masksOf(o, keys, g.map((t) => t.length)) });
      overlap += stats.overlap / groups.length;
      conflict += stats.signConflict / groups.length;
      stats.retainedEnergy.forEach((e, i) => { per[i] += e / groups.length; });
    } else {
      per.forEach((_, i) => { per[i] += 1 / groups.length; });
    }
    for (const t of g) {
      energyCurve(t, dens).forEach((e, i) => { curve[i] += e; });
      cnt++;
    }
  }
  return {
    name: mp.name, level: groups.length > 1 ? 'factors' : 'delta', overlap, signConflict: conflict,
    retainedEnergy: per.reduce((a, b) => a + b, 0) / Math.max(per.length, 1), retainedPerAdapter: per,
    energyCurve: dens.map((d, i) => ({ density: d, retained: curve[i] / Math.max(cnt, 1) })),
  };
}

/**
 * PEFT refuses its factor-level variants when ranks differ (and takes √(w·s), NaN for w·s < 0).
 * Rather than fail, such merges run as the ΔW-level variant (`ties` → `ties_svd`, `linear` → `svd`)
 * with a warning; the result's `method` says which ran.
 */
function deltaFallback(mods: ModuleParts[], method: Combination, warnings: string[]): Combination {
  if (taskKernel(method) === undefined || isDeltaLevel(method)) return method;
  const unequal = mods.find((mp) => mp.parts.some((p) => p.f.r !== mp.parts[0].f.r));
  const negative = mods.find((mp) => mp.parts.some((p) => p.w * p.s < 0));
  if (!unequal && !negative) return method;
  const to = (method === 'linear' ? 'svd' : `${method}_svd`) as Combination;
  warnings.push(`${method} merges the A and B stacks separately with weights √(w·s) (PEFT), which needs equal ranks and w·s ≥ 0; ${unequal ? `module ${unequal.name} has ranks ${unequal.parts.map((p) => p.f.r).join(', ')}` : `module ${negative!.name} has a negative weight·scale`}: ran ${to} (the same pruning on ΔW, then rank truncation) instead`);
  return to;
}

function checkOptions(inputs: MergeInput[], o: MergeOptions): void {
  if (inputs.length < 1) throw new Error('merging needs at least one adapter');
  for (const { weight } of inputs) if (!Number.isFinite(weight)) throw new Error(`weight ${weight} is not a finite number`);
  if (usesDensity(o.method)) {
    const d = o.density;
    if (d === undefined) throw new Error(`--method ${o.method} needs --density d (0 < d ≤ 1)`);
    if (!(d > 0 && d <= 1)) throw new Error(`density must be in (0, 1], got ${d}`);
  }
  if (o.rank !== undefined && !(Number.isInteger(o.rank) && o.rank >= 1)) throw new Error(`rank must be a positive integer, got ${o.rank}`);
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && o.seed >= 0)) throw new Error(`seed must be a non-negative integer, got ${o.seed}`);
}

/** Preview only (nothing written): per-module sign conflicts and retained energy against density. */
/** Adapters made for different bases are refused (src/core/base/match.ts), each against the first. */
function baseWarnings(inputs: MergeInput[], opts: MergeOptions): string[] {
  const w: string[] = [];
  for (let i = 1; i < inputs.length; i++) w.push(...checkCombinable(inputs[0].adapter, inputs[i].adapter, { force: opts.force }));
  return w;
}

export async function previewMerge(engine: Engine, inputs: MergeInput[], opts: MergeOptions): Promise<{ method: Combination; density?: number; modules: MergePreviewModule[]; warnings: string[] }> {
  checkOptions(inputs, opts);
  const mods = collectModules(inputs);
  const warnings: string[] = baseWarnings(inputs, opts);
  const o = { ...opts, method: deltaFallback(mods, opts.method, warnings) };
  const out: MergePreviewModule[] = [];
  for (const mp of mods) { throwIfCancelled(o.token); out.push(await previewModule(engine, mp, o)); }
  return { method: o.method, density: o.density, modules: out, warnings };
}

function masksOf(o: MergeOptions, keys: string[], sizes: number[]): Uint8Array[] | undefined {
  if (!o.maskFor) return undefined;
  const ms = keys.map((k, i) => o.maskFor!(k, sizes[i]));
  return ms.every((m) => m !== undefined) ? (ms as Uint8Array[]) : undefined;
}

function peftKey(name: string, role: 'A' | 'B'): string {
  return `base_model.model.${name}.lora_${role}.weight`;
}

const WRITABLE = ['F64', 'F32', 'F16', 'BF16'];

/**
 * Merges N adapters (weights wᵢ) into a NEW PEFT adapter folder (scale 1: lora_alpha = r, per
 * module via rank_pattern/alpha_pattern), then reopens it and verifies every module's s·B·A against
 * the merge's fp64 result (max abs error, rounding tolerance of the output dtype). On failure the
 * output is removed and an error is thrown.
 */
export async function mergeAdapters(engine: Engine, inputs: MergeInput[], outDir: string, opts: MergeOptions): Promise<MergeResult> {
  checkOptions(inputs, opts);
  assertNotInput(outDir, ...inputs.flatMap((i) => [i.adapter.path, i.adapter.weightsFile]));
  const warnings: string[] = baseWarnings(inputs, opts);
  const mods = collectModules(inputs);
  const o = { ...opts, method: deltaFallback(mods, opts.method, warnings) };
  const kernel = taskKernel(o.method);
  const factorLevel = kernel !== undefined && !isDeltaLevel(o.method);
  const tensors: OutTensor[] = [];
  const rows: { name: string; k: number; scale: number }[] = [];
  const refs = new Map<string, { A: Float64Array; B: Float64Array; k: number; lin: FactorPair; dense?: Float64Array; sigma?: Float64Array }>();
  const preview: MergePreviewModule[] = [];
  let done = 0;
  for (const mp of mods) {
    throwIfCancelled(o.token);
    preview.push(await previewModule(engine, mp, o));
    const lin = catFactors(mp.parts.map((p) => ({ f: p.f, c: p.w * p.s })));
    const kDefault = Math.max(...mp.parts.map((p) => p.f.r));
    let A: Float64Array, B: Float64Array, k: number, dense: Float64Array | undefined, sigma: Float64Array | undefined;
    if (o.method === 'cat') {
      ({ A, B } = lin); k = lin.r;
    } else if (o.method === 'svd') {
      const res = await balancedLowRank(engine, lin, Math.min(o.rank ?? kDefault, lin.r), 1);
      A = res.A; B = res.B; k = res.k; sigma = res.sigma;
    } else if (factorLevel) {
      const r0 = mp.parts[0].f.r;
      if (mp.parts.some((p) => p.f.r !== r0)) throw new Error(`${mp.name}: ${o.method} merges the A and B stacks separately (PEFT), which needs equal ranks; here they are ${mp.parts.map((p) => p.f.r).join(', ')} — use the ΔW-level variant (--svd)`);
      const w = mp.parts.map((p) => {
        const c = p.w * p.s;
        if (c < 0) throw new Error(`${mp.name}: ${o.method} weights factors by √(w·s) (PEFT), which needs w·s ≥ 0; got ${c} — use the ΔW-level variant (--svd) for negative weights`);
        return Math.sqrt(c);
      });
      const common = { density: o.density ?? 1, majoritySign: o.majoritySign, seed: o.seed };
      const ka = mp.parts.map((p) => `${p.idx}:${mp.name}:A`), kb = mp.parts.map((p) => `${p.idx}:${mp.name}:B`);
      A = mergeTaskTensors(kernel!, mp.parts.map((p) => p.f.A), w, { ...common, keys: ka, masks: masksOf(o, ka, mp.parts.map((p) => p.f.A.length)) }).merged;
      B = mergeTaskTensors(kernel!, mp.parts.map((p) => p.f.B), w, { ...common, keys: kb, masks: masksOf(o, kb, mp.parts.map((p) => p.f.B.length)) }).merged;
      k = r0;
    } else {
      const deltas = await Promise.all(mp.parts.map((p) => deltaOf(engine, p)));
      const kd = mp.parts.map((p) => `${p.idx}:${mp.name}:delta`);
      dense = mergeTaskTensors(kernel!, deltas, mp.parts.map((p) => p.w), {
        density: o.density ?? 1, majoritySign: o.majoritySign, seed: o.seed, keys: kd, masks: masksOf(o, kd, deltas.map((d) => d.length)),
      }).merged;
      const res = await truncatedFactors(engine, dense, lin.outF, lin.inF, o.rank ?? kDefault);
      A = res.A; B = res.B; k = res.k; sigma = res.sigma;
    }
    refs.set(mp.name, { A, B, k, lin, dense, sigma });
    rows.push({ name: mp.name, k, scale: 1 });
    const dt0 = mp.parts[0].m.A.tensor.dtype;
    const dt = (WRITABLE.includes(dt0) ? dt0 : 'F32') as DType;
    tensors.push({ name: peftKey(mp.name, 'A'), dtype: dt, shape: [k, lin.inF], data: fromFloats(A, dt) });
    tensors.push({ name: peftKey(mp.name, 'B'), dtype: dt, shape: [lin.outF, k], data: fromFloats(B, dt) });
    o.onProgress?.(++done, mods.length, `merged ${mp.name}`);
  }
  if (factorLevel) warnings.push(`${o.method} merges the A and B stacks separately (PEFT semantics): the product contains cross terms BᵢAⱼ; see relErrToLinear per module`);
  if (isDeltaLevel(o.method) && inputs.some((i) => i.adapter.modules.some((m) => m.scale !== 1))) {
    warnings.push('ΔW-level merge weights wᵢ·(sᵢBᵢAᵢ); PEFT multiplies get_delta_weight (already scaled) by wᵢ·sᵢ, i.e. applies sᵢ twice — results differ from PEFT where sᵢ ≠ 1');
  }
  const a0 = inputs[0].adapter;
  const base: Record<string, unknown> = { ...(a0.config ?? { peft_type: 'LORA', base_model_name_or_path: a0.summary.baseModel ?? null }) };
  const targets = new Set(inputs.flatMap((i) => i.adapter.summary.targetModules ?? []));
  base.target_modules = [...targets];
  const config = configForRanks(base, rows, false);
  const md = provenance(`combine-${o.method}`, a0.path, {
    adapters: inputs.map((i) => path.resolve(i.adapter.path)), weights: inputs.map((i) => i.weight), density: o.density ?? null,
    seed: o.seed ?? null, rank: o.rank ?? null, scale: 'folded into factors (lora_alpha = r)',
  });
  const written = writeAdapterFolder(outDir, config, tensors, md);
  try {
    const re = openAdapter(written.dir);
    try {
      const per: MergeModuleResult[] = [];
      let maxAbs = 0, maxRel = 0;
      for (const m2 of re.modules) {
        const ref = refs.get(m2.name);
        if (!ref) throw new Error(`verification: unexpected module ${m2.name}`);
        const f2 = readPair(re, m2);
        if (f2.r !== ref.k) throw new Error(`verification: ${m2.name} has rank ${f2.r}, expected ${ref.k}`);
        const got = { A: f2.A, B: f2.B, r: f2.r, s: m2.scale };
        const d = await lowRankDiff(engine, { A: ref.A, B: ref.B, r: ref.k, s: 1 }, got, f2.outF, f2.inF);
        const tol = productTolerance(d, m2.A.tensor.dtype);
        if (d.refMax > 0 && !(d.errMax <= tol)) throw new Error(`verification failed for ${m2.name}: max error ${d.errMax} > tolerance ${tol}`);
        maxAbs = Math.max(maxAbs, d.errMax);
        if (d.refMax > 0) maxRel = Math.max(maxRel, d.errMax / d.refMax);
        const l = await lowRankDiff(engine, { A: ref.lin.A, B: ref.lin.B, r: ref.lin.r, s: 1 }, got, f2.outF, f2.inF);
        const rl = l.refFro > 0 ? l.errFro / l.refFro : l.errFro;
        const row: MergeModuleResult = { name: m2.name, rank: f2.r, relErrToLinear: rl, relErr: rl, maxAbsError: d.errMax };
        if (ref.dense) {
          const t = await denseLowRankDiff(engine, ref.dense, f2.outF, f2.inF, Float64Array.from(f2.A), Float64Array.from(f2.B.map((v) => v * m2.scale)), f2.r);
          row.relErrToMerged = t.refFro > 0 ? t.errFro / t.refFro : t.errFro;
        } else if (o.method === 'svd') row.relErrToMerged = row.relErrToLinear;
        if (ref.sigma) row.sigma = Array.from(ref.sigma);
        per.push(row);
      }
      if (per.length !== refs.size) throw new Error(`verification: ${per.length} modules written, ${refs.size} expected`);
      return {
        outDir: written.dir, weightsFile: written.weightsFile, method: o.method, density: usesDensity(o.method) ? o.density : undefined,
        seed: /dare/.test(o.method) ? o.seed ?? 0 : undefined, weights: inputs.map((i) => i.weight), adapters: inputs.map((i) => i.adapter.path),
        perModule: per, preview, verification: { maxAbsError: maxAbs, maxRelError: maxRel, passed: true, modules: per.length }, config, warnings,
      };
    } finally {
      re.store.close();
    }
  } catch (e) {
    removeOutput(written.dir);
    throw e;
  }
}
