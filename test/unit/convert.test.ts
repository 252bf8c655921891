/**
 * Adapter format conversion (src/core/convert): every target on the demo adapters and on real adapters
 * (../shared/realdata), round-trip error within the dtype tolerance, chained conversions keep σ(s·B·A),
 * existing outputs are refused, and the round-trip check itself detects a wrong ΔW.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertAdapter, ConvertOptions, ConvertTarget, kohyaName, loraDiff, loraSigma, readFactors } from '../../src/core/convert/convert';
import { hfNameFromLlamaCpp, llamaCppName, ropePermutation } from '../../src/core/convert/gguf';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import type { Adapter } from '../../src/core/formats/adapter';
import { openAdapter } from '../../src/core/formats/open';

const repoRoot = path.resolve(__dirname, '../../..');
const REAL = path.resolve(repoRoot, '../shared/realdata');
const hasReal = fs.existsSync(REAL);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-convert-'));
const ws = path.join(tmp, 'ws');
makeDemoWorkspace(ws);
const DEMO = { lora: path.join(ws, 'adapters', 'demo-lora'), rslora: path.join(ws, 'adapters', 'demo-rslora') };
const ext: Record<ConvertTarget, string> = { peft: '', kohya: '.safetensors', mlx: '', gguf: '.gguf' };
let counter = 0;
const outPath = (t: ConvertTarget): string => path.join(tmp, `out-${counter++}-${t}${ext[t]}`);

async function convert(p: string, t: ConvertTarget, opts: ConvertOptions = {}): Promise<{ out: string; r: Awaited<ReturnType<typeof convertAdapter>> }> {
  const a = openAdapter(p);
  try {
    const out = outPath(t);
    const r = await convertAdapter(a, t, out, opts);
    return { out, r };
  } finally {
    a.store.close();
  }
}

function sigmas(p: string): Map<string, number[]> {
  const a: Adapter = openAdapter(p);
  try {
    const m = new Map<string, number[]>();
    for (const mod of a.modules) {
      const { A, B } = readFactors(a, mod);
      m.set(mod.name, loraSigma(B, A, mod.scale, mod.outFeatures, mod.inFeatures, mod.rank));
    }
    return m;
  } finally {
    a.store.close();
  }
}

function assertSameSigma(a: Map<string, number[]>, b: Map<string, number[]>, rel = 1e-6): void {
  assert.equal(b.size, a.size);
  for (const [name, s] of a) {
    const t = b.get(name);
    assert.ok(t, `module ${name} missing after round trip (have ${[...b.keys()].slice(0, 3).join(', ')})`);
    assert.equal(t.length, s.length);
    for (let i = 0; i < s.length; i++) assert.ok(Math.abs(s[i] - t[i]) <= rel * s[0], `${name} σ${i}: ${s[i]} vs ${t[i]}`);
  }
}

for (const [label, p] of Object.entries(DEMO)) {
  for (const t of ['peft', 'kohya', 'mlx', 'gguf'] as ConvertTarget[]) {
    test(`demo ${label} → ${t}: round trip within tolerance`, async () => {
      const { out, r } = await convert(p, t);
      assert.ok(fs.existsSync(out));
      assert.ok(r.maxRelErr <= r.tolerance, `${r.maxRelErr} > ${r.tolerance}`);
      assert.ok(r.maxRelErr < 1e-6, `lossless conversion expected, got ${r.maxRelErr}`);
      assert.equal(r.modules.length, label === 'lora' ? 14 : 6);
      if (label === 'rslora' && (t === 'mlx' || t === 'gguf')) assert.ok(r.modules.some((m) => m.folded), 'per-module scales must be folded');
    });
  }
}

test('PEFT → kohya → PEFT and PEFT → gguf → PEFT keep names and σ', async () => {
  for (const p of [DEMO.lora, DEMO.rslora]) {
    const s0 = sigmas(p);
    const k = await convert(p, 'kohya');
    const kp = await convert(k.out, 'peft');
    assertSameSigma(s0, sigmas(kp.out));
    const g = await convert(p, 'gguf');
    const gp = await convert(g.out, 'peft', { heads: 4, kvHeads: 2 });
    assertSameSigma(s0, sigmas(gp.out));
    // names restored: module sets equal
    assert.deepEqual([...sigmas(gp.out).keys()].sort(), [...s0.keys()].sort());
  }
});

test('GGUF q/k use the llama.cpp RoPE permutation and names', async () => {
  assert.equal(llamaCppName('model.layers.3.self_attn.q_proj'), 'blk.3.attn_q.weight');
  assert.equal(llamaCppName('model.layers.3.mlp.down_proj'), 'blk.3.ffn_down.weight');
  assert.equal(llamaCppName('transformer.h.0.attn.c_attn'), undefined);
  assert.equal(hfNameFromLlamaCpp('blk.1.attn_output'), 'model.layers.1.self_attn.o_proj');
  const p = ropePermutation(8, 1);
  assert.deepEqual(Array.from(p), [0, 4, 1, 5, 2, 6, 3, 7]);
  const q = ropePermutation(8, 1, true);
  for (let k = 0; k < 8; k++) assert.equal(q[p[k]], k);
  // reading the GGUF without head counts must refuse rather than give a wrong ΔW
  const g = await convert(DEMO.lora, 'gguf');
  await assert.rejects(() => convert(g.out, 'peft'), /head counts/);
});

test('outputs never overwrite: an existing path is refused and left untouched', async () => {
  const a = openAdapter(DEMO.lora);
  try {
    for (const t of ['peft', 'kohya', 'mlx', 'gguf'] as ConvertTarget[]) {
      const out = path.join(tmp, `exists-${t}`);
      fs.writeFileSync(out, 'keep');
      await assert.rejects(() => convertAdapter(a, t, out), /already exists/);
      assert.equal(fs.readFileSync(out, 'utf8'), 'keep');
    }
    await assert.rejects(() => convertAdapter(a, 'peft', DEMO.lora), /already exists|input/);
  } finally {
    a.store.close();
  }
});

test('round-trip measure detects a changed ΔW', () => {
  const r = 2, out = 5, inF = 4;
  const A = Float32Array.from({ length: r * inF }, (_, i) => Math.sin(i + 1));
  const B = Float32Array.from({ length: out * r }, (_, i) => Math.cos(i + 2));
  assert.ok(loraDiff(B, A, 2, r, B, A, 2, r, out, inF) < 1e-12);
  // same ΔW, different factorisation (B·2, A/2, s same)
  assert.ok(loraDiff(B.map((x) => 2 * x), A.map((x) => x / 2), 2, r, B, A, 2, r, out, inF) < 1e-12);
  const ref = Math.hypot(...loraSigma(B, A, 2, out, inF, r));
  assert.ok(Math.abs(loraDiff(B, A, 2.2, r, B, A, 2, r, out, inF) / ref - 0.1) < 1e-9);
});

test('kohya naming', () => {
  assert.equal(kohyaName('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'), 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q');
  assert.equal(kohyaName('text_encoder.text_model.encoder.layers.0.self_attn.q_proj'), 'lora_te_text_model_encoder_layers_0_self_attn_q_proj');
  assert.equal(kohyaName('model.layers.0.self_attn.q_proj'), 'lora_model_layers_0_self_attn_q_proj');
});

test('GGUF refuses modules llama.cpp cannot name, and needs an architecture when unknown', { skip: !hasReal }, async () => {
  await assert.rejects(() => convert(path.join(REAL, 'anirudh-ak__peft-gpt2'), 'gguf'), /no tensor name/);
  await assert.rejects(() => convert(path.join(REAL, 'Arjun-254__Medical_Question_Answering_SLM'), 'gguf'), /general\.architecture/);
});

const REAL_CASES: [string, ConvertTarget[], ConvertOptions?][] = [
  ['anirudh-ak__peft-gpt2', ['peft', 'kohya', 'mlx']],
  ['Arjun-254__Medical_Question_Answering_SLM', ['peft', 'kohya', 'mlx', 'gguf'], { architecture: 'gemma' }],
  ['rafidreezwan__brain-mri-sd-lora-training/pytorch_lora_weights.safetensors', ['peft', 'kohya']],
];
for (const [rel, targets, opts] of REAL_CASES) {
  test(`realdata ${rel}: ${targets.join(', ')}`, { skip: !hasReal }, async () => {
    const p = path.join(REAL, rel);
    const s0 = sigmas(p);
    for (const t of targets) {
      const { out, r } = await convert(p, t, opts);
      assert.ok(r.maxRelErr <= r.tolerance && r.maxRelErr < 1e-6, `${t}: ${r.maxRelErr}`);
      if (t === 'peft') {
        assertSameSigma(s0, sigmas(out));
        if (rel.startsWith('anirudh')) {
          const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
          assert.equal(cfg.fan_in_fan_out, true, 'GPT-2 Conv1D flag kept');
        }
      }
      if (t === 'kohya') {
        const back = await convert(out, 'peft');
        assertSameSigma(s0, sigmas(back.out));
      }
    }
  });
}
