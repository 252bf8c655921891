/**
 * Memory bound (issue 3): analyses a model larger than RAM/4 (a 6.4 GB BF16 safetensors file made
 * here: 48 matrices of 8192×8192) tensor by tensor — top-16 randomized SVD of every matrix on
 * onnxruntime — and reports the peak resident memory (VmHWM) against the file size.
 *
 *   npx tsc -p tsconfig.json && node out/bench/bigModel.js [tensors=48] [dim=8192]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { rsvd } from '../src/core/base/rsvd';
import { Engine } from '../src/core/engine/ort';
import { SafetensorsStore } from '../src/core/formats/safetensors';

const count = Number(process.argv[2] ?? 48);
const dim = Number(process.argv[3] ?? 8192);
const file = path.resolve(__dirname, '../../bench/out/big-model', `model-${count}x${dim}.safetensors`);

function vmHWM(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Streams the file to disk one tensor at a time (never the whole model in memory). */
function writeModel(): void {
  if (fs.existsSync(file) && fs.statSync(file).size > count * dim * dim * 2) return;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const per = dim * dim * 2;
  const header: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) header[`model.layers.${i}.mlp.proj.weight`] = { dtype: 'BF16', shape: [dim, dim], data_offsets: [i * per, (i + 1) * per] };
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const fd = fs.openSync(file + '.tmp', 'w');
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  head.write(json, 8, 'latin1');
  fs.writeSync(fd, head);
  const row = new Uint16Array(dim * 256);
  let s = 0x9e3779b9;
  for (let i = 0; i < count; i++) {
    for (let r0 = 0; r0 < dim; r0 += 256) {
      for (let k = 0; k < row.length; k++) {
        s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
        // bf16 values of N-ish(0, 1/dim): random mantissa, exponent around 2^-7, random sign
        row[k] = ((s & 1) << 15) | ((120 + ((s >>> 1) & 3)) << 7) | ((s >>> 3) & 0x7f);
      }
      fs.writeSync(fd, new Uint8Array(row.buffer));
    }
  }
  fs.closeSync(fd);
  fs.renameSync(file + '.tmp', file);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  writeModel();
  const size = fs.statSync(file).size;
  const ram = Number(/MemTotal:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
  console.log(`model: ${(size / 1e9).toFixed(2)} GB (${count} × ${dim}² BF16), RAM ${(ram / 1e9).toFixed(1)} GB (RAM/4 = ${(ram / 4e9).toFixed(1)} GB); written/checked in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const base = vmHWM();
  const engine = new Engine();
  const store = SafetensorsStore.openFile(file);
  const t1 = performance.now();
  let i = 0;
  const w = new Float32Array(dim * dim);
  for (const t of store.tensors.values()) {
    store.readF32(t.name, w);
    const r = await rsvd(engine, w, dim, dim, 16, { oversample: 8, powerIters: 2, seed: i });
    if (i % 8 === 0) console.log(`  ${t.name}: σ1 ${r.S[0].toFixed(4)}  peak RSS so far ${(vmHWM() / 1e9).toFixed(2)} GB`);
    i++;
  }
  store.close();
  await engine.dispose();
  const peak = vmHWM();
  console.log(`analysed ${i} tensors in ${((performance.now() - t1) / 1000).toFixed(1)} s; peak RSS ${(peak / 1e9).toFixed(2)} GB (${((peak / size) * 100).toFixed(1)} % of the model size; ${(base / 1e9).toFixed(2)} GB before analysis)`);
}

main().catch((e) => { console.error(e); process.exit(1); });
