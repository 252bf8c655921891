/**
 * PEFT / mlx adapter parsing, scale semantics (PEFT rank_pattern/alpha_pattern/rsLoRA), checkpoint
 * detection, openAdapter entry points, and the deterministic demo workspace (whose analysis is
 * checked against an explicit fp64 ΔW = s·B·A formed in the test and decomposed by Jacobi SVD).
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { Engine } from '../../src/core/engine/ort';
import { fromFloats } from '../../src/core/formats/dtype';
import { FormatError } from '../../src/core/formats/errors';
import { detectCheckpoints, openAdapter } from '../../src/core/formats/open';
import { matchPattern, parseMlxKey, parsePeftKey, peftScale } from '../../src/core/formats/peft';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { singularValues } from '../../src/core/linalg/decomp';
import { mat } from '../../src/core/linalg/dense';
import { assertClose } from './tolerance';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-ad-'));
const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });

const vals = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => Math.sin(seed * 13.7 + i * 0.91) * 0.3);
type T = { name: string; dtype: 'F32'; shape: number[]; data: Uint8Array };
const t = (name: string, shape: number[], seed: number): T => ({ name, dtype: 'F32', shape, data: fromFloats(vals(shape.reduce((a, b) => a * b, 1), seed), 'F32') });

function writeAdapter(dir: string, cfg: Record<string, unknown> | undefined, tensors: T[], file = 'adapter_model.safetensors'): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, file), encodeSafetensors(tensors));
  if (cfg) fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg));
  return dir;
}
const P = 'base_model.model.model.layers';

test('parsePeftKey: lora_A/B with and without adapter name, embeddings, DoRA magnitude, non-LoRA keys', () => {
  assert.deepEqual(parsePeftKey(`${P}.0.self_attn.q_proj.lora_A.weight`), { module: `${P}.0.self_attn.q_proj`, role: 'A' });
  assert.deepEqual(parsePeftKey(`${P}.0.self_attn.q_proj.lora_B.default.weight`), { module: `${P}.0.self_attn.q_proj`, role: 'B' });
  assert.deepEqual(parsePeftKey('base_model.model.embed_tokens.lora_embedding_A'), { module: 'base_model.model.embed_tokens', role: 'A' });
  assert.deepEqual(parsePeftKey('base_model.model.embed_tokens.lora_embedding_B.default'), { module: 'base_model.model.embed_tokens', role: 'B' });
  assert.deepEqual(parsePeftKey(`${P}.3.mlp.up_proj.lora_magnitude_vector`), { module: `${P}.3.mlp.up_proj`, role: 'M' });
  assert.deepEqual(parsePeftKey(`${P}.3.mlp.up_proj.lora_magnitude_vector.default.weight`), { module: `${P}.3.mlp.up_proj`, role: 'M' });
  assert.equal(parsePeftKey('base_model.model.classifier.weight'), undefined);
  assert.equal(parsePeftKey(`${P}.0.self_attn.q_proj.lora_A.weight.extra`), undefined);
  assert.equal(parsePeftKey(`${P}.0.self_attn.q_proj.lora_C.weight`), undefined);
  assert.deepEqual(parseMlxKey('model.layers.0.self_attn.q_proj.lora_a'), { module: 'model.layers.0.self_attn.q_proj', role: 'A' });
  assert.deepEqual(parseMlxKey('model.layers.0.self_attn.q_proj.lora_b'), { module: 'model.layers.0.self_attn.q_proj', role: 'B' });
});

test('matchPattern follows PEFT: dotted-suffix match, regex keys, no partial-component matches', () => {
  const pats = { 'layers.1.self_attn.q_proj': 4, 'mlp\\.(up|gate)_proj': 2, down_proj: 1 };
  assert.equal(matchPattern(pats, 'model.layers.1.self_attn.q_proj'), 'layers.1.self_attn.q_proj');
  assert.equal(matchPattern(pats, 'model.layers.11.self_attn.q_proj'), undefined, '"layers.1" must not match "layers.11"');
  assert.equal(matchPattern(pats, 'model.layers.0.self_attn.q_proj'), undefined);
  assert.equal(matchPattern(pats, 'model.layers.5.mlp.gate_proj'), 'mlp\\.(up|gate)_proj');
  assert.equal(matchPattern(pats, 'model.layers.5.mlp.gate_proj_x'), undefined);
  assert.equal(matchPattern(pats, 'model.layers.5.mlp.down_proj'), 'down_proj');
  assert.equal(matchPattern(pats, 'model.layers.5.mlp.xdown_proj'), undefined, 'suffix must start at a dot');
  assert.equal(matchPattern(pats, 'down_proj'), 'down_proj', 'whole name matches');
  assert.equal(matchPattern(null, 'x'), undefined);
  assert.equal(matchPattern({ '[': 1 }, 'a.['), '[', 'invalid regex falls back to a literal suffix');
});

test('peftScale: alpha/r, rsLoRA alpha/√r, patterns, missing lora_alpha (PEFT default 8), rank mismatch warning', () => {
  const w: string[] = [];
  assert.equal(peftScale({ r: 8, lora_alpha: 16 }, 'm.q_proj', 8, w).scale, 2);
  const rs = peftScale({ r: 16, lora_alpha: 32, use_rslora: true }, 'm.q_proj', 16, w);
  assert.equal(rs.scale, 8);
  assert.match(rs.source, /rsLoRA/);
  const cfg = { r: 8, lora_alpha: 16, use_rslora: true, rank_pattern: { 'layers.1.q_proj': 4 }, alpha_pattern: { q_proj: 64 } };
  const p = peftScale(cfg, 'model.layers.1.q_proj', 4, w);
  assert.equal(p.scale, 64 / 2);
  assert.match(p.source, /rank_pattern "layers\.1\.q_proj"/);
  assert.match(p.source, /alpha_pattern "q_proj"/);
  assert.deepEqual(w, []);
  const noAlpha = peftScale({ r: 4 }, 'm.v', 4, w);
  assert.equal(noAlpha.scale, 2);
  assert.equal(noAlpha.alpha, 8);
  assert.match(noAlpha.source, /PEFT default 8/);
  const mm = peftScale({ r: 8, lora_alpha: 8 }, 'm.v', 4, w);
  assert.equal(mm.scale, 2, 'tensor rank wins');
  assert.ok(w.some((x) => /config rank 8 .* rank 4/.test(x)), w.join('; '));
});

test('openAdapter: missing lora_alpha warns; rank disagreement throws; orphan factor warns', () => {
  const d1 = writeAdapter(path.join(tmpRoot, 'noalpha'), { peft_type: 'LORA', r: 2, target_modules: ['q_proj'] },
    [t(`${P}.0.self_attn.q_proj.lora_A.weight`, [2, 6], 1), t(`${P}.0.self_attn.q_proj.lora_B.weight`, [5, 2], 2)]);
  const a1 = openAdapter(d1);
  try {
    assert.ok(a1.warnings.some((w) => /no lora_alpha: PEFT's default 8/.test(w)), a1.warnings.join('; '));
    assert.equal(a1.modules[0].scale, 4);
    assert.equal(a1.modules[0].name, 'model.layers.0.self_attn.q_proj');
    assert.equal(a1.modules[0].layer, 0);
    assert.equal(a1.modules[0].kind, 'q_proj');
    assert.equal(a1.modules[0].outFeatures, 5);
    assert.equal(a1.modules[0].inFeatures, 6);
  } finally { a1.store.close(); }

  const d2 = writeAdapter(path.join(tmpRoot, 'rankmix'), { peft_type: 'LORA', r: 2, lora_alpha: 4 },
    [t(`${P}.0.self_attn.q_proj.lora_A.weight`, [2, 6], 1), t(`${P}.0.self_attn.q_proj.lora_B.weight`, [5, 3], 2)]);
  assert.throws(() => openAdapter(d2), (e: unknown) => e instanceof FormatError && e.file.endsWith('adapter_model.safetensors') && /rank of .* disagree \(2 vs 3\)/.test(e.problem));

  const d3 = writeAdapter(path.join(tmpRoot, 'orphan'), { peft_type: 'LORA', r: 2, lora_alpha: 4 }, [
    t(`${P}.0.self_attn.q_proj.lora_A.weight`, [2, 6], 1), t(`${P}.0.self_attn.q_proj.lora_B.weight`, [5, 2], 2),
    t(`${P}.1.self_attn.q_proj.lora_A.weight`, [2, 6], 3), t('base_model.model.score.weight', [2, 6], 4),
  ]);
  const a3 = openAdapter(d3);
  try {
    assert.equal(a3.modules.length, 1);
    assert.ok(a3.warnings.some((w) => /layers\.1\.self_attn\.q_proj.*B factor is missing/.test(w)), a3.warnings.join('; '));
    assert.deepEqual(a3.otherTensors.map((x) => x.name), ['base_model.model.score.weight']);
  } finally { a3.store.close(); }

  const d4 = writeAdapter(path.join(tmpRoot, 'nopairs'), { peft_type: 'LORA', r: 2, lora_alpha: 4 }, [t('w', [2, 2], 1)]);
  assert.throws(() => openAdapter(d4), (e: unknown) => e instanceof FormatError && /no LoRA factor pairs/.test(e.problem));
  const d5 = writeAdapter(path.join(tmpRoot, 'notlora'), { peft_type: 'IA3' }, [t('w', [2, 2], 1)]);
  assert.throws(() => openAdapter(d5), (e: unknown) => e instanceof FormatError && /peft_type is IA3/.test(e.problem));
  assert.throws(() => openAdapter(path.join(tmpRoot, 'nothing-here')), (e: unknown) => e instanceof FormatError && /does not exist/.test(e.problem));
});

test('openAdapter on folder, weights file and adapter_config.json path give the same modules', () => {
  const d = writeAdapter(path.join(tmpRoot, 'entry'), { peft_type: 'LORA', r: 2, lora_alpha: 6 }, [
    t(`${P}.0.self_attn.q_proj.lora_A.weight`, [2, 6], 1), t(`${P}.0.self_attn.q_proj.lora_B.weight`, [5, 2], 2),
    t(`${P}.0.self_attn.v_proj.lora_A.weight`, [2, 6], 3), t(`${P}.0.self_attn.v_proj.lora_B.weight`, [4, 2], 4),
  ]);
  const paths = [d, path.join(d, 'adapter_model.safetensors'), path.join(d, 'adapter_config.json')];
  const sigs = paths.map((p) => {
    const a = openAdapter(p);
    try {
      assert.equal(a.format, 'peft');
      assert.equal(a.weightsFile, path.join(d, 'adapter_model.safetensors'));
      return JSON.stringify(a.modules.map((m) => [m.name, m.rank, m.scale, m.outFeatures, m.inFeatures]));
    } finally { a.store.close(); }
  });
  assert.equal(sigs[1], sigs[0]);
  assert.equal(sigs[2], sigs[0]);
  assert.match(sigs[0], /"model.layers.0.self_attn.q_proj",2,3,5,6/);
  // no config: scale 1 with a warning
  const lone = path.join(tmpRoot, 'lone');
  writeAdapter(lone, undefined, [t('x.lora_A.weight', [1, 3], 1), t('x.lora_B.weight', [2, 1], 2)], 'lora.safetensors');
  const a = openAdapter(path.join(lone, 'lora.safetensors'));
  try {
    assert.equal(a.modules[0].scale, 1);
    assert.ok(a.warnings.some((w) => /no adapter_config\.json/.test(w)));
  } finally { a.store.close(); }
});

test('detectCheckpoints: adapter folders, sharded index as one entry, single files, trainer pickles ignored', () => {
  const root = path.join(tmpRoot, 'tree');
  writeAdapter(path.join(root, 'runs', 'peft-a'), { peft_type: 'LORA', r: 2, lora_alpha: 4 }, [t('a.lora_A.weight', [2, 2], 1)]);
  fs.writeFileSync(path.join(root, 'runs', 'peft-a', 'training_args.bin'), 'x');
  fs.writeFileSync(path.join(root, 'runs', 'peft-a', 'optimizer.pt'), 'x');
  writeAdapter(path.join(root, 'mlx'), { lora_parameters: { rank: 8, scale: 10 } }, [t('a.lora_a', [2, 2], 1)], 'adapters.safetensors');
  fs.writeFileSync(path.join(root, 'mlx', '0000100_adapters.safetensors'), encodeSafetensors([t('a.lora_a', [2, 2], 1)]));
  const sh = path.join(root, 'model');
  fs.mkdirSync(sh, { recursive: true });
  fs.writeFileSync(path.join(sh, 'model-00001-of-00002.safetensors'), encodeSafetensors([t('w1', [2], 1)]));
  fs.writeFileSync(path.join(sh, 'model-00002-of-00002.safetensors'), encodeSafetensors([t('w2', [2], 1)]));
  fs.writeFileSync(path.join(sh, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w1: 'model-00001-of-00002.safetensors', w2: 'model-00002-of-00002.safetensors' } }));
  fs.writeFileSync(path.join(root, 'single.safetensors'), encodeSafetensors([t('w', [2], 1)]));
  fs.writeFileSync(path.join(root, 'tiny.gguf'), 'GGUF');
  fs.writeFileSync(path.join(root, 'ckpt.pt'), 'x');
  fs.writeFileSync(path.join(root, 'rng_state.pth'), 'x');
  fs.writeFileSync(path.join(root, 'notes.txt'), 'x');
  fs.mkdirSync(path.join(root, 'node_modules', 'pkg'), { recursive: true });
  fs.writeFileSync(path.join(root, 'node_modules', 'pkg', 'w.safetensors'), 'x');
  const found = detectCheckpoints(root);
  const rel = (p: string): string => path.relative(root, p);
  const byPath = new Map(found.map((c) => [rel(c.path), c]));
  assert.equal(byPath.get('runs/peft-a')?.kind, 'peft-adapter');
  assert.deepEqual(byPath.get('runs/peft-a')?.files.map(rel), ['runs/peft-a/adapter_model.safetensors']);
  assert.equal(byPath.get('mlx')?.kind, 'mlx-adapter');
  assert.deepEqual(byPath.get('mlx')?.files.map(rel).sort(), ['mlx/0000100_adapters.safetensors', 'mlx/adapters.safetensors']);
  assert.equal(byPath.get('model/model.safetensors.index.json')?.kind, 'sharded');
  assert.equal(byPath.get('single.safetensors')?.kind, 'safetensors');
  assert.equal(byPath.get('tiny.gguf')?.kind, 'gguf');
  assert.equal(byPath.get('ckpt.pt')?.kind, 'pickle');
  const all = found.map((c) => rel(c.path)).sort();
  assert.deepEqual(all, ['ckpt.pt', 'mlx', 'model/model.safetensors.index.json', 'runs/peft-a', 'single.safetensors', 'tiny.gguf'],
    'shards, adapter weights, trainer pickles, node_modules and non-weights must not be listed separately');
});

function sha256Tree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else out.set(path.relative(root, f), crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex'));
    }
  };
  walk(root);
  return out;
}

test('demo workspace is deterministic (same sha256 for every file on two runs)', () => {
  const r1 = path.join(tmpRoot, 'demo1'), r2 = path.join(tmpRoot, 'demo2');
  makeDemoWorkspace(r1);
  makeDemoWorkspace(r2);
  const h1 = sha256Tree(r1), h2 = sha256Tree(r2);
  assert.ok(h1.size >= 8, [...h1.keys()].join(', '));
  assert.deepEqual([...h2.entries()].sort(), [...h1.entries()].sort());
  for (const f of ['tiny-llama/model.safetensors', 'adapters/demo-lora/adapter_model.safetensors', 'adapters/demo-rslora/adapter_config.json', 'train.py']) assert.ok(h1.has(f), f);
});

test('demo adapters: analysis matches explicit fp64 ΔW = s·B·A (formed in the test) and PEFT scales', async () => {
  const root = path.join(tmpRoot, 'demo1');
  // independent expected scales from the demo's PEFT config semantics
  const expectScale: Record<string, (name: string) => number> = {
    'demo-lora': () => 16 / 8,
    'demo-rslora': (n) => (n.endsWith('down_proj') ? 64 : 32) / Math.sqrt(n === 'model.layers.1.self_attn.q_proj' ? 4 : 16),
  };
  for (const name of ['demo-lora', 'demo-rslora']) {
    const a = openAdapter(path.join(root, 'adapters', name));
    try {
      const rep = await analyzeAdapter(a, { engine });
      assert.equal(rep.modules.length, a.modules.length);
      assert.ok(rep.modules.length >= 6);
      for (const m of a.modules) {
        const r = rep.modules.find((x) => x.name === m.name)!;
        assertClose(m.scale, expectScale[name](m.name), { rel: 1e-15 }, `${name}/${m.name} scale`);
        const A = a.store.readF64(m.A.tensor.name), B = a.store.readF64(m.B.tensor.name);
        const rk = m.rank, o = m.outFeatures, i = m.inFeatures;
        const dW = mat(o, i);
        for (let p = 0; p < o; p++) for (let k = 0; k < rk; k++) {
          const b = m.scale * B[p * rk + k];
          for (let q = 0; q < i; q++) dW.data[p * i + q] += b * A[k * i + q];
        }
        const s = singularValues(dW).subarray(0, rk);
        // factors are F32/BF16 (exact in fp32) → only fp64 algorithm error remains (see analysis.test.ts)
        assertClose(r.sigma, s, { rel: 1e-9, abs: 1e-9 * s[0] }, `${name}/${m.name} σ`);
        let fro = 0;
        for (const v of dW.data) fro += v * v;
        assertClose(r.fro, Math.sqrt(fro), { rel: 1e-9 }, `${name}/${m.name} ‖ΔW‖_F`);
      }
    } finally { a.store.close(); }
  }
});
