/**
 * Worker jobs that read checkpoint headers for the UI (so the extension host's thread never parses a
 * file): `inspect.scan` (checkpoints of workspace folders, described), `inspect.describe` (an adapter
 * and/or a weights file, with tensor lists), `inspect.viewer` (the checkpoint viewer's data).
 * Snapshots are cached by (path, mtime, size); stores are closed immediately.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assignSdLayers } from '../../core/analysis/layers';
import { groupOf, type Adapter } from '../../core/formats/adapter';
import { isAdapterFile } from '../../core/formats/classify';
import { FormatError } from '../../core/formats/errors';
import { describeWeights, detectCheckpoints, openAdapter, type FileSummary } from '../../core/formats/open';
import { formatBytes, formatCount } from '../../shared/format';
import {
  ADAPTER_KINDS, adapterFlags, formatLabel, moduleLabel, scaleRule,
  type AdapterSnapshot, type CheckpointEntry, type Described, type DescribeParams, type DescribeResult, type FileBrief, type ModuleBrief,
  type ScanParams, type ScanResult, type TensorBrief,
} from '../../shared/inspect';
import { Describe, Scan, ViewerInit } from '../../shared/jobs';
import type { ViewerData } from '../../shared/viewer';
import { handle, type JobHandler } from './registry';

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));

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

function snapshot(a: Adapter): AdapterSnapshot {
  const t = (x: { name: string; shape: number[]; dtype: string }): TensorBrief => ({ name: x.name, shape: [...x.shape], dtype: x.dtype });
  const modules = a.modules.map((m): ModuleBrief => {
    const group = groupOf(m);
    const tensors = [t(m.A.tensor), t(m.B.tensor)];
    if (m.magnitude) tensors.push(t(m.magnitude));
    return {
      name: m.name, group, label: moduleLabel(m.name, group), kind: m.kind, layer: m.layer, rank: m.rank, alpha: m.alpha, scale: m.scale,
      scaleSource: m.scaleSource, outFeatures: m.outFeatures, inFeatures: m.inFeatures, dora: !!m.magnitude, conv: !!m.conv, tensors,
    };
  });
  // LoHa / LoKr / VeRA modules: listed with their structure's tensors (rank = the decomposition's).
  for (const sm of a.structured ?? []) {
    const group = groupOf({ name: sm.name, layer: sm.layer } as Adapter['modules'][number]);
    modules.push({
      name: sm.name, group, label: moduleLabel(sm.name, group), kind: sm.kind, layer: sm.layer, rank: sm.rank, alpha: sm.alpha, scale: sm.scale,
      scaleSource: sm.scaleSource, outFeatures: sm.outFeatures, inFeatures: sm.inFeatures, dora: false, conv: false,
      tensors: Object.values(sm.tensors).map(t), structure: sm.type,
    });
  }
  // Stable Diffusion LoRAs: UNet / text-encoder blocks as groups, module types as labels.
  if (assignSdLayers(modules)) for (const m of modules) if (m.layerLabel) m.label = m.kind;
  const parameters = a.modules.reduce((s, m) => s + m.A.tensor.numel + m.B.tensor.numel + (m.magnitude?.numel ?? 0), 0)
    + (a.structured ?? []).reduce((s, m) => s + Object.values(m.tensors).reduce((x, y) => x + y.numel, 0), 0)
    + a.otherTensors.reduce((s, x) => s + x.numel, 0);
  const s = a.summary;
  return {
    name: a.name, path: a.path, weightsFile: a.weightsFile, format: a.format,
    summary: {
      rank: s.rank, alpha: s.alpha, targetModules: [...s.targetModules], useRslora: s.useRslora, useDora: s.useDora, fanInFanOut: s.fanInFanOut,
      baseModel: s.baseModel, peftType: s.peftType, hasRankPattern: s.hasRankPattern, hasAlphaPattern: s.hasAlphaPattern,
    },
    modules, other: a.otherTensors.map(t), warnings: [...a.warnings], parameters,
  };
}

function brief(f: FileSummary): FileBrief {
  return {
    path: f.path, kind: f.kind, fileBytes: f.fileBytes, tensorCount: f.tensorCount, parameters: f.parameters, dtypes: f.dtypes,
    metadata: f.metadata, warnings: f.warnings, tensors: f.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], numel: t.numel })),
  };
}

const adapterCache = new Map<string, { key: string; value: Described<AdapterSnapshot> }>();
const fileCache = new Map<string, { key: string; value: Described<FileBrief> }>();

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

function failure(e: unknown): { error: string; problem: string } {
  return { error: errorMessage(e), problem: e instanceof FormatError ? e.problem : errorMessage(e) };
}

/** Opens (header only) and snapshots an adapter. Cached by mtime. */
export function adapterSnapshot(p: string): Described<AdapterSnapshot> {
  const key = mtimeKey(adapterKeyPaths(p));
  const hit = adapterCache.get(p);
  if (hit && hit.key === key) return hit.value;
  let value: Described<AdapterSnapshot>;
  try {
    const a = openAdapter(p);
    try {
      value = { value: snapshot(a) };
    } finally {
      a.store.close();
    }
  } catch (e) {
    value = failure(e);
  }
  adapterCache.set(p, { key, value });
  return value;
}

/** Header-only summary of a weights file. Cached by mtime. */
export function fileSummary(p: string): Described<FileBrief> {
  const key = mtimeKey([p]);
  const hit = fileCache.get(p);
  if (hit && hit.key === key) return hit.value;
  let value: Described<FileBrief>;
  try {
    value = { value: brief(describeWeights(p)) };
  } catch (e) {
    value = failure(e);
  }
  fileCache.set(p, { key, value });
  return value;
}

function withoutTensors(f: FileBrief): Omit<FileBrief, 'tensors'> {
  const { tensors, ...rest } = f;
  void tensors;
  return rest;
}

/** True when a single weights file is a LoRA adapter by its header (core/formats/classify.ts). */
export function isAdapterWeightsFile(file: string): boolean {
  if (!/\.(safetensors|gguf|bin|pt|pth|ckpt)$/i.test(file) || file.endsWith('.index.json')) return false;
  const f = fileSummary(file);
  return 'value' in f && isAdapterFile(f.value.tensors.map((t) => t.name), f.value.metadata);
}

/** A single weights file that is a LoRA (kohya, diffusers, GGUF LoRA, …) becomes an `adapter-file`. */
function classified<R extends { kind: string; path: string; files: readonly string[] }>(r: R): R {
  if (r.kind !== 'safetensors' && r.kind !== 'gguf' && r.kind !== 'pickle') return r;
  return isAdapterWeightsFile(r.path) ? { ...r, kind: 'adapter-file' } : r;
}

export async function scanJob(p: ScanParams): Promise<ScanResult> {
  const entries: CheckpointEntry[] = [];
  const errors: string[] = [];
  for (const folder of p.folders) {
    let refs;
    try {
      refs = detectCheckpoints(folder);
    } catch (e) {
      errors.push(`detectCheckpoints(${folder}): ${errorMessage(e)}`);
      continue;
    }
    for (const r0 of refs) {
      const r = classified(r0);
      const isAdapter = ADAPTER_KINDS.includes(r.kind);
      if (p.adaptersOnly && !isAdapter) continue;
      if (p.kinds && !p.kinds.includes(r.kind)) continue;
      const ref = { kind: r.kind, path: r.path, name: r.name, files: [...r.files] };
      if (p.adaptersOnly || p.kinds) { entries.push({ folder, ref, isAdapter }); continue; }
      if (isAdapter) entries.push({ folder, ref, isAdapter, adapter: adapterSnapshot(r.path) });
      else {
        const f = fileSummary(r.files[0] ?? r.path);
        entries.push({ folder, ref, isAdapter, file: 'value' in f ? { value: withoutTensors(f.value) } : f });
      }
    }
  }
  return { entries, errors };
}

export async function describeJob(p: DescribeParams): Promise<DescribeResult> {
  const r: DescribeResult = {};
  if (p.adapter) r.adapter = adapterSnapshot(p.adapter);
  if (p.file) r.file = fileSummary(p.file);
  // A single-file LoRA is described as an adapter too (hovers, pickers).
  if (p.file && !p.adapter && isAdapterWeightsFile(p.file)) r.adapter = adapterSnapshot(p.file);
  return r;
}

function isGitLfsPointer(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(64);
      const n = fs.readSync(fd, buf, 0, 64, 0);
      return buf.subarray(0, n).toString('latin1').startsWith('version https://git-lfs.github.com/spec/');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** The checkpoint viewer's data for `file` (errors become `error`, never a rejection). */
export async function viewerJob(p: { file: string }): Promise<ViewerData> {
  const file = p.file;
  const base: ViewerData = { fileName: path.basename(file), path: file };
  if (isGitLfsPointer(file)) {
    return { ...base, error: `${file}: is a Git LFS pointer file, not the weights themselves (run \`git lfs pull\`)` };
  }
  const d = fileSummary(file);
  if (!('value' in d)) return { ...base, error: d.error };
  const s = d.value;
  const data: ViewerData = {
    ...base,
    kind: s.kind,
    fileBytes: s.fileBytes,
    sizeText: formatBytes(s.fileBytes),
    tensorCount: s.tensorCount,
    parameters: s.parameters,
    parametersText: formatCount(s.parameters),
    dtypes: Object.entries(s.dtypes).sort((a, b) => b[1] - a[1]).map(([dtype, n]) => ({ dtype, parameters: n, text: formatCount(n) })),
    metadata: s.metadata,
    warnings: [...s.warnings],
    tensors: s.tensors.map((t) => [t.name, t.dtype, t.shape, t.numel]),
  };
  const hasConfig = fs.existsSync(path.join(path.dirname(file), 'adapter_config.json')) || isAdapterWeightsFile(file);
  const ad = adapterSnapshot(file);
  if ('value' in ad) {
    const a = ad.value;
    data.adapter = {
      name: a.name, path: a.path, format: formatLabel(a.format), rank: a.summary.rank ?? a.modules[0]?.rank,
      alpha: a.summary.alpha ?? a.modules[0]?.alpha, scaleRule: scaleRule(a), targetModules: a.summary.targetModules,
      flags: adapterFlags(a), baseModel: a.summary.baseModel, moduleCount: a.modules.length, warnings: a.warnings,
    };
  } else if (hasConfig) {
    // Only an error worth showing when the file sits in an adapter folder.
    data.warnings!.push(`Adapter: ${ad.error}`);
  }
  return data;
}

export const inspectHandlers: JobHandler[] = [handle(Scan, scanJob), handle(Describe, describeJob), handle(ViewerInit, viewerJob)];
