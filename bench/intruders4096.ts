/**
 * Benchmark: EXACT intruder dimensions of one 4096² module (rank-16 LoRA with a planted intruder)
 * by LoRA Lens 'exact-large' (tridiag.ts: ORT fp64 Gram + two-stage tridiagonalisation + QL on
 * k vectors; W_tuned's top-k by Lanczos on T + low rank), cold and with the base decomposition
 * cached on disk, vs the paper's torch CPU route (full torch.linalg.svd of W0 and W_tuned, fp32,
 * 2 threads) on the same matrices (bench/intruders_torch.py via /usr/bin/python3, started without
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE / OPENBLAS_NUM_THREADS: the peer at its best; its kernel is printed).
 *
 *   npx tsc -p tsconfig.json && node out/bench/intruders4096.js   (BENCH_N=4096, TORCH_F64=1 adds
 *   a float64 torch reference for the max|cos| comparison)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../src/core/engine/ort';
import { Rng } from '../src/core/util/rng';
import { findIntruders } from '../src/core/base/intruders';
import { DecompCache } from '../src/core/base/cache';
import { estimateExactLargeSeconds, exactBaseProjector, twoStageProfile } from '../src/core/base/tridiag';
import { peerEnv } from './peerEnv';

const N = Number(process.env.BENCH_N ?? 4096);
const root = path.resolve(__dirname, '../..');
const now = (): number => Number(process.hrtime.bigint()) / 1e9;

function unit(rng: Rng, len: number): Float64Array {
  const v = new Float64Array(len);
  let s = 0;
  for (let i = 0; i < len; i++) { v[i] = rng.normal(); s += v[i] * v[i]; }
  s = Math.sqrt(s);
  for (let i = 0; i < len; i++) v[i] /= s;
  return v;
}

async function main(): Promise<void> {
  const m = N, n = N, r = 16, k = 10, eps = 0.5, scale = 2;
  const rng = new Rng(4096);
  // W0 = N(0,1)/64 (MP bulk, σ ≤ ≈2) + 4 planted strong directions (σ ≈ 6, 5, 4, 3)
  const W0 = new Float32Array(m * n);
  for (let i = 0; i < W0.length; i++) W0[i] = rng.normal() / 64;
  for (const sg of [6, 5, 4, 3]) {
    const u = unit(rng, m), v = unit(rng, n);
    for (let i = 0; i < m; i++) { const a = sg * u[i]; for (let j = 0; j < n; j++) W0[i * n + j] += a * v[j]; }
  }
  // ΔW = s·B·A, r = 16: small random factors + a planted intruder (random rank-1, σ ≈ 4.5)
  const B = new Float32Array(m * r), A = new Float32Array(r * n);
  for (let i = 0; i < B.length; i++) B[i] = rng.normal() / 64;
  for (let i = 0; i < A.length; i++) A[i] = rng.normal() / 64;
  const u = unit(rng, m), v = unit(rng, n);
  for (let i = 0; i < m; i++) B[i * r] = 1.5 * u[i];
  for (let j = 0; j < n; j++) A[j] = 1.5 * v[j];

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'intr4096-'));
  const cacheDir = path.join(tmp, 'cache');
  try {
    fs.writeFileSync(path.join(tmp, 'W0.f32'), Buffer.from(W0.buffer));
    fs.writeFileSync(path.join(tmp, 'B.f32'), Buffer.from(B.buffer));
    fs.writeFileSync(path.join(tmp, 'A.f32'), Buffer.from(A.buffer));
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify({ m, n, r, scale, k, epsilon: eps }));
    const engine = new Engine({ provider: 'cpu' });
    const est = await estimateExactLargeSeconds(engine, m, n, k, r);
    const cache = new DecompCache(cacheDir, { maxBytes: 1024 * 1024 * 1024 });
    const cacheKey = { file: path.join(tmp, 'W0.f32'), tensor: 'W0', mtimeMs: 1, size: W0.length * 4 };
    const delta = { B, A, r, scale };

    // phase breakdown (cold projector alone, not cached)
    let t0 = now();
    const proj = await exactBaseProjector(engine, W0, m, n, {});
    const projS = now() - t0;
    const prof = { ...twoStageProfile };
    const Y = new Float64Array(m * k).map((_, i) => Math.sin(i));
    t0 = now();
    proj.project(Y, k);
    const projectS = now() - t0;

    t0 = now();
    const cold = await findIntruders(engine, W0, m, n, delta, { mode: 'exact-large', k, epsilon: eps, cache, cacheKey });
    const coldS = now() - t0;
    t0 = now();
    const warm = await findIntruders(engine, W0, m, n, delta, { mode: 'exact-large', k, epsilon: eps, cache, cacheKey });
    const warmS = now() - t0;
    await engine.dispose();

    const py = spawnSync('/usr/bin/python3', [path.join(root, 'bench/intruders_torch.py'), tmp], { encoding: 'utf8', env: peerEnv(), maxBuffer: 1 << 24 });
    if (py.status !== 0) throw new Error(`torch script failed: ${py.stderr}`);
    const tr = JSON.parse(py.stdout.trim().split('\n').pop()!);
    const f32 = tr.f32;
    const diff = (ref: { maxCos: number[] }): number => Math.max(...cold.vectors.map((x, j) => Math.abs(x.maxCos - ref.maxCos[j])));
    const sdiff = (ref: { sigmaTuned: number[] }): number => Math.max(...cold.vectors.map((x, j) => Math.abs(x.sigma - ref.sigmaTuned[j]) / ref.sigmaTuned[0]));
    const lines = [
      `intruders, one ${m}×${n} module, r = ${r}, k = ${k}, ε = ${eps}  (${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(2)})`,
      `LoRA Lens exact-large   count ${cold.count} (cached run ${warm.count})   max|cos| ${cold.vectors.map((x) => x.maxCos.toFixed(4)).join(' ')}`,
      `torch ${tr.torch} f32    count ${f32.count}   max|cos| ${f32.maxCos.map((x: number) => x.toFixed(4)).join(' ')}`,
      `counts agree: ${cold.count === f32.count && warm.count === f32.count}   max |Δ max|cos|| vs torch f32 ${diff(f32).toExponential(2)}   rel Δσ_tuned ${sdiff(f32).toExponential(2)}`,
    ];
    if (tr.f64) lines.push(`vs torch f64: count ${tr.f64.count}, max |Δ max|cos|| ${diff(tr.f64).toExponential(2)}, rel Δσ ${sdiff(tr.f64).toExponential(2)} (torch f64 ${tr.f64.total.toFixed(1)} s)`);
    lines.push(
      `cached vs cold identical: ${cold.vectors.every((x, j) => Math.abs(x.maxCos - warm.vectors[j].maxCos) < 1e-12)}   notes: ${cold.notes.join('; ')}`,
      `time  LoRA Lens cold ${coldS.toFixed(2)} s (projector alone ${projS.toFixed(2)} s: gram ${proj.seconds.gram.toFixed(2)}, tridiag ${proj.seconds.tridiag.toFixed(2)} [band ${prof.band.toFixed(2)} (ORT ${prof.bandOrt.toFixed(2)}), bulge chase ${prof.chase.toFixed(2)}], eigenvalues ${proj.seconds.eig.toFixed(2)}; project(k=${k}) ${projectS.toFixed(2)} s)`,
      `      LoRA Lens cached ${warmS.toFixed(2)} s   (estimate: cold ${est.cold.toFixed(1)} s, cached ${est.cached.toFixed(1)} s)`,
      `peer BLAS: ${tr.blas}`,
      `      torch f32 full-SVD route ${f32.total.toFixed(2)} s (svd W0 ${f32.svdBase.toFixed(2)}, svd W_tuned ${f32.svdTuned.toFixed(2)}; ${tr.threads} threads)`,
      `ratio torch / ours: cold ${(f32.total / coldS).toFixed(2)}×, cached ${(f32.total / warmS).toFixed(2)}×   cache file ${(fs.readdirSync(cacheDir).filter((f) => f.endsWith('.bin')).reduce((s, f) => s + fs.statSync(path.join(cacheDir, f)).size, 0) / 1e6).toFixed(0)} MB`,
    );
    console.log(lines.join('\n'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
