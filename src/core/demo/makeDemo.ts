/**
 * Deterministic demo workspace: a tiny Llama-shaped base model and LoRA adapters in PEFT layout,
 * written by the project itself (nothing is downloaded). Same bytes on every run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, fromFloats } from '../formats/dtype';
import { encodeSafetensors } from '../formats/safetensors';
import { Rng } from '../util/rng';
import { writeDemoTokenizerAndData } from './tokenizer';
import { peftLoraConfig } from '../surgery/peftConfig';

// The seeded Rng lives in core/util/rng.ts; re-exported for existing callers.
export { Rng };

export interface TinyLlamaConfig {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
}

export const DEMO_CONFIG: TinyLlamaConfig = { hidden: 64, intermediate: 176, layers: 2, heads: 4, kvHeads: 2, vocab: 128 };

/** [out, in] shapes of the Llama linear layers that LoRA usually targets. */
export function llamaModuleShapes(c: TinyLlamaConfig): Record<string, [number, number]> {
  const headDim = c.hidden / c.heads;
  return {
    'self_attn.q_proj': [c.hidden, c.hidden],
    'self_attn.k_proj': [c.kvHeads * headDim, c.hidden],
    'self_attn.v_proj': [c.kvHeads * headDim, c.hidden],
    'self_attn.o_proj': [c.hidden, c.hidden],
    'mlp.gate_proj': [c.intermediate, c.hidden],
    'mlp.up_proj': [c.intermediate, c.hidden],
    'mlp.down_proj': [c.hidden, c.intermediate],
  };
}

type T = { name: string; dtype: DType; shape: number[]; data: Uint8Array };

function tensor(name: string, shape: number[], values: ArrayLike<number>, dtype: DType = 'F32'): T {
  return { name, dtype, shape, data: fromFloats(values, dtype) };
}

/** Writes a tiny Llama base model (config.json + model.safetensors). */
export function writeTinyLlama(dir: string, c: TinyLlamaConfig = DEMO_CONFIG, seed = 1): void {
  fs.mkdirSync(dir, { recursive: true });
  const rng = new Rng(seed);
  const ts: T[] = [tensor('model.embed_tokens.weight', [c.vocab, c.hidden], rng.normals(c.vocab * c.hidden, 0.02))];
  for (let l = 0; l < c.layers; l++) {
    ts.push(tensor(`model.layers.${l}.input_layernorm.weight`, [c.hidden], new Float64Array(c.hidden).fill(1)));
    ts.push(tensor(`model.layers.${l}.post_attention_layernorm.weight`, [c.hidden], new Float64Array(c.hidden).fill(1)));
    for (const [mod, [o, i]] of Object.entries(llamaModuleShapes(c))) {
      ts.push(tensor(`model.layers.${l}.${mod}.weight`, [o, i], rng.normals(o * i, 1 / Math.sqrt(i))));
    }
  }
  ts.push(tensor('model.norm.weight', [c.hidden], new Float64Array(c.hidden).fill(1)));
  ts.push(tensor('lm_head.weight', [c.vocab, c.hidden], rng.normals(c.vocab * c.hidden, 0.02)));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(ts, { format: 'pt', 'lora-lens.demo': 'tiny-llama' }));
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: c.hidden, intermediate_size: c.intermediate,
    num_hidden_layers: c.layers, num_attention_heads: c.heads, num_key_value_heads: c.kvHeads, vocab_size: c.vocab,
    rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 256, torch_dtype: 'float32', tie_word_embeddings: false,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
}

export interface DemoAdapterSpec {
  r: number;
  alpha: number;
  useRslora?: boolean;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
  targets: string[];
  dtype: DType;
  seed: number;
  /** Relative size of B compared with A (1 = balanced-ish; large values make unbalanced factors). */
  bScale: number;
}

/**
 * Writes a PEFT adapter whose factors have a decaying spectrum (so the report has structure):
 * A = diag(d)·G/√in, B = H·diag(d)·bScale/√out with d_i = 0.8^i.
 */
export function writeDemoAdapter(dir: string, base: string, spec: DemoAdapterSpec, c: TinyLlamaConfig = DEMO_CONFIG): void {
  fs.mkdirSync(dir, { recursive: true });
  const rng = new Rng(spec.seed);
  const ts: T[] = [];
  const shapes = llamaModuleShapes(c);
  for (let l = 0; l < c.layers; l++) {
    for (const [mod, [o, i]] of Object.entries(shapes)) {
      const kind = mod.split('.')[1];
      if (!spec.targets.includes(kind)) continue;
      const name = `model.layers.${l}.${mod}`;
      const key = Object.keys(spec.rankPattern ?? {}).find((k) => name === k || name.endsWith(`.${k}`));
      const r = key ? spec.rankPattern![key] : spec.r;
      const a = rng.normals(r * i, 1 / Math.sqrt(i));
      const b = rng.normals(o * r, spec.bScale / Math.sqrt(o));
      for (let k = 0; k < r; k++) {
        const d = 0.8 ** k * (1 + 0.25 * l);
        for (let j = 0; j < i; j++) a[k * i + j] *= d;
        for (let j = 0; j < o; j++) b[j * r + k] *= d;
      }
      ts.push(tensor(`base_model.model.${name}.lora_A.weight`, [r, i], a, spec.dtype));
      ts.push(tensor(`base_model.model.${name}.lora_B.weight`, [o, r], b, spec.dtype));
    }
  }
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(ts, { format: 'pt' }));
  const config = peftLoraConfig({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: base, r: spec.r, lora_alpha: spec.alpha,
    lora_dropout: 0, use_rslora: spec.useRslora ?? false, use_dora: false, target_modules: spec.targets,
    rank_pattern: spec.rankPattern ?? {}, alpha_pattern: spec.alphaPattern ?? {}, fan_in_fan_out: false, bias: 'none',
    init_lora_weights: true, modules_to_save: null, inference_mode: true,
  });
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
}

const TRAIN_PY = `"""Demo training script: LoRA Lens shows hovers on the checkpoint paths below."""
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("tiny-llama")
weights = "tiny-llama/model.safetensors"
model = PeftModel.from_pretrained(base, "adapters/demo-lora")
rs_weights = "adapters/demo-rslora/adapter_model.safetensors"
`;

/** Writes the whole demo workspace into `root` (created if needed). */
export function makeDemoWorkspace(root: string): string[] {
  const written: string[] = [];
  const base = path.join(root, 'tiny-llama');
  writeTinyLlama(base);
  writeDemoTokenizerAndData(base, path.join(root, 'data', 'train.jsonl'));
  written.push(base, path.join(root, 'data', 'train.jsonl'));
  const all = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const lora = path.join(root, 'adapters', 'demo-lora');
  writeDemoAdapter(lora, '../../tiny-llama', { r: 8, alpha: 16, targets: all, dtype: 'F32', seed: 11, bScale: 1 });
  written.push(lora);
  const rs = path.join(root, 'adapters', 'demo-rslora');
  writeDemoAdapter(rs, '../../tiny-llama', {
    r: 16, alpha: 32, useRslora: true, targets: ['q_proj', 'v_proj', 'down_proj'], dtype: 'BF16', seed: 12, bScale: 8,
    rankPattern: { 'layers.1.self_attn.q_proj': 4 }, alphaPattern: { down_proj: 64 },
  });
  written.push(rs);
  fs.writeFileSync(path.join(root, 'train.py'), TRAIN_PY);
  fs.mkdirSync(path.join(root, '.vscode'), { recursive: true });
  fs.writeFileSync(path.join(root, '.vscode', 'settings.json'), JSON.stringify({ 'workbench.startupEditor': 'none', 'security.workspace.trust.enabled': false }, null, 2) + '\n');
  written.push(path.join(root, 'train.py'));
  return written;
}
