/**
 * Adapter doctor (src/core/doctor): every planted defect of test/fixtures/doctor/gen_doctor.py is
 * found on the right module with the documented code and nothing else fires (the healthy adapter
 * has no finding at all); intruder findings agree with numpy's count from the definition; the
 * real third-party adapters of /work/shared/realdata (when present) are diagnosed without error
 * findings; `lora-lens doctor --json` keeps its contract.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import { openBaseModel } from '../../src/core/base/basemodel';
import { DOCTOR_CODES, doctorAdapter, jsonKeyLine } from '../../src/core/doctor/doctor';

const repoRoot = path.resolve(__dirname, '../../..');
const FIX = path.join(repoRoot, 'test/fixtures/doctor');
const REAL = process.env.LORA_LENS_REALDATA ?? path.resolve(repoRoot, '../shared/realdata');
const engine = new Engine({ provider: 'cpu' });
after(() => engine.dispose());

interface Case { must: [string, string][]; allowed: string[]; base?: string; intruderCounts?: Record<string, number>; lost?: Record<string, number> }
const cases: Record<string, Case> = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));

for (const [name, c] of Object.entries(cases)) {
  test(`doctor: planted defect "${name}"`, async () => {
    const a = openAdapter(path.join(FIX, name));
    const base = c.base ? openBaseModel(path.join(FIX, c.base)) : undefined;
    try {
      const r = await doctorAdapter(a, { engine, base });
      for (const [code, module] of c.must) {
        const f = r.findings.find((x) => x.code === code && x.module === module);
        assert.ok(f, `${name}: expected ${code} on "${module}", got ${JSON.stringify(r.findings.map((x) => [x.code, x.module]))}`);
        assert.equal(f.severity, DOCTOR_CODES[f.code].severity, `${name}: ${code} severity`);
        assert.ok(fs.existsSync(f.file), `${name}: finding file ${f.file} exists`);
        assert.ok(f.message.length > 10);
      }
      const expectedCodes = new Set([...c.must.map(([code]) => code), ...c.allowed]);
      const extra = r.findings.filter((f) => !expectedCodes.has(f.code));
      assert.deepEqual(extra.map((f) => `${f.code} ${f.module}: ${f.message}`), [], `${name}: unexpected findings`);
      for (const f of r.findings) assert.ok(f.code in DOCTOR_CODES, `documented code ${f.code}`);
      if (name === 'untrained') assert.equal(r.findings[0].severity, 'error');
      if (name === 'nonfinite') assert.ok(r.findings.every((f) => f.severity === 'error' && f.tensor));
      if (c.lost) {
        // zeros + deep subnormals counted by numpy on the stored bits
        for (const [m, n] of Object.entries(c.lost)) {
          const f = r.findings.find((x) => x.code === 'factor-underflow' && x.module === m)!;
          const got = /has (\d+) zeros and (\d+) subnormals with/.exec(f.message)!;
          assert.equal(Number(got[1]) + Number(got[2]), n, `${m} lost values`);
        }
      }
      if (c.intruderCounts) {
        for (const [m, n] of Object.entries(c.intruderCounts)) {
          const f = r.findings.find((x) => x.code === 'intruders' && x.module === m);
          if (n > 0) assert.match(f!.message, new RegExp(`: ${n} of the top 10 `));
          else assert.equal(f, undefined);
        }
      }
      // Config-level findings point at the config line of the key they are about.
      const cfgText = fs.readFileSync(path.join(FIX, name, 'adapter_config.json'), 'utf8');
      const alphaF = r.findings.find((f) => f.code === 'scale-extreme' || f.code === 'alpha-default');
      if (alphaF) assert.equal(alphaF.line, jsonKeyLine(cfgText, 'lora_alpha'));
      const pat = r.findings.find((f) => f.code === 'pattern-unmatched');
      if (pat) assert.equal(cfgText.split('\n')[pat.line! - 1].includes('layers.9.self_attn.q_proj'), true);
    } finally {
      a.store.close();
      base?.store.close();
    }
  });
}

test('doctor on real third-party adapters: no error findings, known facts found', { skip: !fs.existsSync(REAL) && 'realdata not present' }, async () => {
  const paths = [
    'anirudh-ak__peft-gpt2', 'abrhaleyarefaine1997__gpt2-tigrinya-lora', 'Tashu014__lora-imdb-distilbert', 'Hareshjethani__BERT-GPT2-Multitask-Finetuning',
    'TheSotti__Lightweight-Fine-Tuning-to-FM', 'TFM-HITESH__MedAI', 'Arjun-254__Medical_Question_Answering_SLM',
    'catundchat__stable-diffusion-v1.5-lora/pytorch_lora_weights.safetensors', 'rafidreezwan__brain-mri-sd-lora-training/pytorch_lora_weights.safetensors',
    'cloneofsimo__lora/lora_disney.safetensors',
  ];
  for (const p of paths) {
    const a = openAdapter(path.join(REAL, p));
    try {
      const r = await doctorAdapter(a, { engine });
      assert.deepEqual(r.findings.filter((f) => f.severity === 'error').map((f) => f.message), [], p);
      // diffusers LoRA files record no alpha (every loader assumes scale 1): a fact of the format.
      if (p.includes('pytorch_lora_weights')) assert.ok(r.findings.some((f) => f.code === 'alpha-missing'), `${p}: alpha-missing`);
      // Trained PEFT adapters here set lora_alpha and target_modules consistently.
      if (a.format === 'peft' && a.config) assert.ok(!r.findings.some((f) => ['alpha-missing', 'untargeted-module', 'pattern-unmatched'].includes(f.code)), p);
    } finally {
      a.store.close();
    }
  }
});

test('lora-lens doctor --json: {"findings": [{module, code, severity, message, file}]}; unreadable file → exit 1 naming it', () => {
  const cli = path.join(repoRoot, 'out/src/core/cli.js');
  const p = spawnSync(process.execPath, [cli, 'doctor', path.join(FIX, 'untrained'), '--json'], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  const j = JSON.parse(p.stdout);
  assert.ok(Array.isArray(j.findings) && j.findings.length === 7);
  for (const f of j.findings) {
    for (const k of ['module', 'code', 'severity', 'message', 'file']) assert.equal(typeof f[k], 'string', k);
    assert.ok(['error', 'warning', 'info'].includes(f.severity));
  }
  const q = spawnSync(process.execPath, [cli, 'doctor', path.join(FIX, 'intruders'), '--base', path.join(FIX, 'base'), '--json'], { encoding: 'utf8' });
  assert.equal(q.status, 0, q.stderr);
  assert.ok(JSON.parse(q.stdout).findings.some((f: { code: string }) => f.code === 'intruders'));
  const bad = spawnSync(process.execPath, [cli, 'doctor', path.join(FIX, 'nope'), '--json'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error: .*nope.*does not exist/);
  assert.equal(spawnSync(process.execPath, [cli, 'doctor'], { encoding: 'utf8' }).status, 2);
});
