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
import type { TensorStore } from '../../core/formats/safetensors';
import type {
  CompareData, CompareTensorData, IntruderMode, IntrudersData, MitigateData, SpectraData,
} from '../../../webview/base/protocol';
import { registerJob, type JobContext } from './registry';

export const BASE_JOBS = {
  intruders: 'base.intruders',
  mitigate: 'base.mitigate',
  spectra: 'base.spectra',
  estimate: 'base.estimateFull',
  compare: 'base.compare',
  compareTensor: 'base.compareTensor',
} as const;

export interface IntrudersParams {
  adapterPath: string;
  baseDir: string;
  k?: number;
  epsilon?: number;
  mode?: IntruderMode;
  /** DecompCache folder (context.globalStorageUri/decomp); no cache when absent. */
  cacheDir?: string;
}

export interface MitigateParams extends IntrudersParams {
  lambda: number;
  outDir: string;
}

export interface SpectraParams {
  adapterPath: string;
  baseDir: string;
  module: string;
  /** Top-k singular values by rsvd (default 64). */
  k?: number;
  /** Exact full spectra of W0 and W0+ΔW (the host confirms the time estimate first). */
  full?: boolean;
  cacheDir?: string;
}

export interface EstimateParams { m: number; n: number }
export interface EstimateResult { seconds: number; maxDim: number }

export interface CompareParams { a: string; b: string }
export interface CompareTensorParams extends CompareParams {
  tensor: string;
  k?: number;
  epsilon?: number;
  mode?: IntruderMode;
  cacheDir?: string;
}

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

registerJob(BASE_JOBS.intruders, (p, ctx) => intrudersJob(p as IntrudersParams, ctx));
registerJob(BASE_JOBS.mitigate, (p, ctx) => mitigateJob(p as MitigateParams, ctx));
registerJob(BASE_JOBS.spectra, (p, ctx) => spectraJob(p as SpectraParams, ctx));
registerJob(BASE_JOBS.estimate, (p) => estimateJob(p as EstimateParams));
registerJob(BASE_JOBS.compare, (p, ctx) => compareJob(p as CompareParams, ctx));
registerJob(BASE_JOBS.compareTensor, (p, ctx) => compareTensorJob(p as CompareTensorParams, ctx));
