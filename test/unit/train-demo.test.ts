/**
 * Issue 13 item 10: the default training task learns (LoRA and BaLoRA ≥ 95 % held-out accuracy
 * within the default steps) and `lora-lens train-demo --json` reports it with the exact keys; the
 * §5.3 subtraction experiment stays available as a research preset with its caveat.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { main } from '../../src/core/cli';
import { DEFAULT_TRAIN_TASK, TRAIN_TASKS, cosineLr, pretrainData } from '../../src/core/train/tasks';
import { SEQ_LEN, modularData } from '../../src/core/train/models';

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try {
    const code = await main(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log; console.error = error;
  }
}

test('task data from the definition: prompts [x, +, y, =], label y (base: x), 80/20 disjoint split of all p² pairs', () => {
  const preset = TRAIN_TASKS[DEFAULT_TRAIN_TASK];
  const p = preset.model.p;
  const { train, test: held } = preset.data(preset.defaults.seed);
  assert.equal(train.n + held.n, p * p);
  assert.equal(held.n, p * p - Math.round(0.8 * p * p));
  const seen = new Set<number>();
  for (const d of [train, held]) {
    for (let i = 0; i < d.n; i++) {
      const [x, op, y, eq] = Array.from(d.tokens.subarray(i * SEQ_LEN, (i + 1) * SEQ_LEN), Number);
      assert.equal(op, p + 1); // '+'
      assert.equal(eq, p); // '='
      assert.equal(Number(d.labels[i]), y);
      const key = x * p + y;
      assert.ok(!seen.has(key), 'pairs are disjoint');
      seen.add(key);
    }
  }
  // pre-training: all pairs, the base answers the FIRST operand
  const pre = pretrainData(preset);
  assert.equal(pre.n, p * p);
  for (let i = 0; i < pre.n; i++) assert.equal(Number(pre.labels[i]), Number(pre.tokens[i * SEQ_LEN]));
  // the subtraction preset's base is pre-trained on (x + y) mod p
  const preSub = pretrainData(TRAIN_TASKS['modular-subtraction']);
  for (let i = 0; i < preSub.n; i++) assert.equal(Number(preSub.labels[i]), (Number(preSub.tokens[i * SEQ_LEN]) + Number(preSub.tokens[i * SEQ_LEN + 2])) % p);
  // the research preset is the §5.3 subtraction task, with a caveat for the panel
  const sub = TRAIN_TASKS['modular-subtraction'];
  assert.equal(sub.research, true);
  assert.ok(sub.caveat && /chance/.test(sub.caveat));
  const s = sub.data(1), old = modularData(p, '-', 0.8, 1);
  assert.deepEqual(Array.from(s.test.labels), Array.from(old.test.labels));
  for (let i = 0; i < s.test.n; i++) {
    const x = Number(s.test.tokens[i * SEQ_LEN]), y = Number(s.test.tokens[i * SEQ_LEN + 2]);
    assert.equal(Number(s.test.labels[i]), (((x - y) % p) + p) % p);
  }
  assert.equal(cosineLr(1, 0, 10, 0.02), 1);
  assert.ok(Math.abs(cosineLr(1, 9, 10, 0.02) - 0.02) < 1e-15);
});

test('train-demo usage errors exit 2', async () => {
  assert.equal((await capture(['train-demo', '--steps', 'many'])).code, 2);
  assert.equal((await capture(['train-demo', '--steps', '0'])).code, 2);
  assert.equal((await capture(['train-demo', '--task', 'nope'])).code, 2);
  assert.equal((await capture(['train-demo', 'extra'])).code, 2);
});

test('train-demo --json (default task, default steps): LoRA and BaLoRA ≥ 95 % held-out accuracy, well above the frozen base', async () => {
  const t0 = performance.now();
  const r = await capture(['train-demo', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { task: string; lora: { heldOutAccuracy: number; steps: number }; balora: { heldOutAccuracy: number; balanceGap: number }; base: { heldOutAccuracy: number } };
  assert.equal(j.task, DEFAULT_TRAIN_TASK);
  assert.equal(j.lora.steps, TRAIN_TASKS[DEFAULT_TRAIN_TASK].defaults.steps);
  assert.ok(j.lora.heldOutAccuracy >= 0.95, `LoRA ${j.lora.heldOutAccuracy}`);
  assert.ok(j.balora.heldOutAccuracy >= 0.95, `BaLoRA ${j.balora.heldOutAccuracy}`);
  assert.ok(j.base.heldOutAccuracy < 0.2, `the frozen base is near chance: ${j.base.heldOutAccuracy}`);
  assert.ok(j.balora.balanceGap < 1e-4, `BaLoRA stays balanced: ${j.balora.balanceGap}`);
  console.log(`train-demo: base ${j.base.heldOutAccuracy}, LoRA ${j.lora.heldOutAccuracy}, BaLoRA ${j.balora.heldOutAccuracy} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
