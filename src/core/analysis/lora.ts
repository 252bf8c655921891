/**
 * Per-module spectrum of ΔW = s·B·A without ever forming ΔW.
 *
 * With thin QRs B = Q_B R_B and Aᵀ = Q_A R_A, ΔW = Q_B (s R_B R_Aᵀ) Q_Aᵀ, so the singular values
 * of ΔW are those of the r×r core s·R_B·R_Aᵀ. The R factors are obtained by Cholesky-QR: the r×r
 * Gram matrices BᵀB and AAᵀ are computed in fp64 by onnxruntime in one batched run per factor
 * shape (the only step that touches the full factors), then R = chol(G) in fp64. Cholesky-QR loses
 * accuracy as κ(factor)² · ε, so a factor whose κ exceeds `CHOLESKY_KAPPA_LIMIT` (or whose Gram is
 * not positive definite, e.g. B = 0 at initialisation) is re-factored by Householder QR in fp64.
 * All r×r work (Cholesky, Jacobi SVD) is fp64 TypeScript.
 */
import type { Adapter, LoraModule } from '../formats/adapter';
import type { TensorInfo } from '../formats/safetensors';
import { groupOf } from '../formats/adapter';
import { countNonFinite, toFloat32Checked } from '../formats/dtype';
import { CancelToken, throwIfCancelled } from '../formats/errors';
import { cholesky, householderQRColumns, singularValues, conditionNumber } from '../linalg/decomp';
import { symEigTridiag } from '../linalg/eigen';
import { Mat, mat, matmul, transpose, frobenius } from '../linalg/dense';
import type { Engine } from '../engine/ort';
import { batchedGram, GramSide, MAX_RUN_ELEMENTS } from '../engine/products';
import type { AdapterReport, ModuleReport } from '../../shared/report';
import { assignSdLayers } from './layers';
import { analyzeStructured } from './lycoris';

/** Above this factor condition number the Cholesky-QR result is replaced by Householder QR. */
export const CHOLESKY_KAPPA_LIMIT = 300;

export const VERSION = '0.1.0';

export interface AnalyzeOptions {
  engine: Engine;
  /** 'auto' = Cholesky-QR with Householder fallback; 'householder' = always Householder (slow, reference). */
  method?: 'auto' | 'householder';
  token?: CancelToken;
  onProgress?: (done: number, total: number, message: string) => void;
  /** Restrict to modules whose name matches. */
  filter?: (m: LoraModule) => boolean;
  /**
   * Called with each factor's raw stored bytes right after they are read (BF16/F16/F32 factors
   * that are converted from raw bytes; not F64 or quantised ones), before conversion. Lets the
   * doctor's bit scan reuse this read (src/core/doctor/scan.ts). The view is only valid during the call.
   */
  onRawFactor?: (tensor: TensorInfo, raw: Uint8Array) => void;
}

interface FactorJob {
  module: number;
  role: 'A' | 'B';
  /** stored matrix rows × cols (conv kernels flattened) */
  p: number;
  q: number;
  side: GramSide;
  /** F64 factors stay fp64 end to end; everything else is converted to fp32 (exactly). */
  f64: boolean;
  gram?: Mat;
  nonFinite: number;
}

function storedDims(shape: number[]): [number, number] {
  return [shape[0], shape.slice(1).reduce((a, b) => a * b, 1)];
}

/*
 * Scratch buffers reused across batches and analyses (a worker analyses many adapters): fresh
 * multi-MB typed arrays cost page faults and zero-filling on every batch, which was a third of the
 * end-to-end time on a Llama-8B-sized adapter. Safe because ORT copies nothing back into inputs and
 * each batch's Gram matrices are copied out before the next batch is converted.
 */
let bytesScratch = new Uint8Array(0);
let f32Scratch = new Float32Array(0);
let f64Scratch = new Float64Array(0);
const grow = (n: number): number => Math.max(n, 1 << 16);
function scratchBytes(n: number): Uint8Array {
  if (bytesScratch.length < n) bytesScratch = new Uint8Array(grow(n));
  return bytesScratch;
}
function scratchF32(n: number): Float32Array {
  if (f32Scratch.length < n) f32Scratch = new Float32Array(grow(n));
  return f32Scratch.subarray(0, n);
}
function scratchF64(n: number): Float64Array {
  if (f64Scratch.length < n) f64Scratch = new Float64Array(grow(n));
  return f64Scratch.subarray(0, n);
}
/** Frees the scratch buffers (they are kept between analyses otherwise). */
export function releaseAnalysisScratch(): void {
  bytesScratch = new Uint8Array(0);
  f32Scratch = new Float32Array(0);
  f64Scratch = new Float64Array(0);
}

/** Gram side that yields AAᵀ (for A) or BᵀB (for B) from the stored matrix. */
function sideFor(role: 'A' | 'B', transposed: boolean): GramSide {
  // PEFT A [r,in]: A·Aᵀ = rows-Gram; PEFT B [out,r]: BᵀB = cols-Gram. mlx stores transposes.
  if (role === 'A') return transposed ? 'cols' : 'rows';
  return transposed ? 'rows' : 'cols';
}

/**
 * R factor (r×r, upper) of the tall matrix whose Gram is G: Cholesky, or Householder QR on the
 * factor's values, which `load` re-reads in fp64 (the rare fallback path: converted factors are not
 * kept in memory between the batched Gram runs).
 */
function rFactor(job: FactorJob, force: boolean, load: () => Float64Array): { R: Mat; sigma: Float64Array; method: 'cholesky-qr' | 'householder' } {
  if (!force && job.gram) {
    // σ(factor) = √λ(Gram): tridiagonal QL on the r×r Gram is ~10× cheaper than a Jacobi SVD of R,
    // and within the Cholesky-QR regime (κ ≤ 300) its relative error is ≤ rε·κ²/2 < 1e-10.
    const n = job.gram.rows;
    const lambda = symEigTridiag(job.gram.data, n, false).values;
    const lmax = lambda[0], lmin = lambda[n - 1];
    if (lmin > 0 && lmax <= lmin * CHOLESKY_KAPPA_LIMIT * CHOLESKY_KAPPA_LIMIT) {
      const R = cholesky(job.gram);
      if (R) return { R, sigma: lambda.map(Math.sqrt), method: 'cholesky-qr' };
    }
  }
  // Householder on the tall orientation: columns of length `len`, `r` of them.
  const d = load();
  const { p, q } = job;
  const tallIsStored = job.side === 'cols'; // cols-Gram = XᵀX: X (p×q) is already tall with q = r columns
  const r = tallIsStored ? q : p;
  const len = tallIsStored ? p : q;
  const cols: Float64Array[] = [];
  for (let j = 0; j < r; j++) cols.push(new Float64Array(len));
  if (tallIsStored) {
    for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) cols[j][i] = d[i * q + j];
  } else {
    for (let j = 0; j < p; j++) { const c = cols[j]; const off = j * q; for (let i = 0; i < q; i++) c[i] = d[off + i]; }
  }
  if (len < r) {
    // Fewer rows than rank: pad with zero rows so the QR is defined (R is then singular).
    for (let j = 0; j < r; j++) { const c = new Float64Array(r); c.set(cols[j]); cols[j] = c; }
  }
  const { R } = householderQRColumns(cols, Math.max(len, r));
  return { R, sigma: singularValues(R), method: 'householder' };
}

function effectiveRank(s: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  if (sum === 0) return 0;
  let h = 0;
  for (let i = 0; i < s.length; i++) {
    const p = s[i] / sum;
    if (p > 0) h -= p * Math.log(p);
  }
  return Math.exp(h);
}

/** Metrics of one module from its two R factors. */
export function moduleMetrics(scale: number, RA: Mat, RB: Mat, GA: Mat, GB: Mat): Omit<ModuleReport, 'name' | 'layer' | 'kind' | 'group' | 'rank' | 'outFeatures' | 'inFeatures' | 'alpha' | 'scale' | 'scaleSource' | 'dtype' | 'method' | 'dora' | 'sigmaA' | 'sigmaB' | 'kappaA' | 'kappaB'> {
  const core = matmul(RB, transpose(RA));
  for (let i = 0; i < core.data.length; i++) core.data[i] *= scale;
  const sigma = singularValues(core);
  let fro2 = 0, nuc = 0;
  for (const s of sigma) { fro2 += s * s; nuc += s; }
  const s1 = sigma[0] ?? 0;
  let trA = 0, trB = 0;
  const r = GA.rows;
  for (let i = 0; i < r; i++) { trA += GA.data[i * r + i]; trB += GB.data[i * r + i]; }
  const diff = mat(r, r);
  for (let i = 0; i < r * r; i++) diff.data[i] = GB.data[i] - GA.data[i];
  const denom = trA + trB;
  return {
    sigma: Array.from(sigma),
    fro: Math.sqrt(fro2),
    spectral: s1,
    nuclear: nuc,
    stableRank: s1 > 0 ? fro2 / (s1 * s1) : 0,
    effectiveRank: effectiveRank(sigma),
    normA: Math.sqrt(Math.max(trA, 0)),
    normB: Math.sqrt(Math.max(trB, 0)),
    balanceGap: denom > 0 ? frobenius(diff) / denom : 0,
  };
}

/** RᵀR: the Gram matrix implied by an R factor (used when R came from Householder). */
function gramOf(R: Mat): Mat {
  return matmul(transpose(R), R);
}

/**
 * Analyses every LoRA module of an adapter. Reads each factor once by byte range; all full-size
 * products run in batched onnxruntime sessions.
 */
export async function analyzeAdapter(adapter: Adapter, opts: AnalyzeOptions): Promise<AdapterReport> {
  const t0 = performance.now();
  const modules = adapter.modules.filter(opts.filter ?? (() => true));
  const jobs: FactorJob[] = [];
  modules.forEach((m, i) => {
    for (const role of ['A', 'B'] as const) {
      const f = m[role];
      const [p, q] = storedDims(f.tensor.shape);
      jobs.push({ module: i, role, p, q, side: sideFor(role, f.transposed), f64: f.tensor.dtype === 'F64', nonFinite: 0 });
    }
  });
  // Group factor jobs by (side, p, q) so each group is one batched ORT run.
  const groups = new Map<string, FactorJob[]>();
  for (const j of jobs) {
    const k = `${j.side}:${j.p}x${j.q}${j.f64 ? ':f64' : ''}`;
    const g = groups.get(k);
    if (g) g.push(j); else groups.set(k, [j]);
  }
  let readMs = 0, computeMs = 0;
  let done = 0;
  const total = jobs.length;
  for (const g of groups.values()) {
    const per = g[0].p * g[0].q;
    const chunk = Math.max(1, Math.floor(MAX_RUN_ELEMENTS / per));
    for (let start = 0; start < g.length; start += chunk) {
      // Let queued messages (a cancel request) run: ORT runs block this thread while they last.
      await new Promise<void>((r) => setImmediate(r));
      throwIfCancelled(opts.token);
      const part = g.slice(start, start + chunk);
      const tr = performance.now();
      const stacked = part[0].f64 ? scratchF64(part.length * per) : scratchF32(part.length * per);
      part.forEach((j, idx) => {
        const m = modules[j.module];
        const t = m[j.role].tensor;
        const dst = stacked.subarray(idx * per, (idx + 1) * per);
        let bad: number;
        if (dst instanceof Float64Array) {
          dst.set(adapter.store.readF64(t.name));
          const c = countNonFinite(dst);
          bad = c.nan + c.inf;
        } else if (t.quantized) {
          adapter.store.readF32(t.name, dst);
          const c = countNonFinite(dst);
          bad = c.nan + c.inf;
        } else {
          let raw: Uint8Array;
          raw = adapter.store.readRawInto ? adapter.store.readRawInto(t.name, scratchBytes(t.byteLength)) : adapter.store.readRaw(t.name);
          opts.onRawFactor?.(t, raw);
          bad = toFloat32Checked(raw, t.dtype, dst);
        }
        j.nonFinite = bad;
        if (bad) dst.fill(0);
      });
      const tc = performance.now();
      readMs += tc - tr;
      const grams = await batchedGram(opts.engine, stacked, part.length, part[0].p, part[0].q, part[0].side);
      const k = part[0].side === 'cols' ? part[0].q : part[0].p;
      part.forEach((j, idx) => {
        j.gram = mat(k, k, grams.subarray(idx * k * k, (idx + 1) * k * k));
      });
      computeMs += performance.now() - tc;
      done += part.length;
      // Plain language: the host shows "(done/total)" after it.
      opts.onProgress?.(done, total, 'Reading factors');
    }
  }
  throwIfCancelled(opts.token);
  const tSmall = performance.now();
  const reports: ModuleReport[] = [];
  const force = opts.method === 'householder';
  modules.forEach((m, i) => {
    const jA = jobs[2 * i], jB = jobs[2 * i + 1];
    const base = {
      name: m.name, layer: m.layer, kind: m.kind, group: groupOf(m), rank: m.rank,
      outFeatures: m.outFeatures, inFeatures: m.inFeatures, alpha: m.alpha, scale: m.scale,
      scaleSource: m.scaleSource, dtype: m.A.tensor.dtype === m.B.tensor.dtype ? m.A.tensor.dtype : `${m.A.tensor.dtype}/${m.B.tensor.dtype}`,
      dora: !!m.magnitude,
    };
    if (jA.nonFinite || jB.nonFinite) {
      const parts = [];
      if (jA.nonFinite) parts.push(`${m.A.tensor.name} has ${jA.nonFinite} NaN/Inf values`);
      if (jB.nonFinite) parts.push(`${m.B.tensor.name} has ${jB.nonFinite} NaN/Inf values`);
      reports.push({
        ...base, sigma: [], fro: NaN, spectral: NaN, nuclear: NaN, stableRank: NaN, effectiveRank: NaN,
        sigmaA: [], sigmaB: [], kappaA: NaN, kappaB: NaN, normA: NaN, normB: NaN, balanceGap: NaN,
        method: 'cholesky-qr', error: parts.join('; '),
      });
      return;
    }
    const a = rFactor(jA, force, () => adapter.store.readF64(m.A.tensor.name));
    const b = rFactor(jB, force, () => adapter.store.readF64(m.B.tensor.name));
    const GA = a.method === 'householder' ? gramOf(a.R) : jA.gram!;
    const GB = b.method === 'householder' ? gramOf(b.R) : jB.gram!;
    const metrics = moduleMetrics(m.scale, a.R, b.R, GA, GB);
    reports.push({
      ...base, ...metrics,
      sigmaA: Array.from(a.sigma), sigmaB: Array.from(b.sigma),
      kappaA: factorKappa(a.sigma), kappaB: factorKappa(b.sigma),
      method: a.method === 'householder' || b.method === 'householder' ? 'householder' : 'cholesky-qr',
    });
  });
  // LoHa / LoKr / VeRA modules: spectra from their structure (analysis/lycoris.ts).
  if (adapter.structured?.length) reports.push(...(await analyzeStructured({ ...adapter, structured: adapter.structured.filter((m) => { try { return !opts.filter || opts.filter(m as unknown as LoraModule); } catch { return true; } }) }, opts.engine, opts.token)));
  computeMs += performance.now() - tSmall;
  // Stable Diffusion adapters: UNet / text-encoder blocks as the layer axis (analysis/layers.ts).
  assignSdLayers(reports);
  const s = adapter.summary;
  return {
    tool: 'lora-lens',
    version: VERSION,
    adapter: {
      path: adapter.path, name: adapter.name, format: adapter.format, weightsFile: adapter.weightsFile,
      rank: s.rank, alpha: s.alpha, targetModules: s.targetModules, useRslora: s.useRslora, useDora: s.useDora,
      fanInFanOut: s.fanInFanOut, baseModel: s.baseModel, hasRankPattern: s.hasRankPattern, hasAlphaPattern: s.hasAlphaPattern,
    },
    createdAt: new Date().toISOString(),
    engine: { provider: opts.engine.provider, fallbackReason: opts.engine.fallbackReason },
    timings: { readMs, computeMs, totalMs: performance.now() - t0 },
    modules: reports,
    warnings: [...adapter.warnings, ...zeroFactorWarnings(reports)],
  };
}

/** κ of a factor from its singular values (descending): an all-zero factor has κ = ∞, not NaN. */
export function factorKappa(s: ArrayLike<number>): number {
  if (s.length > 0 && s[0] === 0) return Infinity;
  return conditionNumber(s);
}

/** One warning per module with an all-zero factor (κ = ∞): "B = 0: untrained module". */
export function zeroFactorWarnings(reports: { name: string; sigmaA: number[]; sigmaB: number[]; error?: string }[]): string[] {
  const out: string[] = [];
  for (const m of reports) {
    if (m.error) continue;
    if (m.sigmaB.length && m.sigmaB[0] === 0) out.push(`${m.name}: B = 0: untrained module (κ(B) = ∞, ΔW = 0)`);
    else if (m.sigmaA.length && m.sigmaA[0] === 0) out.push(`${m.name}: A = 0: the module adds nothing (κ(A) = ∞, ΔW = 0)`);
  }
  return out;
}

/** Bytes read by an analysis (both factors of every module). */
export function analysedBytes(a: Adapter): number {
  return a.modules.reduce((s, m) => s + m.A.tensor.byteLength + m.B.tensor.byteLength, 0);
}
