/** HTML shell for webviews: strict CSP with a nonce, resources only from dist/ and media/. */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

export function webviewRoots(extensionUri: vscode.Uri): vscode.Uri[] {
  return [vscode.Uri.joinPath(extensionUri, 'dist'), vscode.Uri.joinPath(extensionUri, 'media')];
}

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return { enableScripts: true, enableForms: false, enableCommandUris: false, localResourceRoots: webviewRoots(extensionUri) };
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function webviewHtml(
  webview: vscode.Webview,
  extensionUri: vscode.Uri,
  o: { title: string; script: string; styles: string[]; bodyClass?: string },
): string {
  const nonce = randomBytes(18).toString('base64').replace(/[^A-Za-z0-9]/g, '');
  const src = webview.cspSource;
  const csp = `default-src 'none'; img-src ${src} data:; style-src ${src}; script-src 'nonce-${nonce}'; font-src ${src}`;
  const styles = o.styles
    .map((s) => `<link rel="stylesheet" href="${webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', s))}">`)
    .join('\n    ');
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', o.script));
  return `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <meta http-equiv="Content-Security-Policy" content="${csp}">
    <meta name="viewport" content="width=device-width, initial-scale=1.0">
    ${styles}
    <title>${esc(o.title)}</title>
  </head>
  <body class="${esc(o.bodyClass ?? '')}">
    <div id="app" class="app"><div class="loading" id="loading">Loading…</div></div>
    <script nonce="${nonce}" src="${script}"></script>
  </body>
</html>`;
}
