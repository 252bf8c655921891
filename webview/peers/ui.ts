/**
 * Pieces shared by the issue-11 webviews (doctor, similarity, fleet, merge, extract): the host
 * channel, the header card with the export buttons, number formatting and one sortable,
 * filterable table (cells carry data-metric / data-value for tests and screen readers).
 */
import { h, HostChannel } from '../common/vscodeApi';
import type { HostToWebview, PeersView, WebviewToHost } from '../../src/shared/peers';

export { h };

export function connect(onMessage: (m: HostToWebview) => void): HostChannel<WebviewToHost, HostToWebview> {
  const channel = new HostChannel<WebviewToHost, HostToWebview>(onMessage);
  window.addEventListener('error', (e) => channel.post({ type: 'log', level: 'error', message: `${e.message} @${e.filename}:${e.lineno}` }));
  return channel;
}

export const fmt = (x: number | null | undefined, d = 3): string => {
  if (x === undefined || x === null || Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e5 || a < 1e-3 ? x.toExponential(2) : Number(x.toPrecision(d + 1)).toString();
};
export const pct = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)} %`);
export const short = (name: string): string => name.replace(/^(base_model\.model\.)?(model\.)?/, '').replace(/self_attn\.|mlp\./, '');
export const bytes = (n: number): string => (n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GB` : n >= 1 << 20 ? `${(n / 2 ** 20).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} kB` : `${n} B`);

export function fact(id: string, label: string, value: string | Node, cls = ''): HTMLElement {
  return h('div', { class: `fact ${cls}`.trim(), 'data-fact': id }, h('dt', {}, label), h('dd', {}, value));
}

export function setStatus(text: string, error = false): void {
  const s = document.getElementById('action-status');
  if (!s) return;
  s.textContent = text;
  s.classList.toggle('error', error);
}

/** A request whose outcome goes to the status line. */
export function act(channel: HostChannel<WebviewToHost, HostToWebview>, m: Parameters<HostChannel<WebviewToHost, HostToWebview>['request']>[0], busy?: string): Promise<void> {
  if (busy) setStatus(busy);
  return channel.request(m).then((r) => {
    const rep = r as { ok?: boolean; message?: string };
    setStatus(rep.message ?? '', false);
  }, (e: Error) => setStatus(e.message, true));
}

/** Header card: title, badges, path, actions (the export buttons last), facts. */
export function header(channel: HostChannel<WebviewToHost, HostToWebview>, o: { id: string; title: string; badges?: HTMLElement[]; path?: string; actions?: HTMLElement[]; facts?: HTMLElement[]; exportable?: boolean }): HTMLElement {
  const exp = (fmtName: 'md' | 'html', label: string): HTMLElement => {
    const b = h('button', { id: `export-${fmtName}`, class: 'secondary', type: 'button', title: `Export this view as ${label} (save dialog)` }, `Export ${fmtName === 'md' ? '.md' : '.html'}`);
    b.addEventListener('click', () => void act(channel, { type: 'export', format: fmtName }, 'Exporting…'));
    return b;
  };
  return h('header', { class: 'card header-card', id: o.id },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', {}, o.title), ...(o.badges ?? [])),
      h('div', { class: 'actions' }, h('span', { class: 'export-status', id: 'action-status', role: 'status' }), ...(o.actions ?? []),
        ...(o.exportable === false ? [] : [exp('md', 'Markdown'), exp('html', 'HTML')]))),
    o.path ? h('div', { class: 'path', title: o.path }, o.path) : undefined,
    o.facts?.length ? h('dl', { class: 'facts' }, ...o.facts) : undefined);
}

export function badge(text: string, cls = ''): HTMLElement {
  return h('span', { class: `badge ${cls}`.trim() }, text);
}

export function card(id: string, title: string, hint: string, ...body: (Node | undefined)[]): HTMLElement {
  return h('section', { class: 'card', id }, h('div', { class: 'card-head' }, h('h2', {}, title), h('span', { class: 'hint' }, hint)), ...body.filter((b): b is Node => !!b));
}

export interface Col<T> {
  key: string;
  label: string;
  title: string;
  value: (r: T) => number | string | null;
  text?: (r: T) => string | Node;
  num?: boolean;
}

/**
 * A sortable (click a header), optionally filterable table. `rows` may grow (`setRows`); the body
 * is rebuilt at most once per animation frame so streaming hundreds of rows stays smooth.
 */
export class SortTable<T> {
  readonly el: HTMLElement;
  private readonly table: HTMLTableElement;
  private readonly tbody: HTMLTableSectionElement;
  private rows: T[] = [];
  private sortKey: string | undefined;
  private dir: 1 | -1 = 1;
  private filter: (r: T) => boolean = () => true;
  private pending = false;
  onRender: (shown: number, total: number) => void = () => undefined;

  constructor(id: string, private readonly cols: Col<T>[], private readonly rowAttrs: (r: T) => Record<string, string | undefined>, private readonly onClick?: (r: T, ev: MouseEvent) => void) {
    const ths = cols.map((c) => {
      const th = h('th', { class: c.num === false ? '' : 'num', title: c.title, scope: 'col', 'data-key': c.key, tabindex: 0 }, c.label);
      const sort = (): void => {
        if (this.sortKey === c.key) this.dir = this.dir === 1 ? -1 : 1;
        else { this.sortKey = c.key; this.dir = c.num === false ? 1 : -1; }
        for (const o of this.table.querySelectorAll('th')) o.removeAttribute('aria-sort');
        th.setAttribute('aria-sort', this.dir === 1 ? 'ascending' : 'descending');
        this.render();
      };
      th.addEventListener('click', sort);
      th.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
      return th;
    });
    this.tbody = h('tbody', {});
    this.table = h('table', { id, class: 'data sortable' }, h('thead', {}, h('tr', {}, ...ths)), this.tbody);
    this.el = h('div', { class: 'table-wrap' }, this.table);
  }

  setRows(rows: T[]): void {
    this.rows = rows;
    this.schedule();
  }

  setFilter(f: (r: T) => boolean): void {
    this.filter = f;
    this.render();
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.render(); });
  }

  render(): void {
    let rows = this.rows.filter(this.filter);
    const col = this.cols.find((c) => c.key === this.sortKey);
    if (col) {
      const d = this.dir;
      rows = [...rows].sort((a, b) => {
        const x = col.value(a), y = col.value(b);
        if (x === null || (typeof x === 'number' && Number.isNaN(x))) return 1;
        if (y === null || (typeof y === 'number' && Number.isNaN(y))) return -1;
        return (typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y))) * d;
      });
    }
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = h('tr', this.rowAttrs(r), ...this.cols.map((c) => {
        const v = c.value(r);
        const txt = c.text ? c.text(r) : typeof v === 'number' ? fmt(v) : v ?? '–';
        return h('td', { class: c.num === false ? 'name' : 'num', 'data-metric': c.key, 'data-value': v === null ? '' : String(v) }, txt);
      }));
      if (this.onClick) tr.addEventListener('click', (ev) => this.onClick!(r, ev));
      frag.append(tr);
    }
    this.tbody.replaceChildren(frag);
    this.onRender(rows.length, this.rows.length);
  }
}

/** A warnings card; more than `open` items are folded into a <details>. */
export function warningsCard(id: string, title: string, items: string[], open = 3): HTMLElement {
  const list = h('ul', {}, ...items.map((w) => h('li', {}, w)));
  return h('section', { class: 'card warnings', id }, items.length <= open
    ? h('div', {}, h('div', { class: 'warnings-title' }, title), list)
    : h('details', {}, h('summary', { class: 'warnings-title' }, `${title} (${items.length})`), list));
}

export type { PeersView };
