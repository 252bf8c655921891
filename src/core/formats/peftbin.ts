/**
 * Legacy PEFT folders whose weights are `adapter_model.bin` (torch.save zip, read by the restricted
 * pickle reader in torchzip.ts). Scaling and pairing are exactly those of peft.ts.
 */
import * as path from 'node:path';
import { Adapter } from './adapter';
import { FormatError } from './errors';
import {
  pairFactors, parsePeftKey, PEFT_CONFIG, PEFT_LEGACY_WEIGHTS, peftScale, peftSummary, readJsonFile, stripPeftPrefix,
} from './peft';
import { openTorchCheckpoint } from './torchzip';

/** Opens a PEFT LoRA folder with adapter_config.json + adapter_model.bin (or the given weights file). */
export function openPeftBinAdapter(dir: string, weights?: string): Adapter {
  const cfgPath = path.join(dir, PEFT_CONFIG);
  const cfg = readJsonFile(cfgPath);
  const warnings: string[] = [];
  const peftType = cfg.peft_type;
  if (typeof peftType === 'string' && peftType !== 'LORA' && peftType !== 'ADALORA') {
    throw new FormatError(cfgPath, `peft_type is ${peftType}; LoRA Lens analyses LoRA adapters (LORA)`);
  }
  if (cfg.lora_alpha === undefined) warnings.push(`${PEFT_CONFIG} has no lora_alpha: PEFT's default 8 is assumed`);
  const wfile = weights ?? path.join(dir, PEFT_LEGACY_WEIGHTS);
  const store = openTorchCheckpoint(wfile);
  try {
    const { modules, other, warnings: w } = pairFactors({
      file: wfile, store, keyParser: parsePeftKey, transposed: false,
      moduleName: stripPeftPrefix,
      scaleFor: (m, r) => peftScale(cfg, m, r, warnings),
      fanInFanOut: cfg.fan_in_fan_out === true,
    });
    warnings.push(...w, ...store.warnings);
    if (store.locations.some((l) => l !== 'cpu')) warnings.push(`storages were saved on ${store.locations.join(', ')}; read on the CPU`);
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
