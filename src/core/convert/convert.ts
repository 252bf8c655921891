/**
 * Adapter format conversion (issue 5): any adapter `openAdapter` reads → PEFT folder, kohya single file,
 * mlx-lm folder or llama.cpp GGUF LoRA, always into a NEW path, followed by a round-trip check.
 *
 * Every module is first brought to a canonical form: HF module name, PEFT orientation A [r, in], B [out, r]
 * (fp32), scale s with ΔW = s·B·A. Targets then encode it:
 *
 *   peft   `base_model.model.<name>.lora_A.weight` / `lora_B`, adapter_config.json r / lora_alpha = the most
 *          common rank / alpha (= s·r); other modules go to rank_pattern / alpha_pattern (exact, no folding).
 *   kohya  `<k>.lora_down.weight` / `.lora_up.weight` / `.alpha` (= s·r), k = `lora_unet_…` for `unet.…`,
 *          `lora_te_…` / `lora_te2_…` for text encoders, otherwise the documented generic mapping
 *          `lora_<name with . → _>`. The original names are kept in metadata `lora_lens.module_names`
 *          so a kohya → X conversion restores them. ss_network_dim / ss_network_alpha = most common values.
 *   mlx    `<name>.lora_a` [in, r] / `.lora_b` [r, out], one lora_parameters.scale: modules whose s differs
 *          get s/scale folded into lora_b (written F32).
 *   gguf   `blk.N.<kind>.weight.lora_a` (torch [r, in]) / `.lora_b` ([out, r]), one adapter.lora.alpha; modules
 *          whose s ≠ alpha/r get the ratio folded into lora_b (F32). Only Llama-style module names can be
 *          named (others are refused). For general.architecture = llama the q/k lora_b rows get the RoPE
 *          permutation of convert_hf_to_gguf.py (needs the head counts), and it is undone when reading.
 *
 * Round trip: the output is re-opened with openAdapter and, per module, ‖s'B'A' − sBA‖_F / ‖sBA‖_F is computed
 * from QR factors of [B', −B] (never forming ΔW); σ(sBA) from R_B·R_Aᵀ. Above the dtype tolerance the output
 * is deleted and an error is thrown.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { DType, dtypeEpsilon, fromFloats } from '../formats/dtype';
import { CancelToken, throwIfCancelled } from '../formats/errors';
import { openAdapter } from '../formats/open';
import { MLX_WEIGHTS, readJsonFile } from '../formats/peft';
import { encodeSafetensors } from '../formats/safetensors';
import { parseJsonText, setOwn, stringMap } from '../formats/safejson';
import { GgufStore } from '../formats/gguf';
import { householderR, singularValues } from '../linalg/decomp';
import { mat, Mat } from '../linalg/dense';
import { assertNotInput, OutTensor, OutputExistsError, removeOutput, writeAdapterFolder, writeNewFileAtomic } from '../formats/writer';
import { Engine } from '../engine/ort';
import { lowRankDiff } from '../surgery/balora';
import type { Verification } from '../../shared/verification';
import { peftLoraConfig } from '../surgery/peftConfig';
import { encodeGguf, GgufOutTensor, hfNameFromLlamaCpp, llamaCppName, ropeKind, ropePermutation } from './gguf';

import type { ConvertResult, ConvertTarget, ModuleCheck } from '../../shared/convert';
export type { ConvertResult, ConvertTarget, ModuleCheck };
export const CONVERT_TARGETS: readonly ConvertTarget[] = ['peft', 'kohya', 'mlx', 'gguf'];

export interface ConvertOptions {
  /** GGUF general.architecture; inferred (llama) from the base model when possible, else required. */
  architecture?: string;
  /** Attention heads / KV heads (Llama q/k RoPE permutation for GGUF); read from the base config when found. */
  heads?: number;
  kvHeads?: number;
  /** Base model folder or config.json (head counts, architecture). */
  base?: string;
  /** GGUF tensor type: auto = F16 when every source factor is F16 and nothing is folded, else F32. */
  ggufType?: 'auto' | 'F32' | 'F16';
  token?: CancelToken;
  onProgress?: (done: number, total: number, message: string) => void;
  /** onnxruntime engine for the max-abs verification (a CPU engine is created when absent). */
  engine?: Engine;
}



interface Canon {
  src: LoraModule;
  name: string;
  /** fp32 PEFT orientation, HF row order. */
  A: Float32Array;
  B: Float32Array;
  aShape: number[];
  bShape: number[];
  rows: number;
  cols: number;
  r: number;
  s: number;
  dtype: DType;
}

interface Planned {
  c: Canon;
  outName: string;
  outScale: number;
  folded: boolean;
  /** GGUF row order of B: outRow k = canonical row perm[k]. */
  perm?: Int32Array;
}

const isFloat = (d: DType): d is 'F32' | 'F16' | 'BF16' => d === 'F32' || d === 'F16' || d === 'BF16';

function transpose32(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

/** Factors of a module in PEFT orientation (fp32). */
export function readFactors(a: Adapter, m: LoraModule): { A: Float32Array; B: Float32Array } {
  let A = a.store.readF32(m.A.tensor.name);
  let B = a.store.readF32(m.B.tensor.name);
  if (m.A.transposed) A = transpose32(A, m.inFeatures, m.rank);
  if (m.B.transposed) B = transpose32(B, m.rank, m.outFeatures);
  return { A, B };
}

function permuteRows(B: Float32Array, r: number, perm: Int32Array): Float32Array {
  const out = new Float32Array(B.length);
  for (let k = 0; k < perm.length; k++) out.set(B.subarray(perm[k] * r, (perm[k] + 1) * r), k * r);
  return out;
}

function mode<T>(xs: T[]): T {
  const c = new Map<T, number>();
  let best = xs[0], bc = 0;
  for (const x of xs) { const n = (c.get(x) ?? 0) + 1; c.set(x, n); if (n > bc) { bc = n; best = x; } }
  return best;
}

/** Tidy s·r (alpha) so that 15.999999999 prints as 16. */
const tidy = (x: number): number => { const r = Math.round(x * 1e9) / 1e9; return Math.abs(r - x) <= 1e-12 * Math.max(1, Math.abs(x)) ? r : x; };

// --------------------------------------------------------------------------------------------------- ΔW checks

function toMat(a: Float32Array | Float64Array, rows: number, cols: number, s = 1): Mat {
  const m = mat(rows, cols);
  for (let i = 0; i < a.length; i++) m.data[i] = s * a[i];
  return m;
}

function mul(a: Mat, b: Mat): Mat {
  const out = mat(a.rows, b.cols);
  const n = a.cols, p = b.cols;
  for (let i = 0; i < a.rows; i++) for (let k = 0; k < n; k++) {
    const v = a.data[i * n + k];
    if (v === 0) continue;
    for (let j = 0; j < p; j++) out.data[i * p + j] += v * b.data[k * p + j];
  }
  return out;
}

function transposeMat(a: Mat): Mat {
  const t = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = a.data[i * a.cols + j];
  return t;
}

function fro(m: Mat): number { let s = 0; for (const v of m.data) s += v * v; return Math.sqrt(s); }

/** σ(s·B·A) from R factors (B: out×r, A: r×in), descending. */
export function loraSigma(B: Float32Array, A: Float32Array, s: number, out: number, inF: number, r: number): number[] {
  const Bm = toMat(B, out, r), At = transposeMat(toMat(A, r, inF, s));
  const Rb = out >= r ? householderR(Bm) : Bm;
  const Ra = inF >= r ? householderR(At) : At;
  return Array.from(singularValues(mul(Rb, transposeMat(Ra))));
}

/** ‖s'B'A' − sBA‖_F via QR of [B', −B] (k = r' + r columns). */
export function loraDiff(Bo: Float32Array, Ao: Float32Array, so: number, ro: number, B: Float32Array, A: Float32Array, s: number, r: number, out: number, inF: number): number {
  const k = ro + r;
  const U = mat(out, k);
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < ro; j++) U.data[i * k + j] = Bo[i * ro + j];
    for (let j = 0; j < r; j++) U.data[i * k + ro + j] = -B[i * r + j];
  }
  const W = mat(k, inF);
  for (let j = 0; j < ro; j++) for (let c = 0; c < inF; c++) W.data[j * inF + c] = so * Ao[j * inF + c];
  for (let j = 0; j < r; j++) for (let c = 0; c < inF; c++) W.data[(ro + j) * inF + c] = s * A[j * inF + c];
  const Ru = out >= k ? householderR(U) : U;
  return fro(mul(Ru, W));
}

// --------------------------------------------------------------------------------------------------- names

/** kohya module name for a module path (see the file comment for the mapping). */
export function kohyaName(name: string): string {
  if (/^lora_(unet|te\d?|transformer)_/.test(name)) return name;
  const u = (s: string): string => s.replace(/[.:]/g, '_');
  let m = /^unet\.(.+)$/.exec(name);
  if (m) return `lora_unet_${u(m[1])}`;
  m = /^text_encoder(?:_(\d))?\.(.+)$/.exec(name);
  if (m) return `lora_te${m[1] ?? ''}_${u(m[2])}`;
  m = /^transformer\.(.+)$/.exec(name);
  if (m) return `lora_transformer_${u(m[1])}`;
  return `lora_${u(name)}`;
}

export const KOHYA_NAMES_KEY = 'lora_lens.module_names';

function findBaseConfig(a: Adapter, base?: string): Record<string, unknown> | undefined {
  const cands: string[] = [];
  if (base) cands.push(base.endsWith('.json') ? base : path.join(base, 'config.json'));
  const b = a.summary.baseModel;
  if (b && !base) {
    const dir = fs.statSync(a.path).isDirectory() ? a.path : path.dirname(a.path);
    cands.push(path.resolve(dir, b, 'config.json'));
  }
  for (const c of cands) {
    try { if (fs.existsSync(c)) return readJsonFile(c); } catch { /* ignore */ }
  }
  if (base) throw new Error(`${base}: no config.json found`);
  return undefined;
}

// --------------------------------------------------------------------------------------------------- main

/** Converts `adapter` to `target`, writing the NEW path `out`, and verifies the round trip. */
export async function convertAdapter(adapter: Adapter, target: ConvertTarget, out: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  if (!CONVERT_TARGETS.includes(target)) throw new Error(`unknown target "${String(target)}" (peft, kohya, mlx or gguf)`);
  if (fs.existsSync(out)) throw new OutputExistsError(out);
  assertNotInput(out, adapter.path, adapter.weightsFile);
  const warnings: string[] = [];
  const progress = opts.onProgress ?? ((): void => undefined);
  const baseCfg = findBaseConfig(adapter, opts.base);
  const modelType = typeof baseCfg?.model_type === 'string' ? baseCfg.model_type : undefined;
  const heads = opts.heads ?? (typeof baseCfg?.num_attention_heads === 'number' ? baseCfg.num_attention_heads : undefined);
  const kvHeads = opts.kvHeads ?? (typeof baseCfg?.num_key_value_heads === 'number' ? baseCfg.num_key_value_heads : heads);

  // ---- canonical modules (input names restored, GGUF RoPE permutation undone)
  // Original names recorded by our kohya writer: only own string values count (hostile metadata may
  // hold objects, or a module named "constructor" / "__proto__"); anything else is ignored with a warning.
  let nameMap = new Map<string, string>();
  const namesText = adapter.format === 'kohya' ? adapter.store.metadata[KOHYA_NAMES_KEY] : undefined;
  if (typeof namesText === 'string' && namesText) {
    try {
      const parsed = parseJsonText(namesText, adapter.weightsFile, `__metadata__["${KOHYA_NAMES_KEY}"]`);
      nameMap = stringMap(parsed);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || nameMap.size !== Object.keys(parsed).length) {
        warnings.push(`${adapter.weightsFile}: __metadata__["${KOHYA_NAMES_KEY}"] is not an object of strings; its non-string entries are ignored`);
      }
    } catch (e) {
      warnings.push(`${adapter.weightsFile}: __metadata__["${KOHYA_NAMES_KEY}"] ignored (${(e as Error).message})`);
    }
  }
  const inArch = adapter.format === 'gguf' && adapter.store instanceof GgufStore ? String(adapter.store.kv.get('general.architecture') ?? '') : undefined;
  const canon: Canon[] = [];
  const total = adapter.modules.length;
  for (const [i, m] of adapter.modules.entries()) {
    throwIfCancelled(opts.token);
    progress(i, total * 2, `reading ${m.name}`);
    let { A, B } = readFactors(adapter, m);
    let name = nameMap.get(m.name) ?? m.name;
    if (adapter.format === 'gguf') {
      const hf = hfNameFromLlamaCpp(m.name);
      if (hf) name = hf;
      const rk = ropeKind(m.name);
      if (rk && inArch === 'llama') {
        const h = rk === 'q' ? heads : kvHeads;
        if (!h) throw new Error(`${adapter.path}: ${m.name} is RoPE-permuted by llama.cpp; give the head counts (--heads N --kv-heads M or --base CONFIG) to undo it`);
        B = permuteRows(B, m.rank, ropePermutation(m.outFeatures, h, true));
      }
    }
    canon.push({
      src: m, name, A, B, aShape: m.A.transposed ? [m.rank, m.inFeatures] : [...m.A.tensor.shape],
      bShape: m.B.transposed ? [m.outFeatures, m.rank] : [...m.B.tensor.shape],
      rows: m.outFeatures, cols: m.inFeatures, r: m.rank, s: m.scale, dtype: m.A.tensor.dtype,
    });
  }
  if (new Set(canon.map((c) => c.name)).size !== canon.length) throw new Error(`${adapter.path}: two modules map to the same name`);

  // ---- lossy-field warnings
  const dora = canon.filter((c) => c.src.magnitude);
  if (dora.length && target !== 'peft') warnings.push(`DoRA: ${dora.length} magnitude vector(s) are dropped; ${target} holds plain LoRA, so the converted adapter is NOT the DoRA adapter's weight (only s·B·A is kept)`);
  const emb = canon.filter((c) => /(embed|wte|wpe|lm_head|embedding)/i.test(c.name) || /lora_embedding/.test(c.src.A.tensor.name));
  if (emb.length && target !== 'peft') warnings.push(`${emb.length} embedding / lm_head module(s) (e.g. ${emb[0].name}): converted as linear factors; check the target tool accepts them`);
  if (adapter.summary.modulesToSave.length) warnings.push(`modules_to_save (${adapter.summary.modulesToSave.join(', ')}) are full weights, not LoRA: ${target === 'peft' ? 'their tensors are copied' : 'not converted'}`);
  if (adapter.otherTensors.length && target !== 'peft') warnings.push(`${adapter.otherTensors.length} non-LoRA tensor(s) (e.g. ${adapter.otherTensors[0].name}) are not converted`);
  if (adapter.summary.fanInFanOut && target !== 'peft') warnings.push('fan_in_fan_out (GPT-2 Conv1D): the factors give ΔW in [out, in]; the base stores W as [in, out], so a consumer must apply ΔWᵀ to it');
  const conv = canon.filter((c) => c.src.conv);
  if (conv.length && (target === 'mlx' || target === 'gguf')) throw new Error(`${target} cannot hold convolution LoRA (${conv.length} modules, e.g. ${conv[0].name}); convert to peft or kohya`);

  // ---- plan per target
  const plans: Planned[] = [];
  let outDtype: DType = 'F32';
  const allSame = (d: DType): boolean => canon.every((c) => c.dtype === d);
  const srcDtype: DType = isFloat(canon[0]?.dtype ?? 'F32') && canon.every((c) => c.dtype === canon[0].dtype) ? canon[0].dtype : 'F32';
  let architecture: string | undefined;
  let globalScale = 0, globalAlpha = 0, globalRank = mode(canon.map((c) => c.r));
  if (target === 'peft' || target === 'kohya') {
    outDtype = srcDtype;
    for (const c of canon) plans.push({ c, outName: target === 'peft' ? c.name : kohyaName(c.name), outScale: c.s, folded: false });
    if (target === 'kohya') {
      const dup = new Map<string, string>();
      for (const p of plans) {
        const prev = dup.get(p.outName);
        if (prev) throw new Error(`kohya names collide: "${prev}" and "${p.c.name}" both become "${p.outName}"`);
        dup.set(p.outName, p.c.name);
      }
    }
    globalAlpha = mode(canon.map((c) => tidy(c.s * c.r)));
  } else if (target === 'mlx') {
    globalScale = mode(canon.map((c) => c.s));
    for (const c of canon) plans.push({ c, outName: c.name, outScale: globalScale, folded: Math.abs(c.s / globalScale - 1) > 1e-12 });
    outDtype = plans.some((p) => p.folded) ? 'F32' : srcDtype;
  } else {
    const bad = canon.filter((c) => !llamaCppName(c.name));
    if (bad.length) throw new Error(`GGUF: llama.cpp has no tensor name for ${bad.length} module(s): ${bad.slice(0, 4).map((c) => c.name).join(', ')}${bad.length > 4 ? ', …' : ''} (only Llama-style self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj can be named)`);
    architecture = opts.architecture ?? inArch ?? (modelType === 'llama' || modelType === 'mistral' ? 'llama' : undefined)
      ?? (/llama|mistral/i.test(adapter.summary.baseModel ?? '') ? 'llama' : undefined);
    if (!architecture) throw new Error(`GGUF needs general.architecture (it must match the base model, e.g. llama, gemma, qwen2): the base model "${adapter.summary.baseModel ?? 'unknown'}" does not say; pass --arch NAME`);
    const r0 = globalRank;
    const s0 = mode(canon.filter((c) => c.r === r0).map((c) => c.s));
    globalAlpha = tidy(s0 * r0);
    for (const c of canon) {
      const outScale = globalAlpha / c.r;
      let perm: Int32Array | undefined;
      const rk = ropeKind(c.name);
      if (rk && architecture === 'llama') {
        const h = rk === 'q' ? heads : kvHeads;
        if (!h) throw new Error(`GGUF (llama): ${c.name} needs llama.cpp's RoPE row permutation; give the head counts (--heads N --kv-heads M, or --base with config.json)`);
        perm = ropePermutation(c.rows, h);
      }
      plans.push({ c, outName: llamaCppName(c.name)!.replace(/\.weight$/, ''), outScale, folded: Math.abs(c.s / outScale - 1) > 1e-12, perm });
    }
    const folded = plans.some((p) => p.folded);
    const want = opts.ggufType ?? 'auto';
    outDtype = want === 'F16' ? 'F16' : want === 'F32' ? 'F32' : (!folded && allSame('F16') ? 'F16' : 'F32');
    if (architecture === 'llama' && plans.some((p) => p.perm)) warnings.push('q/k lora_b rows are written in llama.cpp\'s RoPE order (LlamaModel.permute), as convert_lora_to_gguf.py does');
  }
  const foldedN = plans.filter((p) => p.folded).length;
  if (foldedN) warnings.push(`${foldedN} module(s) have a scale the single ${target === 'mlx' ? 'lora_parameters.scale' : 'adapter.lora.alpha'} cannot express (rank_pattern / alpha_pattern / rsLoRA); s/s' was folded into their B factor (written F32)`);
  if (adapter.summary.useRslora && target !== 'peft') warnings.push('rsLoRA: the scale alpha/√r is stored as an equivalent plain scale');

  const factorBytes = (v: Float32Array, p: Planned, d: DType): Uint8Array => {
    void p;
    return d === 'F32' ? new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)) : fromFloats(v, d);
  };
  const bFor = (p: Planned): Float32Array => {
    let B = p.c.B;
    if (p.folded) { const f = p.c.s / p.outScale; B = B.map((x) => x * f); }
    if (p.perm) B = permuteRows(B, p.c.r, p.perm);
    return B;
  };

  // ---- write
  progress(total, total * 2, `writing ${target}`);
  let weightsFile: string;
  const baseModel = adapter.summary.baseModel;
  if (target === 'peft') {
    const tensors: OutTensor[] = [];
    for (const p of plans) {
      tensors.push({ name: `base_model.model.${p.outName}.lora_A.weight`, dtype: outDtype, shape: p.c.aShape, data: factorBytes(p.c.A, p, outDtype) });
      tensors.push({ name: `base_model.model.${p.outName}.lora_B.weight`, dtype: outDtype, shape: p.c.bShape, data: factorBytes(bFor(p), p, outDtype) });
      const mg = p.c.src.magnitude;
      if (mg) tensors.push({ name: `base_model.model.${p.outName}.lora_magnitude_vector`, dtype: outDtype, shape: [...mg.shape], data: fromFloats(adapter.store.readF32(mg.name), outDtype) });
    }
    for (const t of adapter.otherTensors) {
      if (isFloat(t.dtype) && t.byteLength === t.numel * (t.dtype === 'F32' ? 4 : 2)) tensors.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], data: adapter.store.readRaw(t.name) });
      else warnings.push(`${t.name} (${t.dtype}) not copied`);
    }
    const rankPattern: Record<string, number> = {}, alphaPattern: Record<string, number> = {};
    for (const p of plans) {
      if (p.c.r !== globalRank) setOwn(rankPattern, p.outName, p.c.r);
      const al = tidy(p.c.s * p.c.r);
      if (al !== globalAlpha) setOwn(alphaPattern, p.outName, al);
    }
    if (Object.keys(rankPattern).length || Object.keys(alphaPattern).length) warnings.push(`ranks/scales differ per module: ${Object.keys(rankPattern).length} rank_pattern and ${Object.keys(alphaPattern).length} alpha_pattern entries written`);
    const kinds = [...new Set(plans.map((p) => (adapter.format === 'peft' ? p.c.src.kind : p.c.name.split('.').pop()!)))];
    let cfg: Record<string, unknown> = {
      ...(adapter.format === 'peft' ? adapter.config : {}),
      peft_type: 'LORA', r: globalRank, lora_alpha: globalAlpha, use_rslora: false, target_modules: kinds,
      rank_pattern: rankPattern, alpha_pattern: alphaPattern, fan_in_fan_out: adapter.summary.fanInFanOut,
      use_dora: dora.length > 0, base_model_name_or_path: adapter.format === 'gguf' ? null : baseModel ?? null,
    };
    if (adapter.format !== 'peft') { cfg.bias = 'none'; cfg.lora_dropout = 0; cfg.modules_to_save = null; cfg.task_type = adapter.summary.taskType ?? null; }
    cfg = peftLoraConfig(cfg);
    weightsFile = writeAdapterFolder(out, cfg, tensors, { format: 'pt', converted_by: 'lora-lens', converted_from: adapter.format }).weightsFile;
  } else if (target === 'kohya') {
    const tensors: OutTensor[] = [];
    const names: Record<string, string> = {};
    for (const p of plans) {
      setOwn(names, p.outName, p.c.name);
      tensors.push({ name: `${p.outName}.lora_down.weight`, dtype: outDtype, shape: p.c.aShape, data: factorBytes(p.c.A, p, outDtype) });
      tensors.push({ name: `${p.outName}.lora_up.weight`, dtype: outDtype, shape: p.c.bShape, data: factorBytes(p.c.B, p, outDtype) });
      tensors.push({ name: `${p.outName}.alpha`, dtype: 'F32', shape: [], data: fromFloats([tidy(p.c.s * p.c.r)], 'F32') });
    }
    const md: Record<string, string> = {
      ss_network_module: 'networks.lora', ss_network_dim: String(globalRank), ss_network_alpha: String(globalAlpha),
      [KOHYA_NAMES_KEY]: JSON.stringify(names), lora_lens_converted_from: adapter.format,
    };
    if (baseModel) md.ss_base_model_version = baseModel;
    const ranks = new Set(plans.map((p) => p.c.r)), alphas = new Set(plans.map((p) => tidy(p.c.s * p.c.r)));
    if (ranks.size > 1) md.ss_network_dim = 'Dynamic';
    if (alphas.size > 1) md.ss_network_alpha = 'Dynamic';
    writeNewFileAtomic(out, new Uint8Array(encodeSafetensors(tensors, md)));
    weightsFile = out;
  } else if (target === 'mlx') {
    const tensors: OutTensor[] = [];
    for (const p of plans) {
      tensors.push({ name: `${p.outName}.lora_a`, dtype: outDtype, shape: [p.c.cols, p.c.r], data: factorBytes(transpose32(p.c.A, p.c.r, p.c.cols), p, outDtype) });
      tensors.push({ name: `${p.outName}.lora_b`, dtype: outDtype, shape: [p.c.r, p.c.rows], data: factorBytes(transpose32(bFor(p), p.c.rows, p.c.r), p, outDtype) });
    }
    const keys = [...new Set(plans.map((p) => p.c.name.split('.').slice(-2).join('.')))];
    const layers = new Set(plans.map((p) => p.c.src.layer).filter((l) => l !== undefined));
    const cfg = {
      fine_tune_type: 'lora', model: baseModel ?? null, num_layers: layers.size,
      lora_parameters: { rank: globalRank, scale: globalScale, dropout: 0, keys },
      converted_by: 'lora-lens', converted_from: adapter.format,
    };
    if (new Set(plans.map((p) => p.c.r)).size > 1) warnings.push('ranks differ per module; mlx-lm builds every LoRA layer with lora_parameters.rank, so this adapter loads only in tools that take the rank from the tensors');
    weightsFile = writeAdapterFolder(out, cfg, tensors, {}, { weightsName: MLX_WEIGHTS }).weightsFile;
  } else {
    const tensors: GgufOutTensor[] = [];
    const type = outDtype === 'F16' ? 'F16' : 'F32';
    for (const p of plans) {
      const base = llamaCppName(p.c.name)!;
      tensors.push({ name: `${base}.lora_a`, shape: [p.c.r, p.c.cols], type, values: p.c.A });
      tensors.push({ name: `${base}.lora_b`, shape: [p.c.rows, p.c.r], type, values: bFor(p) });
    }
    writeNewFileAtomic(out, new Uint8Array(encodeGguf([
      { key: 'general.architecture', type: 'string', value: architecture! },
      { key: 'general.type', type: 'string', value: 'adapter' },
      { key: 'general.name', type: 'string', value: adapter.name },
      { key: 'adapter.type', type: 'string', value: 'lora' },
      { key: 'adapter.lora.alpha', type: 'f32', value: globalAlpha },
    ], tensors)));
    weightsFile = out;
  }

  // ---- verify the round trip
  const checks: ModuleCheck[] = [];
  let maxRelErr = 0, maxAbsError = 0, maxAbsRel = 0;
  const engine = opts.engine ?? new Engine();
  const f64 = (x: Float32Array) => Float64Array.from(x);
  const tolerance = Math.max(1e-5, 16 * dtypeEpsilon(outDtype));
  try {
    const back = openAdapter(out);
    try {
      if (target === 'gguf' && Math.abs(globalAlpha - Math.fround(globalAlpha)) > 0) {
        warnings.push(`adapter.lora.alpha ${globalAlpha} is stored as float32 ${Math.fround(globalAlpha)}`);
      }
      const byName = new Map(back.modules.map((m) => [m.name, m]));
      for (const [i, p] of plans.entries()) {
        throwIfCancelled(opts.token);
        progress(total + i, total * 2, `verifying ${p.c.name}`);
        const o = byName.get(p.outName);
        if (!o) throw new Error(`round trip: module ${p.outName} is missing from the output`);
        let { A: Ao, B: Bo } = readFactors(back, o);
        if (p.perm) Bo = permuteRows(Bo, o.rank, invert(p.perm));
        if (o.outFeatures !== p.c.rows || o.inFeatures !== p.c.cols) throw new Error(`round trip: ${p.outName} is ${o.outFeatures}×${o.inFeatures}, expected ${p.c.rows}×${p.c.cols}`);
        const sigmaIn = loraSigma(p.c.B, p.c.A, p.c.s, p.c.rows, p.c.cols, p.c.r);
        const sigmaOut = loraSigma(Bo, Ao, o.scale, o.outFeatures, o.inFeatures, o.rank);
        const ref = Math.sqrt(sigmaIn.reduce((a, v) => a + v * v, 0));
        const diff = loraDiff(Bo, Ao, o.scale, o.rank, p.c.B, p.c.A, p.c.s, p.c.r, p.c.rows, p.c.cols);
        const relErr = ref > 0 ? diff / ref : diff;
        maxRelErr = Math.max(maxRelErr, relErr);
        // max|ΔW' − ΔW| element-wise, fp64 in onnxruntime (the product is never returned)
        const dd = await lowRankDiff(engine, { A: f64(p.c.A), B: f64(p.c.B), r: p.c.r, s: p.c.s }, { A: f64(Ao), B: f64(Bo), r: o.rank, s: o.scale }, o.outFeatures, o.inFeatures);
        maxAbsError = Math.max(maxAbsError, dd.errMax);
        if (dd.refMax > 0) maxAbsRel = Math.max(maxAbsRel, dd.errMax / dd.refMax);
        checks.push({ name: p.c.name, outName: p.outName, rank: p.c.r, scale: p.c.s, outScale: o.scale, folded: p.folded, relErr, sigmaIn, sigmaOut });
      }
      if (back.modules.length !== plans.length) throw new Error(`round trip: output has ${back.modules.length} modules, input ${plans.length}`);
      warnings.push(...back.warnings.filter((w) => !/no alpha|scale 1 assumed/.test(w)).map((w) => `output: ${w}`));
    } finally {
      back.store.close();
    }
    if (!(maxRelErr <= tolerance)) throw new Error(`round trip failed: max relative ΔW difference ${maxRelErr.toExponential(2)} exceeds the ${outDtype} tolerance ${tolerance.toExponential(1)}; output deleted`);
  } catch (e) {
    removeOutput(out);
    throw e;
  } finally {
    if (!opts.engine) await engine.dispose();
  }
  progress(total * 2, total * 2, 'done');
  const verification: Verification = {
    maxAbsError, maxRelError: maxAbsRel, tolerance, checked: checks.length,
    what: "reopened the output; every module's ΔW' = s'·B'A' against the input's ΔW (max|ΔW' − ΔW| in fp64; the tolerance applies to ‖ΔW' − ΔW‖_F/‖ΔW‖_F = maxRelErr)",
  };
  return { target, input: adapter.path, inputFormat: adapter.format, out, weightsFile, modules: checks, maxRelErr, tolerance, outDtype, architecture, warnings, verification };
}

function invert(p: Int32Array): Int32Array {
  const q = new Int32Array(p.length);
  for (let k = 0; k < p.length; k++) q[p[k]] = k;
  return q;
}
