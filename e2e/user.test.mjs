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

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  adminApi, createHarness, sleep, syncLabUsers, USER_PASSWORD,
} from './harness.mjs';

const LAB_USERS = 12;

const {
  skip, state, shot, byTestId, text, pageFetch, waitForText, step, startLabServer, openBrowser, shutdown,
} = createHarness({ prefix: 'user' });

async function signInAsUser(username, password) {
  await state.page.check('#login-kind-user');
  await state.page.fill('#login-username', username);
  await state.page.fill('#login-password', password);
  await state.page.click('#login-submit');
}

before(async () => {
  if (skip) return;
  await startLabServer(LAB_USERS);
  // Set-up as the admin: provisioning settings (the lab's defaults; the devices job's
  // pattern matches nobody, so only the sign-in creates the WebPhone) and the lab's users.
  const api = await adminApi(state.server.url);
  const provisioning = await api('PUT', '/api/v1/provisioning', { users: 'no-such-user-%', provisioning: {} });
  assert.equal(provisioning.status, 200, JSON.stringify(provisioning.json));
  await syncLabUsers(api, LAB_USERS);
  const users = (await api('GET', '/api/v1/users?limit=1')).json.users;
  state.user = users[0].username;
  await openBrowser();
});

after(shutdown);

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
