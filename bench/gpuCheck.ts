/**
 * GPU path check (run on a machine with a GPU): creates the Engine with the WebGPU execution
 * provider, runs a float32 MatMul of a 4096² weight by a 4096×16 block and the fp64 Gram graph of
 * the LoRA analysis, and compares with the CPU provider. Prints the provider actually used, any
 * fallback reason, agreement and timings.
 */
import { Engine, ExecutionProvider, availableProviders } from '../src/core/engine/ort';
import { batchedGram, matmul } from '../src/core/engine/products';

async function timeIt<T>(f: () => Promise<T>, n = 5): Promise<{ ms: number; v: T }> {
  let v = await f();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) { const t = performance.now(); v = await f(); ts.push(performance.now() - t); }
  ts.sort((a, b) => a - b);
  return { ms: ts[Math.floor(n / 2)], v };
}

async function main(): Promise<void> {
  console.log('bundled providers:', JSON.stringify(availableProviders()));
  const m = 4096, k = 4096, n = 16;
  const W = new Float32Array(m * k).map((_, i) => Math.sin(i * 0.37) * 0.01);
  const X = new Float32Array(k * n).map((_, i) => Math.cos(i * 0.11));
  const F = new Float32Array(32 * 14336 * 16).map((_, i) => Math.sin(i * 0.013));
  const results: Record<string, { mm: Float32Array; g: Float64Array }> = {};
  for (const p of ['cpu', 'webgpu', 'cuda'] as ExecutionProvider[]) {
    const e = new Engine({ provider: p });
    try {
      const mm = await timeIt(() => matmul(e, W, m, k, X, n));
      const g = await timeIt(() => batchedGram(e, F, 32, 14336, 16, 'cols'));
      results[p] = { mm: mm.v, g: g.v };
      console.log(`${p}: provider used ${e.provider}${e.fallbackReason ? ` (fallback: ${e.fallbackReason})` : ''}; matmul 4096²×16 f32 ${mm.ms.toFixed(2)} ms; gram 32×14336×16 f64 ${g.ms.toFixed(2)} ms`);
    } catch (err) {
      console.log(`${p}: failed: ${(err as Error).message.split('\n')[0]}`);
    } finally {
      await e.dispose();
    }
  }
  for (const p of ['webgpu', 'cuda']) {
    const r = results[p];
    if (!r) continue;
    let d = 0, s = 0;
    for (let i = 0; i < r.mm.length; i++) { d = Math.max(d, Math.abs(r.mm[i] - results.cpu.mm[i])); s = Math.max(s, Math.abs(results.cpu.mm[i])); }
    let dg = 0;
    for (let i = 0; i < r.g.length; i++) dg = Math.max(dg, Math.abs(r.g[i] - results.cpu.g[i]) / (Math.abs(results.cpu.g[i]) + 1e-300));
    console.log(`${p} vs cpu: matmul max rel diff ${(d / s).toExponential(2)}, gram max rel diff ${dg.toExponential(2)}`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
