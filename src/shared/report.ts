/**
 * Report model shared by the core, the CLI, the extension host and the webviews.
 * Plain data only (JSON-serialisable), no Node or VS Code imports.
 */

export interface ModuleReport {
  /** Module path, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  layer?: number;
  /** Last path component (`q_proj`). */
  kind: string;
  /** Display group (`layers.0`; SD adapters: the UNet / text-encoder block, `down.1.attn0`). */
  group: string;
  /** Stable Diffusion block label of `layer` (`te.3`, `down.1.attn0`, `mid.attn0`, `up.2.attn1`); absent for LLM layers. */
  layerLabel?: string;
  rank: number;
  outFeatures: number;
  inFeatures: number;
  alpha?: number;
  /** Effective scale s in ΔW = s·B·A. */
  scale: number;
  scaleSource: string;
  dtype: string;
  /** Singular values of ΔW = s·B·A, descending (length = rank). */
  sigma: number[];
  /** ‖ΔW‖_F */
  fro: number;
  /** ‖ΔW‖_2 = σ₁ */
  spectral: number;
  /** ‖ΔW‖_* = Σσ */
  nuclear: number;
  /** ‖ΔW‖_F² / ‖ΔW‖_2² */
  stableRank: number;
  /** exp(entropy of σ/Σσ) (Roy & Vetterli). */
  effectiveRank: number;
  /** Singular values of the raw factors (unscaled). */
  sigmaA: number[];
  sigmaB: number[];
  kappaA: number;
  kappaB: number;
  normA: number;
  normB: number;
  /** ‖BᵀB − AAᵀ‖_F / (‖A‖_F² + ‖B‖_F²), raw factors (0 = balanced). */
  balanceGap: number;
  /** How the R factors were obtained: Cholesky-QR on ORT fp64 Gram matrices, or Householder QR in fp64. */
  method: 'cholesky-qr' | 'householder';
  dora: boolean;
  /** Set when the module could not be analysed (e.g. NaN/Inf in a factor). */
  error?: string;
  /**
   * LoHa / LoKr / VeRA modules: ΔW is a structured product, not s·B·A, so the factor metrics
   * (σ(A), σ(B), κ(A), κ(B), norms, balance gap) are NaN / empty for these rows.
   */
  structure?: StructureInfo;
}

export interface StructureInfo {
  type: 'loha' | 'lokr' | 'vera';
  /** How σ was obtained (identity used). */
  method: string;
  /** Upper bound of rank(ΔW) from the structure (LoHa r1·r2, LoKr rank(W1)·rank(W2), VeRA r). */
  maxRank: number;
  /** LoKr: shapes and spectra of the two Kronecker factors; LoHa: ranks; VeRA: λ statistics. */
  details: Record<string, unknown>;
}

/** Display name of a module's adapter type: "LoRA", "LoHa", "LoKr", "VeRA". */
export function moduleTypeLabel(m: Pick<ModuleReport, 'structure' | 'dora'>): string {
  const t = m.structure?.type;
  return t === 'loha' ? 'LoHa' : t === 'lokr' ? 'LoKr' : t === 'vera' ? 'VeRA' : m.dora ? 'DoRA' : 'LoRA';
}

export interface AdapterInfo {
  path: string;
  name: string;
  format: string;
  weightsFile: string;
  rank?: number;
  alpha?: number;
  targetModules: string[];
  useRslora: boolean;
  useDora: boolean;
  fanInFanOut: boolean;
  baseModel?: string;
  hasRankPattern: boolean;
  hasAlphaPattern: boolean;
}

export interface AdapterReport {
  tool: 'lora-lens';
  version: string;
  adapter: AdapterInfo;
  createdAt: string;
  engine: { provider: string; fallbackReason?: string };
  timings: { readMs: number; computeMs: number; totalMs: number };
  modules: ModuleReport[];
  warnings: string[];
}

/** CSV export: one row per module; σ as a `;`-separated list. */
export function reportToCsv(r: AdapterReport): string {
  const cols: (keyof ModuleReport)[] = [
    'name', 'group', 'kind', 'rank', 'outFeatures', 'inFeatures', 'alpha', 'scale', 'dtype', 'fro', 'spectral', 'nuclear',
    'stableRank', 'effectiveRank', 'kappaA', 'kappaB', 'normA', 'normB', 'balanceGap', 'method', 'dora', 'error',
  ];
  const esc = (v: unknown): string => {
    let s = v === undefined || v === null ? '' : String(v);
    // Text cells (module names, errors come from the file) starting with = + - @ (or tab/CR) would be
    // run as formulas by spreadsheets (CSV injection): prefix them with ' (OWASP). Numbers stay numbers.
    if (typeof v !== 'number' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [[...cols, 'sigma'].join(',')];
  for (const m of r.modules) lines.push([...cols.map((c) => esc(m[c])), esc(m.sigma.map((x) => x.toPrecision(10)).join(';'))].join(','));
  return lines.join('\n') + '\n';
}

/**
 * Restores NaN after a JSON round trip: webview messages (and saved reports) turn NaN — the factor
 * metrics of LoHa / LoKr / VeRA rows and failed modules — into null. Mutates and returns `r`.
 */
export function reviveReport(r: AdapterReport): AdapterReport {
  for (const m of r.modules) {
    const o = m as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(o)) {
      if (v === null && k !== 'error' && k !== 'structure') o[k] = NaN;
      else if (Array.isArray(v)) o[k] = v.map((x) => (x === null ? NaN : x));
    }
  }
  return r;
}

/** Formats a number with 4 significant digits (the report table's format). */
export function fmt4(x: number | undefined | null): string {
  if (x === undefined || x === null || Number.isNaN(x)) return '–';
  if (x === Infinity) return '∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(3);
  return x.toPrecision(4);
}
