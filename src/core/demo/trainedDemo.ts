/**
 * Trained demo adapters: LoRA and BaLoRA fine-tunes of the demo tiny-llama on the demo JSONL,
 * made by LoRA Lens's own training engine (onnxruntime), deterministic seeds. They make the demo
 * workspace show what real training does to factors (BaLoRA keeps BᵀB = AAᵀ; LoRA drifts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { trainHfAdapter } from '../train/hfTrainer';
import { LORA_TARGETS, modularData, type TinyTransformerConfig } from '../train/models';
import { Trainer } from '../train/trainer';

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

/** The papers.md §5.3 task at demo size (p = 23, d = 32, two shared attention layers). */
export const MODULAR_DEMO: { model: TinyTransformerConfig; pretrainSteps: number; loraSteps: number; r: number; alpha: number } = {
  model: { p: 23, dModel: 32, depth: 2 }, pretrainSteps: 400, loraSteps: 300, r: 4, alpha: 8,
};

/**
 * The seed paper's experiment (papers.md §5.3) made by LoRA Lens's ONNX training engine: a tiny
 * attention-only transformer pre-trained on (x + y) mod p (`modular/base`), then LoRA and BaLoRA
 * adapters fine-tuning it to (x − y) mod p (`modular/sub-lora`, `modular/sub-balora`).
 */
export async function addModularDemo(root: string, log: (s: string) => void = () => {}): Promise<string[]> {
  const dir = path.join(root, 'modular');
  if (fs.existsSync(dir)) {
    log(`${dir} exists; kept (LoRA Lens never overwrites)`);
    return [];
  }
  const c = MODULAR_DEMO;
  const add = modularData(c.model.p, '+', 1, 0).train;
  const full = await Trainer.create({ model: c.model, mode: 'full', lr: 1e-2, batchSize: add.n, seed: 0, threads: 1 });
  let params;
  try {
    let last = NaN;
    for (let i = 0; i < c.pretrainSteps; i++) last = (await full.trainStep(add)).loss;
    const acc = (await full.evaluate(add)).acc;
    log(`pre-trained modular addition base: loss ${last.toFixed(3)}, accuracy ${(100 * acc).toFixed(1)} %`);
    full.saveBase(path.join(dir, 'base'));
    params = full.parameters();
  } finally {
    await full.dispose();
  }
  const { train, test } = modularData(c.model.p, '-', 0.8, 1);
  const out = [path.join(dir, 'base')];
  for (const mode of ['lora', 'balora'] as const) {
    const tr = await Trainer.create({
      model: c.model, mode, base: params, lora: { targets: LORA_TARGETS, r: c.r, alpha: c.alpha }, lr: 1e-2, batchSize: train.n, seed: 1, threads: 1,
    });
    try {
      let last = NaN;
      for (let i = 0; i < c.loraSteps; i++) last = (await tr.trainStep(train)).loss;
      const ev = await tr.evaluate(test);
      log(`${mode} to modular subtraction: train loss ${last.toFixed(3)}, held-out accuracy ${(100 * ev.acc).toFixed(1)} %`);
      const outDir = path.join(dir, `sub-${mode}`);
      tr.saveAdapter(outDir, '../base');
      out.push(outDir);
    } finally {
      await tr.dispose();
    }
  }
  return out;
}
