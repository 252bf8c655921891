/**
 * GPU check of the training engine: the same LoRA training steps of the §5.3 tiny transformer on
 * the CPU and on the WebGPU execution provider; prints step times and the loss after N steps.
 */
import { Rng } from '../src/core/util/rng';
import { ModData, SEQ_LEN } from '../src/core/train/models';
import { Trainer } from '../src/core/train/trainer';

const B = 512, p = 113, steps = 30;

function batch(): ModData {
  const rng = new Rng(5);
  const tokens = new BigInt64Array(B * SEQ_LEN), labels = new BigInt64Array(B);
  for (let i = 0; i < B; i++) {
    const x = Math.floor(rng.uniform() * p), y = Math.floor(rng.uniform() * p);
    tokens.set([BigInt(x), BigInt(p + 2), BigInt(y), BigInt(p)], i * SEQ_LEN);
    labels[i] = BigInt(((x - y) % p + p) % p);
  }
  return { tokens, labels, n: B };
}

async function main(): Promise<void> {
  for (const provider of ['cpu', 'webgpu'] as const) {
    for (const mode of ['lora', 'balora'] as const) {
      const tr = await Trainer.create({
        model: { p, dModel: 128, depth: 2 }, mode, lr: 1e-3, batchSize: B, seed: 3, provider,
        lora: { targets: ['attn.value_matrix'], r: 16, alpha: 8 }, metricsEvery: 0,
      });
      const data = batch();
      const times: number[] = [];
      let loss = NaN;
      for (let i = 0; i < steps; i++) {
        const t = performance.now();
        loss = (await tr.trainStep(data)).loss;
        times.push(performance.now() - t);
      }
      await tr.dispose();
      const w = times.slice(5).sort((a, b) => a - b);
      console.log(`${provider.padEnd(6)} ${mode.padEnd(6)} used=${tr.provider.used}${tr.provider.reason ? ` (${tr.provider.reason.slice(0, 120)})` : ''} step median ${w[w.length >> 1].toFixed(2)} ms, loss after ${steps} steps ${loss.toFixed(6)}`);
    }
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
