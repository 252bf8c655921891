import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { esdMetrics, fitPowerLaw, logHistogram } from '../../src/core/base/esd';
import { fullSpectrum } from '../../src/core/base/rsvd';

const FIX = path.resolve(__dirname, '../../../test/fixtures/base');
type Ref = Record<string, number | null>;
const esd = JSON.parse(fs.readFileSync(path.join(FIX, 'esd.json'), 'utf8')) as {
  cases: { name: string; rows: number; cols: number; sv: number[]; ref: Ref }[];
  matrix: { rows: number; cols: number; W: number[]; sv: number[]; ref: Ref };
};
const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });

const KEYS = ['log_norm', 'log_spectral_norm', 'stable_rank', 'alpha', 'alpha_weighted', 'log_alpha_norm', 'xmin', 'D', 'sigma', 'num_pl_spikes', 'entropy', 'matrix_rank', 'bulk_max', 'mp_softrank', 'num_spikes'];

function check(name: string, got: Record<string, unknown>, ref: Ref, rel: number): void {
  for (const k of KEYS) {
    const a = got[k] as number, e = ref[k];
    if (e === null) { assert.ok(Number.isNaN(a), `${name}.${k}: ${a}, numpy: not fittable`); continue; }
    assert.ok(Math.abs(a - e) <= rel * Math.max(1, Math.abs(e)), `${name}.${k}: ${a} vs numpy ${e}`);
  }
}

test('ESD metrics match the numpy port of WeightWatcher (MP bulk, heavy-tailed, spiked)', () => {
  for (const c of esd.cases) {
    const m = esdMetrics(c.sv, c.rows, c.cols);
    check(c.name, m as unknown as Record<string, unknown>, c.ref, 1e-9);
  }
  const heavy = esdMetrics(esd.cases[1].sv, 400, 200);
  assert.ok(heavy.warnings.some((w) => /< 50/.test(w)), 'few tail eigenvalues warned');
  const mp = esdMetrics(esd.cases[0].sv, 400, 200);
  assert.ok(mp.warnings.some((w) => /> 8/.test(w)), 'spurious alpha on a pure MP bulk is flagged');
});

test('ESD end to end: fullSpectrum (ORT Gram + TS eigen) of a 64×48 matrix, then metrics', async () => {
  const W = Float32Array.from(esd.matrix.W);
  const sv = await fullSpectrum(engine, W, esd.matrix.rows, esd.matrix.cols);
  for (let i = 0; i < sv.length; i++) assert.ok(Math.abs(sv[i] - esd.matrix.sv[i]) < 1e-6 * esd.matrix.sv[0], `σ${i}`);
  const mm = esdMetrics(sv, 64, 48);
  check('matrix', mm as unknown as Record<string, unknown>, esd.matrix.ref, 1e-4);
  // 48 eigenvalues < WeightWatcher's min_evals = 50
  assert.equal(mm.alpha_status, 'not fittable');
});

test('power-law fit on exact Pareto samples, histogram', () => {
  // inverse-CDF Pareto(α = 3, xmin = 1) at evenly spaced quantiles
  const n = 2000, alpha = 3;
  const x = Array.from({ length: n }, (_, i) => (1 - (i + 0.5) / n) ** (-1 / (alpha - 1)));
  const f = fitPowerLaw(x);
  assert.ok(Math.abs(f.alpha - alpha) < 0.05, `alpha ${f.alpha}`);
  assert.ok(f.D < 0.02);
  const h = logHistogram(x, 20);
  assert.equal(h.counts.reduce((a, b) => a + b, 0), n);
  assert.equal(h.edges.length, 21);
  assert.ok(Math.abs(h.edges[0] - Math.min(...x)) < 1e-9);
});
