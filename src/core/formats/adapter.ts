/**
 * Format-independent model of a LoRA adapter: a list of modules, each with its two factors in
 * the PEFT orientation (A: r×in, B: out×r), the effective scale s and where s came from.
 *
 * ΔW = s · B · A (in the weight's [out, in] layout; transposed when fan_in_fan_out is set).
 */
import type { TensorInfo, TensorStore } from './safetensors';

export type AdapterFormat = 'peft' | 'mlx' | 'kohya' | 'diffusers' | 'cloneofsimo' | 'gguf' | 'torchtune';

export interface LoraFactor {
  tensor: TensorInfo;
  /**
   * When true, the stored tensor is the transpose of the PEFT orientation
   * (mlx-lm stores lora_a as [in, r] and lora_b as [r, out]).
   */
  transposed: boolean;
}

export interface LoraModule {
  /** Module path without wrapper prefixes, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  /** Layer index parsed from the name, when there is one. */
  layer?: number;
  /** Last name component, e.g. `q_proj`; used to group modules across layers. */
  kind: string;
  A: LoraFactor;
  B: LoraFactor;
  rank: number;
  /** Shape of ΔW in [out, in] orientation. */
  outFeatures: number;
  inFeatures: number;
  alpha?: number;
  /** Effective scale s in ΔW = s·B·A. */
  scale: number;
  /** Human-readable provenance of `scale`, e.g. "alpha/r = 16/8" or "rank_pattern: 4". */
  scaleSource: string;
  /** DoRA magnitude vector, when present. */
  magnitude?: TensorInfo;
  /** GPT-2 Conv1D style weight stored as [in, out]. */
  fanInFanOut: boolean;
  /** Conv LoRA: factor kernels beyond the first two dims (analysed as flattened matrices). */
  conv?: boolean;
}

/**
 * A module whose ΔW is not s·B·A but a structured product (read by sdlora.ts / vera.ts, analysed by
 * analysis/lycoris.ts without forming ΔW):
 *   loha  ΔW = s·(W1a·W1b) ⊙ (W2a·W2b)       roles w1a [out,r1], w1b [r1,in], w2a [out,r2], w2b [r2,in]
 *   lokr  ΔW = s·W1 ⊗ W2, W1 = w1 | w1a·w1b, W2 = w2 | w2a·w2b  (conv: trailing kernel dims flattened)
 *   vera  ΔW = diag(λ_b)·B[:out]·diag(λ_d)·A[:, :in]   roles lambda_b, lambda_d, A (shared), B (shared)
 */
export interface StructuredModule {
  name: string;
  layer?: number;
  kind: string;
  type: 'loha' | 'lokr' | 'vera';
  /** Role → tensor (loha: w1a w1b w2a w2b [t1 t2]; lokr: w1 | w1a w1b, w2 | w2a w2b [t2]; vera: lambda_b lambda_d A B). */
  tensors: Record<string, TensorInfo>;
  outFeatures: number;
  inFeatures: number;
  /** The dimension `alpha` is divided by (LoHa r, LoKr the decomposed factor's rank, VeRA r). */
  rank: number;
  alpha?: number;
  scale: number;
  scaleSource: string;
}

export interface AdapterSummary {
  rank?: number;
  alpha?: number;
  targetModules: string[];
  useRslora: boolean;
  useDora: boolean;
  fanInFanOut: boolean;
  baseModel?: string;
  peftType?: string;
  taskType?: string;
  hasRankPattern: boolean;
  hasAlphaPattern: boolean;
  modulesToSave: string[];
}

export interface Adapter {
  format: AdapterFormat;
  /** Folder (PEFT/mlx) or file that was opened. */
  path: string;
  /** The weights file. */
  weightsFile: string;
  /** Display name (folder or file name). */
  name: string;
  /** Parsed config (adapter_config.json), if any. */
  config?: Record<string, unknown>;
  summary: AdapterSummary;
  modules: LoraModule[];
  /** Tensors that are not LoRA factors (modules_to_save, biases, embeddings...). */
  otherTensors: TensorInfo[];
  store: TensorStore;
  warnings: string[];
  /** LoHa / LoKr / VeRA modules (not s·B·A), when the file has any. */
  structured?: StructuredModule[];
}

/**
 * Largest LoRA factor accepted, in elements (128 MiB as F32). A real factor is rank × features:
 * an lm_head LoRA on a 262,144-token vocabulary at rank 128 is exactly 2^25 elements. Analysis
 * holds a factor several times over (measured ≈ 8.5× its F32 bytes at peak), so this cap is what
 * bounds memory per factor; a 1 GB rank-1 factor is refused at open, before anything is read.
 */
export const MAX_FACTOR_ELEMENTS = 2 ** 25;

/**
 * Why a module's shape cannot be a LoRA update (undefined when it can): rank ≥ 1, in/out ≥ 1,
 * rank ≤ min(in, out) (a larger rank adds nothing: rank(BA) ≤ min(in, out)), each factor within
 * MAX_FACTOR_ELEMENTS.
 */
export function loraShapeProblem(rank: number, inFeatures: number, outFeatures: number): string | undefined {
  if (!(rank >= 1)) return `has rank ${rank}; a LoRA module needs rank ≥ 1`;
  if (!(inFeatures >= 1) || !(outFeatures >= 1)) return `updates a ${outFeatures}×${inFeatures} weight (empty)`;
  if (rank > Math.min(inFeatures, outFeatures)) {
    return `has rank ${rank}, larger than min(out, in) = min(${outFeatures}, ${inFeatures}); such factors carry no more than rank ${Math.min(inFeatures, outFeatures)} and are refused`;
  }
  const big = Math.max(rank * inFeatures, rank * outFeatures);
  if (big > MAX_FACTOR_ELEMENTS) return `has a factor of ${big} elements (rank ${rank}, ${outFeatures}×${inFeatures}), more than the ${MAX_FACTOR_ELEMENTS} (2^25) per-factor limit`;
  return undefined;
}

const LAYER_RE = /(?:^|\.)(?:layers|layer|h|blocks|block|encoder\.layer|decoder\.layers|transformer_blocks|resblocks)\.(\d+)(?:\.|$)/;

/** Parses the layer index from a module path (`model.layers.12.mlp.up_proj` -> 12). */
export function layerOf(name: string): number | undefined {
  const m = LAYER_RE.exec(name) ?? /\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Module kind used for grouping across layers: the last path component (`q_proj`, `c_attn`...). */
export function kindOf(name: string): string {
  const parts = name.split('.');
  return parts[parts.length - 1] ?? name;
}

/** Display group of a module, e.g. `layers.0` (or `other`). */
export function groupOf(m: LoraModule): string {
  if (m.layer === undefined) return 'other';
  const re = new RegExp(`(?:^|\\.)([A-Za-z_]+)\\.${m.layer}(?:\\.|$)`);
  const prefix = re.exec(m.name)?.[1] ?? 'layer';
  return `${prefix}.${m.layer}`;
}

/** Parameter count of an adapter's LoRA factors. */
export function loraParameterCount(a: Adapter): number {
  return a.modules.reduce((s, m) => s + m.A.tensor.numel + m.B.tensor.numel, 0);
}
