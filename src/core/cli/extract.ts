/**
 * `lora-lens extract BASE TUNED OUT (--rank k | --sv-fro x) [--max-rank k] [--targets q_proj,v_proj]
 *   [--dtype f32|f16|bf16] [--json]`
 * LoRA extraction from a full fine-tune (src/core/extract/extract.ts): writes a NEW PEFT adapter.
 */
import { Engine } from '../engine/ort';
import type { DType } from '../formats/dtype';
import { bool, CliCommand, flag, num, toJson, UsageError } from './args';
import { ExtractRule, extractLora } from '../extract/extract';

const USAGE = `lora-lens extract BASE TUNED OUT (--rank k | --sv-fro x) [--max-rank k] [--targets q_proj,v_proj] [--dtype f32|f16|bf16 (default f32)] [--json]
      best rank-k LoRA of W_tuned − W0 per module (randomized SVD, checked), as a NEW PEFT adapter; BASE/TUNED: HF model folders or safetensors files`;

async function run(argv: string[]): Promise<number> {
  const args = [...argv];
  const json = bool(args, '--json');
  const rank = flag(args, '--rank');
  const fro = flag(args, '--sv-fro');
  const maxRank = flag(args, '--max-rank');
  const targets = flag(args, '--targets');
  const dtypeArg = flag(args, '--dtype');
  const unknown = args.find((a) => a.startsWith('--'));
  if (unknown) throw new UsageError(`unknown option ${unknown}`);
  if (args.length !== 3) throw new UsageError('expected BASE TUNED OUT');
  if ((rank === undefined) === (fro === undefined)) throw new UsageError('give exactly one of --rank k or --sv-fro x');
  let rule: ExtractRule;
  if (rank !== undefined) {
    const k = num(rank, '--rank');
    if (!(Number.isInteger(k) && k >= 1)) throw new UsageError(`--rank must be a positive integer, got ${rank}`);
    rule = { kind: 'rank', k };
  } else {
    const x = num(fro!, '--sv-fro');
    if (!(x > 0 && x <= 1)) throw new UsageError(`--sv-fro must be in (0, 1], got ${fro}`);
    const mr = maxRank === undefined ? undefined : num(maxRank, '--max-rank');
    if (mr !== undefined && !(Number.isInteger(mr) && mr >= 1)) throw new UsageError(`--max-rank must be a positive integer, got ${maxRank}`);
    rule = { kind: 'sv_fro', value: x, maxRank: mr };
  }
  const dtMap: Record<string, DType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', F32: 'F32', F16: 'F16', BF16: 'BF16' };
  if (dtypeArg !== undefined && !dtMap[dtypeArg]) throw new UsageError(`--dtype must be f32, f16 or bf16, got ${dtypeArg}`);
  const [base, tuned, out] = args;
  const engine = new Engine();
  try {
    const r = await extractLora(engine, base, tuned, out, {
      rule, dtype: dtypeArg ? dtMap[dtypeArg] : undefined, targets: targets?.split(',').map((s) => s.trim()).filter(Boolean),
      onProgress: json ? undefined : (d, t, msg) => process.stderr.write(`[${d}/${t}] ${msg}\n`),
    });
    if (json) console.log(toJson(r));
    else {
      console.log(`wrote ${r.outDir}: ${r.summary.modules} modules (${r.rule}), ${r.summary.parameters} parameters, mean relative error ${r.summary.meanRelError.toExponential(3)}, max ${r.summary.maxRelError.toExponential(3)}`);
      for (const m of r.modules) console.log(`${m.name}: rank ${m.rank}, rel err ${m.relError.toExponential(3)}, ‖ΔW‖F kept ${(100 * m.froKept).toFixed(2)}%, ‖resid‖₂/σ(k+1) ${m.optimality.toFixed(3)}`);
      if (r.unchanged) console.log(`${r.unchanged} weights identical in BASE and TUNED (not extracted)`);
      for (const s of r.skipped) console.log(`skipped ${s.tensor}: ${s.reason}`);
      for (const w of r.warnings) console.log(`warning: ${w}`);
    }
    return 0;
  } finally {
    await engine.dispose();
  }
}

export const extractCommand: CliCommand = { name: 'extract', usage: USAGE, run };
