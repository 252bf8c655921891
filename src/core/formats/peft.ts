/**
 * PEFT (and mlx-lm) LoRA adapter folders: adapter_config.json + adapter_model.safetensors
 * (mlx-lm: adapters.safetensors). Scaling follows PEFT exactly:
 *   s = alpha / r,  or alpha / sqrt(r) with use_rslora,
 * where r and alpha come from rank_pattern / alpha_pattern when a pattern key matches the module
 * name (PEFT `get_pattern_key`: the key must match a dotted suffix of the module name).
 */
import * as path from 'node:path';
import { Adapter, AdapterSummary, kindOf, layerOf, LoraFactor, loraShapeProblem, LoraModule } from './adapter';
import { FormatError } from './errors';
import { readJsonFile } from '../util/json';
import { lexists } from './fileio';
import { peftKeyMatches } from './pattern';
import { shortJson } from './safejson';
import { SafetensorsStore, TensorInfo, TensorStore } from './safetensors';
import { openTorchCheckpoint } from './torchzip';

export const PEFT_CONFIG = 'adapter_config.json';
export const PEFT_WEIGHTS = 'adapter_model.safetensors';
export const PEFT_LEGACY_WEIGHTS = 'adapter_model.bin';
export const MLX_WEIGHTS = 'adapters.safetensors';

// readJsonFile lives in core/util/json.ts; re-exported for existing callers.
export { readJsonFile };

/**
 * PEFT's pattern matching: the first key for which `re.match(rf"(.*\.)?({key})$", name)` succeeds.
 * Keys are matched by a linear-time engine (pattern.ts), so a hostile key like `(a+)+b` cannot
 * hang us; keys it cannot express are matched literally and reported through `onUnsupported`.
 */
export function matchPattern(patterns: Record<string, unknown> | null | undefined, name: string, onUnsupported?: (key: string, why: string) => void): string | undefined {
  if (!patterns || typeof patterns !== 'object' || Array.isArray(patterns)) return undefined;
  for (const key of Object.keys(patterns)) if (peftKeyMatches(key, name, onUnsupported)) return key;
  return undefined;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Config value as text (objects from a hostile config may have a non-callable toString). */
const text = (x: unknown): string => (typeof x === 'string' ? x : shortJson(x));

/** Describes a config value that should have been a finite number. */
export function notANumber(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'number') return `${v} (out of range: a JSON number such as 1e400 overflows to infinity)`;
  if (typeof v === 'string') return `the string ${shortJson(v, 40)}`;
  return `${Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v} (${shortJson(v, 40)})`;
}

export function peftSummary(cfg: Record<string, unknown>): AdapterSummary {
  const tm = cfg.target_modules;
  const targets = Array.isArray(tm) ? tm.map(text) : typeof tm === 'string' ? [tm] : [];
  const mts = cfg.modules_to_save;
  return {
    rank: num(cfg.r),
    alpha: num(cfg.lora_alpha),
    targetModules: targets,
    useRslora: cfg.use_rslora === true,
    useDora: cfg.use_dora === true,
    fanInFanOut: cfg.fan_in_fan_out === true,
    baseModel: typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : undefined,
    peftType: typeof cfg.peft_type === 'string' ? cfg.peft_type : undefined,
    taskType: typeof cfg.task_type === 'string' ? cfg.task_type : undefined,
    hasRankPattern: !!cfg.rank_pattern && Object.keys(cfg.rank_pattern as object).length > 0,
    hasAlphaPattern: !!cfg.alpha_pattern && Object.keys(cfg.alpha_pattern as object).length > 0,
    modulesToSave: Array.isArray(mts) ? mts.map(text) : [],
  };
}

/** Strips PEFT wrapper prefixes from a saved key's module path. */
export function stripPeftPrefix(name: string): string {
  return name.replace(/^base_model\.model\./, '');
}

interface PairParts {
  module: string;
  role: 'A' | 'B' | 'M';
}

/** Recognises PEFT factor keys: `<module>.lora_A[.<adapter>].weight`, `lora_embedding_A`, `lora_magnitude_vector`. */
export function parsePeftKey(key: string): PairParts | undefined {
  let m = /^(.*)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/.exec(key);
  if (m) return { module: m[1], role: m[2] as 'A' | 'B' };
  m = /^(.*)\.lora_embedding_(A|B)(?:\.[A-Za-z0-9_-]+)?$/.exec(key);
  if (m) return { module: m[1], role: m[2] as 'A' | 'B' };
  m = /^(.*)\.lora_magnitude_vector(?:\.[A-Za-z0-9_-]+)?(?:\.weight)?$/.exec(key);
  if (m) return { module: m[1], role: 'M' };
  return undefined;
}

/** Matrix view of a factor tensor: first dim × product of the rest (conv kernels are flattened). */
function dims2(t: TensorInfo): [number, number] {
  if (t.shape.length < 2) return [t.shape[0] ?? 1, 1];
  return [t.shape[0], t.shape.slice(1).reduce((a, b) => a * b, 1)];
}

export interface PairingOptions {
  file: string;
  store: TensorStore;
  keyParser: (key: string) => PairParts | undefined;
  /** Factor orientation as stored. */
  transposed: boolean;
  moduleName: (raw: string) => string;
  scaleFor: (module: string, rank: number) => { scale: number; alpha?: number; source: string };
  fanInFanOut: boolean;
}

/** Pairs A/B factors by module, validates shapes, and builds LoraModules. */
export function pairFactors(o: PairingOptions): { modules: LoraModule[]; other: TensorInfo[]; warnings: string[] } {
  const parts = new Map<string, { A?: TensorInfo; B?: TensorInfo; M?: TensorInfo }>();
  const other: TensorInfo[] = [];
  const warnings: string[] = [];
  for (const t of o.store.tensors.values()) {
    const p = o.keyParser(t.name);
    if (!p) {
      other.push(t);
      continue;
    }
    const e = parts.get(p.module) ?? {};
    if (e[p.role]) throw new FormatError(o.file, `module "${p.module}" has two ${p.role} factors ("${e[p.role]!.name}" and "${t.name}")`);
    e[p.role] = t;
    parts.set(p.module, e);
  }
  const modules: LoraModule[] = [];
  for (const [raw, e] of parts) {
    if (!e.A || !e.B) {
      const have = (e.A ?? e.B ?? e.M)!;
      warnings.push(`module "${raw}" has only "${have.name}" (its ${e.A ? 'B' : 'A'} factor is missing); skipped`);
      continue;
    }
    for (const t of [e.A, e.B]) {
      if (t.shape.length < 2) throw new FormatError(o.file, `LoRA factor "${t.name}" has shape ${JSON.stringify(t.shape)}; expected a matrix`);
    }
    // PEFT orientation: A [r, in], B [out, r]; mlx stores the transposes.
    let [ar, ain] = dims2(e.A);
    let [bout, br] = dims2(e.B);
    if (o.transposed) {
      [ain, ar] = [e.A.shape[0], e.A.shape[1]];
      [br, bout] = [e.B.shape[0], e.B.shape[1]];
    }
    const conv = !o.transposed && (e.A.shape.length > 2 || e.B.shape.length > 2);
    if (ar !== br) {
      throw new FormatError(o.file, `module "${raw}": rank of "${e.A.name}" ${JSON.stringify(e.A.shape)} and "${e.B.name}" ${JSON.stringify(e.B.shape)} disagree (${ar} vs ${br})`);
    }
    const shapeProblem = loraShapeProblem(ar, ain, bout);
    if (shapeProblem) throw new FormatError(o.file, `module "${raw}" ("${e.A.name}" ${JSON.stringify(e.A.shape)}, "${e.B.name}" ${JSON.stringify(e.B.shape)}) ${shapeProblem}`);
    const name = o.moduleName(raw);
    const { scale, alpha, source } = o.scaleFor(name, ar);
    const fA: LoraFactor = { tensor: e.A, transposed: o.transposed };
    const fB: LoraFactor = { tensor: e.B, transposed: o.transposed };
    modules.push({
      name, layer: layerOf(name), kind: kindOf(name), A: fA, B: fB, rank: ar,
      outFeatures: bout, inFeatures: ain, alpha, scale, scaleSource: source,
      magnitude: e.M, fanInFanOut: o.fanInFanOut, conv,
    });
    if (e.M && e.M.numel !== bout && e.M.numel !== ain) {
      warnings.push(`DoRA magnitude "${e.M.name}" has ${e.M.numel} entries, expected ${bout}`);
    }
  }
  modules.sort(compareModules);
  return { modules, other, warnings };
}

/** Orders modules by layer, then by name (natural order of numbers). */
export function compareModules(a: LoraModule, b: LoraModule): number {
  const la = a.layer ?? Number.MAX_SAFE_INTEGER;
  const lb = b.layer ?? Number.MAX_SAFE_INTEGER;
  if (la !== lb) return la - lb;
  return a.name.localeCompare(b.name, 'en', { numeric: true });
}

/** PEFT scale for one module (rank_pattern / alpha_pattern / rsLoRA aware). */
export function peftScale(cfg: Record<string, unknown>, module: string, tensorRank: number, warnings: string[]): { scale: number; alpha: number; source: string } {
  const rp = cfg.rank_pattern as Record<string, unknown> | null | undefined;
  const ap = cfg.alpha_pattern as Record<string, unknown> | null | undefined;
  const note = (w: string): void => { if (!warnings.includes(w)) warnings.push(w); };
  const unsupported = (k: string, why: string): void => note(`${PEFT_CONFIG}: pattern key ${shortJson(k, 60)} is not a regular expression LoRA Lens can match in linear time (${why}); it is compared literally as a module-name suffix`);
  const rk = matchPattern(rp, module, unsupported);
  const ak = matchPattern(ap, module, unsupported);
  let r = rk !== undefined ? num(rp![rk]) : num(cfg.r);
  if (r === undefined) r = tensorRank;
  if (r !== tensorRank) {
    warnings.push(`module "${module}": config rank ${r}${rk ? ` (rank_pattern "${rk}")` : ''} but the factors have rank ${tensorRank}; using ${tensorRank}`);
    r = tensorRank;
  }
  let alpha: number | undefined;
  let alphaNote = '';
  if (ak !== undefined) {
    alpha = num(ap![ak]);
    alphaNote = ` (alpha_pattern "${ak}")`;
    if (alpha === undefined) note(`${PEFT_CONFIG}: alpha_pattern[${shortJson(ak, 60)}] is ${notANumber(ap![ak])}, not a finite number; lora_alpha is used instead`);
  }
  if (alpha === undefined) {
    alpha = num(cfg.lora_alpha);
    alphaNote = '';
  }
  if (alpha === undefined) {
    alpha = 8;
    alphaNote = cfg.lora_alpha === undefined ? ' (lora_alpha missing: PEFT default 8 assumed)' : ' (lora_alpha is not a finite number: PEFT default 8 assumed)';
  }
  const rs = cfg.use_rslora === true;
  const scale = rs ? alpha / Math.sqrt(r) : alpha / r;
  const rNote = rk !== undefined ? ` (rank_pattern "${rk}")` : '';
  const source = rs ? `rsLoRA alpha/√r = ${alpha}/√${r}${rNote}${alphaNote}` : `alpha/r = ${alpha}/${r}${rNote}${alphaNote}`;
  return { scale, alpha, source };
}

/** Opens a PEFT LoRA adapter folder (or its weights file). */
export function openPeftAdapter(dir: string, weights?: string): Adapter {
  const cfgPath = path.join(dir, PEFT_CONFIG);
  const cfg = readJsonFile(cfgPath);
  const warnings: string[] = [];
  const peftType = cfg.peft_type;
  if (typeof peftType === 'string' && peftType !== 'LORA' && peftType !== 'ADALORA') {
    throw new FormatError(cfgPath, `peft_type is ${peftType}; LoRA Lens analyses LoRA adapters (LORA)`);
  }
  if (cfg.lora_alpha === undefined) warnings.push(`${PEFT_CONFIG} has no lora_alpha: PEFT's default 8 is assumed`);
  else if (num(cfg.lora_alpha) === undefined) warnings.push(`${PEFT_CONFIG}: lora_alpha is ${notANumber(cfg.lora_alpha)}, not a finite number: PEFT's default 8 is assumed (scale source says so per module)`);
  for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = cfg[k];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Array.isArray(v))) warnings.push(`${PEFT_CONFIG}: ${k} is ${notANumber(v)}, not an object; ignored`);
  }
  const init = cfg.init_lora_weights;
  if (typeof init === 'string' && /^(pissa|olora|corda)/i.test(init)) {
    warnings.push(`init_lora_weights="${init}": this adapter was trained on a modified base; unless converted at save time, s·B·A is not the full change`);
  }
  let wfile = weights ?? path.join(dir, PEFT_WEIGHTS);
  if (!weights && !lexists(wfile) && lexists(path.join(dir, PEFT_LEGACY_WEIGHTS))) wfile = path.join(dir, PEFT_LEGACY_WEIGHTS);
  if (!lexists(wfile)) throw new FormatError(dir, `has ${PEFT_CONFIG} but no ${PEFT_WEIGHTS}`);
  // Legacy adapter_model.bin: torch zip read by the restricted pickle reader (never runs code).
  const legacy = /\.(bin|pt|pth)$/i.test(wfile);
  const torchStore = legacy ? openTorchCheckpoint(wfile) : undefined;
  const store = torchStore ?? SafetensorsStore.openFile(wfile);
  try {
    const fif = cfg.fan_in_fan_out === true;
    const { modules, other, warnings: w } = pairFactors({
      file: wfile, store, keyParser: parsePeftKey, transposed: false,
      moduleName: stripPeftPrefix,
      scaleFor: (m, r) => peftScale(cfg, m, r, warnings),
      fanInFanOut: fif,
    });
    warnings.push(...w, ...store.warnings);
    if (torchStore?.locations.some((l) => l !== 'cpu')) warnings.push(`storages were saved on ${torchStore.locations.join(', ')}; read on the CPU`);
    if (modules.length === 0) throw new FormatError(wfile, `contains no LoRA factor pairs (lora_A/lora_B); ${store.tensors.size} tensors found`);
    return {
      format: 'peft', path: dir, weightsFile: wfile, name: path.basename(dir), config: cfg,
      summary: peftSummary(cfg), modules, otherTensors: other, store, warnings,
    };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** mlx-lm key: `model.layers.N.self_attn.q_proj.lora_a` [in, r] / `.lora_b` [r, out], DoRA `.m`. */
export function parseMlxKey(key: string): PairParts | undefined {
  const m = /^(.*)\.lora_(a|b)$/.exec(key);
  if (m) return { module: m[1], role: m[2] === 'a' ? 'A' : 'B' };
  const d = /^(.*)\.m$/.exec(key);
  if (d) return { module: d[1], role: 'M' };
  return undefined;
}

export function isMlxConfig(cfg: Record<string, unknown>): boolean {
  return typeof cfg.lora_parameters === 'object' || typeof cfg.fine_tune_type === 'string' || 'lora_layers' in cfg;
}

/** Opens an mlx-lm adapter folder (adapters.safetensors + adapter_config.json with lora_parameters). */
export function openMlxAdapter(dir: string, weights?: string): Adapter {
  const cfgPath = path.join(dir, PEFT_CONFIG);
  const cfg = readJsonFile(cfgPath);
  const lp = (typeof cfg.lora_parameters === 'object' && cfg.lora_parameters !== null ? cfg.lora_parameters : {}) as Record<string, unknown>;
  const warnings: string[] = [];
  const wfile = weights ?? path.join(dir, MLX_WEIGHTS);
  const store = SafetensorsStore.openFile(wfile);
  try {
    const mlxScale = num(lp.scale);
    const mlxAlpha = num(lp.alpha);
    const { modules, other, warnings: w } = pairFactors({
      file: wfile, store, keyParser: parseMlxKey, transposed: true,
      moduleName: (s) => s,
      scaleFor: (_m, r) => {
        if (mlxScale !== undefined) return { scale: mlxScale, alpha: mlxAlpha, source: `mlx-lm scale = ${mlxScale}` };
        if (mlxAlpha !== undefined) return { scale: mlxAlpha / r, alpha: mlxAlpha, source: `alpha/r = ${mlxAlpha}/${r} (no mlx scale in config)` };
        return { scale: 20, source: 'mlx-lm default scale 20 (lora_parameters.scale missing)' };
      },
      fanInFanOut: false,
    });
    if (mlxScale === undefined) warnings.push(`${PEFT_CONFIG} has no lora_parameters.scale`);
    warnings.push(...w, ...store.warnings);
    if (modules.length === 0) throw new FormatError(wfile, `contains no mlx-lm LoRA pairs (lora_a/lora_b); ${store.tensors.size} tensors found`);
    const rank = num(lp.rank) ?? modules[0].rank;
    const keys = Array.isArray(lp.keys) ? lp.keys.map(text) : [...new Set(modules.map((m) => m.kind))];
    return {
      format: 'mlx', path: dir, weightsFile: wfile, name: path.basename(dir), config: cfg,
      summary: {
        rank, alpha: mlxAlpha, targetModules: keys, useRslora: false,
        useDora: cfg.fine_tune_type === 'dora' || cfg.use_dora === true, fanInFanOut: false,
        baseModel: typeof cfg.model === 'string' ? cfg.model : undefined, peftType: 'mlx-lm LoRA',
        hasRankPattern: false, hasAlphaPattern: false, modulesToSave: [],
      },
      modules, otherTensors: other, store, warnings,
    };
  } catch (e) {
    store.close();
    throw e;
  }
}
