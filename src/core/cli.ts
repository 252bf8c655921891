/**
 * lora-lens command line: the same core as the extension, for pipelines and benchmarks.
 *
 * Commands are listed in COMMANDS below (one file per command in src/core/cli/).
 */
import { ExecutionProvider } from './engine/ort';
import { makeDemoWorkspace } from './demo/makeDemo';
import { addModularDemo, addTrainedDemoAdapters } from './demo/trainedDemo';
import { surgeryCli } from './surgery/cli';
import { trainHfAdapter } from './train/hfTrainer';
import { CONVERT_USAGE, convertCli } from './convert/cli';
import { bool, CliCommand, flag, UsageError } from './cli/args';
import { intrudersCommand } from './cli/intruders';
import { spectraCommand } from './cli/spectra';
import { esdCommand } from './cli/esd';
import { compareCommand } from './cli/compare';
import { doctorCommand } from './cli/doctor';
import { analyzeCommand } from './cli/analyze';
import { similarityCommand } from './cli/similarity';
import { reportCommand } from './cli/report';
import { trainDemoCommand } from './cli/train-demo';
import { combineCommand } from './cli/combine';
import { extractCommand } from './cli/extract';
import { doraCommand } from './cli/dora';
import { FormatError } from './formats/errors';
import { describeWeights, formatBytes, formatCount } from './formats/open';

const SURGERY = ['rebalance', 'reduce', 'merge', 'rescale', 'hessian-demo'];

const SURGERY_USAGE: Record<string, string> = {
  rebalance: 'lora-lens rebalance PATH OUT [--json]   BaLoRA projection (BᵀB = AAᵀ, BA kept), new adapter',
  reduce: 'lora-lens reduce PATH OUT --rank k | --sv-ratio x | --sv-fro x | --sv-cumulative x [--max-rank k] [--json]',
  merge: 'lora-lens merge ADAPTER BASE OUT [--json]   W0 + s·B·A into a new safetensors file',
  rescale: 'lora-lens rescale PATH FACTOR OUT [--json]   multiply the adapter\'s scale',
  'hessian-demo': 'lora-lens hessian-demo   Hessian condition numbers of balanced vs scaled factors',
};

/** Every command of the CLI, in the order of `--help`. A new command is a file in src/core/cli/ and one line here. */
const COMMANDS: CliCommand[] = [
  analyzeCommand,
  { name: 'inspect', usage: 'lora-lens inspect FILE [--json]', run: (a) => legacyMain(['inspect', ...a]) },
  { name: 'demo', usage: 'lora-lens demo DIR [--no-train]  write the deterministic demo workspace (with two adapters trained by LoRA Lens)', run: (a) => legacyMain(['demo', ...a]) },
  ...SURGERY.map((name): CliCommand => ({ name, usage: SURGERY_USAGE[name], run: (a) => surgeryCli([name, ...a]) })),
  intrudersCommand,
  spectraCommand,
  esdCommand,
  compareCommand,
  combineCommand,
  extractCommand,
  doraCommand,
  { name: 'convert', usage: CONVERT_USAGE.replace(/^usage: /, ''), run: convertCli },
  doctorCommand,
  similarityCommand,
  reportCommand,
  { name: 'train', usage: 'lora-lens train MODEL_DIR DATA OUT [--balora] [--steps n] [--r n] [--alpha a] [--lr x] [--targets q_proj,v_proj]\n      LoRA/BaLoRA training on onnxruntime (Llama/GPT-2 HF folders, JSONL/text)', run: (a) => legacyMain(['train', ...a]) },
  trainDemoCommand,
];

function usage(): string {
  return `usage:\n${COMMANDS.map((c) => '  ' + c.usage.replace(/\n/g, '\n  ')).join('\n')}\nAll writing commands create NEW files/folders, verify them, and never overwrite their input.`;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const c = COMMANDS.find((x) => x.name === cmd);
  if (!c) {
    console.error(`unknown command ${cmd}\n${usage()}`);
    return 2;
  }
  try {
    return await c.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\nusage: ${c.usage}`);
      return 2;
    }
    throw e;
  }
}

/** inspect, demo, train: the original commands, kept in one function. */
async function legacyMain(argv: string[]): Promise<number> {
  const args = [...argv];
  const cmd = args.shift();
  const json = bool(args, '--json');
  const provider = (flag(args, '--provider') ?? 'cpu') as ExecutionProvider;
  const target = args[0];
  if (!target) {
    console.error(usage());
    return 2;
  }
  if (cmd === 'train') {
    const [modelDir, data, out] = args;
    if (!modelDir || !data || !out) {
      console.error(usage());
      return 2;
    }
    const num = (name: string, def: number): number => {
      const v = flag(args, name);
      return v === undefined ? def : Number(v);
    };
    const balora = bool(args, '--balora');
    const targets = flag(args, '--targets')?.split(',');
    const steps = num('--steps', 100), r = num('--r', 8);
    const res = await trainHfAdapter({
      modelDir, data, outDir: out, mode: balora ? 'balora' : 'lora', steps, r, alpha: num('--alpha', 2 * r), lr: num('--lr', 1e-3),
      targets, provider, onStep: (s) => { if (s.step % 10 === 0 || s.step === steps) console.log(`step ${s.step}  loss ${s.loss.toFixed(4)}${s.balanceGap !== undefined ? `  gap ${s.balanceGap.toExponential(2)}` : ''}`); },
    });
    console.log(`trained ${res.steps.length} steps on ${res.sequences} sequences (${res.provider.used}); adapter written to ${res.adapterDir}`);
    return 0;
  }
  if (cmd === 'demo') {
    for (const p of makeDemoWorkspace(target)) console.log(`wrote ${p}`);
    if (!bool(args, '--no-train')) {
      for (const p of await addTrainedDemoAdapters(target, (s) => console.log(s))) console.log(`wrote ${p}`);
      for (const p of await addModularDemo(target, (s) => console.log(s))) console.log(`wrote ${p}`);
    }
    return 0;
  }
  if (cmd === 'inspect') {
    const s = describeWeights(target);
    if (json) console.log(JSON.stringify(s, null, 1));
    else {
      console.log(`${s.path}: ${s.kind}, ${s.tensorCount} tensors, ${formatCount(s.parameters)} parameters, ${formatBytes(s.fileBytes)}`);
      for (const t of s.tensors) console.log(`  ${t.name}  ${t.dtype}  [${t.shape.join(', ')}]`);
      for (const [k, v] of Object.entries(s.metadata)) console.log(`  meta ${k} = ${v.length > 200 ? v.slice(0, 200) + '…' : v}`);
      for (const w of s.warnings) console.log(`  warning: ${w}`);
    }
    return 0;
  }
  console.error(`unknown command ${cmd}\n${usage()}`);
  return 2;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => {
      // One line, never a stack trace (set LORA_LENS_DEBUG=1 to see one for an internal error).
      const msg = e instanceof Error ? e.message : String(e);
      console.error(`error: ${msg}`);
      if (process.env.LORA_LENS_DEBUG && !(e instanceof FormatError)) console.error((e as Error).stack);
      process.exitCode = 1;
    },
  );
}
