// Merges a contributions fragment into package.json idempotently (read-modify-write in one step),
// so several features can add their commands/menus/views/settings without clobbering each other.
//   node scripts/add-contributions.mjs path/to/fragment.json
// Fragment: { "commands": [...], "menus": {"view/item/context": [...]}, "views": {...},
//             "viewsContainers": {...}, "configuration": {"properties": {...}}, "customEditors": [...],
//             "activationEvents": [...], "keybindings": [...] }
import { readFileSync, writeFileSync } from 'node:fs';

const frag = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const c = (pkg.contributes ??= {});
const keyOf = (x) => x.command ?? x.id ?? x.viewType ?? JSON.stringify(x);
function mergeArray(target, items) {
  for (const it of items) {
    const k = keyOf(it);
    const i = target.findIndex((t) => keyOf(t) === k && (t.when ?? '') === (it.when ?? ''));
    if (i >= 0) target[i] = it; else target.push(it);
  }
}
for (const [key, val] of Object.entries(frag)) {
  if (key === 'activationEvents') {
    pkg.activationEvents = [...new Set([...(pkg.activationEvents ?? []), ...val])];
  } else if (Array.isArray(val)) {
    mergeArray((c[key] ??= []), val);
  } else if (key === 'configuration') {
    const conf = Array.isArray(c.configuration) ? c.configuration[0] : (c.configuration ??= { title: 'LoRA Lens', properties: {} });
    Object.assign((conf.properties ??= {}), val.properties ?? {});
  } else {
    const obj = (c[key] ??= {});
    for (const [k2, v2] of Object.entries(val)) {
      if (Array.isArray(v2)) mergeArray((obj[k2] ??= []), v2);
      else obj[k2] = v2;
    }
  }
}
writeFileSync('package.json', JSON.stringify(pkg, null, 2) + '\n');
console.log(`merged ${process.argv[2]} into package.json`);
