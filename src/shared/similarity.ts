/** Similarity across adapters (issue 11.2): job params/result and the panel's view (plain data mirroring src/core/similarity). */
export interface SimilarityPairView {
  i: number;
  j: number;
  cosine: number;
  colCosines: number[];
  rowCosines: number[];
  colAnglesDeg: number[];
  rowAnglesDeg: number[];
  colOverlap: number;
  rowOverlap: number;
}

export interface ModuleSimilarityView {
  shape: [number, number];
  norms: (number | null)[];
  ranks: (number | null)[];
  matrix: (number | null)[][];
  cosine: (number | null)[][];
  colOverlap: (number | null)[][];
  rowOverlap: (number | null)[][];
  pairs: SimilarityPairView[];
}

export interface SimilarityResultView {
  adapters: { path: string; name: string; format: string; modules: number }[];
  matrix: number[][];
  signed: number[][];
  columnSpace: number[][];
  rowSpace: number[][];
  shared: number[][];
  aggregation: string;
  tolerance: number;
  modules: Record<string, ModuleSimilarityView>;
  skipped: { module: string; adapter?: string; reason: string }[];
  notes: string[];
}

export interface SimilarityParams { paths: string[] }
export type SimilarityMetric = 'matrix' | 'signed' | 'columnSpace' | 'rowSpace';
export interface SimilarityView { kind: 'similarity'; result: SimilarityResultView; ms: number }
