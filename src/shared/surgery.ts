/**
 * Typed protocol of the adapter-surgery webview (`loraLens.surgery`) and the plain-data results of
 * the surgery worker jobs (src/worker/jobs/surgery.ts). Pure types + one validator: shared by the
 * worker, the host (src/host/features/surgery) and the webview (webview/surgery/main.ts).
 *
 * Handshake: the webview posts `ready`; the host answers with `init` (and `update` whenever the
 * view changes, e.g. preview → written result). Requests carry a `requestId`; the host answers
 * with a `reply` carrying the same id and, on failure, `error`.
 */

import type { RankPlanModule } from './analysisTypes';
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';
import type { Verification } from './verification';

export type { Verification };

export type RankRuleKind = 'rank' | 'sv_ratio' | 'sv_cumulative' | 'sv_fro';
export interface RankRuleSpec { kind: RankRuleKind; value: number; maxRank?: number }

// ---- worker job parameters ------------------------------------------------------------------

export interface RebalanceParams { adapterPath: string; outDir: string }
export interface PlanParams { adapterPath: string; rule: RankRuleSpec }
export interface ReduceParams { adapterPath: string; outDir: string; rule: RankRuleSpec }
/** `force`: merge the modules that match even when some adapter modules have no base weight (core/base/match.ts). */
export interface MergeParams { adapterPath: string; basePath: string; outFile: string; force?: boolean }
/** `force`: combine adapters that name different base models (they still must share a module). */
export interface CombineParams { adapter1: string; weight1: number; adapter2: string; weight2: number; outDir: string; mode: 'cat' | 'svd'; rank?: number; force?: boolean }
export interface RescaleParams { adapterPath: string; factor: number; outDir: string }

// ---- worker job results ---------------------------------------------------------------------

export interface RebalanceRow {
  name: string;
  rank: number;
  gapBefore: number;
  gapAfter: number;
  kappaABefore: number;
  kappaBBefore: number;
  kappaAAfter: number;
  kappaBAfter: number;
  /** max|B'A' − BA| / max|BA| of the written factors and the tolerance it was checked against. */
  maxRelErr: number;
  tolerance: number;
  verified: boolean;
  /** Factor scale imbalance c = (‖B‖_F/‖A‖_F)^½ before/after (hessian.ts factorScaleImbalance). */
  scaleBefore: number;
  scaleAfter: number;
  /**
   * κ of the Hessian of ½‖s·B·A − M‖² at the input / written factors (core balora.ts, hessian.ts
   * factorHessianKappa): κ_H = (σ₁(B)² + σ₁(A)²) / min(σ_r(B)², σ_r(A)²); ∞ for a rank-deficient factor.
   */
  hessianKappaBefore: number;
  hessianKappaAfter: number;
  /** Balanced value 2σ₁/σ_r of the product (papers.md §1.4). */
  hessianKappaBalanced: number;
  method: string;
}

export interface RebalanceJobResult {
  adapterPath: string;
  adapterName: string;
  outDir: string;
  weightsFile: string;
  dtype: string;
  inputSha256: string;
  modules: RebalanceRow[];
  /** What was checked after writing (reopened output vs fp64 reference). */
  verification: Verification;
  ms: number;
}

export interface PlanRow extends RankPlanModule {
  /** σ of ΔW (descending, for the chart). */
  sigma: number[];
}

export interface PlanJobResult {
  adapterPath: string;
  adapterName: string;
  rule: RankRuleSpec;
  ruleText: string;
  modules: PlanRow[];
  paramsBefore: number;
  paramsAfter: number;
  meanFroKept: number;
}

export interface ReduceRow extends Omit<PlanRow, 'sigma'> {
  scale: number;
  relErrVsTruncated: number;
  errVsOriginal: number;
}

export interface ReduceJobResult {
  adapterPath: string;
  outDir: string;
  weightsFile: string;
  ruleText: string;
  modules: ReduceRow[];
  config: Record<string, unknown>;
  verification: Verification;
  ms: number;
}

export interface SimpleJobResult {
  operation: 'merge' | 'combine' | 'rescale';
  /** Folder (combine, rescale) or file (merge) that was written. */
  output: string;
  /** True when `output` is an adapter that can be analysed. */
  isAdapter: boolean;
  summary: string;
  rows: { name: string; value: string }[];
  /** What was checked after writing; the panel shows its maxAbsError. */
  verification: Verification;
  /** Warnings of the core (e.g. modules skipped under `force`). */
  warnings?: string[];
  ms: number;
}

// ---- webview protocol ----------------------------------------------------------------------

export type SurgeryView =
  | { kind: 'rebalance'; result: RebalanceJobResult }
  | { kind: 'plan'; plan: PlanJobResult; running?: boolean }
  | { kind: 'reduce'; plan: PlanJobResult; result: ReduceJobResult }
  | { kind: 'simple'; result: SimpleJobResult };

export type WebviewToHost =
  | Envelope
  | { type: 'writeReduced'; requestId: number }
  | { type: 'revealInTree'; requestId: number; path: string }
  | { type: 'analyze'; requestId: number; path: string };

export type HostToWebview =
  | { type: 'init'; view: SurgeryView }
  | { type: 'update'; view: SurgeryView }
  | ReplyMessage;

/** Validates an incoming message on the host; undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  return parseWebviewMessage(m, ({ type, o, requestId }): WebviewToHost | undefined => {
    if (requestId === undefined) return undefined;
    if (type === 'writeReduced') return { type, requestId };
    if ((type === 'revealInTree' || type === 'analyze') && typeof o.path === 'string') return { type, requestId, path: o.path };
    return undefined;
  });
}
