/**
 * Deterministic, seeded fuzz campaign over every reader (issue 5 part 3, "Hardening").
 *
 * Every case writes one malformed input (from a valid seed file + a mutator) into its own temp
 * folder, opens it with one reader and reads every tensor. The contract checked:
 *   - it opens fine, or it throws FormatError whose message contains `e.file`, and `e.file` lies in
 *     the case folder (no TypeError/RangeError/stack overflow: any other exception is a crash);
 *   - the case finishes in < 2 s;
 *   - `arrayBuffers` growth per case ≤ 4 × file size + 32 MB, and heap+arrayBuffers growth across
 *     the campaign (after GC) ≤ 64 MB;
 *   - detectCheckpoints never throws on any case folder;
 *   - real-data seed files are byte-identical afterwards.
 * Counts per reader and outcome are printed (docs/reliability.md reports them).
 * The longer run: `node out/bench/fuzz-long.js [cases-per-reader] [seed]`.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { CAMPAIGN_HEAP_CAP, CASE_ALLOC_SLACK, CASE_TIME_LIMIT_MS, gc, KNOWN_TODO, runCampaign } from './fuzzcampaign';

// ---------------------------------------------------------------- the CI test

test('fuzz campaign: every malformed input opens or fails with a FormatError naming the file, in < 2 s, bounded memory', { timeout: 180_000 }, () => {
  gc();
  const m0 = process.memoryUsage();
  const t0 = performance.now();
  const c = runCampaign(0x10ca1e);
  const totalS = (performance.now() - t0) / 1000;
  gc();
  const m1 = process.memoryUsage();
  const table = c.table();
  const crashes = c.results.filter((x) => x.outcome === 'crash');
  const slowest = c.results.reduce((a, b) => (b.ms > a.ms ? b : a));
  const maxAb = c.results.reduce((a, b) => (b.abDelta > a.abDelta ? b : a));
  const growth = (m1.heapUsed + m1.arrayBuffers) - (m0.heapUsed + m0.arrayBuffers);
  console.log(`fuzz: ${c.results.length} cases in ${totalS.toFixed(1)} s; max case ${slowest.ms.toFixed(1)} ms (${slowest.reader} ${slowest.label}); ` +
    `max arrayBuffers growth in a case ${(maxAb.abDelta / 1048576).toFixed(1)} MB (${maxAb.reader} ${maxAb.label}, file ${maxAb.size} bytes); ` +
    `heap+arrayBuffers growth after GC ${(growth / 1048576).toFixed(1)} MB; rss ${(m0.rss / 1048576).toFixed(0)} -> ${(m1.rss / 1048576).toFixed(0)} MB`);
  console.log('fuzz outcomes per reader:');
  for (const [k, v] of Object.entries(table)) console.log(`  ${k.padEnd(18)} ok ${String(v.ok).padStart(4)}  rejected ${String(v.rejected).padStart(4)}  crash ${v.crash}`);
  for (const x of crashes.slice(0, 20)) console.log(`  CRASH ${x.reader} ${x.label}: ${x.error}`);
  const unexpected = crashes.filter((x) => !Object.keys(KNOWN_TODO).some((k) => `${x.reader}:${x.label}`.startsWith(k)));
  assert.equal(unexpected.length, 0, `crashes: ${unexpected.slice(0, 5).map((x) => `${x.reader} ${x.label}: ${x.error}`).join(' | ')}`);
  for (const x of c.results) {
    assert.ok(x.ms < CASE_TIME_LIMIT_MS, `${x.reader} ${x.label} took ${x.ms.toFixed(0)} ms`);
    assert.ok(x.abDelta <= 4 * x.size + CASE_ALLOC_SLACK, `${x.reader} ${x.label}: arrayBuffers grew ${x.abDelta} bytes for a ${x.size}-byte file`);
  }
  assert.ok(growth < CAMPAIGN_HEAP_CAP, `heap + arrayBuffers grew ${growth} bytes across the campaign`);
  assert.ok(c.results.length >= 1800, `campaign ran ${c.results.length} cases`);
  // Every reader saw both outcomes (the mutators are not all rejected up front).
  for (const k of ['safetensors', 'peft-folder', 'kohya-file', 'gguf-store', 'gguf-adapter', 'torch-zip']) {
    assert.ok(table[k].ok > 0 && table[k].rejected > 0, `${k}: ${JSON.stringify(table[k])}`);
  }
});
