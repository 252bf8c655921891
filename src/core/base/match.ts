/**
 * "Inputs that do not belong together are refused" (issue 8): checks that run BEFORE any compute,
 * shared by the CLI and the extension's worker jobs, each ending in ONE sentence that names what
 * does not match.
 *
 * - adapter vs base model: every module must find a base weight of the right shape (names, shapes
 *   via baseWeightFor, which also knows transposed Conv1D and fused QKV layouts); the adapter's
 *   base_model_name_or_path is compared with the base's config `_name_or_path` / folder name and
 *   quoted in the refusal. Some modules missing → refused unless `force` (then only the matching
 *   modules are analysed); none matching → always refused.
 * - two adapters to combine: made for different base models (both name one, and they differ) →
 *   refused unless `force`; no shared module AND different bases → always refused.
 * - two checkpoints to compare: no tensor of the same name and shape → refused.
 */
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { FormatError } from '../formats/errors';
import type { TensorStore } from '../formats/safetensors';
import { baseWeightFor, type BaseModel, type BaseWeightRef } from './basemodel';

/** Error for inputs that do not belong together; `forceable` says whether `--force` overrides it. */
export class MismatchError extends FormatError {
  constructor(file: string, problem: string, readonly forceable: boolean) {
    super(file, problem + (forceable ? ' (use --force to go on with what matches)' : ''));
    this.name = 'MismatchError';
  }
}

/** base_model_name_or_path of an adapter (undefined when it names none). */
export function adapterBaseId(adapter: Adapter): string | undefined {
  const id = adapter.summary?.baseModel ?? (typeof adapter.config?.base_model_name_or_path === 'string' ? (adapter.config.base_model_name_or_path as string) : undefined);
  return id && id.trim() ? id.trim() : undefined;
}

/** Comparable form of a model id / path: last path component, lower case, without revision suffixes. */
export function normaliseModelId(id: string): string {
  const s = id.replace(/[\\/]+$/, '');
  return (s.split(/[\\/]/).pop() ?? s).toLowerCase();
}

/** Names a base model could be known by: config `_name_or_path` and the folder name. */
function baseIds(base: BaseModel | TensorStore): string[] {
  const out: string[] = [];
  if ('store' in base) {
    const n = base.config._name_or_path;
    if (typeof n === 'string' && n.trim()) out.push(n.trim());
    out.push(path.basename(path.resolve(base.dir)));
  } else {
    // a weights file is usually named model*.safetensors: its folder names the model
    const p = path.resolve(base.path);
    out.push(path.basename(path.dirname(p)), path.basename(p).replace(/\.safetensors(\.index\.json)?$/, ''));
  }
  return out;
}

export interface BaseMatch {
  /** Modules with a base weight of the right shape. */
  matched: { module: LoraModule; ref: BaseWeightRef }[];
  /** Modules without one, with the reason (base tensor missing or shape). */
  unmatched: { module: LoraModule; reason: string }[];
  adapterBase?: string;
  /** True when the adapter names a base and none of the base's names resembles it. */
  idDiffers: boolean;
  warnings: string[];
}

function stripFile(msg: string, file: string): string {
  return msg.startsWith(file + ': ') ? msg.slice(file.length + 2) : msg;
}

/**
 * Checks names, shapes and base_model_name_or_path of `adapter` against `base`; throws a
 * MismatchError (one sentence) when nothing matches, or when some modules do not and `force` is
 * not set. Returns the matching modules (all of them unless forced) and warnings.
 */
export function checkAdapterBase(adapter: Adapter, base: BaseModel | TensorStore, opts: { force?: boolean; modules?: LoraModule[] } = {}): BaseMatch {
  const store = 'store' in base ? base.store : base;
  const where = 'store' in base ? base.dir : base.path;
  const mods = (opts.modules ?? adapter.modules).filter((m) => !m.conv);
  const matched: BaseMatch['matched'] = [];
  const unmatched: BaseMatch['unmatched'] = [];
  for (const m of mods) {
    try {
      matched.push({ module: m, ref: baseWeightFor(m, base) });
    } catch (e) {
      unmatched.push({ module: m, reason: stripFile((e as Error).message, store.path) });
    }
  }
  const adapterBase = adapterBaseId(adapter);
  const ids = baseIds(base);
  const idDiffers = !!adapterBase && !ids.some((b) => normaliseModelId(b) === normaliseModelId(adapterBase));
  const warnings: string[] = [];
  const claim = adapterBase ? ` (the adapter was made for "${adapterBase}"${idDiffers ? `, this base is "${ids[0]}"` : ''})` : '';
  if (mods.length > 0 && matched.length === 0) {
    const first = unmatched[0];
    throw new MismatchError(where, `does not match adapter ${adapter.name}${claim}: none of its ${mods.length} modules has a base weight of the right name and shape, e.g. ${first.reason}`, false);
  }
  if (unmatched.length > 0) {
    const first = unmatched[0];
    const msg = `matches only ${matched.length} of ${mods.length} modules of adapter ${adapter.name}${claim}; e.g. ${first.reason}`;
    if (!opts.force) throw new MismatchError(where, msg, true);
    warnings.push(`${where}: ${msg}; the other ${unmatched.length} are skipped (--force)`);
  }
  if (idDiffers && unmatched.length === 0) {
    warnings.push(`adapter ${adapter.name} names base "${adapterBase}" but ${where} looks like "${ids[0]}"; every module's name and shape matches, so it is analysed`);
  }
  return { matched, unmatched, adapterBase, idDiffers, warnings };
}

/**
 * Refuses to combine adapters made for different base models: both name a base and the names
 * differ (forceable), or additionally they share no module (always refused: the sum would be two
 * unrelated adapters glued together).
 */
export function checkCombinable(a1: Adapter, a2: Adapter, opts: { force?: boolean } = {}): string[] {
  const b1 = adapterBaseId(a1), b2 = adapterBaseId(a2);
  const n1 = new Set(a1.modules.map((m) => m.name));
  const shared = a2.modules.filter((m) => n1.has(m.name));
  const differ = !!b1 && !!b2 && normaliseModelId(b1) !== normaliseModelId(b2);
  if (differ && shared.length === 0) {
    throw new MismatchError(a2.path, `was made for base "${b2}" and ${a1.name} for "${b1}", and they share no module: combining them is meaningless`, false);
  }
  if (differ && !opts.force) {
    throw new MismatchError(a2.path, `was made for base "${b2}" but ${a1.name} for "${b1}"`, true);
  }
  if (shared.length === 0 && b1 === undefined && b2 === undefined) {
    return [`${a1.name} and ${a2.name} share no module and name no base model: the result is their union`];
  }
  return differ ? [`combining adapters made for "${b1}" and "${b2}" (--force)`] : [];
}

/**
 * Refuses to compare checkpoints that share no tensor of the same name and shape (unrelated
 * models); returns a warning when fewer than half of the smaller one's tensors are comparable.
 */
export function checkComparable(a: TensorStore, b: TensorStore): string[] {
  let same = 0, shapeDiff = 0;
  let example = '';
  for (const [n, ta] of a.tensors) {
    const tb = b.tensors.get(n);
    if (!tb) continue;
    if (ta.shape.join('x') === tb.shape.join('x')) same++;
    else {
      shapeDiff++;
      if (!example) example = `"${n}" is [${ta.shape.join(', ')}] vs [${tb.shape.join(', ')}]`;
    }
  }
  if (same === 0) {
    const why = shapeDiff > 0
      ? `their ${shapeDiff} tensors of the same name all differ in shape (e.g. ${example})`
      : `no tensor name is in both (e.g. "${a.tensors.keys().next().value ?? '-'}" vs "${b.tensors.keys().next().value ?? '-'}")`;
    throw new MismatchError(b.path, `is unrelated to ${a.path}: ${why}`, false);
  }
  const smaller = Math.min(a.tensors.size, b.tensors.size);
  return same < smaller / 2 ? [`only ${same} of ${smaller} tensors have the same name and shape in both checkpoints`] : [];
}
