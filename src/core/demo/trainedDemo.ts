/**
 * Trained demo adapters: LoRA and BaLoRA fine-tunes of the demo tiny-llama on the demo JSONL,
 * made by LoRA Lens's own training engine (onnxruntime), deterministic seeds. They make the demo
 * workspace show what real training does to factors (BaLoRA keeps BᵀB = AAᵀ; LoRA drifts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trainHfAdapter } from '../train/hfTrainer';

export const TRAINED_DEMO = { steps: 60, r: 4, alpha: 8, lr: 3e-3, seed: 7, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };

/** Trains `adapters/demo-trained-lora` and `adapters/demo-trained-balora` in a demo workspace. */
export async function addTrainedDemoAdapters(root: string, log: (s: string) => void = () => {}): Promise<string[]> {
  const out: string[] = [];
  for (const mode of ['lora', 'balora'] as const) {
    const outDir = path.join(root, 'adapters', `demo-trained-${mode}`);
    if (fs.existsSync(outDir)) {
      log(`${outDir} exists; kept (LoRA Lens never overwrites)`);
      continue;
    }
    const res = await trainHfAdapter({
      modelDir: path.join(root, 'tiny-llama'), data: path.join(root, 'data', 'train.jsonl'), outDir, mode,
      steps: TRAINED_DEMO.steps, r: TRAINED_DEMO.r, alpha: TRAINED_DEMO.alpha, lr: TRAINED_DEMO.lr, seed: TRAINED_DEMO.seed,
      targets: TRAINED_DEMO.targets, threads: 1, baseModelName: '../../tiny-llama',
    });
    log(`trained ${mode}: loss ${res.losses[0].toFixed(3)} → ${res.losses[res.losses.length - 1].toFixed(3)} in ${res.steps.length} steps`);
    out.push(outDir);
  }
  return out;
}
