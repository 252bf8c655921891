/**
 * DoRA analysis in the editor (issue 11.6): the `analysis.dora` job (one module result streamed at a
 * time) and the DoRA panel's protocol. Plain data only: compiled by both tsconfigs.
 */
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';

export interface DoraParams {
  adapterPath: string;
  /** Base model folder or weights file (core/base/analyses.ts openBase). */
  basePath: string;
  /** Leading singular values of the true ΔW (default 8). */
  k?: number;
  /** Analyse even when the adapter and the base do not match (checkAdapterBase's refusal). */
  force?: boolean;
}

export interface DoraModuleReport {
  name: string;
  /** Per output row: ‖W₀ᵢ‖ (the magnitude PEFT initialises m with). */
  normBefore: number[];
  /** Per output row: the learned magnitude mᵢ. */
  magnitude: number[];
  /** Per output row: ‖W₀ᵢ + s(BA)ᵢ‖ (the direction's norm before renormalisation). */
  normMerged: number[];
  /** Per output row: cos∠(W₀ᵢ, W₀ᵢ + s(BA)ᵢ) (1 = direction unchanged). */
  directionCos: number[];
  summary: {
    magnitudeRatio: { min: number; max: number; mean: number };
    directionCos: { min: number; max: number; mean: number };
    /** max angle in degrees. */
    maxAngleDeg: number;
  };
  trueDelta: {
    fro: number;
    /** Leading singular values of the true ΔW (randomized SVD). */
    sigma: number[];
    /** ‖s·B·A‖_F: what a LoRA-only view reports. */
    loraFro: number;
    /** ‖ΔW_true − s·B·A‖_F / ‖ΔW_true‖_F. */
    relDiffFromLora: number;
  };
}

/** One DoRA module as the panel shows it: the core's DoraModuleReport plus the s·B·A spectrum a LoRA-only view reports. */
export interface DoraModuleView extends DoraModuleReport {
  rank: number;
  scale: number;
  outFeatures: number;
  inFeatures: number;
  /** σ of s·B·A (exact, from the factors' QR: core/analysis/lora.ts), descending. */
  loraSigma: number[];
}

export interface DoraResult {
  adapter: string;
  base: string;
  modules: DoraModuleView[];
  warnings: string[];
}

/** Streamed with each progress message: the module just analysed. */
export interface DoraProgressData { module: DoraModuleView }

/** What the panel shows (kept by the host, re-sent when the webview reloads). */
export interface DoraView {
  adapter: string;
  adapterName: string;
  base: string;
  /** DoRA modules to analyse. */
  total: number;
  modules: DoraModuleView[];
  warnings: string[];
  running: boolean;
  error?: string;
  updated?: string;
}

/** Run again; `force` analyses despite a forceable adapter/base mismatch refusal ("Analyse anyway"). */
export type DoraRequest =
  | { type: 'rerun'; requestId: number; force?: boolean }
  /** Pick another base (folder or file) in a dialog and run again. */
  | { type: 'changeBase'; requestId: number };
export type DoraWebviewToHost = Envelope | DoraRequest;
export type DoraHostToWebview =
  | { type: 'init'; view: DoraView }
  | { type: 'update'; view: DoraView }
  | { type: 'module'; module: DoraModuleView; done: number; total: number }
  | ReplyMessage;

export function parseDoraMessage(raw: unknown): DoraWebviewToHost | undefined {
  return parseWebviewMessage(raw, ({ type, o, requestId }): DoraRequest | undefined => {
    if (requestId === undefined) return undefined;
    if (type === 'rerun') return o.force === true ? { type, requestId, force: true } : { type, requestId };
    if (type === 'changeBase') return { type, requestId };
    return undefined;
  });
}
