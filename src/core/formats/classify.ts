/**
 * Is a single weights file a LoRA adapter? One classification used by the tree, hovers and pickers
 * (through the `inspect.*` worker jobs): adapter folders are recognised by adapter_config.json, but
 * single-file LoRAs — kohya, diffusers, cloneofsimo, torchtune, LyCORIS, a GGUF LoRA, PEFT keys
 * without a config, our own converted files — only by their tensor names (or GGUF `general.type`).
 */
import { isLycorisKey } from './lycoris';
import { parsePeftKey } from './peft';

/** kohya `.lora_down.weight`, diffusers `.lora.down.weight` / `to_k_lora.up.weight` / `.lora_linear_layer.up.weight`, torchtune `.lora_a.weight`, cloneofsimo `unet:3:down`. */
const SD_FACTOR = /(?:[._]lora[._](?:down|up)\.weight|_lora\.(?:down|up)\.weight|\.lora_linear_layer\.(?:down|up)\.weight|\.lora_[ab]\.weight|^[A-Za-z_]+:\d+:(?:down|up))$/;

/** The adapter evidence in a file's header: a GGUF adapter type, or a share of LoRA factor names. */
export function isAdapterFile(tensorNames: readonly string[], metadata: Readonly<Record<string, string>>): boolean {
  const gtype = metadata['general.type'];
  if (gtype !== undefined) return gtype === 'adapter';
  if (tensorNames.length === 0) return false;
  let factors = 0;
  for (const n of tensorNames) if (parsePeftKey(n) || isLycorisKey(n) || SD_FACTOR.test(n)) factors++;
  // Factors (plus kohya's alpha scalars) make up most of an adapter; a full model has none.
  return factors >= 2 && factors * 4 >= tensorNames.length;
}
