// Browser test of the admin page served by `ucbridge serve` (crates/server/web), in
// Debian's headless Chromium, against a separate `ucbridge lab` (CUCM AXL over TLS).
//
// Flow: sign in (a wrong password first), configure the CUCM connection through the form
// with the lab's URL, credentials and CA, "Test connection", the LDAP export and IMAP
// options as form fields (kept after a reload; a mistyped key refused) and
// "Re-Synchronize" running the LDAP re-sync job, "Run now" on the snapshot job
// (a full refresh) and on user sync, the status view's charts of those runs (and of this
// node's AXL calls per minute), then the users list and one user, the voicemail
// options form (saved, shown again after a reload, a bad duration refused by the server),
// the directory sources (a second CUCM cluster `east`, the same lab, from a `[sources.east]`
// table): its Run now in the sources card, and the rules view listing the sources and
// editing their precedence and fields into the JSON (saved; an unknown source refused by
// the server), an API token (a read-only token cannot run a job; revoked it stops working), a read-only
// account's view, and sign out. The page must run under the server's CSP without a violation.
//
// Needs: the `ucbridge` binary (UCBRIDGE_BIN, else $CARGO_TARGET_DIR or ../target, debug),
// /usr/bin/chromium (Debian package `chromium`), `npm ci` here. A missing binary or
// browser is a loud skip, and a failure under CI=true. Screenshots and the two processes'
// logs go to e2e/artifacts/ (git-ignored).

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  ADMIN_PASSWORD, artifacts, bin, createHarness, until,
} from './harness.mjs';

const run = promisify(execFile);

const LAB_USERS = 120;
const LAB_ADMIN = { username: 'administrator', password: 'ucbridge-lab' };
const VIEWER = { username: 'viewer', password: 'Viewer-pass-1' };
const WAIT = 20000;

const {
  skip, tmp, state, childEnv, start, openBrowser, shutdown, shot, byTestId, text, pageFetch,
  waitForText, step,
} = createHarness({ prefix: 'admin' });
const dataDir = path.join(tmp, 'data');
const caFile = path.join(tmp, 'lab-ca.pem');
const configFile = path.join(tmp, 'ucbridge.toml');
/** The mergeable fields, in the page's (and the sync engine's) order. */
const MERGED_FIELDS = [
  'first_name', 'middle_name', 'last_name', 'display_name', 'mailid', 'telephone_number',
  'primary_extension', 'department', 'manager', 'title', 'mobile_number', 'home_number',
  'pager_number', 'directory_uri', 'associated_devices',
];

/** Wait until the input or select `selector` has the value `value`. */
async function waitForValue(selector, value, timeout = WAIT) {
  try {
    await state.page.waitForFunction(([sel, v]) => document.querySelector(sel)?.value === v, [selector, value], { timeout });
  } catch (e) {
    const now = await state.page.inputValue(selector).catch(() => '(missing)');
    throw new Error(`${selector} never had the value ${JSON.stringify(value)} (it has ${JSON.stringify(now)}): ${e.message}`);
  }
}

/** A screenshot of one element (a form rather than the whole page). */
async function shotOf(locator, name) {
  await locator.screenshot({ path: path.join(artifacts, `admin-${name}.png`) });
}

/** Wait for a job's last run to end; returns its status, result, error and progress. */
async function waitForJobRun(job, timeout = 45000) {
  await waitForText(`[data-testid="job-status-${job}"]`, /^(succeeded|failed|refused|abandoned)$/, timeout);
  return {
    status: await text(byTestId(`job-status-${job}`)),
    result: await text(byTestId(`result-${job}`)),
    error: await text(byTestId(`error-${job}`)),
  };
}

async function login(username, password) {
  await state.page.fill('#login-username', username);
  await state.page.fill('#login-password', password);
  await state.page.click('#login-submit');
}

before(async () => {
  if (skip) return;
  fs.mkdirSync(artifacts, { recursive: true });
  fs.mkdirSync(dataDir, { recursive: true });
  state.lab = await start('lab', [
    'lab', '--bind', '127.0.0.1:0', '--users', String(LAB_USERS), '--ca-out', caFile,
  ], childEnv({}), [/AXL endpoint: (https:\/\/\S+)/, /Press Ctrl-C/]);
  state.lab.axlUrl = state.lab.matches[0][1];
  // A second CUCM source, `east`: the same lab again, enough for the page (its password
  // from the environment, as an operator would keep it out of the file).
  fs.writeFileSync(configFile, [
    '[sources.east]', 'kind = "cucm"', `url = "${state.lab.axlUrl}"`,
    `username = "${LAB_ADMIN.username}"`, `ca_file = "${caFile}"`, '',
  ].join('\n'));
  // No --lab: every connection comes from the form.
  state.server = await start('serve', ['serve', '-v', '--config', configFile, '--bind', '127.0.0.1:0', '--print-url'],
    childEnv({ UCBRIDGE_ADMIN_PASSWORD: ADMIN_PASSWORD, UCBRIDGE_SOURCE_EAST_PASSWORD: LAB_ADMIN.password }),
    [/listening on (http:\/\/\S+)/]);
  state.server.url = state.server.matches[0][1];
  // A loopback port nobody listens on (for a connection that must fail).
  state.closedPort = await new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  await openBrowser();
});

after(shutdown);

step('sign-in: a wrong password is refused with a message, the right one opens the page', async () => {
  const response = await state.page.goto(state.server.url);
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /script-src 'self'/, 'the page is served with its CSP');
  await byTestId('login-form').waitFor();

  await login('admin', 'not-the-password');
  await waitForText('#login-error', /wrong username or password/);
  assert.equal(await state.page.isVisible('#nav'), false, 'nothing but the form before signing in');
  await shot('01-login-refused');

  await login('admin', ADMIN_PASSWORD);
  await state.page.locator('#view-status').waitFor();
  assert.equal(await text(byTestId('whoami')), 'admin');
  assert.equal(await text(byTestId('role')), 'admin');
  assert.equal(await state.page.isVisible('#login-error'), false);
  // Nothing is configured: the jobs say why they cannot run.
  await waitForText('[data-testid="blocked-user_sync"]', /configure the cucm connection first/);
  assert.equal(await byTestId('run-user_sync').isDisabled(), true);
  await shot('02-status-unconfigured');
});

step('the CUCM connection is configured through the form and tested', async () => {
  const page = state.page;
  await byTestId('nav-connections').click();
  await page.locator('#conn-cucm-url').waitFor();
  await page.fill('#conn-cucm-url', state.lab.axlUrl);
  await page.fill('#conn-cucm-username', LAB_ADMIN.username);
  await page.fill('#conn-cucm-password', LAB_ADMIN.password);
  await page.click('[data-testid="conn-cucm-tls"]');
  await page.fill('#conn-cucm-ca', fs.readFileSync(caFile, 'utf8'));
  await page.click('#conn-cucm-save');
  await waitForText('[data-testid="conn-cucm-msg"]', /^Saved/);
  assert.equal(await text(byTestId('conn-cucm-password-state')), 'password set');
  assert.equal(await page.inputValue('#conn-cucm-password'), '', 'the password is never shown again');
  assert.match(await page.inputValue('#conn-cucm-ca'), /BEGIN CERTIFICATE/);

  await page.click('#conn-cucm-test');
  await waitForText('[data-testid="conn-cucm-msg"]', /^(Connection OK|Test failed)/);
  assert.equal(await text(byTestId('conn-cucm-msg')), 'Connection OK.');
  assert.match(await text(byTestId('conn-cucm-summary')), new RegExp(`${LAB_USERS} end users`));
  assert.equal(await text(byTestId('conn-cucm-account-count')), String(LAB_USERS));
  const accounts = await byTestId('conn-cucm-accounts').locator('li').allTextContents();
  assert.equal(accounts.length, 10, `the test lists the first accounts: ${accounts}`);
  assert.ok(accounts.every((a) => /^[a-z]+\d+$/.test(a)), `CUCM userids: ${accounts}`);
  state.someUser = accounts[0];
  await shot('03-connection-tested');

  // Pointing the connection elsewhere without typing the password again is refused, with
  // the reason on the card and the password field marked; the saved URL still works.
  await page.fill('#conn-cucm-url', state.lab.axlUrl.replace(/:(\d+)\//, (_, port) => `:${Number(port) + 1}/`));
  await page.click('#conn-cucm-save');
  await waitForText('[data-testid="conn-cucm-msg"]', /password again/);
  assert.equal(await page.getAttribute('#conn-cucm-password', 'aria-invalid'), 'true');
  await shot('03b-password-required');
  await page.fill('#conn-cucm-url', state.lab.axlUrl);
  await page.click('#conn-cucm-save');
  await waitForText('[data-testid="conn-cucm-msg"]', /^Saved/);
  assert.equal(await text(byTestId('conn-cucm-password-state')), 'password set');
});

step('LDAP export and IMAP options are form fields, kept after a reload; Re-Synchronize runs the LDAP re-sync', async () => {
  const page = state.page;
  // No JSON text box any more: each kind's options are typed fields.
  assert.equal(await page.locator('#conn-ldap-options, #conn-imap-options').count(), 0);
  // The seed's choices, in its order.
  const uidChoices = await byTestId('conn-ldap-opt-uid_from').locator('option').allTextContents();
  assert.deepEqual(uidChoices, ['Primary alias', 'Primary e-mail', 'Username', 'Internal UID', 'Phone', 'Numeric phone']);
  const phoneChoices = await byTestId('conn-ldap-opt-phone_from').locator('option').allTextContents();
  assert.deepEqual(phoneChoices, ['Empty', 'Numeric', 'Phone']);
  assert.equal(await page.inputValue('#conn-ldap-opt-uid_from'), 'username', 'unset shows the default');
  // The Re-Synchronize button sits beside the two drop-downs.
  const row = byTestId('conn-ldap-export-row');
  assert.equal(await row.locator('#conn-ldap-opt-uid_from, #conn-ldap-opt-phone_from, #conn-ldap-resync').count(), 3);

  // LDAP: a directory nobody listens on (the export's failure is shown, not hidden).
  state.ldapUrl = `ldap://127.0.0.1:${state.closedPort}`;
  await page.fill('#conn-ldap-url', state.ldapUrl);
  await page.fill('#conn-ldap-username', 'cn=admin,dc=example,dc=com');
  await page.fill('#conn-ldap-password', 'Ldap-pass-1');
  await page.fill('#conn-ldap-opt-base_dn', 'ou=people,dc=example,dc=com');
  await page.selectOption('#conn-ldap-opt-uid_from', 'primary_email');
  await page.selectOption('#conn-ldap-opt-phone_from', 'numeric_phone');
  await page.click('#conn-ldap-save');
  await waitForText('[data-testid="conn-ldap-msg"]', /^Saved/);

  // IMAP: plain to loopback, SASL authzid with the master user, another separator.
  await page.fill('#conn-imap-url', 'imap://127.0.0.1:1143');
  await page.fill('#conn-imap-username', 'vmadmin');
  await page.fill('#conn-imap-password', 'Imap-pass-1');
  await page.selectOption('#conn-imap-opt-security', 'plain');
  await page.selectOption('#conn-imap-opt-login', 'sasl_authzid');
  await page.fill('#conn-imap-opt-master_separator', '%');
  await page.check('#conn-imap-opt-allow_plaintext');
  await page.click('#conn-imap-save');
  await waitForText('[data-testid="conn-imap-msg"]', /^Saved/);
  await shotOf(byTestId('conn-ldap-card'), '03c-ldap-options');

  // A new page load reads them back from the server.
  await page.reload();
  await byTestId('nav-connections').click();
  await waitForValue('#conn-ldap-opt-uid_from', 'primary_email');
  assert.equal(await page.inputValue('#conn-ldap-opt-phone_from'), 'numeric_phone');
  assert.equal(await page.inputValue('#conn-ldap-opt-base_dn'), 'ou=people,dc=example,dc=com');
  assert.equal(await page.inputValue('#conn-imap-opt-security'), 'plain');
  assert.equal(await page.inputValue('#conn-imap-opt-login'), 'sasl_authzid');
  assert.equal(await page.inputValue('#conn-imap-opt-master_separator'), '%');
  assert.equal(await page.isChecked('#conn-imap-opt-allow_plaintext'), true);
  assert.equal(await page.inputValue('#conn-imap-username'), 'vmadmin');
  // The API holds exactly the typed options.
  const views = (await pageFetch('/api/v1/connections', {})).json;
  const options = (kind) => views.find((v) => v.kind === kind).settings.options;
  assert.equal(options('ldap').uid_from, 'primary_email');
  assert.equal(options('ldap').phone_from, 'numeric_phone');
  assert.deepEqual(options('imap'), { security: 'plain', allow_plaintext: true, login: 'sasl_authzid', master_separator: '%' });

  // A mistyped option key is refused by the server with the key named.
  const csrf = await page.evaluate(async () => (await (await fetch('/api/v1/session')).json()).csrf_token);
  const typo = await pageFetch('/api/v1/connections/ldap', {
    method: 'PUT',
    headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/json' },
    body: JSON.stringify({ url: state.ldapUrl, username: 'cn=admin,dc=example,dc=com', options: { base_dn: 'ou=people,dc=example,dc=com', uid_form: 'username' } }),
  });
  assert.equal(typo.status, 400, JSON.stringify(typo));
  assert.match(typo.json.error.message, /uid_form/);

  // Re-Synchronize: the ldap_resync job is requested and runs; with no directory there
  // it fails, and the card says so.
  await byTestId('conn-ldap-resync').click();
  await waitForText('[data-testid="conn-ldap-msg"]', /^Re-synchroniz(ed|ation (failed|refused|abandoned))/, 45000);
  assert.match(await text(byTestId('conn-ldap-resync-status')), /^(succeeded|failed)$/);
  const [run] = (await pageFetch('/api/v1/job-runs?job=ldap_resync&limit=1', {})).json;
  assert.equal(run.trigger, 'manual');
  assert.equal(run.requested_by, 'admin');
  assert.equal(run.status, 'failed', JSON.stringify(run));
  assert.match(await text(byTestId('conn-ldap-msg')), /LDAP|connect|refused/i);
  await shotOf(byTestId('conn-ldap-card'), '03d-ldap-resync');
  // Both are removed again so the rest of the run sees only the CUCM connection.
  for (const kind of ['ldap', 'imap']) {
    const r = await pageFetch(`/api/v1/connections/${kind}`, { method: 'DELETE', headers: { 'X-CSRF-Token': csrf } });
    assert.equal(r.status, 204);
  }
});

step('Run now: snapshot full refresh, then user sync with progress and result', async () => {
  const page = state.page;
  await byTestId('nav-status').click();
  // Saving the connection started the snapshot job; its own first full refresh must end
  // before a requested one can claim the snapshot.
  await waitForText('[data-testid="snapshot-state"]', /^idle$/, 30000);
  assert.equal(await text(byTestId('snapshot-users')), String(LAB_USERS));
  await page.waitForFunction(() => !document.querySelector('[data-testid="run-snapshot"]').disabled, null, { timeout: WAIT });
  await byTestId('run-snapshot').click();
  const snapshot = await waitForJobRun('snapshot');
  assert.equal(snapshot.status, 'succeeded', `snapshot run: ${JSON.stringify(snapshot)}`);
  assert.match(snapshot.result, new RegExp(`^Snapshot of ${LAB_USERS} users`));
  await waitForText('[data-testid="snapshot-state"]', /^idle$/);
  // The directory sources table: the default CUCM source, idle with the lab's users.
  await waitForText('[data-testid="source-state-cucm"]', /^idle$/);
  assert.equal(await text(byTestId('source-users-cucm')), String(LAB_USERS));
  await shot('04-snapshot-refreshed');

  // Every progress text the page shows for user sync, in order.
  await page.evaluate(() => {
    window.seenProgress = [];
    const el = document.querySelector('[data-testid="progress-text-user_sync"]');
    new MutationObserver(() => window.seenProgress.push(el.textContent))
      .observe(el, { childList: true, characterData: true, subtree: true });
  });
  await byTestId('run-user_sync').click();
  const sync = await waitForJobRun('user_sync');
  assert.equal(sync.status, 'succeeded', `user sync run: ${JSON.stringify(sync)}`);
  assert.equal(await text(byTestId('result-user_sync-creates')), `created ${LAB_USERS}`);
  const seen = await page.evaluate(() => window.seenProgress);
  assert.ok(seen.includes(`syncing users: ${LAB_USERS} / ${LAB_USERS}`), `progress shown: ${JSON.stringify(seen)}`);
  const bar = byTestId('progress-user_sync');
  assert.equal(await bar.isVisible(), true);
  assert.equal(await bar.evaluate((p) => [p.value, p.max].join('/')), `${LAB_USERS}/${LAB_USERS}`);

  // The status view's summary of the last sync and the snapshot's time.
  await waitForText('[data-testid="last-sync-creates"]', new RegExp(`^${LAB_USERS}$`));
  assert.equal(await text(byTestId('last-sync-status')), 'applied');
  const updated = await byTestId('source-updated-at').locator('time').getAttribute('datetime');
  assert.ok(updated, 'Source users updated at shows a time');
  const age = Date.now() - Date.parse(updated);
  assert.ok(age >= -5000 && age < 120000, `Source users updated at is recent: ${updated}`);
  assert.equal(await state.page.isVisible('[data-testid="snapshot-warning"]'), false);
  await shot('05-user-sync-done');
});

step('charts: the last runs, changes per run and this node\'s AXL calls per minute', async () => {
  const page = state.page;
  // Leave and re-enter the status view: entering it reads the chart data afresh.
  await byTestId('nav-runs').click();
  await byTestId('nav-status').click();
  const points = (id) => page.evaluate((i) => Number(document.getElementById(i).dataset.points || 0), id);
  await page.waitForFunction(() => ['chart-sync-duration', 'chart-sync-changes', 'chart-snapshot', 'chart-axl-calls']
    .every((id) => Number(document.getElementById(id).dataset.points || 0) >= 1), null, { timeout: WAIT });
  // One bar per run or minute, each with its own tooltip; an accessible name and a text
  // alternative on every chart, the ones without data included.
  for (const id of ['chart-sync-duration', 'chart-sync-changes', 'chart-snapshot', 'chart-axl-calls']) {
    const chart = byTestId(id);
    const n = await points(id);
    assert.equal(await chart.locator('[data-testid="chart-bar"]').count(), n, id);
    assert.match(await chart.locator('svg[role="img"] > title').textContent(), /\w/, id);
    assert.match(await chart.locator('svg[role="img"] > desc').textContent(), /\d/, id);
  }
  for (const id of ['chart-voicemail-runs', 'chart-voicemail-lag', 'chart-axl-throttled']) {
    assert.match(await text(byTestId(`${id}-summary`)), /\w/, `${id} has a text alternative`);
  }
  assert.match(await text(byTestId('chart-sync-changes-summary')), new RegExp(`latest run: ${LAB_USERS} created, 0 updated`));
  assert.match(await text(byTestId('chart-sync-duration-summary')), /^1 sync run: latest .* \(applied\)/);
  const calls = await text(byTestId('chart-axl-calls-summary'));
  const made = Number(calls.replace(/,/g, '').match(/^(\d+) AXL calls/)?.[1]);
  assert.ok(made > 0, `AXL calls counted on this node: ${calls}`);
  // Bars are drawn in the theme's colours, not left transparent.
  const fill = await byTestId('chart-sync-changes').locator('rect').first()
    .evaluate((r) => getComputedStyle(r).fill);
  assert.match(fill, /^rgb\(/, `bar colour ${fill}`);
  assert.match(await text(byTestId('charts-note')), /per-minute charts from node /);
  await byTestId('charts').scrollIntoViewIfNeeded();
  await shot('05b-charts');
  await shotOf(byTestId('charts'), '05c-charts-card');
});

step('the sync run shows its audit log', async () => {
  await byTestId('nav-runs').click();
  const row = state.page.locator('#runs-table tbody tr').first();
  await row.waitFor();
  await row.click();
  await byTestId('audit-list').waitFor();
  await waitForText('[data-testid="run-detail"] h3', new RegExp(`Audit log \\(${LAB_USERS} applied changes\\)`));
  const first = byTestId('audit-list').locator('details').first();
  await first.locator('summary').click();
  assert.match(await text(first), /create/);
  assert.match(await text(first.locator('table')), /username/);
  await shot('06-sync-run');
});

step('users: list, paging, search and one user', async () => {
  const page = state.page;
  await byTestId('nav-users').click();
  await waitForText('[data-testid="users-range"]', new RegExp(`^1–50 of ${LAB_USERS}$`));
  assert.equal(await page.locator('#users-table tbody tr').count(), 50);
  await byTestId('users-next').click();
  await waitForText('[data-testid="users-range"]', new RegExp(`^51–100 of ${LAB_USERS}$`));
  await shot('07-users');

  await page.fill('#users-search', state.someUser);
  await page.press('#users-search', 'Enter');
  const row = byTestId(`user-row-${state.someUser}`);
  await row.waitFor();
  await waitForText('[data-testid="users-range"]', /^1–\d+ of \d+$/);
  await row.click();
  await waitForText('[data-testid="user-user-username"]', new RegExp(`^${state.someUser}$`));
  assert.equal(await text(byTestId('user-detail-username')), state.someUser);
  assert.equal(await text(byTestId('user-user-source')), 'cucm');
  assert.match(await text(byTestId('user-section-device')), /No device provisioned/);
  await shot('08-user-detail');
  await page.click('#user-detail-close');
});

// What the voicemail options form saves when the admin sets a few fields (and only those).
const VOICEMAIL_SAVED = {
  cuc_id: 'extension',
  debounce: '2s',
  // One folder set: the form sends all three, the others with their defaults.
  folders: { inbox: 'Calls/Voicemail', sent: 'Voicemail/Sent', deleted: 'Voicemail/Deleted' },
  hard_delete: false,
  concurrency: 3,
  attachment_format: 'wav',
  trust_imap_push: false,
};

step('voicemail options: saved, shown again after a reload; the server refuses a bad duration', async () => {
  const page = state.page;
  await byTestId('vm-debounce').waitFor();
  // Never set: the fields are empty and their placeholders show the defaults.
  assert.deepEqual((await pageFetch('/api/v1/voicemail', {})).json?.options, {});
  assert.equal(await page.inputValue('#vm-debounce'), '');
  assert.equal(await byTestId('vm-debounce').getAttribute('placeholder'), 'default: 5s');
  assert.equal(await byTestId('vm-reconcile_every').getAttribute('placeholder'), 'default: 15m');
  assert.equal(await byTestId('vm-folders-sent').getAttribute('placeholder'), 'default: Voicemail/Sent');
  assert.equal(await byTestId('vm-concurrency').getAttribute('placeholder'), 'default: 8');
  assert.equal(await page.inputValue('#vm-cuc_id'), '');
  assert.equal(await text(byTestId('vm-cuc_id').locator('option:checked')), 'default: alias');
  assert.equal(await page.inputValue('#vm-hard_delete'), '', 'hard_delete is unset');
  assert.equal(await byTestId('vm-full_read_every').getAttribute('placeholder'), 'default: 6h');
  assert.equal(await byTestId('vm-push_trust_window').getAttribute('placeholder'), 'default: 1h');
  assert.equal(await text(byTestId('vm-attachment_format').locator('option:checked')), 'default: mp3');
  assert.equal(await page.inputValue('#vm-trust_imap_push'), '', 'trust_imap_push is unset');

  // A concurrency below 1 never reaches the server.
  await page.fill('#vm-concurrency', '0');
  await page.click('#voicemail-save');
  await waitForText('[data-testid="voicemail-msg"]', /^Concurrency must be a whole number of at least 1\.$/);
  assert.deepEqual((await pageFetch('/api/v1/voicemail', {})).json?.options, {});

  await page.selectOption('#vm-cuc_id', 'extension');
  await page.fill('#vm-debounce', '2s');
  await page.fill('#vm-folders-inbox', 'Calls/Voicemail');
  await page.selectOption('#vm-hard_delete', 'false');
  await page.fill('#vm-concurrency', '3');
  await page.selectOption('#vm-attachment_format', 'wav');
  await page.selectOption('#vm-trust_imap_push', 'false');
  await page.click('#voicemail-save');
  await waitForText('[data-testid="voicemail-msg"]', /^Voicemail options saved/);
  assert.match(await byTestId('voicemail-msg').getAttribute('class'), /alert-ok/);

  // A new page load reads them back from the server.
  await page.reload();
  await waitForValue('#vm-debounce', '2s');
  assert.equal(await page.inputValue('#vm-cuc_id'), 'extension');
  assert.equal(await page.inputValue('#vm-folders-inbox'), 'Calls/Voicemail');
  assert.equal(await page.inputValue('#vm-folders-sent'), 'Voicemail/Sent');
  assert.equal(await page.inputValue('#vm-hard_delete'), 'false');
  assert.equal(await page.inputValue('#vm-concurrency'), '3');
  assert.equal(await page.inputValue('#vm-attachment_format'), 'wav');
  assert.equal(await page.inputValue('#vm-trust_imap_push'), 'false');
  assert.equal(await page.inputValue('#vm-local_id'), '', 'a field left empty stays unset');
  assert.equal(await page.inputValue('#vm-reconcile_every'), '');
  // The API (with the page's session) has exactly what was set: defaults stay defaults.
  const saved = await pageFetch('/api/v1/voicemail', {});
  assert.equal(saved.status, 200);
  assert.deepEqual(saved.json.options, VOICEMAIL_SAVED);
  assert.ok(Array.isArray(saved.json.accounts));
  await shotOf(byTestId('voicemail-card'), '08b-voicemail-options');

  // A bad duration: the server's message is shown, nothing is saved, the input is kept.
  await page.fill('#vm-debounce', 'soon');
  await page.selectOption('#vm-cuc_id', 'alias');
  await page.click('#voicemail-save');
  await waitForText('[data-testid="voicemail-msg"]', /invalid voicemail options/);
  assert.match(await text(byTestId('voicemail-msg')), /debounce "soon"/);
  assert.match(await byTestId('voicemail-msg').getAttribute('class'), /alert-error/);
  assert.equal(await page.inputValue('#vm-debounce'), 'soon');
  await shotOf(byTestId('voicemail-card'), '08c-voicemail-refused');
  assert.deepEqual((await pageFetch('/api/v1/voicemail', {})).json?.options, VOICEMAIL_SAVED, 'nothing saved');
  // Reload drops the edits.
  await byTestId('voicemail-reload').click();
  await waitForValue('#vm-debounce', '2s');
  assert.equal(await page.inputValue('#vm-cuc_id'), 'extension');
  assert.equal(await page.isVisible('[data-testid="voicemail-msg"]'), false);
});

step('rules and schedules show the server\'s validation errors; SSO says what is missing', async () => {
  const page = state.page;
  await byTestId('nav-rules').click();
  await page.waitForFunction(() => /"orphans"/.test(document.getElementById('rules-editor').value), null, { timeout: WAIT });
  const rules = JSON.parse(await page.inputValue('#rules-editor'));
  await page.fill('#rules-editor', JSON.stringify({ ...rules, orphans: 'vanish' }));
  await page.click('#rules-save');
  await waitForText('[data-testid="rules-msg"]', /invalid rules/);
  assert.match(await text(byTestId('rules-msg')), /vanish/);
  await page.fill('#rules-editor', '{ not json');
  await page.click('#rules-save');
  await waitForText('[data-testid="rules-msg"]', /not valid JSON/);

  await page.fill('#schedule-user_sync', 'every banana');
  await page.click('[data-testid="schedule-save-user_sync"]');
  await waitForText('[data-testid="schedule-msg-user_sync"]', /banana/);
  await page.fill('#schedule-user_sync', 'every 1h');
  await page.click('[data-testid="schedule-save-user_sync"]');
  await waitForText('[data-testid="schedule-msg-user_sync"]', /^Saved$/);
  assert.equal(await page.inputValue('#schedule-user_sync'), 'every 1h');
  await shot('09-rules-and-schedules');

  await byTestId('nav-sso').click();
  await waitForText('[data-testid="sso-error"]', /ids connection is not configured/);
});

/** The rules in the editor, parsed. */
async function editorRules() {
  return JSON.parse(await state.page.inputValue('#rules-editor'));
}

step('directory sources: Run now refreshes a source; the rules editor lists the sources and edits their precedence and fields', async () => {
  const page = state.page;
  // The sources card: the second cluster, kept by its own job, with the lab's users.
  await byTestId('nav-status').click();
  await waitForText('[data-testid="source-state-east"]', /^idle$/, 45000);
  assert.equal(await text(byTestId('source-users-east')), String(LAB_USERS));
  assert.match(await text(byTestId('source-east')), /source:east/);
  await page.waitForFunction(() => !document.querySelector('[data-testid="source-run-east"]').disabled, null, { timeout: WAIT });
  const lastRun = async () => (await pageFetch('/api/v1/job-runs?job=source:east&limit=1', {})).json?.[0];
  const before = (await lastRun())?.id ?? null;
  await byTestId('source-run-east').click();
  const run = await until('the requested refresh of east', async () => {
    const r = await lastRun();
    return r && r.id !== before && r.status !== 'running' ? r : null;
  }, 225);
  assert.equal(run.status, 'succeeded', `source:east run: ${JSON.stringify(run)}`);
  assert.equal(run.trigger, 'manual');
  assert.equal(run.requested_by, 'admin');
  await waitForText('[data-testid="job-status-source:east"]', /^succeeded$/);
  await waitForText('[data-testid="source-state-east"]', /^idle$/);
  // "Requested" is gone once the run is over; no error was shown.
  await waitForText('[data-testid="source-run-msg-east"]', /^$/);
  await byTestId('sources-table').scrollIntoViewIfNeeded();
  await shot('09b-source-refreshed');

  // The rules view lists the configured sources beside the JSON; none is read yet.
  await byTestId('nav-rules').click();
  await state.page.click('#rules-reload');
  await waitForText('[data-testid="rules-source-state-east"]', /^idle$/);
  assert.equal(await text(byTestId('rules-source-state-cucm')), 'idle');
  assert.match(await text(byTestId('rules-source-east')), /^east\s*cucm\s*east/);
  await page.waitForFunction(() => /"orphans"/.test(document.getElementById('rules-editor').value), null, { timeout: WAIT });
  const original = await editorRules();
  assert.deepEqual(original.sources, []);
  assert.equal(await byTestId('rules-precedence-empty').isVisible(), true);

  // Add both, then put cucm first: the JSON follows every click.
  await page.selectOption('#rules-source-add', 'east');
  await byTestId('rules-source-add-button').click();
  assert.deepEqual((await editorRules()).sources, ['east']);
  assert.deepEqual(await byTestId('rules-source-add').locator('option').allTextContents(), ['cucm (cucm)']);
  await byTestId('rules-source-add-button').click();
  assert.deepEqual((await editorRules()).sources, ['east', 'cucm']);
  assert.equal(await byTestId('rules-source-add-button').isDisabled(), true, 'every source is listed');
  await byTestId('precedence-up-cucm').click();
  assert.deepEqual((await editorRules()).sources, ['cucm', 'east']);
  assert.equal(await byTestId('precedence-up-cucm').isDisabled(), true, 'the primary cannot go higher');
  // Two clusters: the page says what happens to a person in both.
  assert.match(await text(byTestId('rules-source-warnings')), /Several CUCM clusters \(cucm, east\)/);

  // Fields: east supplies everything but the names; unticking and ticking back one field
  // returns to "every field" (no entry).
  for (const f of ['first_name', 'last_name']) await byTestId(`rules-field-east-${f}`).uncheck();
  let rules = await editorRules();
  assert.deepEqual(rules.source_fields, { east: MERGED_FIELDS.filter((f) => !['first_name', 'last_name'].includes(f)) });
  assert.equal(await text(byTestId('rules-fields-summary-east')), `${MERGED_FIELDS.length - 2} of ${MERGED_FIELDS.length} fields`);
  await byTestId('rules-field-cucm-mailid').uncheck();
  assert.deepEqual((await editorRules()).source_fields.cucm, MERGED_FIELDS.filter((f) => f !== 'mailid'));
  await byTestId('rules-field-cucm-mailid').check();
  rules = await editorRules();
  assert.equal('cucm' in rules.source_fields, false, JSON.stringify(rules.source_fields));
  assert.equal(await text(byTestId('rules-fields-summary-cucm')), 'every field');
  // Everything else in the JSON is as it was.
  assert.deepEqual({ ...rules, sources: [], source_fields: {} }, original);
  await byTestId('rules-sources').scrollIntoViewIfNeeded();
  await shot('09c-rules-sources');

  await byTestId('rules-save').click();
  await waitForText('[data-testid="rules-msg"]', /^Rules saved/);
  const saved = (await pageFetch('/api/v1/rules', {})).json;
  assert.deepEqual(saved.sources, ['cucm', 'east']);
  assert.deepEqual(saved.source_fields, rules.source_fields);

  // Typing in the JSON redraws the list; text that is not JSON sets the controls aside.
  await page.fill('#rules-editor', JSON.stringify({ ...saved, sources: ['east'], source_fields: {} }, null, 2));
  await byTestId('precedence-cucm').waitFor({ state: 'detached' });
  assert.equal(await byTestId('precedence-east').count(), 1);
  await page.fill('#rules-editor', '{ "sources": [');
  await waitForText('[data-testid="rules-json-note"]', /not valid/);
  assert.equal(await byTestId('rules-source-add-button').isDisabled(), true);

  // A source nobody configured: flagged here, refused by the server with its message.
  await page.fill('#rules-editor', JSON.stringify({ ...saved, sources: ['cucm', 'west'] }, null, 2));
  await waitForText('[data-testid="precedence-west"]', /not a configured source/);
  assert.match(await text(byTestId('rules-source-warnings')), /"west" is not a configured source/);
  await byTestId('rules-save').click();
  await waitForText('[data-testid="rules-msg"]', /invalid rules/);
  assert.match(await text(byTestId('rules-msg')), /sources: "west" is not a configured source \(configured: cucm, east\)/);
  assert.match(await byTestId('rules-msg').getAttribute('class'), /alert-error/);
  await shot('09d-rules-unknown-source');
  assert.deepEqual((await pageFetch('/api/v1/rules', {})).json, saved, 'nothing saved');
  // east's fields outlived it in the list: flagged, and one click drops them.
  assert.match(await text(byTestId('rules-source-warnings')), /source_fields names "east", which is not in the list/);
  await byTestId('rules-drop-fields-east').click();
  assert.deepEqual((await editorRules()).source_fields, {});

  // Back to the rules of before (user sync over the default source alone).
  await page.fill('#rules-editor', JSON.stringify(original, null, 2));
  await byTestId('rules-save').click();
  await waitForText('[data-testid="rules-msg"]', /^Rules saved/);
  assert.deepEqual((await pageFetch('/api/v1/rules', {})).json.sources, []);
});

step('API tokens: a read-only token reads but cannot run a job; a revoked one is refused', async () => {
  const page = state.page;
  await byTestId('nav-tokens').click();
  await page.fill('#token-name', 'e2e-reader');
  await page.selectOption('#token-role', 'read_only');
  await page.click('#token-create');
  await byTestId('token-created').waitFor();
  const token = await page.inputValue('#token-value');
  assert.match(token, /^ucb_[A-Za-z0-9_-]{20,}$/);
  await byTestId('token-row-e2e-reader').waitFor();
  await shot('10-token-created');

  const bearer = { Authorization: `Bearer ${token}` };
  const read = await pageFetch('/api/v1/status', { headers: bearer, credentials: 'omit' });
  assert.equal(read.status, 200);
  const runNow = await pageFetch('/api/v1/jobs/user_sync/run', { method: 'POST', headers: bearer, credentials: 'omit' });
  assert.equal(runNow.status, 403, JSON.stringify(runNow));
  assert.equal(runNow.json?.error?.code, 'read_only');

  // Revoking takes a confirming second click.
  await byTestId('token-revoke-e2e-reader').click();
  await byTestId('token-revoke-e2e-reader').click();
  await byTestId('token-row-e2e-reader').waitFor({ state: 'detached' });
  const revoked = await pageFetch('/api/v1/status', { headers: bearer, credentials: 'omit' });
  assert.equal(revoked.status, 401);
});

step('a read-only account sees the page without write controls', async () => {
  const page = state.page;
  await run(bin, ['admin', 'set-account', VIEWER.username, '--role', 'read-only'], {
    env: childEnv({ UCBRIDGE_ADMIN_PASSWORD: VIEWER.password }), cwd: tmp, timeout: 30000,
  });
  await byTestId('logout').click();
  await byTestId('login-form').waitFor();
  await login(VIEWER.username, VIEWER.password);
  await byTestId('readonly-banner').waitFor();
  assert.equal(await text(byTestId('role')), 'read-only');
  await waitForText('[data-testid="job-status-user_sync"]', /^succeeded$/);
  assert.equal(await byTestId('run-user_sync').isVisible(), false, 'no Run now for read-only');
  assert.equal(await byTestId('source-run-east').isVisible(), false, 'no source Run now for read-only');
  assert.equal(await byTestId('nav-tokens').isVisible(), false, 'no API tokens page for read-only');
  await shot('11-read-only');
  // The voicemail options: the values, in disabled fields, and no Save.
  await byTestId('nav-users').click();
  await waitForValue('#vm-debounce', '2s');
  assert.equal(await page.inputValue('#vm-cuc_id'), 'extension');
  assert.equal(await page.inputValue('#vm-folders-inbox'), 'Calls/Voicemail');
  for (const id of ['vm-debounce', 'vm-cuc_id', 'vm-hard_delete', 'vm-concurrency', 'vm-folders-inbox']) {
    assert.equal(await byTestId(id).isDisabled(), true, `${id} is disabled for read-only`);
  }
  assert.equal(await byTestId('voicemail-save').isVisible(), false, 'no Save for read-only');
  assert.equal(await byTestId('voicemail-reload').isVisible(), true);
  await shotOf(byTestId('voicemail-card'), '11b-read-only-voicemail');
  // The rules view lists the sources, without the controls that would change the rules.
  await byTestId('nav-rules').click();
  await waitForText('[data-testid="rules-source-state-east"]', /^idle$/);
  assert.equal(await byTestId('rules-source-add-button').isVisible(), false, 'no Add source for read-only');
  assert.equal(await byTestId('rules-source-add').isDisabled(), true);
  // The server enforces it too, whatever the page shows.
  const csrf = await page.evaluate(async () => (await (await fetch('/api/v1/session')).json()).csrf_token);
  const refused = await pageFetch('/api/v1/jobs/user_sync/run', { method: 'POST', headers: { 'X-CSRF-Token': csrf } });
  assert.equal(refused.status, 403);
  assert.equal(refused.json?.error?.code, 'read_only');
  const vmRefused = await pageFetch('/api/v1/voicemail', {
    method: 'PUT', headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/json' }, body: JSON.stringify({ debounce: '1s' }),
  });
  assert.equal(vmRefused.status, 403);
  assert.equal(vmRefused.json?.error?.code, 'read_only');
  assert.deepEqual((await pageFetch('/api/v1/voicemail', {})).json?.options, VOICEMAIL_SAVED);
});

step('sign-out ends the session', async () => {
  await byTestId('logout').click();
  await byTestId('login-form').waitFor();
  assert.equal(await state.page.isVisible('#nav'), false);
  const session = await pageFetch('/api/v1/session', {});
  assert.equal(session.status, 401);
  await state.page.reload();
  await byTestId('login-form').waitFor();
  await shot('12-signed-out');
});
