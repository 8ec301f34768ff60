// Browser test of the user page (crates/server/web/user.js) of `ucbridge serve --lab`, in
// Debian's headless Chromium: an end user (a lab CUCM user, synced) signs in with their
// CUCM password, sees their WebPhone (created on this first sign-in by the provisioning
// engine) with its SIP digest user and — on demand — password, cannot reach any admin
// view (the API answers 403), and signs out.
//
// Set-up through the admin API (not under test here): provisioning settings, a snapshot
// and a user sync, so the lab's users are ucbridge users.
//
// Needs: the `ucbridge` binary (UCBRIDGE_BIN, else $CARGO_TARGET_DIR or ../target, debug),
// /usr/bin/chromium, `npm ci` here. A missing binary or browser is a loud skip, and a
// failure under CI=true. Screenshots and the server's log go to e2e/artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const artifacts = path.join(here, 'artifacts');
const bin = process.env.UCBRIDGE_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug', 'ucbridge');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

const LAB_USERS = 12;
const ADMIN_PASSWORD = 'Admin-pass-1';
// The lab's end-user password (crates/lab LabConfig::user_password).
const USER_PASSWORD = 'ucbridge-user';
const WAIT = 30000;

const missing = [
  [bin, 'the ucbridge binary (cargo build -p ucbridge, or set UCBRIDGE_BIN)'],
  [chromiumPath, 'Chromium (apt-get install chromium)'],
].filter(([file]) => !fs.existsSync(file)).map(([file, what]) => `${what}: ${file} not found`);
if (missing.length && process.env.CI === 'true') {
  throw new Error(`user page e2e cannot run under CI: ${missing.join('; ')}`);
}
const skip = missing.length ? `SKIPPED: ${missing.join('; ')}` : false;
if (skip) console.error(`\n*** user.test.mjs ${skip} ***\n`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ucbridge-user-e2e-'));
const children = [];
const state = { server: null, context: null, page: null, user: null };
const problems = []; // CSP violations and uncaught page errors

function childEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('UCBRIDGE_')));
  return { ...env, UCBRIDGE_DATA_DIR: path.join(tmp, 'data'), ...extra };
}

/** Start `ucbridge <args>` and wait until its stdout matches `ready`. */
function start(name, args, env, ready) {
  return new Promise((resolve, reject) => {
    const log = fs.createWriteStream(path.join(artifacts, `user-${name}.log`));
    const child = setpriv
      ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', bin, ...args], { env, cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(bin, args, { env, cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    child.stderr.pipe(log, { end: false });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}`)), 60000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${name} exited (${code}): ${out}`)); });
    child.stdout.on('data', (chunk) => {
      out += chunk;
      log.write(chunk);
      const match = out.match(ready);
      if (match) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({ child, match });
      }
    });
  });
}

function stopChildren(signal) {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}
process.on('exit', () => stopChildren('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    stopChildren('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
    process.exit(1);
  });
}

/** The admin API from node (set-up only): a cookie session with its CSRF token. */
async function adminApi() {
  const base = state.server.url;
  const r = await fetch(`${base}/api/v1/session`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  assert.equal(r.status, 200, 'the admin signs in');
  const cookie = r.headers.get('set-cookie').split(';')[0];
  const { csrf_token: csrf } = await r.json();
  return async (method, url, body) => {
    const response = await fetch(`${base}${url}`, {
      method,
      headers: { Cookie: cookie, 'X-CSRF-Token': csrf, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : null };
  };
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** Poll `fn` until it returns a truthy value (at most `tries` times, 200 ms apart). */
async function until(what, fn, tries = 300) {
  for (let i = 0; i < tries; i += 1) {
    const value = await fn();
    if (value) return value;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Run a job now and wait for its run to end. */
async function runJob(api, job) {
  const started = await api('POST', `/api/v1/jobs/${job}/run`);
  assert.equal(started.status, 202, `${job} starts: ${JSON.stringify(started.json)}`);
  return until(`${job} to finish`, async () => {
    const runs = await api('GET', `/api/v1/job-runs?job=${job}&limit=1`);
    const run = runs.json?.[0];
    return run && run.status !== 'running' ? run : null;
  });
}

async function shot(name) {
  await state.page.screenshot({ path: path.join(artifacts, `user-${name}.png`), fullPage: true });
}

const byTestId = (id) => state.page.locator(`[data-testid="${id}"]`);

async function text(locator) {
  return (await locator.textContent() ?? '').trim();
}

async function waitForText(selector, pattern, timeout = WAIT) {
  try {
    await state.page.waitForFunction(([sel, source, flags]) => {
      const el = document.querySelector(sel);
      return el && new RegExp(source, flags).test(el.textContent);
    }, [selector, pattern.source, pattern.flags], { timeout });
  } catch (e) {
    const now = await state.page.locator(selector).textContent().catch(() => '(missing)');
    throw new Error(`${selector} never matched ${pattern} (it says ${JSON.stringify(now)}): ${e.message}`);
  }
}

function pageFetch(url, init) {
  return state.page.evaluate(async ([u, i]) => {
    const response = await fetch(u, i);
    const body = await response.text();
    let json = null;
    try { json = JSON.parse(body); } catch { json = null; }
    return { status: response.status, json };
  }, [url, init]);
}

function step(name, fn) {
  test(name, { skip }, async (t) => {
    if (state.failedStep) {
      t.skip(`after the failed step "${state.failedStep}"`);
      return;
    }
    try {
      await fn(t);
      assert.deepEqual(problems, [], 'no CSP violation or script error on the page');
    } catch (e) {
      state.failedStep = name;
      await shot(`failed-${name.replace(/\W+/g, '-').slice(0, 40)}`).catch(() => {});
      throw e;
    }
  });
}

async function signInAsUser(username, password) {
  await state.page.check('#login-kind-user');
  await state.page.fill('#login-username', username);
  await state.page.fill('#login-password', password);
  await state.page.click('#login-submit');
}

before(async () => {
  if (skip) return;
  fs.mkdirSync(artifacts, { recursive: true });
  state.server = await start('serve', [
    'serve', '-v', '--lab', '--lab-users', String(LAB_USERS), '--bind', '127.0.0.1:0', '--print-url',
  ], childEnv({ UCBRIDGE_ADMIN_PASSWORD: ADMIN_PASSWORD }), /listening on (http:\/\/\S+)/);
  state.server.url = state.server.match[1];
  // Set-up as the admin: provisioning settings (the lab's defaults; the devices job's
  // pattern matches nobody, so only the sign-in creates the WebPhone) and the lab's users.
  const api = await adminApi();
  const provisioning = await api('PUT', '/api/v1/provisioning', { users: 'no-such-user-%', provisioning: {} });
  assert.equal(provisioning.status, 200, JSON.stringify(provisioning.json));
  const snapshot = await runJob(api, 'snapshot');
  assert.ok(['succeeded', 'refused'].includes(snapshot.status), JSON.stringify(snapshot));
  await until('the snapshot', async () => {
    const s = (await api('GET', '/api/v1/status')).json;
    return s?.snapshot?.state === 'idle' && s.snapshot.users_count === LAB_USERS;
  });
  const sync = await runJob(api, 'user_sync');
  assert.equal(sync.status, 'succeeded', JSON.stringify(sync));
  const users = (await api('GET', '/api/v1/users?limit=1')).json.users;
  state.user = users[0].username;

  state.context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: chromiumPath, headless: true, args: chromiumArgs, viewport: { width: 1280, height: 900 },
  });
  state.page = state.context.pages()[0] || await state.context.newPage();
  state.page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  state.page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
});

after(async () => {
  await state.context?.close().catch(() => {});
  stopChildren('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null
    ? new Promise((resolve) => { c.once('exit', resolve); setTimeout(resolve, 5000); })
    : null)));
  stopChildren('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

step('a lab user signs in with the CUCM password (a wrong one first) and gets only the user page', async () => {
  await state.page.goto(`${state.server.url}/#me`);
  await byTestId('login-form').waitFor();
  assert.equal(await state.page.isChecked('#login-kind-user'), true, '#me preselects the user sign-in');
  await signInAsUser(state.user, 'not-the-password');
  await waitForText('#login-error', /wrong credentials/);
  await shot('01-refused');
  await signInAsUser(state.user, USER_PASSWORD);
  await byTestId('me-page').waitFor();
  assert.equal(await text(byTestId('whoami')), state.user);
  assert.equal(await text(byTestId('role')), 'user');
  assert.equal(await state.page.isVisible('#nav'), false, 'no admin navigation');
  assert.equal(await state.page.isVisible('#view-status'), false, 'no admin view');
  await waitForText('[data-testid="me-username"]', new RegExp(`^${state.user}$`));
});

step('the WebPhone created at the first sign-in shows its SIP digest user and, on demand, the password', async () => {
  await waitForText('[data-testid="me-device-status"]', /^ready$/);
  const device = await text(byTestId('me-device-name'));
  assert.match(device, /^UCB[A-Z0-9._-]+$/, 'the device is ucbridge\'s');
  const cucmUserid = await text(byTestId('me-cucm-userid'));
  assert.equal(await text(byTestId('me-digest-user')), cucmUserid, 'the digest user is the user');
  assert.equal(await byTestId('me-device-problem').isVisible(), false);
  assert.equal(await state.page.inputValue('#me-sip-password'), '', 'the password is not on the page until asked for');
  await shot('02-device');
  await byTestId('me-show-password').click();
  await state.page.waitForFunction(() => document.querySelector('#me-sip-password').value !== '');
  const shown = await state.page.inputValue('#me-sip-password');
  const api = await pageFetch('/api/v1/me/device/sip-credentials', {});
  assert.equal(api.status, 200);
  assert.equal(shown, api.json.password, 'the page shows the SIP password of this user');
  assert.equal(api.json.digest_user, cucmUserid);
  assert.ok(shown.length >= 12, 'a generated password');
  await shot('03-password-shown');
  await byTestId('me-show-password').click();
  assert.equal(await state.page.inputValue('#me-sip-password'), '', 'hidden again');
});

step('an end user cannot open the admin views: the API answers 403', async () => {
  const csrf = await state.page.evaluate(async () => (await (await fetch('/api/v1/session')).json()).csrf_token);
  for (const url of ['/api/v1/status', '/api/v1/users', '/api/v1/connections', '/api/v1/audit', '/api/v1/tokens']) {
    const r = await pageFetch(url, {});
    assert.equal(r.status, 403, url);
    assert.equal(r.json?.error?.code, 'end_user', url);
  }
  const write = await pageFetch('/api/v1/jobs/user_sync/run', { method: 'POST', headers: { 'X-CSRF-Token': csrf } });
  assert.equal(write.status, 403);
  // The admin views' addresses show nothing of them either.
  await state.page.evaluate(() => { window.location.hash = '#connections'; });
  await sleep(300);
  assert.equal(await state.page.isVisible('#view-connections'), false);
  assert.equal(await state.page.isVisible('#view-me'), true);
});

step('sign-out ends the session and forgets the page', async () => {
  await byTestId('logout').click();
  await byTestId('login-form').waitFor();
  assert.equal(await state.page.locator('#view-me').count(), 0, 'the user page is gone');
  const me = await pageFetch('/api/v1/me', {});
  assert.equal(me.status, 401);
  await shot('04-signed-out');
});
