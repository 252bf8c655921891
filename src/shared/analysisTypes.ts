/**
 * Plain-data result types shared by the core analyses and the webviews that display them
 * (no Node or VS Code imports, like report.ts).
 */

export type IntruderStatus = 'intruder' | 'possible' | 'ok';

/** One top-k left singular vector of W_tuned compared with the base's left singular vectors. */
export interface IntruderVector {
  /** Index j among W_tuned's singular vectors (0 = largest). */
  index: number;
  /** σ_j of W_tuned. */
  sigma: number;
  /** max_i |cos(y_j, x_i)| over the base vectors examined (exact in exact mode, lower part in approx). */
  maxCos: number;
  /** i of the best-matching base vector. */
  baseIndex: number;
  /** approx mode: ‖P⊥y_j‖ outside the top-K0 base span and the upper bound of the true max|cos|. */
  residual?: number;
  upperBound?: number;
  status: IntruderStatus;
}

/** Rank-reduction plan of one module (kohya's retained-energy figures). */
export interface RankPlanModule {
  name: string;
  r: number;
  k: number;
  /** Σ_{i≤k}σ² / Σσ²: fraction of ‖ΔW‖_F² kept. */
  energyKept: number;
  /** √energyKept: kohya's "fro retained". */
  froKept: number;
  /** Σ_{i≤k}σ / Σσ: kohya's "sum(S) retained". */
  sumKept: number;
  /** σ₁/σ_k: kohya's "max(S) ratio". */
  maxRatio: number;
  /** ‖ΔW − ΔW_k‖_F = √Σ_{i>k}σ². */
  tailFro: number;
}
