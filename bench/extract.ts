/**
 * Benchmark: LoRA extraction from a full fine-tune, one Llama-3-8B-shaped decoder layer
 * (q/o 4096², k/v 1024×4096, gate/up 14336×4096, down 4096×14336; BF16 HF folders), rank 16.
 * LoRA Lens `extractLora` (randomized SVD on onnxruntime + residual check, tensor by tensor) vs
 * torch in the same run (torch.svd_lowrank(q = k + 8, niter = 2) per module, as extraction scripts
 * do), peak RSS of both, and per-module relative error agreement.
 *
 *   npx tsc -p tsconfig.json && node out/bench/extract.js      (BENCH_LAYERS=1, BENCH_RANK=16)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../src/core/engine/ort';
import { Rng } from '../src/core/demo/makeDemo';
import { matmul } from '../src/core/engine/products';
import { fromFloats } from '../src/core/formats/dtype';
import { writeSafetensorsStreaming } from '../src/core/formats/writer';
import { extractLora } from '../src/core/extract/extract';

const LAYERS = Number(process.env.BENCH_LAYERS ?? 1);
const RANK = Number(process.env.BENCH_RANK ?? 16);
const root = path.resolve(__dirname, '../..');
const dir = path.join(root, 'bench', 'out', `extract-pair-${LAYERS}`);

const SHAPES: [string, number, number][] = [
  ['self_attn.q_proj', 4096, 4096], ['self_attn.k_proj', 1024, 4096], ['self_attn.v_proj', 1024, 4096], ['self_attn.o_proj', 4096, 4096],
  ['mlp.gate_proj', 14336, 4096], ['mlp.up_proj', 14336, 4096], ['mlp.down_proj', 4096, 14336],
];

async function makePair(engine: Engine): Promise<void> {
  if (fs.existsSync(path.join(dir, 'tuned', 'model.safetensors'))) return;
  fs.mkdirSync(path.join(dir, 'base'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'tuned'), { recursive: true });
  const names: { name: string; m: number; n: number; seed: number }[] = [];
  for (let l = 0; l < LAYERS; l++) SHAPES.forEach(([s, m, n], i) => names.push({ name: `model.layers.${l}.${s}.weight`, m, n, seed: 100 * l + i }));
  const base = (t: { m: number; n: number; seed: number }) => Float32Array.from(new Rng(t.seed).normals(t.m * t.n, 0.02));
  // ΔW: rank-48 part with σ decaying like 0.9^i plus a dense 1e-4 noise floor (a fine-tune is not exactly low rank)
  const tuned = async (t: { m: number; n: number; seed: number }) => {
    const rng = new Rng(t.seed + 7);
    const q = 48;
    const U = Float32Array.from(rng.normals(t.m * q, 1 / Math.sqrt(t.m)));
    const V = Float32Array.from(rng.normals(q * t.n, 1 / Math.sqrt(t.n)));
    for (let j = 0; j < q; j++) for (let i = 0; i < t.m; i++) U[i * q + j] *= 0.5 * 0.9 ** j;
    const d = await matmul(engine, U, t.m, q, V, t.n);
    const w = base(t);
    const noise = rng.normals(w.length, 1e-4);
    for (let i = 0; i < w.length; i++) w[i] += d[i] + noise[i];
    return w;
  };
  const cfg = JSON.stringify({ model_type: 'llama', _name_or_path: 'synthetic-llama-8b-layer', hidden_size: 4096 });
  for (const [side, make] of [['base', async (t: { m: number; n: number; seed: number }) => base(t)], ['tuned', tuned]] as const) {
    await writeSafetensorsStreaming(path.join(dir, side, 'model.safetensors'), names.map((t) => ({
      name: t.name, dtype: 'BF16', shape: [t.m, t.n], byteLength: t.m * t.n * 2, produce: async () => fromFloats(await make(t), 'BF16'),
    })), {});
    fs.writeFileSync(path.join(dir, side, 'config.json'), cfg);
  }
}

async function main(): Promise<void> {
  const engine = new Engine({ provider: 'cpu' });
  const tg = Date.now();
  await makePair(engine);
  console.log(`pair ready in ${dir} (${((Date.now() - tg) / 1000).toFixed(1)} s; ${(fs.statSync(path.join(dir, 'tuned', 'model.safetensors')).size / 1e9).toFixed(2)} GB per model)`);
  const out = path.join(dir, `adapter-${Date.now()}`);
  const rss0 = process.resourceUsage().maxRSS;
  const t0 = process.hrtime.bigint();
  const r = await extractLora(engine, path.join(dir, 'base'), path.join(dir, 'tuned'), out, { rule: { kind: 'rank', k: RANK } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const rss = process.resourceUsage().maxRSS / 1024;
  await engine.dispose();
  fs.rmSync(out, { recursive: true, force: true });
  const py = spawnSync('/usr/bin/python3', [path.join(root, 'bench', 'extract_torch.py'), path.join(dir, 'base', 'model.safetensors'), path.join(dir, 'tuned', 'model.safetensors'), String(RANK)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (py.status !== 0) throw new Error(py.stderr);
  const peer = JSON.parse(py.stdout.trim().split('\n').pop()!);
  console.log(`LoRA Lens extract: ${(ms / 1000).toFixed(2)} s, ${r.modules.length} modules, peak RSS ${rss.toFixed(0)} MB (before: ${(rss0 / 1024).toFixed(0)} MB)`);
  console.log(`torch svd_lowrank: ${peer.seconds.toFixed(2)} s, peak RSS ${peer.maxrss_mb.toFixed(0)} MB (${peer.blas})`);
  console.log(`ratio LoRA Lens / torch: ${(ms / 1000 / peer.seconds).toFixed(2)}`);
  let worst = 0;
  for (const m of r.modules) {
    const p = peer.rel[m.name];
    worst = Math.max(worst, Math.abs(m.relError - p) / p);
    console.log(`  ${m.name.padEnd(36)} rel err ${m.relError.toExponential(4)}  torch ${p.toExponential(4)}  optimality ${m.optimality.toFixed(3)}  q=${m.powerIters}`);
  }
  console.log(`agreement: max |relErr − torch| / torch = ${worst.toExponential(2)}`);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
