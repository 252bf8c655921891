/**
 * Readers for adapters whose ΔW is a structured product rather than s·B·A:
 *
 *   LyCORIS LoHa (kohya-style files)  `<m>.hada_w1_a` [out,r], `.hada_w1_b` [r,in], `.hada_w2_a`, `.hada_w2_b`,
 *                                     optional CP cores `.hada_t1`/`.hada_t2`, `<m>.alpha`;
 *                                     ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha/r, r = w1b.shape[0].
 *   LyCORIS LoKr                      `<m>.lokr_w1` [a,c] or `.lokr_w1_a`·`.lokr_w1_b`, `.lokr_w2` [b,d(,kh,kw)] or
 *                                     `.lokr_w2_a`·`.lokr_w2_b`, optional `.lokr_t2`, `<m>.alpha`;
 *                                     ΔW = W1 ⊗ W2 · alpha/dim with dim the rank of the decomposed factor
 *                                     (w2's if both are decomposed) and scale 1 when neither is or alpha is
 *                                     missing — the rule of ComfyUI's LyCORIS loader (comfy/lora.py).
 *   PEFT VeRA folders                 `base_model.vera_A` [r, in_max], `base_model.vera_B` [out_max, r] (shared,
 *                                     saved with save_projection), per module `…<m>.vera_lambda_b` [out],
 *                                     `.vera_lambda_d` [r]; ΔW = diag(λ_b)·B[:out]·diag(λ_d)·A[:, :in]
 *                                     (PEFT VeRA get_delta_weight; no alpha).
 *
 * Conv kernels are analysed as matrices: trailing kernel dims are flattened into the input side.
 */
import * as path from 'node:path';
import type { Adapter, StructuredModule } from './adapter';
import { kindOf, layerOf } from './adapter';
import { FormatError } from './errors';
import { matchPattern, readJsonFile, stripPeftPrefix, PEFT_CONFIG, PEFT_WEIGHTS } from './peft';
import { SafetensorsStore, TensorInfo, TensorStore } from './safetensors';

const LYCO_RE = /^(.+)\.(hada_w1_a|hada_w1_b|hada_w2_a|hada_w2_b|hada_t1|hada_t2|lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b|lokr_t2)(?:\.weight)?$/;

const ROLE: Record<string, string> = {
  hada_w1_a: 'w1a', hada_w1_b: 'w1b', hada_w2_a: 'w2a', hada_w2_b: 'w2b', hada_t1: 't1', hada_t2: 't2',
  lokr_w1: 'w1', lokr_w1_a: 'w1a', lokr_w1_b: 'w1b', lokr_w2: 'w2', lokr_w2_a: 'w2a', lokr_w2_b: 'w2b', lokr_t2: 't2',
};

/** True when a tensor name is a LyCORIS LoHa/LoKr key. */
export function isLycorisKey(name: string): boolean {
  return LYCO_RE.test(name);
}

const rows = (t: TensorInfo): number => t.shape[0] ?? 1;
const cols = (t: TensorInfo): number => t.shape.slice(1).reduce((a, b) => a * b, 1);

function scalar(store: TensorStore, t: TensorInfo, file: string): number {
  if (t.numel !== 1) throw new FormatError(file, `alpha tensor "${t.name}" has shape ${JSON.stringify(t.shape)}; expected a scalar`);
  const v = store.readF64(t.name)[0];
  if (!Number.isFinite(v)) throw new FormatError(file, `alpha tensor "${t.name}" is ${v}`);
  return v;
}

/**
 * Collects the LoHa / LoKr modules among `tensors` (kohya-style names). Returns the modules and the
 * names of the tensors they consumed (factors and their `.alpha`). A module missing a key is skipped
 * with a warning; factors whose shapes do not multiply are a FormatError naming the file and tensor.
 */
export function collectLycoris(file: string, store: TensorStore, tensors: TensorInfo[]): { modules: StructuredModule[]; consumed: Set<string>; warnings: string[] } {
  const groups = new Map<string, { type: 'loha' | 'lokr'; t: Record<string, TensorInfo> }>();
  for (const t of tensors) {
    const m = LYCO_RE.exec(t.name);
    if (!m) continue;
    const type = m[2].startsWith('hada') ? 'loha' : 'lokr';
    const g = groups.get(m[1]) ?? { type, t: {} };
    if (g.type !== type) throw new FormatError(file, `module "${m[1]}" mixes LoHa (hada_*) and LoKr (lokr_*) tensors`);
    g.t[ROLE[m[2]]] = t;
    groups.set(m[1], g);
  }
  const modules: StructuredModule[] = [];
  const consumed = new Set<string>();
  const warnings: string[] = [];
  for (const [raw, g] of groups) {
    const t = g.t;
    const alphaT = store.tensors.get(`${raw}.alpha`);
    const alpha = alphaT ? scalar(store, alphaT, file) : undefined;
    let out: number, inF: number, rank: number, scale: number, source: string;
    if (g.type === 'loha') {
      const missing = ['w1a', 'w1b', 'w2a', 'w2b'].find((r) => !t[r]);
      if (missing) { warnings.push(`LoHa module "${raw}" has no "${raw}.hada_${missing.slice(0, 2)}_${missing[2]}" tensor; skipped`); continue; }
      const r1 = rows(t.w1b), r2 = rows(t.w2b);
      if (cols(t.w1a) !== r1 || cols(t.w2a) !== r2) throw new FormatError(file, `LoHa module "${raw}": hada_w1_a ${JSON.stringify(t.w1a.shape)} / hada_w1_b ${JSON.stringify(t.w1b.shape)} or hada_w2_a / hada_w2_b ranks disagree`);
      out = rows(t.w1a); inF = cols(t.w1b);
      if (rows(t.w2a) !== out || cols(t.w2b) !== inF) throw new FormatError(file, `LoHa module "${raw}": (w1a·w1b) is ${out}×${inF} but (w2a·w2b) is ${rows(t.w2a)}×${cols(t.w2b)}`);
      rank = r1;
      scale = alpha !== undefined ? alpha / r1 : 1;
      source = alpha !== undefined ? `alpha/r = ${alpha}/${r1} (${alphaT!.name})` : 'alpha missing: scale 1';
    } else {
      const w1 = t.w1 ? [rows(t.w1), cols(t.w1)] : t.w1a && t.w1b ? [rows(t.w1a), cols(t.w1b)] : undefined;
      const w2 = t.w2 ? [rows(t.w2), cols(t.w2)] : t.w2a && t.w2b ? [rows(t.w2a), cols(t.w2b)] : undefined;
      if (!w1 || !w2) { warnings.push(`LoKr module "${raw}" has neither "${raw}.lokr_w${w1 ? 2 : 1}" nor "${raw}.lokr_w${w1 ? 2 : 1}_a"/"lokr_w${w1 ? 2 : 1}_b"; skipped`); continue; }
      if (!t.w1 && cols(t.w1a) !== rows(t.w1b)) throw new FormatError(file, `LoKr module "${raw}": lokr_w1_a ${JSON.stringify(t.w1a.shape)} and lokr_w1_b ${JSON.stringify(t.w1b.shape)} do not multiply`);
      if (!t.w2 && cols(t.w2a) !== rows(t.w2b)) throw new FormatError(file, `LoKr module "${raw}": lokr_w2_a ${JSON.stringify(t.w2a.shape)} and lokr_w2_b ${JSON.stringify(t.w2b.shape)} do not multiply`);
      out = w1[0] * w2[0]; inF = w1[1] * w2[1];
      let dim: number | undefined;
      if (!t.w1) dim = rows(t.w1b);
      if (!t.w2) dim = rows(t.w2b);
      rank = dim ?? Math.min(out, inF);
      scale = alpha !== undefined && dim !== undefined ? alpha / dim : 1;
      source = alpha !== undefined && dim !== undefined ? `alpha/dim = ${alpha}/${dim} (${alphaT!.name})` : dim === undefined ? 'both Kronecker factors full: scale 1' : 'alpha missing: scale 1';
    }
    for (const x of Object.values(t)) consumed.add(x.name);
    if (alphaT) consumed.add(alphaT.name);
    if (t.t1 || t.t2) warnings.push(`module "${raw}" uses a CP/Tucker core (${g.type === 'loha' ? 'hada_t1/hada_t2' : 'lokr_t2'}): listed, spectrum not analysed`);
    modules.push({ name: raw, layer: layerOf(raw), kind: kindOf(raw), type: g.type, tensors: t, outFeatures: out, inFeatures: inF, rank, alpha, scale, scaleSource: source });
  }
  return { modules, consumed, warnings };
}

/** True when an adapter_config.json describes a VeRA adapter. */
export function isVeraConfig(cfg: Record<string, unknown>): boolean {
  return typeof cfg.peft_type === 'string' && cfg.peft_type.toUpperCase() === 'VERA';
}

/**
 * Opens a PEFT VeRA adapter folder. Modules are `structured` (type 'vera'); `modules` is empty.
 * @throws FormatError when the shared projections were not saved (save_projection=False) or shapes disagree.
 */
export function openVeraAdapter(dir: string): Adapter {
  const cfg = readJsonFile(path.join(dir, PEFT_CONFIG));
  const file = path.join(dir, PEFT_WEIGHTS);
  const store = SafetensorsStore.openFile(file);
  try {
    const find = (re: RegExp) => [...store.tensors.values()].find((t) => re.test(t.name));
    const A = find(/(^|\.)vera_A(\.[A-Za-z0-9_-]+)?(\.weight)?$/);
    const B = find(/(^|\.)vera_B(\.[A-Za-z0-9_-]+)?(\.weight)?$/);
    if (!A || !B) throw new FormatError(file, 'VeRA adapter without the shared vera_A / vera_B projections (saved with save_projection=False: they are regenerated from projection_prng_key by PEFT and cannot be analysed here)');
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[0] !== B.shape[1]) throw new FormatError(file, `vera_A ${JSON.stringify(A.shape)} and vera_B ${JSON.stringify(B.shape)} are not [r, in] and [out, r]`);
    const r = A.shape[0];
    const parts = new Map<string, { b?: TensorInfo; d?: TensorInfo }>();
    for (const t of store.tensors.values()) {
      const m = /^(?:base_model\.model\.)?(.+)\.vera_lambda_(b|d)(?:\.[A-Za-z0-9_-]+)?(?:\.weight)?$/.exec(t.name);
      if (!m) continue;
      const e = parts.get(m[1]) ?? {};
      e[m[2] as 'b' | 'd'] = t;
      parts.set(m[1], e);
    }
    const structured: StructuredModule[] = [];
    const warnings: string[] = [...store.warnings];
    for (const [name, e] of parts) {
      if (!e.b || !e.d) { warnings.push(`VeRA module "${name}" lacks vera_lambda_${e.b ? 'd' : 'b'}; skipped`); continue; }
      if (e.d.numel !== r) throw new FormatError(file, `"${e.d.name}" has ${e.d.numel} entries; vera_A has rank ${r}`);
      const out = e.b.numel;
      if (out > B.shape[0]) throw new FormatError(file, `"${e.b.name}" has ${out} entries but vera_B has only ${B.shape[0]} rows`);
      structured.push({
        name, layer: layerOf(name), kind: kindOf(name), type: 'vera', tensors: { lambda_b: e.b, lambda_d: e.d, A, B },
        // in_features is not stored per module: PEFT slices vera_A[:, :in]; the config's largest in is used.
        outFeatures: out, inFeatures: A.shape[1], rank: r, scale: 1, scaleSource: 'VeRA: no alpha (λ_b, λ_d carry the scale)',
      });
    }
    if (structured.length === 0) throw new FormatError(file, 'VeRA adapter without vera_lambda_b / vera_lambda_d pairs');
    warnings.push('VeRA: per-module in_features are not stored in the adapter; every module is analysed with the full vera_A width (exact when all targets share one input size)');
    const tm = cfg.target_modules;
    return {
      format: 'peft', path: dir, weightsFile: file, name: path.basename(dir), config: cfg,
      summary: {
        rank: r, targetModules: Array.isArray(tm) ? tm.map(String) : typeof tm === 'string' ? [tm] : [], useRslora: false, useDora: false,
        fanInFanOut: cfg.fan_in_fan_out === true, baseModel: typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : undefined,
        peftType: 'VERA', hasRankPattern: false, hasAlphaPattern: false, modulesToSave: [],
      },
      modules: [], otherTensors: [], store, warnings, structured,
    };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** True when an adapter_config.json describes a PEFT LoHa or LoKr adapter. */
export function isPeftLycorisConfig(cfg: Record<string, unknown>): boolean {
  return typeof cfg.peft_type === 'string' && ['LOHA', 'LOKR'].includes(cfg.peft_type.toUpperCase());
}

/**
 * Opens a PEFT LoHa / LoKr adapter folder (peft_type LOHA / LOKR; same tensor shapes as LyCORIS, keys
 * `base_model.model.<m>.hada_w1_a`, …). PEFT's scale is alpha / r with r and alpha from the config
 * (rank_pattern / alpha_pattern per module; LoKr too, whatever its factors) — not ComfyUI's rule.
 */
export function openPeftLycorisAdapter(dir: string): Adapter {
  const cfg = readJsonFile(path.join(dir, PEFT_CONFIG));
  const file = path.join(dir, PEFT_WEIGHTS);
  const store = SafetensorsStore.openFile(file);
  try {
    const { modules, consumed, warnings } = collectLycoris(file, store, [...store.tensors.values()]);
    if (modules.length === 0) throw new FormatError(file, `${String(cfg.peft_type)} adapter without hada_* / lokr_* modules${warnings[0] ? ` (${warnings[0]})` : ''}`);
    const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    const r0 = num(cfg.r) ?? 8, a0 = num(cfg.alpha) ?? r0;
    for (const m of modules) {
      m.name = stripPeftPrefix(m.name);
      m.layer = layerOf(m.name);
      m.kind = kindOf(m.name);
      const rp = cfg.rank_pattern as Record<string, unknown> | undefined, ap = cfg.alpha_pattern as Record<string, unknown> | undefined;
      const rk = matchPattern(rp, m.name), ak = matchPattern(ap, m.name);
      const r = (rk && num(rp![rk])) || r0, alpha = (ak !== undefined ? num(ap![ak]) : undefined) ?? a0;
      m.alpha = alpha;
      m.scale = alpha / r;
      m.scaleSource = `alpha/r = ${alpha}/${r} (${String(cfg.peft_type).toUpperCase()} config${rk || ak ? ', pattern' : ''})`;
      if (m.type === 'loha') m.rank = r;
    }
    const tm = cfg.target_modules;
    return {
      format: 'peft', path: dir, weightsFile: file, name: path.basename(dir), config: cfg,
      summary: {
        rank: r0, alpha: a0, targetModules: Array.isArray(tm) ? tm.map(String) : typeof tm === 'string' ? [tm] : [], useRslora: false, useDora: false,
        fanInFanOut: false, baseModel: typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : undefined,
        peftType: String(cfg.peft_type).toUpperCase(), hasRankPattern: !!cfg.rank_pattern && Object.keys(cfg.rank_pattern as object).length > 0,
        hasAlphaPattern: !!cfg.alpha_pattern && Object.keys(cfg.alpha_pattern as object).length > 0, modulesToSave: [],
      },
      modules: [], otherTensors: [...store.tensors.values()].filter((t) => !consumed.has(t.name)), store, warnings: [...warnings, ...store.warnings], structured: modules,
    };
  } catch (e) {
    store.close();
    throw e;
  }
}
