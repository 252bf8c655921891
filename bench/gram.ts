/**
 * Micro-benchmark: the fp64 rows-Gram W·Wᵀ of one large fp32 matrix (the first step of the exact
 * intruder route and of fullSpectrum), symmetric row blocks (products.ts symRowsGram) vs the
 * column-block reduction used before, same run, same input; max difference printed.
 *
 *   npx tsc -p tsconfig.json && BENCH_N=4096 node out/bench/gram.js
 *   BENCH_SIDE=cols BENCH_N=14336 BENCH_COLS=4096 node out/bench/gram.js   (WᵀW of a gate/up-shaped matrix)
 */
import * as os from 'node:os';
import { Engine } from '../src/core/engine/ort';
import { batchedGram, gramTuning } from '../src/core/engine/products';

async function main(): Promise<void> {
  const m = Number(process.env.BENCH_N ?? 4096), n = Number(process.env.BENCH_COLS ?? m);
  const side = process.env.BENCH_SIDE === 'cols' ? 'cols' : 'rows';
  let s = 1;
  const W = new Float32Array(m * n).map(() => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 - 0.5; });
  const engine = new Engine({ provider: 'cpu' });
  const sym = gramTuning.symMinRows;
  const time = async (symMin: number): Promise<{ s: number; G: Float64Array }> => {
    gramTuning.symMinRows = symMin;
    const t = performance.now();
    const G = await batchedGram(engine, W, 1, m, n, side);
    return { s: (performance.now() - t) / 1000, G };
  };
  const a = await time(sym), b = await time(Infinity), c = await time(sym);
  gramTuning.symMinRows = sym;
  await engine.dispose();
  let d = 0;
  for (let i = 0; i < a.G.length; i++) d = Math.max(d, Math.abs(a.G[i] - b.G[i]));
  console.log(`${m}×${n} fp64 ${side}-Gram (load ${os.loadavg()[0].toFixed(1)}): symmetric blocks ${a.s.toFixed(2)} / ${c.s.toFixed(2)} s, column-block reduction ${b.s.toFixed(2)} s; max |Δ| ${d.toExponential(2)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
