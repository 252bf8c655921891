/**
 * Doctor webview (`loraLens.doctor`): findings grouped by severity, each with its code, module,
 * message and a link to its file (config line or weights file) — the same findings are in the
 * Problems panel. Rows carry data-code / data-severity for tests.
 */
import type { DoctorFindingView, DoctorSeverity, DoctorView } from '../../src/shared/doctor';
import { act, badge, card, connect, fact, h, header } from '../peers/ui';

let view: DoctorView | undefined;
const app = document.getElementById('app')!;
const channel = connect((m) => {
  if ((m.type === 'init' || m.type === 'update') && m.view.kind === 'doctor') { view = m.view; render(); }
});

const GROUPS: { sev: DoctorSeverity; title: string; icon: string }[] = [
  { sev: 'error', title: 'Errors', icon: '⛔' },
  { sev: 'warning', title: 'Warnings', icon: '⚠' },
  { sev: 'info', title: 'Info', icon: 'ℹ' },
];

const base = (p: string): string => p.split(/[\\/]/).pop() ?? p;

function location(f: DoctorFindingView): HTMLElement {
  const label = `${base(f.file)}${f.line ? `:${f.line}` : ''}`;
  const a = h('a', { href: '#', class: 'loc', title: `Open ${f.file}${f.line ? ` at line ${f.line}` : ''}`, 'data-file': f.file }, label);
  a.addEventListener('click', (e) => { e.preventDefault(); void act(channel, { type: 'openFile', file: f.file, line: f.line }); });
  return a;
}

function findingRow(f: DoctorFindingView): HTMLElement {
  const sugg = f.suggestion ? h('code', { class: 'suggestion' }, JSON.stringify(f.suggestion)) : undefined;
  return h('li', { class: `finding sev-${f.severity}`, 'data-code': f.code, 'data-severity': f.severity, 'data-module': f.module },
    h('div', { class: 'finding-head' }, badge(f.code, `code sev-${f.severity}`), f.module ? h('span', { class: 'module', title: f.module }, f.module) : h('span', { class: 'module muted' }, 'adapter-wide'), h('span', { class: 'spacer' }), location(f)),
    h('div', { class: 'finding-msg' }, f.message),
    f.tensor ? h('div', { class: 'hint' }, `tensor ${f.tensor}`) : undefined,
    sugg ? h('div', { class: 'hint' }, 'suggestion: ', sugg) : undefined);
}

function render(): void {
  if (!view) return;
  const r = view.result, s = r.summary;
  const rerun = h('button', { id: 'doctor-rerun', class: 'secondary', type: 'button', disabled: !!view.running, title: 'Run the doctor again' }, view.running ? 'Running…' : 'Re-run');
  rerun.addEventListener('click', () => void act(channel, { type: 'rerun' }, 'Running…'));
  const analyze = h('button', { id: 'doctor-analyze', class: 'primary', type: 'button', title: 'Open the analysis report of this adapter' }, 'Analyze');
  analyze.addEventListener('click', () => void act(channel, { type: 'analyze', path: r.adapter.path }));
  const badges = [
    badge(`${s.error} error${s.error === 1 ? '' : 's'}`, s.error ? 'error' : 'ok'),
    badge(`${s.warning} warning${s.warning === 1 ? '' : 's'}`, s.warning ? 'warn' : 'ok'),
    badge(`${s.info} info`, 'accent'),
  ];
  const parts: HTMLElement[] = [header(channel, {
    id: 'doctor-header', title: `Doctor: ${r.adapter.name}`, badges, path: r.adapter.path, actions: [rerun, analyze],
    facts: [fact('format', 'Format', r.adapter.format), fact('modules', 'Modules', String(s.modules)), fact('errors', 'Errors', String(s.error)),
      fact('warnings', 'Warnings', String(s.warning)), fact('infos', 'Info', String(s.info)), fact('time', 'Time', `${r.ms.toFixed(0)} ms`),
      fact('updated', 'Checked', new Date(view.updated).toLocaleTimeString())],
  })];
  if (!r.findings.length) parts.push(card('doctor-clean', 'No findings', 'every rule passed', h('p', { class: 'explain' }, 'The doctor found nothing to report: factors are finite and non-zero, the scale is in range, the config matches the tensors.')));
  for (const g of GROUPS) {
    const fs = r.findings.filter((f) => f.severity === g.sev);
    if (!fs.length) continue;
    parts.push(card(`doctor-${g.sev}`, `${g.icon} ${g.title} (${fs.length})`, 'click a location to open the file; the same findings are in the Problems panel', h('ul', { class: 'findings' }, ...fs.map(findingRow))));
  }
  const codes = Object.entries(s.codes).sort((a, b) => b[1] - a[1]);
  if (codes.length) {
    parts.push(card('doctor-codes', 'What the codes mean', 'docs/doctor.md',
      h('table', { class: 'data', id: 'codes-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'code'), h('th', { class: 'num' }, 'findings'), h('th', {}, 'meaning'))),
        h('tbody', {}, ...codes.map(([c, n]) => h('tr', { 'data-code': c }, h('td', { class: 'name' }, c), h('td', { class: 'num' }, String(n)), h('td', {}, r.codeInfo[c] ?? '')))))));
  }
  app.replaceChildren(...parts);
}

channel.post({ type: 'ready' });
