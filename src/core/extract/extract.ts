/**
 * LoRA extraction from a full fine-tune: for every 2-D weight that differs between BASE and TUNED,
 * the best rank-k approximation of D = W_tuned − W₀ (Eckart–Young) written as a PEFT adapter with
 * balanced factors B = U_kΣ_k^½, A = Σ_k^½V_kᵀ and scale 1 (lora_alpha = r; rank_pattern /
 * alpha_pattern when the ranks differ).
 *
 * Rank rules: `rank k` (fixed) or `sv_fro x` (smallest k with √(Σ_{i≤k}σᵢ² / ‖D‖_F²) ≥ x, kohya's
 * resize rule, against the EXACT ‖D‖_F, capped by maxRank).
 *
 * Method: randomized SVD (base/rsvd.ts: Halko–Martinsson–Tropp with power iterations, every product
 * with D in onnxruntime) for k + 1 triplets, then an a-posteriori check on the written (rounded)
 * factors, also in onnxruntime:
 *   - relError = ‖D − s·B·A‖_F / ‖D‖_F, computed in row blocks (fp64 accumulation);
 *   - residualSpectral ≈ ‖D − s·B·A‖₂ by power iteration on the residual, compared with the
 *     (k+1)-th singular value estimate σ̃_{k+1}: the optimal rank-k error has ‖·‖₂ = σ_{k+1}, so a
 *     ratio well above 1 means the randomized range missed a direction; the module is then
 *     recomputed once with more power iterations and the ratio is reported either way.
 *
 * Memory: one module at a time (base and tuned tensors read as fp32, D formed in place, the tuned
 * buffer reused), so an 8B pair needs about twice the largest weight matrix (≈ 0.5 GB for a
 * 14336×4096 MLP weight) plus the output factors. Tensors larger than `maxElements` (default 2²⁷,
 * e.g. a 128k-vocabulary lm_head) and embeddings are skipped and listed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, fromFloats, toFloat64 } from '../formats/dtype';
import { FormatError, throwIfCancelled } from '../formats/errors';
import { openAdapter, openStore } from '../formats/open';
import { readJsonFile } from '../formats/peft';
import { SafetensorsStore, TensorStore } from '../formats/safetensors';
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';
import { rsvd } from '../base/rsvd';
import { SurgeryOptions, provenance } from '../surgery/balora';
import { configForRanks } from '../surgery/rank';
import { OutTensor, assertNotInput, removeOutput, writeAdapterFolder } from '../formats/writer';

export type ExtractRule = { kind: 'rank'; k: number } | { kind: 'sv_fro'; value: number; maxRank?: number };

export interface ExtractOptions extends SurgeryOptions {
  rule: ExtractRule;
  /** Output dtype (default F32: the reported error is then the truncation's, not BF16 rounding's). */
  dtype?: DType;
  /** Only modules whose last name component is listed (e.g. q_proj, v_proj). */
  targets?: string[];
  /** Skip tensors with more elements (default 2²⁷). */
  maxElements?: number;
  /** Power iterations of the randomized SVD (default 2; raised to 6 when the check fails). */
  powerIters?: number;
  oversample?: number;
  seed?: number;
}

export interface ExtractModule {
  name: string;
  tensor: string;
  outFeatures: number;
  inFeatures: number;
  rank: number;
  /** ‖D − s·B·A‖_F / ‖D‖_F of the written factors. */
  relError: number;
  /** Same value as relError (the key used by combine/reduce reports). */
  relErr: number;
  /** ‖D‖_F */
  deltaFro: number;
  /** Retained Frobenius fraction √(Σ_{i≤k}σ̃ᵢ²)/‖D‖_F (sv_fro's criterion). */
  froKept: number;
  /** Leading singular values of D (randomized estimates; k + 1 of them). */
  sigma: number[];
  /** σ̃_{k+1}: the optimal rank-k error's spectral norm (estimate). */
  sigmaNext: number;
  /** Power-iteration estimate of ‖D − s·B·A‖₂. */
  residualSpectral: number;
  /** residualSpectral / sigmaNext (≈ 1 for an optimal truncation). */
  optimality: number;
  powerIters: number;
  /** sv_fro: false when maxRank was reached before the target. */
  reachedTarget?: boolean;
  layout: 'out,in' | 'in,out';
}

export interface ExtractResult {
  outDir: string;
  weightsFile: string;
  base: string;
  tuned: string;
  rule: string;
  modules: ExtractModule[];
  skipped: { tensor: string; reason: string }[];
  unchanged: number;
  summary: { modules: number; meanRelError: number; maxRelError: number; parameters: number };
  config: Record<string, unknown>;
  warnings: string[];
}

interface ModelRef { store: TensorStore; config?: Record<string, unknown>; label: string }

/** HF model folder (model.safetensors | *.safetensors.index.json | one *.safetensors), a safetensors file or an index. */
export function openModel(p: string): ModelRef {
  let st: fs.Stats;
  try { st = fs.statSync(p); } catch { throw new FormatError(p, 'does not exist'); }
  if (!st.isDirectory()) return { store: openStore(p), label: p };
  const names = fs.readdirSync(p);
  const cfgFile = path.join(p, 'config.json');
  const config = fs.existsSync(cfgFile) ? readJsonFile(cfgFile) : undefined;
  let store: TensorStore;
  if (names.includes('model.safetensors')) store = SafetensorsStore.openFile(path.join(p, 'model.safetensors'));
  else if (names.includes('model.safetensors.index.json')) store = SafetensorsStore.openIndex(path.join(p, 'model.safetensors.index.json'));
  else {
    const idx = names.filter((n) => n.endsWith('.safetensors.index.json'));
    const st1 = names.filter((n) => n.endsWith('.safetensors'));
    if (idx.length === 1) store = SafetensorsStore.openIndex(path.join(p, idx[0]));
    else if (st1.length === 1) store = SafetensorsStore.openFile(path.join(p, st1[0]));
    else throw new FormatError(p, `is a folder without model.safetensors or a single *.safetensors.index.json (found ${names.slice(0, 5).join(', ') || 'nothing'})`);
  }
  return { store, config, label: p };
}

const EMBEDDING = /(^|\.)(embed_tokens|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|embed_positions|shared|embeddings)(\.|$)/;
const FLOAT = new Set(['F64', 'F32', 'F16', 'BF16']);

/** Row-blocked ‖D − B·A‖_F² and ‖D‖_F² (D fp32 m×n, A k×n, B m×k fp64), bounded scratch. */
function residualGraph(): Uint8Array {
  const g = new GraphBuilder('extract_residual');
  g.input('d', 'float32', ['p', 'n']);
  g.input('a', 'float64', ['k', 'n']);
  g.input('b', 'float64', ['p', 'k']);
  const dd = g.op('Cast', ['d'], { to: 11 });
  const e = g.op('Sub', [dd, g.op('MatMul', ['b', 'a'])]);
  g.op('ReduceSumSquare', [e], { keepdims: 0 }, 'errSq');
  g.op('ReduceSumSquare', [dd], { keepdims: 0 }, 'refSq');
  g.output('errSq', 'float64', []);
  g.output('refSq', 'float64', []);
  return g.build();
}

/** z = Rᵀ R x for R = D − B·A (fp32 products; used only for a norm estimate). */
function powerGraph(): Uint8Array {
  const g = new GraphBuilder('extract_rtr');
  g.input('d', 'float32', ['m', 'n']);
  g.input('a', 'float32', ['k', 'n']);
  g.input('b', 'float32', ['m', 'k']);
  g.input('x', 'float32', ['n', 1]);
  const y = g.op('Sub', [g.op('MatMul', ['d', 'x']), g.op('MatMul', ['b', g.op('MatMul', ['a', 'x'])])]);
  const dty = g.op('Gemm', ['d', y], { transA: 1 });
  const aty = g.op('Gemm', ['a', g.op('Gemm', ['b', y], { transA: 1 })], { transA: 1 });
  g.op('Sub', [dty, aty], {}, 'z');
  g.output('z', 'float32', ['n', 1]);
  return g.build();
}

const ROW_BLOCK_ELEMENTS = 4 * 1024 * 1024;

async function residualFro(engine: Engine, D: Float32Array, m: number, n: number, A: Float64Array, B: Float64Array, k: number): Promise<{ err: number; ref: number }> {
  const s = await engine.session('extract_residual', residualGraph);
  const rows = Math.max(1, Math.floor(ROW_BLOCK_ELEMENTS / n));
  const kk = Math.max(k, 1);
  const Ak = k > 0 ? A : new Float64Array(n), Bk = k > 0 ? B : new Float64Array(m);
  let err = 0, ref = 0;
  for (let r0 = 0; r0 < m; r0 += rows) {
    const p = Math.min(rows, m - r0);
    const res = await engine.run(s, {
      d: engine.tensor('float32', D.subarray(r0 * n, (r0 + p) * n), [p, n]),
      a: engine.tensor('float64', Ak, [kk, n]),
      b: engine.tensor('float64', Bk.subarray(r0 * kk, (r0 + p) * kk), [p, kk]),
    });
    err += (res.errSq.data as Float64Array)[0];
    ref += (res.refSq.data as Float64Array)[0];
  }
  return { err: Math.sqrt(err), ref: Math.sqrt(ref) };
}

async function residualSpectral(engine: Engine, D: Float32Array, m: number, n: number, A: Float64Array, B: Float64Array, k: number, seed: number, iters = 12): Promise<number> {
  const s = await engine.session('extract_rtr', powerGraph);
  const kk = Math.max(k, 1);
  const a = k > 0 ? Float32Array.from(A) : new Float32Array(n), b = k > 0 ? Float32Array.from(B) : new Float32Array(m);
  let x = new Float32Array(n);
  let st = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { st = (Math.imul(st, 1664525) + 1013904223) >>> 0; x[i] = st / 4294967296 - 0.5; }
  let lambda = 0;
  const Dt = engine.tensor('float32', D, [m, n]);
  const At = engine.tensor('float32', a, [kk, n]);
  const Bt = engine.tensor('float32', b, [m, kk]);
  for (let it = 0; it < iters; it++) {
    let nx = 0;
    for (let i = 0; i < n; i++) nx += x[i] * x[i];
    nx = Math.sqrt(nx);
    if (!(nx > 0)) return 0;
    for (let i = 0; i < n; i++) x[i] /= nx;
    const res = await engine.run(s, { d: Dt, a: At, b: Bt, x: engine.tensor('float32', x, [n, 1]) });
    const z = res.z.data as Float32Array;
    let xz = 0;
    for (let i = 0; i < n; i++) xz += x[i] * z[i];
    lambda = Math.max(lambda, xz); // Rayleigh quotient of RᵀR: a lower bound of ‖R‖₂²
    x = Float32Array.from(z);
  }
  return Math.sqrt(Math.max(lambda, 0));
}

export function describeExtractRule(r: ExtractRule): string {
  return r.kind === 'rank' ? `rank ${r.k}` : `sv_fro ${r.value}${r.maxRank ? ` (max rank ${r.maxRank})` : ''}`;
}

/** Smallest k with √(Σ_{i≤k}σᵢ²/total²) ≥ x (k ≤ sigma.length); `reached` false when none is. */
export function svFroRank(sigma: ArrayLike<number>, totalFro: number, x: number): { k: number; reached: boolean } {
  const t2 = totalFro * totalFro;
  if (!(t2 > 0)) return { k: 1, reached: true };
  let c = 0;
  for (let i = 0; i < sigma.length; i++) {
    c += sigma[i] * sigma[i];
    if (c / t2 >= x * x * (1 - 1e-12)) return { k: i + 1, reached: true };
  }
  return { k: Math.max(1, sigma.length), reached: false };
}

/**
 * Extracts a PEFT LoRA adapter from (BASE, TUNED) into the NEW folder `outDir`, verifies it by
 * reopening, and reports each module's relative error.
 */
export async function extractLora(engine: Engine, basePath: string, tunedPath: string, outDir: string, o: ExtractOptions): Promise<ExtractResult> {
  const rule = o.rule;
  if (rule.kind === 'rank' && !(Number.isInteger(rule.k) && rule.k >= 1)) throw new Error(`--rank must be a positive integer, got ${rule.k}`);
  if (rule.kind === 'sv_fro' && !(rule.value > 0 && rule.value <= 1)) throw new Error(`--sv-fro must be in (0, 1], got ${rule.value}`);
  const base = openModel(basePath);
  let tuned: ModelRef;
  try { tuned = openModel(tunedPath); } catch (e) { base.store.close(); throw e; }
  try {
    assertNotInput(outDir, basePath, tunedPath, base.store.path, tuned.store.path);
    const cfg = tuned.config ?? base.config;
    const modelType = typeof cfg?.model_type === 'string' ? cfg.model_type : undefined;
    const conv1d = modelType === 'gpt2';
    const maxEl = o.maxElements ?? 2 ** 27;
    const skipped: ExtractResult['skipped'] = [];
    const warnings: string[] = [];
    const mods: ExtractModule[] = [];
    const tensors: OutTensor[] = [];
    const rows: { name: string; k: number; scale: number }[] = [];
    const written = new Map<string, { A: Uint8Array; B: Uint8Array }>();
    let unchanged = 0;
    const cands = [...tuned.store.tensors.values()].filter((t) => t.name.endsWith('.weight') && t.shape.length === 2);
    for (const t of tuned.store.tensors.values()) {
      if (!base.store.tensors.has(t.name) && t.name.endsWith('.weight')) skipped.push({ tensor: t.name, reason: 'not in BASE' });
      else if (t.name.endsWith('.weight') && t.shape.length > 2) skipped.push({ tensor: t.name, reason: `${t.shape.length}-D weight (conv kernels are not extracted)` });
    }
    const sorted = cands.sort((a, b) => (a.file === b.file ? a.offset - b.offset : a.file.localeCompare(b.file)));
    let done = 0;
    for (const t of sorted) {
      throwIfCancelled(o.token);
      const name = t.name.replace(/\.weight$/, '');
      const kind = name.split('.').pop() ?? name;
      const b0 = base.store.tensors.get(t.name);
      if (!b0) continue;
      if (o.targets && !o.targets.includes(kind)) continue;
      if (EMBEDDING.test(name)) { skipped.push({ tensor: t.name, reason: 'embedding (PEFT embedding LoRA is not extracted)' }); continue; }
      if (b0.shape.join('x') !== t.shape.join('x')) { skipped.push({ tensor: t.name, reason: `shape ${b0.shape.join('×')} in BASE vs ${t.shape.join('×')} in TUNED` }); continue; }
      if (!FLOAT.has(t.dtype) || !FLOAT.has(b0.dtype)) { skipped.push({ tensor: t.name, reason: `dtype ${b0.dtype}/${t.dtype} is not a float type` }); continue; }
      if (t.numel > maxEl) { skipped.push({ tensor: t.name, reason: `${t.numel} elements > limit ${maxEl}` }); continue; }
      const D = tuned.store.readF32(t.name);
      const W0 = base.store.readF32(b0.name);
      let fro2 = 0, bad = 0;
      for (let i = 0; i < D.length; i++) {
        const v = D[i] - W0[i];
        if (!Number.isFinite(v)) bad++;
        D[i] = v;
        fro2 += v * v;
      }
      if (bad) throw new FormatError(tuned.store.path, `tensor "${t.name}": W_tuned − W₀ has ${bad} NaN/Inf values`);
      if (fro2 === 0) { unchanged++; continue; }
      const [m, n] = t.shape;
      const dmin = Math.min(m, n);
      const kMax = rule.kind === 'rank' ? Math.min(rule.k, dmin) : Math.min(rule.maxRank ?? 128, dmin);
      const dt: DType = o.dtype ?? 'F32';
      let q = o.powerIters ?? 2;
      let best: { mod: ExtractModule; A: Uint8Array; B: Uint8Array } | undefined;
      for (let attempt = 0; attempt < 2; attempt++) {
        const r = await rsvd(engine, D, m, n, Math.min(kMax + 1, dmin), { powerIters: q, oversample: o.oversample ?? 8, seed: (o.seed ?? 1234) + done });
        let k = kMax, reached: boolean | undefined;
        if (rule.kind === 'sv_fro') ({ k, reached } = svFroRank(r.S.subarray(0, kMax), Math.sqrt(fro2), rule.value));
        k = Math.min(k, r.k);
        // stored [m, n] = U S Vᵀ; PEFT wants ΔW [out, in]: for Conv1D layouts ([in, out]) ΔW = V S Uᵀ.
        const transposed = conv1d && !/lm_head/.test(name);
        const [outF, inF] = transposed ? [n, m] : [m, n];
        const Bv = new Float64Array(outF * k), Av = new Float64Array(k * inF);
        for (let j = 0; j < k; j++) {
          const sq = Math.sqrt(r.S[j]);
          if (!transposed) {
            for (let i = 0; i < m; i++) Bv[i * k + j] = r.U[i * r.k + j] * sq;
            for (let i = 0; i < n; i++) Av[j * n + i] = r.V[i * r.k + j] * sq;
          } else {
            for (let i = 0; i < n; i++) Bv[i * k + j] = r.V[i * r.k + j] * sq;
            for (let i = 0; i < m; i++) Av[j * m + i] = r.U[i * r.k + j] * sq;
          }
        }
        const Ab = fromFloats(Av, dt), Bb = fromFloats(Bv, dt);
        const Ar = toFloat64(Ab, dt), Br = toFloat64(Bb, dt);
        // Residual in the stored layout: stored ≈ Bs·As with Bs = B (or Aᵀ), As = A (or Bᵀ).
        let As = Ar, Bs = Br;
        if (transposed) {
          As = new Float64Array(k * n); Bs = new Float64Array(m * k);
          for (let j = 0; j < k; j++) { for (let i = 0; i < n; i++) As[j * n + i] = Br[i * k + j]; for (let i = 0; i < m; i++) Bs[i * k + j] = Ar[j * m + i]; }
        }
        const fr = await residualFro(engine, D, m, n, As, Bs, k);
        const sigmaNext = r.k > k ? r.S[k] : 0;
        const spec = await residualSpectral(engine, D, m, n, As, Bs, k, 7 + done);
        const optimality = sigmaNext > 0 ? spec / sigmaNext : spec <= 1e-6 * (r.S[0] || 1) ? 1 : Infinity;
        let kept = 0;
        for (let j = 0; j < k; j++) kept += r.S[j] * r.S[j];
        const mod: ExtractModule = {
          name, tensor: t.name, outFeatures: outF, inFeatures: inF, rank: k, relError: fr.ref > 0 ? fr.err / fr.ref : 0, relErr: fr.ref > 0 ? fr.err / fr.ref : 0, deltaFro: Math.sqrt(fro2),
          froKept: Math.sqrt(Math.min(1, kept / fro2)), sigma: Array.from(r.S), sigmaNext, residualSpectral: spec, optimality, powerIters: q,
          reachedTarget: reached, layout: transposed ? 'in,out' : 'out,in',
        };
        if (!best || mod.relError < best.mod.relError) best = { mod, A: Ab, B: Bb };
        if (optimality <= 1.25) break;
        q = Math.max(q + 4, 6);
      }
      const bm = best!.mod;
      if (bm.optimality > 1.25) warnings.push(`${name}: residual spectral norm ${bm.residualSpectral.toExponential(3)} is ${bm.optimality.toFixed(2)}× σ̃_{k+1} after ${bm.powerIters} power iterations (flat spectrum: the randomized range is not exact)`);
      if (bm.reachedTarget === false) warnings.push(`${name}: --sv-fro target not reached within rank ${bm.rank} (kept ${(100 * bm.froKept).toFixed(1)}%)`);
      mods.push(bm);
      rows.push({ name, k: bm.rank, scale: 1 });
      written.set(name, { A: best!.A, B: best!.B });
      tensors.push({ name: `base_model.model.${name}.lora_A.weight`, dtype: dt, shape: [bm.rank, bm.inFeatures], data: best!.A });
      tensors.push({ name: `base_model.model.${name}.lora_B.weight`, dtype: dt, shape: [bm.outFeatures, bm.rank], data: best!.B });
      o.onProgress?.(++done, sorted.length, `${name}: rank ${bm.rank}, rel err ${bm.relError.toExponential(2)}`);
    }
    if (mods.length === 0) throw new FormatError(tunedPath, `no 2-D weight differs from ${basePath} (${unchanged} identical, ${skipped.length} skipped${skipped[0] ? `, e.g. ${skipped[0].tensor}: ${skipped[0].reason}` : ''})`);
    const nameOrPath = typeof base.config?._name_or_path === 'string' && base.config._name_or_path ? base.config._name_or_path : path.resolve(basePath);
    const baseCfg: Record<string, unknown> = {
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: nameOrPath, inference_mode: true,
      target_modules: mods.map((m) => m.name), lora_dropout: 0, bias: 'none', fan_in_fan_out: conv1d, use_dora: false, init_lora_weights: true,
    };
    const config = configForRanks(baseCfg, rows, false);
    const md = provenance('extract', tunedPath, { base: path.resolve(basePath), rule: describeExtractRule(rule), method: 'randomized SVD (onnxruntime) with a-posteriori residual check', scale: 'lora_alpha = r (scale 1)' });
    const out = writeAdapterFolder(outDir, config, tensors, md);
    try {
      const re = openAdapter(out.dir);
      try {
        if (re.modules.length !== mods.length) throw new Error(`verification: ${re.modules.length} modules read back, ${mods.length} written`);
        for (const m2 of re.modules) {
          const w = written.get(m2.name);
          const em = mods.find((x) => x.name === m2.name);
          if (!w || !em) throw new Error(`verification: unexpected module ${m2.name}`);
          if (m2.rank !== em.rank || Math.abs(m2.scale - 1) > 1e-12) throw new Error(`verification: ${m2.name} reads back as rank ${m2.rank}, scale ${m2.scale}`);
          const ra = re.store.readRaw(m2.A.tensor.name), rb = re.store.readRaw(m2.B.tensor.name);
          if (Buffer.compare(Buffer.from(ra), Buffer.from(w.A)) !== 0 || Buffer.compare(Buffer.from(rb), Buffer.from(w.B)) !== 0) throw new Error(`verification: ${m2.name} factors differ after reading back`);
        }
      } finally {
        re.store.close();
      }
    } catch (e) {
      removeOutput(out.dir);
      throw e;
    }
    const rel = mods.map((m) => m.relError);
    return {
      outDir: out.dir, weightsFile: out.weightsFile, base: basePath, tuned: tunedPath, rule: describeExtractRule(rule), modules: mods, skipped, unchanged,
      summary: { modules: mods.length, meanRelError: rel.reduce((a, b) => a + b, 0) / rel.length, maxRelError: Math.max(...rel), parameters: mods.reduce((s, m) => s + m.rank * (m.inFeatures + m.outFeatures), 0) },
      config, warnings,
    };
  } finally {
    base.store.close();
    tuned.store.close();
  }
}
