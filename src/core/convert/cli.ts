/**
 * `lora-lens convert PATH --to peft|kohya|mlx|gguf OUT [--arch NAME] [--heads N --kv-heads M] [--base DIR]
 *  [--gguf-type auto|f32|f16] [--json]`: writes a NEW adapter and prints the round-trip error.
 * `lora-lens convert MODEL_DIR --to gguf OUT [--gguf-type auto|f32|f16] [--json]`: a Llama-style Hugging
 *  Face base model folder (config.json, no adapter_config.json) → llama.cpp GGUF (ggufModel.ts).
 */
import { openAdapter } from '../formats/open';
import { CONVERT_TARGETS, convertAdapter, ConvertTarget } from './convert';
import { convertModelToGguf, isHfModelDir } from './ggufModel';

export const CONVERT_USAGE = `usage: lora-lens convert PATH --to peft|kohya|mlx|gguf OUT [--arch NAME] [--heads N] [--kv-heads M] [--base DIR] [--gguf-type auto|f32|f16] [--json]
  Writes a NEW adapter in the target format, re-opens it and checks that every module's ΔW = s·B·A is unchanged.
  lora-lens convert MODEL_DIR --to gguf OUT.gguf [--gguf-type auto|f32|f16] [--json]
  Converts a Llama-style Hugging Face base model folder (config.json + safetensors + tokenizer.json) to a llama.cpp GGUF.`;

function take(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}

/** Runs the convert subcommand; `args` excludes the word `convert`. Returns the exit code. */
export async function convertCli(argv: string[]): Promise<number> {
  const args = [...argv];
  const json = args.includes('--json');
  if (json) args.splice(args.indexOf('--json'), 1);
  const to = take(args, '--to') as ConvertTarget | undefined;
  const arch = take(args, '--arch');
  const heads = take(args, '--heads');
  const kv = take(args, '--kv-heads');
  const base = take(args, '--base');
  const gt = take(args, '--gguf-type');
  const [p, out] = args;
  if (!p || !out || !to || !CONVERT_TARGETS.includes(to) || args.length !== 2) {
    process.stderr.write(CONVERT_USAGE + '\n');
    return 2;
  }
  try {
    if (to === 'gguf' && isHfModelDir(p)) {
      if (arch || heads || kv || base) {
        process.stderr.write(`error: ${p}: --arch/--heads/--kv-heads/--base apply to adapters; a model folder's config.json gives them\n`);
        return 2;
      }
      const gtype = (gt ?? 'auto').toUpperCase();
      if (!['AUTO', 'F32', 'F16'].includes(gtype)) { process.stderr.write(CONVERT_USAGE + '\n'); return 2; }
      const r = convertModelToGguf(p, out, { ggufType: gtype === 'AUTO' ? 'auto' : (gtype as 'F32' | 'F16') });
      if (json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else process.stdout.write([`wrote ${r.out} (llama.cpp ${r.architecture}, ${r.tensors} tensors, ${r.outDtype}, ${r.vocab.model} vocabulary of ${r.vocab.tokens} tokens)`, ...r.warnings.map((w) => `warning: ${w}`)].join('\n') + '\n');
      return 0;
    }
    const a = openAdapter(p);
    try {
      const r = await convertAdapter(a, to, out, {
        architecture: arch, heads: heads ? Number(heads) : undefined, kvHeads: kv ? Number(kv) : undefined, base,
        ggufType: gt ? (gt.toUpperCase() as 'F32' | 'F16') : undefined,
      });
      if (json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else {
        const lines = [`wrote ${r.out} (${r.target}, ${r.modules.length} modules, ${r.outDtype}${r.architecture ? `, arch ${r.architecture}` : ''})`,
          `round trip: max relative ΔW difference ${r.maxRelErr.toExponential(2)} (tolerance ${r.tolerance.toExponential(1)})`,
          ...r.warnings.map((w) => `warning: ${w}`)];
        process.stdout.write(lines.join('\n') + '\n');
      }
      return 0;
    } finally {
      a.store.close();
    }
  } catch (e) {
    // Every error names a file: reader and writer errors already do; the rest (an input that a
    // target cannot express) are about the input, so it is named.
    const msg = (e as Error).message;
    process.stderr.write(`error: ${msg.includes(p) || msg.includes(out) ? msg : `${p}: ${msg}`}\n`);
    return 1;
  }
}
