/**
 * Base models on disk (Hugging Face folders: config.json + model.safetensors or a sharded
 * model.safetensors.index.json), opened lazily (headers only), and the mapping from adapter module
 * names to base weight tensors.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { FormatError } from '../formats/errors';
import { readJsonFile } from '../formats/peft';
import { SafetensorsStore, type TensorInfo, type TensorStore } from '../formats/safetensors';

export interface BaseModel {
  dir: string;
  config: Record<string, unknown>;
  modelType?: string;
  store: TensorStore;
}

/** Opens a model folder (config.json + model.safetensors | model.safetensors.index.json). */
export function openBaseModel(dir: string): BaseModel {
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new FormatError(dir, 'is not a model folder (no config.json)');
  const config = readJsonFile(cfgFile);
  const single = path.join(dir, 'model.safetensors');
  const index = path.join(dir, 'model.safetensors.index.json');
  let store: TensorStore;
  if (fs.existsSync(single)) store = SafetensorsStore.openFile(single);
  else if (fs.existsSync(index)) store = SafetensorsStore.openIndex(index);
  else {
    const any = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors.index.json'));
    if (any.length === 1) store = SafetensorsStore.openIndex(path.join(dir, any[0]));
    else throw new FormatError(dir, 'has config.json but neither model.safetensors nor model.safetensors.index.json');
  }
  return { dir, config, modelType: typeof config.model_type === 'string' ? config.model_type : undefined, store };
}

export interface BaseWeightRef {
  tensorName: string;
  tensor: TensorInfo;
  /** Stored as [in, out] (fan_in_fan_out / GPT-2 Conv1D): transpose to get [out, in]. */
  transposed: boolean;
  /** Rows [start, end) of the [out, in] weight (fused projections such as Phi-3 qkv_proj). */
  slice?: { start: number; end: number };
  /** Shape of the (sliced) weight in [out, in] orientation. */
  out: number;
  in: number;
}

/** Candidate base tensor names for an adapter module name (most likely first). */
export function baseNameCandidates(moduleName: string): string[] {
  let n = moduleName.replace(/^base_model\.model\./, '').replace(/\.weight$/, '');
  n = n.replace(/\.base_layer$/, '');
  const out: string[] = [];
  const add = (s: string): void => {
    if (s && !out.includes(s)) out.push(s);
  };
  add(n);
  const prefixes = ['model.', 'transformer.', 'bert.', 'roberta.', 'gpt_neox.', 'model.decoder.', 'model.language_model.', 'language_model.model.'];
  for (const p of prefixes) if (n.startsWith(p)) add(n.slice(p.length));
  for (const p of prefixes) add(p + n);
  // drop leading components one at a time (task heads wrap the backbone: `bert.encoder...`)
  const parts = n.split('.');
  for (let i = 1; i < Math.min(parts.length - 1, 3); i++) add(parts.slice(i).join('.'));
  return out.map((s) => `${s}.weight`);
}

const FUSED: { target: RegExp; fused: string; parts: string[] }[] = [
  { target: /\.(q_proj|k_proj|v_proj)$/, fused: 'qkv_proj', parts: ['q_proj', 'k_proj', 'v_proj'] },
  { target: /\.(gate_proj|up_proj)$/, fused: 'gate_up_proj', parts: ['gate_proj', 'up_proj'] },
];

function fusedRows(cfg: Record<string, unknown>, fused: string, part: string, rows: number): [number, number] | undefined {
  const num = (k: string): number | undefined => (typeof cfg[k] === 'number' ? (cfg[k] as number) : undefined);
  if (fused === 'gate_up_proj') {
    const h = rows / 2;
    return part === 'gate_proj' ? [0, h] : [h, rows];
  }
  const hidden = num('hidden_size'), heads = num('num_attention_heads');
  if (!hidden || !heads) return undefined;
  const kv = num('num_key_value_heads') ?? heads;
  const hd = num('head_dim') ?? hidden / heads;
  const q = heads * hd, k = kv * hd;
  if (q + 2 * k !== rows) return undefined;
  return part === 'q_proj' ? [0, q] : part === 'k_proj' ? [q, q + k] : [q + k, q + 2 * k];
}

function dims2(t: TensorInfo): [number, number] {
  return [t.shape[0] ?? 1, t.shape.slice(1).reduce((a, b) => a * b, 1)];
}

/**
 * Base weight of an adapter module. Handles `base_model.model.` prefixes, with/without `model.` /
 * `transformer.` style prefixes, GPT-2 Conv1D weights stored [in, out] (fan_in_fan_out, or
 * detected from the shape), fused QKV: GPT-2 c_attn targeted as a whole maps to the whole
 * [768, 2304] matrix; q/k/v LoRA on a fused `qkv_proj` base (Phi-3) maps to a row slice.
 * @throws FormatError when no tensor matches or when the shapes disagree (names both shapes).
 */
export function baseWeightFor(module: LoraModule, base: BaseModel | TensorStore): BaseWeightRef {
  const store = 'store' in base ? base.store : base;
  const cfg = 'store' in base ? base.config : {};
  const want: [number, number] = [module.outFeatures, module.inFeatures];
  const tried = baseNameCandidates(module.name);
  for (const name of tried) {
    const t = store.tensors.get(name);
    if (!t) continue;
    const [a, b] = dims2(t);
    const gpt2Conv1D = /(^|\.)(c_attn|c_proj|c_fc)$/.test(module.name) && cfg.model_type === 'gpt2';
    if (a === want[0] && b === want[1]) {
      // square weights are ambiguous: trust fan_in_fan_out (or GPT-2's Conv1D layout)
      return { tensorName: name, tensor: t, transposed: a === b && (module.fanInFanOut || gpt2Conv1D), out: want[0], in: want[1] };
    }
    if (a === want[1] && b === want[0]) {
      return { tensorName: name, tensor: t, transposed: true, out: want[0], in: want[1] };
    }
    throw new FormatError(store.path, `base tensor "${name}" has shape [${t.shape.join(', ')}] but the adapter's ΔW for "${module.name}" is [${want.join(', ')}] ([out, in]${module.fanInFanOut ? ', fan_in_fan_out' : ''})`);
  }
  for (const f of FUSED) {
    const m = f.target.exec(module.name);
    if (!m) continue;
    const fusedName = module.name.slice(0, m.index + 1) + f.fused;
    for (const name of baseNameCandidates(fusedName)) {
      const t = store.tensors.get(name);
      if (!t) continue;
      const [a, b] = dims2(t);
      const rows = fusedRows(cfg, f.fused, m[1], a);
      if (!rows || b !== want[1] || rows[1] - rows[0] !== want[0]) {
        throw new FormatError(store.path, `fused base tensor "${name}" [${t.shape.join(', ')}] cannot be split into "${m[1]}" rows of [${want.join(', ')}]`);
      }
      return { tensorName: name, tensor: t, transposed: false, slice: { start: rows[0], end: rows[1] }, out: want[0], in: want[1] };
    }
  }
  throw new FormatError(store.path, `has no base weight for adapter module "${module.name}" [${want.join(', ')}]; tried ${tried.slice(0, 6).join(', ')}${tried.length > 6 ? ', …' : ''}`);
}

/** Reads a base weight as fp32 row-major [out, in] (transposed / sliced as needed). */
export function readBaseWeight(base: BaseModel | TensorStore, ref: BaseWeightRef): Float32Array {
  const store = 'store' in base ? base.store : base;
  const raw = store.readF32(ref.tensorName);
  const [a, b] = dims2(ref.tensor);
  let w = raw;
  if (ref.transposed) {
    w = new Float32Array(a * b);
    const B = 64;
    for (let i0 = 0; i0 < a; i0 += B) for (let j0 = 0; j0 < b; j0 += B) {
      const i1 = Math.min(a, i0 + B), j1 = Math.min(b, j0 + B);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) w[j * a + i] = raw[i * b + j];
    }
  }
  if (ref.slice) w = w.slice(ref.slice.start * ref.in, ref.slice.end * ref.in);
  return w;
}

export interface BaseModelLocation {
  /** base_model_name_or_path as written in the adapter config. */
  id?: string;
  /** Resolved local model folder, when found. */
  dir?: string;
  /** Why no folder was found (shown to the user). */
  message?: string;
}

/**
 * Finds the adapter's base model on disk: base_model_name_or_path resolved relative to the adapter
 * folder, then as an absolute path; it must be a folder with config.json.
 */
export function detectBaseModel(adapter: Adapter): BaseModelLocation {
  const id = adapter.summary.baseModel ?? (typeof adapter.config?.base_model_name_or_path === 'string' ? (adapter.config.base_model_name_or_path as string) : undefined);
  if (!id) return { message: `adapter ${adapter.name} does not name its base model (no base_model_name_or_path): set it with LoRA Lens: Set Base Model` };
  const adapterDir = fs.existsSync(adapter.path) && fs.statSync(adapter.path).isDirectory() ? adapter.path : path.dirname(adapter.path);
  const candidates = [path.resolve(adapterDir, id)];
  if (path.isAbsolute(id)) candidates.unshift(id);
  for (const c of candidates) {
    if (fs.existsSync(path.join(c, 'config.json'))) return { id, dir: c };
  }
  const looksHub = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)?$/.test(id) && !id.startsWith('.') && !fs.existsSync(candidates[candidates.length - 1]);
  if (looksHub) return { id, message: `base model '${id}' is a hub id, not a local folder: set it with LoRA Lens: Set Base Model` };
  return { id, message: `base model '${id}' was not found as a local folder with config.json (looked in ${candidates.join(', ')}): set it with LoRA Lens: Set Base Model` };
}
