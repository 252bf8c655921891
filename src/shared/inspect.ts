/**
 * Header-only descriptions of checkpoints for the tree, hovers, pickers and the checkpoint viewer:
 * produced by the `inspect.*` worker jobs (src/worker/jobs/inspect.ts, so no file is parsed on the
 * extension host's thread) and rendered by the host with the display helpers below.
 */

export interface TensorBrief { name: string; shape: number[]; dtype: string }

export interface ModuleBrief {
  name: string;
  group: string;
  /** Module path within its group, e.g. `self_attn.q_proj`. */
  label: string;
  kind: string;
  layer?: number;
  rank: number;
  alpha?: number;
  scale: number;
  scaleSource: string;
  outFeatures: number;
  inFeatures: number;
  dora: boolean;
  /** Convolution LoRA (no matrix spectrum). */
  conv: boolean;
  tensors: TensorBrief[];
}

export interface AdapterSummaryBrief {
  rank?: number;
  alpha?: number;
  targetModules: string[];
  useRslora: boolean;
  useDora: boolean;
  fanInFanOut: boolean;
  baseModel?: string;
  peftType?: string;
  hasRankPattern: boolean;
  hasAlphaPattern: boolean;
}

export interface AdapterSnapshot {
  name: string;
  path: string;
  weightsFile: string;
  format: string;
  summary: AdapterSummaryBrief;
  modules: ModuleBrief[];
  other: TensorBrief[];
  warnings: string[];
  parameters: number;
}

/** Header-only summary of a weights file. */
export interface FileBrief {
  path: string;
  kind: string;
  fileBytes: number;
  tensorCount: number;
  parameters: number;
  /** Parameters per dtype. */
  dtypes: Record<string, number>;
  metadata: Record<string, string>;
  warnings: string[];
  tensors: { name: string; dtype: string; shape: number[]; numel: number }[];
}

/** A description or the reader's error (`problem` without the file name, for short labels). */
export type Described<T> = { value: T } | { error: string; problem: string };

export interface CheckpointRefBrief {
  kind: string;
  /** Folder (adapters, sharded models) or file. */
  path: string;
  name: string;
  files: string[];
}

/** One checkpoint found in a workspace folder, described (tensor lists left out). */
export interface CheckpointEntry {
  folder: string;
  ref: CheckpointRefBrief;
  isAdapter: boolean;
  adapter?: Described<AdapterSnapshot>;
  file?: Described<Omit<FileBrief, 'tensors'>>;
}

export interface ScanParams {
  folders: string[];
  /** Only adapters, not described (pickers). */
  adaptersOnly?: boolean;
  /** Only these kinds (pickers), not described. */
  kinds?: string[];
}

export interface ScanResult { entries: CheckpointEntry[]; errors: string[] }

export interface DescribeParams { adapter?: string; file?: string }
export interface DescribeResult { adapter?: Described<AdapterSnapshot>; file?: Described<FileBrief> }

export const ADAPTER_KINDS: readonly string[] = ['peft-adapter', 'mlx-adapter', 'adapter-file'];

// ---- display helpers (host and worker)

const FORMAT_LABEL: Record<string, string> = {
  peft: 'PEFT', mlx: 'MLX', kohya: 'kohya', diffusers: 'diffusers', cloneofsimo: 'cloneofsimo', gguf: 'GGUF', torchtune: 'torchtune',
};
export const formatLabel = (f: string): string => FORMAT_LABEL[f] ?? f;

const num = (x: number): string => (Number.isInteger(x) ? String(x) : x.toPrecision(4).replace(/\.?0+$/, ''));

/** Module path relative to its display group (`model.layers.0.self_attn.q_proj` → `self_attn.q_proj`). */
export function moduleLabel(name: string, group: string): string {
  const i = name.indexOf(`${group}.`);
  return i >= 0 ? name.slice(i + group.length + 1) || name : name;
}

/** "α/r = 16/8 = 2", "rsLoRA α/√r = 16/√8 = 5.657", plus pattern notes. */
export function scaleRule(s: AdapterSnapshot): string {
  const { rank, alpha, useRslora, hasRankPattern, hasAlphaPattern } = s.summary;
  let rule: string;
  if (rank !== undefined && alpha !== undefined) {
    rule = useRslora
      ? `rsLoRA α/√r = ${num(alpha)}/√${rank} = ${num(alpha / Math.sqrt(rank))}`
      : `α/r = ${num(alpha)}/${rank} = ${num(alpha / rank)}`;
  } else {
    rule = s.modules[0]?.scaleSource ?? 'unknown';
  }
  const pats = [hasRankPattern ? 'rank_pattern' : '', hasAlphaPattern ? 'alpha_pattern' : ''].filter(Boolean);
  if (pats.length) rule += ` (per-module overrides: ${pats.join(', ')})`;
  const scales = [...new Set(s.modules.map((m) => m.scale))];
  if (scales.length > 1) rule += `; scales ${num(Math.min(...scales))}…${num(Math.max(...scales))}`;
  return rule;
}

export function adapterFlags(s: AdapterSnapshot): string[] {
  const f: string[] = [];
  if (s.summary.useRslora) f.push('rsLoRA');
  if (s.summary.useDora) f.push('DoRA');
  if (s.summary.fanInFanOut) f.push('fan_in_fan_out');
  if (s.summary.hasRankPattern) f.push('rank_pattern');
  if (s.summary.hasAlphaPattern) f.push('alpha_pattern');
  return f;
}

/** Tree description of an adapter: "PEFT · r=8 · α=16 · 14 modules". */
export function adapterDescription(s: AdapterSnapshot): string {
  const parts = [formatLabel(s.format)];
  const r = s.summary.rank ?? s.modules[0]?.rank;
  if (r !== undefined) parts.push(`r=${r}`);
  const alpha = s.summary.alpha ?? s.modules[0]?.alpha;
  if (alpha !== undefined) parts.push(`α=${num(alpha)}`);
  if (s.summary.useRslora) parts.push('rsLoRA');
  if (s.summary.useDora) parts.push('DoRA');
  parts.push(`${s.modules.length} module${s.modules.length === 1 ? '' : 's'}`);
  return parts.join(' · ');
}

export const shapeText = (shape: number[]): string => `[${shape.join(', ')}]`;
