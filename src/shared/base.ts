/**
 * Typed protocol and plain data types of the base-model webviews (`loraLens.intruders`,
 * `loraLens.spectra`, `loraLens.compare`), shared by the host (src/host/features/base), the worker
 * jobs (src/worker/jobs/base.ts, type-only) and the webview (webview/base/main.ts).
 *
 * Handshake: the webview posts `ready`; the host answers with `init` (and again when the data
 * changes). Requests carry a `requestId`; the host answers with `reply` carrying the same id and,
 * on failure, `error` (the webview's promise rejects).
 * No DOM or Node types here: this file is compiled by both tsconfigs.
 */

import type { IntruderStatus, IntruderVector } from './analysisTypes';
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';

export type { IntruderStatus };
export type IntruderVectorData = IntruderVector;

export type IntruderMode = 'auto' | 'exact' | 'approx';

export interface EngineInfo {
  provider: string;
  fallbackReason?: string;
}


export interface IntruderModuleData {
  name: string;
  layer?: number;
  kind: string;
  baseTensor: string;
  mode: 'exact' | 'approx';
  m: number;
  n: number;
  baseVectors: number;
  count: number;
  possible: number;
  vectors: IntruderVectorData[];
  notes: string[];
  baseCached: boolean;
}

export interface IntrudersData {
  adapter: { name: string; path: string };
  base: { dir: string };
  settings: { k: number; epsilon: number; mode: IntruderMode; lambda?: number };
  modules: IntruderModuleData[];
  errors: { name: string; message: string }[];
  totals: { modules: number; analysed: number; intruders: number; possible: number };
  cache: { hits: number; misses: number };
  engine: EngineInfo;
  ms: number;
}

export interface MitigateData {
  outDir: string;
  lambda: number;
  changed: { name: string; intruders: number[]; truncationError: number; maxRelErr: number; intrudersAfter: number }[];
  unchanged: number;
  verified: boolean;
  /** What was checked after writing (reopened; every rewritten module's product). */
  verification?: { maxAbsError: number; modules: number; what: string };
}

export interface HistogramData {
  edges: number[];
  counts: number[];
  density: number[];
}

/** WeightWatcher-style metrics (src/core/base/esd.ts EsdMetrics). */
export interface EsdMetricsData {
  N: number;
  M: number;
  num_evals: number;
  alpha: number;
  alpha_weighted: number;
  log_norm: number;
  log_spectral_norm: number;
  stable_rank: number;
  entropy: number;
  mp_softrank: number;
  num_pl_spikes: number;
  D: number;
  /** 'fitted'; 'truncated' (top-k spectrum: alpha needs the full spectrum); 'not fittable' (< 50 eigenvalues). */
  alpha_status: 'fitted' | 'truncated' | 'not fittable';
  /** Whether all min(N, M) singular values were used. */
  full_spectrum: boolean;
  /** Numerical rank (fp64 rule); NaN on a truncated spectrum. */
  matrix_rank: number;
  warnings: string[];
}

export interface SpectraData {
  module: string;
  baseTensor: string;
  m: number;
  n: number;
  rank: number;
  scale: number;
  full: boolean;
  k: number;
  sigma: { base: number[]; merged: number[]; delta: number[] };
  esd: { base: HistogramData; merged: HistogramData };
  metrics: { base: EsdMetricsData; merged: EsdMetricsData };
  baseCached: boolean;
  engine: EngineInfo;
  ms: number;
}

export interface SpectraInit {
  adapter: { name: string; path: string };
  base: { dir: string };
  modules: { name: string; m: number; n: number; layer?: number; kind: string }[];
  data: SpectraData;
}

export interface CompareTensorRow {
  name: string;
  shape: number[];
  dtype: string;
  normBase: number;
  normDiff: number;
  /** ‖W1 − W0‖_F / ‖W0‖_F (Infinity when ‖W0‖_F = 0 and W1 ≠ W0). */
  relChange: number;
  layer?: number;
}

export interface CompareData {
  a: string;
  b: string;
  rows: CompareTensorRow[];
  skipped: { name: string; reason: string }[];
  engine: EngineInfo;
  ms: number;
}

export interface CompareTensorData {
  tensor: string;
  m: number;
  n: number;
  k: number;
  sigma: { base: number[]; tuned: number[]; delta: number[] };
  intruders: { mode: 'exact' | 'approx'; epsilon: number; baseVectors: number; count: number; possible: number; vectors: IntruderVectorData[]; notes: string[] };
  baseCached: boolean;
  engine: EngineInfo;
  ms: number;
}

// ---- Analyze Model (issue 10): intruders + ESD of every module, streamed

/** One module of Analyze Model: its intruders and the ESD metrics of W0 and W0 + ΔW. */
export interface ModelModuleRow {
  name: string;
  layer?: number;
  kind: string;
  m: number;
  n: number;
  intruders: IntruderModuleData;
  esd: { base: EsdMetricsData; merged: EsdMetricsData };
  /** Spectrum used for the ESD: all min(m, n) σ, or the top-k by rsvd. */
  full: boolean;
  ms: number;
}

/** Streamed with every progress message of the AnalyzeModel job (the module just finished). */
export interface ModelProgressData { row: ModelModuleRow }

export interface AnalyzeModelParams extends IntrudersParams {
  /** Top-k σ for the ESD of modules whose smaller side exceeds 1024 (default 64). */
  topK?: number;
  /** Modules already analysed (resume after a cancel): skipped, not recomputed. */
  skip?: string[];
}

export interface AnalyzeModelResult {
  adapter: { name: string; path: string };
  base: { dir: string };
  /** Modules analysed by this run (rows were also streamed). */
  rows: ModelModuleRow[];
  /** Modules to analyse in all (including skipped ones). */
  total: number;
  skipped: number;
  errors: { name: string; message: string }[];
  warnings: string[];
  engine: EngineInfo;
  ms: number;
}

export type ModelRunState = 'running' | 'done' | 'cancelled' | 'failed';

export interface ModelInit {
  adapter: { name: string; path: string };
  base: { dir: string };
  settings: { k: number; epsilon: number; mode: IntruderMode; topK: number };
  /** Rows received so far (kept across a cancel; Resume computes the rest). */
  rows: ModelModuleRow[];
  total: number;
  state: ModelRunState;
  /** Progress message / error sentence. */
  message?: string;
  /** Time since the current run started and rows done in it (for the ETA). */
  elapsedMs: number;
  doneThisRun: number;
  errors: { name: string; message: string }[];
  warnings: string[];
  engine?: EngineInfo;
}

export type BaseView = 'intruders' | 'spectra' | 'compare' | 'model';

export type InitMessage =
  | { type: 'init'; view: 'model'; data: ModelInit }
  | { type: 'init'; view: 'intruders'; data: IntrudersData }
  | { type: 'init'; view: 'spectra'; data: SpectraInit }
  | { type: 'init'; view: 'compare'; data: CompareData };

export type ReplyResult =
  | { kind: 'spectra'; data: SpectraData }
  | { kind: 'compareTensor'; data: CompareTensorData }
  | { kind: 'mitigate'; data: MitigateData }
  | { kind: 'none' };

export type HostToWebview =
  | InitMessage
  | { type: 'busy'; busy: boolean; message?: string }
  /** Analyze Model: a module finished (appended to the view) and where the run stands. */
  | { type: 'modelRow'; row: ModelModuleRow; done: number; total: number; elapsedMs: number; doneThisRun: number }
  | { type: 'modelState'; state: ModelRunState; message?: string; done: number; total: number }
  | ReplyMessage<ReplyResult>;

export type WebviewToHost =
  | Envelope
  | { type: 'spectra'; requestId: number; module: string; full: boolean }
  | { type: 'compareTensor'; requestId: number; tensor: string }
  | { type: 'mitigate'; requestId: number; lambda: number }
  | { type: 'openSpectra'; requestId: number; module: string }
  | { type: 'cancelModel'; requestId: number }
  | { type: 'resumeModel'; requestId: number };

/** Validates an incoming message on the host; returns undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 && v.length < 4096 ? v : undefined);
  return parseWebviewMessage(m, ({ type, o, requestId: id }): WebviewToHost | undefined => {
    if (id === undefined) return undefined;
    switch (type) {
      case 'spectra': {
        const module = str(o.module);
        return module && typeof o.full === 'boolean' ? { type: 'spectra', requestId: id, module, full: o.full } : undefined;
      }
      case 'compareTensor': {
        const tensor = str(o.tensor);
        return tensor ? { type: 'compareTensor', requestId: id, tensor } : undefined;
      }
      case 'mitigate':
        return typeof o.lambda === 'number' && o.lambda >= 0 && o.lambda <= 1 ? { type: 'mitigate', requestId: id, lambda: o.lambda } : undefined;
      case 'cancelModel':
      case 'resumeModel':
        return { type, requestId: id };
      case 'openSpectra': {
        const module = str(o.module);
        return module ? { type: 'openSpectra', requestId: id, module } : undefined;
      }
      default:
        return undefined;
    }
  });
}

// ---- worker job parameters (results above)

export interface IntrudersParams {
  adapterPath: string;
  /** Model folder (config.json + weights) or a weights file / index. */
  baseDir: string;
  k?: number;
  epsilon?: number;
  mode?: IntruderMode;
  /** DecompCache folder (context.globalStorageUri/decomp); no cache when absent. */
  cacheDir?: string;
  /** Analyse the matching modules even when some adapter modules have no base weight. */
  force?: boolean;
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
  force?: boolean;
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

/** Where an adapter's base model is: a local folder with config.json (`dir`), the weights file to merge into, or why not. */
export interface BaseResolution {
  /** base_model_name_or_path (or the format's equivalent). */
  id?: string;
  /** Local model folder holding config.json. */
  dir?: string;
  /** Base weights: model.safetensors, *.safetensors.index.json or a single *.safetensors. */
  weights?: string;
  /** Why no folder was found (shown to the user). */
  message?: string;
}


// ---- refusals (issue 8: inputs that do not belong together)

/**
 * The CLI wording that core/base/match.ts MismatchError appends when `--force` may override a
 * refusal. The worker wire carries only the message, so the UI recognises a forceable refusal by
 * it, and shows the sentence without it (with an "… anyway" action instead).
 */
const FORCE_HINT = /\s*\(use --force[^)]*\)\s*$/;

export interface Refusal {
  /** The one sentence shown to the user (without the CLI's "use --force" wording). */
  sentence: string;
  /** Whether resending with `force: true` goes on with what matches. */
  forceable: boolean;
}

/** A worker error message as a refusal: forceable when it carries the CLI's --force hint. */
export function refusalOf(message: string): Refusal {
  return FORCE_HINT.test(message) ? { sentence: message.replace(FORCE_HINT, ''), forceable: true } : { sentence: message, forceable: false };
}

/** "✓ verified: max abs error 1.2e-7" of a write's verification (src/shared/verification.ts). */
export function verifiedText(v: { maxAbsError: number } | undefined): string {
  if (!v) return '';
  const x = v.maxAbsError;
  const s = !Number.isFinite(x) ? String(x) : x === 0 ? '0' : x.toExponential(2);
  return `✓ verified: max abs error ${s}`;
}
