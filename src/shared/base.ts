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

export type BaseView = 'intruders' | 'spectra' | 'compare';

export type InitMessage =
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
  | ReplyMessage<ReplyResult>;

export type WebviewToHost =
  | Envelope
  | { type: 'spectra'; requestId: number; module: string; full: boolean }
  | { type: 'compareTensor'; requestId: number; tensor: string }
  | { type: 'mitigate'; requestId: number; lambda: number }
  | { type: 'openSpectra'; requestId: number; module: string };

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

