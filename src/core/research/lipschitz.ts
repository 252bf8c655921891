/**
 * Lipschitz constant of softmax self-attention (Castin, Ablin, Peyré, "How Smooth Is Attention?", ICML 2024;
 * shared/research/papers.md §3).
 *
 * Single head, weights in PyTorch layout Q, K, V ∈ R^{d_head×d} (V may also be d×d in toy setups):
 *   A = KᵀQ/√d_head,  s_ij = x_jᵀ A x_i = ⟨Q x_i, K x_j⟩/√d_head,  P_ij = softmax_j(s_ij),
 *   f(X)_i = Σ_j P_ij V x_j.
 *
 * - `attentionJvp` / `attentionVjp`: analytic Jacobian-vector products in fp64 (checked against finite
 *   differences in test/unit/research.test.ts).
 * - `localLipschitz`: ‖J_f(X)‖₂ by power iteration on JᵀJ (what the authors do with torch.func.jvp/vjp).
 * - `codeBound`: the authors' `compute_bound` (data-dependent); `radiusBound`: the same formula evaluated for an
 *   ASSUMED input radius R (data-free; see its comment).
 * - `adversarialInput`: the closed-form inputs of the authors' `adversarial_data` (papers.md §3.4).
 * - `attentionLipschitzTable`: per layer / head ‖V_h‖₂, ‖K_hᵀQ_h‖₂/√d_head and the radius bound for a Llama-style
 *   or GPT-2 (fused Conv1D c_attn) checkpoint, base vs adapted (W + s·B·A). Full weight products go through onnxruntime (Gram matrices); only
 *   d_head×d_head problems are solved in TypeScript.
 */
import { Mat, mat, matmul, transpose } from '../linalg/dense';
import { cholesky, symEig } from '../linalg/decomp';
import { Rng } from '../util/rng';
import type { TensorStore } from '../formats/safetensors';
import type { Adapter, LoraModule } from '../formats/adapter';
import type { Engine } from '../engine/ort';
import { batchedGram, matmul as ortMatmul } from '../engine/products';

/** Input tokens: n×d, row-major (row i = token x_i). */
export type Tokens = Mat;

export interface AttentionHead {
  /** d×d bilinear form A (score s_ij = x_jᵀ A x_i). */
  A: Mat;
  /** Value map (d_v×d). */
  V: Mat;
  /** Causal mask: token i attends to j ≤ i only. */
  causal?: boolean;
}

/** A = KᵀQ/√d_head (d_head = rows of Q). */
export function bilinearForm(Q: Mat, K: Mat, dHead = Q.rows): Mat {
  const A = matmul(transpose(K), Q);
  const s = 1 / Math.sqrt(dHead);
  for (let i = 0; i < A.data.length; i++) A.data[i] *= s;
  return A;
}

export function headFromQKV(Q: Mat, K: Mat, V: Mat, causal = false): AttentionHead {
  return { A: bilinearForm(Q, K), V, causal };
}

/** Largest singular value of a small dense matrix (λ_max of the smaller Gram via Jacobi). */
export function spectralNorm(a: Mat): number {
  const g = a.rows <= a.cols ? matmul(a, transpose(a)) : matmul(transpose(a), a);
  return Math.sqrt(Math.max(0, symEig(g).values[0]));
}

interface Forward { P: Float64Array; Y: Float64Array; AX: Float64Array; n: number; d: number }

function forward(h: AttentionHead, X: Tokens): Forward {
  const n = X.rows, d = X.cols;
  if (h.A.rows !== d || h.A.cols !== d) throw new Error(`attention: A is ${h.A.rows}×${h.A.cols}, tokens have d=${d}`);
  const x = X.data, a = h.A.data;
  const AX = new Float64Array(n * d); // row i = A x_i
  for (let i = 0; i < n; i++) for (let r = 0; r < d; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += a[r * d + c] * x[i * d + c];
    AX[i * d + r] = s;
  }
  const P = new Float64Array(n * n);
  const Y = new Float64Array(n * d); // y_i = Σ_j P_ij x_j
  for (let i = 0; i < n; i++) {
    const jmax = h.causal ? i + 1 : n;
    let mx = -Infinity;
    for (let j = 0; j < jmax; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += x[j * d + c] * AX[i * d + c];
      P[i * n + j] = s;
      if (s > mx) mx = s;
    }
    let z = 0;
    for (let j = 0; j < jmax; j++) { const e = Math.exp(P[i * n + j] - mx); P[i * n + j] = e; z += e; }
    for (let j = 0; j < jmax; j++) {
      const p = (P[i * n + j] /= z);
      for (let c = 0; c < d; c++) Y[i * d + c] += p * x[j * d + c];
    }
  }
  return { P, Y, AX, n, d };
}

function applyV(V: Mat, Y: Float64Array, n: number): Mat {
  const d = V.cols, dv = V.rows;
  const out = mat(n, dv);
  for (let i = 0; i < n; i++) for (let r = 0; r < dv; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += V.data[r * d + c] * Y[i * d + c];
    out.data[i * dv + r] = s;
  }
  return out;
}

/** f(X): n×d_v, f(X)_i = Σ_j softmax_j(x_jᵀ A x_i) V x_j. */
export function attention(h: AttentionHead, X: Tokens): Mat {
  const f = forward(h, X);
  return applyV(h.V, f.Y, f.n);
}

/** Softmax attention matrix P (n×n). */
export function attentionMatrix(h: AttentionHead, X: Tokens): Mat {
  const f = forward(h, X);
  return mat(f.n, f.n, f.P);
}

/** J_f(X)·Ẋ (Ẋ: n×d) → n×d_v. Analytic, fp64. */
export function attentionJvp(h: AttentionHead, X: Tokens, dX: Mat, fw?: Forward): Mat {
  const { P, AX, n, d } = fw ?? forward(h, X);
  const x = X.data, dx = dX.data, a = h.A.data;
  // A ẋ_i
  const AdX = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let r = 0; r < d; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += a[r * d + c] * dx[i * d + c];
    AdX[i * d + r] = s;
  }
  const dY = new Float64Array(n * d);
  const ds = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const jmax = h.causal ? i + 1 : n;
    let mean = 0;
    for (let j = 0; j < jmax; j++) {
      // ṡ_ij = ẋ_jᵀ A x_i + x_jᵀ A ẋ_i
      let s = 0;
      for (let c = 0; c < d; c++) s += dx[j * d + c] * AX[i * d + c] + x[j * d + c] * AdX[i * d + c];
      ds[j] = s;
      mean += P[i * n + j] * s;
    }
    for (let j = 0; j < jmax; j++) {
      const p = P[i * n + j];
      const dp = p * (ds[j] - mean); // Ṗ_ij
      for (let c = 0; c < d; c++) dY[i * d + c] += dp * x[j * d + c] + p * dx[j * d + c];
    }
  }
  return applyV(h.V, dY, n);
}

/** J_f(X)ᵀ·G (G: n×d_v) → n×d. Analytic, fp64. */
export function attentionVjp(h: AttentionHead, X: Tokens, G: Mat, fw?: Forward): Mat {
  const { P, AX, n, d } = fw ?? forward(h, X);
  const x = X.data, a = h.A.data, V = h.V, dv = V.rows;
  // ȳ_i = Vᵀ g_i
  const Yb = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let r = 0; r < dv; r++) {
    const g = G.data[i * dv + r];
    if (g === 0) continue;
    for (let c = 0; c < d; c++) Yb[i * d + c] += V.data[r * d + c] * g;
  }
  const Xb = mat(n, d);
  const xb = Xb.data;
  const Bx = new Float64Array(n * d); // Σ_j s̄_ij x_j per i (to multiply by Aᵀ afterwards)
  const pb = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const jmax = h.causal ? i + 1 : n;
    let mean = 0;
    for (let j = 0; j < jmax; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += Yb[i * d + c] * x[j * d + c];
      pb[j] = s; // P̄_ij
      mean += P[i * n + j] * s;
    }
    for (let j = 0; j < jmax; j++) {
      const p = P[i * n + j];
      const sb = p * (pb[j] - mean); // s̄_ij
      for (let c = 0; c < d; c++) {
        xb[j * d + c] += p * Yb[i * d + c] + sb * AX[i * d + c]; // from P_ij x_j and from x_j in s_ij
        Bx[i * d + c] += sb * x[j * d + c];
      }
    }
  }
  // x̄_i += Aᵀ (Σ_j s̄_ij x_j)
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) {
    let s = 0;
    for (let r = 0; r < d; r++) s += a[r * d + c] * Bx[i * d + r];
    xb[i * d + c] += s;
  }
  return Xb;
}

export interface PowerIterationOptions {
  /** Stop when |μ − μ_prev| ≤ tol·μ (relative; the authors use an absolute 1e-4). Default 1e-10. */
  tol?: number;
  maxIter?: number;
  seed?: number;
}

export interface LipschitzEstimate {
  /** ‖J_f(X)‖₂ = √μ. */
  lipschitz: number;
  iterations: number;
  converged: boolean;
}

/** Local Lipschitz constant ‖J_f(X)‖₂ by power iteration on JᵀJ with the analytic JVP/VJP. */
export function localLipschitz(h: AttentionHead, X: Tokens, opts: PowerIterationOptions = {}): LipschitzEstimate {
  const tol = opts.tol ?? 1e-10, maxIter = opts.maxIter ?? 2000;
  const fw = forward(h, X);
  const rng = new Rng(opts.seed ?? 12345);
  let u = mat(X.rows, X.cols, rng.normals(X.rows * X.cols));
  const normalize = (m: Mat): number => {
    let s = 0;
    for (const v of m.data) s += v * v;
    const nr = Math.sqrt(s);
    if (nr > 0) for (let i = 0; i < m.data.length; i++) m.data[i] /= nr;
    return nr;
  };
  normalize(u);
  let mu = 0, prev = -Infinity, it = 0, converged = false;
  for (; it < maxIter; it++) {
    const v = attentionVjp(h, X, attentionJvp(h, X, u, fw), fw);
    mu = 0;
    for (let i = 0; i < v.data.length; i++) mu += u.data[i] * v.data[i];
    if (normalize(v) === 0) { converged = true; break; }
    u = v;
    if (Math.abs(mu - prev) <= tol * Math.abs(mu)) { converged = true; it++; break; }
    prev = mu;
  }
  return { lipschitz: Math.sqrt(Math.max(0, mu)), iterations: it, converged };
}

/**
 * The authors' bound for one head (adversarial_data/toolbox.py::compute_bound), data-dependent:
 *   ‖V‖₂ · sqrt(R_A² · r² · (n+1) + n),  r = max_{i<j}‖x_i − x_j‖ (diameter),  R_A = max_i ‖A x_i‖.
 * Sum it over heads for a multi-head layer without output projection.
 */
export function codeBound(h: AttentionHead, X: Tokens, normV = spectralNorm(h.V)): number {
  const n = X.rows, d = X.cols, x = X.data;
  let diam2 = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += (x[i * d + c] - x[j * d + c]) ** 2;
    if (s > diam2) diam2 = s;
  }
  const { AX } = forward(h, X);
  let ra2 = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < d; c++) s += AX[i * d + c] ** 2;
    if (s > ra2) ra2 = s;
  }
  return normV * Math.sqrt(ra2 * diam2 * (n + 1) + n);
}

/**
 * Data-free version of the authors' bound, valid for every input of n tokens with ‖x_i‖ ≤ R (an ASSUMED input
 * norm, e.g. √d after an RMS/LayerNorm with unit gain; it is not a property of the weights):
 *   r = 2R (diameter of the ball),  R_h = ‖A_h‖₂·R  (≥ max_i ‖A_h x_i‖),
 *   bound = ‖V_h‖₂ · sqrt(R_h² · r² · (n+1) + n)  ≥ codeBound(X) for every such X.
 */
export function radiusBound(normV: number, normA: number, n: number, R: number): number {
  const Rh = normA * R, r = 2 * R;
  return normV * Math.sqrt(Rh * Rh * r * r * (n + 1) + n);
}

/**
 * Adversarial input of the authors' code (papers.md §3.4): real eigenpairs of A (symmetrised part is used
 * when A is not symmetric); if λ_max > −8 λ_min: X = R·[u, u/2, …, u/2] with u = eigvec(λ_max), otherwise
 * X = R·[−u, u, …, u] with u = eigvec(λ_min).
 */
export function adversarialInput(A: Mat, n: number, R: number): Tokens {
  const d = A.rows;
  const S = mat(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) S.data[i * d + j] = 0.5 * (A.data[i * d + j] + A.data[j * d + i]);
  const { values, vectors } = symEig(S);
  const lmax = values[0], lmin = values[d - 1];
  const X = mat(n, d);
  const top = lmax > -8 * lmin;
  const col = top ? 0 : d - 1;
  for (let i = 0; i < n; i++) {
    const f = top ? (i === 0 ? 1 : 0.5) : i === 0 ? -1 : 1;
    for (let c = 0; c < d; c++) X.data[i * d + c] = R * f * vectors.data[c * d + col];
  }
  return X;
}

/** Least-squares slope of log y against log x. */
export function logLogSlope(xs: ArrayLike<number>, ys: ArrayLike<number>): number {
  const n = xs.length;
  let sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (let i = 0; i < n; i++) {
    const lx = Math.log(xs[i]), ly = Math.log(ys[i]);
    sx += lx; sy += ly; sxx += lx * lx; sxy += lx * ly;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

export interface ScalingPoint { n: number; lipschitz: number; codeBound: number; radiusBound: number }

/** Lip(n) on adversarial inputs for each n (papers.md §3.5), with both bounds. */
export function lipschitzScaling(h: AttentionHead, ns: number[], R: number, opts: PowerIterationOptions = {}): { points: ScalingPoint[]; slope: number } {
  const normV = spectralNorm(h.V), normA = spectralNorm(h.A);
  const points = ns.map((n) => {
    const X = adversarialInput(h.A, n, R);
    return { n, lipschitz: localLipschitz(h, X, opts).lipschitz, codeBound: codeBound(h, X, normV), radiusBound: radiusBound(normV, normA, n, R) };
  });
  return { points, slope: logLogSlope(points.map((p) => p.n), points.map((p) => p.lipschitz)) };
}

// ------------------------------------------------------------------------------------------------------------
// Per-layer / per-head table for a real checkpoint
// ------------------------------------------------------------------------------------------------------------

export type ProjectionKind = 'q' | 'k' | 'v' | 'o';

export interface AttentionLayout {
  /** 'llama': separate q/k/v/o_proj nn.Linear weights [out, in]; 'gpt2': fused attn.c_attn and attn.c_proj (Conv1D, stored [in, out]). */
  family: 'llama' | 'gpt2';
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Stored tensor holding a projection, e.g. (l, 'q') → `model.layers.l.self_attn.q_proj.weight`; GPT-2: `h.l.attn.c_attn.weight` for q, k and v. */
  weightName(layer: number, kind: ProjectionKind): string;
  /** Module name as used by adapters (no `.weight`); GPT-2: the fused c_attn for q, k and v. */
  moduleName(layer: number, kind: ProjectionKind): string;
}

/** Layout of a Llama-style model from its config.json (num_attention_heads, num_key_value_heads, head_dim). */
export function llamaAttentionLayout(config: Record<string, unknown>): AttentionLayout {
  const num = (k: string): number | undefined => (typeof config[k] === 'number' ? (config[k] as number) : undefined);
  const hidden = num('hidden_size');
  const heads = num('num_attention_heads');
  const layers = num('num_hidden_layers');
  if (!hidden || !heads || !layers) throw new Error('config.json lacks hidden_size / num_attention_heads / num_hidden_layers');
  const kvHeads = num('num_key_value_heads') ?? heads;
  const headDim = num('head_dim') ?? hidden / heads;
  const moduleName = (l: number, k: ProjectionKind): string => `model.layers.${l}.self_attn.${k}_proj`;
  return { family: 'llama', layers, hidden, heads, kvHeads, headDim, moduleName, weightName: (l, k) => `${moduleName(l, k)}.weight` };
}

/**
 * Layout of a GPT-2 checkpoint (config n_embd / n_head / n_layer): per layer one fused Conv1D
 * `attn.c_attn` [d, 3d] (columns q | k | v) and `attn.c_proj` [d, d], stored [in, out]. `prefix` is
 * the tensors' prefix ('' for `h.0…`, 'transformer.' for `transformer.h.0…`).
 */
export function gpt2AttentionLayout(config: Record<string, unknown>, prefix = ''): AttentionLayout {
  const num = (k: string): number | undefined => (typeof config[k] === 'number' ? (config[k] as number) : undefined);
  const hidden = num('n_embd') ?? num('hidden_size');
  const heads = num('n_head') ?? num('num_attention_heads');
  const layers = num('n_layer') ?? num('num_hidden_layers');
  if (!hidden || !heads || !layers) throw new Error('config.json lacks n_embd / n_head / n_layer');
  if (hidden % heads) throw new Error(`n_embd ${hidden} is not a multiple of n_head ${heads}`);
  const moduleName = (l: number, k: ProjectionKind): string => `${prefix}h.${l}.attn.${k === 'o' ? 'c_proj' : 'c_attn'}`;
  return { family: 'gpt2', layers, hidden, heads, kvHeads: heads, headDim: hidden / heads, moduleName, weightName: (l, k) => `${moduleName(l, k)}.weight` };
}

/** The attention layout of a checkpoint: GPT-2 (config model_type gpt2 or n_embd, names h.N.attn.c_attn) or Llama-style. */
export function attentionLayout(config: Record<string, unknown>, tensorNames: Iterable<string>): AttentionLayout {
  if (config.model_type === 'gpt2' || typeof config.n_embd === 'number') {
    for (const n of tensorNames) {
      const m = /^(.*?)h\.0\.attn\.c_attn\.weight$/.exec(n);
      if (m) return gpt2AttentionLayout(config, m[1]);
    }
    throw new Error('GPT-2 config, but no h.0.attn.c_attn.weight tensor in the weights');
  }
  return llamaAttentionLayout(config);
}

/** The adapter module updating `name` (exact, or equal up to a leading `transformer.` / `model.` wrapper). */
export function findModule(adapter: Adapter | undefined, name: string): LoraModule | undefined {
  if (!adapter) return undefined;
  const norm = (x: string): string => x.replace(/^(transformer\.|model\.(?=h\.))/, '');
  return adapter.modules.find((m) => m.name === name) ?? adapter.modules.find((m) => norm(m.name) === norm(name));
}

export interface HeadLipschitzRow {
  layer: number;
  head: number;
  kvHead: number;
  normV: number;
  /** ‖K_hᵀQ_h‖₂/√d_head = ‖A_h‖₂. */
  normA: number;
  /** radiusBound(normV, normA, n, R) for this head. */
  bound: number;
  adapted?: { normV: number; normA: number; bound: number };
}

export interface LipschitzTable {
  n: number;
  R: number;
  /** How R was chosen, shown next to the bound. */
  radiusNote: string;
  rows: HeadLipschitzRow[];
  /** Per layer: Σ_h bound (the authors' multi-head sum), base and adapted. */
  layers: { layer: number; bound: number; adaptedBound?: number }[];
  /** Which of q/k/v LoRA modules were applied per layer. */
  adaptedModules: string[];
}

export interface LipschitzTableOptions {
  engine: Engine;
  adapter?: Adapter;
  /** Sequence length n in the bound (default 128). */
  n?: number;
  /** Assumed token norm bound R (default √hidden: RMSNorm output with unit gain). */
  R?: number;
}

/**
 * One attention projection of `layer` as a [out, in] fp32 matrix (torch nn.Linear orientation), plus
 * s·B·A of the adapter's module when it has one (the product through onnxruntime). GPT-2 Conv1D
 * weights are stored [in, out] and transposed; its fused c_attn [d, 3d] → [3d, d] gets ΔW (PEFT's
 * B·A is [out, in] = [3d, d], fan_in_fan_out only describes the base's storage) and then the rows of
 * q, k or v are cut out.
 */
export async function projectionWeight(
  store: TensorStore, layout: AttentionLayout, layer: number, kind: ProjectionKind, engine: Engine, adapter?: Adapter,
): Promise<{ w: Float32Array; rows: number; cols: number; module?: string }> {
  const name = layout.weightName(layer, kind);
  const info = store.tensors.get(name);
  if (!info) throw new Error(`${store.path}: no tensor "${name}"`);
  if (info.shape.length !== 2) throw new Error(`${name}: expected a 2-D weight, got shape [${info.shape.join(', ')}]`);
  const d = layout.hidden;
  let [rows, cols] = info.shape;
  let w = store.readF32(name);
  if (layout.family === 'gpt2') {
    // Conv1D: [in, out]. c_attn is [d, 3d], c_proj [d, d].
    const out = kind === 'o' ? d : 3 * d;
    if (rows !== d || cols !== out) throw new Error(`${name}: a GPT-2 Conv1D weight of shape [${d}, ${out}] was expected, got [${rows}, ${cols}]`);
    const t = new Float32Array(w.length);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = w[i * cols + j];
    w = t;
    [rows, cols] = [cols, rows];
  }
  const mod = findModule(adapter, layout.moduleName(layer, kind));
  if (mod && adapter) {
    if (mod.conv) throw new Error(`${mod.name}: conv LoRA is not supported here`);
    if (mod.outFeatures !== rows || mod.inFeatures !== cols) throw new Error(`${mod.name}: ΔW is ${mod.outFeatures}×${mod.inFeatures}, weight is ${rows}×${cols}`);
    const r = mod.rank;
    const readFactor = (f: LoraModule['A'], p: number, q: number): Float32Array => {
      const raw = adapter.store.readF32(f.tensor.name);
      if (!f.transposed) return raw;
      const t = new Float32Array(p * q); // stored q×p → p×q
      for (let i = 0; i < q; i++) for (let j = 0; j < p; j++) t[j * q + i] = raw[i * p + j];
      return t;
    };
    const B = readFactor(mod.B, rows, r);
    const A = readFactor(mod.A, r, cols);
    const BA = await ortMatmul(engine, B, rows, r, A, cols);
    for (let i = 0; i < w.length; i++) w[i] += mod.scale * BA[i];
  }
  if (layout.family === 'gpt2' && kind !== 'o') {
    const off = { q: 0, k: 1, v: 2 }[kind] * d;
    w = w.slice(off * cols, (off + d) * cols);
    rows = d;
  }
  return { w, rows, cols, module: mod?.name };
}

export interface HeadMatrices { Q: Mat; K: Mat; V: Mat; O: Mat }

/** Q_h, K_h, V_h (d_head×d, fp64) and O_h (d×d_head) of one head, base or adapted (W + s·B·A). */
export async function headMatrices(store: TensorStore, lay: AttentionLayout, layer: number, head: number, engine: Engine, adapter?: Adapter): Promise<HeadMatrices> {
  const dh = lay.headDim, kv = Math.floor(head / (lay.heads / lay.kvHeads));
  const rowsOf = async (kind: 'q' | 'k' | 'v', r0: number): Promise<Mat> => {
    const p = await projectionWeight(store, lay, layer, kind, engine, adapter);
    return mat(dh, p.cols, Float64Array.from(p.w.subarray(r0 * p.cols, (r0 + dh) * p.cols)));
  };
  const o = await projectionWeight(store, lay, layer, 'o', engine, adapter);
  const O = mat(o.rows, dh);
  for (let i = 0; i < o.rows; i++) for (let j = 0; j < dh; j++) O.data[i * dh + j] = o.w[i * o.cols + head * dh + j];
  return { Q: await rowsOf('q', head * dh), K: await rowsOf('k', kv * dh), V: await rowsOf('v', kv * dh), O };
}

/** Per-head row Grams W_h W_hᵀ (d_head×d_head, fp64) of a projection stored as [heads·d_head, d]. */
async function headGrams(engine: Engine, w: Float32Array, heads: number, headDim: number, d: number): Promise<Mat[]> {
  const g = await batchedGram(engine, w, heads, headDim, d, 'rows');
  const out: Mat[] = [];
  for (let h = 0; h < heads; h++) out.push(mat(headDim, headDim, g.subarray(h * headDim * headDim, (h + 1) * headDim * headDim)));
  return out;
}

/**
 * ‖KᵀQ‖₂ from the d_head×d_head Grams G_K = KKᵀ and G_Q = QQᵀ: σ(KᵀQ)² = eig(G_K G_Q) = eig(Lᵀ G_Q L) with
 * G_K = L Lᵀ (Cholesky; symmetric square root when G_K is singular).
 */
export function normKtQFromGrams(GK: Mat, GQ: Mat): number {
  const R = cholesky(GK); // G_K = RᵀR
  let L = R ? transpose(R) : undefined;
  if (!L) {
    const { values, vectors } = symEig(GK);
    const k = GK.rows;
    L = mat(k, k);
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
      let s = 0;
      for (let m = 0; m < k; m++) s += vectors.data[i * k + m] * Math.sqrt(Math.max(0, values[m])) * vectors.data[j * k + m];
      L.data[i * k + j] = s;
    }
  }
  const M = matmul(matmul(transpose(L), GQ), L);
  return Math.sqrt(Math.max(0, symEig(M).values[0]));
}

async function headNorms(engine: Engine, q: Float32Array, k: Float32Array, v: Float32Array, lay: AttentionLayout): Promise<{ normA: number[]; normV: number[] }> {
  const d = lay.hidden, dh = lay.headDim;
  const GQ = await headGrams(engine, q, lay.heads, dh, d);
  const GK = await headGrams(engine, k, lay.kvHeads, dh, d);
  const GV = await headGrams(engine, v, lay.kvHeads, dh, d);
  const group = lay.heads / lay.kvHeads;
  const normA: number[] = [], normV: number[] = [];
  for (let h = 0; h < lay.heads; h++) {
    const kv = Math.floor(h / group);
    normA.push(normKtQFromGrams(GK[kv], GQ[h]) / Math.sqrt(dh));
    normV.push(Math.sqrt(Math.max(0, symEig(GV[kv]).values[0])));
  }
  return { normA, normV };
}

/**
 * Per layer and head: ‖V_h‖₂, ‖K_hᵀQ_h‖₂/√d_head and the radius bound (n tokens of norm ≤ R), for the base model
 * and, when an adapter is given, for W + s·B·A on its q/k/v modules (heads share K/V under GQA).
 */
export async function attentionLipschitzTable(store: TensorStore, layout: AttentionLayout, opts: LipschitzTableOptions): Promise<LipschitzTable> {
  const n = opts.n ?? 128;
  const R = opts.R ?? Math.sqrt(layout.hidden);
  const radiusNote = opts.R === undefined ? `R = √hidden = ${R.toFixed(3)} (assumed: RMSNorm output with unit gain)` : `R = ${R} (assumed input norm)`;
  if (layout.heads % layout.kvHeads !== 0) throw new Error(`heads ${layout.heads} not a multiple of kv heads ${layout.kvHeads}`);
  const rows: HeadLipschitzRow[] = [];
  const layers: LipschitzTable['layers'] = [];
  const adaptedModules: string[] = [];
  for (let l = 0; l < layout.layers; l++) {
    const kinds = ['q', 'k', 'v'] as const;
    const base = await Promise.all(kinds.map((k) => projectionWeight(store, layout, l, k, opts.engine)));
    const b = await headNorms(opts.engine, base[0].w, base[1].w, base[2].w, layout);
    let a: { normA: number[]; normV: number[] } | undefined;
    const lmods = kinds.map((k) => findModule(opts.adapter, layout.moduleName(l, k)));
    if (opts.adapter) {
      if (lmods.some((m) => m)) {
        const ad = await Promise.all(kinds.map((k, i) => lmods[i] ? projectionWeight(store, layout, l, k, opts.engine, opts.adapter) : Promise.resolve(base[i])));
        a = await headNorms(opts.engine, ad[0].w, ad[1].w, ad[2].w, layout);
        for (const m of new Set(lmods)) if (m) adaptedModules.push(m.name);
      } else a = b;
    }
    let lb = 0, la = 0;
    for (let h = 0; h < layout.heads; h++) {
      const bound = radiusBound(b.normV[h], b.normA[h], n, R);
      lb += bound;
      const row: HeadLipschitzRow = { layer: l, head: h, kvHead: Math.floor(h / (layout.heads / layout.kvHeads)), normV: b.normV[h], normA: b.normA[h], bound };
      if (a) {
        const ab = radiusBound(a.normV[h], a.normA[h], n, R);
        la += ab;
        row.adapted = { normV: a.normV[h], normA: a.normA[h], bound: ab };
      }
      rows.push(row);
    }
    layers.push(a ? { layer: l, bound: lb, adaptedBound: la } : { layer: l, bound: lb });
  }
  return { n, R, radiusNote, rows, layers, adaptedModules };
}
