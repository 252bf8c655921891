/**
 * Demo tokenizer and fine-tuning data for the tiny Llama of makeDemo.ts (vocab 128): a
 * deterministic Hugging Face tokenizer.json (WordPiece over whole lowercase words, `##` suffix
 * pieces, <s> prepended by a TemplateProcessing post-processor) + tokenizer_config.json, and a small
 * JSONL dataset of {"text"} and {"prompt","completion"} lines built from that vocabulary.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../util/rng';

export const DEMO_SPECIAL = ['<pad>', '<s>', '</s>', '<unk>'] as const;

const COLORS = ['red', 'blue', 'green', 'yellow', 'black', 'white'];
const ANIMALS = ['cat', 'dog', 'fox', 'bird', 'fish', 'horse', 'mouse', 'cow'];
const VERBS = ['sees', 'likes', 'chases', 'finds', 'eats', 'follows'];
const THINGS = ['apple', 'ball', 'box', 'tree', 'house', 'river', 'hill', 'book'];
const NUMBERS = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'];
const OTHER = [
  'the', 'a', 'is', 'and', 'of', 'on', 'in', 'near', 'over', 'under', 'big', 'small', 'little', 'old', 'young', 'happy',
  'sad', 'fast', 'slow', 'sky', 'grass', 'sun', 'snow', 'night', 'color', 'what', 'which', 'after', 'before', 'comes',
  'count', 'q', 'answer', 'question', 'lazy', 'jumps', 'runs', 'sleeps', 'today', 'very', 'it', 'this', 'that', 'day',
  'hello', 'world', 'lora', 'lens', 'train', 'model', 'small', 'tiny', 'llama',
];
const PIECES = ['##s', '##es', '##ed', '##ing', '##ly', '##er'];
const PUNCT = ['.', ',', '?', ':', '!'];

/** The demo vocabulary (token → id), ≤ 128 entries. */
export function demoVocab(): Record<string, number> {
  const words = [...DEMO_SPECIAL, ...PUNCT, ...COLORS, ...ANIMALS, ...VERBS, ...THINGS, ...NUMBERS, ...OTHER, ...PIECES];
  const vocab: Record<string, number> = {};
  for (const w of words) if (!(w in vocab)) vocab[w] = Object.keys(vocab).length;
  if (Object.keys(vocab).length > 128) throw new Error('demo vocab exceeds 128');
  return vocab;
}

/** tokenizer.json object (loadable by @huggingface/tokenizers and the Rust `tokenizers`). */
export function demoTokenizerJson(): Record<string, unknown> {
  const vocab = demoVocab();
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: DEMO_SPECIAL.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [vocab['<s>']], tokens: ['<s>'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '<unk>', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

export const DEMO_TOKENIZER_CONFIG = {
  tokenizer_class: 'PreTrainedTokenizerFast', bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>', unk_token: '<unk>',
  model_max_length: 256, clean_up_tokenization_spaces: false,
};

/** Deterministic demo dataset lines (JSON objects). */
export function demoDatasetLines(n = 160, seed = 5): string[] {
  const rng = new Rng(seed);
  const pick = <T>(a: T[]): T => a[Math.floor(rng.uniform() * a.length)];
  const SKY: Record<string, string> = { sky: 'blue', grass: 'green', sun: 'yellow', snow: 'white', night: 'black' };
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 4;
    if (kind === 0) {
      out.push(JSON.stringify({ text: `the ${pick(COLORS)} ${pick(ANIMALS)} ${pick(VERBS)} the ${pick(THINGS)} near the ${pick(THINGS)} .` }));
    } else if (kind === 1) {
      const s = Math.floor(rng.uniform() * 6);
      out.push(JSON.stringify({ text: `count : ${NUMBERS.slice(s, s + 5).join(' ')} .` }));
    } else if (kind === 2) {
      const k = pick(Object.keys(SKY));
      out.push(JSON.stringify({ prompt: `q : what color is the ${k} ? answer :`, completion: ` ${SKY[k]} .` }));
    } else {
      const j = Math.floor(rng.uniform() * 9);
      out.push(JSON.stringify({ prompt: `q : what comes after ${NUMBERS[j]} ? answer :`, completion: ` ${NUMBERS[j + 1]} .` }));
    }
  }
  return out;
}

/**
 * Writes tokenizer.json + tokenizer_config.json into `modelDir` and the JSONL dataset to `dataFile`
 * (folders created as needed). Same bytes on every run.
 */
export function writeDemoTokenizerAndData(modelDir: string, dataFile: string): void {
  fs.mkdirSync(modelDir, { recursive: true });
  fs.writeFileSync(path.join(modelDir, 'tokenizer.json'), JSON.stringify(demoTokenizerJson(), null, 2) + '\n');
  fs.writeFileSync(path.join(modelDir, 'tokenizer_config.json'), JSON.stringify(DEMO_TOKENIZER_CONFIG, null, 2) + '\n');
  fs.mkdirSync(path.dirname(dataFile), { recursive: true });
  fs.writeFileSync(dataFile, demoDatasetLines().join('\n') + '\n');
}
