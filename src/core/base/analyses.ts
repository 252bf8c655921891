/**
 * The base-model analyses of LoRA Lens (issue 3), one implementation for the extension's worker
 * jobs (src/worker/jobs/base.ts wraps these) and the headless CLI (src/core/cli/*.ts):
 *
 * - runIntruders / runMitigate: intruder dimensions of an adapter against its base model (+ PEFT
 *   reduce_intruder_dimension into a NEW adapter);
 * - runSpectra: σ of W0, W0+ΔW and ΔW of one module, with ESD metrics;
 * - compareCheckpoints / compareTensor / checkpointIntruders: per-tensor relative change of two
 *   checkpoints, ΔW spectra and intruders of W1 vs W0;
 * - esdRows: WeightWatcher-style metrics of every 2-D tensor of a checkpoint.
 *
 * Inputs that do not belong together are refused up front (src/core/base/match.ts). Every product
 * touching an m×n weight runs in onnxruntime (rsvd, Grams, merge/diff graphs); base-model
 * decompositions are cached on disk (DecompCache) per (file, tensor, mtime, size) when a cache
 * folder is given.
 */
import { gramMat, lowRankMerge } from '../engine/kernels';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openBaseModel, baseWeightFor, readBaseWeight, type BaseModel, type BaseWeightRef } from './basemodel';
import { DecompCache, type CacheKey } from './cache';
import { esdMetrics, frobeniusSquared, logHistogram, type EsdMetrics } from './esd';
import { adapterIntruders, baseLeftBasis, mitigateIntruders, readDelta, findIntruders, classifyAgainstBase, type IntruderVector } from './intruders';
import { checkAdapterBase, checkComparable } from './match';
import { fullSpectrum, rsvd, estimateFullSpectrumSeconds, FULL_SPECTRUM_MAX_DIM } from './rsvd';
import { GraphBuilder } from '../engine/graph';
import type { Engine } from '../engine/ort';
import type { Adapter, LoraModule } from '../formats/adapter';
import { FormatError, throwIfCancelled, type CancelToken } from '../formats/errors';
import { openAdapter, openStore } from '../formats/open';
import type { TensorStore } from '../formats/safetensors';
import {
  encodeFactor, inFileOrder, lowRankDiff, productTolerance, provenance, readPair, writeLike,
} from '../surgery/balora';
import { symEig } from '../linalg/decomp';
import { removeOutput, type OutTensor } from '../formats/writer';
import type {
  CompareData, CompareParams, CompareTensorData, CompareTensorParams, CompareTensorRow, EsdMetricsData, EstimateParams, EstimateResult,
  IntruderMode, IntruderModuleData, IntrudersData, IntrudersParams, IntruderVectorData, MitigateData, MitigateParams, SpectraData, SpectraParams,
  AnalyzeModelParams, AnalyzeModelResult, ModelModuleRow,
} from '../../shared/base';
export type { CompareParams, CompareTensorParams, EstimateParams, EstimateResult, IntrudersParams, MitigateParams, SpectraParams };

/** What an analysis needs from its caller: the worker's JobContext satisfies it. */
export interface AnalysisContext {
  engine: Engine;
  token?: CancelToken;
  progress?: (done: number, total: number, message: string, data?: unknown) => void;
}


export const DEFAULT_TOPK = 64;

const noProgress = (): void => undefined;

function cacheFor(dir?: string): DecompCache | undefined {
  return dir ? new DecompCache(dir) : undefined;
}

export function engineInfo(engine: Engine): { provider: string; fallbackReason?: string } {
  return engine.fallbackReason ? { provider: engine.provider, fallbackReason: engine.fallbackReason } : { provider: engine.provider };
}

/** Cache identity of a (possibly transposed / sliced) base weight. */
function refKey(ref: BaseWeightRef): Omit<CacheKey, 'method'> {
  const k = DecompCache.keyFor(ref.tensor.file, ref.tensorName + (ref.transposed ? ':T' : '') + (ref.slice ? `:${ref.slice.start}-${ref.slice.end}` : ''), '');
  return { file: k.file, tensor: k.tensor, mtimeMs: k.mtimeMs, size: k.size };
}

function vecData(v: IntruderVector): IntruderVectorData {
  const o: IntruderVectorData = { index: v.index, sigma: v.sigma, maxCos: v.maxCos, baseIndex: v.baseIndex, status: v.status };
  if (v.residual !== undefined) o.residual = v.residual;
  if (v.upperBound !== undefined) o.upperBound = v.upperBound;
  return o;
}

/**
 * A base model: a Hugging Face folder (config.json + model.safetensors or a sharded index), or a
 * weights file / index / folder without config.json (config then empty).
 */
export function openBase(p: string): BaseModel {
  if (!fs.existsSync(p)) throw new FormatError(p, 'does not exist');
  if (fs.statSync(p).isDirectory() && fs.existsSync(path.join(p, 'config.json'))) return openBaseModel(p);
  return { dir: p, config: {}, store: openAnyStore(p) };
}

function withAdapterAndBase<T>(adapterPath: string, baseDir: string, fn: (a: Adapter, b: BaseModel) => Promise<T>): Promise<T> {
  const adapter = openAdapter(adapterPath);
  let base: BaseModel | undefined;
  try {
    base = openBase(baseDir);
  } catch (e) {
    adapter.store.close();
    throw e;
  }
  const b = base;
  return fn(adapter, b).finally(() => {
    adapter.store.close();
    b.store.close();
  });
}

// ---------------------------------------------------------------------------------------------
// intruders

/**
 * Intruder dimensions of every module of an adapter against its base. Refuses (MismatchError)
 * before any compute when the base does not fit the adapter. `onModule` receives each module's
 * record as soon as it is computed (CLI --jsonl, streaming views).
 */
export async function runIntruders(params: IntrudersParams, ctx: AnalysisContext, onModule?: (m: IntruderModuleData, done: number, total: number) => void): Promise<IntrudersData & { warnings: string[] }> {
  const t0 = Date.now();
  const progress = ctx.progress ?? noProgress;
  const k = params.k ?? 10, epsilon = params.epsilon ?? 0.5, mode = params.mode ?? 'auto';
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const match = checkAdapterBase(adapter, base, { force: params.force });
    const mods = match.matched.map((x) => x.module);
    const total = mods.length;
    const byName = new Map(adapter.modules.map((m) => [m.name, m]));
    const modules: IntruderModuleData[] = [];
    const errors: { name: string; message: string }[] = match.unmatched.map((u) => ({ name: u.module.name, message: u.reason }));
    for (const c of adapter.modules.filter((m) => m.conv)) errors.push({ name: c.name, message: 'conv LoRA modules are not supported by the intruder analysis' });
    let done = 0;
    for (const mod of mods) {
      // one module at a time: progress + cancellation point between modules
      throwIfCancelled(ctx.token);
      progress(done, total, `intruders: ${mod.name}`);
      const r = await adapterIntruders(ctx.engine, adapter, base, { k, epsilon, mode, cache, filter: (m) => m === mod });
      errors.push(...r.errors);
      done++;
      for (const x of r.modules) {
        const lm = byName.get(x.name);
        const row: IntruderModuleData = {
          name: x.name, layer: lm?.layer, kind: lm?.kind ?? x.name.split('.').pop() ?? x.name, baseTensor: x.baseTensor, mode: x.mode,
          m: x.m, n: x.n, baseVectors: x.baseVectors, count: x.count, possible: x.possible, vectors: x.vectors.map(vecData), notes: x.notes,
          baseCached: x.baseCached,
        };
        modules.push(row);
        onModule?.(row, done, total);
      }
    }
    progress(total, total, 'intruders: done');
    return {
      adapter: { name: adapter.name, path: adapter.path },
      base: { dir: base.dir },
      settings: { k, epsilon, mode },
      modules,
      errors,
      totals: {
        modules: adapter.modules.length, analysed: modules.length,
        intruders: modules.reduce((s, m) => s + m.count, 0), possible: modules.reduce((s, m) => s + m.possible, 0),
      },
      cache: { hits: modules.filter((m) => m.baseCached).length, misses: modules.filter((m) => !m.baseCached).length },
      engine: engineInfo(ctx.engine),
      ms: Date.now() - t0,
      warnings: match.warnings,
    };
  });
}

/**
 * Analyze Model (issue 10): intruders and ESD (W0, W0 + ΔW) of every module of an adapter against
 * its base, one module at a time; `onRow` receives each module as soon as it is done (the worker
 * streams it to the panel). Base decompositions go through the DecompCache, and `skip` names
 * modules a cancelled run already delivered, so a resumed run only computes the rest. The ESD
 * uses the exact spectrum when the smaller side is ≤ 1024 (else top-k by rsvd: alpha 'truncated').
 */
export async function runModelAnalysis(params: AnalyzeModelParams, ctx: AnalysisContext, onRow?: (r: ModelModuleRow, done: number, total: number) => void): Promise<AnalyzeModelResult> {
  const t0 = Date.now();
  const progress = ctx.progress ?? noProgress;
  const k = params.k ?? 10, epsilon = params.epsilon ?? 0.5, mode = params.mode ?? 'auto';
  const topK = params.topK ?? DEFAULT_TOPK;
  const cache = cacheFor(params.cacheDir);
  const skip = new Set(params.skip ?? []);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const match = checkAdapterBase(adapter, base, { force: params.force });
    const total = match.matched.length;
    const todo = match.matched.filter((x) => !skip.has(x.module.name));
    const errors: { name: string; message: string }[] = match.unmatched.map((u) => ({ name: u.module.name, message: u.reason }));
    const rows: ModelModuleRow[] = [];
    let done = total - todo.length;
    progress(done, total, `${done}/${total} modules`);
    for (const { module: mod, ref } of todo) {
      throwIfCancelled(ctx.token);
      const t1 = Date.now();
      let row: ModelModuleRow;
      try {
        const r = await adapterIntruders(ctx.engine, adapter, base, { k, epsilon, mode, cache, filter: (m) => m === mod });
        if (r.errors.length) throw new Error(r.errors[0].message);
        const x = r.modules[0];
        throwIfCancelled(ctx.token);
        const d = Math.min(ref.out, ref.in);
        const s = await spectraOfModule(ctx, adapter, base, mod, { k: topK, full: d <= FULL_SPECTRUM_MAX_DIM }, cache, t1, noProgress);
        row = {
          name: mod.name, layer: mod.layer, kind: mod.kind, m: x.m, n: x.n,
          intruders: {
            name: x.name, layer: mod.layer, kind: mod.kind, baseTensor: x.baseTensor, mode: x.mode, m: x.m, n: x.n, baseVectors: x.baseVectors,
            count: x.count, possible: x.possible, vectors: x.vectors.map(vecData), notes: x.notes, baseCached: x.baseCached,
          },
          esd: s.metrics, full: s.full, ms: Date.now() - t1,
        };
      } catch (e) {
        if ((e as Error).name === 'CancelledError') throw e;
        errors.push({ name: mod.name, message: (e as Error).message });
        done++;
        progress(done, total, `${done}/${total} modules (${mod.name} failed)`);
        continue;
      }
      rows.push(row);
      done++;
      onRow?.(row, done, total);
    }
    progress(total, total, 'done');
    return {
      adapter: { name: adapter.name, path: adapter.path }, base: { dir: base.dir }, rows, total, skipped: total - todo.length,
      errors, warnings: match.warnings, engine: engineInfo(ctx.engine), ms: Date.now() - t0,
    };
  });
}

/**
 * PEFT `reduce_intruder_dimension`: writes a NEW adapter (same format, dtype and config) whose
 * modules with intruders have their intruder singular values scaled by λ; reopens it and verifies
 * every rewritten module's product against the computed factors (output deleted on failure).
 */
export async function runMitigate(params: MitigateParams, ctx: AnalysisContext): Promise<MitigateData> {
  const progress = ctx.progress ?? noProgress;
  const k = params.k ?? 10, epsilon = params.epsilon ?? 0.5, mode = params.mode ?? 'auto';
  if (!(params.lambda >= 0 && params.lambda <= 1)) throw new Error(`λ must be in [0, 1], got ${params.lambda}`);
  if (fs.existsSync(params.outDir)) throw new Error(`${params.outDir}: already exists; LoRA Lens never overwrites, choose a new folder`);
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const mods = checkAdapterBase(adapter, base, { force: params.force }).matched.map((x) => x.module);
    const planned = new Map<string, { m: LoraModule; B: Float32Array; A: Float32Array; intruders: number[]; truncationError: number }>();
    const tensors: OutTensor[] = [];
    let done = 0;
    for (const m of mods) {
      throwIfCancelled(ctx.token);
      progress(done++, mods.length * 2, `mitigating ${m.name}`);
      const ref = baseWeightFor(m, base);
      const W0 = readBaseWeight(base, ref);
      const delta = readDelta(adapter, m);
      const r = await mitigateIntruders(ctx.engine, W0, ref.out, ref.in, delta, { k, epsilon, mode, lambda: params.lambda, cache, cacheKey: cache ? refKey(ref) : undefined });
      if (!r.changed) continue;
      planned.set(m.name, { m, B: r.B, A: r.A, intruders: r.intruderIndices, truncationError: r.truncationError });
      tensors.push(encodeFactor(Float64Array.from(r.A), r.r, m.inFeatures, m.A, m.A.tensor.shape));
      tensors.push(encodeFactor(Float64Array.from(r.B), m.outFeatures, r.r, m.B, m.B.tensor.shape));
    }
    const replaced = new Set(tensors.map((t) => t.name));
    for (const t of adapter.store.tensors.values()) {
      if (!replaced.has(t.name)) tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: adapter.store.readRaw(t.name) });
    }
    const md = provenance('intruder-mitigation', adapter.path, {
      algorithm: 'PEFT reduce_intruder_dimension (PR #2999): intruder σ of W0+ΔW scaled by λ, ΔW re-factored to rank r',
      base: path.resolve(base.dir), lambda: params.lambda, k, epsilon, modules: planned.size,
    });
    throwIfCancelled(ctx.token);
    const written = writeLike(adapter, params.outDir, inFileOrder(adapter, tensors), md);
    const changed: MitigateData['changed'] = [];
    let maxAbsError = 0;
    try {
      const re = openAdapter(written.out);
      try {
        if (re.modules.length !== adapter.modules.length) throw new Error(`verification: ${re.modules.length} modules written, ${adapter.modules.length} expected`);
        for (const m2 of re.modules) {
          const p = planned.get(m2.name);
          if (!p) continue;
          throwIfCancelled(ctx.token);
          progress(done++, mods.length * 2, `verifying ${m2.name}`);
          const f2 = readPair(re, m2);
          const d = await lowRankDiff(ctx.engine, { A: Float64Array.from(p.A), B: Float64Array.from(p.B), r: m2.rank, s: 1 }, { A: f2.A, B: f2.B, r: f2.r, s: 1 }, f2.outF, f2.inF);
          const tol = d.refMax > 0 ? productTolerance(d, m2.A.tensor.dtype) / d.refMax : 0;
          const rel = d.refMax > 0 ? d.errMax / d.refMax : d.errMax;
          if (!(rel <= tol) && !(d.refMax === 0 && d.errMax === 0)) {
            throw new Error(`verification failed for ${m2.name}: max|B'A' − BA|/max|BA| = ${rel.toExponential(3)} > ${tol.toExponential(3)}`);
          }
          maxAbsError = Math.max(maxAbsError, d.errMax * Math.abs(m2.scale));
          const ref = baseWeightFor(m2, base);
          const after = await findIntruders(ctx.engine, readBaseWeight(base, ref), ref.out, ref.in, readDelta(re, m2), { k, epsilon, mode, cache, cacheKey: cache ? refKey(ref) : undefined });
          changed.push({ name: m2.name, intruders: p.intruders, truncationError: p.truncationError, maxRelErr: rel, intrudersAfter: after.count });
        }
      } finally {
        re.store.close();
      }
    } catch (e) {
      removeOutput(written.out);
      throw e;
    }
    progress(mods.length * 2, mods.length * 2, 'mitigation written and verified');
    const res: MitigateData & { verification: { maxAbsError: number; modules: number; what: string } } = {
      outDir: written.out, lambda: params.lambda, changed, unchanged: adapter.modules.length - changed.length, verified: true,
      verification: { maxAbsError, modules: changed.length, what: "reopened; max|s·B'A' − s·B̃Ã| of every rewritten module against the computed factors" },
    };
    return res;
  });
}

// ---------------------------------------------------------------------------------------------
// spectra

function diffGraph(): Uint8Array {
  const g = new GraphBuilder('base_diff');
  g.input('W1', 'float32', ['m', 'n']);
  g.input('W0', 'float32', ['m', 'n']);
  g.op('Sub', ['W1', 'W0'], {}, 'D');
  g.output('D', 'float32', ['m', 'n']);
  return g.build();
}

/** W0 + s·B·A and s·B·A (fp32, onnxruntime). */
export async function mergeAndDelta(engine: Engine, W0: Float32Array, m: number, n: number, delta: { A: Float32Array; B: Float32Array; r: number; scale: number }): Promise<{ W: Float32Array; D: Float32Array }> {
  const { W, D } = await lowRankMerge(engine, 'float32', W0, delta.B, delta.A, m, delta.r, n, delta.scale, { withDelta: true });
  return { W, D: D! };
}

/** W1 − W0 (fp32, onnxruntime). */
export async function weightDiff(engine: Engine, W1: Float32Array, W0: Float32Array, m: number, n: number): Promise<Float32Array> {
  const s = await engine.session('base_diff', diffGraph);
  return (await engine.run(s, { W1: engine.tensor('float32', W1, [m, n]), W0: engine.tensor('float32', W0, [m, n]) })).D.data as Float32Array;
}

/** Top-k σ (rsvd), or the exact spectrum when `full` or when k covers a small side. */
export async function topSigma(engine: Engine, W: Float32Array, m: number, n: number, k: number, full: boolean): Promise<Float64Array> {
  if (full) return fullSpectrum(engine, W, m, n, { force: true });
  const d = Math.min(m, n);
  // k ≥ d: the exact spectrum is as cheap (Gram of the small side) and exact
  if (k >= d && d <= FULL_SPECTRUM_MAX_DIM) return fullSpectrum(engine, W, m, n);
  return (await rsvd(engine, W, m, n, Math.min(k, d))).S;
}

function metricsData(e: EsdMetrics): EsdMetricsData {
  return {
    N: e.N, M: e.M, num_evals: e.num_evals, alpha: e.alpha, alpha_weighted: e.alpha_weighted, log_norm: e.log_norm,
    log_spectral_norm: e.log_spectral_norm, stable_rank: e.stable_rank, entropy: e.entropy, mp_softrank: e.mp_softrank,
    num_pl_spikes: e.num_pl_spikes, D: e.D, alpha_status: e.alpha_status, full_spectrum: e.full_spectrum, matrix_rank: e.matrix_rank,
    warnings: e.warnings,
  };
}

const squares = (s: ArrayLike<number>): number[] => Array.from(s, (x) => x * x);

/** σ of W0, W0 + ΔW and ΔW of one adapter module, with ESD metrics of the first two. */
export async function runSpectra(params: SpectraParams, ctx: AnalysisContext): Promise<SpectraData> {
  const t0 = Date.now();
  const progress = ctx.progress ?? noProgress;
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const mod = adapter.modules.find((m) => m.name === params.module);
    if (!mod) throw new FormatError(adapter.path, `has no module "${params.module}"`);
    checkAdapterBase(adapter, base, { force: params.force, modules: [mod] });
    return spectraOfModule(ctx, adapter, base, mod, params, cache, t0, progress);
  });
}

/** runSpectra for every module of an adapter (one base check, one open). */
export async function runSpectraAll(params: Omit<SpectraParams, 'module'> & { module?: string }, ctx: AnalysisContext, onModule?: (s: SpectraData, done: number, total: number) => void): Promise<{ modules: SpectraData[]; warnings: string[] }> {
  const progress = ctx.progress ?? noProgress;
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    let list = adapter.modules.filter((m) => !m.conv);
    if (params.module !== undefined) {
      const mod = adapter.modules.find((m) => m.name === params.module);
      if (!mod) throw new FormatError(adapter.path, `has no module "${params.module}" (modules: ${adapter.modules.slice(0, 4).map((m) => m.name).join(', ')}${adapter.modules.length > 4 ? ', …' : ''})`);
      list = [mod];
    }
    const match = checkAdapterBase(adapter, base, { force: params.force, modules: list });
    const out: SpectraData[] = [];
    for (const { module } of match.matched) {
      throwIfCancelled(ctx.token);
      const s = await spectraOfModule(ctx, adapter, base, module, params, cache, Date.now(), () => undefined);
      out.push(s);
      progress(out.length, match.matched.length, `spectra: ${module.name}`);
      onModule?.(s, out.length, match.matched.length);
    }
    return { modules: out, warnings: match.warnings };
  });
}

async function spectraOfModule(ctx: AnalysisContext, adapter: Adapter, base: BaseModel, mod: LoraModule, params: { k?: number; full?: boolean }, cache: DecompCache | undefined, t0: number, progress: NonNullable<AnalysisContext['progress']>): Promise<SpectraData> {
  const ref = baseWeightFor(mod, base);
  const m = ref.out, n = ref.in, d = Math.min(m, n);
  const full = !!params.full;
  const k = full ? d : Math.min(params.k ?? DEFAULT_TOPK, d);
  progress(0, 4, `reading ${ref.tensorName}`);
  const W0 = readBaseWeight(base, ref);
  const delta = readDelta(adapter, mod);
  throwIfCancelled(ctx.token);
  const { W, D } = await mergeAndDelta(ctx.engine, W0, m, n, delta);
  progress(1, 4, `σ(W0) of ${ref.tensorName}`);
  const exactLike = full || (k >= d && d <= FULL_SPECTRUM_MAX_DIM);
  const method = `sigma-${exactLike ? 'full' : `rsvd-k${k}-p8-q2-s1234`}-${m}x${n}`;
  const compute = async () => ({ arrays: { S: await topSigma(ctx.engine, W0, m, n, k, full) }, meta: {} });
  const baseE = cache ? await cache.getOrCompute({ ...refKey(ref), method }, compute) : { ...(await compute()), cached: false };
  throwIfCancelled(ctx.token);
  progress(2, 4, `σ(W0 + ΔW) of ${mod.name}`);
  const sMerged = await topSigma(ctx.engine, W, m, n, k, full);
  throwIfCancelled(ctx.token);
  progress(3, 4, `σ(ΔW) of ${mod.name}`);
  const sDelta = (await rsvd(ctx.engine, D, m, n, Math.min(delta.r, d))).S;
  progress(4, 4, 'spectra done');
  const sBase = baseE.arrays.S;
  // exact ‖W‖_F² (fp64 in onnxruntime): log_norm / stable_rank / MP bulk are exact on a top-k spectrum too
  const fro0 = await frobeniusSquared(ctx.engine, W0, m, n), fro1 = await frobeniusSquared(ctx.engine, W, m, n);
  return {
    module: mod.name, baseTensor: ref.tensorName, m, n, rank: delta.r, scale: delta.scale, full: exactLike, k: sBase.length,
    sigma: { base: Array.from(sBase), merged: Array.from(sMerged), delta: Array.from(sDelta) },
    esd: { base: logHistogram(squares(sBase), 40), merged: logHistogram(squares(sMerged), 40) },
    metrics: { base: metricsData(esdMetrics(sBase, m, n, { frobeniusSq: fro0 })), merged: metricsData(esdMetrics(sMerged, m, n, { frobeniusSq: fro1 })) },
    baseCached: baseE.cached, engine: engineInfo(ctx.engine), ms: Date.now() - t0,
  };
}

export function estimateFull(params: EstimateParams): EstimateResult {
  // two spectra (W0 and W0 + ΔW)
  return { seconds: 2 * estimateFullSpectrumSeconds(params.m, params.n), maxDim: FULL_SPECTRUM_MAX_DIM };
}

// ---------------------------------------------------------------------------------------------
// compare checkpoints

/** Weights of a file (safetensors/gguf/...), a sharded index, a model folder or an adapter folder. */
export function openAnyStore(p: string): TensorStore {
  if (!fs.existsSync(p)) throw new FormatError(p, 'does not exist');
  if (!fs.statSync(p).isDirectory()) return openStore(p);
  if (fs.existsSync(path.join(p, 'config.json'))) {
    try {
      return openBaseModel(p).store;
    } catch {
      /* not a model folder after all: look for weights below */
    }
  }
  const names = fs.readdirSync(p);
  const idx = names.filter((n) => n.endsWith('.safetensors.index.json'));
  if (idx.length === 1) return openStore(path.join(p, idx[0]));
  const st = names.filter((n) => n.endsWith('.safetensors'));
  if (st.length === 1) return openStore(path.join(p, st[0]));
  throw new FormatError(p, st.length > 1 ? `has ${st.length} safetensors files and no index; pick one file` : 'has no safetensors weights');
}

function dims2(shape: number[]): [number, number] {
  return [shape[0] ?? 1, shape.slice(1).reduce((a, b) => a * b, 1)];
}

export function layerOfName(name: string): number | undefined {
  const m = /(?:^|\.)(?:layers|layer|h|blocks|block|blk)\.(\d+)(?:\.|$)/.exec(name);
  return m ? Number(m[1]) : undefined;
}

function withTwoStores<T>(a: string, b: string, fn: (A: TensorStore, B: TensorStore) => Promise<T>): Promise<T> {
  const A = openAnyStore(a);
  let B: TensorStore;
  try {
    B = openAnyStore(b);
  } catch (e) {
    A.close();
    throw e;
  }
  return fn(A, B).finally(() => {
    A.close();
    B.close();
  });
}

/**
 * Per-tensor ‖W1 − W0‖_F / ‖W0‖_F of two checkpoints. Refuses unrelated checkpoints (no tensor of
 * the same name and shape) before reading any weight.
 */
export async function compareCheckpoints(params: CompareParams, ctx: AnalysisContext): Promise<CompareData & { warnings: string[] }> {
  const t0 = Date.now();
  const progress = ctx.progress ?? noProgress;
  return withTwoStores(params.a, params.b, async (A, B) => {
    const warnings = checkComparable(A, B);
    const rows: CompareTensorRow[] = [];
    const skipped: { name: string; reason: string }[] = [];
    const names = [...A.tensors.keys()];
    for (const n of B.tensors.keys()) if (!A.tensors.has(n)) skipped.push({ name: n, reason: 'only in B' });
    let i = 0;
    for (const name of names) {
      throwIfCancelled(ctx.token);
      progress(i++, names.length, `comparing ${name}`);
      const ta = A.tensors.get(name)!, tb = B.tensors.get(name);
      if (!tb) { skipped.push({ name, reason: 'only in A' }); continue; }
      if (ta.shape.join('x') !== tb.shape.join('x')) { skipped.push({ name, reason: `shape [${ta.shape}] vs [${tb.shape}]` }); continue; }
      let w0: Float32Array, w1: Float32Array;
      try {
        w0 = A.readF32(name);
        w1 = B.readF32(name);
      } catch (e) {
        skipped.push({ name, reason: (e as Error).message });
        continue;
      }
      let s0 = 0, sd = 0;
      for (let j = 0; j < w0.length; j++) {
        const a = w0[j], dd = w1[j] - a;
        s0 += a * a;
        sd += dd * dd;
      }
      const normBase = Math.sqrt(s0), normDiff = Math.sqrt(sd);
      rows.push({
        name, shape: ta.shape, dtype: ta.dtype, normBase, normDiff,
        relChange: normBase > 0 ? normDiff / normBase : normDiff > 0 ? Infinity : 0, layer: layerOfName(name),
      });
    }
    progress(names.length, names.length, 'compare done');
    return { a: path.resolve(params.a), b: path.resolve(params.b), rows, skipped, engine: engineInfo(ctx.engine), ms: Date.now() - t0, warnings };
  });
}

function transposeToRows(U: Float64Array, m: number, k: number): Float64Array {
  const r = new Float64Array(k * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) r[j * m + i] = U[i * k + j];
  return r;
}

/**
 * Intruders of a fully fine-tuned W1 against W0 (same rule as findIntruders, papers.md §2.2):
 * left basis of W0 (exact in 'auto' and 'exact' at every size; 'approx': top-256 by rsvd with 'possible' bounds),
 * top-k left vectors of W1, m_j = max_i |⟨y_j, x_i⟩|.
 */
export async function checkpointIntruders(engine: Engine, W0: Float32Array, W1: Float32Array, m: number, n: number, opts: { k?: number; epsilon?: number; mode?: IntruderMode; cache?: DecompCache; cacheKey?: Omit<CacheKey, 'method'> } = {}): Promise<CompareTensorData['intruders'] & { baseCached: boolean; sigmaTuned: Float64Array }> {
  const eps = opts.epsilon ?? 0.5;
  const d = Math.min(m, n);
  const k = Math.min(opts.k ?? 10, d);
  // 'auto' is exact at every size (issue 8: a count labelled certain must be proven); only an
  // explicit 'approx' takes the top-256 rsvd route with its 'possible' bounds
  const mode: 'exact' | 'approx' = opts.mode === 'approx' ? 'approx' : 'exact';
  const base = await baseLeftBasis(engine, W0, m, n, { exact: mode === 'exact', cache: opts.cache, cacheKey: opts.cacheKey });
  let Ut: Float64Array, St: Float64Array;
  if (mode === 'exact') {
    const t = await baseLeftBasis(engine, W1, m, n, { exact: true });
    Ut = t.rows.slice(0, k * m);
    St = t.S.slice(0, k);
  } else {
    const sv = await rsvd(engine, W1, m, n, k, { oversample: 10, powerIters: 2, seed: 1235 });
    Ut = transposeToRows(sv.U, m, k);
    St = sv.S;
  }
  const vectors: IntruderVectorData[] = await classifyAgainstBase(engine, base, Ut, St, m, k, eps, mode, d);
  const notes = mode === 'approx' ? [`approximate: compared with the top ${base.count} of ${d} left singular vectors of W0 (rsvd); 'possible' marks vectors whose max|cos| bound straddles ε`] : [];
  return {
    mode, epsilon: eps, baseVectors: base.count, count: vectors.filter((v) => v.status === 'intruder').length,
    possible: vectors.filter((v) => v.status === 'possible').length, vectors, notes, baseCached: base.cached, sigmaTuned: St,
  };
}

/** σ of W0, W1 and W1 − W0 of one tensor of two checkpoints, and intruders of W1 vs W0. */
export async function compareTensor(params: CompareTensorParams, ctx: AnalysisContext): Promise<CompareTensorData> {
  const t0 = Date.now();
  const progress = ctx.progress ?? noProgress;
  const cache = cacheFor(params.cacheDir);
  return withTwoStores(params.a, params.b, async (A, B) => {
    const ta = A.tensors.get(params.tensor), tb = B.tensors.get(params.tensor);
    if (!ta || !tb) throw new Error(`tensor "${params.tensor}" is not in both checkpoints`);
    if (ta.shape.length < 2) throw new Error(`tensor "${params.tensor}" is ${ta.shape.length}-D; spectra need a matrix`);
    if (ta.shape.join('x') !== tb.shape.join('x')) throw new Error(`tensor "${params.tensor}" has shapes [${ta.shape}] and [${tb.shape}]`);
    const [m, n] = dims2(ta.shape);
    const d = Math.min(m, n);
    const k = Math.min(params.k ?? DEFAULT_TOPK, d);
    progress(0, 4, `reading ${params.tensor}`);
    const W0 = A.readF32(params.tensor), W1 = B.readF32(params.tensor);
    throwIfCancelled(ctx.token);
    const D = await weightDiff(ctx.engine, W1, W0, m, n);
    progress(1, 4, 'σ(ΔW)');
    const sDelta = await topSigma(ctx.engine, D, m, n, k, false);
    throwIfCancelled(ctx.token);
    progress(2, 4, 'σ(W0)');
    const key = cache ? DecompCache.keyFor(ta.file, params.tensor, '') : undefined;
    const cacheKey = key && { file: key.file, tensor: key.tensor, mtimeMs: key.mtimeMs, size: key.size };
    const exactLike = k >= d && d <= FULL_SPECTRUM_MAX_DIM;
    const compute = async () => ({ arrays: { S: await topSigma(ctx.engine, W0, m, n, k, false) }, meta: {} });
    const method = `sigma-${exactLike ? 'full' : `rsvd-k${k}-p8-q2-s1234`}-${m}x${n}`;
    const baseE = cache && cacheKey ? await cache.getOrCompute({ ...cacheKey, method }, compute) : { ...(await compute()), cached: false };
    throwIfCancelled(ctx.token);
    progress(3, 4, 'σ(W1) and intruders of W1 vs W0');
    const sTuned = await topSigma(ctx.engine, W1, m, n, k, false);
    const intr = await checkpointIntruders(ctx.engine, W0, W1, m, n, { k: 10, epsilon: params.epsilon, mode: params.mode, cache, cacheKey });
    progress(4, 4, 'done');
    const { baseCached, sigmaTuned: _st, ...intruders } = intr;
    void _st;
    return {
      tensor: params.tensor, m, n, k,
      sigma: { base: Array.from(baseE.arrays.S), tuned: Array.from(sTuned), delta: Array.from(sDelta) },
      intruders, baseCached: baseE.cached || baseCached, engine: engineInfo(ctx.engine), ms: Date.now() - t0,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// ESD of every 2-D tensor (WeightWatcher's `analyze()` details table)

/**
 * One row per 2-D weight tensor, named as WeightWatcher's details columns. The spectrum is exact
 * when the smaller side is ≤ 1024 or with `full`; otherwise top-k by rsvd, and the metrics that
 * need the whole spectrum (alpha and its power-law fit, entropy, matrix_rank, sv_min) are null;
 * alpha is also null below 50 eigenvalues
 * (WeightWatcher's minimum, "not fittable"). norm / log_norm / stable_rank / mp_softrank always
 * use the exact ‖W‖_F² (sum of squares in fp64), not the truncated spectrum.
 */
export interface EsdRow {
  layer_id: number;
  name: string;
  layer?: number;
  shape: number[];
  dtype: string;
  N: number;
  M: number;
  full: boolean;
  num_evals: number;
  norm: number;
  log_norm: number;
  spectral_norm: number;
  log_spectral_norm: number;
  stable_rank: number;
  sv_max: number;
  sv_min: number | null;
  alpha: number | null;
  alpha_weighted: number | null;
  log_alpha_norm: number | null;
  xmin: number | null;
  D: number | null;
  sigma: number | null;
  num_pl_spikes: number | null;
  entropy: number | null;
  matrix_rank: number | null;
  mp_softrank: number;
  num_spikes: number | null;
  warning: string;
  warnings: string[];
}

/** Largest side for the Jacobi fallback of esdRow (O(d³) sweeps in TypeScript). */
const JACOBI_FALLBACK_MAX_DIM = 256;

/** WeightWatcher's minimum number of eigenvalues for a power-law fit. */
export const MIN_EVALS_FOR_ALPHA = 50;

export interface EsdOptions {
  /** Exact full spectrum of every tensor (slow when both sides exceed 1024). */
  full?: boolean;
  /** Top-k σ (rsvd) of the tensors whose smaller side exceeds 1024, without `full` (default 64). */
  k?: number;
  /** Only tensors whose name contains this. */
  filter?: string;
}

/** ESD metrics of one matrix W (m×n, row-major fp32). */
export async function esdRow(engine: Engine, W: Float32Array, m: number, n: number, opts: EsdOptions = {}): Promise<Omit<EsdRow, 'layer_id' | 'name' | 'layer' | 'shape' | 'dtype'>> {
  const d = Math.min(m, n);
  const k = Math.min(opts.k ?? DEFAULT_TOPK, d);
  // The exact spectrum (Gram of the small side) is cheap up to FULL_SPECTRUM_MAX_DIM and gives
  // alpha and exact σ_max: always used there. Above, top-k by rsvd unless --full.
  const full = !!opts.full || d <= FULL_SPECTRUM_MAX_DIM;
  let sv = await topSigma(engine, W, m, n, k, full);
  // The tridiagonal QL solver (src/core/linalg/eigen.ts) can break down with NaN on exactly
  // rank-deficient Grams (e.g. a constant matrix). Fallback: cyclic Jacobi on the same fp64 Gram
  // (small sides only); a NaN σ is never shown as a number.
  if (sv.some((x) => Number.isNaN(x))) {
    if (!full || d > JACOBI_FALLBACK_MAX_DIM) throw new Error('the eigen solver returned NaN for this matrix (rank-deficient Gram); no metrics');
    const G = await gramMat(engine, Float64Array.from(W), m, n, m <= n ? 'rows' : 'cols');
    sv = symEig(G).values.map((v) => Math.sqrt(Math.max(v, 0)));
    if (sv.some((x) => Number.isNaN(x))) throw new Error('no finite spectrum for this matrix; no metrics');
  }
  let fro2 = 0;
  for (let i = 0; i < W.length; i++) fro2 += W[i] * W[i];
  const e = esdMetrics(sv, m, n);
  const N = Math.max(m, n), M = d;
  const lmax = e.lambda_max;
  const sigma2 = fro2 / (N * M);
  const bulkMax = sigma2 * N * (1 + Math.sqrt(M / N)) ** 2;
  const warnings = e.warnings.filter((w) => full || !/truncated spectrum|alpha|power-law/.test(w));
  const fittable = full && e.num_evals >= MIN_EVALS_FOR_ALPHA;
  if (!full) warnings.push(`top-${sv.length} of ${M} singular values: alpha, entropy and matrix_rank need the full spectrum (--full)`);
  else if (!fittable) warnings.push(`alpha not fittable: ${e.num_evals} eigenvalues < ${MIN_EVALS_FOR_ALPHA}`);
  const fit = <T>(v: T): T | null => (fittable ? v : null);
  const spikes = sv.reduce((c, s) => c + (s * s > bulkMax ? 1 : 0), 0);
  return {
    N, M, full, num_evals: e.num_evals, norm: fro2, log_norm: Math.log10(fro2), spectral_norm: lmax, log_spectral_norm: Math.log10(lmax),
    stable_rank: lmax > 0 ? fro2 / lmax : NaN, sv_max: e.sv_max, sv_min: full ? e.sv_min : null,
    alpha: fit(e.alpha), alpha_weighted: fit(e.alpha_weighted), log_alpha_norm: fit(e.log_alpha_norm), xmin: fit(e.xmin), D: fit(e.D), sigma: fit(e.sigma),
    num_pl_spikes: fit(e.num_pl_spikes), entropy: full ? e.entropy : null, matrix_rank: full ? e.matrix_rank : null,
    mp_softrank: lmax > 0 ? bulkMax / lmax : NaN, num_spikes: full || spikes < sv.length ? spikes : null,
    warning: !full ? 'truncated' : !fittable ? 'not fittable' : e.alpha > 6 ? 'under-trained' : e.alpha < 2 ? 'over-trained' : '',
    warnings,
  };
}

/** ESD rows of every 2-D tensor of a checkpoint (file, index, model or adapter folder); `onRow` streams them. */
export async function esdRows(p: string, ctx: AnalysisContext, opts: EsdOptions = {}, onRow?: (r: EsdRow, done: number, total: number) => void): Promise<{ path: string; rows: EsdRow[]; skipped: { name: string; reason: string }[] }> {
  const progress = ctx.progress ?? noProgress;
  const store = openAnyStore(p);
  try {
    const rows: EsdRow[] = [];
    const skipped: { name: string; reason: string }[] = [];
    const list = [...store.tensors.values()].filter((t) => !opts.filter || t.name.includes(opts.filter));
    const mats = list.filter((t) => t.shape.length === 2 && Math.min(t.shape[0], t.shape[1]) >= 2);
    for (const t of list) if (!mats.includes(t)) skipped.push({ name: t.name, reason: t.shape.length === 2 ? `[${t.shape.join(', ')}] has a side < 2` : `${t.shape.length}-D` });
    let i = 0;
    for (const t of mats) {
      throwIfCancelled(ctx.token);
      progress(i, mats.length, `esd: ${t.name}`);
      let W: Float32Array;
      try {
        W = store.readF32(t.name);
      } catch (e) {
        skipped.push({ name: t.name, reason: (e as Error).message });
        continue;
      }
      const [m, n] = t.shape;
      let metrics: Awaited<ReturnType<typeof esdRow>>;
      try {
        metrics = await esdRow(ctx.engine, W, m, n, opts);
      } catch (e) {
        skipped.push({ name: t.name, reason: (e as Error).message });
        continue;
      }
      const r: EsdRow = { layer_id: i++, name: t.name, layer: layerOfName(t.name), shape: t.shape, dtype: t.dtype, ...metrics };
      rows.push(r);
      onRow?.(r, i, mats.length);
    }
    if (list.length > 0 && mats.length === 0) throw new FormatError(p, `has no 2-D weight tensor${opts.filter ? ` matching "${opts.filter}"` : ''}`);
    progress(mats.length, mats.length, 'esd: done');
    return { path: path.resolve(p), rows, skipped };
  } finally {
    store.close();
  }
}
