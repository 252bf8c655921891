/**
 * The worker contract, defined once: every job is a descriptor `job<Params, Result, Progress>(kind)`
 * declared here (and only here). The host runs it with `worker.run(Job, params)` (src/worker/client.ts);
 * the worker handles it with `handle(Job, fn)` (src/worker/jobs/registry.ts), so the compiler follows a
 * request from the host through the worker into the core. Params/Result types live in src/shared/<feature>.ts.
 *
 * Wire messages: every request carries an id and gets exactly one `result` or `error`; `progress`
 * messages may carry streamed partial results (`data`, typed by the job's third parameter).
 */
import type { AnalyzeModelParams, AnalyzeModelResult, ModelProgressData, BaseResolution, CompareData, CompareParams, CompareTensorData, CompareTensorParams, EstimateParams, EstimateResult, IntrudersData, IntrudersParams, MitigateData, MitigateParams, SpectraData, SpectraParams } from './base';
import type { ConvertJobParams, ConvertResult } from './convert';
import type { DescribeParams, DescribeResult, ScanParams, ScanResult } from './inspect';
import type { Provider } from './provider';
import type { AdapterReport } from './report';
import type { DynamicsParams, DynamicsResult, KoubbiResult, LipschitzParams, LipschitzResult, VloraParams, VloraResult } from './research';
import type {
  CombineParams, MergeParams, PlanJobResult, PlanParams, RebalanceJobResult, RebalanceParams, ReduceJobResult, ReduceParams, RescaleParams, SimpleJobResult,
} from './surgery';
import type { DoctorJobResult, DoctorParams } from './doctor';
import type { DoraParams, DoraProgressData, DoraResult } from './dora';
import type { ExtractJobResult, ExtractParams } from './extract';
import type { FleetJobResult, FleetParams, FleetProgressData } from './fleet';
import type { MergeJobParams, MergePreviewResult, MergeWriteParams, MergeWriteResult } from './merge';
import type { ReportParams, ReportResult } from './peers';
import type { SimilarityParams, SimilarityResultView } from './similarity';
import type { TrainJobParams, TrainJobResult, TrainProgressData } from './training';
import type { ViewerData } from './viewer';

/** A typed job descriptor. `P`, `R`, `D` exist for the compiler only (phantom fields, never set). */
export interface Job<P, R, D = undefined> {
  readonly kind: string;
  readonly __types?: { params: P; result: R; data: D };
}

export type ParamsOf<J> = J extends Job<infer P, unknown, unknown> ? P : never;
export type ResultOf<J> = J extends Job<unknown, infer R, unknown> ? R : never;

export function job<P, R, D = undefined>(kind: string): Job<P, R, D> {
  return { kind };
}

// ---- analysis
export interface AnalyzeParams { path: string; method?: 'auto' | 'householder' }
export const Analyze = job<AnalyzeParams, AdapterReport>('analysis.adapter');

/** DoRA modules against their base (issue 11.6): one module result streamed per progress message. */
export const Dora = job<DoraParams, DoraResult, DoraProgressData>('analysis.dora');

// ---- reading checkpoint headers for the UI (tree, hovers, pickers, viewer)
export const Scan = job<ScanParams, ScanResult>('inspect.scan');
export const Describe = job<DescribeParams, DescribeResult>('inspect.describe');
export const ViewerInit = job<{ file: string }, ViewerData>('inspect.viewer');

// ---- base-model analyses (issue 3)
/** The base model of an adapter (core/base/resolve.ts); `roots` are extra folders to resolve relative ids in. */
export const ResolveBase = job<{ adapterPath: string; roots?: string[] }, BaseResolution>('base.resolve');
/** Checks that `dir` is a base model folder (config.json + weights); rejects with the reason. */
export const ValidateBase = job<{ dir: string }, { dir: string }>('base.validate');
/** The base weights file of a folder or file (model.safetensors[.index.json] or the one *.safetensors). */
export const BaseWeights = job<{ path: string }, { weights?: string }>('base.weights');
export const Intruders = job<IntrudersParams, IntrudersData>('base.intruders');
export const Mitigate = job<MitigateParams, MitigateData>('base.mitigate');
export const Spectra = job<SpectraParams, SpectraData>('base.spectra');
export const EstimateFull = job<EstimateParams, EstimateResult>('base.estimateFull');
export const Compare = job<CompareParams, CompareData>('base.compare');
export const CompareTensor = job<CompareTensorParams, CompareTensorData>('base.compareTensor');
/** Analyze Model (issue 10): intruders + ESD of every module, each row streamed as progress data. */
export const AnalyzeModel = job<AnalyzeModelParams, AnalyzeModelResult, ModelProgressData>('base.analyzeModel');

// ---- surgery (issue 4)
export const Rebalance = job<RebalanceParams, RebalanceJobResult>('surgery.rebalance');
export const Plan = job<PlanParams, PlanJobResult>('surgery.plan');
export const Reduce = job<ReduceParams, ReduceJobResult>('surgery.reduce');
export const Merge = job<MergeParams, SimpleJobResult>('surgery.merge');
export const Combine = job<CombineParams, SimpleJobResult>('surgery.combine');
export const Rescale = job<RescaleParams, SimpleJobResult>('surgery.rescale');

// ---- training
export const Train = job<TrainJobParams, TrainJobResult, TrainProgressData>('training.run');

// ---- research views
export const Lipschitz = job<LipschitzParams, LipschitzResult>('research.lipschitz');
export const Dynamics = job<DynamicsParams, DynamicsResult>('research.dynamics');
export const Koubbi = job<Record<string, never>, KoubbiResult>('research.koubbi');
export const Vlora = job<VloraParams, VloraResult>('research.vlora');

// ---- conversion
export const Convert = job<ConvertJobParams, ConvertResult>('convert.adapter');

// ---- issue 11 in the editor: doctor, similarity, fleets, N-adapter merges, extraction, reports
export const Doctor = job<DoctorParams, DoctorJobResult>('peers.doctor');
export const Similarity = job<SimilarityParams, SimilarityResultView>('peers.similarity');
export const Fleet = job<FleetParams, FleetJobResult, FleetProgressData>('peers.fleet');
export const MergePreview = job<MergeJobParams, MergePreviewResult>('peers.mergePreview');
export const MergeWrite = job<MergeWriteParams, MergeWriteResult>('peers.mergeWrite');
export const Extract = job<ExtractParams, ExtractJobResult>('peers.extract');
export const ExportReport = job<ReportParams, ReportResult>('peers.report');

// ---- wire messages
export type WorkerRequest =
  | { type: 'job'; id: number; kind: string; params: unknown; provider?: Provider }
  | { type: 'cancel'; id: number };

export type WorkerResponse =
  | { type: 'progress'; id: number; done: number; total: number; message: string; data?: unknown }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; message: string; cancelled?: boolean };
