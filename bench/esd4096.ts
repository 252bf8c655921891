/**
 * Benchmark: full spectrum (all singular values) of one 4096² fp32 tensor — the input of the ESD /
 * WeightWatcher-style metrics — by LoRA Lens `fullSpectrum` (fp64 Gram in ORT, two-stage
 * tridiagonalisation: band form in ORT + bulge chasing in TS, QL values) against
 * torch.linalg.svdvals (fp32, 2 threads) in the same run; accuracy of both against numpy's float64
 * SVD. The peer starts without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE / OPENBLAS_NUM_THREADS.
 *
 *   npx tsc -p tsconfig.json && node out/bench/esd4096.js    (BENCH_N=4096, REPS=2)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../src/core/engine/ort';
import { Rng } from '../src/core/demo/makeDemo';
import { fullSpectrum } from '../src/core/base/rsvd';
import { twoStageProfile } from '../src/core/base/twostage';
import { peerEnv } from './peerEnv';

const N = Number(process.env.BENCH_N ?? 4096);
const REPS = Number(process.env.REPS ?? 2);
const root = path.resolve(__dirname, '../..');
const now = (): number => Number(process.hrtime.bigint()) / 1e9;

async function main(): Promise<void> {
  const m = N, n = N;
  const rng = new Rng(2024);
  // heavy-tailed-ish spectrum like a trained layer: N(0,1)/√n bulk + a few strong directions
  const W = new Float32Array(m * n);
  for (let i = 0; i < W.length; i++) W[i] = rng.normal() / Math.sqrt(n);
  for (const sg of [8, 6, 4, 3, 2.5]) {
    const u = Array.from({ length: m }, () => rng.normal() / Math.sqrt(m)), v = Array.from({ length: n }, () => rng.normal() / Math.sqrt(n));
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) W[i * n + j] += sg * u[i] * v[j];
  }
  const engine = new Engine({ provider: 'cpu' });
  await fullSpectrum(engine, W.subarray(0, 300 * 300), 300, 300); // warm-up (sessions, JIT)
  const times: number[] = [];
  let s: Float64Array = new Float64Array(0);
  const profs: string[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = now();
    s = await fullSpectrum(engine, W, m, n, { force: true });
    times.push(now() - t0);
    profs.push(`band ${twoStageProfile.band.toFixed(2)} (ORT ${twoStageProfile.bandOrt.toFixed(2)}), chase ${twoStageProfile.chase.toFixed(2)}`);
  }
  await engine.dispose();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'esd4096-'));
  try {
    fs.writeFileSync(path.join(tmp, 'W.f32'), Buffer.from(W.buffer));
    fs.writeFileSync(path.join(tmp, 'ours.f64'), Buffer.from(s.buffer));
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify({ m, n }));
    const py = spawnSync('/usr/bin/python3', [path.join(root, 'bench/svdvals_torch.py'), tmp], { encoding: 'utf8', env: { ...peerEnv(), REPS: String(REPS) }, maxBuffer: 1 << 24 });
    if (py.status !== 0) throw new Error(`torch script failed: ${py.stderr}`);
    const tr = JSON.parse(py.stdout.trim().split('\n').pop()!);
    const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    console.log([
      `full spectrum of one ${m}×${n} fp32 tensor (${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(2)})`,
      `LoRA Lens fullSpectrum: ${times.map((t) => t.toFixed(2)).join(' / ')} s  [${profs.join('; ')}]`,
      `torch ${tr.torch} svdvals f32: ${tr.times.map((t: number) => t.toFixed(2)).join(' / ')} s   (numpy f64 reference svd ${tr.numpyF64.toFixed(1)} s)`,
      `peer BLAS: ${tr.blas}`,
      `accuracy vs numpy f64 (σ₁ = ${tr.sigmaMax.toFixed(3)}, σ_min = ${tr.sigmaMin.toExponential(2)}): max|Δσ|/σ₁ ours ${tr.oursErr.toExponential(2)}, torch f32 ${tr.torchErr.toExponential(2)}; |Δσ_min|/σ_min ours ${tr.oursErrMin.toExponential(2)}, torch ${tr.torchErrMin.toExponential(2)}`,
      `ratio ours / torch (medians): ${(med(times) / med(tr.times)).toFixed(2)}`,
    ].join('\n'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
