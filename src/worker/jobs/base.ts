/**
 * Worker jobs of the base-model analyses (issue 3): intruder dimensions of an adapter against its
 * base model (+ mitigation into a NEW adapter), spectra of W0 / W0+ΔW / ΔW with ESD metrics, and
 * checkpoint comparison (per-tensor relative change, ΔW spectra and intruders of W1 vs W0).
 *
 * The compute lives in src/core/base/analyses.ts (shared with the CLI); these handlers only adapt
 * it to the worker. They are exported so that unit tests call them directly.
 */
import * as core from '../../core/base/analyses';
import type { DecompCache, CacheKey } from '../../core/base/cache';
import type { Engine } from '../../core/engine/ort';
import type { TensorStore } from '../../core/formats/store';
import type {
  CompareData, CompareParams, CompareTensorData, CompareTensorParams, EstimateParams, EstimateResult,
  IntruderMode, IntrudersData, IntrudersParams, MitigateData, MitigateParams, SpectraData, SpectraParams,
} from '../../shared/base';
import type { AnalyzeModelParams, AnalyzeModelResult, ModelProgressData } from '../../shared/base';
import { AnalyzeModel, Compare, CompareTensor, EstimateFull, Intruders, Mitigate, Spectra } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

export async function intrudersJob(params: IntrudersParams, ctx: JobContext): Promise<IntrudersData> {
  return core.runIntruders(params, ctx);
}

/**
 * PEFT `reduce_intruder_dimension`: writes a NEW adapter whose intruder σ are scaled by λ, verified
 * (src/core/base/analyses.ts runMitigate).
 */
export async function mitigateJob(params: MitigateParams, ctx: JobContext): Promise<MitigateData> {
  return core.runMitigate(params, ctx);
}

export async function spectraJob(params: SpectraParams, ctx: JobContext): Promise<SpectraData> {
  return core.runSpectra(params, ctx);
}

export async function estimateJob(params: EstimateParams): Promise<EstimateResult> {
  return core.estimateFull(params);
}

/** Weights of a file (safetensors/gguf/...), a sharded index, a model folder or an adapter folder. */
export function openAnyStore(p: string): TensorStore {
  return core.openAnyStore(p);
}

export async function compareJob(params: CompareParams, ctx: JobContext): Promise<CompareData> {
  return core.compareCheckpoints(params, ctx);
}

/** Intruders of a fully fine-tuned W1 against W0 (src/core/base/analyses.ts). */
export async function checkpointIntruders(engine: Engine, W0: Float32Array, W1: Float32Array, m: number, n: number, opts: { k?: number; epsilon?: number; mode?: IntruderMode; cache?: DecompCache; cacheKey?: Omit<CacheKey, 'method'> } = {}): Promise<CompareTensorData['intruders'] & { baseCached: boolean; sigmaTuned: Float64Array }> {
  return core.checkpointIntruders(engine, W0, W1, m, n, opts);
}

export async function compareTensorJob(params: CompareTensorParams, ctx: JobContext): Promise<CompareTensorData> {
  return core.compareTensor(params, ctx);
}

/**
 * Analyze Model (issue 10): intruders + ESD of every module; each finished module is streamed as the
 * progress message's data (`{ row }`), so the panel fills while the job runs.
 */
export async function analyzeModelJob(params: AnalyzeModelParams, ctx: JobContext<ModelProgressData>): Promise<AnalyzeModelResult> {
  return core.runModelAnalysis(params, { engine: ctx.engine, token: ctx.token, progress: (d, t, m) => ctx.progress(d, t, m) },
    (row, done, total) => ctx.progress(done, total, `${done}/${total} modules: ${row.name}`, { row }));
}

export const baseHandlers: JobHandler[] = [
  handle(AnalyzeModel, analyzeModelJob),
  handle(Intruders, intrudersJob),
  handle(Mitigate, mitigateJob),
  handle(Spectra, spectraJob),
  handle(EstimateFull, estimateJob),
  handle(Compare, compareJob),
  handle(CompareTensor, compareTensorJob),
];
