/**
 * Worker jobs of the base-model analyses (issue 3): intruder dimensions of an adapter against its
 * base model (+ mitigation into a NEW adapter), spectra of W0 / W0+ΔW / ΔW with ESD metrics, and
 * checkpoint comparison (per-tensor relative change, ΔW spectra and intruders of W1 vs W0).
 *
 * Every product touching an m×n weight runs in onnxruntime (rsvd, Grams, merge/diff graphs);
 * base-model decompositions are cached on disk (DecompCache) per (file, tensor, mtime, size).
 * Handlers are exported so that unit tests call them directly, without the worker thread.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openBaseModel, baseWeightFor, readBaseWeight, type BaseModel, type BaseWeightRef } from '../../core/base/basemodel';
import { DecompCache, type CacheKey } from '../../core/base/cache';
import { esdMetrics, logHistogram, type EsdMetrics } from '../../core/base/esd';
import { adapterIntruders, baseLeftBasis, type AdapterIntruders, mitigateIntruders, readDelta, findIntruders, classifyAgainstBase, type IntruderVector } from '../../core/base/intruders';
import { fullSpectrum, rsvd, estimateFullSpectrumSeconds, FULL_SPECTRUM_MAX_DIM } from '../../core/base/rsvd';
import { GraphBuilder } from '../../core/engine/graph';
import type { Engine } from '../../core/engine/ort';
import type { Adapter, LoraModule } from '../../core/formats/adapter';
import { FormatError, throwIfCancelled } from '../../core/formats/errors';
import { openAdapter, openStore } from '../../core/formats/open';
import type { TensorStore } from '../../core/formats/store';
import {
  encodeFactor, inFileOrder, lowRankDiff, productTolerance, provenance, readPair, writeLike,
} from '../../core/surgery/balora';
import { removeOutput, type OutTensor } from '../../core/surgery/writer';
import type {
  CompareData, CompareParams, CompareTensorData, CompareTensorParams, CompareTensorRow, EsdMetricsData, EstimateParams, EstimateResult,
  IntruderMode, IntrudersData, IntrudersParams, IntruderVectorData, MitigateData, MitigateParams, SpectraData, SpectraParams,
} from '../../shared/base';
import { Compare, CompareTensor, EstimateFull, Intruders, Mitigate, Spectra } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

const DEFAULT_TOPK = 64;

function cacheFor(dir?: string): DecompCache | undefined {
  return dir ? new DecompCache(dir) : undefined;
}

function engineInfo(engine: Engine): { provider: string; fallbackReason?: string } {
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

function withAdapterAndBase<T>(adapterPath: string, baseDir: string, fn: (a: Adapter, b: BaseModel) => Promise<T>): Promise<T> {
  const adapter = openAdapter(adapterPath);
  let base: BaseModel | undefined;
  try {
    base = openBaseModel(baseDir);
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

export async function intrudersJob(params: IntrudersParams, ctx: JobContext): Promise<IntrudersData> {
  const t0 = Date.now();
  const k = params.k ?? 10, epsilon = params.epsilon ?? 0.5, mode = params.mode ?? 'auto';
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const total = adapter.modules.length;
    const res: AdapterIntruders = { modules: [], errors: [], totals: { modules: total, analysed: 0, intruders: 0, possible: 0 } };
    let done = 0;
    for (const mod of adapter.modules) {
      // one module at a time: progress + cancellation point between modules
      throwIfCancelled(ctx.token);
      ctx.progress(done++, total, `intruders: ${mod.name}`);
      const r = await adapterIntruders(ctx.engine, adapter, base, { k, epsilon, mode, cache, filter: (m) => m === mod });
      res.modules.push(...r.modules);
      res.errors.push(...r.errors);
    }
    res.totals.analysed = res.modules.length;
    res.totals.intruders = res.modules.reduce((s, m) => s + m.count, 0);
    res.totals.possible = res.modules.reduce((s, m) => s + m.possible, 0);
    ctx.progress(total, total, 'intruders: done');
    const byName = new Map(adapter.modules.map((m) => [m.name, m]));
    return {
      adapter: { name: adapter.name, path: adapter.path },
      base: { dir: base.dir },
      settings: { k, epsilon, mode },
      modules: res.modules.map((r) => {
        const lm = byName.get(r.name);
        return {
          name: r.name, layer: lm?.layer, kind: lm?.kind ?? r.name.split('.').pop() ?? r.name, baseTensor: r.baseTensor, mode: r.mode,
          m: r.m, n: r.n, baseVectors: r.baseVectors, count: r.count, possible: r.possible, vectors: r.vectors.map(vecData), notes: r.notes,
          baseCached: r.baseCached,
        };
      }),
      errors: res.errors,
      totals: res.totals,
      cache: { hits: res.modules.filter((m) => m.baseCached).length, misses: res.modules.filter((m) => !m.baseCached).length },
      engine: engineInfo(ctx.engine),
      ms: Date.now() - t0,
    };
  });
}

/**
 * PEFT `reduce_intruder_dimension`: writes a NEW adapter (same format, dtype and config) whose
 * modules with intruders have their intruder singular values scaled by λ; reopens it and verifies
 * every rewritten module's product against the computed factors (output deleted on failure).
 */
export async function mitigateJob(params: MitigateParams, ctx: JobContext): Promise<MitigateData> {
  const k = params.k ?? 10, epsilon = params.epsilon ?? 0.5, mode = params.mode ?? 'auto';
  if (!(params.lambda >= 0 && params.lambda <= 1)) throw new Error(`λ must be in [0, 1], got ${params.lambda}`);
  if (fs.existsSync(params.outDir)) throw new Error(`${params.outDir}: already exists; LoRA Lens never overwrites, choose a new folder`);
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const mods = adapter.modules.filter((m) => !m.conv);
    const planned = new Map<string, { m: LoraModule; B: Float32Array; A: Float32Array; intruders: number[]; truncationError: number }>();
    const tensors: OutTensor[] = [];
    let done = 0;
    for (const m of mods) {
      throwIfCancelled(ctx.token);
      ctx.progress(done++, mods.length * 2, `mitigating ${m.name}`);
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
    try {
      const re = openAdapter(written.out);
      try {
        if (re.modules.length !== adapter.modules.length) throw new Error(`verification: ${re.modules.length} modules written, ${adapter.modules.length} expected`);
        for (const m2 of re.modules) {
          const p = planned.get(m2.name);
          if (!p) continue;
          throwIfCancelled(ctx.token);
          ctx.progress(done++, mods.length * 2, `verifying ${m2.name}`);
          const f2 = readPair(re, m2);
          const d = await lowRankDiff(ctx.engine, { A: Float64Array.from(p.A), B: Float64Array.from(p.B), r: m2.rank, s: 1 }, { A: f2.A, B: f2.B, r: f2.r, s: 1 }, f2.outF, f2.inF);
          const tol = d.refMax > 0 ? productTolerance(d, m2.A.tensor.dtype) / d.refMax : 0;
          const rel = d.refMax > 0 ? d.errMax / d.refMax : d.errMax;
          if (!(rel <= tol) && !(d.refMax === 0 && d.errMax === 0)) {
            throw new Error(`verification failed for ${m2.name}: max|B'A' − BA|/max|BA| = ${rel.toExponential(3)} > ${tol.toExponential(3)}`);
          }
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
    ctx.progress(mods.length * 2, mods.length * 2, 'mitigation written and verified');
    return { outDir: written.out, lambda: params.lambda, changed, unchanged: adapter.modules.length - changed.length, verified: true };
  });
}

// ---------------------------------------------------------------------------------------------
// spectra

function mergeAndDeltaGraph(): Uint8Array {
  const g = new GraphBuilder('base_merge_delta');
  g.input('W0', 'float32', ['m', 'n']);
  g.input('B', 'float32', ['m', 'r']);
  g.input('A', 'float32', ['r', 'n']);
  g.input('s', 'float32', [1]);
  const d = g.op('Mul', [g.op('MatMul', ['B', 'A']), 's'], {}, 'D');
  g.op('Add', ['W0', d], {}, 'W');
  g.output('W', 'float32', ['m', 'n']);
  g.output('D', 'float32', ['m', 'n']);
  return g.build();
}

function diffGraph(): Uint8Array {
  const g = new GraphBuilder('base_diff');
  g.input('W1', 'float32', ['m', 'n']);
  g.input('W0', 'float32', ['m', 'n']);
  g.op('Sub', ['W1', 'W0'], {}, 'D');
  g.output('D', 'float32', ['m', 'n']);
  return g.build();
}

async function topSigma(engine: Engine, W: Float32Array, m: number, n: number, k: number, full: boolean): Promise<Float64Array> {
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
    num_pl_spikes: e.num_pl_spikes, D: e.D, warnings: e.warnings,
  };
}

const squares = (s: ArrayLike<number>): number[] => Array.from(s, (x) => x * x);

export async function spectraJob(params: SpectraParams, ctx: JobContext): Promise<SpectraData> {
  const t0 = Date.now();
  const cache = cacheFor(params.cacheDir);
  return withAdapterAndBase(params.adapterPath, params.baseDir, async (adapter, base) => {
    const mod = adapter.modules.find((m) => m.name === params.module);
    if (!mod) throw new Error(`${adapter.name} has no module "${params.module}"`);
    const ref = baseWeightFor(mod, base);
    const m = ref.out, n = ref.in, d = Math.min(m, n);
    const full = !!params.full;
    const k = full ? d : Math.min(params.k ?? DEFAULT_TOPK, d);
    ctx.progress(0, 4, `reading ${ref.tensorName}`);
    const W0 = readBaseWeight(base, ref);
    const delta = readDelta(adapter, mod);
    throwIfCancelled(ctx.token);
    const s = await ctx.engine.session('base_merge_delta', mergeAndDeltaGraph);
    const out = await ctx.engine.run(s, {
      W0: ctx.engine.tensor('float32', W0, [m, n]),
      B: ctx.engine.tensor('float32', delta.B, [m, delta.r]),
      A: ctx.engine.tensor('float32', delta.A, [delta.r, n]),
      s: ctx.engine.tensor('float32', Float32Array.of(delta.scale), [1]),
    });
    const W = out.W.data as Float32Array, D = out.D.data as Float32Array;
    ctx.progress(1, 4, `σ(W0) of ${ref.tensorName}`);
    const exactLike = full || (k >= d && d <= FULL_SPECTRUM_MAX_DIM);
    const method = `sigma-${exactLike ? 'full' : `rsvd-k${k}-p8-q2-s1234`}-${m}x${n}`;
    const compute = async () => ({ arrays: { S: await topSigma(ctx.engine, W0, m, n, k, full) }, meta: {} });
    const baseE = cache ? await cache.getOrCompute({ ...refKey(ref), method }, compute) : { ...(await compute()), cached: false };
    throwIfCancelled(ctx.token);
    ctx.progress(2, 4, `σ(W0 + ΔW) of ${mod.name}`);
    const sMerged = await topSigma(ctx.engine, W, m, n, k, full);
    throwIfCancelled(ctx.token);
    ctx.progress(3, 4, `σ(ΔW) of ${mod.name}`);
    const sDelta = (await rsvd(ctx.engine, D, m, n, Math.min(delta.r, d))).S;
    ctx.progress(4, 4, 'spectra done');
    const sBase = baseE.arrays.S;
    return {
      module: mod.name, baseTensor: ref.tensorName, m, n, rank: delta.r, scale: delta.scale, full: exactLike, k: sBase.length,
      sigma: { base: Array.from(sBase), merged: Array.from(sMerged), delta: Array.from(sDelta) },
      esd: { base: logHistogram(squares(sBase), 40), merged: logHistogram(squares(sMerged), 40) },
      metrics: { base: metricsData(esdMetrics(sBase, m, n)), merged: metricsData(esdMetrics(sMerged, m, n)) },
      baseCached: baseE.cached, engine: engineInfo(ctx.engine), ms: Date.now() - t0,
    };
  });
}

export async function estimateJob(params: EstimateParams): Promise<EstimateResult> {
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

function layerOfName(name: string): number | undefined {
  const m = /(?:^|\.)(?:layers|layer|h|blocks|block|blk)\.(\d+)(?:\.|$)/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export async function compareJob(params: CompareParams, ctx: JobContext): Promise<CompareData> {
  const t0 = Date.now();
  const A = openAnyStore(params.a);
  try {
    const B = openAnyStore(params.b);
    try {
      const rows: CompareTensorRow[] = [];
      const skipped: { name: string; reason: string }[] = [];
      const names = [...A.tensors.keys()];
      for (const n of B.tensors.keys()) if (!A.tensors.has(n)) skipped.push({ name: n, reason: 'only in B' });
      let i = 0;
      for (const name of names) {
        throwIfCancelled(ctx.token);
        ctx.progress(i++, names.length, `comparing ${name}`);
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
      ctx.progress(names.length, names.length, 'compare done');
      return { a: path.resolve(params.a), b: path.resolve(params.b), rows, skipped, engine: engineInfo(ctx.engine), ms: Date.now() - t0 };
    } finally {
      B.close();
    }
  } finally {
    A.close();
  }
}

function transposeToRows(U: Float64Array, m: number, k: number): Float64Array {
  const r = new Float64Array(k * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) r[j * m + i] = U[i * k + j];
  return r;
}

/**
 * Intruders of a fully fine-tuned W1 against W0 (same rule as findIntruders, papers.md §2.2):
 * left basis of W0 (exact when m ≤ 1024, else top-256 by rsvd with the sound 'possible' bounds),
 * top-k left vectors of W1, m_j = max_i |⟨y_j, x_i⟩|.
 */
export async function checkpointIntruders(engine: Engine, W0: Float32Array, W1: Float32Array, m: number, n: number, opts: { k?: number; epsilon?: number; mode?: IntruderMode; cache?: DecompCache; cacheKey?: Omit<CacheKey, 'method'> } = {}): Promise<CompareTensorData['intruders'] & { baseCached: boolean; sigmaTuned: Float64Array }> {
  const eps = opts.epsilon ?? 0.5;
  const d = Math.min(m, n);
  const k = Math.min(opts.k ?? 10, d);
  const mode = opts.mode === 'exact' || opts.mode === 'approx' ? opts.mode : m <= FULL_SPECTRUM_MAX_DIM ? 'exact' : 'approx';
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

export async function compareTensorJob(params: CompareTensorParams, ctx: JobContext): Promise<CompareTensorData> {
  const t0 = Date.now();
  const cache = cacheFor(params.cacheDir);
  const A = openAnyStore(params.a);
  try {
    const B = openAnyStore(params.b);
    try {
      const ta = A.tensors.get(params.tensor), tb = B.tensors.get(params.tensor);
      if (!ta || !tb) throw new Error(`tensor "${params.tensor}" is not in both checkpoints`);
      if (ta.shape.length < 2) throw new Error(`tensor "${params.tensor}" is ${ta.shape.length}-D; spectra need a matrix`);
      if (ta.shape.join('x') !== tb.shape.join('x')) throw new Error(`tensor "${params.tensor}" has shapes [${ta.shape}] and [${tb.shape}]`);
      const [m, n] = dims2(ta.shape);
      const d = Math.min(m, n);
      const k = Math.min(params.k ?? DEFAULT_TOPK, d);
      ctx.progress(0, 4, `reading ${params.tensor}`);
      const W0 = A.readF32(params.tensor), W1 = B.readF32(params.tensor);
      throwIfCancelled(ctx.token);
      const s = await ctx.engine.session('base_diff', diffGraph);
      const D = (await ctx.engine.run(s, { W1: ctx.engine.tensor('float32', W1, [m, n]), W0: ctx.engine.tensor('float32', W0, [m, n]) })).D.data as Float32Array;
      ctx.progress(1, 4, 'σ(ΔW)');
      const sDelta = await topSigma(ctx.engine, D, m, n, k, false);
      throwIfCancelled(ctx.token);
      ctx.progress(2, 4, 'σ(W0)');
      const key = cache ? DecompCache.keyFor(ta.file, params.tensor, '') : undefined;
      const cacheKey = key && { file: key.file, tensor: key.tensor, mtimeMs: key.mtimeMs, size: key.size };
      const exactLike = k >= d && d <= FULL_SPECTRUM_MAX_DIM;
      const compute = async () => ({ arrays: { S: await topSigma(ctx.engine, W0, m, n, k, false) }, meta: {} });
      const method = `sigma-${exactLike ? 'full' : `rsvd-k${k}-p8-q2-s1234`}-${m}x${n}`;
      const baseE = cache && cacheKey ? await cache.getOrCompute({ ...cacheKey, method }, compute) : { ...(await compute()), cached: false };
      throwIfCancelled(ctx.token);
      ctx.progress(3, 4, 'σ(W1) and intruders of W1 vs W0');
      const sTuned = await topSigma(ctx.engine, W1, m, n, k, false);
      const intr = await checkpointIntruders(ctx.engine, W0, W1, m, n, { k: 10, epsilon: params.epsilon, mode: params.mode, cache, cacheKey });
      ctx.progress(4, 4, 'done');
      const { baseCached, sigmaTuned: _st, ...intruders } = intr;
      void _st;
      return {
        tensor: params.tensor, m, n, k,
        sigma: { base: Array.from(baseE.arrays.S), tuned: Array.from(sTuned), delta: Array.from(sDelta) },
        intruders, baseCached: baseE.cached || baseCached, engine: engineInfo(ctx.engine), ms: Date.now() - t0,
      };
    } finally {
      B.close();
    }
  } finally {
    A.close();
  }
}

export const baseHandlers: JobHandler[] = [
  handle(Intruders, intrudersJob),
  handle(Mitigate, mitigateJob),
  handle(Spectra, spectraJob),
  handle(EstimateFull, estimateJob),
  handle(Compare, compareJob),
  handle(CompareTensor, compareTensorJob),
];
