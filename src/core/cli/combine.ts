/**
 * `lora-lens combine A1 W1 A2 W2 [... An Wn] OUT [--method cat|svd|ties|dare|dare_ties|magnitude|linear]
 *   [--density d] [--seed s] [--svd] [--rank k] [--majority-sign total|frequency] [--force] [--json]`
 * `lora-lens combine A1 W1 ... An Wn --preview [--method ...] [--density d] [--json]`  (nothing written)
 *
 * Weighted merge of N adapters with PEFT add_weighted_adapter semantics (src/core/surgery/ties.ts).
 * The old two-adapter form `combine A1 W1 A2 W2 OUT [--svd --rank k]` is the same command.
 */
import { Engine } from '../engine/ort';
import { openAdapter } from '../formats/open';
import type { Adapter } from '../formats/adapter';
import { bool, CliCommand, flag, num, toJson, UsageError } from './args';
import { mergeAdapters, previewMerge, resolveCombination, usesDensity, MergeOptions } from '../surgery/ties';

const USAGE = `lora-lens combine A1 W1 A2 W2 [... An Wn] OUT [--method cat|svd|ties|dare|dare_ties|magnitude|linear] [--density d] [--seed s] [--svd] [--rank k] [--majority-sign total|frequency] [--force] [--json]
      weighted merge of N adapters (PEFT add_weighted_adapter semantics), verified; --preview (no OUT) prints sign conflicts and retained energy against density`;

const fmt = (x: number | undefined) => (x === undefined ? '–' : Number.isFinite(x) ? x.toExponential(2) : String(x));

async function run(argv: string[]): Promise<number> {
  const args = [...argv];
  const json = bool(args, '--json');
  const preview = bool(args, '--preview');
  const svd = bool(args, '--svd');
  const force = bool(args, '--force');
  const methodArg = flag(args, '--method') ?? (svd ? 'svd' : 'cat');
  const densityArg = flag(args, '--density');
  const seedArg = flag(args, '--seed');
  const rankArg = flag(args, '--rank');
  const signArg = flag(args, '--majority-sign');
  const unknown = args.find((a) => /^--/.test(a) && !/^--?\d/.test(a));
  if (unknown) throw new UsageError(`unknown option ${unknown}`);
  let method;
  try { method = resolveCombination(methodArg, svd); } catch (e) { throw new UsageError((e as Error).message); }
  if (signArg !== undefined && signArg !== 'total' && signArg !== 'frequency') throw new UsageError(`--majority-sign must be total or frequency, got "${signArg}"`);
  const density = densityArg === undefined ? undefined : num(densityArg, '--density');
  if (density !== undefined && !(density > 0 && density <= 1)) throw new UsageError(`--density must be in (0, 1], got ${density}`);
  if (usesDensity(method) && density === undefined) throw new UsageError(`--method ${methodArg} needs --density d (fraction of entries kept, 0 < d ≤ 1)`);
  const seed = seedArg === undefined ? undefined : num(seedArg, '--seed');
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0)) throw new UsageError(`--seed must be a non-negative integer, got ${seedArg}`);
  const rank = rankArg === undefined ? undefined : num(rankArg, '--rank');
  if (rank !== undefined && !(Number.isInteger(rank) && rank >= 1)) throw new UsageError(`--rank must be a positive integer, got ${rankArg}`);
  const pos = args;
  const nPairs = preview ? pos.length / 2 : (pos.length - 1) / 2;
  if (!Number.isInteger(nPairs) || nPairs < 1) throw new UsageError(preview ? 'expected ADAPTER WEIGHT pairs' : 'expected ADAPTER WEIGHT pairs followed by OUT');
  const pairs: { path: string; weight: number }[] = [];
  for (let i = 0; i < nPairs; i++) pairs.push({ path: pos[2 * i], weight: num(pos[2 * i + 1], `weight of ${pos[2 * i]}`) });
  const out = preview ? undefined : pos[pos.length - 1];
  const opts: MergeOptions = { method, density, seed, rank, majoritySign: signArg as 'total' | 'frequency' | undefined, force };
  const adapters: Adapter[] = [];
  const engine = new Engine();
  try {
    for (const p of pairs) adapters.push(openAdapter(p.path));
    const inputs = adapters.map((adapter, i) => ({ adapter, weight: pairs[i].weight }));
    if (preview) {
      const r = await previewMerge(engine, inputs, opts);
      if (json) console.log(toJson(r));
      else {
        console.log(`preview of ${r.method}${r.density !== undefined ? ` at density ${r.density}` : ''} (${inputs.length} adapters, nothing written)`);
        for (const m of r.modules) {
          console.log(`${m.name}: overlap ${(100 * m.overlap).toFixed(1)}%, sign conflicts ${(100 * m.signConflict).toFixed(1)}%, energy kept ${(100 * m.retainedEnergy).toFixed(1)}%  [${m.energyCurve.map((c) => `${c.density}:${(100 * c.retained).toFixed(0)}%`).join(' ')}]`);
        }
      }
      return 0;
    }
    const r = await mergeAdapters(engine, inputs, out!, opts);
    if (json) console.log(toJson(r));
    else {
      console.log(`wrote ${r.outDir} (${r.method}${r.density !== undefined ? `, density ${r.density}` : ''}${r.seed !== undefined ? `, seed ${r.seed}` : ''}, ${r.perModule.length} modules)`);
      for (const m of r.perModule) {
        const pv = r.preview.find((p) => p.name === m.name);
        console.log(`${m.name}: rank ${m.rank}, rel err vs weighted sum ${fmt(m.relErrToLinear)}${m.relErrToMerged !== undefined ? `, truncation ${fmt(m.relErrToMerged)}` : ''}${pv ? `, sign conflicts ${(100 * pv.signConflict).toFixed(1)}%, energy kept ${(100 * pv.retainedEnergy).toFixed(1)}%` : ''}`);
      }
      console.log(`verification: max |ΔW written − ΔW merged| = ${fmt(r.verification.maxAbsError)} (max relative ${fmt(r.verification.maxRelError)})`);
      for (const w of r.warnings) console.log(`warning: ${w}`);
    }
    return 0;
  } finally {
    for (const a of adapters) a.store.close();
    await engine.dispose();
  }
}

export const combineCommand: CliCommand = { name: 'combine', usage: USAGE, run };
