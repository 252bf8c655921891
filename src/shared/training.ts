/**
 * Typed protocol of the training webview (`loraLens.training`) and the plain data of the
 * `training.run` worker job (src/worker/jobs/training.ts). Pure types + one validator.
 *
 * Handshake: the webview posts `ready`; the host answers with `init` (defaults, provider setting,
 * current run state). Requests (`start`, `stop`, `resume`) carry a `requestId`; the host answers
 * with a `reply` carrying the same id and, on failure, `error`. While a run is going the host
 * pushes `points` (batched, ≤ ~10 messages/s), `status` and finally `finished`.
 */

export type TrainRunMode = 'lora' | 'balora';
import type { Provider } from './provider';
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';

export type ProviderName = Provider;

/**
 * Built-in tasks (presets of src/core/train/tasks.ts, a tiny transformer pre-trained once per task):
 * `second-operand` (default: the base answers the first number of "x + y =", the adapters teach it
 * the second; LoRA and BaLoRA reach ~100 % held-out accuracy in 400 steps) and `modular-subtraction`
 * (research preset: the paper's addition → subtraction experiment, which stays near chance).
 * `causal-lm`: LoRA fine-tuning of a Hugging Face causal LM folder (Llama family / GPT-2: config.json +
 * *.safetensors + tokenizer.json) on a JSONL / text dataset (src/core/train/hfTrainer.ts).
 */
export type BuiltinTask = 'second-operand' | 'modular-subtraction';
export type TrainTask = BuiltinTask | 'causal-lm';
export const BUILTIN_TASKS: readonly BuiltinTask[] = ['second-operand', 'modular-subtraction'];
export const TRAIN_TASKS: readonly TrainTask[] = [...BUILTIN_TASKS, 'causal-lm'];
export const isBuiltinTask = (t: unknown): t is BuiltinTask => (BUILTIN_TASKS as readonly unknown[]).includes(t);

/** What the panel shows about a built-in task (from its preset). */
export interface TaskInfo {
  id: BuiltinTask;
  title: string;
  description: string;
  /** Research presets: why the result is what it is. */
  caveat?: string;
  research: boolean;
  /** Chance level of the answer accuracy (1 / p). */
  chance: number;
}

/**
 * One set of metric definitions, used by the chart, the result summary and the saved
 * `training_metrics.json` alike.
 */
export const METRIC_DEFINITIONS = {
  builtin: {
    loss: 'cross-entropy of the answer token (nats), mean over the prompts',
    accuracy: 'answer accuracy: share of held-out prompts (x, y pairs never trained on) whose top-1 predicted token is the right answer',
  },
  causal: {
    loss: 'cross-entropy per target token (nats), mean over the target tokens (training batch in the chart, held-out sequences in the result)',
    perplexity: 'exp(loss) of the held-out target tokens',
    accuracy: 'next-token accuracy: share of held-out target tokens whose top-1 predicted token is the actual next token',
  },
} as const;

export interface TrainForm {
  task: TrainTask;
  r: number;
  alpha: number;
  lr: number;
  steps: number;
  seed: number;
  /** causal-lm: model folder (webview/host: relative to the workspace folder; job: absolute). */
  modelDir?: string;
  /** causal-lm: dataset file (.jsonl / .txt), same path convention as `modelDir`. */
  dataFile?: string;
  /** causal-lm: tokens per packed sequence. */
  seqLen?: number;
  /** causal-lm: sequences per step. */
  batchSize?: number;
  /** causal-lm: LoRA target module suffixes (default: attention q/v for Llama, c_attn for GPT-2). */
  targets?: string[];
}

/** Defaults of the causal-lm fields. */
export const CAUSAL_DEFAULTS = { seqLen: 32, batchSize: 4 } as const;

export interface TrainPoint {
  mode: TrainRunMode;
  step: number;
  /** Training loss of this step (see METRIC_DEFINITIONS). */
  loss: number;
  /** Built-in tasks, every few steps: held-out answer accuracy and loss after this step. */
  heldOutAccuracy?: number;
  heldOutLoss?: number;
  balanceGap?: number;
  kappaA?: number;
  kappaB?: number;
}

/** Opaque resume state per mode (TrainState of src/core/train/trainer.ts, plain arrays). */
export interface ResumeStates { lora: unknown; balora: unknown }

export interface TrainJobParams {
  /** For causal-lm, `modelDir` and `dataFile` are absolute paths. */
  form: TrainForm;
  /** Built-in tasks: folder of the task's pre-trained base (config.json + model.safetensors); pre-trained and written here when missing. Unused for causal-lm. */
  baseDir?: string;
  provider: ProviderName;
  /** Resume state of a stopped built-in run — the job runs the remaining `form.steps`. */
  resume?: ResumeStates;
  /** New folders the adapters are saved to when the run completes (never overwritten). */
  saveDirs: { lora: string; balora: string };
}

export type TrainProgressData =
  | { kind: 'phase'; phase: 'pretrain' | 'train' | 'save'; message: string }
  | { kind: 'provider'; requested: ProviderName; used: ProviderName; reason?: string }
  | { kind: 'points'; points: TrainPoint[] };

/**
 * Held-out loss and accuracy (built-in tasks: answer accuracy; causal-lm: next-token top-1 accuracy on
 * the held-out target tokens, and perplexity = exp(loss)); see METRIC_DEFINITIONS.
 */
export interface EvalResult { loss: number; acc: number; perplexity?: number }

export interface TrainJobResult {
  task: TrainTask;
  stopped: boolean;
  step: number;
  /** Present when a built-in run is stopped: pass back as `resume`. Causal-lm runs are not resumable. */
  resume?: ResumeStates;
  saved?: { lora: string; balora: string };
  eval?: { lora: EvalResult; balora: EvalResult; base: EvalResult };
  provider: { requested: ProviderName; used: ProviderName; reason?: string };
  pretrained: boolean;
  /** modular: the pre-trained base folder; causal-lm: the model folder. */
  baseDir: string;
  /** causal-lm: packed sequences used for training / held out for the evaluation. */
  data?: { train: number; test: number; seqLen: number };
  ms: number;
}

export type RunStatus = 'idle' | 'pretraining' | 'running' | 'stopping' | 'stopped' | 'finished' | 'error';

export interface RunSnapshot {
  status: RunStatus;
  message: string;
  form: TrainForm;
  points: TrainPoint[];
  provider: { setting: ProviderName; used?: ProviderName; reason?: string };
  result?: TrainJobResult;
  canResume: boolean;
  /** Model folders detected in the workspace (relative paths; config.json + tokenizer.json + *.safetensors). */
  models: string[];
  /** Dataset files detected in the workspace (relative paths; *.jsonl / *.txt, data/train.jsonl first). */
  datasets: string[];
  /** The built-in tasks (description, caveat for research presets). */
  tasks: TaskInfo[];
}

export type WebviewToHost =
  | Envelope
  | { type: 'start'; requestId: number; form: TrainForm }
  | { type: 'stop'; requestId: number }
  | { type: 'resume'; requestId: number }
  | { type: 'reveal'; requestId: number; path: string }
  | { type: 'analyze'; requestId: number; path: string };

export type HostToWebview =
  | { type: 'init'; snapshot: RunSnapshot }
  | { type: 'points'; points: TrainPoint[] }
  | { type: 'status'; status: RunStatus; message: string; provider?: RunSnapshot['provider']; canResume: boolean }
  | { type: 'finished'; result: TrainJobResult }
  | ReplyMessage;

export const DEFAULT_FORM: TrainForm = { task: 'second-operand', r: 4, alpha: 8, lr: 1e-2, steps: 400, seed: 1 };

/** Validates a form (throws with the offending field). */
export function checkForm(f: unknown): TrainForm {
  if (!f || typeof f !== 'object') throw new Error('training form missing');
  const o = f as Record<string, unknown>;
  const n = (k: string, lo: number, hi: number, int = false): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v))) {
      throw new Error(`${k} must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${String(v)}`);
    }
    return v;
  };
  if (isBuiltinTask(o.task)) {
    return { task: o.task, r: n('r', 1, 32, true), alpha: n('alpha', 1e-3, 1e4), lr: n('lr', 1e-6, 1), steps: n('steps', 1, 100000, true), seed: n('seed', 0, 2 ** 31, true) };
  }
  if (o.task !== 'causal-lm') throw new Error(`unknown task ${String(o.task)} (known: ${TRAIN_TASKS.join(', ')})`);
  const str = (k: string, what: string): string => {
    const v = o[k];
    if (typeof v !== 'string' || !v.trim() || v.length > 4096 || v.includes('\0')) throw new Error(`${k}: choose a ${what}`);
    return v.trim();
  };
  const form: TrainForm = {
    task: 'causal-lm', r: n('r', 1, 256, true), alpha: n('alpha', 1e-3, 1e4), lr: n('lr', 1e-6, 1), steps: n('steps', 1, 100000, true), seed: n('seed', 0, 2 ** 31, true),
    modelDir: str('modelDir', 'model folder (config.json + tokenizer.json + *.safetensors)'), dataFile: str('dataFile', 'dataset file (.jsonl / .txt)'),
    seqLen: n('seqLen', 4, 4096, true), batchSize: n('batchSize', 1, 256, true),
  };
  if (o.targets !== undefined) {
    if (!Array.isArray(o.targets) || o.targets.length > 64 || !o.targets.every((t) => typeof t === 'string' && /^[A-Za-z0-9_.]{1,100}$/.test(t))) {
      throw new Error('targets must be module names such as q_proj, v_proj');
    }
    if (o.targets.length) form.targets = [...new Set(o.targets as string[])];
  }
  return form;
}

/** Validates an incoming message on the host; undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  return parseWebviewMessage(m, ({ type, o, requestId: id }): WebviewToHost | undefined => {
    if (id === undefined) return undefined;
    switch (type) {
      case 'start':
        // An invalid form is passed on: the host's checkForm refuses it with the reason, in the reply.
        try { return { type: 'start', requestId: id, form: checkForm(o.form) }; } catch { return { type: 'start', requestId: id, form: o.form as TrainForm }; }
      case 'stop': return { type: 'stop', requestId: id };
      case 'resume': return { type: 'resume', requestId: id };
      case 'reveal':
      case 'analyze':
        return typeof o.path === 'string' ? { type, requestId: id, path: o.path } : undefined;
      default: return undefined;
    }
  });
}
