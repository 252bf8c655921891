/**
 * N-adapter merges with TIES / DARE / magnitude pruning (issue 11.5): job params/results and the
 * panel's view (plain data mirroring src/core/surgery/ties.ts).
 */
export type MergeMethod = 'cat' | 'svd' | 'linear' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune' | 'ties_svd' | 'dare_linear_svd' | 'dare_ties_svd' | 'magnitude_prune_svd';
export const MERGE_METHODS: readonly MergeMethod[] = ['ties', 'dare_ties', 'dare_linear', 'magnitude_prune', 'linear', 'cat', 'svd', 'ties_svd', 'dare_ties_svd', 'dare_linear_svd', 'magnitude_prune_svd'];
export const methodUsesDensity = (m: MergeMethod): boolean => /ties|dare|magnitude/.test(m);

export interface MergeJobParams {
  paths: string[];
  weights: number[];
  method: MergeMethod;
  density?: number;
  seed?: number;
  force?: boolean;
}
export interface MergeWriteParams extends MergeJobParams { outDir: string }

export interface MergePreviewModuleView {
  name: string;
  level: 'factors' | 'delta';
  overlap: number;
  signConflict: number;
  retainedEnergy: number;
  retainedPerAdapter: number[];
  energyCurve: { density: number; retained: number }[];
}
export interface MergePreviewResult { method: MergeMethod; density?: number; modules: MergePreviewModuleView[]; warnings: string[]; ms: number }

export interface MergeModuleResultView {
  name: string;
  rank: number;
  relErrToLinear: number;
  relErrToMerged?: number;
  maxAbsError: number;
}
export interface MergeWriteResult {
  outDir: string;
  weightsFile: string;
  method: MergeMethod;
  density?: number;
  seed?: number;
  weights: number[];
  adapters: string[];
  perModule: MergeModuleResultView[];
  verification: { maxAbsError: number; maxRelError: number; passed: boolean; modules: number };
  warnings: string[];
  ms: number;
}

export interface MergeView {
  kind: 'merge';
  params: MergeJobParams;
  names: string[];
  preview: MergePreviewResult;
  result?: MergeWriteResult;
  running?: 'preview' | 'write';
}
