/**
 * Surgery subcommands (wired into the main CLI by src/core/cli.ts):
 *   rebalance PATH OUT
 *   reduce PATH OUT (--rank k | --sv-ratio x | --sv-fro x | --sv-cumulative x) [--max-rank k]
 *   merge ADAPTER BASE OUT
 *   rescale PATH FACTOR OUT
 *   hessian-demo
 * Every command writes a new file/folder and refuses to overwrite. Returns the exit code.
 */
import { toJson, UsageError } from '../cli/args';
import { Engine } from '../engine/ort';
import { openAdapter } from '../formats/open';
import { rebalanceAdapter } from './balora';
import { RankRule, reduceRankAdapter } from './rank';
import { mergeIntoModel, rescaleAdapter, type Verification } from './combine';
import { hessianDemoCases } from './hessian';

const USAGE = `usage:
  lora-lens rebalance PATH OUT
  lora-lens reduce PATH OUT (--rank k | --sv-ratio x | --sv-fro x | --sv-cumulative x) [--max-rank k]
  lora-lens merge ADAPTER BASE OUT [--force]   (BASE: weights file → OUT file; model folder → OUT folder)
  lora-lens rescale PATH FACTOR OUT
  lora-lens hessian-demo`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  if (v === undefined) throw new UsageError(`${name} needs a value`);
  return v;
}

function num(v: string, what: string): number {
  const x = Number(v);
  if (!Number.isFinite(x)) throw new UsageError(`${what}: "${v}" is not a finite number`);
  return x;
}

/** Tells the user which side files of the input folder were not copied (links are never followed). */
const noteSkipped = (r: { skippedSideFiles?: string[] }): void => {
  if (r.skippedSideFiles?.length) process.stderr.write(`note: not copied from the input folder: ${r.skippedSideFiles.join('; ')}\n`);
};

const fmt = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

/** The human line of a write's verification (every writing command prints what it verified). */
export function verifiedLine(v: Verification): string {
  return `✓ verified ${v.checked} ${v.checked === 1 ? 'item' : 'items'}: max abs error ${fmt(v.maxAbsError)} (max rel ${fmt(v.maxRelError)}, tolerance ${fmt(v.tolerance)}) — ${v.what}`;
}

export async function surgeryCli(argv: string[]): Promise<number> {
  const args = [...argv];
  const cmd = args.shift();
  const json = args.includes('--json');
  if (json) args.splice(args.indexOf('--json'), 1);
  const force = args.includes('--force');
  if (force) args.splice(args.indexOf('--force'), 1);
  // toJson: ∞ / NaN (e.g. κ_H of a rank-deficient factor) as "Infinity" / "NaN", never null
  const out = (o: unknown, text: () => string) => process.stdout.write(json ? toJson(o) + '\n' : text() + '\n');
  let engine: Engine | undefined;
  try {
    switch (cmd) {
      case 'hessian-demo': {
        const cases = hessianDemoCases();
        out(cases, () => cases.map((c) => `${c.label.padEnd(38)} κ=${c.kappa.toFixed(4)}  λmax=${c.lambdaMax.toFixed(4)}  λmin≠0=${c.lambdaMinNonzero.toFixed(4)}${c.closedForm !== undefined ? `  closed form ${c.closedForm}` : ''}`).join('\n'));
        return 0;
      }
      case 'rebalance': {
        const [p, o] = args;
        if (!p || !o) break;
        const a = openAdapter(p);
        engine = new Engine();
        try {
          const r = await rebalanceAdapter(a, engine, o);
          noteSkipped(r);
          out(r, () => [`wrote ${r.outDir}`, ...r.perModule.map((m) => `${m.name}: gap ${fmt(m.gapBefore)} → ${fmt(m.gapAfter)}, κA ${m.kappaABefore.toFixed(1)} → ${m.kappaAAfter.toFixed(1)}, κB ${m.kappaBBefore.toFixed(1)} → ${m.kappaBAfter.toFixed(1)}, κ_H ${fmt(m.hessianKappaBefore)} → ${fmt(m.hessianKappaAfter)}, max rel err ${fmt(m.maxRelErr)}`), verifiedLine(r.verification)].join('\n'));
        } finally { a.store.close(); }
        return 0;
      }
      case 'reduce': {
        const k = flag(args, '--rank'), ratio = flag(args, '--sv-ratio'), fro = flag(args, '--sv-fro'), cum = flag(args, '--sv-cumulative'), max = flag(args, '--max-rank');
        const [p, o] = args;
        if (!p || !o) break;
        const maxRank = max ? num(max, '--max-rank') : undefined;
        let rule: RankRule;
        if (k) rule = { kind: 'rank', k: num(k, '--rank') };
        else if (ratio) rule = { kind: 'sv_ratio', value: num(ratio, '--sv-ratio'), maxRank };
        else if (fro) rule = { kind: 'sv_fro', value: num(fro, '--sv-fro'), maxRank };
        else if (cum) rule = { kind: 'sv_cumulative', value: num(cum, '--sv-cumulative'), maxRank };
        else throw new UsageError('reduce needs one of --rank, --sv-ratio, --sv-fro, --sv-cumulative');
        const a = openAdapter(p);
        engine = new Engine();
        try {
          const r = await reduceRankAdapter(a, engine, o, rule);
          noteSkipped(r);
          out(r, () => [`wrote ${r.outDir}`, ...r.perModule.map((m) => `${m.name}: r ${m.r} → ${m.k}, fro kept ${(100 * m.froKept).toFixed(2)}%, sum(S) kept ${(100 * m.sumKept).toFixed(2)}%, rel err vs truncation ${fmt(m.relErrVsTruncated)}`), verifiedLine(r.verification)].join('\n'));
        } finally { a.store.close(); }
        return 0;
      }
      case 'merge': {
        const [p, b, o] = args;
        if (!p || !b || !o) break;
        const a = openAdapter(p);
        engine = new Engine();
        try {
          const r = await mergeIntoModel(b, a, engine, o, { force });
          out(r, () => [`wrote ${r.outDir ?? r.outFile}: ${r.merged.length} weights merged, ${r.copied} copied`, verifiedLine(r.verification), ...r.warnings.map((w) => `warning: ${w}`)].join('\n'));
        } finally { a.store.close(); }
        return 0;
      }
      case 'rescale': {
        const [p, f, o] = args;
        if (!p || !f || !o) break;
        const a = openAdapter(p);
        try {
          const r = rescaleAdapter(a, num(f, 'FACTOR'), o);
          noteSkipped(r);
          out(r, () => [`wrote ${r.outDir} (lora_alpha ${String(r.config.lora_alpha)})`, verifiedLine(r.verification)].join('\n'));
        } finally { a.store.close(); }
        return 0;
      }
      default:
        break;
    }
    process.stderr.write(USAGE + '\n');
    return 2;
  } catch (e) {
    if (e instanceof UsageError) throw e; // main prints it with the usage line, exit 2
    process.stderr.write(`error: ${(e as Error).message}\n`);
    return 1;
  } finally {
    await engine?.dispose();
  }
}
