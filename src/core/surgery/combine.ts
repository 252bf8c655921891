/**
 * Merging and combining adapters (every function writes a NEW file or folder):
 *
 * - mergeIntoBase: W' = W0 + s·B·A for every adapted weight (fp64 in onnxruntime, rounded to the
 *   base dtype), honouring fan_in_fan_out (GPT-2 Conv1D stores W as [in, out]) and embedding LoRA
 *   (ΔW stored transposed); PEFT module names map to base names by dropping `base_model.model.`
 *   (already done by the reader) and appending `.weight`. All other tensors are copied by byte range,
 *   streamed one tensor at a time.
 * - combineAdapters: 'cat' (PEFT add_weighted_adapter cat: exact, r = r1 + r2, w·s folded as √|w·s|
 *   into each factor, sign into B) or 'svd' (truncated SVD of w1·s1·B1A1 + w2·s2·B2A2 in balanced
 *   form, rank default max(r1, r2)). Output scale is 1 (lora_alpha = r, per module via patterns).
 * - rescaleAdapter: same weights, lora_alpha (and alpha_pattern) multiplied by `factor`.
 */
import { lowRankMerge } from '../engine/kernels';
import { peftLoraConfig } from './peftConfig';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { DType, DTYPE_SIZE, dtypeEpsilon, fromFloats } from '../formats/dtype';
import { FormatError, throwIfCancelled } from '../formats/errors';
import { openAdapter } from '../formats/open';
import { readSafetensorsHeader, SafetensorsStore, TensorInfo, TensorStore } from '../formats/safetensors';
import { checkAdapterBase, checkCombinable } from '../base/match';
import { openBase } from '../base/analyses';
import type { BaseModel } from '../base/basemodel';
import type { Engine } from '../engine/ort';
import {
  FactorPair, SurgeryOptions, Verification, balancedLowRank, lowRankDiff, productTolerance, provenance, readPair, writeLike,
} from './balora';
import { configForRanks } from './rank';
import { LazyTensor, OutTensor, OutputExistsError, assertNotInput, removeOutput, writeAdapterFolder, writeSafetensorsStreaming } from '../formats/writer';

export type { Verification };

// ---------------------------------------------------------------------------------------------
// merge into base
// ---------------------------------------------------------------------------------------------

/** W0 + s·B·A (or its transpose-layout variant) in fp64 through onnxruntime. */
export async function mergedWeight(engine: Engine, w0: Float64Array, p: number, q: number, f: FactorPair, s: number, transposeDelta: boolean): Promise<Float64Array> {
  if ((transposeDelta ? [f.inF, f.outF] : [f.outF, f.inF]).join() !== [p, q].join()) throw new Error(`mergedWeight: W0 is ${p}×${q}, s·B·A is ${f.outF}×${f.inF}${transposeDelta ? ' (transposed)' : ''}`);
  return (await lowRankMerge(engine, 'float64', w0, f.B, f.A, f.outF, f.r, f.inF, s, { transposeDelta })).W;
}

/** Base tensor name for an adapter module (PEFT → base: `<module>.weight`, with `model.` fallbacks). */
export function baseNameFor(module: string, base: TensorStore): string | undefined {
  const cands = [`${module}.weight`, `${module.replace(/^model\./, '')}.weight`, `model.${module}.weight`, `${module.replace(/^base_model\.model\./, '')}.weight`];
  return cands.find((c) => base.tensors.has(c));
}

export interface MergeResult {
  outFile: string;
  /** Output folder when the base was a model folder (config and tokenizer files copied), else undefined. */
  outDir?: string;
  merged: { module: string; tensor: string; layout: 'out,in' | 'in,out'; dtype: string; maxAbsError: number }[];
  copied: number;
  warnings: string[];
  verification: Verification;
}

/**
 * Writes `outFile` = base with every adapted weight replaced by W0 + s·B·A (rounded to the base
 * dtype). Throws (writing nothing) when a module has no matching base tensor or shapes disagree.
 */
export async function mergeIntoBase(base: TensorStore | BaseModel, adapter: Adapter, engine: Engine, outFile: string, opts: SurgeryOptions & { force?: boolean } = {}): Promise<MergeResult> {
  const baseStore = 'store' in base ? base.store : base;
  assertNotInput(outFile, baseStore.path, adapter.path, adapter.weightsFile, ...new Set([...baseStore.tensors.values()].map((t) => t.file)));
  // names, shapes and base_model_name_or_path first: one sentence instead of one error per module
  const match = checkAdapterBase(adapter, base, { force: opts.force });
  const refOf = new Map(match.matched.map((x) => [x.module.name, x.ref]));
  const matchedNames = new Set(refOf.keys());
  const plan = new Map<string, { m: LoraModule; transpose: boolean; p: number; q: number }>();
  const problems: string[] = [];
  for (const m of adapter.modules) {
    if (!matchedNames.has(m.name) && !m.conv) continue;
    if (m.magnitude) { problems.push(`${m.name}: DoRA modules need the magnitude renormalisation; merging them is not supported`); continue; }
    const ref = refOf.get(m.name);
    if (ref?.slice) { problems.push(`${m.name}: its base weight is rows ${ref.slice.start}–${ref.slice.end} of the fused "${ref.tensorName}"; merging into fused weights is not supported`); continue; }
    const bn = ref?.tensorName ?? baseNameFor(m.name, baseStore);
    if (!bn) { problems.push(`${m.name}: no base tensor "${m.name}.weight"`); continue; }
    const t = baseStore.tensors.get(bn)!;
    const p = t.shape[0], q = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const embedding = /lora_embedding_/.test(m.A.tensor.name);
    const transpose = m.fanInFanOut || embedding;
    const [eo, ei] = transpose ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures];
    if (p !== eo || q !== ei) { problems.push(`${m.name}: base "${bn}" is ${t.shape.join('×')}, ΔW is ${eo}×${ei}${transpose ? ' (fan_in_fan_out/embedding layout)' : ''}`); continue; }
    if (!['F64', 'F32', 'F16', 'BF16'].includes(t.dtype)) { problems.push(`${bn}: base dtype ${t.dtype} cannot be written`); continue; }
    if (plan.has(bn)) { problems.push(`${bn}: two adapter modules map to it`); continue; }
    plan.set(bn, { m, transpose, p, q });
  }
  if (problems.length) throw new FormatError(adapter.path, `cannot merge into ${baseStore.path}: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`);
  const tensors = [...baseStore.tensors.values()].sort((a, b) => (a.file === b.file ? a.offset - b.offset : a.file.localeCompare(b.file)));
  const merged: MergeResult['merged'] = [];
  let done = 0;
  const lazy: LazyTensor[] = tensors.map((t: TensorInfo) => {
    const job = plan.get(t.name);
    return {
      name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.numel * DTYPE_SIZE[t.dtype],
      produce: async () => {
        throwIfCancelled(opts.token);
        if (!job) return baseStore.readRaw(t.name);
        const f = readPair(adapter, job.m);
        const w0 = baseStore.readF64(t.name);
        const y = await mergedWeight(engine, w0, job.p, job.q, f, job.m.scale, job.transpose);
        merged.push({ module: job.m.name, tensor: t.name, layout: job.transpose ? 'in,out' : 'out,in', dtype: t.dtype, maxAbsError: NaN });
        opts.onProgress?.(++done, plan.size, `merged ${t.name}`);
        return fromFloats(y, t.dtype as DType);
      },
    };
  });
  const md = { ...baseStore.metadata, ...provenance('merge-into-base', adapter.path, { base: path.resolve(baseStore.path), modules: plan.size }) };
  await writeSafetensorsStreaming(outFile, lazy, md);
  // Verification: reopen the written file; every merged tensor W' must equal the fp64 W0 + s·B·A up
  // to rounding to its dtype (|W' − W| ≤ u·max|W|, u the dtype's unit roundoff).
  let maxAbs = 0, maxRel = 0, tolerance = 0;
  try {
    const h = readSafetensorsHeader(outFile);
    if (h.tensors.length !== tensors.length) throw new Error(`verification: ${h.tensors.length} tensors written, ${tensors.length} expected`);
    const back = SafetensorsStore.openFile(outFile);
    try {
      for (const row of merged) {
        throwIfCancelled(opts.token);
        const job = plan.get(row.tensor)!;
        const y = await mergedWeight(engine, baseStore.readF64(row.tensor), job.p, job.q, readPair(adapter, job.m), job.m.scale, job.transpose);
        const w = back.readF64(row.tensor);
        let e = 0, r = 0;
        for (let i = 0; i < y.length; i++) {
          const d = Math.abs(w[i] - y[i]);
          if (Number.isNaN(d)) {
            if (Number.isNaN(y[i]) && Number.isNaN(w[i])) continue; // NaN in the base stays NaN
            e = Infinity;
          } else if (d > e) e = d;
          const a = Math.abs(y[i]);
          if (a > r) r = a;
        }
        const u = dtypeEpsilon(row.dtype as DType);
        const tol = 1.01 * u * r + (row.dtype === 'F16' ? 6e-8 : 0);
        if (!(e <= tol)) throw new Error(`verification failed for ${row.tensor}: max|W' − (W0 + s·B·A)| = ${e.toExponential(3)} > ${tol.toExponential(3)} (${row.dtype} rounding)`);
        row.maxAbsError = e;
        maxAbs = Math.max(maxAbs, e);
        if (r > 0) maxRel = Math.max(maxRel, e / r);
        tolerance = Math.max(tolerance, u * 1.01);
      }
    } finally {
      back.close();
    }
  } catch (e) {
    removeOutput(outFile);
    throw e;
  }
  return {
    outFile, merged, copied: tensors.length - merged.length, warnings: match.warnings,
    verification: { maxAbsError: maxAbs, maxRelError: maxRel, tolerance, checked: merged.length, what: "reopened the output; every merged weight W' against W0 + s·B·A computed in fp64 (error = rounding to the base dtype)" },
  };
}

/**
 * Merges into a base given as a weights file (→ OUT is a .safetensors file) or as a Hugging Face
 * model folder, sharded or not (→ OUT is a NEW folder: config, tokenizer and other small files
 * copied, weights in one OUT/model.safetensors; OUT ending in .safetensors writes just the file).
 * The folder is written under a temporary name and renamed when verified.
 */
export async function mergeIntoModel(basePath: string, adapter: Adapter, engine: Engine, out: string, opts: SurgeryOptions & { force?: boolean } = {}): Promise<MergeResult> {
  const base = openBase(basePath);
  try {
    const isDir = fs.statSync(basePath).isDirectory();
    if (!isDir || out.endsWith('.safetensors')) return await mergeIntoBase(base, adapter, engine, out, opts);
    if (fs.existsSync(out)) throw new OutputExistsError(out);
    assertNotInput(out, basePath, adapter.path, adapter.weightsFile);
    const tmp = `${path.resolve(out)}.tmp-${process.pid}`;
    fs.mkdirSync(path.dirname(tmp), { recursive: true });
    fs.mkdirSync(tmp);
    try {
      const res = await mergeIntoBase(base, adapter, engine, path.join(tmp, 'model.safetensors'), opts);
      for (const n of fs.readdirSync(basePath)) {
        const p = path.join(basePath, n);
        if (!fs.statSync(p).isFile() || /\.(safetensors|bin|pt|pth|gguf|ckpt|h5|msgpack)$|\.index\.json$/i.test(n)) continue;
        if (fs.statSync(p).size < 64 * 1024 * 1024) fs.copyFileSync(p, path.join(tmp, n), fs.constants.COPYFILE_EXCL);
      }
      if (fs.existsSync(out)) throw new OutputExistsError(out);
      fs.renameSync(tmp, out);
      return { ...res, outDir: out, outFile: path.join(out, 'model.safetensors') };
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  } finally {
    base.store.close();
  }
}

// ---------------------------------------------------------------------------------------------
// combine two adapters
// ---------------------------------------------------------------------------------------------

export interface CombineOptions extends SurgeryOptions {
  mode: 'cat' | 'svd';
  /** New rank for 'svd' (default max(r1, r2)). */
  rank?: number;
  /** Combine adapters that name different base models (when they share modules). */
  force?: boolean;
}

export interface CombineResult {
  outDir: string;
  weightsFile: string;
  perModule: { name: string; rank: number; relErr: number; sigma?: number[]; maxAbsError: number }[];
  config: Record<string, unknown>;
  warnings: string[];
  verification: Verification;
}

function peftKey(name: string, role: 'A' | 'B'): string {
  return `base_model.model.${name}.lora_${role}.weight`;
}

function catPairs(parts: { f: FactorPair; c: number }[]): FactorPair {
  const r = parts.reduce((s, p) => s + p.f.r, 0);
  const { inF, outF, name } = parts[0].f;
  const A = new Float64Array(r * inF), B = new Float64Array(outF * r);
  let off = 0;
  for (const { f, c } of parts) {
    if (f.inF !== inF || f.outF !== outF) throw new Error(`${name}: shapes differ between adapters (${f.outF}×${f.inF} vs ${outF}×${inF})`);
    const sa = Math.sqrt(Math.abs(c)), sb = Math.sign(c) * Math.sqrt(Math.abs(c));
    for (let i = 0; i < f.r * inF; i++) A[off * inF + i] = sa * f.A[i];
    for (let i = 0; i < outF; i++) for (let j = 0; j < f.r; j++) B[i * r + off + j] = sb * f.B[i * f.r + j];
    off += f.r;
  }
  return { name, A, B, r, inF, outF };
}

/**
 * Weighted combination w1·ΔW1 + w2·ΔW2 of two PEFT adapters into a NEW adapter folder, verified by
 * reopening (cat: exact up to output rounding; svd: against the fp64 truncation).
 */
export async function combineAdapters(engine: Engine, a1: Adapter, w1: number, a2: Adapter, w2: number, outDir: string, opts: CombineOptions): Promise<CombineResult> {
  for (const a of [a1, a2]) if (a.format !== 'peft') throw new Error(`${a.path}: combining needs PEFT adapters (this is ${a.format})`);
  if (!Number.isFinite(w1) || !Number.isFinite(w2)) throw new Error(`combine weights must be finite numbers, got ${w1} and ${w2}`);
  if (opts.rank !== undefined && !(Number.isSafeInteger(opts.rank) && opts.rank >= 1)) throw new Error(`--rank must be a positive integer, got ${opts.rank}`);
  assertNotInput(outDir, a1.path, a1.weightsFile, a2.path, a2.weightsFile);
  const warnings = checkCombinable(a1, a2, { force: opts.force });
  const names = [...new Set([...a1.modules, ...a2.modules].map((m) => m.name))];
  const find = (a: Adapter, n: string) => a.modules.find((m) => m.name === n);
  const tensors: OutTensor[] = [];
  const rows: { name: string; k: number; scale: number }[] = [];
  const refs = new Map<string, { f: FactorPair; A: Float64Array; B: Float64Array; k: number; sigma?: Float64Array }>();
  for (const n of names) {
    throwIfCancelled(opts.token);
    const parts: { f: FactorPair; c: number; m: LoraModule }[] = [];
    for (const [a, w] of [[a1, w1], [a2, w2]] as const) {
      const m = find(a, n);
      if (!m) continue;
      if (m.magnitude || m.conv || m.fanInFanOut !== (find(a1, n) ?? m).fanInFanOut) throw new Error(`${n}: DoRA, conv or mixed fan_in_fan_out modules cannot be combined`);
      parts.push({ f: readPair(a, m), c: w * m.scale, m });
    }
    const cat = catPairs(parts);
    const dtype = parts[0].m.A.tensor.dtype;
    let A: Float64Array, B: Float64Array, k: number, sigma: Float64Array | undefined;
    if (opts.mode === 'cat') {
      ({ A, B } = cat); k = cat.r;
    } else {
      const kk = Math.min(opts.rank ?? Math.max(...parts.map((p) => p.f.r)), cat.r);
      const res = await balancedLowRank(engine, cat, kk, 1);
      A = res.A; B = res.B; k = res.k; sigma = res.sigma;
    }
    refs.set(n, { f: cat, A, B, k, sigma });
    rows.push({ name: n, k, scale: 1 });
    const enc = (v: Float64Array, d: DType): Uint8Array => fromFloats(v, ['F64', 'F32', 'F16', 'BF16'].includes(d) ? d : 'F32');
    const dt = (['F64', 'F32', 'F16', 'BF16'].includes(dtype) ? dtype : 'F32') as DType;
    tensors.push({ name: peftKey(n, 'A'), dtype: dt, shape: [k, cat.inF], data: enc(A, dt) });
    tensors.push({ name: peftKey(n, 'B'), dtype: dt, shape: [cat.outF, k], data: enc(B, dt) });
  }
  const base = { ...(a1.config ?? {}) };
  const targets = new Set([...(a1.summary.targetModules ?? []), ...(a2.summary.targetModules ?? [])]);
  base.target_modules = [...targets];
  const config = configForRanks(base, rows, false);
  const md = provenance(`combine-${opts.mode}`, a1.path, { second: path.resolve(a2.path), weights: [w1, w2], rank: opts.rank ?? null, scale: 'folded into factors (lora_alpha = r)' });
  const written = writeAdapterFolder(outDir, config, tensors, md);
  try {
    const re = openAdapter(written.dir);
    try {
      const per: CombineResult['perModule'] = [];
      let maxAbs = 0, maxRel = 0, tolerance = 0;
      if (re.modules.length !== refs.size) throw new Error(`verification: ${re.modules.length} modules written, ${refs.size} expected`);
      for (const m2 of re.modules) {
        const ref = refs.get(m2.name);
        if (!ref) throw new Error(`verification: unexpected module ${m2.name}`);
        const f2 = readPair(re, m2);
        const d = await lowRankDiff(engine, { A: ref.A, B: ref.B, r: ref.k, s: 1 }, { A: f2.A, B: f2.B, r: f2.r, s: m2.scale }, f2.outF, f2.inF);
        if (!(d.errMax <= productTolerance(d, m2.A.tensor.dtype)) && d.refMax > 0) throw new Error(`verification failed for ${m2.name}: max error ${d.errMax} (reference max ${d.refMax})`);
        maxAbs = Math.max(maxAbs, d.errMax);
        if (d.refMax > 0) {
          maxRel = Math.max(maxRel, d.errMax / d.refMax);
          tolerance = Math.max(tolerance, productTolerance(d, m2.A.tensor.dtype) / d.refMax);
        }
        let relErr = d.refFro > 0 ? d.errFro / d.refFro : d.errFro;
        if (opts.mode === 'svd') {
          const full = await lowRankDiff(engine, { A: ref.f.A, B: ref.f.B, r: ref.f.r, s: 1 }, { A: f2.A, B: f2.B, r: f2.r, s: m2.scale }, f2.outF, f2.inF);
          relErr = full.refFro > 0 ? full.errFro / full.refFro : full.errFro;
        }
        per.push({ name: m2.name, rank: f2.r, relErr, sigma: ref.sigma ? Array.from(ref.sigma) : undefined, maxAbsError: d.errMax });
      }
      const what = opts.mode === 'cat'
        ? "reopened; every module's s'·B'A' against w1·s1·B1A1 + w2·s2·B2A2 (exact concatenation, fp64)"
        : "reopened; every module's s'·B'A' against the fp64 rank-k truncation of w1·s1·B1A1 + w2·s2·B2A2 (relErr: against the untruncated sum)";
      return { outDir: written.dir, weightsFile: written.weightsFile, perModule: per, config, warnings, verification: { maxAbsError: maxAbs, maxRelError: maxRel, tolerance, checked: per.length, what } };
    } finally {
      re.store.close();
    }
  } catch (e) {
    removeOutput(written.dir);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// rescale
// ---------------------------------------------------------------------------------------------

/**
 * New PEFT adapter folder with identical weights and every alpha multiplied by `factor`; verified by
 * reopening: factor bytes identical and s' = factor·s, so max|ΔW' − factor·ΔW| = |s' − factor·s|·max|BA|
 * (0 when the scales agree exactly; otherwise max|BA| is bounded by max‖row of B‖·max‖column of A‖).
 */
export function rescaleAdapter(adapter: Adapter, factor: number, outDir: string): { outDir: string; config: Record<string, unknown>; verification: Verification; skippedSideFiles: string[] } {
  if (adapter.format !== 'peft' || !adapter.config) throw new Error(`${adapter.path}: rescaling edits adapter_config.json; this ${adapter.format} adapter has none`);
  if (!Number.isFinite(factor) || factor === 0) throw new Error(`rescale factor must be a finite non-zero number, got ${factor}`);
  const cfg = { ...adapter.config };
  const alpha = typeof cfg.lora_alpha === 'number' && Number.isFinite(cfg.lora_alpha) ? cfg.lora_alpha : 8;
  // Validate every new alpha: finite, non-zero (1e308 × 10 is Infinity, 1e-320 × 1e-10 underflows to 0).
  const scaled = (v: number, what: string): number => {
    const x = Number((v * factor).toPrecision(12));
    // Subnormal results (|x| < 2^-1022) are refused too: they lose precision and round to 0 in float32.
    if (!Number.isFinite(x) || (v !== 0 && Math.abs(x) < 2.2250738585072014e-308)) throw new Error(`${path.join(adapter.path, 'adapter_config.json')}: rescaling ${what} ${v} by ${factor} gives ${x}, not a finite non-zero alpha; nothing written to ${outDir}`);
    return x;
  };
  cfg.lora_alpha = scaled(alpha, 'lora_alpha');
  const ap = (typeof cfg.alpha_pattern === 'object' && cfg.alpha_pattern !== null && !Array.isArray(cfg.alpha_pattern) ? cfg.alpha_pattern : {}) as Record<string, unknown>;
  cfg.alpha_pattern = Object.fromEntries(Object.entries(ap).map(([k, v]) => [k, typeof v === 'number' && Number.isFinite(v) ? scaled(v, `alpha_pattern["${k}"]`) : v]));
  for (const m of adapter.modules) {
    const s2 = factor * m.scale;
    if (!Number.isFinite(s2) || (m.scale !== 0 && Math.abs(s2) < 2.2250738585072014e-308)) throw new Error(`${adapter.weightsFile}: rescaling ${m.name} (scale ${m.scale}) by ${factor} gives scale ${s2}, not a finite non-zero scale; nothing written to ${outDir}`);
  }
  const tensors = [...adapter.store.tensors.values()].sort((a, b) => a.offset - b.offset)
    .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: adapter.store.readRaw(t.name) }));
  const written = writeLike(adapter, outDir, tensors, provenance('rescale', adapter.path, { factor }), peftLoraConfig(cfg));
  let maxAbs = 0, maxRel = 0;
  const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  try {
    const re = openAdapter(written.out);
    try {
      const byName = new Map(re.modules.map((x) => [x.name, x]));
      if (re.modules.length !== adapter.modules.length) throw new Error(`verification failed: ${re.modules.length} modules written, ${adapter.modules.length} expected`);
      for (const m of adapter.modules) {
        const m2 = byName.get(m.name);
        const want = factor * m.scale;
        const fail = (why: string) => new Error(`verification failed for ${m.name}: ${why}`);
        if (!m2 || !Number.isFinite(m2.scale) || !(Math.abs(m2.scale - want) <= 1e-9 * Math.abs(want))) throw fail(`scale ${m2?.scale} ≠ ${factor}·${m.scale}`);
        if (!sameBytes(adapter.store.readRaw(m.A.tensor.name), re.store.readRaw(m2.A.tensor.name)) || !sameBytes(adapter.store.readRaw(m.B.tensor.name), re.store.readRaw(m2.B.tensor.name))) throw fail('factor bytes changed');
        const ds = Math.abs(m2.scale - want);
        maxRel = Math.max(maxRel, ds / Math.abs(want));
        if (ds > 0) {
          const f = readPair(re, m2);
          let bRow = 0, aCol = 0;
          for (let i = 0; i < f.outF; i++) { let q = 0; for (let j = 0; j < f.r; j++) q += f.B[i * f.r + j] ** 2; bRow = Math.max(bRow, q); }
          for (let c = 0; c < f.inF; c++) { let q = 0; for (let j = 0; j < f.r; j++) q += f.A[j * f.inF + c] ** 2; aCol = Math.max(aCol, q); }
          maxAbs = Math.max(maxAbs, ds * Math.sqrt(bRow * aCol));
        }
      }
    } finally {
      re.store.close();
    }
  } catch (e) {
    removeOutput(written.out);
    throw e;
  }
  return {
    outDir: written.out, config: cfg, skippedSideFiles: written.skipped,
    verification: { maxAbsError: maxAbs, maxRelError: maxRel, tolerance: 1e-9, checked: adapter.modules.length, what: "reopened; factor bytes identical and every module's scale s' = factor·s (maxAbsError = |s' − factor·s|·max|BA|, bounded by Cauchy–Schwarz when nonzero)" },
  };
}

/** True when `p` exists (helper for callers that pre-check outputs). */
export function outputExists(p: string): boolean {
  return fs.existsSync(p);
}
