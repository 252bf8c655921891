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
  /** LoHa / LoKr / VeRA module (not s·B·A). */
  structure?: 'loha' | 'lokr' | 'vera';
  /** Stable Diffusion block label (`down.1.attn0`), when the adapter is an SD LoRA. */
  layerLabel?: string;
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

// ---- tree layout (pure: unit-tested in test/unit/treelayout.test.ts)

/** Folder the training panel saves its runs into (src/host/features/training). */
export const TRAINING_FOLDER = 'lora-lens-training';

export interface LayoutItem { entry: CheckpointEntry; label: string }
export interface LayoutFolder { dir: string; label: string; items: LayoutItem[] }
export interface LayoutRun { key: string; label: string; items: LayoutItem[] }
export interface TreeLayout {
  /** Rows at the top level (checkpoints alone in their folder, labelled folder-relative). */
  top: LayoutItem[];
  /** Folders with two or more checkpoints. */
  folders: LayoutFolder[];
  /** Training outputs: one run per LoRA/BaLoRA pair. */
  runs: LayoutRun[];
}

const splitPath = (p: string): string[] => p.split(/[\\/]+/).filter(Boolean);
const relPath = (from: string, to: string): string => {
  const a = splitPath(from), b = splitPath(to);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i < a.length ? b.join('/') : b.slice(i).join('/');
};

/** The path a checkpoint is listed by: the adapter / sharded model folder, else the file. */
export function checkpointItemPath(ref: CheckpointRefBrief): string {
  if (ref.kind === 'sharded') return ref.path.replace(/[\\/][^\\/]*$/, '');
  return ref.path;
}

/** `tiny-llama-lora-20261130-0412` and `…-balora-…` → run `tiny-llama-20261130-0412`. */
export function runKey(name: string): string | undefined {
  const m = /^(.*?)-(?:ba)?lora(-.+)?$/.exec(name);
  return m ? `${m[1]}${m[2] ?? ''}` : undefined;
}

/** Case-insensitive match of the filter against a checkpoint's label, path, kind and format. */
export function matchesFilter(item: LayoutItem, filter: string): boolean {
  const q = filter.trim().toLowerCase();
  if (!q) return true;
  const e = item.entry;
  const fmt = e.adapter && 'value' in e.adapter ? `${e.adapter.value.format} ${formatLabel(e.adapter.value.format)} adapter lora` : '';
  const hay = `${item.label} ${relPath(e.folder, e.ref.path)} ${e.ref.kind} ${fmt}`.toLowerCase();
  return q.split(/\s+/).every((w) => hay.includes(w));
}

/**
 * Groups scanned checkpoints for the tree: by containing folder (workspace-relative; a folder with a
 * single checkpoint becomes one top-level row labelled with its relative path), training outputs
 * (anything below a `lora-lens-training` folder) by run. `multiRoot` prefixes labels with the
 * workspace folder's name.
 */
export function layoutCheckpoints(entries: CheckpointEntry[], filter = '', multiRoot = false): TreeLayout {
  const byDir = new Map<string, { folder: string; rel: string; items: { entry: CheckpointEntry; name: string }[] }>();
  const runs = new Map<string, LayoutItem[]>();
  for (const entry of entries) {
    const item = checkpointItemPath(entry.ref);
    const parts = splitPath(item);
    const name = parts[parts.length - 1] ?? entry.ref.name;
    const dir = item.slice(0, Math.max(0, item.length - name.length)).replace(/[\\/]+$/, '');
    const rootName = splitPath(entry.folder).pop() ?? '';
    const rel = [multiRoot ? rootName : '', relPath(entry.folder, dir)].filter(Boolean).join('/');
    if (splitPath(relPath(entry.folder, item)).includes(TRAINING_FOLDER)) {
      const key = runKey(name) ?? name;
      const arr = runs.get(key) ?? [];
      arr.push({ entry, label: name });
      runs.set(key, arr);
      continue;
    }
    const g = byDir.get(dir) ?? { folder: entry.folder, rel, items: [] };
    g.items.push({ entry, name });
    byDir.set(dir, g);
  }
  const out: TreeLayout = { top: [], folders: [], runs: [] };
  const keep = (i: LayoutItem): boolean => matchesFilter(i, filter);
  for (const [dir, g] of [...byDir].sort((a, b) => a[1].rel.localeCompare(b[1].rel, 'en', { numeric: true }))) {
    if (g.items.length === 1 || !g.rel) {
      for (const it of g.items) {
        const label = g.rel ? `${g.rel}/${it.name}` : it.name;
        const li = { entry: it.entry, label };
        if (keep(li)) out.top.push(li);
      }
      continue;
    }
    const items = g.items.map((it) => ({ entry: it.entry, label: it.name })).filter((li) => keep({ ...li, label: `${g.rel}/${li.label}` }));
    if (items.length) out.folders.push({ dir, label: g.rel, items: items.sort((a, b) => a.label.localeCompare(b.label, 'en', { numeric: true })) });
  }
  for (const [key, items] of [...runs].sort((a, b) => b[0].localeCompare(a[0], 'en', { numeric: true }))) {
    const kept = items.filter((li) => keep(li) || keep({ ...li, label: key }));
    if (kept.length) out.runs.push({ key, label: key, items: kept.sort((a, b) => a.label.localeCompare(b.label)) });
  }
  return out;
}
