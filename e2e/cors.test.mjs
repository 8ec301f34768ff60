// Browser check of CUC CORS: web/cuc-inbox.html, served from an allowed and from a
// non-allowed origin (two loopback ports), reads the lab's inbox in Debian's headless
// Chromium with an SSO token from the lab IdS.
//
// Needs: the `ucbridge` binary (UCBRIDGE_BIN, else $CARGO_TARGET_DIR or ../target, debug),
// /usr/bin/chromium (Debian package `chromium`), `npm ci` here. Screenshots go to
// e2e/artifacts/ (git-ignored).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const webDir = path.join(root, 'web');
const artifacts = path.join(here, 'artifacts');
const bin = process.env.UCBRIDGE_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug', 'ucbridge');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// Closed network: without these Chromium keeps dialling out and floods refused connections.
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ucbridge-e2e-'));
const state = { servers: [], lab: null, context: null };

/** A static server for web/ on 127.0.0.1 and an ephemeral port. */
function serveWeb() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const name = path.basename(new URL(req.url, 'http://x').pathname);
      const file = path.join(webDir, name);
      if (!name.endsWith('.html') || !fs.existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      fs.createReadStream(file).pipe(res);
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Start `ucbridge lab` and wait for its banner. */
function startLab(allowedOrigin) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [
      'lab', '--bind', '127.0.0.1:0', '--users', '5', '--messages-per-user', '4',
      '--ca-out', path.join(tmp, 'ca.pem'), '--cors-origin', allowedOrigin,
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`lab did not start: ${out}`)), 30000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`lab exited (${code}): ${out}`)); });
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/CUC endpoint: (https:\/\/\S+)/);
      if (m && out.includes('Press Ctrl-C')) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({ child, url: m[1] });
      }
    });
  });
}

async function cli(args, extraEnv = {}) {
  const { stdout } = await run(bin, args, {
    env: { ...process.env, ...extraEnv },
    timeout: 30000,
  });
  return stdout;
}

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  assert.ok(fs.existsSync(bin), `ucbridge binary not found at ${bin} (cargo build -p ucbridge)`);
  assert.ok(fs.existsSync(chromiumPath), `${chromiumPath} missing (apt-get install chromium)`);
  state.servers = [await serveWeb(), await serveWeb()];
  const [allowed] = state.servers;
  state.lab = await startLab(`http://127.0.0.1:${allowed.address().port}`);
  state.context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumArgs,
    // The lab's CA is not in Chromium's store; the TLS of the CUC emulator is not what
    // this test checks.
    ignoreHTTPSErrors: true,
  });
});

after(async () => {
  await state.context?.close();
  state.lab?.child.kill('SIGINT');
  for (const s of state.servers) s.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Open the page on `port`, submit host + token, return what it shows. */
async function readInbox(port, token, shot) {
  const page = await state.context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${port}/cuc-inbox.html`);
  await page.fill('#host', new URL(state.lab.url).host);
  await page.fill('#token', token);
  await page.click('#read');
  await page.waitForFunction(() => /^(OK|Request failed|Unity Connection answered|Unexpected)/
    .test(document.getElementById('status').textContent), null, { timeout: 15000 });
  const status = await page.textContent('#status');
  const subjects = await page.$$eval('#messages tbody tr td:first-child', (tds) => tds.map((td) => td.textContent));
  await page.screenshot({ path: path.join(artifacts, shot), fullPage: true });
  await page.close();
  return { status, subjects, consoleErrors };
}

test('allowed origin reads the inbox; another origin is blocked by the browser', async () => {
  const ca = path.join(tmp, 'ca.pem');
  const admin = {
    UCBRIDGE_CUC_URL: state.lab.url,
    UCBRIDGE_CUC_USERNAME: 'administrator',
    UCBRIDGE_CUC_PASSWORD: 'ucbridge-lab',
    UCBRIDGE_CUC_CA_FILE: ca,
  };
  const users = JSON.parse(await cli(['cuc', 'users', 'list', '--json'], admin));
  const alias = users[0].alias;
  const expected = JSON.parse(await cli(['cuc', 'messages', 'list', alias, '--json'], admin));
  assert.equal(expected.length, 4);
  const token = (await cli([
    'sso', 'token', '--ids-url', `${state.lab.url}/ids/v1/oauth/token`,
    '--username', alias, '--ca-file', ca,
  ], { UCBRIDGE_SSO_PASSWORD: 'ucbridge-user' })).trim();
  assert.match(token, /^[A-Za-z0-9+/]+$/);

  const [allowed, other] = state.servers.map((s) => s.address().port);
  const ok = await readInbox(allowed, token, 'allowed-origin.png');
  assert.match(ok.status, /^OK: 4 of 4 messages/, ok.status);
  assert.deepEqual(ok.subjects, expected.map((m) => m.subject));

  const blocked = await readInbox(other, token, 'blocked-origin.png');
  assert.match(blocked.status, /^Request failed: blocked by CORS/, blocked.status);
  assert.deepEqual(blocked.subjects, []);
  assert.ok(blocked.consoleErrors.some((e) => /CORS policy/.test(e)),
    `Chromium reports the CORS block: ${blocked.consoleErrors.join(' | ')}`);

  // A refused token on the allowed origin is an HTTP answer, not a CORS failure.
  const refused = await readInbox(allowed, 'MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ', 'refused-token.png');
  assert.match(refused.status, /^Unity Connection answered HTTP 401/, refused.status);
});
