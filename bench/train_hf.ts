/**
 * Benchmark / demo (issue 4 item 3b): LoRA and BaLoRA fine-tuning of the demo tiny Llama on the demo
 * JSONL (src/core/demo/tokenizer.ts) with onnxruntime-node, saving PEFT adapters.
 *
 *   npx tsc -p tsconfig.json && node out/bench/train_hf.js [steps=200] [provider=cpu]
 *
 * Prints the loss curve (every 10% of the run), mean ms/step (excluding the first, graph-building
 * step) and the final balance gap for each mode.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeTinyLlama } from '../src/core/demo/makeDemo';
import { writeDemoTokenizerAndData } from '../src/core/demo/tokenizer';
import { trainHfAdapter } from '../src/core/train/hfTrainer';
import { LLAMA_TARGETS } from '../src/core/train/hf';
import type { ExecutionProvider } from '../src/core/engine/ort';

async function main(): Promise<void> {
  const steps = Number(process.argv[2] ?? 200);
  const provider = (process.argv[3] ?? 'cpu') as ExecutionProvider;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-bench-hf-'));
  const model = path.join(root, 'tiny-llama'), data = path.join(root, 'data', 'train.jsonl');
  writeTinyLlama(model);
  writeDemoTokenizerAndData(model, data);
  for (const mode of ['lora', 'balora'] as const) {
    const t0 = performance.now();
    const res = await trainHfAdapter({
      modelDir: model, data, targets: LLAMA_TARGETS, r: 8, alpha: 16, mode, lr: 5e-3, steps, batchSize: 8, seqLen: 64, provider,
      outDir: path.join(root, 'adapters', mode), metricsEvery: 10, threads: 4,
    });
    const wall = performance.now() - t0;
    const ms = res.steps.slice(1).reduce((s, x) => s + x.ms, 0) / Math.max(1, res.steps.length - 1);
    const every = Math.max(1, Math.floor(steps / 10));
    const curve = res.losses.filter((_, i) => i % every === 0 || i === res.losses.length - 1).map((l) => l.toFixed(3)).join(' ');
    const last = [...res.steps].reverse().find((s) => s.balanceGap !== undefined);
    console.log(`${mode}: ${res.sequences} sequences × 64, batch 8, r 8, 7 targets × 2 layers, ${res.provider.used}`);
    console.log(`  loss: ${curve}`);
    console.log(`  ${ms.toFixed(1)} ms/step, total ${(wall / 1000).toFixed(1)} s, balance gap ${last?.balanceGap?.toExponential(2)}, adapter ${res.adapterDir}`);
  }
  fs.rmSync(root, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
