/**
 * Real adapters made by other people (../shared/realdata, see INDEX.md / PROVENANCE.txt there).
 * Every PEFT / mlx-lm safetensors adapter opens and analyses; per adapter, the first and the last
 * module are cross-checked against ΔW = s·B·A formed EXPLICITLY in fp64 in this test:
 *   - ‖ΔW‖_F from the explicit entries (Σσ² = ‖ΔW‖_F² checks the whole spectrum),
 *   - the exact spectrum of ΔW through a rank-revealing projection of the explicit product:
 *     Q = qr(ΔW·G) (G fixed in×r), σ(ΔW) = σ(QᵀΔW) since rank(ΔW) ≤ r (Jacobi svd from decomp.ts).
 * Factors are F32 (exact in fp64), so agreement is at fp64-algorithm level; the tolerance
 * 1e-8·σ₁ (abs) / 1e-8 (rel) leaves room for the projection's ε·κ(ΔW·G) error on trained factors.
 * Broken files give a FormatError naming the file and the problem.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { Engine } from '../../src/core/engine/ort';
import type { Adapter, LoraModule } from '../../src/core/formats/adapter';
import { FormatError } from '../../src/core/formats/errors';
import { openAdapter } from '../../src/core/formats/open';
import { readSafetensorsHeader } from '../../src/core/formats/safetensors';
import { householderQR, singularValues } from '../../src/core/linalg/decomp';
import { mat, Mat, matmul, transpose } from '../../src/core/linalg/dense';
import { assertClose } from './tolerance';

const repoRoot = path.resolve(__dirname, '../../..');
const REAL = path.resolve(repoRoot, '../shared/realdata');
const hasReal = fs.existsSync(REAL);
const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });

const ADAPTERS = [
  'anirudh-ak__peft-gpt2', 'abrhaleyarefaine1997__gpt2-tigrinya-lora', 'Tashu014__lora-imdb-distilbert',
  'Hareshjethani__BERT-GPT2-Multitask-Finetuning', 'TFM-HITESH__MedAI', 'TFM-HITESH__MedAI/5epochs',
  'Arjun-254__Medical_Question_Answering_SLM',
];

/** Dense fp64 PEFT-orientation factor (A: r×in, B: out×r) read straight from the store. */
function factor(a: Adapter, m: LoraModule, role: 'A' | 'B'): Mat {
  const f = m[role];
  const v = a.store.readF64(f.tensor.name);
  const [p, q] = [f.tensor.shape[0], f.tensor.shape.slice(1).reduce((x, y) => x * y, 1)];
  const stored = mat(p, q, v);
  return f.transposed ? transpose(stored) : stored;
}

function explicitReference(a: Adapter, m: LoraModule): { sigma: Float64Array; fro: number } {
  const A = factor(a, m, 'A'), B = factor(a, m, 'B');
  assert.equal(A.rows, m.rank); assert.equal(A.cols, m.inFeatures);
  assert.equal(B.rows, m.outFeatures); assert.equal(B.cols, m.rank);
  const dW = matmul(B, A); // explicit out×in product (test only; the analysis never forms it)
  for (let i = 0; i < dW.data.length; i++) dW.data[i] *= m.scale;
  let fro2 = 0;
  for (const v of dW.data) fro2 += v * v;
  const G = mat(m.inFeatures, m.rank);
  // pseudo-random G (xorshift32; NOT a sum of sinusoids, which would make ΔW·G rank-deficient)
  let x = 0x9e3779b9;
  for (let i = 0; i < G.data.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    G.data[i] = x / 4294967296 - 0.5;
  }
  const Y = matmul(dW, G);
  const { Q } = householderQR(Y);
  const sigma = singularValues(matmul(transpose(Q), dW));
  return { sigma, fro: Math.sqrt(fro2) };
}

function cfgOf(dir: string): Record<string, any> {
  return JSON.parse(fs.readFileSync(path.join(REAL, dir, 'adapter_config.json'), 'utf8'));
}

for (const dir of ADAPTERS) {
  test(`realdata ${dir}: opens, analyses, scale/rank per config, explicit fp64 cross-check`, async (t) => {
    if (!hasReal) { t.skip('no ../shared/realdata'); return; }
    const cfg = cfgOf(dir);
    const a = openAdapter(path.join(REAL, dir));
    try {
      const mlx = cfg.lora_parameters !== undefined;
      assert.equal(a.format, mlx ? 'mlx' : 'peft');
      assert.ok(a.modules.length > 0);
      const r = mlx ? cfg.lora_parameters.rank : cfg.r;
      const scale = mlx ? cfg.lora_parameters.scale : cfg.lora_alpha / cfg.r;
      if (!mlx) assert.equal(a.summary.fanInFanOut, cfg.fan_in_fan_out === true);
      const rep = await analyzeAdapter(a, { engine });
      assert.equal(rep.modules.length, a.modules.length);
      for (const m of rep.modules) {
        assert.equal(m.error, undefined, `${m.name}: ${m.error}`);
        assert.equal(m.rank, r, `${m.name} rank`);
        assert.equal(m.sigma.length, r);
        assertClose(m.scale, scale, { rel: 1e-15 }, `${m.name} scale`);
        for (let i = 0; i < m.sigma.length; i++) {
          assert.ok(Number.isFinite(m.sigma[i]) && m.sigma[i] >= 0, `${m.name} σ[${i}] = ${m.sigma[i]}`);
          if (i) assert.ok(m.sigma[i] <= m.sigma[i - 1], `${m.name}: σ not descending at ${i}`);
        }
        for (const k of ['fro', 'spectral', 'nuclear', 'stableRank', 'effectiveRank', 'kappaA', 'normA', 'normB', 'balanceGap'] as const) {
          assert.ok(Number.isFinite(m[k]), `${m.name} ${k} = ${m[k]}`);
        }
        assert.ok(m.effectiveRank >= 1 - 1e-12 && m.effectiveRank <= r + 1e-9, `${m.name} effective rank ${m.effectiveRank}`);
        assert.ok(m.stableRank >= 1 - 1e-12 && m.stableRank <= r + 1e-9, `${m.name} stable rank ${m.stableRank}`);
      }
      for (const m of [a.modules[0], a.modules[a.modules.length - 1]]) {
        const got = rep.modules.find((x) => x.name === m.name)!;
        const ref = explicitReference(a, m);
        assertClose(got.sigma, ref.sigma, { rel: 1e-8, abs: 1e-8 * ref.sigma[0] }, `${dir}/${m.name} σ vs explicit ΔW`);
        assertClose(got.fro, ref.fro, { rel: 1e-8 }, `${dir}/${m.name} ‖ΔW‖_F vs explicit ΔW`);
      }
    } finally {
      a.store.close();
    }
  });
}

function expectFormatError(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${(e as Error)?.message}`);
    assert.ok(e.message.includes(file), `message does not name ${file}: ${e.message}`);
    assert.match(e.problem, problem);
    return true;
  });
}

test('realdata broken files: FormatError naming the file and the problem', (t) => {
  if (!hasReal) { t.skip('no ../shared/realdata'); return; }
  const crlf = path.join(REAL, 'Hirvita6__LoRA-flower-diffusion/pytorch_lora_weights.safetensors');
  expectFormatError(() => readSafetensorsHeader(crlf), crlf, /only 2 bytes/);
  expectFormatError(() => openAdapter(crlf), crlf, /only 2 bytes/);
  const pathText = path.join(REAL, 'JohnScheuer__mini-llm-inference-engine/as_regular_file/model.safetensors');
  expectFormatError(() => readSafetensorsHeader(pathText), pathText, /symbolic link checked out as a plain file/);
  for (const f of ['lora.safetensors', 'feb27.safetensors']) {
    const vit = path.join(REAL, 'JamesQFreeman__LoRA-ViT', f);
    assert.equal(readSafetensorsHeader(vit).tensors.length, 24, 'header itself is fine');
    expectFormatError(() => openAdapter(vit), vit, /no LoRA factor pairs|no LoRA can be formed/);
  }
});

test('realdata: the headers of all other .safetensors files parse', (t) => {
  if (!hasReal) { t.skip('no ../shared/realdata'); return; }
  const broken = new Set(['Hirvita6__LoRA-flower-diffusion/pytorch_lora_weights.safetensors',
    'JohnScheuer__mini-llm-inference-engine/as_regular_file/model.safetensors', 'JohnScheuer__mini-llm-inference-engine/as_symlink/model.safetensors']);
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) { if (e.name !== '_tools') walk(f); } else if (e.name.endsWith('.safetensors')) files.push(f);
    }
  };
  walk(REAL);
  let parsed = 0;
  for (const f of files) {
    const rel = path.relative(REAL, f);
    if (broken.has(rel)) { assert.throws(() => readSafetensorsHeader(f), FormatError, rel); continue; }
    const h = readSafetensorsHeader(f);
    assert.ok(h.tensors.length > 0, `${rel}: no tensors`);
    for (const x of h.tensors) assert.ok(x.offset + x.byteLength <= h.fileSize, `${rel}: ${x.name} beyond file`);
    parsed++;
  }
  assert.ok(parsed >= 14, `only ${parsed} files parsed`);
});
