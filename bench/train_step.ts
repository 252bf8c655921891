/**
 * One training step (forward + backward + AdamW in one session.run) of the papers.md §5.3 tiny
 * transformer on onnxruntime-node vs the same step in torch CPU (bench/train_step_torch.py, run in
 * the same invocation with the same thread count). Prints medians and the ratio ORT/torch.
 *
 *   npx tsc -p tsconfig.json && node out/bench/train_step.js [batch=512] [depth=2] [d=128] [steps=40] [threads=2]
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Trainer, TrainMode } from '../src/core/train/trainer';
import { ModData, SEQ_LEN } from '../src/core/train/models';
import { Rng } from '../src/core/util/rng';

const [B, depth, d, steps, threads] = [512, 2, 128, 40, 2].map((def, i) => Number(process.argv[2 + i] ?? def));
const p = 113;

function randomBatch(): ModData {
  const rng = new Rng(5);
  const tokens = new BigInt64Array(B * SEQ_LEN), labels = new BigInt64Array(B);
  for (let i = 0; i < B; i++) {
    const x = Math.floor(rng.uniform() * p), y = Math.floor(rng.uniform() * p);
    tokens.set([BigInt(x), BigInt(p + 1), BigInt(y), BigInt(p)], i * SEQ_LEN);
    labels[i] = BigInt((x + y) % p);
  }
  return { tokens, labels, n: B };
}

async function ortMedian(mode: TrainMode): Promise<{ ms: number; provider: string }> {
  const tr = await Trainer.create({
    model: { p, dModel: d, depth }, mode, lr: 1e-3, batchSize: B, threads, adam: { beta2: 0.98, weightDecay: mode === 'full' ? 1 : 0 },
    lora: mode === 'full' ? undefined : { targets: ['attn.value_matrix'], r: 16, alpha: 8 }, metricsEvery: 0,
  });
  const data = randomBatch();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await tr.trainStep(data);
    times.push(performance.now() - t0);
  }
  await tr.dispose();
  const w = times.slice(5).sort((a, b) => a - b);
  return { ms: w[w.length >> 1], provider: tr.provider.used };
}

async function main(): Promise<void> {
  const ort: Record<string, { ms: number; provider: string }> = {};
  for (const m of ['full', 'lora', 'balora'] as TrainMode[]) ort[m] = await ortMedian(m);
  const script = path.resolve(__dirname, '../../bench/train_step_torch.py');
  const out = execFileSync('/usr/bin/python3', [script, String(B), String(depth), String(d), String(steps), String(threads)], { encoding: 'utf8' });
  const torch: Record<string, number> = {};
  for (const line of out.trim().split('\n')) {
    const j = JSON.parse(line) as { mode: string; ms_median: number };
    torch[j.mode] = j.ms_median;
  }
  console.log(`batch ${B}, depth ${depth}, d_model ${d}, threads ${threads}, ${steps} steps (median after 5 warm-up)`);
  for (const m of ['full', 'lora', 'balora']) {
    const t = torch[m === 'balora' ? 'lora' : m];
    console.log(`${m.padEnd(7)} ORT(${ort[m].provider}) ${ort[m].ms.toFixed(2)} ms   torch ${t.toFixed(2)} ms${m === 'balora' ? ' (lora, no projection)' : ''}   ratio ORT/torch ${(ort[m].ms / t).toFixed(2)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
