/**
 * Micro-benchmark: applying the two-stage Q = Q1·Q2 (twostage.ts) to an m×k block (k = 32, the
 * 2r tuned columns of the exact intruder route), the blocked kernels vs the plain loops they
 * replaced (kept here as the reference), same input, max difference printed.
 *
 *   npx tsc -p tsconfig.json && BENCH_N=2048 node out/bench/applyQ.js
 */
import { Engine } from '../src/core/engine/ort';
import { applyTwoStageQ, applyTwoStageQt, tridiagonalizeTwoStage, type BandQ, type ChaseQ, type TwoStage } from '../src/core/base/twostage';

const N = Number(process.env.BENCH_N ?? 2048);
const K = Number(process.env.BENCH_K ?? 32);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);

// ---- reference: the plain loops of twostage.ts before 2026-11-30 (perf2) ----
function applyPanelRef(q1: BandQ, j: number, X: Float64Array, k: number, transpose: boolean, s: Float64Array): void {
  const start = q1.start[j], rows = q1.rows[j], nref = q1.nref[j];
  const vo = q1.vOff[j], to = q1.tOff[j];
  const V = q1.v, T = q1.t;
  // s = Vᵀ·X[start:] (nref×k)
  s.fill(0, 0, nref * k);
  for (let i = 0; i < rows; i++) {
    const xo = (start + i) * k, vr = vo + i * nref;
    for (let a = 0; a < nref; a++) {
      const va = V[vr + a];
      if (va === 0) continue;
      const so = a * k;
      for (let q = 0; q < k; q++) s[so + q] += va * X[xo + q];
    }
  }
  // u = T·s or Tᵀ·s (T upper triangular)
  const u = s.subarray(nref * k, 2 * nref * k);
  u.fill(0);
  for (let a = 0; a < nref; a++) {
    const uo = a * k;
    if (!transpose) {
      for (let c = a; c < nref; c++) { const tac = T[to + a * nref + c]; if (tac === 0) continue; const so = c * k; for (let q = 0; q < k; q++) u[uo + q] += tac * s[so + q]; }
    } else {
      for (let c = 0; c <= a; c++) { const tca = T[to + c * nref + a]; if (tca === 0) continue; const so = c * k; for (let q = 0; q < k; q++) u[uo + q] += tca * s[so + q]; }
    }
  }
  for (let i = 0; i < rows; i++) {
    const xo = (start + i) * k, vr = vo + i * nref;
    for (let a = 0; a < nref; a++) {
      const va = V[vr + a];
      if (va === 0) continue;
      const uo = a * k;
      for (let q = 0; q < k; q++) X[xo + q] -= va * u[uo + q];
    }
  }
}

function applyChaseRef(q2: ChaseQ, i: number, X: Float64Array, k: number, s: Float64Array): void {
  const p0 = q2.pos[i], l = q2.len[i], o = q2.off[i], t = q2.tau[i], v = q2.v;
  s.fill(0, 0, k);
  for (let r = 0; r < l; r++) { const vr = v[o + r], xo = (p0 + r) * k; for (let q = 0; q < k; q++) s[q] += vr * X[xo + q]; }
  for (let q = 0; q < k; q++) s[q] *= t;
  for (let r = 0; r < l; r++) { const vr = v[o + r], xo = (p0 + r) * k; for (let q = 0; q < k; q++) X[xo + q] -= vr * s[q]; }
}


function refQt(ts: TwoStage, X: Float64Array, k: number): Float64Array {
  const s = new Float64Array(2 * ts.b * k + k);
  for (let j = 0; j < ts.q1.start.length; j++) applyPanelRef(ts.q1, j, X, k, true, s);
  for (let i = 0; i < ts.q2!.pos.length; i++) applyChaseRef(ts.q2!, i, X, k, s);
  return X;
}
function refQ(ts: TwoStage, X: Float64Array, k: number): Float64Array {
  const s = new Float64Array(2 * ts.b * k + k);
  for (let i = ts.q2!.pos.length - 1; i >= 0; i--) applyChaseRef(ts.q2!, i, X, k, s);
  for (let j = ts.q1.start.length - 1; j >= 0; j--) applyPanelRef(ts.q1, j, X, k, false, s);
  return X;
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function main(): Promise<void> {
  const m = N;
  let seed = 7;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 - 0.5; };
  const G = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j <= i; j++) G[i * m + j] = G[j * m + i] = rnd();
  const engine = new Engine({ provider: 'cpu' });
  const t = await tridiagonalizeTwoStage(engine, G, m);
  await engine.dispose();
  const Y = new Float64Array(m * K);
  for (let i = 0; i < Y.length; i++) Y[i] = rnd();
  const time = (f: () => Float64Array): { ms: number[]; out: Float64Array } => {
    const ms: number[] = [];
    let out: Float64Array = new Float64Array();
    for (let r = 0; r < REPEAT; r++) { const t0 = performance.now(); out = f(); ms.push(performance.now() - t0); }
    return { ms, out };
  };
  const newQt = time(() => applyTwoStageQt(t, Y.slice(), K));
  const oldQt = time(() => refQt(t, Y.slice(), K));
  const newQ = time(() => applyTwoStageQ(t, Y.slice(), K));
  const oldQ = time(() => refQ(t, Y.slice(), K));
  let d1 = 0, d2 = 0, ny = 0;
  for (let i = 0; i < Y.length; i++) { d1 = Math.max(d1, Math.abs(newQt.out[i] - oldQt.out[i])); d2 = Math.max(d2, Math.abs(newQ.out[i] - oldQ.out[i])); ny = Math.max(ny, Math.abs(Y[i])); }
  const f = (x: number[]): string => `median ${median(x).toFixed(0)} ms [${x.map((v) => v.toFixed(0)).join(', ')}]`;
  console.log(`m = ${m}, k = ${K} (${(4 * m * m * K / 1e9).toFixed(2)} GFLOP per direction), band ${t.b}, ${t.q1.start.length} panels, ${t.q2!.pos.length} chase reflectors; load ${(await import('node:os')).loadavg()[0].toFixed(1)}`);
  console.log(`Qᵀ·X: blocked ${f(newQt.ms)}, plain ${f(oldQt.ms)}, ratio ${(median(newQt.ms) / median(oldQt.ms)).toFixed(2)}; max |Δ| ${d1.toExponential(1)} (max |X| ${ny.toFixed(2)})`);
  console.log(`Q·X:  blocked ${f(newQ.ms)}, plain ${f(oldQ.ms)}, ratio ${(median(newQ.ms) / median(oldQ.ms)).toFixed(2)}; max |Δ| ${d2.toExponential(1)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
