/**
 * Issue 8, headless: `lora-lens intruders | spectra | esd | compare` against numpy references
 * (test/fixtures/cli/gen.py), `--jsonl` streaming, refusals of inputs that do not belong together
 * (one sentence, exit 1, `--force`), every write's `verification.maxAbsError`, and merge into a
 * Hugging Face model folder (sharded) with a real PEFT GPT-2 adapter (fan_in_fan_out) checked
 * element by element against W0 + s·(B·A)ᵀ computed here from the definition.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { openAdapter } from '../../src/core/formats/open';
import { SafetensorsStore, encodeSafetensors } from '../../src/core/formats/safetensors';

const ROOT = path.resolve(__dirname, '../../..');
const FIX = path.join(ROOT, 'test/fixtures/cli');
const REAL = path.join(ROOT, '../shared/realdata');
const CLI = path.resolve(__dirname, '../../src/core/cli.js');
const exp = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * Runs the CLI as a process (node --test reports through this process's stdout, so output cannot
 * be captured in-process).
 */
async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return spawn(...args);
}

/** The CLI as a process (exit code and the one-line error). */
function spawn(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 120_000, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function closeArr(got: number[], want: number[], rtol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const scale = Math.max(...want.map(Math.abs));
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) <= rtol * scale, `${what}[${i}]: ${g} vs ${want[i]}`));
}

const ADAPTER = path.join(FIX, 'adapter'), BASE = path.join(FIX, 'base');

test('intruders --json: module names, counts and max|cos| equal numpy (exact mode and auto)', async () => {
  for (const mode of ['exact', 'auto']) {
    const r = await run('intruders', ADAPTER, '--base', BASE, '--mode', mode, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.modules.length, 2);
    for (const m of j.modules) {
      const e = exp.modules[m.module];
      assert.ok(e, `module ${m.module} is the adapter's module name`);
      closeArr(m.maxCos, e.maxCos, 1e-4, `${m.module} maxCos`);
      assert.ok(e.maxCos.every((c: number) => Math.abs(c - 0.5) > 1e-3), 'fixture has no borderline vector');
      assert.equal(m.intruders, e.intruders, m.module);
      assert.equal(m.possible, 0);
      assert.equal(typeof m.intruders, 'number');
    }
    assert.equal(j.totals.intruders, 4);
  }
});

test('intruders --jsonl streams one record per module', async () => {
  const r = await run('intruders', ADAPTER, '--base', BASE, '--jsonl', '--k', '5');
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.module).sort(), Object.keys(exp.modules).sort());
  for (const l of lines) assert.equal(l.maxCos.length, 5);
});

test('spectra --json: σ(W0), σ(W0+ΔW), σ(ΔW) equal numpy', async () => {
  const name = 'model.layers.0.self_attn.q_proj';
  const r = await run('spectra', ADAPTER, '--base', BASE, '--module', name, '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.module, name);
  const e = exp.modules[name];
  closeArr(j.sigma.base, e.sigmaBase, 1e-5, 'σ(W0)');
  closeArr(j.sigma.merged, e.sigmaMerged, 1e-5, 'σ(W0+ΔW)');
  closeArr(j.sigma.delta, e.sigmaDelta, 1e-5, 'σ(ΔW)');
  const all = JSON.parse((await run('spectra', ADAPTER, '--base', BASE, '--json')).out);
  assert.equal(all.modules.length, 2);
});

test('esd --json: WeightWatcher columns equal numpy; alpha only from a full spectrum of ≥ 50 eigenvalues', async () => {
  const r = await run('esd', path.join(FIX, 'esd.safetensors'), '--full', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.rows.length, 2, 'one row per 2-D tensor (the 1-D bias is skipped)');
  for (const row of j.rows) {
    const e = exp.esd[row.name];
    for (const k of ['N', 'M', 'num_evals']) assert.equal(row[k], e[k], `${row.name} ${k}`);
    for (const k of ['norm', 'log_norm', 'log_spectral_norm', 'stable_rank', 'sv_max', 'sv_min']) {
      assert.ok(Math.abs(row[k] - e[k]) <= 1e-5 * Math.max(1, Math.abs(e[k])), `${row.name} ${k}: ${row[k]} vs ${e[k]}`);
    }
    for (const k of ['alpha', 'alpha_weighted', 'log_spectral_norm', 'stable_rank', 'entropy', 'mp_softrank']) assert.ok(k in row, k);
    assert.equal(typeof row.alpha, 'number', 'full spectrum of ≥ 50 eigenvalues: alpha is fitted');
  }
  // the same without --full: sides ≤ 1024 are exact anyway
  const d = JSON.parse((await run('esd', path.join(FIX, 'esd.safetensors'), '--k', '8', '--json')).out);
  for (const row of d.rows) {
    assert.equal(row.full, true);
    assert.ok(Math.abs(row.stable_rank - exp.esd[row.name].stable_rank) <= 1e-5 * exp.esd[row.name].stable_rank, `${row.name} stable_rank`);
  }
  // top-k only (both sides > 1024): alpha is not shown, norm columns stay exact (‖W‖_F² from the definition)
  const big = path.join(tmp, 'big.safetensors');
  let seed = 7;
  const w = Float32Array.from({ length: 1100 * 1030 }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5));
  fs.writeFileSync(big, encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [1100, 1030], data: new Uint8Array(w.buffer) }], {}));
  let fro2 = 0;
  for (const x of w) fro2 += x * x;
  const t = JSON.parse((await run('esd', big, '--k', '8', '--json')).out);
  const row = t.rows[0];
  assert.equal(row.full, false);
  assert.equal(row.alpha, null);
  assert.equal(row.entropy, null);
  assert.equal(row.num_evals, 8);
  assert.ok(Math.abs(row.log_norm - Math.log10(fro2)) <= 1e-9, `log_norm ${row.log_norm} vs ${Math.log10(fro2)}`);
  assert.ok(Math.abs(row.norm - fro2) <= 1e-9 * fro2);
  // < 50 eigenvalues: not fittable
  const small = JSON.parse((await run('esd', BASE, '--json')).out);
  for (const row of small.rows) assert.equal(row.alpha, null, row.name);
  const jl = (await run('esd', path.join(FIX, 'esd.safetensors'), '--jsonl')).out.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(jl.map((x) => x.name), ['big.weight', 'tall.weight']);
});

test('esd on a real torchtune checkpoint of constant (rank-1) weights: σ₁ = c·√(mn), stable rank 1, no NaN', async () => {
  const pt = path.join(REAL, 'pytorch__torchtune', 'tiny_fair_checkpoint.pt');
  if (!fs.existsSync(pt)) return;
  const j = JSON.parse((await run('esd', pt, '--json', '--filter', 'attention.wq')).out);
  assert.equal(j.rows.length, 2);
  for (const row of j.rows) {
    // every entry is 0.2 (float32): λ_max = ‖W‖_F² = 0.2²·m·n
    const c = Math.fround(0.2), lam = c * c * row.N * row.M;
    assert.ok(Math.abs(row.spectral_norm - lam) <= 1e-9 * lam, `${row.name}: ${row.spectral_norm} vs ${lam}`);
    assert.ok(Math.abs(row.stable_rank - 1) <= 1e-9, `${row.name} stable rank ${row.stable_rank}`);
    // WeightWatcher's entropy of a rank-1 spectrum: the fp64 round-off σ's give ~1e-15, not exactly 0
    assert.ok(Math.abs(row.entropy) < 1e-12, `${row.name} entropy ${row.entropy}`);
  }
});

test('compare --json: relative change per tensor equals numpy', async () => {
  const r = await run('compare', BASE, path.join(FIX, 'tuned.safetensors'), '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.rows.length, Object.keys(exp.compare).length);
  for (const row of j.rows) assert.ok(Math.abs(row.relChange - exp.compare[row.name]) <= 1e-6 * Math.max(1e-3, exp.compare[row.name]), `${row.name}: ${row.relChange} vs ${exp.compare[row.name]}`);
});

test('inputs that do not belong together are refused with one sentence naming the mismatch (exit 1)', async () => {
  const cases: [string[], RegExp][] = [
    [['intruders', path.join(FIX, 'other'), '--base', BASE], /does not match adapter other \(the adapter was made for "other-model", this base is "tiny-cli-base"\): none of its 1 modules/],
    [['intruders', path.join(REAL, 'anirudh-ak__peft-gpt2'), '--base', path.join(ROOT, 'test/fixtures/hf/tiny-gpt2')], /none of its 12 modules has a base weight of the right name and shape, e\.g\. base tensor "h\.0\.attn\.c_attn\.weight" has shape \[32, 96\]/],
    [['spectra', path.join(FIX, 'other'), '--base', BASE], /does not match adapter other/],
    [['compare', BASE, path.join(FIX, 'unrelated.safetensors')], /is unrelated to .*no tensor name is in both/],
    [['merge', path.join(FIX, 'other'), BASE, path.join(tmp, 'never')], /does not match adapter other/],
  ];
  for (const [args, re] of cases) {
    const r = spawn(...args);
    assert.equal(r.code, 1, `${args[0]}: ${r.err}`);
    const lines = r.err.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.err}`);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], re);
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  }
  assert.ok(!fs.existsSync(path.join(tmp, 'never')), 'nothing written');
});

test('a base matching only some modules is refused unless --force', async () => {
  // base folder with q_proj only
  const dir = path.join(tmp, 'partial-base');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(BASE, 'config.json'), path.join(dir, 'config.json'));
  const st = SafetensorsStore.openFile(path.join(BASE, 'model.safetensors'));
  const q = 'model.layers.0.self_attn.q_proj.weight';
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors([{ name: q, dtype: 'F32', shape: st.tensors.get(q)!.shape, data: st.readRaw(q) }], {}));
  st.close();
  const refused = spawn('intruders', ADAPTER, '--base', dir);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /matches only 1 of 2 modules of adapter adapter.*down_proj.*use --force/);
  const forced = await run('intruders', ADAPTER, '--base', dir, '--force', '--json');
  assert.equal(forced.code, 0);
  const j = JSON.parse(forced.out);
  assert.deepEqual(j.modules.map((m: { module: string }) => m.module), ['model.layers.0.self_attn.q_proj']);
  assert.equal(j.errors.length, 1);
});

test('combine refuses adapters made for different bases that share no module', async () => {
  const r = await run('combine', ADAPTER, '1', path.join(FIX, 'other'), '1', path.join(tmp, 'comb'));
  // the combine command may print the error itself (exit 1) or throw it
  assert.notEqual(r.code, 0);
  assert.match(r.err, /was made for base "other-model" and adapter for "tiny-cli-base", and they share no module/);
  assert.ok(!fs.existsSync(path.join(tmp, 'comb')));
});

test('every writing command reports verification.maxAbsError', async () => {
  const outs: Record<string, string[]> = {
    rebalance: ['rebalance', ADAPTER, path.join(tmp, 'rb')],
    reduce: ['reduce', ADAPTER, path.join(tmp, 'rd'), '--rank', '2'],
    rescale: ['rescale', ADAPTER, '0.5', path.join(tmp, 'rs')],
    combine: ['combine', ADAPTER, '1', ADAPTER, '-0.5', path.join(tmp, 'cb')],
    merge: ['merge', ADAPTER, BASE, path.join(tmp, 'mg')],
    convert: ['convert', ADAPTER, '--to', 'mlx', path.join(tmp, 'cv')],
  };
  for (const [name, args] of Object.entries(outs)) {
    const r = await run(...args, '--json');
    assert.equal(r.code, 0, `${name}: ${r.err}`);
    const j = JSON.parse(r.out);
    assert.equal(typeof j.verification?.maxAbsError, 'number', `${name} verification`);
    assert.ok(j.verification.maxAbsError >= 0 && j.verification.maxAbsError < 1e-5, `${name}: ${j.verification.maxAbsError}`);
  }
  const human = await run('rescale', ADAPTER, '2', path.join(tmp, 'rs2'));
  assert.match(human.out, /✓ verified 2 items: max abs error 0/);
  // merge into a folder: the merged weights equal W0 + s·B·A from numpy
  const mg = SafetensorsStore.openFile(path.join(tmp, 'mg', 'model.safetensors'));
  try {
    assert.ok(fs.existsSync(path.join(tmp, 'mg', 'config.json')), 'config copied');
    for (const [name, e] of Object.entries(exp.modules) as [string, { merged: number[][] }][]) {
      const w = mg.readF32(`${name}.weight`);
      let err = 0;
      e.merged.flat().forEach((v, i) => { err = Math.max(err, Math.abs(w[i] - v)); });
      assert.ok(err < 1e-6, `${name}: max |merged − numpy| = ${err}`);
    }
  } finally {
    mg.close();
  }
});

test('merge: real GPT-2 PEFT adapter (fan_in_fan_out) into a sharded Hugging Face folder', async () => {
  const adapterDir = path.join(REAL, 'anirudh-ak__peft-gpt2');
  if (!fs.existsSync(adapterDir)) return;
  // a gpt2-shaped base of the 12 c_attn weights ([768, 2304] Conv1D layout), two shards + index
  const dir = path.join(tmp, 'gpt2');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2', _name_or_path: 'gpt2', n_embd: 768, n_layer: 12 }));
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.04;
  const W0 = new Map<string, Float32Array>();
  const map: Record<string, string> = {};
  for (let s = 0; s < 2; s++) {
    const ts = [];
    for (let l = 6 * s; l < 6 * s + 6; l++) {
      const name = `h.${l}.attn.c_attn.weight`;
      const w = Float32Array.from({ length: 768 * 2304 }, rnd);
      W0.set(name, w);
      ts.push({ name, dtype: 'F32' as const, shape: [768, 2304], data: new Uint8Array(w.buffer) });
      map[name] = `model-0000${s + 1}-of-00002.safetensors`;
    }
    fs.writeFileSync(path.join(dir, `model-0000${s + 1}-of-00002.safetensors`), encodeSafetensors(ts, {}));
  }
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: map }));
  const out = path.join(tmp, 'gpt2-merged');
  const r = await run('merge', adapterDir, dir, out, '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.merged.length, 12);
  assert.equal(j.outDir, out);
  assert.ok(j.verification.maxAbsError <= 1e-7, String(j.verification.maxAbsError));
  // reference from the definition: W' = W0 + s·(B·A)ᵀ (Conv1D stores [in, out])
  const a = openAdapter(adapterDir);
  const st = SafetensorsStore.openFile(path.join(out, 'model.safetensors'));
  try {
    for (const l of [0, 11]) {
      const m = a.modules.find((x) => x.name === `transformer.h.${l}.attn.c_attn`)!;
      const A = a.store.readF32(m.A.tensor.name), B = a.store.readF32(m.B.tensor.name), r8 = m.rank;
      const w0 = W0.get(`h.${l}.attn.c_attn.weight`)!, w1 = st.readF32(`h.${l}.attn.c_attn.weight`);
      let err = 0;
      for (let i = 0; i < 768; i += 7) for (let o = 0; o < 2304; o += 5) {
        let d = 0;
        for (let k = 0; k < r8; k++) d += B[o * r8 + k] * A[k * 768 + i];
        err = Math.max(err, Math.abs(w1[i * 2304 + o] - (w0[i * 2304 + o] + m.scale * d)));
      }
      assert.ok(err < 1e-6, `layer ${l}: ${err}`);
    }
  } finally {
    a.store.close();
    st.close();
  }
});
