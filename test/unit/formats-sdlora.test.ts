import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fromFloats } from '../../src/core/formats/dtype';
import { FormatError } from '../../src/core/formats/errors';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { detectSdFlavour, openLoraFile, parseCloneofsimoKey, parseDiffusersOldKey, parseKohyaKey } from '../../src/core/formats/sdlora';

const REAL = '/work/shared/realdata';
const FIX = path.resolve(__dirname, '../../../test/fixtures');
const hasReal = fs.existsSync(REAL);

function tmp(name: string, data: Uint8Array): string {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-sd-')), name);
  fs.writeFileSync(f, data);
  return f;
}
const f32 = (n: number, seed = 1): Uint8Array => fromFloats(Array.from({ length: n }, (_, i) => Math.sin(seed * 7 + i)), 'F32');

test('key parsers: kohya, diffusers old, cloneofsimo', () => {
  assert.deepEqual(parseKohyaKey('lora_unet_mid_block_attentions_0_proj_in.lora_up.weight'), { module: 'lora_unet_mid_block_attentions_0_proj_in', role: 'B' });
  assert.deepEqual(parseDiffusersOldKey('up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight'),
    { module: 'up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0', role: 'A' });
  assert.deepEqual(parseCloneofsimoKey('text_encoder:12:up'), { module: 'text_encoder:12', role: 'B' });
  assert.equal(parseCloneofsimoKey('<s1>'), undefined);
  assert.equal(detectSdFlavour(['a.lora_A.weight', 'a.lora_B.weight', 'x.lora_down.weight']), 'diffusers-peft');
});

test('kohya file: alpha scalar (F16) gives alpha/r, missing alpha -> alpha = r with a warning, ss_* summary, LoCon conv', () => {
  const te = 'lora_te_text_model_encoder_layers_3_self_attn_q_proj';
  const un = 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0';
  const cv = 'lora_unet_down_blocks_0_resnets_0_conv1';
  const buf = encodeSafetensors([
    { name: `${te}.lora_down.weight`, dtype: 'F32', shape: [4, 12], data: f32(48, 1) },
    { name: `${te}.lora_up.weight`, dtype: 'F32', shape: [10, 4], data: f32(40, 2) },
    { name: `${te}.alpha`, dtype: 'F16', shape: [], data: fromFloats([8], 'F16') },
    { name: `${un}.lora_down.weight`, dtype: 'F32', shape: [2, 6], data: f32(12, 3) },
    { name: `${un}.lora_up.weight`, dtype: 'F32', shape: [6, 2], data: f32(12, 4) },
    { name: `${cv}.lora_down.weight`, dtype: 'F32', shape: [2, 3, 3, 3], data: f32(54, 5) },
    { name: `${cv}.lora_up.weight`, dtype: 'F32', shape: [5, 2, 1, 1], data: f32(10, 6) },
    { name: `${cv}.alpha`, dtype: 'F32', shape: [], data: fromFloats([1], 'F32') },
    { name: 'lora_unet_x.hada_w1_a', dtype: 'F32', shape: [2, 2], data: f32(4, 7) },
  ], { ss_network_dim: '4', ss_network_alpha: '8', ss_base_model_version: 'sd_v1', 'modelspec.architecture': 'stable-diffusion-v1/lora', ss_network_module: 'networks.lora' });
  const a = openLoraFile(tmp('k.safetensors', buf));
  assert.equal(a.format, 'kohya');
  assert.equal(a.modules.length, 3);
  const q = a.modules.find((m) => m.name === te)!;
  assert.equal(q.rank, 4);
  assert.equal(q.alpha, 8);
  assert.equal(q.scale, 2);
  assert.equal(q.kind, 'q_proj');
  assert.equal(q.layer, 3);
  assert.deepEqual([q.outFeatures, q.inFeatures], [10, 12]);
  const o = a.modules.find((m) => m.name === un)!;
  assert.equal(o.scale, 1);
  assert.equal(o.alpha, 2);
  assert.match(o.scaleSource, /alpha missing/);
  assert.equal(o.kind, 'to_out_0');
  const c = a.modules.find((m) => m.name === cv)!;
  assert.equal(c.conv, true);
  assert.equal(c.inFeatures, 27);
  assert.equal(c.scale, 0.5);
  assert.match(a.warnings.join('\n'), /1 module\(s\) have no alpha tensor: alpha = rank assumed/);
  assert.match(a.warnings.join('\n'), /LyCORIS tensors/);
  assert.deepEqual(a.otherTensors.map((t) => t.name), ['lora_unet_x.hada_w1_a']); // alpha tensors are consumed
  assert.equal(a.summary.rank, 4);
  assert.equal(a.summary.alpha, 8);
  assert.equal(a.summary.baseModel, 'sd_v1');
  assert.equal(a.summary.taskType, 'stable-diffusion-v1/lora');
  assert.equal(a.summary.peftType, 'networks.lora');
  a.store.close();
});

test('malformed: non-scalar alpha, rank mismatch, nothing recognised', () => {
  const m = 'lora_unet_a';
  const bad = encodeSafetensors([
    { name: `${m}.lora_down.weight`, dtype: 'F32', shape: [2, 4], data: f32(8) },
    { name: `${m}.lora_up.weight`, dtype: 'F32', shape: [4, 2], data: f32(8) },
    { name: `${m}.alpha`, dtype: 'F32', shape: [2], data: f32(2) },
  ]);
  assert.throws(() => openLoraFile(tmp('a.safetensors', bad)), /alpha tensor "lora_unet_a.alpha" has shape \[2\]; expected a scalar/);
  const mism = encodeSafetensors([
    { name: `${m}.lora_down.weight`, dtype: 'F32', shape: [2, 4], data: f32(8) },
    { name: `${m}.lora_up.weight`, dtype: 'F32', shape: [4, 3], data: f32(12) },
  ]);
  assert.throws(() => openLoraFile(tmp('b.safetensors', mism)), /rank .* disagree \(2 vs 3\)/);
  const none = encodeSafetensors([{ name: 'model.weight', dtype: 'F32', shape: [2], data: f32(2) }]);
  assert.throws(() => openLoraFile(tmp('c.safetensors', none)), (e: unknown) =>
    e instanceof FormatError && /c\.safetensors: no LoRA factor pairs recognised \(found e\.g\. "model\.weight"/.test(e.message));
});

test('torchtune checkpoint (torch.save fixture): lora_a/lora_b pair, BF16, scale 1 with a warning', () => {
  const a = openLoraFile(path.join(FIX, 'torchtune_lora.pt'));
  assert.equal(a.format, 'torchtune');
  assert.deepEqual(a.modules.map((m) => [m.name, m.rank, m.outFeatures, m.inFeatures]), [
    ['layers.0.attn.q_proj', 2, 6, 8], ['layers.1.mlp.w1', 2, 16, 8]]);
  assert.match(a.warnings.join('\n'), /no alpha recorded.*torchtune/);
  // Sums computed by torch at fixture creation.
  const s0 = a.store.readF64('layers.0.attn.q_proj.lora_b.weight').reduce((x, y) => x + y, 0);
  const s1 = a.store.readF64('layers.1.mlp.w1.lora_b.weight').reduce((x, y) => x + y, 0);
  assert.ok(Math.abs(s0 - -5.640423450618982) < 1e-12);
  assert.equal(s1, 2.25146484375);
  a.store.close();
});

test('real: diffusers old (catundchat .safetensors and .bin) and new (rafidreezwan) normalise to the same modules', { skip: !hasReal }, () => {
  const old = openLoraFile(path.join(REAL, 'catundchat__stable-diffusion-v1.5-lora/pytorch_lora_weights.safetensors'));
  const oldBin = openLoraFile(path.join(REAL, 'catundchat__stable-diffusion-v1.5-lora/pytorch_lora_weights.bin'));
  const nw = openLoraFile(path.join(REAL, 'rafidreezwan__brain-mri-sd-lora-training/pytorch_lora_weights.safetensors'));
  for (const a of [old, oldBin, nw]) {
    assert.equal(a.format, 'diffusers');
    assert.equal(a.modules.length, 128);
    assert.ok(a.modules.every((m) => m.rank === 4 && m.scale === 1));
    assert.equal(a.otherTensors.length, 0);
  }
  const names = (a: typeof old) => a.modules.map((m) => m.name.replace(/^unet\./, '')).sort();
  assert.deepEqual(names(old), names(nw));
  assert.deepEqual(names(old), names(oldBin));
  const k = old.modules.find((m) => m.name === 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k')!;
  assert.deepEqual([k.outFeatures, k.inFeatures, k.kind], [320, 768, 'to_k']);
  assert.ok(old.modules.some((m) => m.kind === 'to_out.0'));
  assert.match(nw.warnings.join('\n'), /no alpha recorded for 128 module/);
  for (const a of [old, oldBin, nw]) a.store.close();
});

test('real: cloneofsimo index keys, TI embeddings kept apart, F16 values', { skip: !hasReal }, () => {
  const d = openLoraFile(path.join(REAL, 'cloneofsimo__lora/lora_disney.safetensors'));
  assert.equal(d.format, 'cloneofsimo');
  assert.equal(d.modules.length, 192);
  assert.ok(d.modules.every((m) => m.rank === 1 && m.scale === 1));
  assert.deepEqual(d.otherTensors.map((t) => t.name).sort(), ['<s1>', '<s2>']);
  assert.match(d.warnings.join('\n'), /2 textual-inversion embedding\(s\): <s1>, <s2>/);
  assert.ok(d.summary.targetModules.includes('text_encoder:CLIPAttention'));
  const s = openLoraFile(path.join(REAL, 'cloneofsimo__lora/analog_svd_rank4.safetensors'));
  const u0 = s.modules.find((m) => m.name === 'unet:0')!;
  assert.deepEqual([u0.rank, u0.outFeatures, u0.B.tensor.dtype], [4, 320, 'F16']);
  // numpy float16 sums of the raw data.
  const sum = (k: string) => s.store.readF64(k).reduce((x, y) => x + y, 0);
  assert.ok(Math.abs(sum('unet:0:up') - -0.01824086904525757) < 1e-12);
  assert.ok(Math.abs(sum('text_encoder:5:down') - -0.8582555055618286) < 1e-12);
  d.store.close(); s.store.close();
});

test('real: JamesQFreeman LoRA-ViT halves give a clear error', { skip: !hasReal }, () => {
  for (const f of ['lora.safetensors', 'feb27.safetensors']) {
    assert.throws(() => openLoraFile(path.join(REAL, 'JamesQFreeman__LoRA-ViT', f)), (e: unknown) =>
      e instanceof FormatError && e.file.endsWith(f) && /24 w_a and 0 w_b tensors .* other halves are missing/.test(e.message));
  }
});
