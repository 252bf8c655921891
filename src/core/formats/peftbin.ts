/**
 * Legacy PEFT folders whose weights are `adapter_model.bin` (torch.save zip, read by the restricted
 * pickle reader in torchzip.ts). openPeftAdapter handles both weight files; this names the case.
 */
import * as path from 'node:path';
import type { Adapter } from './adapter';
import { openPeftAdapter, PEFT_LEGACY_WEIGHTS } from './peft';

/** Opens a PEFT LoRA folder with adapter_config.json + adapter_model.bin (or the given weights file). */
export function openPeftBinAdapter(dir: string, weights?: string): Adapter {
  return openPeftAdapter(dir, weights ?? path.join(dir, PEFT_LEGACY_WEIGHTS));
}
