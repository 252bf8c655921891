/**
 * Hugging Face Llama-style base model folder → GGUF (llama.cpp `llama` architecture), F32 or F16:
 * `lora-lens convert MODEL_DIR --to gguf OUT.gguf [--gguf-type auto|f32|f16]`.
 *
 * What llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM / MistralForCausalLM, restricted to
 * what LoRA Lens can check (test/unit/gguf-llamacpp.test.ts loads the result in llama.cpp and compares
 * next-token probabilities with LoRA Lens's own forward pass):
 *   - hyper-parameters as `llama.*` keys (context, embedding, block count, FFN, heads, KV heads,
 *     rope dimension / freq base, RMS eps, vocab size; key/value length when head_dim ≠ hidden/heads);
 *   - tensors renamed (token_embd, blk.N.attn_norm/attn_q/…/ffn_down, output_norm, output) and the
 *     q/k rows (weights and biases) permuted into llama.cpp's interleaved RoPE order
 *     (`LlamaModel.permute`, ropePermutation in gguf.ts);
 *   - 1-D tensors (norms, biases) stay F32 in an F16 file, as the Python converter does;
 *   - the tokenizer from tokenizer.json + tokenizer_config.json: WordPiece → llama.cpp `bert` (WPM)
 *     vocabulary ("##x" → "x", other words → "▁x", special tokens kept) and byte-level BPE → `gpt2`
 *     (tokens + merges). Token ids are kept; the vocabulary is padded to vocab_size with [PADn] tokens.
 *     Other tokenizer models (SentencePiece/Unigram, BPE without ByteLevel) are refused with a message.
 *
 * Not handled (refused with a message): rope_scaling other than default, hidden_act other than silu,
 * quantized or non-float tensors, architectures other than llama/mistral.
 *
 * Written tensor by tensor (one tensor in memory at a time) to a temporary file that is renamed into
 * place only when complete; the output path must not exist.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openBaseModel } from '../base/basemodel';
import { readJsonFile } from '../formats/peft';
import { FormatError } from '../formats/errors';
import { OutputExistsError } from '../formats/writer';
import { GgufKv, ggufHeader, ggufTensorBytes, ropePermutation } from './gguf';

export interface GgufModelResult {
  out: string;
  architecture: 'llama';
  outDtype: 'F32' | 'F16';
  tensors: number;
  vocab: { model: string; tokens: number };
  warnings: string[];
}

interface Plan {
  name: string;
  src: string;
  shape: number[];
  type: 'F32' | 'F16';
  perm?: Int32Array;
}

const LLAMA_TYPES = ['llama', 'mistral'];
const LAYER_MAP: Record<string, string> = {
  input_layernorm: 'attn_norm', post_attention_layernorm: 'ffn_norm',
  'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
};

/** True when `dir` is a Hugging Face model folder (config.json with a model_type), not an adapter. */
export function isHfModelDir(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory() && fs.existsSync(path.join(dir, 'config.json')) && !fs.existsSync(path.join(dir, 'adapter_config.json'));
  } catch {
    return false;
  }
}

const numKey = (cfg: Record<string, unknown>, file: string, k: string, d?: number): number => {
  const v = cfg[k];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (d !== undefined && (v === undefined || v === null)) return d;
  throw new FormatError(file, `"${k}" is missing or not a number`);
};

// ---- tokenizer ---------------------------------------------------------------------------------

const TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5;

function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** GGUF tokenizer keys from tokenizer.json (+ tokenizer_config.json), vocabulary padded to `vocabSize`. */
function tokenizerKvs(dir: string, vocabSize: number, warnings: string[]): { kvs: GgufKv[]; model: string; tokens: number } {
  const tjFile = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tjFile)) throw new FormatError(dir, 'has no tokenizer.json; GGUF needs the vocabulary (only tokenizer.json is read)');
  const tj = readJsonFile(tjFile);
  const tcFile = path.join(dir, 'tokenizer_config.json');
  const tc = fs.existsSync(tcFile) ? readJsonFile(tcFile) : {};
  const model = (tj.model ?? {}) as Record<string, unknown>;
  const vocab = model.vocab as Record<string, number> | undefined;
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) throw new FormatError(tjFile, `model.vocab is not a token → id map (tokenizer model "${String(model.type)}")`);
  const added = Array.isArray(tj.added_tokens) ? (tj.added_tokens as { id: number; content: string; special?: boolean }[]) : [];
  const byId = new Map<number, string>();
  const put = (tok: unknown, id: unknown): void => {
    if (typeof tok !== 'string' || !Number.isInteger(id) || (id as number) < 0) throw new FormatError(tjFile, `token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}, not a non-negative integer`);
    if ((id as number) >= vocabSize) throw new FormatError(tjFile, `token id ${id} ≥ the model's vocab_size ${vocabSize}`);
    byId.set(id as number, tok);
  };
  for (const [tok, id] of Object.entries(vocab)) put(tok, id);
  for (const a of added) put(a?.content, a?.id);
  const special = new Set(added.filter((a) => a.special).map((a) => a.id));
  const unkName = tokenName(tc.unk_token) ?? (typeof model.unk_token === 'string' ? model.unk_token : undefined);
  const type = String(model.type ?? '');
  const decoderType = String((tj.decoder as { type?: unknown } | null)?.type ?? '');
  const preType = JSON.stringify(tj.pre_tokenizer ?? null);
  let ggmlModel: string;
  let spell = (t: string): string => t;
  const extra: GgufKv[] = [];
  if (type === 'WordPiece') {
    // llama.cpp's WPM vocabulary marks word starts with ▁ and stores continuation pieces bare
    // (convert_hf_to_gguf.py BertModel.set_vocab does the same mapping).
    ggmlModel = 'bert';
    const prefix = typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '##';
    spell = (t) => (t.startsWith(prefix) ? t.slice(prefix.length) : '\u2581' + t);
  } else if (type === 'BPE' && (decoderType === 'ByteLevel' || preType.includes('"ByteLevel"'))) {
    ggmlModel = 'gpt2';
    const merges = Array.isArray(model.merges) ? (model.merges as unknown[]).map((m) => (Array.isArray(m) ? m.join(' ') : String(m))) : [];
    extra.push({ key: 'tokenizer.ggml.merges', type: 'string[]', value: merges });
    warnings.push('byte-level BPE: llama.cpp pre-tokenizes with its "default" regex, which may split text differently from this tokenizer.json (token ids and the model are unaffected)');
  } else {
    throw new FormatError(tjFile, `tokenizer model "${type}"${type === 'BPE' ? ' without ByteLevel' : ''} is not converted to GGUF (WordPiece and byte-level BPE are)`);
  }
  const tokens: string[] = [], types: number[] = [];
  for (let id = 0; id < vocabSize; id++) {
    const t = byId.get(id);
    if (t === undefined) { tokens.push(`[PAD${id}]`); types.push(TOKEN_UNUSED); continue; }
    if (special.has(id)) { tokens.push(t); types.push(t === unkName ? TOKEN_UNKNOWN : TOKEN_CONTROL); continue; }
    const isAdded = added.some((a) => a.id === id);
    tokens.push(isAdded ? t : spell(t));
    types.push(t === unkName ? TOKEN_UNKNOWN : isAdded ? TOKEN_USER_DEFINED : TOKEN_NORMAL);
  }
  const kvs: GgufKv[] = [
    { key: 'tokenizer.ggml.model', type: 'string', value: ggmlModel },
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
    { key: 'tokenizer.ggml.tokens', type: 'string[]', value: tokens },
    { key: 'tokenizer.ggml.token_type', type: 'i32[]', value: types },
    ...extra,
  ];
  const idOf = (v: unknown): number | undefined => {
    const n = tokenName(v);
    if (n === undefined) return undefined;
    return added.find((a) => a.content === n)?.id ?? vocab[n];
  };
  for (const [k, key] of [['bos_token', 'bos'], ['eos_token', 'eos'], ['unk_token', 'unknown'], ['pad_token', 'padding']] as const) {
    const id = idOf(tc[k]) ?? (k === 'unk_token' ? idOf(unkName) : undefined);
    if (id !== undefined) kvs.push({ key: `tokenizer.ggml.${key}_token_id`, type: 'u32', value: id });
  }
  // BOS is added when the tokenizer says so (tokenizer_config add_bos_token, or a post-processor
  // template that starts with the BOS token).
  const tmpl = (tj.post_processor as { type?: string; single?: { SpecialToken?: { id?: string } }[] } | null) ?? null;
  const bosName = tokenName(tc.bos_token);
  const addBos = typeof tc.add_bos_token === 'boolean' ? tc.add_bos_token : !!(tmpl?.type === 'TemplateProcessing' && bosName && tmpl.single?.[0]?.SpecialToken?.id === bosName);
  kvs.push({ key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: addBos }, { key: 'tokenizer.ggml.add_eos_token', type: 'bool', value: tc.add_eos_token === true });
  return { kvs, model: ggmlModel, tokens: tokens.length };
}

// ---- model -------------------------------------------------------------------------------------

/** Converts a Llama-style HF model folder to a GGUF file at `out` (must not exist). */
export function convertModelToGguf(dir: string, out: string, opts: { ggufType?: 'auto' | 'F32' | 'F16' } = {}): GgufModelResult {
  if (fs.existsSync(out)) throw new OutputExistsError(out);
  const bm = openBaseModel(dir);
  const cfgFile = path.join(dir, 'config.json');
  const warnings: string[] = [];
  try {
    const cfg = bm.config;
    const mt = String(cfg.model_type ?? '');
    const archs = Array.isArray(cfg.architectures) ? (cfg.architectures as unknown[]).map(String) : [];
    if (!LLAMA_TYPES.includes(mt) && !archs.some((a) => /^(Llama|Mistral)ForCausalLM$/.test(a))) {
      throw new FormatError(cfgFile, `model_type "${mt}" is not converted to GGUF (Llama-style models only: llama, mistral)`);
    }
    const rs = cfg.rope_scaling as Record<string, unknown> | null | undefined;
    if (rs && (rs.rope_type ?? rs.type) !== 'default') throw new FormatError(cfgFile, `rope_scaling ${JSON.stringify(rs)} is not converted to GGUF`);
    if ((cfg.hidden_act ?? 'silu') !== 'silu') throw new FormatError(cfgFile, `hidden_act "${String(cfg.hidden_act)}" is not a Llama MLP (silu)`);
    const H = numKey(cfg, cfgFile, 'hidden_size'), L = numKey(cfg, cfgFile, 'num_hidden_layers'), nh = numKey(cfg, cfgFile, 'num_attention_heads');
    const nkv = numKey(cfg, cfgFile, 'num_key_value_heads', nh), V = numKey(cfg, cfgFile, 'vocab_size'), F = numKey(cfg, cfgFile, 'intermediate_size');
    const hd = numKey(cfg, cfgFile, 'head_dim', H / nh);
    if (![H, L, nh, nkv, V, F, hd].every((x) => Number.isInteger(x) && x > 0) || nh % nkv !== 0 || hd % 2 !== 0) {
      throw new FormatError(cfgFile, `inconsistent sizes (hidden ${H}, layers ${L}, heads ${nh}, kv heads ${nkv}, head_dim ${hd}, vocab ${V}, intermediate ${F})`);
    }
    const tied = cfg.tie_word_embeddings === true;
    const sw = cfg.sliding_window;
    if (typeof sw === 'number' && sw > 0 && sw < numKey(cfg, cfgFile, 'max_position_embeddings', 2048)) {
      warnings.push(`sliding_window ${sw} is not written: llama.cpp's llama architecture attends to the whole context, so outputs differ from the Hugging Face model beyond ${sw} tokens`);
    }

    const store = bm.store;
    const srcName = (n: string): string | undefined => [n, n.replace(/^model\./, '')].find((c) => store.tensors.has(c));
    const want = opts.ggufType ?? 'auto';
    const srcDtypes = new Set([...store.tensors.values()].map((t) => t.dtype));
    for (const d of srcDtypes) if (!['F32', 'F16', 'BF16', 'F64'].includes(d)) throw new FormatError(store.path, `holds ${d} tensors; only float checkpoints are converted to GGUF`);
    const outDtype: 'F32' | 'F16' = want === 'auto' ? ([...srcDtypes].every((d) => d === 'F32' || d === 'F64') ? 'F32' : 'F16') : want;

    const plans: Plan[] = [];
    const used = new Set<string>();
    const add = (hf: string, gguf: string, shape: number[], perm?: Int32Array): void => {
      const s = srcName(hf);
      if (!s) throw new FormatError(store.path, `has no tensor "${hf}"`);
      const info = store.tensors.get(s)!;
      if (info.shape.join(',') !== shape.join(',')) throw new FormatError(store.path, `"${s}" has shape [${info.shape}], config.json implies [${shape}]`);
      used.add(s);
      plans.push({ name: gguf, src: s, shape, type: shape.length >= 2 ? outDtype : 'F32', perm });
    };
    const qPerm = ropePermutation(nh * hd, nh), kPerm = ropePermutation(nkv * hd, nkv);
    add('model.embed_tokens.weight', 'token_embd.weight', [V, H]);
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`, b = `blk.${l}`;
      add(`${p}.input_layernorm.weight`, `${b}.attn_norm.weight`, [H]);
      const lin: [string, number, number, Int32Array?][] = [
        ['self_attn.q_proj', nh * hd, H, qPerm], ['self_attn.k_proj', nkv * hd, H, kPerm], ['self_attn.v_proj', nkv * hd, H],
        ['self_attn.o_proj', H, nh * hd], ['mlp.gate_proj', F, H], ['mlp.up_proj', F, H], ['mlp.down_proj', H, F],
      ];
      for (const [m, o, i, perm] of lin) {
        add(`${p}.${m}.weight`, `${b}.${LAYER_MAP[m]}.weight`, [o, i], perm);
        if (srcName(`${p}.${m}.bias`)) add(`${p}.${m}.bias`, `${b}.${LAYER_MAP[m]}.bias`, [o], perm);
      }
      add(`${p}.post_attention_layernorm.weight`, `${b}.ffn_norm.weight`, [H]);
    }
    add('model.norm.weight', 'output_norm.weight', [H]);
    if (srcName('lm_head.weight') && !tied) add('lm_head.weight', 'output.weight', [V, H]);
    else if (!tied) throw new FormatError(store.path, 'has no lm_head.weight and config.json does not tie the word embeddings');
    if (tied && srcName('lm_head.weight')) used.add(srcName('lm_head.weight')!);
    const extra = [...store.tensors.keys()].filter((n) => !used.has(n) && !/rotary_emb\.inv_freq$/.test(n));
    if (extra.length) throw new FormatError(store.path, `has ${extra.length} tensor(s) a Llama model does not, e.g. "${extra[0]}"; not converted`);

    const tok = tokenizerKvs(dir, V, warnings);
    const kvs: GgufKv[] = [
      { key: 'general.architecture', type: 'string', value: 'llama' },
      { key: 'general.type', type: 'string', value: 'model' },
      { key: 'general.name', type: 'string', value: path.basename(path.resolve(dir)) },
      { key: 'general.file_type', type: 'u32', value: outDtype === 'F32' ? 0 : 1 },
      { key: 'llama.vocab_size', type: 'u32', value: V },
      { key: 'llama.context_length', type: 'u32', value: numKey(cfg, cfgFile, 'max_position_embeddings', 2048) },
      { key: 'llama.embedding_length', type: 'u32', value: H },
      { key: 'llama.block_count', type: 'u32', value: L },
      { key: 'llama.feed_forward_length', type: 'u32', value: F },
      { key: 'llama.rope.dimension_count', type: 'u32', value: hd },
      { key: 'llama.attention.head_count', type: 'u32', value: nh },
      { key: 'llama.attention.head_count_kv', type: 'u32', value: nkv },
      { key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', value: numKey(cfg, cfgFile, 'rms_norm_eps', 1e-6) },
      { key: 'llama.rope.freq_base', type: 'f32', value: numKey(cfg, cfgFile, 'rope_theta', 10000) },
      ...(hd !== H / nh ? [{ key: 'llama.attention.key_length', type: 'u32', value: hd } as GgufKv, { key: 'llama.attention.value_length', type: 'u32', value: hd } as GgufKv] : []),
      ...tok.kvs,
    ];

    const { head, offsets, dataBytes } = ggufHeader(kvs, plans);
    const tmp = `${out}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'wx');
    let ok = false;
    try {
      fs.writeSync(fd, head);
      let pos = 0;
      plans.forEach((p, i) => {
        if (offsets[i] > pos) fs.writeSync(fd, Buffer.alloc(offsets[i] - pos));
        let v = store.readF32(p.src);
        if (p.perm) {
          const cols = p.shape.length === 2 ? p.shape[1] : 1, o = new Float32Array(v.length);
          for (let r = 0; r < p.shape[0]; r++) o.set(v.subarray(p.perm[r] * cols, (p.perm[r] + 1) * cols), r * cols);
          v = o;
        }
        if (p.type === 'F16') {
          for (let k = 0; k < v.length; k++) {
            if (Math.abs(v[k]) > 65504) throw new FormatError(store.path, `"${p.src}" holds ${v[k]}, beyond F16's range (±65504); convert with --gguf-type f32`);
          }
        }
        const bytes = ggufTensorBytes(p.type, v);
        fs.writeSync(fd, bytes);
        pos = offsets[i] + bytes.length;
      });
      if (dataBytes > pos) fs.writeSync(fd, Buffer.alloc(dataBytes - pos)); // llama.cpp reads the padded data section
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      if (fs.existsSync(out)) throw new OutputExistsError(out);
      fs.renameSync(tmp, out);
      ok = true;
    } finally {
      if (!ok) {
        try { fs.closeSync(fd); } catch { /* already closed */ }
        fs.rmSync(tmp, { force: true });
      }
    }
    return { out, architecture: 'llama', outDtype, tensors: plans.length, vocab: { model: tok.model, tokens: tok.tokens }, warnings };
  } finally {
    bm.store.close();
  }
}
