/**
 * Entry points used by the extension, the CLI and the tests: find checkpoints in a folder tree,
 * open any adapter path, and describe a weights file from its header alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter } from './adapter';
import { isPeftLycorisConfig, isVeraConfig, openPeftLycorisAdapter, openVeraAdapter } from './lycoris';
import { FormatError } from './errors';
import { lexists, missingProblem } from './fileio';
import {
  isMlxConfig, MLX_WEIGHTS, openMlxAdapter, openPeftAdapter, pairFactors, parsePeftKey, PEFT_CONFIG, PEFT_LEGACY_WEIGHTS,
  PEFT_WEIGHTS, readJsonFile, stripPeftPrefix,
} from './peft';
import { SafetensorsStore, TensorInfo, TensorStore } from './safetensors';
// Every reader is imported directly (no side-effect registration; none of them imports this file).
import { GgufStore, openGgufAdapter } from './gguf';
import { openPeftBinAdapter } from './peftbin';
import { openLoraFile } from './sdlora';
import { openTorchCheckpoint } from './torchzip';

export type CheckpointKind = 'peft-adapter' | 'mlx-adapter' | 'adapter-file' | 'safetensors' | 'sharded' | 'gguf' | 'pickle' | 'model-folder';

export interface CheckpointRef {
  kind: CheckpointKind;
  /** Folder (adapters, sharded models) or file. */
  path: string;
  name: string;
  /** Weight file(s) to show for this checkpoint. */
  files: string[];
}

const WEIGHT_EXT = /\.(safetensors|gguf|bin|pt|pth|ckpt)$/i;
const SKIP_DIRS = new Set(['node_modules', '.git', '.venv', 'venv', '__pycache__', '.e2e-tools', '.e2e-run', 'out', 'dist']);

/**
 * Walks `root` (bounded depth and entry count) and returns the checkpoints found: adapter folders
 * first-class, sharded indexes as one entry, other weight files individually.
 */
export function detectCheckpoints(root: string, opts: { maxDepth?: number; maxEntries?: number } = {}): CheckpointRef[] {
  const maxDepth = opts.maxDepth ?? 6;
  let budget = opts.maxEntries ?? 20000;
  const out: CheckpointRef[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    budget -= entries.length;
    if (budget < 0) return;
    const names = new Set(entries.map((e) => e.name));
    const claimed = new Set<string>();
    if (names.has(PEFT_CONFIG)) {
      let kind: CheckpointKind = 'peft-adapter';
      try {
        if (isMlxConfig(readJsonFile(path.join(dir, PEFT_CONFIG)))) kind = 'mlx-adapter';
      } catch { /* reported when opened */ }
      const weights = [PEFT_WEIGHTS, MLX_WEIGHTS, PEFT_LEGACY_WEIGHTS].filter((n) => names.has(n));
      for (const e of entries) if (/^\d+_adapters\.safetensors$/.test(e.name)) weights.push(e.name);
      out.push({ kind, path: dir, name: path.basename(dir), files: weights.map((w) => path.join(dir, w)) });
      weights.forEach((w) => claimed.add(w));
    }
    for (const e of entries) {
      if (e.name.endsWith('.safetensors.index.json')) {
        out.push({ kind: 'sharded', path: path.join(dir, e.name), name: `${path.basename(dir)}/${e.name}`, files: [path.join(dir, e.name)] });
        try {
          const idx = readJsonFile(path.join(dir, e.name), 64_000_000) as { weight_map?: Record<string, string> };
          for (const f of Object.values(idx.weight_map ?? {})) claimed.add(String(f));
        } catch { /* shown when opened */ }
      }
    }
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (depth < maxDepth && !SKIP_DIRS.has(e.name) && !e.name.startsWith('.')) walk(full, depth + 1);
        continue;
      }
      if (claimed.has(e.name) || !WEIGHT_EXT.test(e.name)) continue;
      if (!e.isFile() && !e.isSymbolicLink()) continue;
      const ext = path.extname(e.name).toLowerCase();
      // Trainer state pickles next to checkpoints are not weights.
      if (/^(training_args|optimizer|scheduler|rng_state)/.test(e.name)) continue;
      const kind: CheckpointKind = ext === '.safetensors' ? 'safetensors' : ext === '.gguf' ? 'gguf' : 'pickle';
      out.push({ kind, path: full, name: e.name, files: [full] });
    }
  };
  walk(root, 0);
  return out;
}

/**
 * Opens a LoRA adapter from a folder or a file path, detecting the format.
 * @throws FormatError naming the file and the problem.
 */
export function openAdapter(p: string): Adapter {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    let link: string | undefined;
    try { if (fs.lstatSync(p).isSymbolicLink()) link = fs.readlinkSync(p); } catch { /* none */ }
    throw new FormatError(p, missingProblem(p, (e as NodeJS.ErrnoException).code, link, e));
  }
  if (st.isDirectory()) {
    const cfg = path.join(p, PEFT_CONFIG);
    if (!lexists(cfg)) {
      const idx = fs.readdirSync(p).find((n) => n.endsWith('.safetensors.index.json'));
      throw new FormatError(p, idx ? 'is a sharded model, not an adapter' : `has no ${PEFT_CONFIG}; not an adapter folder`);
    }
    const json = readJsonFile(cfg);
    if (isMlxConfig(json)) return openMlxAdapter(p);
    if (isVeraConfig(json)) return openVeraAdapter(p);
    if (isPeftLycorisConfig(json)) return openPeftLycorisAdapter(p);
        if (!lexists(path.join(p, PEFT_WEIGHTS)) && lexists(path.join(p, PEFT_LEGACY_WEIGHTS))) {
      return openPeftBinAdapter(p);
    }
    return openPeftAdapter(p);
  }
  const dir = path.dirname(p);
  const base = path.basename(p);
  const ext = path.extname(p).toLowerCase();
  if (base === PEFT_CONFIG) return openAdapter(dir);
  if (fs.existsSync(path.join(dir, PEFT_CONFIG)) && (ext === '.safetensors' || base === PEFT_LEGACY_WEIGHTS)) {
    const json = readJsonFile(path.join(dir, PEFT_CONFIG));
    if (isMlxConfig(json)) return openMlxAdapter(dir, p);
    if (base === PEFT_LEGACY_WEIGHTS) return openAdapter(dir);
    return openPeftAdapter(dir, p);
  }
  if (ext === '.gguf') {
    return openGgufAdapter(p);
  }
  if (ext === '.safetensors' || ['.bin', '.pt', '.pth', '.ckpt'].includes(ext)) {
    const a = openLoraFile(p);
    // PEFT keys (lora_A / lora_B) in a lone file: alpha lives in the adapter_config.json that is missing.
    if (a.modules.some((m) => /\.lora_A(?:\.[A-Za-z0-9_-]+)?\.weight$/.test(m.A.tensor.name))) {
      a.warnings.unshift(`${path.basename(p)}: no adapter_config.json next to it; scale 1 assumed`);
    }
    return a;
  }
  throw new FormatError(p, `is not a recognised adapter file (expected a folder with ${PEFT_CONFIG}, .safetensors or .gguf)`);
}

/** A safetensors file with PEFT-style keys but no adapter_config.json: scale 1 with a warning. */
export function openPeftKeysWithoutConfig(file: string): Adapter {
  const store = SafetensorsStore.openFile(file);
  try {
    const { modules, other, warnings } = pairFactors({
      file, store, keyParser: parsePeftKey, transposed: false, moduleName: stripPeftPrefix,
      scaleFor: () => ({ scale: 1, source: 'no alpha recorded: scale 1 assumed' }), fanInFanOut: false,
    });
    if (modules.length === 0) {
      const eg = [...store.tensors.keys()].slice(0, 3).join(', ');
      throw new FormatError(file, `contains no LoRA factor pairs${eg ? ` (found e.g. ${eg})` : ''}`);
    }
    return {
      format: 'peft', path: file, weightsFile: file, name: path.basename(file), summary: {
        rank: modules[0].rank, targetModules: [...new Set(modules.map((m) => m.kind))], useRslora: false, useDora: false,
        fanInFanOut: false, hasRankPattern: false, hasAlphaPattern: false, modulesToSave: [],
      },
      modules, otherTensors: other, store, warnings: [`${path.basename(file)}: no adapter_config.json next to it; scale 1 assumed`, ...warnings, ...store.warnings],
    };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** Opens the tensor store of any weights file or sharded index (header only). */
export function openStore(p: string): TensorStore {
  const ext = path.extname(p).toLowerCase();
  if (p.endsWith('.safetensors.index.json')) return SafetensorsStore.openIndex(p);
  if (ext === '.safetensors') return SafetensorsStore.openFile(p);
  if (ext === '.gguf') {
    return GgufStore.openFile(p);
  }
  if (['.bin', '.pt', '.pth', '.ckpt'].includes(ext)) return openTorchCheckpoint(p);
  throw new FormatError(p, 'is not a recognised weights file');
}

export interface FileSummary {
  path: string;
  kind: string;
  fileBytes: number;
  tensorCount: number;
  parameters: number;
  /** Parameters per dtype. */
  dtypes: Record<string, number>;
  metadata: Record<string, string>;
  warnings: string[];
  tensors: Pick<TensorInfo, 'name' | 'dtype' | 'shape' | 'numel' | 'byteLength'>[];
}

/** Header-only summary of a weights file (for hovers and the checkpoint viewer). */
export function describeWeights(p: string): FileSummary {
  const store = openStore(p);
  try {
    const dtypes: Record<string, number> = {};
    let params = 0;
    const tensors = [...store.tensors.values()].map((t) => {
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + t.numel;
      params += t.numel;
      return { name: t.name, dtype: t.dtype, shape: t.shape, numel: t.numel, byteLength: t.byteLength };
    });
    tensors.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
    const kind = p.endsWith('.index.json') ? 'sharded safetensors' : path.extname(p).slice(1).toLowerCase();
    return { path: p, kind, fileBytes: store.totalBytes, tensorCount: tensors.length, parameters: params, dtypes, metadata: store.metadata, warnings: store.warnings, tensors };
  } finally {
    store.close();
  }
}

/** Display helpers moved to src/shared/format.ts (host and webviews use them too); re-exported for the CLI. */
export { formatBytes, formatCount } from '../../shared/format';
