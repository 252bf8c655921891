/** LoRA extraction from a full fine-tune (issue 11.4): job params/result and the panel's view (plain data mirroring src/core/extract). */
export type ExtractRuleView = { kind: 'rank'; k: number } | { kind: 'sv_fro'; value: number; maxRank?: number };

export interface ExtractParams { base: string; tuned: string; outDir: string; rule: ExtractRuleView }

export interface ExtractModuleView {
  name: string;
  tensor: string;
  outFeatures: number;
  inFeatures: number;
  rank: number;
  relError: number;
  deltaFro: number;
  froKept: number;
  sigmaNext: number;
  residualSpectral: number;
  optimality: number;
  reachedTarget?: boolean;
}

export interface ExtractJobResult {
  outDir: string;
  weightsFile: string;
  base: string;
  tuned: string;
  rule: string;
  modules: ExtractModuleView[];
  skipped: { tensor: string; reason: string }[];
  unchanged: number;
  summary: { modules: number; meanRelError: number; maxRelError: number; parameters: number };
  warnings: string[];
  ms: number;
}

export interface ExtractView {
  kind: 'extract';
  params: ExtractParams;
  /** Per-module progress lines while running. */
  log: string[];
  done: number;
  total: number;
  result?: ExtractJobResult;
  error?: string;
}
