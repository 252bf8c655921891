/**
 * Longer fuzz run than CI: `node out/bench/fuzz-long.js [scale=10] [seed=1]` runs the campaign of
 * test/unit/fuzz.test.ts with `scale` times the cases and prints counts, timings and crashes.
 * Exit code 1 when a crash, a case over 2 s, or a case over the allocation cap was seen.
 */
import { CASE_ALLOC_SLACK, CASE_TIME_LIMIT_MS, runCampaign } from '../test/unit/fuzzcampaign';

const scale = Number(process.argv[2] ?? 10);
const seed = Number(process.argv[3] ?? 1);
const t0 = performance.now();
const c = runCampaign(seed, scale);
const s = (performance.now() - t0) / 1000;
const crashes = c.results.filter((r) => r.outcome === 'crash');
const slow = c.results.filter((r) => r.ms >= CASE_TIME_LIMIT_MS);
const fat = c.results.filter((r) => r.abDelta > 4 * r.size + CASE_ALLOC_SLACK);
const max = c.results.reduce((a, b) => (b.ms > a.ms ? b : a));
console.log(`seed ${seed}, scale ${scale}: ${c.results.length} cases in ${s.toFixed(1)} s, max ${max.ms.toFixed(1)} ms (${max.reader} ${max.label})`);
for (const [k, v] of Object.entries(c.table())) console.log(`  ${k.padEnd(18)} ok ${v.ok}  rejected ${v.rejected}  crash ${v.crash}`);
for (const r of [...crashes, ...slow, ...fat].slice(0, 50)) console.log(`  ${r.outcome} ${r.reader} ${r.label} ${r.ms.toFixed(0)} ms ${r.error ?? ''}`);
process.exitCode = crashes.length || slow.length || fat.length ? 1 : 0;
