/**
 * Benchmark (issue 11 item 3): `lora-lens analyze DIR --recursive --jsonl` over a folder of
 * adapters of mixed sizes and dtypes — the whole CLI process (start-up, walk, full analysis of
 * every module on onnxruntime, doctor bit scan and rules, JSON Lines out), page cache warm.
 *
 *   node scripts/build.mjs && npx tsc -p tsconfig.json && node out/bench/fleet.js
 *   (BENCH_REPEAT=n, default 5; the fleet is written once to bench/out/fleet)
 *
 * Fleet: 4 × Llama-3-8B-shaped r16 BF16 (q,k,v,o,gate,up,down × 32 layers, 84 MB each),
 * 6 × Llama-3.2-1B-shaped r8 F32 (16 layers, 23 MB each), 12 × small r4 F16 SD-style PEFT folders,
 * and one broken file (must come out as an error record). Goal ≥ 400 MB/s of adapter files on 2 cores.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeSafetensors } from '../src/core/formats/safetensors';
import { fromFloats } from '../src/core/formats/dtype';

const root = path.resolve(__dirname, '../..');
const fleet = path.join(root, 'bench', 'out', 'fleet');
const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);

let seed = 12345 >>> 0;
const rnd = (): number => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed / 4294967296 - 0.5; };
function values(n: number, s: number): Float32Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (rnd() + rnd() + rnd()) * s;
  return f;
}

function writePeft(dir: string, layers: number, shapes: Record<string, [number, number]>, r: number, dtype: 'BF16' | 'F32' | 'F16', alpha: number, base: string): void {
  if (fs.existsSync(path.join(dir, 'adapter_model.safetensors'))) return;
  fs.mkdirSync(dir, { recursive: true });
  const tensors = [];
  for (let l = 0; l < layers; l++) {
    for (const [m, [o, i]] of Object.entries(shapes)) {
      const name = `base_model.model.model.layers.${l}.${m}`;
      tensors.push({ name: `${name}.lora_A.weight`, dtype, shape: [r, i], data: fromFloats(values(r * i, 1 / Math.sqrt(i)), dtype) });
      tensors.push({ name: `${name}.lora_B.weight`, dtype, shape: [o, r], data: fromFloats(values(o * r, 0.01), dtype) });
    }
  }
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors));
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', r, lora_alpha: alpha, target_modules: [...new Set(Object.keys(shapes).map((k) => k.split('.').pop()))], base_model_name_or_path: base,
  }, null, 1));
}

function writeFleet(): void {
  const h8 = 4096, kv8 = 1024, i8 = 14336;
  const s8: Record<string, [number, number]> = {
    'self_attn.q_proj': [h8, h8], 'self_attn.k_proj': [kv8, h8], 'self_attn.v_proj': [kv8, h8], 'self_attn.o_proj': [h8, h8],
    'mlp.gate_proj': [i8, h8], 'mlp.up_proj': [i8, h8], 'mlp.down_proj': [h8, i8],
  };
  const h1 = 2048, kv1 = 512, i1 = 8192;
  const s1: Record<string, [number, number]> = {
    'self_attn.q_proj': [h1, h1], 'self_attn.k_proj': [kv1, h1], 'self_attn.v_proj': [kv1, h1], 'self_attn.o_proj': [h1, h1],
    'mlp.gate_proj': [i1, h1], 'mlp.up_proj': [i1, h1], 'mlp.down_proj': [h1, i1],
  };
  const sSmall: Record<string, [number, number]> = { 'attn.to_q': [320, 320], 'attn.to_k': [320, 768], 'attn.to_v': [320, 768], 'attn.to_out': [320, 320] };
  for (let k = 0; k < 4; k++) writePeft(path.join(fleet, `llama8b-r16-bf16-${k}`), 32, s8, 16, 'BF16', 32, 'meta-llama/Meta-Llama-3-8B');
  for (let k = 0; k < 6; k++) writePeft(path.join(fleet, 'team', `llama1b-r8-f32-${k}`), 16, s1, 8, 'F32', 16, 'meta-llama/Llama-3.2-1B');
  for (let k = 0; k < 12; k++) writePeft(path.join(fleet, 'team', 'sd', `sd-r4-f16-${k}`), 16, sSmall, 4, 'F16', 4, 'runwayml/stable-diffusion-v1-5');
  const broken = path.join(fleet, 'broken', 'adapter_model.safetensors');
  fs.mkdirSync(path.dirname(broken), { recursive: true });
  fs.writeFileSync(broken, Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x7b]));
}

const sorted = (a: number[]): number[] => [...a].sort((x, y) => x - y);

function main(): void {
  writeFleet();
  const cli = path.join(root, 'dist', 'cli.js');
  // The child runs under /usr/bin/time so its CPU time (all threads, user + sys) is known too: on
  // this shared machine other jobs take cores, and bytes / (CPU time / 2) is the rate the same work
  // reaches on 2 cores of its own (an upper bound on what the wall clock shows under load).
  const jobs = process.env.BENCH_JOBS ?? '2';
  const run = (): { ms: number; cpuS: number; bytes: number; ok: number; errors: number } => {
    const t = performance.now();
    const p = spawnSync('/usr/bin/time', ['-f', 'CPU %U %S', process.execPath, cli, 'analyze', fleet, '--recursive', '--jsonl', '--jobs', jobs], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const ms = performance.now() - t;
    if (p.status !== 0) throw new Error(`analyze exited ${p.status}: ${p.stderr}`);
    const m = /CPU ([\d.]+) ([\d.]+)/.exec(p.stderr);
    const recs = p.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; bytes?: number });
    return { ms, cpuS: m ? Number(m[1]) + Number(m[2]) : NaN, bytes: recs.reduce((a, r) => a + (r.ok ? r.bytes ?? 0 : 0), 0), ok: recs.filter((r) => r.ok).length, errors: recs.filter((r) => !r.ok).length };
  };
  run(); // warm-up: page cache
  const wall: number[] = [], cpu: number[] = [];
  let last = run();
  for (let i = 0; i < REPEAT; i++) {
    last = run();
    wall.push(last.bytes / 1e6 / (last.ms / 1000));
    cpu.push(last.bytes / 1e6 / (last.cpuS / 2));
  }
  const show = (a: number[]): string => { const s = sorted(a); return `${s.map((x) => x.toFixed(0)).join(', ')} MB/s (median ${s[s.length >> 1].toFixed(0)})`; };
  console.log(`fleet: ${last.ok} adapters + ${last.errors} error record(s), ${(last.bytes / 1e6).toFixed(1)} MB of adapter files; --jobs ${jobs}; ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  console.log(`analyze --recursive --jsonl, wall clock:            ${show(wall)}`);
  console.log(`same runs, bytes / (CPU time / 2 cores):           ${show(cpu)}   goal ≥ 400 MB/s`);
}

main();
