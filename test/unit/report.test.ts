/**
 * Reports (src/core/report, `lora-lens report`): Markdown and self-contained HTML for the adapter
 * report (model card numbers vs numpy's, test/fixtures/doctor/gen_doctor.py "healthy" metrics),
 * the doctor and the similarity results; no external resource and no script in the HTML; text
 * from the adapter (a hostile folder name) is escaped; --out never overwrites.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import { doctorAdapter } from '../../src/core/doctor/doctor';
import { adapterReportDoc, modelCardMarkdown } from '../../src/core/report/build';
import { escapeHtml, fmtNum, toHtml, toMarkdown } from '../../src/core/report/render';

const repoRoot = path.resolve(__dirname, '../../..');
const DOC = path.join(repoRoot, 'test/fixtures/doctor');
const SIM = path.join(repoRoot, 'test/fixtures/similarity');
const CLI = path.join(repoRoot, 'out/src/core/cli.js');
const engine = new Engine({ provider: 'cpu' });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-report-'));
after(async () => { await engine.dispose(); fs.rmSync(tmp, { recursive: true, force: true }); });

const metrics = JSON.parse(fs.readFileSync(path.join(DOC, 'expected.json'), 'utf8')).healthy.metrics as { sigma1: number; sigma1Module: string; froMedian: number; froMax: number };

/** No script, no external resource: every src/href is an in-page anchor, no url(), no @import. */
function assertSelfContained(html: string): void {
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /<link\b/i);
  assert.doesNotMatch(html, /\bsrc\s*=/i);
  assert.doesNotMatch(html, /url\(|@import/i);
  for (const m of html.matchAll(/href="([^"]*)"/g)) assert.ok(m[1].startsWith('#'), `href ${m[1]}`);
  assert.doesNotMatch(html, /https?:/i);
}

test('adapter report: model card with base, targets, rank pattern, scale rule, doctor summary and numpy metrics (md + html)', async () => {
  const a = openAdapter(path.join(DOC, 'healthy'));
  try {
    const d = await doctorAdapter(a, { engine });
    const { report, ...doctor } = d;
    const card = modelCardMarkdown(report, doctor);
    assert.match(card, /\| Base model \| tiny\/base \|/);
    assert.match(card, /\| Target modules \| q_proj, v_proj \|/);
    assert.match(card, /\| Rank pattern \| none \(all 6 modules r = 8\) \|/);
    assert.match(card, /\| Scale rule \| alpha\/r = 16\/8 = 2 \|/);
    assert.match(card, /\| Doctor \| 0 error\(s\), 0 warning\(s\), 0 info \|/);
    // Numbers: formatted to 4 significant digits from numpy's values of the explicitly formed ΔW.
    assert.ok(card.includes(`| Largest σ₁(ΔW) | ${fmtNum(metrics.sigma1)} (${metrics.sigma1Module}) |`), card);
    assert.ok(card.includes(`median ${fmtNum(metrics.froMedian)}, max ${fmtNum(metrics.froMax)}`), card);
    const doc = adapterReportDoc(report, doctor);
    const md = toMarkdown(doc);
    assert.match(md, /^# LoRA adapter report: healthy/);
    assert.ok(md.includes('```markdown\n### LoRA adapter'));
    for (const s of ['## Overview', '## Model card', '## Doctor', '## Charts', '## Modules']) assert.ok(md.includes(s), s);
    const html = toHtml(doc);
    assertSelfContained(html);
    assert.equal((html.match(/<svg /g) ?? []).length, 4, 'four inline SVG charts');
    assert.ok(html.includes(escapeHtml('| Scale rule | alpha/r = 16/8 = 2 |')));
  } finally {
    a.store.close();
  }
});

test('report escapes adapter text: a hostile folder name stays text in HTML and Markdown', () => {
  const evil = path.join(tmp, '<img src=x onerror=alert(1)>&"x');
  fs.mkdirSync(evil);
  for (const f of fs.readdirSync(path.join(DOC, 'untrained'))) fs.copyFileSync(path.join(DOC, 'untrained', f), path.join(evil, f));
  const html = spawnSync(process.execPath, [CLI, 'report', evil, '--format', 'html'], { encoding: 'utf8' });
  assert.equal(html.status, 0, html.stderr);
  assert.ok(!html.stdout.includes('<img'), 'no raw <img');
  assert.ok(html.stdout.includes('&lt;img src=x onerror=alert(1)&gt;&amp;&quot;x'));
  assertSelfContained(html.stdout.replace(/&lt;img src=x/g, '&lt;img SRC_x'));
  assert.ok(html.stdout.includes('untrained'), 'doctor findings in the report');
  const md = spawnSync(process.execPath, [CLI, 'report', evil], { encoding: 'utf8' });
  assert.equal(md.status, 0, md.stderr);
  assert.ok(!/[^\\]<img/.test(md.stdout), 'no raw <img in Markdown');
  assert.ok(md.stdout.includes('`untrained`'));
});

test('report from saved doctor / similarity JSON, similarity of several adapters, --out is new-file only', () => {
  const dj = path.join(tmp, 'doctor.json');
  const d = spawnSync(process.execPath, [CLI, 'doctor', path.join(DOC, 'rank_excess'), '--json'], { encoding: 'utf8' });
  fs.writeFileSync(dj, d.stdout);
  const dr = spawnSync(process.execPath, [CLI, 'report', dj], { encoding: 'utf8' });
  assert.equal(dr.status, 0, dr.stderr);
  assert.match(dr.stdout, /# Adapter doctor: rank\\_excess/);
  assert.ok(dr.stdout.includes('`rank-excess`'));
  const sj = path.join(tmp, 'sim.json');
  fs.writeFileSync(sj, spawnSync(process.execPath, [CLI, 'similarity', path.join(SIM, 'a1'), path.join(SIM, 'a2'), '--json'], { encoding: 'utf8' }).stdout);
  const out = path.join(tmp, 'sim.html');
  const sr = spawnSync(process.execPath, [CLI, 'report', sj, '--format', 'html', '--out', out], { encoding: 'utf8' });
  assert.equal(sr.status, 0, sr.stderr);
  const html = fs.readFileSync(out, 'utf8');
  assertSelfContained(html);
  assert.ok(html.includes('Energy-weighted |cos| of ΔW'));
  assert.equal((html.match(/<svg /g) ?? []).length, 3, 'three heatmaps');
  const again = spawnSync(process.execPath, [CLI, 'report', sj, '--format', 'html', '--out', out], { encoding: 'utf8' });
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already exists/);
  assert.equal(fs.readFileSync(out, 'utf8'), html, 'existing file untouched');
  const multi = spawnSync(process.execPath, [CLI, 'report', path.join(SIM, 'a1'), path.join(SIM, 'a1g'), path.join(SIM, 'a3')], { encoding: 'utf8' });
  assert.equal(multi.status, 0, multi.stderr);
  assert.match(multi.stdout, /# Adapter similarity \(3 adapters\)/);
  assert.equal(spawnSync(process.execPath, [CLI, 'report', sj, '--format', 'pdf'], { encoding: 'utf8' }).status, 2);
  const noDir = spawnSync(process.execPath, [CLI, 'report', sj, '--out', path.join(tmp, 'no', 'such', 'r.md')], { encoding: 'utf8' });
  assert.equal(noDir.status, 1);
  assert.match(noDir.stderr, /^error: .*r\.md: could not be written: its folder does not exist/);
  const notRes = path.join(tmp, 'other.json');
  fs.writeFileSync(notRes, '{"a": 1}');
  const nr = spawnSync(process.execPath, [CLI, 'report', notRes], { encoding: 'utf8' });
  assert.equal(nr.status, 1);
  assert.match(nr.stderr, /other\.json: is not a saved LoRA Lens result/);
});
