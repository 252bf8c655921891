/**
 * Vertical LoRA (Zhuolin Fu, arXiv 2406.09315; shared/research/papers.md §6).
 *
 * 1. Analytic parameter counts of the code-faithful parameterisation (vlora/utils/vlorafy.py): a compound of
 *    `size` blocks whose block 0 is a full layer (the base) and blocks k ≥ 1 use, for every listed 2-D weight,
 *    W_k = W_base + (α/r)·B_kᵀA_k (A_k: r×d_in, B_k: r×d_out); listed 1-D weights get W_base + a_k and every other
 *    parameter is a full copy. The cumulative variant W_k = W_base + Σ_{j≤k} B_jᵀA_j has the same count (one
 *    A/B pair per vlorafied block); only what the factors have to represent differs.
 *    `vitB16()` + `vloraParamCount` reproduce §6.3 exactly.
 * 2. Cross-layer increments of a real checkpoint: for each weight kind stacked over layers, the spectra of
 *    W_{l+1} − W_l (what the cumulative variant factorises) and of W_l − W_base (the code-faithful variant),
 *    energy-based effective ranks at 90 / 99 %, the energy a rank-r factor would miss and the parameter saving.
 *    Singular values: TS Jacobi SVD for toy sizes; onnxruntime Gram + TS symEig up to `exactLimit`; beyond that a
 *    randomized range finder (onnxruntime products, TS QR/SVD on the thin factors) giving the top `topK` values,
 *    with the total energy ‖D‖_F² computed exactly.
 */
import { mat } from '../linalg/dense';
import { householderQR, svd, symEig } from '../linalg/decomp';
import { Rng } from '../util/rng';
import type { TensorStore } from '../formats/safetensors';
import type { Engine } from '../engine/ort';
import { batchedGram, matmul as ortMatmul } from '../engine/products';

// ------------------------------------------------------------------------------------------------------------
// Analytic counts
// ------------------------------------------------------------------------------------------------------------

export interface BlockDescription {
  /** Vlorafied 2-D weights: name → [out, in]. */
  weights: Record<string, [number, number]>;
  /** All other parameters of one block (biases, norms…): copied per vlorafied block. */
  other: number;
}

export interface ModelDescription {
  name: string;
  /** Parameters outside the repeated blocks (embeddings, head…). */
  stemHead: number;
  depth: number;
  block: BlockDescription;
}

export function blockParams(b: BlockDescription): number {
  return Object.values(b.weights).reduce((s, [o, i]) => s + o * i, 0) + b.other;
}

export function fullParamCount(m: ModelDescription): number {
  return m.stemHead + m.depth * blockParams(m.block);
}

export type VloraVariant = 'base' | 'cumulative';

export interface VloraConfig {
  compounds: number;
  /** Blocks per compound (vl_size); compounds·size must equal the model depth. */
  size: number;
  rank: number;
  /** Both variants have one A/B pair per vlorafied block, hence the same count. */
  variant?: VloraVariant;
}

/** stemHead + compounds·(full block + (size−1)·(Σ r(d_in + d_out) + other)). */
export function vloraParamCount(m: ModelDescription, c: VloraConfig): number {
  if (c.compounds * c.size !== m.depth) throw new Error(`vlora: ${c.compounds}×${c.size} ≠ depth ${m.depth}`);
  const lora = Object.values(m.block.weights).reduce((s, [o, i]) => s + c.rank * (o + i), 0);
  return m.stemHead + c.compounds * (blockParams(m.block) + (c.size - 1) * (lora + m.block.other));
}

/** timm VisionTransformer() defaults (ViT-B/16, 224², 1000 classes), vlorafied weights as in VisionTransformerVLoRA. */
export function vitB16(): ModelDescription {
  const D = 768, MLP = 3072, NCLS = 1000, P = 16, C = 3, TOK = 197;
  return {
    name: 'ViT-B/16',
    depth: 12,
    stemHead: D * C * P * P + D /* patch conv */ + D /* cls */ + TOK * D /* pos */ + 2 * D /* norm */ + D * NCLS + NCLS /* head */,
    block: {
      weights: { 'attn.qkv.weight': [3 * D, D], 'attn.proj.weight': [D, D], 'mlp.fc1.weight': [MLP, D], 'mlp.fc2.weight': [D, MLP] },
      other: 2 * D /* norm1 */ + 3 * D /* qkv bias */ + D /* proj bias */ + 2 * D /* norm2 */ + MLP /* fc1 bias */ + D /* fc2 bias */,
    },
  };
}

// ------------------------------------------------------------------------------------------------------------
// Spectra of increments
// ------------------------------------------------------------------------------------------------------------

export interface SpectrumOptions {
  engine?: Engine;
  /** min(rows, cols) up to this: TS Jacobi SVD in fp64 (default 64). */
  toyLimit?: number;
  /** min(rows, cols) up to this: ORT Gram (fp64 accumulation) + TS symEig (default 512). */
  exactLimit?: number;
  /** Randomized path: number of leading singular values (default 64). */
  topK?: number;
  /** Randomized path: power iterations (default 3). */
  powerIters?: number;
  seed?: number;
}

export interface Spectrum {
  /** Descending singular values (all of them, or the top ones when `exact` is false). */
  singularValues: Float64Array;
  /** ‖D‖_F² (exact in every path). */
  energy: number;
  exact: boolean;
  method: 'svd' | 'gram' | 'randomized';
}

/** Singular values of a rows×cols fp32 matrix (row-major). */
export async function spectrum(D: Float32Array, rows: number, cols: number, opts: SpectrumOptions = {}): Promise<Spectrum> {
  let energy = 0;
  for (let i = 0; i < D.length; i++) energy += D[i] * D[i];
  const k = Math.min(rows, cols);
  if (k <= (opts.toyLimit ?? 64) || !opts.engine) {
    if (k > 1024) throw new Error(`spectrum: ${rows}×${cols} needs an onnxruntime Engine`);
    return { singularValues: svd(mat(rows, cols, D), { wantU: false, wantV: false }).S, energy, exact: true, method: 'svd' };
  }
  const engine = opts.engine;
  if (k <= (opts.exactLimit ?? 512)) {
    const side = rows <= cols ? 'rows' : 'cols';
    const g = await batchedGram(engine, D, 1, rows, cols, side);
    const { values } = symEig(mat(k, k, g));
    return { singularValues: values.map((v) => Math.sqrt(Math.max(0, v))), energy, exact: true, method: 'gram' };
  }
  // randomized range finder with power iterations (Halko, Martinsson, Tropp 2011, Alg. 4.4)
  const p = Math.min(k, (opts.topK ?? 64) + 8);
  const rng = new Rng(opts.seed ?? 7);
  const Dt = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) Dt[j * rows + i] = D[i * cols + j];
  const orth = (Y: Float32Array, m: number): Float32Array => Float32Array.from(householderQR(mat(m, p, Y)).Q.data);
  let Y = orth(await ortMatmul(engine, D, rows, cols, Float32Array.from(rng.normals(cols * p)), p), rows);
  for (let it = 0; it < (opts.powerIters ?? 3); it++) {
    const Z = orth(await ortMatmul(engine, Dt, cols, rows, Y, p), cols);
    Y = orth(await ortMatmul(engine, D, rows, cols, Z, p), rows);
  }
  const Bt = await ortMatmul(engine, Dt, cols, rows, Y, p); // (QᵀD)ᵀ: cols×p
  const s = svd(mat(cols, p, Bt), { wantU: false, wantV: false }).S;
  return { singularValues: s.slice(0, Math.min(p, opts.topK ?? 64)), energy, exact: false, method: 'randomized' };
}

export interface EffectiveRank {
  rank: number;
  /** True when the computed (top-k) values do not reach the threshold: the rank is larger than `rank`. */
  lowerBound: boolean;
}

/** Smallest k with Σ_{i≤k} σ_i² ≥ p·‖D‖_F². */
export function energyRank(s: Spectrum, p: number): EffectiveRank {
  if (s.energy === 0) return { rank: 0, lowerBound: false };
  let acc = 0;
  for (let i = 0; i < s.singularValues.length; i++) {
    acc += s.singularValues[i] ** 2;
    if (acc >= p * s.energy * (1 - 1e-12)) return { rank: i + 1, lowerBound: false };
  }
  return { rank: s.singularValues.length, lowerBound: !s.exact };
}

/** Fraction of ‖D‖_F² outside the top-r singular directions (relative error² of the best rank-r factor). */
export function tailEnergy(s: Spectrum, r: number): number {
  if (s.energy === 0) return 0;
  let acc = 0;
  for (let i = 0; i < Math.min(r, s.singularValues.length); i++) acc += s.singularValues[i] ** 2;
  return Math.max(0, 1 - acc / s.energy);
}

export interface IncrementReport {
  /** W_to − W_from. */
  from: number;
  to: number;
  sigma: number[];
  exact: boolean;
  method: Spectrum['method'];
  fro: number;
  /** ‖W_to − W_from‖_F / ‖W_from‖_F. */
  relative: number;
  rank90: EffectiveRank;
  rank99: EffectiveRank;
  /** tailEnergy at the VLoRA rank. */
  tailAtRank: number;
}

export interface KindReport {
  /** Weight name with the layer index replaced by `*`. */
  kind: string;
  rows: number;
  cols: number;
  layers: number[];
  /** W_{l+1} − W_l (cumulative variant). */
  consecutive: IncrementReport[];
  /** W_l − W_base of each compound (code-faithful variant). */
  relativeToBase: IncrementReport[];
  fullParams: number;
  /** base weight per compound + one rank-r pair per vlorafied block (same for both variants). */
  vloraParams: number;
  saving: number;
}

export interface CrossLayerReport {
  rank: number;
  compoundSize: number;
  kinds: KindReport[];
  fullParams: number;
  vloraParams: number;
  saving: number;
}

export interface CrossLayerOptions extends SpectrumOptions {
  /** VLoRA rank r (default 8). */
  rank?: number;
  /** Blocks per compound (default: all layers in one compound). */
  compoundSize?: number;
  /** Only weight names containing one of these (default: all stacked 2-D weights). */
  include?: string[];
  /** Skip the W_l − W_base spectra (halves the work). */
  consecutiveOnly?: boolean;
}

const STACK_RE = /^(.*?\b(?:layers|layer|h|blocks|block|resblocks)\.)(\d+)(\..+)$/;

/** Groups 2-D tensors that repeat over layers with the same shape: kind → (layer → name). */
export function stackedWeights(store: TensorStore, include?: string[]): Map<string, { rows: number; cols: number; byLayer: Map<number, string> }> {
  const out = new Map<string, { rows: number; cols: number; byLayer: Map<number, string> }>();
  for (const [name, t] of store.tensors) {
    if (t.shape.length !== 2) continue;
    if (include && !include.some((s) => name.includes(s))) continue;
    const m = STACK_RE.exec(name);
    if (!m) continue;
    const kind = `${m[1]}*${m[3]}`;
    let g = out.get(kind);
    if (!g) out.set(kind, (g = { rows: t.shape[0], cols: t.shape[1], byLayer: new Map() }));
    if (g.rows !== t.shape[0] || g.cols !== t.shape[1]) continue;
    g.byLayer.set(Number(m[2]), name);
  }
  for (const [k, g] of out) if (g.byLayer.size < 2) out.delete(k);
  return out;
}

/** Cross-layer increments per weight kind, their spectra and the VLoRA parameter budget at rank r. */
export async function crossLayerIncrements(store: TensorStore, opts: CrossLayerOptions = {}): Promise<CrossLayerReport> {
  const r = opts.rank ?? 8;
  const kinds: KindReport[] = [];
  const compoundSize = opts.compoundSize ?? 0;
  for (const [kind, g] of stackedWeights(store, opts.include)) {
    const layers = [...g.byLayer.keys()].sort((a, b) => a - b);
    const L = layers.length;
    const size = compoundSize > 0 ? compoundSize : L;
    const rows = g.rows, cols = g.cols;
    const fro = (w: Float32Array): number => { let s = 0; for (let i = 0; i < w.length; i++) s += w[i] * w[i]; return Math.sqrt(s); };
    const report = async (from: number, to: number, Wf: Float32Array, Wt: Float32Array): Promise<IncrementReport> => {
      const D = new Float32Array(Wt.length);
      for (let i = 0; i < D.length; i++) D[i] = Wt[i] - Wf[i];
      const s = await spectrum(D, rows, cols, opts);
      return {
        from, to, sigma: Array.from(s.singularValues), exact: s.exact, method: s.method, fro: Math.sqrt(s.energy),
        relative: Math.sqrt(s.energy) / (fro(Wf) || 1), rank90: energyRank(s, 0.9), rank99: energyRank(s, 0.99), tailAtRank: tailEnergy(s, r),
      };
    };
    const consecutive: IncrementReport[] = [];
    const relativeToBase: IncrementReport[] = [];
    let prev = store.readF32(g.byLayer.get(layers[0])!);
    let base = prev, baseLayer = layers[0];
    let compounds = 1;
    for (let k = 1; k < L; k++) {
      const W = store.readF32(g.byLayer.get(layers[k])!);
      consecutive.push(await report(layers[k - 1], layers[k], prev, W));
      if (k % size === 0) { base = W; baseLayer = layers[k]; compounds++; }
      else if (!opts.consecutiveOnly) relativeToBase.push(await report(baseLayer, layers[k], base, W));
      prev = W;
    }
    const full = L * rows * cols;
    const vl = compounds * rows * cols + (L - compounds) * r * (rows + cols);
    kinds.push({ kind, rows, cols, layers, consecutive, relativeToBase, fullParams: full, vloraParams: vl, saving: 1 - vl / full });
  }
  const fullParams = kinds.reduce((s, k) => s + k.fullParams, 0);
  const vloraParams = kinds.reduce((s, k) => s + k.vloraParams, 0);
  return { rank: r, compoundSize: opts.compoundSize ?? 0, kinds, fullParams, vloraParams, saving: fullParams ? 1 - vloraParams / fullParams : 0 };
}

export interface VloraSavingRow { compounds: number; size: number; rank: number; params: number; saving: number }

/**
 * Parameter budget of VLoRA on the stacked weights of `report` (the chosen model) for every way of
 * cutting its L layers into equal compounds (size | L): per kind, compounds full matrices plus one
 * rank-r pair per other layer (as KindReport.vloraParams). `full` = all stacked weights.
 */
export function vloraSavings(report: CrossLayerReport, rank: number): { full: number; layers: number; rows: VloraSavingRow[] } {
  const full = report.kinds.reduce((s, k) => s + k.fullParams, 0);
  const L = Math.max(0, ...report.kinds.map((k) => k.layers.length));
  const rows: VloraSavingRow[] = [];
  for (let size = 1; size <= L; size++) {
    if (L % size) continue;
    let params = 0;
    for (const k of report.kinds) {
      const n = k.layers.length;
      const compounds = Math.ceil(n / size);
      params += compounds * k.rows * k.cols + (n - compounds) * rank * (k.rows + k.cols);
    }
    rows.push({ compounds: L / size, size, rank, params, saving: full ? 1 - params / full : 0 });
  }
  return { full, layers: L, rows };
}
