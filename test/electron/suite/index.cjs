// Extension-host test suite for @vscode/test-electron (mocha-free).
// Contract: export run(): Promise<void>; a rejection fails the run.
const assert = require('node:assert/strict');
const vscode = require('vscode');

const EXTENSION_ID = 'lora-lens.lora-lens';
const COMMANDS = [
  'loraLens.analyzeAdapter',
  'loraLens.refreshInspector',
  'loraLens.exportReport',
  'loraLens.openCheckpoint',
];

const tests = [
  [
    'extension is present and activates',
    async () => {
      const ext = vscode.extensions.getExtension(EXTENSION_ID);
      assert.ok(ext, `extension ${EXTENSION_ID} not found`);
      await ext.activate();
      assert.equal(ext.isActive, true, 'extension did not activate');
    },
  ],
  [
    'commands are registered',
    async () => {
      const all = new Set(await vscode.commands.getCommands(true));
      const missing = COMMANDS.filter((c) => !all.has(c));
      assert.deepEqual(missing, [], `commands not registered: ${missing.join(', ')}`);
    },
  ],
  [
    'contributions declare the view container, tree view and custom editor',
    async () => {
      const pkg = vscode.extensions.getExtension(EXTENSION_ID).packageJSON;
      const c = pkg.contributes ?? {};
      assert.ok((c.viewsContainers?.activitybar ?? []).some((v) => v.id === 'loraLens'), 'view container loraLens');
      assert.ok((c.views?.loraLens ?? []).some((v) => v.id === 'loraLens.inspector'), 'tree view loraLens.inspector');
      assert.ok((c.customEditors ?? []).some((e) => e.viewType === 'loraLens.checkpointViewer'), 'custom editor');
    },
  ],
];

exports.run = async function run() {
  const failures = [];
  for (const [name, fn] of tests) {
    try {
      await fn();
      console.log(`  ok - ${name}`);
    } catch (err) {
      console.error(`  not ok - ${name}: ${err?.message ?? err}`);
      failures.push(name);
    }
  }
  if (failures.length) throw new Error(`${failures.length} of ${tests.length} electron tests failed: ${failures.join('; ')}`);
};
