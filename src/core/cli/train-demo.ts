/**
 * `lora-lens train-demo [--steps n] [--task NAME] [--json]`: the Training panel's default task
 * headless (src/core/train/tasks.ts): pre-trains the tiny base, fine-tunes LoRA and BaLoRA, and
 * reports held-out accuracy. JSON: {"lora": {"heldOutAccuracy": x, ...}, "balora": {...}, "base": {...}, ...}.
 */
import { bool, CliCommand, flag, numFlag, toJson, UsageError } from './args';
import { DEFAULT_TRAIN_TASK, TRAIN_TASKS, runTrainTask, type TrainTaskId } from '../train/tasks';

export const trainDemoCommand: CliCommand = {
  name: 'train-demo',
  usage: `lora-lens train-demo [--steps n] [--task ${Object.keys(TRAIN_TASKS).join('|')}] [--json]\n      the Training panel's default task headless: LoRA vs BaLoRA held-out accuracy`,
  async run(argv: string[]): Promise<number> {
    const args = [...argv];
    const json = bool(args, '--json');
    const task = (flag(args, '--task') ?? DEFAULT_TRAIN_TASK) as TrainTaskId;
    if (!TRAIN_TASKS[task]) throw new UsageError(`--task: unknown task "${task}" (known: ${Object.keys(TRAIN_TASKS).join(', ')})`);
    const preset = TRAIN_TASKS[task];
    const steps = numFlag(args, '--steps', preset.defaults.steps);
    if (!Number.isInteger(steps) || steps < 1 || steps > 100000) throw new UsageError(`--steps: ${steps} is not an integer in 1..100000`);
    if (args.length) throw new UsageError(`unexpected argument "${args[0]}"`);
    const log = (s: string): void => { if (!json) console.log(s); };
    log(`${preset.title}: pre-training the base (${preset.pretrain.steps} steps), then LoRA and BaLoRA for ${steps} steps`);
    const res = await runTrainTask(task, {
      steps,
      onProgress: (phase, done, total, loss) => { if (!json && (done === total || done % 200 === 0)) console.log(`  ${phase} ${done}/${total}  loss ${loss.toFixed(4)}`); },
    });
    if (json) {
      console.log(toJson(res));
      return 0;
    }
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    console.log(`held-out accuracy on ${res.heldOutPairs} unseen pairs (chance ${pct(1 / res.p)}):`);
    console.log(`  base (no adapter) ${pct(res.base.heldOutAccuracy)}`);
    console.log(`  LoRA              ${pct(res.lora.heldOutAccuracy)}   (train ${pct(res.lora.trainAccuracy)}, ${res.lora.seconds.toFixed(1)} s)`);
    console.log(`  BaLoRA            ${pct(res.balora.heldOutAccuracy)}   (train ${pct(res.balora.trainAccuracy)}, ${res.balora.seconds.toFixed(1)} s)`);
    if (res.caveat) console.log(`note: ${res.caveat}`);
    console.log(`total ${res.seconds.toFixed(1)} s (${res.provider})`);
    return 0;
  },
};
