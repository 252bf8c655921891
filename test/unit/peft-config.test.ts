/**
 * Every adapter_config.json LoRA Lens writes has exactly the fields and JSON types of PEFT's LoraConfig
 * as `save_pretrained` writes it in PEFT 0.10.0 — the oldest release with every option LoRA Lens uses
 * (use_rslora, rank_pattern / alpha_pattern, use_dora), and PEFT < 0.14 rejects unknown keys, so this key
 * set loads in every PEFT ≥ 0.10 (src/core/surgery/peftConfig.ts explains the choice).
 *
 * The schema below is transcribed from PEFT v0.10.0's dataclass fields and annotations
 * (src/peft/config.py PeftConfigMixin/PeftConfig, src/peft/tuners/lora/config.py LoraConfig,
 * src/peft/utils/peft_types.py TaskType), in dataclass order; it is independent of LoRA Lens's code.
 *
 * Writers covered: demo adapters (makeDemo.ts), convert → peft from PEFT / kohya / MLX / GGUF sources,
 * reduce, combine (linear and SVD), rescale, rebalance (keeps the input config byte for byte), LoRA
 * training on a Hugging Face model (hfTrainer.ts) and on the tiny research model (trainer.ts).
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { saveAdapter } from '../../src/core/train/trainer';
import { peftLoraConfig, PEFT_CONFIG_VERSION } from '../../src/core/surgery/peftConfig';

type Check = (v: unknown) => boolean;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str: Check = (v) => typeof v === 'string';
const int: Check = (v) => Number.isInteger(v);
const nullOr = (c: Check): Check => (v) => v === null || c(v);
const listOf = (c: Check): Check => (v) => Array.isArray(v) && v.every(c);
const oneOf = (...xs: unknown[]): Check => (v) => xs.includes(v);
const TASK_TYPES = ['SEQ_CLS', 'SEQ_2_SEQ_LM', 'CAUSAL_LM', 'TOKEN_CLS', 'QUESTION_ANS', 'FEATURE_EXTRACTION'];

/** PEFT 0.10.0 LoraConfig, as JSON (field: annotation → accepted JSON values). */
const PEFT_0_10_LORA: [string, Check][] = [
  ['peft_type', oneOf('LORA')], //                     Optional[Union[str, PeftType]]
  ['auto_mapping', nullOr(isObj)], //                  Optional[dict]
  ['base_model_name_or_path', nullOr(str)], //         Optional[str]
  ['revision', nullOr(str)], //                        Optional[str]
  ['task_type', nullOr(oneOf(...TASK_TYPES))], //      Optional[Union[str, TaskType]]
  ['inference_mode', (v) => typeof v === 'boolean'], // bool
  ['r', (v) => int(v) && (v as number) > 0], //        int
  ['target_modules', nullOr((v) => str(v) || listOf(str)(v))], // Optional[Union[list[str], str]]
  // int in the annotation; PEFT only divides by it (scaling = lora_alpha / r), fractional values load and work
  ['lora_alpha', (v) => typeof v === 'number' && Number.isFinite(v)],
  ['lora_dropout', (v) => typeof v === 'number' && v >= 0 && v < 1], // float
  ['fan_in_fan_out', (v) => typeof v === 'boolean'], // bool
  ['bias', oneOf('none', 'all', 'lora_only')], //      Literal["none", "all", "lora_only"]
  ['use_rslora', (v) => typeof v === 'boolean'], //    bool
  ['modules_to_save', nullOr(listOf(str))], //         Optional[list[str]]
  ['init_lora_weights', oneOf(true, false, 'gaussian', 'loftq')], // bool | Literal["gaussian", "loftq"]
  ['layers_to_transform', nullOr((v) => int(v) || listOf(int)(v))], // Optional[Union[list[int], int]]
  ['layers_pattern', nullOr((v) => str(v) || listOf(str)(v))], // Optional[Union[list[str], str]]
  ['rank_pattern', (v) => isObj(v) && Object.values(v).every((x) => int(x) && (x as number) > 0)], // Optional[dict] (name → rank)
  ['alpha_pattern', (v) => isObj(v) && Object.values(v).every((x) => typeof x === 'number')], //   Optional[dict] (name → alpha)
  ['megatron_config', nullOr(isObj)], //                Optional[dict]
  ['megatron_core', nullOr(str)], //                    Optional[str]
  ['loftq_config', isObj], //                           Union[LoftQConfig, dict]
  ['use_dora', (v) => typeof v === 'boolean'], //       bool
  ['layer_replication', nullOr(listOf((p) => Array.isArray(p) && p.length === 2 && p.every(int)))], // Optional[list[tuple[int, int]]]
];

function assertPeftShaped(file: string): Record<string, unknown> {
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(cfg), PEFT_0_10_LORA.map(([k]) => k), `${file}: exactly PEFT ${PEFT_CONFIG_VERSION} LoraConfig's fields`);
  for (const [k, ok] of PEFT_0_10_LORA) assert.ok(ok(cfg[k]), `${file}: ${k} = ${JSON.stringify(cfg[k])} has PEFT's type`);
  return cfg;
}

const CLI = path.join(__dirname, '..', '..', 'src', 'core', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-peftcfg-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const ws = path.join(tmp, 'ws');
makeDemoWorkspace(ws);
const LORA = path.join(ws, 'adapters', 'demo-lora'), RS = path.join(ws, 'adapters', 'demo-rslora'), BASE = path.join(ws, 'tiny-llama');
const out = (n: string): string => path.join(tmp, n);

/** `lora-lens …` as a subprocess of the compiled CLI (out/src/core/cli.js, next to this test). */
async function cli(...args: string[]): Promise<void> {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `lora-lens ${args.join(' ')}: ${r.stderr}`);
}

test(`demo adapters and every surgery/convert output: PEFT ${PEFT_CONFIG_VERSION} LoraConfig fields and types`, async () => {
  const lora = assertPeftShaped(path.join(LORA, 'adapter_config.json'));
  assert.equal(lora.r, 8);
  const rs = assertPeftShaped(path.join(RS, 'adapter_config.json'));
  assert.equal(rs.use_rslora, true);
  assert.deepEqual(rs.rank_pattern, { 'layers.1.self_attn.q_proj': 4 });

  await cli('convert', RS, '--to', 'peft', out('rs-peft'));
  const c1 = assertPeftShaped(path.join(out('rs-peft'), 'adapter_config.json'));
  assert.ok(Object.keys(c1.rank_pattern as object).length > 0, 'per-module ranks kept in rank_pattern');

  await cli('convert', LORA, '--to', 'kohya', out('k.safetensors'));
  await cli('convert', out('k.safetensors'), '--to', 'peft', out('from-kohya'));
  assertPeftShaped(path.join(out('from-kohya'), 'adapter_config.json'));

  await cli('convert', LORA, '--to', 'mlx', out('mlx'));
  await cli('convert', out('mlx'), '--to', 'peft', out('from-mlx'));
  assertPeftShaped(path.join(out('from-mlx'), 'adapter_config.json'));

  await cli('convert', LORA, '--to', 'gguf', out('l.gguf'), '--base', BASE);
  await cli('convert', out('l.gguf'), '--to', 'peft', out('from-gguf'), '--base', BASE);
  assertPeftShaped(path.join(out('from-gguf'), 'adapter_config.json'));

  await cli('reduce', RS, out('reduced'), '--rank', '2');
  assert.equal(assertPeftShaped(path.join(out('reduced'), 'adapter_config.json')).r, 2);

  await cli('combine', LORA, '0.5', RS, '0.5', out('combined'));
  assertPeftShaped(path.join(out('combined'), 'adapter_config.json'));
  await cli('combine', LORA, '1', RS, '1', out('combined-svd'), '--svd', '--rank', '4');
  assertPeftShaped(path.join(out('combined-svd'), 'adapter_config.json'));

  await cli('rescale', RS, '1.5', out('rescaled'));
  assert.equal(assertPeftShaped(path.join(out('rescaled'), 'adapter_config.json')).lora_alpha, 48);

  await cli('rebalance', LORA, out('rebalanced'));
  assertPeftShaped(path.join(out('rebalanced'), 'adapter_config.json'));
});

test('LoRA training writes PEFT-shaped configs (Hugging Face model and the tiny research model)', async () => {
  await cli('train', BASE, path.join(ws, 'data', 'train.jsonl'), out('trained'), '--steps', '1', '--r', '2', '--alpha', '4', '--targets', 'q_proj,v_proj');
  const t = assertPeftShaped(path.join(out('trained'), 'adapter_config.json'));
  assert.deepEqual([t.r, t.lora_alpha, t.task_type, t.target_modules], [2, 4, 'CAUSAL_LM', ['q_proj', 'v_proj']]);

  const dir = out('tiny-trained');
  const A = { shape: [2, 4], data: new Float64Array(8) }, B = { shape: [4, 2], data: new Float64Array(8) };
  saveAdapter(dir, { targets: ['layers.0.attn.q'] as never, r: 2, alpha: 4 }, { 'layers.0.attn.q.lora_A.weight': A, 'layers.0.attn.q.lora_B.weight': B });
  assertPeftShaped(path.join(dir, 'adapter_config.json'));
});

test('peftLoraConfig: newer-PEFT keys only when they mean something, foreign keys dropped, bad r / alpha refused', () => {
  const c = peftLoraConfig({
    r: 4, lora_alpha: 8, target_modules: new Set(['q_proj']) as unknown, exclude_modules: null, lora_bias: false, qalora_group_size: 16,
    use_qalora: false, eva_config: null, target_parameters: [], my_tool_note: 'x', rank_pattern: null,
  });
  assert.deepEqual(Object.keys(c), PEFT_0_10_LORA.map(([k]) => k));
  assert.deepEqual(c.target_modules, ['q_proj']);
  assert.deepEqual(c.rank_pattern, {});
  const kept = peftLoraConfig({ r: 4, lora_alpha: 8, lora_bias: true, exclude_modules: ['lm_head'] });
  assert.equal(kept.lora_bias, true, 'a non-default newer option is kept (dropping it would change the adapter)');
  assert.deepEqual(kept.exclude_modules, ['lm_head']);
  assert.throws(() => peftLoraConfig({ r: 0, lora_alpha: 8 }), /r must be a positive integer/);
  assert.throws(() => peftLoraConfig({ r: 2.5, lora_alpha: 8 }), /r must be a positive integer/);
  assert.throws(() => peftLoraConfig({ r: 2, lora_alpha: 'x' }), /lora_alpha must be a finite number/);
});
