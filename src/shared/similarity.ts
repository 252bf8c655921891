/** Similarity across adapters (issue 11.2): job params/result and the panel's view (the result src/core/similarity computes, defined here once). */
export interface SimilarityPair {
  i: number;
  j: number;
  /** ⟨ΔW_i, ΔW_j⟩_F / (‖ΔW_i‖‖ΔW_j‖) */
  cosine: number;
  /** Cosines of the principal angles between the column spaces (descending), min(k_i, k_j) of them. */
  colCosines: number[];
  rowCosines: number[];
  /** Principal angles in degrees (ascending). */
  colAnglesDeg: number[];
  rowAnglesDeg: number[];
  /** Mean cos² of the principal angles (1 = one space contains the other). */
  colOverlap: number;
  rowOverlap: number;
}

export interface ModuleSimilarity {
  /** ΔW shape [out, in]. */
  shape: [number, number];
  /** Per adapter: ‖ΔW‖_F, null when the adapter lacks the module (or it has NaN/Inf). */
  norms: (number | null)[];
  /** Per adapter: numerical rank of ΔW (σ > τσ₁), null when absent. */
  ranks: (number | null)[];
  /** |cosine| per adapter pair (null when one lacks the module or a ΔW is 0); diagonal 1. */
  matrix: (number | null)[][];
  /** Signed cosine per pair. */
  cosine: (number | null)[][];
  colOverlap: (number | null)[][];
  rowOverlap: (number | null)[][];
  /** Details of every pair i < j that has the module. */
  pairs: SimilarityPair[];
}

export interface SimilarityAdapter {
  path: string;
  name: string;
  format: string;
  modules: number;
}

export interface SimilarityResult {
  adapters: SimilarityAdapter[];
  /** Energy-weighted |cosine| (see the file comment), in [0, 1]. */
  matrix: number[][];
  /** Energy-weighted signed cosine, in [−1, 1]. */
  signed: number[][];
  /** Energy-weighted column-space / row-space overlap, in [0, 1]. */
  columnSpace: number[][];
  rowSpace: number[][];
  /** Number of modules both adapters have with non-zero ΔW. */
  shared: number[][];
  aggregation: string;
  tolerance: number;
  modules: Record<string, ModuleSimilarity>;
  /** Modules not compared, with the reason (shape mismatch, NaN/Inf). */
  skipped: { module: string; adapter?: string; reason: string }[];
  /** Caveats, e.g. DoRA magnitudes not included. */
  notes: string[];
}

export type SimilarityPairView = SimilarityPair;
export type ModuleSimilarityView = ModuleSimilarity;
export type SimilarityResultView = SimilarityResult;

export interface SimilarityParams { paths: string[] }
export type SimilarityMetric = 'matrix' | 'signed' | 'columnSpace' | 'rowSpace';
export interface SimilarityView { kind: 'similarity'; result: SimilarityResultView; ms: number }
