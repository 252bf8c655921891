/**
 * The built-in training tasks' definitions (model, data, description, caveat), without the trainer:
 * imported by the extension host for the Training panel's texts (no onnxruntime there) and by
 * tasks.ts, which runs them. See tasks.ts for why these tasks.
 */
import { modTokens, modularTaskData, type ModData, type TinyTransformerConfig } from './models';

export type TrainTaskId = 'second-operand' | 'modular-subtraction';

export interface TrainTaskPreset {
  id: TrainTaskId;
  title: string;
  /** One paragraph for the panel. */
  description: string;
  /** Research presets: why the result is what it is (shown next to the result). */
  caveat?: string;
  research: boolean;
  model: TinyTransformerConfig;
  /** Base pre-training on all p² prompts "x + y =" → label(x, y), full batch, AdamW, cosine schedule. */
  pretrain: { what: string; label: (x: number, y: number) => number; steps: number; lr: number };
  /** Fine-tuning defaults (full batch; lr cosine-decayed to 2 % over `steps`). */
  defaults: { r: number; alpha: number; lr: number; steps: number; seed: number };
  /** Train/held-out split of the fine-tuning task (80 / 20 % of the p² pairs). */
  data(seed: number): { train: ModData; test: ModData };
}

const MODEL: TinyTransformerConfig = { p: 23, dModel: 32, depth: 2 };
const TRAIN_FRAC = 0.8;

export const TRAIN_TASKS: Record<TrainTaskId, TrainTaskPreset> = {
  'second-operand': {
    id: 'second-operand',
    title: 'Operand selection: first → second number',
    description: `The base model was pre-trained to answer the first number of "x + y =" (x, y < ${MODEL.p}). LoRA and BaLoRA (rank 4 on Q, K, V, O) fine-tune it to answer the second number; the frozen base is at chance on that. Accuracy is measured on the 20 % of (x, y) pairs never trained on.`,
    research: false,
    model: MODEL,
    pretrain: { what: 'x + y = → x', label: (x) => x, steps: 300, lr: 1e-2 },
    defaults: { r: 4, alpha: 8, lr: 1e-2, steps: 400, seed: 1 },
    data: (seed) => {
      const t = modTokens(MODEL.p);
      return modularTaskData(MODEL.p, { op: t.plus, eq: t.eq, label: (_x, y) => y }, TRAIN_FRAC, seed);
    },
  },
  'modular-subtraction': {
    id: 'modular-subtraction',
    title: 'Research: addition → subtraction (Koubbi et al. 2024)',
    description: `The experiment of Koubbi et al. ("The Impact of LoRA on the Emergence of Clusters in Transformers"): the addition base fine-tuned to (x − y) mod ${MODEL.p} with a new operator token.`,
    caveat: 'Expect accuracy near chance (1/23) for both LoRA and BaLoRA, on training and held-out pairs alike: an attention-only model cannot turn its addition circuit into subtraction by low-rank changes of Q, K, V and O (y would have to be negated at its position only). The experiment reproduces the paper\'s set-up to compare how the two optimisers behave (loss, balance gap, κ), not a task LoRA can learn.',
    research: true,
    model: MODEL,
    pretrain: { what: 'x + y = → (x + y) mod p', label: (x, y) => (x + y) % MODEL.p, steps: 1000, lr: 1e-2 },
    defaults: { r: 4, alpha: 8, lr: 1e-2, steps: 400, seed: 1 },
    data: (seed) => {
      const t = modTokens(MODEL.p);
      return modularTaskData(MODEL.p, { op: t.minus, eq: t.eq, label: (x, y) => (((x - y) % MODEL.p) + MODEL.p) % MODEL.p }, TRAIN_FRAC, seed);
    },
  },
};

export const DEFAULT_TRAIN_TASK: TrainTaskId = 'second-operand';

/** The pre-training data of a preset: all p² prompts "x + y =" → pretrain.label(x, y). */
export function pretrainData(preset: TrainTaskPreset): ModData {
  const t = modTokens(preset.model.p);
  return modularTaskData(preset.model.p, { op: t.plus, eq: t.eq, label: preset.pretrain.label }, 1, 0).train;
}

