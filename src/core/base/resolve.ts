/**
 * The one base-model resolver (used by the worker's `base.resolve` job for every UI feature: base
 * analyses, research views, merge). From the adapter's base_model_name_or_path (detectBaseModel; for
 * adapters the readers cannot open, adapter_config.json's base_model_name_or_path or mlx-lm's `model`),
 * resolved against the adapter folder and then `roots` (workspace folders):
 *   dir      the first candidate holding config.json;
 *   weights  the base weights to merge into (model.safetensors.index.json, model.safetensors, or the one
 *            non-adapter *.safetensors) of that folder, else of the first candidate that has them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BaseResolution } from '../../shared/base';
import { openAdapter } from '../formats/open';
import { detectBaseModel, type BaseModelLocation } from './basemodel';

/** The base weights file of a folder or file path, or undefined. */
export function baseWeightsFile(p: string): string | undefined {
  let st: fs.Stats;
  try { st = fs.statSync(p); } catch { return undefined; }
  if (st.isFile()) return /\.(safetensors|gguf)$|\.safetensors\.index\.json$/i.test(p) ? p : undefined;
  for (const n of ['model.safetensors.index.json', 'model.safetensors']) if (fs.existsSync(path.join(p, n))) return path.join(p, n);
  const st2 = fs.readdirSync(p).filter((n) => n.endsWith('.safetensors') && !n.startsWith('adapter'));
  return st2.length === 1 ? path.join(p, st2[0]) : undefined;
}

function adapterDir(p: string): string {
  try { return fs.statSync(p).isDirectory() ? p : path.dirname(p); } catch { return path.dirname(p); }
}

/** base_model_name_or_path (or mlx-lm `model`) from adapter_config.json, without opening the weights. */
function configId(dir: string): string | undefined {
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    const b = cfg.base_model_name_or_path ?? cfg.model;
    return typeof b === 'string' && b ? b : undefined;
  } catch {
    return undefined;
  }
}

export function resolveBase(adapterPath: string, roots: readonly string[] = []): BaseResolution {
  const dir = adapterDir(adapterPath);
  let det: BaseModelLocation;
  try {
    const a = openAdapter(adapterPath);
    try { det = detectBaseModel(a); } finally { a.store.close(); }
  } catch (e) {
    det = { message: e instanceof Error ? e.message : String(e) };
  }
  const id = det.id ?? configId(dir);
  if (!id) return { ...det };
  const candidates = [...(path.isAbsolute(id) ? [id] : []), path.resolve(dir, id), ...roots.map((r) => path.resolve(r, id))];
  let found = det.dir;
  if (!found) found = candidates.find((c) => fs.existsSync(path.join(c, 'config.json')));
  const out: BaseResolution = found ? { id, dir: found } : { id, message: det.message ?? `base model '${id}' was not found as a local folder with config.json` };
  const weights = (found ? baseWeightsFile(found) : undefined) ?? candidates.map(baseWeightsFile).find((w) => w !== undefined);
  if (weights) out.weights = weights;
  return out;
}
