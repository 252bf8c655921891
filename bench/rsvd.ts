/**
 * Benchmark: randomized SVD (top-16, p = 8, q = 2) of a 4096² fp32 matrix, LoRA Lens (ORT + TS)
 * vs numpy running the same algorithm in the same run; and intruder dimensions of one 4096²
 * module (r = 16 LoRA): LoRA Lens approx mode (top-256 base rsvd, cold and with the base basis
 * cached) vs the torch CPU full-SVD route of the official script.
 *
 *   npx tsc -p tsconfig.json && node out/bench/rsvd.js      (BENCH_REPEAT=5, BENCH_N=4096)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../src/core/engine/ort';
import { Rng } from '../src/core/util/rng';
import { rsvd } from '../src/core/base/rsvd';
import { findIntruders } from '../src/core/base/intruders';
import { DecompCache } from '../src/core/base/cache';
import { peerEnvs } from './peerEnv';

const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);
const N = Number(process.env.BENCH_N ?? 4096);
/** onnxruntime intra-op threads (2 = both cores; 1 is more robust when other jobs load the machine). */
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const root = path.resolve(__dirname, '../..');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const m = N, n = N, r = 16, k = 16;
  const rng = new Rng(99);
  // W0 with a slowly decaying column scale (so the top singular values are separated)
  const W0 = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) W0[i * n + j] = rng.normal() * (0.02 + 1 / (1 + j / 8)) / Math.sqrt(n);
  const B = Float32Array.from(rng.normals(m * r, 1 / Math.sqrt(m)));
  const A = Float32Array.from(rng.normals(r * n, 1 / Math.sqrt(n)));
  const scale = 4;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-bench-'));
  const f = (name: string, a: Float32Array): string => { const p = path.join(dir, name); fs.writeFileSync(p, new Uint8Array(a.buffer)); return p; };
  const files = [f('W0.f32', W0), f('B.f32', B), f('A.f32', A)];

  const engine = new Engine({ provider: 'cpu', intraOpThreads: THREADS });
  await rsvd(engine, W0, m, n, k); // warm-up: sessions
  const ts: number[] = [], cs: number[] = [];
  let S: Float64Array = new Float64Array();
  for (let i = 0; i < REPEAT; i++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    S = (await rsvd(engine, W0, m, n, k, { oversample: 8, powerIters: 2 })).S;
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const cu = process.cpuUsage(c0);
    cs.push((cu.user + cu.system) / 1000);
  }
  const withIntruders = process.env.BENCH_INTRUDERS !== '0';
  const cache = new DecompCache(path.join(dir, 'cache'));
  const key = { file: files[0], tensor: 'W0', mtimeMs: 0, size: 0 };
  const delta = { B, A, r, scale };
  let t0 = process.hrtime.bigint();
  const cold = withIntruders ? await findIntruders(engine, W0, m, n, delta, { cache, cacheKey: key }) : undefined;
  const coldMs = Number(process.hrtime.bigint() - t0) / 1e6;
  t0 = process.hrtime.bigint();
  const warm = withIntruders ? await findIntruders(engine, W0, m, n, delta, { cache, cacheKey: key }) : undefined;
  const warmMs = Number(process.hrtime.bigint() - t0) / 1e6;

  type Peer = { rsvd_s: number; rsvd_runs_s: number[]; rsvd_cpu_s: number; S: number[]; torch_intruders_s: number; torch_count: number; torch_maxcos: number[] };
  let p: Peer | undefined;
  let pCpu = Infinity; // least CPU time over the configurations
  for (const { label, env } of peerEnvs()) {
    const py = spawnSync('/usr/bin/python3', [path.join(root, 'bench', 'rsvd_numpy.py'), ...files, String(m), String(n), String(r), String(scale), String(k), String(REPEAT)], { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...env, BENCH_INTRUDERS: withIntruders ? '1' : '0' } });
    if (py.status !== 0) throw new Error(`python failed: ${py.stderr}`);
    const res = JSON.parse(py.stdout.trim().split('\n').pop()!) as Peer;
    console.log(`numpy peer (${label}; ${py.stderr.trim().split('\n').pop()}): rsvd median ${(res.rsvd_s * 1000).toFixed(1)} ms [${res.rsvd_runs_s.map((x) => (x * 1000).toFixed(0)).join(', ')}], CPU median ${(res.rsvd_cpu_s * 1000).toFixed(1)} ms`);
    if (!p || res.rsvd_s < p!.rsvd_s) p = res;
    pCpu = Math.min(pCpu, res.rsvd_cpu_s);
    if (withIntruders) break; // the torch full-SVD route is LAPACK-bound: default threads only
  }
  const lens = median(ts);
  console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model}); other jobs may share the CPU`);
  console.log(`rsvd top-${k} of ${m}×${n} fp32, p=8, q=2: LoRA Lens (${THREADS} intra-op threads) median ${lens.toFixed(1)} ms [${ts.map((x) => x.toFixed(0)).join(', ')}], CPU median ${median(cs).toFixed(1)} ms; numpy (faster configuration) median ${(p!.rsvd_s * 1000).toFixed(1)} ms, least CPU ${(pCpu * 1000).toFixed(1)} ms; ratio wall ${(lens / (p!.rsvd_s * 1000)).toFixed(2)} (goal ≤ 0.5), CPU ${(median(cs) / (pCpu * 1000)).toFixed(2)}`);
  console.log(`  σ1..4 LoRA Lens ${Array.from(S.slice(0, 4), (x) => x.toFixed(5)).join(' ')} | numpy ${p!.S.map((x) => x.toFixed(5)).join(' ')}`);
  if (cold && warm) {
  console.log(`intruders (k=10, ε=0.5) of one ${m}×${n} module, r=${r}: LoRA Lens approx (K0=256) cold ${coldMs.toFixed(0)} ms, base cached ${warmMs.toFixed(0)} ms → count ${cold.count} (+${cold.possible} possible), cached run count ${warm.count}`);
  console.log(`  torch full-SVD route ${(p!.torch_intruders_s * 1000).toFixed(0)} ms → count ${p!.torch_count}; ratio cold ${(coldMs / (p!.torch_intruders_s * 1000)).toFixed(3)}, cached ${(warmMs / (p!.torch_intruders_s * 1000)).toFixed(3)}`);
  console.log(`  max|cos| top-10 LoRA Lens ${cold.vectors.map((v) => v.maxCos.toFixed(3)).join(' ')}`);
  console.log(`  max|cos| top-10 torch     ${p!.torch_maxcos.map((x) => x.toFixed(3)).join(' ')}`);
  }
  await engine.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => { console.error(e); process.exit(1); });
