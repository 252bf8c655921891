/**
 * Header-only snapshots of adapters and weight files for the tree, hovers and the viewer, cached
 * by (path, mtime). Stores are closed immediately; nothing here keeps a file handle open.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { groupOf, type Adapter, type AdapterSummary } from '../core/formats/adapter';
import { describeWeights, formatCount, openAdapter, type FileSummary } from '../core/formats/open';

export interface TensorBrief { name: string; shape: number[]; dtype: string }

export interface ModuleBrief {
  name: string;
  group: string;
  /** Module path within its group, e.g. `self_attn.q_proj`. */
  label: string;
  kind: string;
  rank: number;
  alpha?: number;
  scale: number;
  scaleSource: string;
  outFeatures: number;
  inFeatures: number;
  dora: boolean;
  tensors: TensorBrief[];
}

export interface AdapterSnapshot {
  name: string;
  path: string;
  weightsFile: string;
  format: string;
  summary: AdapterSummary;
  modules: ModuleBrief[];
  other: TensorBrief[];
  warnings: string[];
  parameters: number;
}

const FORMAT_LABEL: Record<string, string> = {
  peft: 'PEFT', mlx: 'MLX', kohya: 'kohya', diffusers: 'diffusers', cloneofsimo: 'cloneofsimo', gguf: 'GGUF', torchtune: 'torchtune',
};
export const formatLabel = (f: string): string => FORMAT_LABEL[f] ?? f;

function mtimeKey(paths: string[]): string {
  return paths.map((p) => {
    try {
      const st = fs.statSync(p);
      return `${st.mtimeMs}:${st.size}`;
    } catch {
      return 'x';
    }
  }).join('|');
}

/** Module path relative to its display group (`model.layers.0.self_attn.q_proj` → `self_attn.q_proj`). */
export function moduleLabel(name: string, group: string): string {
  const i = name.indexOf(`${group}.`);
  return i >= 0 ? name.slice(i + group.length + 1) || name : name;
}

function snapshot(a: Adapter): AdapterSnapshot {
  const t = (x: { name: string; shape: number[]; dtype: string }): TensorBrief => ({ name: x.name, shape: [...x.shape], dtype: x.dtype });
  const modules = a.modules.map((m): ModuleBrief => {
    const group = groupOf(m);
    const tensors = [t(m.A.tensor), t(m.B.tensor)];
    if (m.magnitude) tensors.push(t(m.magnitude));
    return {
      name: m.name, group, label: moduleLabel(m.name, group), kind: m.kind, rank: m.rank, alpha: m.alpha, scale: m.scale,
      scaleSource: m.scaleSource, outFeatures: m.outFeatures, inFeatures: m.inFeatures, dora: !!m.magnitude, tensors,
    };
  });
  const parameters = a.modules.reduce((s, m) => s + m.A.tensor.numel + m.B.tensor.numel + (m.magnitude?.numel ?? 0), 0)
    + a.otherTensors.reduce((s, x) => s + x.numel, 0);
  return {
    name: a.name, path: a.path, weightsFile: a.weightsFile, format: a.format, summary: a.summary, modules,
    other: a.otherTensors.map(t), warnings: [...a.warnings], parameters,
  };
}

const adapterCache = new Map<string, { key: string; value: AdapterSnapshot | Error }>();
const fileCache = new Map<string, { key: string; value: FileSummary | Error }>();

function adapterKeyPaths(p: string): string[] {
  let dir = p;
  try {
    if (!fs.statSync(p).isDirectory()) dir = path.dirname(p);
  } catch { /* missing */ }
  const ps = [p, path.join(dir, 'adapter_config.json')];
  try {
    for (const n of fs.readdirSync(dir)) if (/\.(safetensors|bin|gguf)$/.test(n)) ps.push(path.join(dir, n));
  } catch { /* missing */ }
  return ps;
}

/** Opens (header only) and snapshots an adapter; throws the reader's FormatError. Cached by mtime. */
export function adapterSnapshot(p: string): AdapterSnapshot {
  const key = mtimeKey(adapterKeyPaths(p));
  const hit = adapterCache.get(p);
  if (hit && hit.key === key) {
    if (hit.value instanceof Error) throw hit.value;
    return hit.value;
  }
  let value: AdapterSnapshot | Error;
  try {
    const a = openAdapter(p);
    try {
      value = snapshot(a);
    } finally {
      a.store.close();
    }
  } catch (e) {
    value = e instanceof Error ? e : new Error(String(e));
  }
  adapterCache.set(p, { key, value });
  if (value instanceof Error) throw value;
  return value;
}

/** Header-only summary of a weights file. Cached by mtime. */
export function fileSummary(p: string): FileSummary {
  const key = mtimeKey([p]);
  const hit = fileCache.get(p);
  if (hit && hit.key === key) {
    if (hit.value instanceof Error) throw hit.value;
    return hit.value;
  }
  let value: FileSummary | Error;
  try {
    value = describeWeights(p);
  } catch (e) {
    value = e instanceof Error ? e : new Error(String(e));
  }
  fileCache.set(p, { key, value });
  if (value instanceof Error) throw value;
  return value;
}

export function clearCaches(): void {
  adapterCache.clear();
  fileCache.clear();
}

const num = (x: number): string => (Number.isInteger(x) ? String(x) : x.toPrecision(4).replace(/\.?0+$/, ''));

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
export const paramsText = formatCount;
