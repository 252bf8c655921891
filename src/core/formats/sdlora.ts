/**
 * Single-file LoRA adapters recognised from their tensor names (no adapter_config.json):
 *
 *   kohya / LyCORIS   `<m>.lora_down.weight` [r,in(,kh,kw)], `<m>.lora_up.weight` [out,r(,1,1)],
 *                     `<m>.alpha` scalar; s = alpha / r (missing alpha: alpha = r, s = 1).
 *   diffusers (old)   `<path>.processor.to_q_lora.down.weight` / `.up.weight`,
 *                     text encoder `<path>.lora_linear_layer.down/up.weight`; s = 1 (or `<m>.alpha`/r).
 *   diffusers (new)   `unet.<path>.lora.down.weight` / `.lora.up.weight`, and PEFT-style
 *                     `<path>.lora_A.weight` / `.lora_B.weight` without a config; s = 1 unless an
 *                     alpha is recorded.
 *   cloneofsimo       `unet:<i>:down` / `unet:<i>:up` (also `text_encoder:`), ranks in metadata
 *                     `unet:<i>:rank`; s = 1 (the repo's inference default).
 *   torchtune         `<path>.lora_a.weight` [r,in] / `<path>.lora_b.weight` [out,r]; alpha is not
 *                     in the checkpoint: s = 1 with a warning.
 *
 * All flavours use the PEFT orientation (down/A = [r, in], up/B = [out, r]).
 */
import * as path from 'node:path';
import { Adapter, AdapterFormat, AdapterSummary, LoraModule } from './adapter';
import { FormatError } from './errors';
import { pairFactors, stripPeftPrefix } from './peft';
import { SafetensorsStore, TensorInfo, TensorStore } from './safetensors';
import { isZip, openTorchCheckpoint } from './torchzip';
import { RangeFile } from './fileio';
import { parseJsonText, shortJson } from './safejson';
import { collectLycoris, isLycorisKey } from './lycoris';

export interface LoraKeyParts { module: string; role: 'A' | 'B' | 'M' }

export type SdFlavour = 'kohya' | 'diffusers-old' | 'diffusers-new' | 'diffusers-peft' | 'cloneofsimo' | 'torchtune';

/** kohya-ss / LyCORIS LoRA: `<module>.lora_down.weight`, `.lora_up.weight`, DoRA `.dora_scale`. */
export function parseKohyaKey(key: string): LoraKeyParts | undefined {
  const m = /^(.+)\.lora_(down|up)\.weight$/.exec(key);
  if (m) return { module: m[1], role: m[2] === 'down' ? 'A' : 'B' };
  const d = /^(.+)\.dora_scale$/.exec(key);
  if (d) return { module: d[1], role: 'M' };
  return undefined;
}

/** diffusers attention-processor LoRA (≤ 0.20): `<path>.processor.to_q_lora.down.weight`. */
export function parseDiffusersOldKey(key: string): LoraKeyParts | undefined {
  const m = /^(.+)\.processor\.(to_q|to_k|to_v|to_out|add_q_proj|add_k_proj|add_v_proj|to_add_out)_lora\.(down|up)\.weight$/.exec(key);
  if (m) return { module: `${m[1]}.${m[2] === 'to_out' ? 'to_out.0' : m[2]}`, role: m[3] === 'down' ? 'A' : 'B' };
  const t = /^(.+)\.lora_linear_layer\.(down|up)\.weight$/.exec(key);
  if (t) return { module: t[1], role: t[2] === 'down' ? 'A' : 'B' };
  return undefined;
}

/** diffusers ≥ 0.21 LoRA: `<path>.lora.down.weight` / `.lora.up.weight`. */
export function parseDiffusersNewKey(key: string): LoraKeyParts | undefined {
  const m = /^(.+)\.lora\.(down|up)\.weight$/.exec(key);
  return m ? { module: m[1], role: m[2] === 'down' ? 'A' : 'B' } : undefined;
}

/** PEFT-style keys saved by diffusers without a config: `<path>.lora_A.weight` / `.lora_B.weight`. */
export function parseDiffusersPeftKey(key: string): LoraKeyParts | undefined {
  const m = /^(.+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/.exec(key);
  if (m) return { module: m[1], role: m[2] as 'A' | 'B' };
  const d = /^(.+)\.lora_magnitude_vector(?:\.[A-Za-z0-9_-]+)?(?:\.weight)?$/.exec(key);
  return d ? { module: d[1], role: 'M' } : undefined;
}

/** cloneofsimo/lora: `unet:<i>:down`, `unet:<i>:up`, `text_encoder:<i>:...`. */
export function parseCloneofsimoKey(key: string): LoraKeyParts | undefined {
  const m = /^([A-Za-z_]+):(\d+):(down|up)$/.exec(key);
  return m ? { module: `${m[1]}:${m[2]}`, role: m[3] === 'down' ? 'A' : 'B' } : undefined;
}

/** torchtune LoRALinear: `<path>.lora_a.weight` [r, in], `<path>.lora_b.weight` [out, r], DoRA `.magnitude`. */
export function parseTorchtuneKey(key: string): LoraKeyParts | undefined {
  const m = /^(.+)\.lora_(a|b)\.weight$/.exec(key);
  if (m) return { module: m[1], role: m[2] === 'a' ? 'A' : 'B' };
  const d = /^(.+)\.magnitude$/.exec(key);
  return d ? { module: d[1], role: 'M' } : undefined;
}

const PARSERS: Record<SdFlavour, (k: string) => LoraKeyParts | undefined> = {
  kohya: parseKohyaKey,
  'diffusers-old': parseDiffusersOldKey,
  'diffusers-new': parseDiffusersNewKey,
  'diffusers-peft': parseDiffusersPeftKey,
  cloneofsimo: parseCloneofsimoKey,
  torchtune: parseTorchtuneKey,
};

const FORMAT_OF: Record<SdFlavour, AdapterFormat> = {
  kohya: 'kohya', 'diffusers-old': 'diffusers', 'diffusers-new': 'diffusers', 'diffusers-peft': 'diffusers',
  cloneofsimo: 'cloneofsimo', torchtune: 'torchtune',
};

/** Picks the flavour whose parser recognises the most A/B factor tensors (undefined when none does). */
export function detectSdFlavour(names: Iterable<string>): SdFlavour | undefined {
  const counts = new Map<SdFlavour, number>();
  for (const n of names) {
    for (const f of Object.keys(PARSERS) as SdFlavour[]) {
      const p = PARSERS[f](n);
      if (p && p.role !== 'M') counts.set(f, (counts.get(f) ?? 0) + 1);
    }
  }
  let best: SdFlavour | undefined;
  for (const [f, c] of counts) if (best === undefined || c > counts.get(best)!) best = f;
  return best;
}

const KOHYA_KINDS = /(to_q|to_k|to_v|to_out_0|q_proj|k_proj|v_proj|out_proj|fc1|fc2|proj_in|proj_out|ff_net_0_proj|ff_net_2|conv1|conv2|conv_shortcut|time_emb_proj|conv|img_attn_qkv|img_attn_proj|txt_attn_qkv|txt_attn_proj|img_mlp_0|img_mlp_2|txt_mlp_0|txt_mlp_2|linear1|linear2|modulation_lin|q|k|v|o|wi_0|wi_1|wo)$/;

/** kohya names use `_` instead of `.`; derive a grouping kind and a layer index. */
function kohyaKindLayer(name: string): { kind: string; layer?: number } {
  const core = name.replace(/^lora_(unet|te\d?|transformer)_/, '');
  const k = KOHYA_KINDS.exec(core)?.[1] ?? core.split('_').slice(-1)[0];
  const l = /(?:^|_)(?:layers|blocks|block)_(\d+)/.exec(core);
  return { kind: k, layer: l ? Number(l[1]) : undefined };
}

function scalarValue(store: TensorStore, t: TensorInfo, file: string): number {
  if (t.numel !== 1) throw new FormatError(file, `alpha tensor "${t.name}" has shape ${JSON.stringify(t.shape)}; expected a scalar`);
  const v = store.readF64(t.name)[0];
  if (!Number.isFinite(v)) throw new FormatError(file, `alpha tensor "${t.name}" is ${v}`);
  return v;
}

const numOrUndef = (s: string | undefined): number | undefined => {
  if (s === undefined || s.trim() === '') return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : undefined;
};

/** Opens the tensors of a single LoRA file: safetensors, or a torch zip checkpoint (.bin/.pt/.pth/.ckpt). */
export function openLoraStore(file: string): TensorStore {
  const f = RangeFile.open(file);
  let zip = false;
  try {
    zip = isZip(f.read(0, Math.min(4, f.size)));
  } finally {
    f.close();
  }
  return zip || /\.(bin|pt|pth|ckpt)$/i.test(file) ? openTorchCheckpoint(file) : SafetensorsStore.openFile(file);
}

/** Builds an Adapter of the given flavour from an opened store (the store is owned by the result). */
export function adapterFromStore(file: string, store: TensorStore, flavour: SdFlavour): Adapter {
  const warnings: string[] = [];
  const md = store.metadata;
  const alphaTensor = (module: string): TensorInfo | undefined => store.tensors.get(`${module}.alpha`);
  let missingAlpha = 0;
  const rawOf = new Map<string, string>();
  const { modules, other, warnings: w } = pairFactors({
    file, store, keyParser: PARSERS[flavour], transposed: false,
    moduleName: (raw) => {
      const n = flavour === 'diffusers-peft' ? stripPeftPrefix(raw) : raw;
      rawOf.set(n, raw);
      return n;
    },
    scaleFor: (m, r) => {
      const at = alphaTensor(rawOf.get(m) ?? m);
      if (at) {
        const alpha = scalarValue(store, at, file);
        return { scale: alpha / r, alpha, source: `alpha/r = ${alpha}/${r} (${at.name})` };
      }
      missingAlpha++;
      if (flavour === 'kohya') return { scale: 1, alpha: r, source: `alpha missing: alpha = r = ${r} assumed (scale 1)` };
      if (flavour === 'cloneofsimo') return { scale: 1, source: 'cloneofsimo/lora scale 1 (inference default)' };
      return { scale: 1, source: 'no alpha recorded: scale 1 assumed' };
    },
    fanInFanOut: false,
  });
  warnings.push(...w, ...store.warnings);
  // LyCORIS LoHa / LoKr modules (hada_*, lokr_*) in kohya-style files: structured modules.
  const lycoMods = flavour === 'kohya' ? collectLycoris(file, store, other) : undefined;
  if (lycoMods) {
    warnings.push(...lycoMods.warnings);
    if (modules.length === 0 && lycoMods.modules.length === 0) w.unshift(...lycoMods.warnings);
    for (const m of lycoMods.modules) Object.assign(m, kohyaKindLayer(m.name));
  }
  if (missingAlpha > 0) {
    if (flavour === 'kohya') warnings.push(`${missingAlpha} module(s) have no alpha tensor: alpha = rank assumed (scale 1), as kohya does`);
    else if (flavour === 'diffusers-peft' || flavour === 'torchtune' || flavour === 'diffusers-new') {
      warnings.push(`no alpha recorded for ${missingAlpha} module(s): scale 1 assumed${flavour === 'torchtune' ? ' (torchtune keeps lora_alpha in the recipe config, not the checkpoint)' : ''}`);
    }
  }
  const alphaNames = new Set(modules.map((m) => `${rawOf.get(m.name) ?? m.name}.alpha`));
  const otherTensors = other.filter((t) => !alphaNames.has(t.name) && !lycoMods?.consumed.has(t.name));
  const orphanAlpha = otherTensors.filter((t) => t.name.endsWith('.alpha'));
  if (orphanAlpha.length) warnings.push(`${orphanAlpha.length} alpha tensor(s) belong to no LoRA pair, e.g. "${orphanAlpha[0].name}"`);
  const lyco = otherTensors.filter((t) => /\.(hada_|lokr_|lora_mid|diff$|diff_b$)/.test(t.name));
  if (lyco.length) warnings.push(`${lyco.length} LyCORIS tensors (LoHa/LoKr/LoCon-CP/full diffs, e.g. "${lyco[0].name}") are not analysed`);
  if (flavour === 'kohya') {
    for (const m of modules) Object.assign(m, kohyaKindLayer(m.name));
  } else {
    // `attn1.to_out.0` groups as `to_out.0`, not `0`.
    for (const m of modules) {
      const parts = m.name.split('.');
      if (/^\d+$/.test(m.kind) && parts.length > 1) m.kind = `${parts[parts.length - 2]}.${m.kind}`;
    }
  }
  if (flavour === 'cloneofsimo') {
    for (const m of modules) {
      const r = numOrUndef(md[`${m.name}:rank`]);
      if (r !== undefined && r !== m.rank) warnings.push(`module "${m.name}": metadata rank ${r} but the factors have rank ${m.rank}`);
      m.layer = Number(m.name.split(':')[1]);
      m.kind = m.name.split(':')[0];
    }
    const ti = otherTensors.filter((t) => md[t.name] === '<embed>');
    if (ti.length) warnings.push(`also holds ${ti.length} textual-inversion embedding(s): ${ti.map((t) => t.name).join(', ')}`);
  }
  if (modules.length === 0 && !lycoMods?.modules.length) {
    throw new FormatError(file, `no complete LoRA factor pairs (${flavour} naming recognised, but every module lacks one half): ${w[0] ?? ''}`);
  }
  const summary = sdSummary(md, modules, flavour);
  if (lycoMods?.modules.length) {
    summary.targetModules = [...new Set([...summary.targetModules, ...lycoMods.modules.map((m) => m.kind)])];
    if (!md.ss_network_module) summary.peftType = `LyCORIS ${[...new Set(lycoMods.modules.map((m) => (m.type === 'loha' ? 'LoHa' : 'LoKr')))].join('/')}${modules.length ? ' + LoRA' : ''}`;
    if (summary.rank === undefined && modules.length === 0) {
      const rs = new Set(lycoMods.modules.map((m) => m.rank));
      if (rs.size === 1) summary.rank = [...rs][0];
    }
  }
  return {
    format: FORMAT_OF[flavour], path: file, weightsFile: file, name: path.basename(file),
    summary, modules, otherTensors, store, warnings, ...(lycoMods?.modules.length ? { structured: lycoMods.modules } : {}),
  };
}

/** AdapterSummary from kohya `ss_*` / SAI `modelspec.*` metadata and the modules found. */
export function sdSummary(md: Record<string, string>, modules: LoraModule[], flavour: SdFlavour): AdapterSummary {
  const ranks = new Set(modules.map((m) => m.rank));
  const alphas = new Set(modules.map((m) => m.alpha));
  let targets = [...new Set(modules.map((m) => m.kind))];
  if (flavour === 'cloneofsimo') {
    const t: string[] = [];
    for (const k of ['unet', 'text_encoder']) {
      // Hostile metadata: any JSON (capped depth), any element type; never call an element's toString.
      try {
        const v = parseJsonText(md[k] ?? '[]', 'metadata', k);
        if (Array.isArray(v)) for (const x of v.slice(0, 10_000)) t.push(`${k}:${typeof x === 'object' && x !== null ? shortJson(x, 40) : String(x)}`);
      } catch { /* not JSON */ }
    }
    if (t.length) targets = t;
  }
  const arch = md['modelspec.architecture'];
  return {
    rank: numOrUndef(md.ss_network_dim) ?? (ranks.size === 1 ? [...ranks][0] : undefined),
    alpha: numOrUndef(md.ss_network_alpha) ?? (alphas.size === 1 ? [...alphas][0] : undefined),
    targetModules: targets,
    useRslora: false,
    useDora: modules.some((m) => m.magnitude !== undefined),
    fanInFanOut: false,
    baseModel: md.ss_base_model_version ?? arch ?? md.ss_sd_model_name,
    peftType: md.ss_network_module ?? (flavour === 'kohya' ? 'kohya LoRA' : `${flavour} LoRA`),
    taskType: arch,
    hasRankPattern: false,
    hasAlphaPattern: false,
    modulesToSave: [],
  };
}

/**
 * Opens a single-file LoRA (kohya/LyCORIS, diffusers old/new/PEFT-style, cloneofsimo, torchtune),
 * detecting the flavour from tensor names.
 * @throws FormatError when no flavour's A/B naming is found, naming a few of the tensors.
 */
export function openLoraFile(file: string): Adapter {
  const store = openLoraStore(file);
  try {
    const names = [...store.tensors.keys()];
    const flavour = detectSdFlavour(names) ?? (names.some(isLycorisKey) ? 'kohya' : undefined);
    if (!flavour) {
      const eg = names.slice(0, 3).map((n) => `"${n}"`).join(', ');
      if (names.length > 0 && names.every((n) => /^w_[ab]_\d+$/.test(n))) {
        const a = names.filter((n) => n.startsWith('w_a_')).length;
        throw new FormatError(file, `looks like a LoRA-ViT file (w_a_NNN / w_b_NNN) but holds ${a} w_a and ${names.length - a} w_b tensors with no matching pairs: the other halves are missing, so no LoRA can be formed (found e.g. ${eg})`);
      }
      throw new FormatError(file, `no LoRA factor pairs recognised (found e.g. ${eg || 'no tensors'}; ${names.length} tensors)`);
    }
    return adapterFromStore(file, store, flavour);
  } catch (e) {
    store.close();
    throw e;
  }
}
