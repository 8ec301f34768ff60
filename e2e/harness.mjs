// What the browser tests of `ucbridge serve --lab` share: finding the binary and Chromium
// (a loud skip when missing, a failure under CI=true), starting the server as a child that
// dies with this process, the admin API for set-up, bounded waits, a browser page that
// records CSP violations and script errors, and steps that stop after the first failure
// with a screenshot.
//
// One harness per test file: `createHarness({ prefix, needs })`; `prefix` names its
// artifacts (e2e/artifacts/<prefix>-*.png, <prefix>-serve.log).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

export const artifacts = path.join(here, 'artifacts');
export const bin = process.env.UCBRIDGE_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug', 'ucbridge');
export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const ADMIN_PASSWORD = 'Admin-pass-1';
// The lab's end-user password (crates/lab LabConfig::user_password).
export const USER_PASSWORD = 'ucbridge-user';
export const WAIT = 30000;

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** Poll `fn` until it returns a truthy value (at most `tries` times, 200 ms apart). */
export async function until(what, fn, tries = 300) {
  for (let i = 0; i < tries; i += 1) {
    const value = await fn();
    if (value) return value;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The admin API from node (set-up only): a cookie session with its CSRF token. */
export async function adminApi(base) {
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

/** Run a job now and wait for its run to end. */
export async function runJob(api, job) {
  const started = await api('POST', `/api/v1/jobs/${job}/run`);
  assert.equal(started.status, 202, `${job} starts: ${JSON.stringify(started.json)}`);
  return until(`${job} to finish`, async () => {
    const runs = await api('GET', `/api/v1/job-runs?job=${job}&limit=1`);
    const run = runs.json?.[0];
    return run && run.status !== 'running' ? run : null;
  });
}

/** Refresh the lab's snapshot and sync its users into ucbridge (the admin's set-up). */
export async function syncLabUsers(api, labUsers) {
  const snapshot = await runJob(api, 'snapshot');
  assert.ok(['succeeded', 'refused'].includes(snapshot.status), JSON.stringify(snapshot));
  await until('the snapshot', async () => {
    const s = (await api('GET', '/api/v1/status')).json;
    return s?.snapshot?.state === 'idle' && s.snapshot.users_count === labUsers;
  });
  const sync = await runJob(api, 'user_sync');
  assert.equal(sync.status, 'succeeded', JSON.stringify(sync));
}

/**
 * A harness for one test file. `needs`: extra [file, what] pairs that must exist (e.g. a
 * server binary the test drives), checked with the binary and Chromium.
 */
export function createHarness({ prefix, needs = [] }) {
  const missing = [
    [bin, 'the ucbridge binary (cargo build -p ucbridge, or set UCBRIDGE_BIN)'],
    [chromiumPath, 'Chromium (apt-get install chromium)'],
    ...needs,
  ].filter(([file]) => !fs.existsSync(file)).map(([file, what]) => `${what}: ${file} not found`);
  if (missing.length && process.env.CI === 'true') {
    throw new Error(`${prefix} e2e cannot run under CI: ${missing.join('; ')}`);
  }
  const skip = missing.length ? `SKIPPED: ${missing.join('; ')}` : false;
  if (skip) console.error(`\n*** ${prefix} e2e ${skip} ***\n`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `ucbridge-${prefix}-e2e-`));
  const children = [];
  const problems = []; // CSP violations and uncaught page errors
  const state = { server: null, context: null, page: null, failedStep: null };

  function childEnv(extra) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('UCBRIDGE_')));
    return { ...env, UCBRIDGE_DATA_DIR: path.join(tmp, 'data'), ...extra };
  }

  /**
   * Start `ucbridge <args>` and wait until its stdout matches `ready` (a pattern, or a list
   * of patterns that must all match): resolves to `{ child, match, matches }`.
   */
  function start(name, args, env, ready) {
    const patterns = Array.isArray(ready) ? ready : [ready];
    return new Promise((resolve, reject) => {
      const log = fs.createWriteStream(path.join(artifacts, `${prefix}-${name}.log`));
      const child = setpriv
        ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', bin, ...args], { env, cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(bin, args, { env, cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      child.stderr.pipe(log, { end: false });
      let out = '';
      // With util-linux's setpriv the kernel kills the child when this process dies.
      const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}`)), 90000);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${name} exited (${code}): ${out}`)); });
      child.stdout.on('data', (chunk) => {
        out += chunk;
        log.write(chunk);
        const matches = patterns.map((re) => out.match(re));
        if (matches.every(Boolean)) {
          clearTimeout(timer);
          child.removeAllListeners('exit');
          resolve({ child, match: matches[0], matches });
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

  /** `ucbridge serve --lab` with `labUsers` lab users; `state.server.url` is its address. */
  async function startLabServer(labUsers, extraEnv = {}) {
    fs.mkdirSync(artifacts, { recursive: true });
    state.server = await start('serve', [
      'serve', '-v', '--lab', '--lab-users', String(labUsers), '--bind', '127.0.0.1:0', '--print-url',
    ], childEnv({ UCBRIDGE_ADMIN_PASSWORD: ADMIN_PASSWORD, ...extraEnv }), /listening on (http:\/\/\S+)/);
    state.server.url = state.server.match[1];
    return state.server;
  }

  /** A Chromium page that records CSP violations and script errors into `problems`. */
  async function openBrowser(viewport = { width: 1280, height: 900 }) {
    state.context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: chromiumPath, headless: true, args: chromiumArgs, viewport,
    });
    state.page = state.context.pages()[0] || await state.context.newPage();
    state.page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    state.page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    return state.page;
  }

  /** Close the browser, stop the children (TERM, then KILL after 5 s), remove the temp dir. */
  async function shutdown() {
    await state.context?.close().catch(() => {});
    stopChildren('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null
      ? new Promise((resolve) => { c.once('exit', resolve); setTimeout(resolve, 5000); })
      : null)));
    stopChildren('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  async function shot(name) {
    await state.page.screenshot({ path: path.join(artifacts, `${prefix}-${name}.png`), fullPage: true });
  }

  const byTestId = (id) => state.page.locator(`[data-testid="${id}"]`);

  async function text(locator) {
    return (await locator.textContent() ?? '').trim();
  }

  /** A fetch from the page (same origin), returning status and parsed body. */
  function pageFetch(url, init) {
    return state.page.evaluate(async ([u, i]) => {
      const response = await fetch(u, i);
      const body = await response.text();
      let json = null;
      try { json = JSON.parse(body); } catch { json = null; }
      return { status: response.status, json };
    }, [url, init]);
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

  /** A test that is skipped after an earlier step failed, and fails on any page problem. */
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

  return {
    skip, tmp, state, problems, childEnv, start, startLabServer, openBrowser, shutdown, shot,
    byTestId, text, pageFetch, waitForText, step,
  };
}
