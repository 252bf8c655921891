/**
 * The adapter_config.json that LoRA Lens writes for a PEFT LoRA adapter: exactly the fields of PEFT's
 * `LoraConfig` as `save_pretrained` writes them in PEFT 0.10.0 (PeftConfigMixin/PeftConfig fields
 * peft_type, auto_mapping, base_model_name_or_path, revision, task_type, inference_mode, then
 * LoraConfig's r … layer_replication; src/peft/config.py and src/peft/tuners/lora/config.py at tag
 * v0.10.0), in that order and with those JSON types.
 *
 * Why 0.10.0: it is the oldest release with every option LoRA Lens writes (use_rslora, rank_pattern,
 * alpha_pattern, use_dora). PEFT < 0.14 rejects unknown keys (TypeError in LoraConfig(**kwargs)) and
 * every release fills missing keys with defaults, so this key set loads in every PEFT ≥ 0.10 without
 * a warning, where a newer release's key set would fail in older ones.
 *
 * Keys of newer PEFT releases that an input config carries (LoRA Lens copies the source config when it
 * converts or edits a PEFT adapter) are dropped when they hold their PEFT default (null, false, [], {},
 * or the documented default, e.g. qalora_group_size 16), since they then mean nothing; any other value is
 * kept, because dropping it would change what the adapter means (such a config needs the newer PEFT).
 * Keys that no PEFT release defines (other tools' additions) are dropped: PEFT ignores them at best.
 */

export const PEFT_CONFIG_VERSION = '0.10.0';

/** PEFT 0.10.0 LoraConfig.to_dict() keys in dataclass order, with the default save_pretrained writes. */
export const PEFT_LORA_DEFAULTS: ReadonlyArray<readonly [string, unknown]> = [
  ['peft_type', 'LORA'],
  ['auto_mapping', null],
  ['base_model_name_or_path', null],
  ['revision', null],
  ['task_type', null],
  ['inference_mode', true], // save_pretrained sets inference_mode = True in the saved copy
  ['r', 8],
  ['target_modules', null],
  ['lora_alpha', 8],
  ['lora_dropout', 0],
  ['fan_in_fan_out', false],
  ['bias', 'none'],
  ['use_rslora', false],
  ['modules_to_save', null],
  ['init_lora_weights', true],
  ['layers_to_transform', null],
  ['layers_pattern', null],
  ['rank_pattern', {}],
  ['alpha_pattern', {}],
  ['megatron_config', null],
  ['megatron_core', 'megatron.core'],
  ['loftq_config', {}],
  ['use_dora', false],
  ['layer_replication', null],
];

/** Defaults of LoraConfig/PeftConfig fields added after 0.10.0 (dropped when an input holds them). */
const LATER_DEFAULTS: Record<string, unknown> = {
  exclude_modules: null, lora_bias: false, eva_config: null, corda_config: null, use_qalora: false, qalora_group_size: 16,
  trainable_token_indices: null, target_parameters: null, alora_invocation_tokens: null, lora_ga_config: null, velora_config: null,
  monteclora_config: null, use_bdlora: null, arrow_config: null, ensure_weight_tying: false, peft_version: null, runtime_config: null,
};

const isEmpty = (v: unknown): boolean =>
  v === null || v === undefined || v === false || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);

/**
 * PEFT-shaped adapter_config.json object from `input` (a copied source config and/or the fields LoRA
 * Lens sets): every PEFT 0.10.0 LoraConfig key in order (input value or PEFT default), target_modules
 * as a list, later-release keys only when they carry a non-default value, other keys dropped.
 * @throws when r is not a positive integer or lora_alpha not a finite number.
 */
export function peftLoraConfig(input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, d] of PEFT_LORA_DEFAULTS) out[k] = input[k] === undefined ? structuredClone(d) : input[k];
  out.peft_type = 'LORA';
  if (out.target_modules instanceof Set) out.target_modules = [...out.target_modules];
  if (!Number.isInteger(out.r) || (out.r as number) <= 0) throw new Error(`adapter_config.json: r must be a positive integer, got ${JSON.stringify(out.r)}`);
  if (typeof out.lora_alpha !== 'number' || !Number.isFinite(out.lora_alpha)) throw new Error(`adapter_config.json: lora_alpha must be a finite number, got ${JSON.stringify(out.lora_alpha)}`);
  for (const k of ['rank_pattern', 'alpha_pattern', 'loftq_config']) if (out[k] === null) out[k] = {};
  for (const [k, v] of Object.entries(input)) {
    if (k in out || !(k in LATER_DEFAULTS) || isEmpty(v) || JSON.stringify(v) === JSON.stringify(LATER_DEFAULTS[k])) continue;
    out[k] = v;
  }
  return out;
}
