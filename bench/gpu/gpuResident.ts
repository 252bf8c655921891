/**
 * GPU check with device-resident tensors (run by bench/gpu/run.sh on a machine with a GPU; also
 * runs on the CPU provider alone). For each provider: a 4096² fp32 weight uploaded ONCE
 * (ResidentMatrix) and multiplied by 4096×16 blocks (only the 4096×16 result downloaded), the same
 * product with the weight uploaded on every call (the old path), and 200 Adam steps of a 4096×1024
 * least-squares problem with parameters and moments kept on the device (only the loss downloaded).
 * Prints provider used, fallback reason, medians and agreement with the CPU provider.
 */
import { Engine, ExecutionProvider, availableProviders } from '../../src/core/engine/ort';
import { matmul } from '../../src/core/engine/products';
import { ResidentAdamLsq, ResidentMatrix } from '../../src/core/engine/resident';

async function median(f: () => Promise<unknown>, n = 7): Promise<number> {
  await f();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) { const t = performance.now(); await f(); ts.push(performance.now() - t); }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(n / 2)];
}

async function main(): Promise<void> {
  console.log('bundled providers:', JSON.stringify(availableProviders()));
  const m = 4096, n = 4096, k = 16;
  const W = new Float32Array(m * n).map((_, i) => Math.sin(i * 0.37) * 0.01);
  const X = new Float32Array(n * k).map((_, i) => Math.cos(i * 0.11));
  const r = 4096, c = 1024, kk = 8;
  const A = new Float32Array(r * c).map((_, i) => (((i * 2654435761) % 1000003) / 1000003 - 0.5) / 16);
  const Y = new Float32Array(r * kk).map((_, i) => Math.cos(i * 0.29));
  const out: Record<string, { mm: Float32Array; loss: number[] }> = {};
  const providers = (process.env.PROVIDERS ?? 'cpu,webgpu,cuda').split(',') as ExecutionProvider[];
  for (const p of providers) {
    const e = new Engine({ provider: p });
    try {
      const R = await ResidentMatrix.upload(e, W, m, n);
      let mm: Float32Array = new Float32Array(0);
      const resident = await median(async () => { mm = await R.times(X, k); });
      const upload = await median(() => matmul(e, W, m, n, X, k));
      const opt = await ResidentAdamLsq.create(e, A, Y, r, c, kk, 1e-3);
      const loss: number[] = [];
      const t0 = performance.now();
      for (let s = 0; s < 200; s++) loss.push(await opt.step());
      const stepMs = (performance.now() - t0) / 200;
      out[p] = { mm, loss };
      console.log(`${p}: provider used ${e.provider}${e.fallbackReason ? ` (fallback: ${e.fallbackReason})` : ''}; weight location ${R.location}; ` +
        `4096²·4096×16 f32 resident ${resident.toFixed(2)} ms, uploaded per call ${upload.toFixed(2)} ms; resident Adam step (4096×1024, k=8) ${stepMs.toFixed(2)} ms, loss ${loss[0].toExponential(4)} → ${loss[199].toExponential(4)}`);
      R.dispose();
    } catch (err) {
      console.log(`${p}: failed: ${(err as Error).message.split('\n')[0]}`);
    } finally {
      await e.dispose();
    }
  }
  const cpu = out.cpu;
  for (const p of Object.keys(out)) {
    if (p === 'cpu' || !cpu) continue;
    let d = 0, s = 0;
    for (let i = 0; i < cpu.mm.length; i++) { d = Math.max(d, Math.abs(out[p].mm[i] - cpu.mm[i])); s = Math.max(s, Math.abs(cpu.mm[i])); }
    const dl = Math.abs(out[p].loss[199] - cpu.loss[199]) / cpu.loss[199];
    console.log(`${p} vs cpu: product max rel diff ${(d / s).toExponential(2)}; loss after 200 steps rel diff ${dl.toExponential(2)}`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
