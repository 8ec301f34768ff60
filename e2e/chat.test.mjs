// Browser test of the chat panel of the user page (crates/server/web/user.js, ucbChat) of
// `ucbridge serve --lab`, in Debian's headless Chromium, against the lab's Prosody as the
// IM and Presence stand-in: a lab user signs in with the CUCM password and chats with a
// second lab user on a Jabber-side XMPP client (@xmpp/client in this process) — the
// contact added and approved both ways, presence shown both ways, messages both ways
// live, and sign-out seen as going offline.
//
// Needs: the `ucbridge` binary (UCBRIDGE_BIN, else $CARGO_TARGET_DIR or ../target, debug),
// /usr/bin/chromium, prosody (Debian `prosody`), `npm ci` here. Anything missing is a
// loud skip, and a failure under CI=true. Screenshots go to e2e/artifacts/chat-*.png.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { client as xmppClient, xml } from '@xmpp/client';
import {
  ADMIN_PASSWORD, adminApi, artifacts, createHarness, syncLabUsers, until, USER_PASSWORD, WAIT,
} from './harness.mjs';

const prosodyPath = ['/usr/bin/prosody', '/usr/sbin/prosody', '/usr/local/bin/prosody'].find((p) => fs.existsSync(p));
const LAB_USERS = 6;

const {
  skip, state, shot, byTestId, waitForText, step, startLabServer, openBrowser, shutdown,
} = createHarness({
  prefix: 'chat',
  needs: [[prosodyPath || '/usr/bin/prosody', 'Prosody (apt-get install prosody)']],
});
// What the Jabber-side client received.
const inbox = { messages: [], presences: [], subscribes: [] };

const contactOf = (jid) => state.page.locator(`[data-testid="chat-contact"][data-jid="${jid}"]`);

/**
 * Trust `caPem` (the private CA of this run's lab Prosody) in every TLS connection of this
 * process: @xmpp/starttls gives tls.connect only the host name, no CA option. Verification
 * stays on; only this CA is added.
 */
function trustCa(caPem) {
  const connect = tls.connect;
  tls.connect = (options, ...rest) => connect.call(tls, typeof options === 'object' ? { ca: [...tls.rootCertificates, caPem], ...options } : options, ...rest);
}

/** The Jabber-side user: an XMPP client of the lab's Prosody (STARTTLS), as Cisco Jabber would be. */
async function startJabber(service, domain, username) {
  const xmpp = xmppClient({ service, domain, username, password: USER_PASSWORD, resource: 'jabber' });
  xmpp.on('error', (e) => console.error(`jabber client: ${e.message}`));
  xmpp.on('stanza', (stanza) => {
    const from = (stanza.attrs.from || '').split('/')[0];
    if (stanza.is('message') && stanza.getChildText('body')) {
      inbox.messages.push({ from, body: stanza.getChildText('body') });
    } else if (stanza.is('presence')) {
      const type = stanza.attrs.type || 'available';
      if (type === 'subscribe') inbox.subscribes.push(from);
      else inbox.presences.push({ from, type, show: stanza.getChildText('show'), status: stanza.getChildText('status') });
    }
  });
  // Bounded: a client that cannot log in fails the test instead of retrying forever.
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the Jabber client cannot log in to ${service} as ${username}`)), WAIT);
  });
  try {
    await Promise.race([xmpp.start(), deadline]);
  } catch (e) {
    xmpp.reconnect.stop();
    await xmpp.stop().catch(() => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
  await xmpp.send(xml('presence'));
  return xmpp;
}

before(async () => {
  if (skip) return;
  await startLabServer(LAB_USERS);
  const api = await adminApi(state.server.url);
  await syncLabUsers(api, LAB_USERS);
  const users = (await api('GET', '/api/v1/users?limit=2')).json.users;
  // The lab's usernames are the CUCM userids, which are the users' XMPP localparts.
  [state.me, state.peer] = users.map((u) => u.username);
  const xmpp = await until('the lab\'s xmpp connection', async () => {
    const all = (await api('GET', '/api/v1/connections')).json;
    return all.find((c) => c.kind === 'xmpp' && c.configured);
  }, 150);
  state.domain = xmpp.settings.options.domain;
  trustCa(xmpp.settings.ca_pem);
  state.jabber = await startJabber(xmpp.settings.url, state.domain, state.peer.toLowerCase());
  await openBrowser({ width: 1280, height: 1100 });
});

after(async () => {
  await state.jabber?.stop().catch(() => {});
  await shutdown();
});

const meJid = () => `${state.me.toLowerCase()}@${state.domain}`;
const peerJid = () => `${state.peer.toLowerCase()}@${state.domain}`;

step('the admin page shows the lab\'s IM and Presence connection, and its test passes', async () => {
  await state.page.goto(`${state.server.url}/`);
  await byTestId('login-form').waitFor();
  await state.page.check('#login-kind-admin');
  await state.page.fill('#login-username', 'admin');
  await state.page.fill('#login-password', ADMIN_PASSWORD);
  await state.page.click('#login-submit');
  await byTestId('nav-connections').click();
  await state.page.locator('#conn-xmpp-card').waitFor();
  assert.equal(await state.page.inputValue('#conn-xmpp-opt-domain'), state.domain);
  assert.match(await state.page.inputValue('#conn-xmpp-url'), /^xmpp:\/\/127\.0\.0\.1:\d+$/);
  await state.page.click('#conn-xmpp-test');
  await waitForText('[data-testid="conn-xmpp-msg"]', /^(Connection OK|Test failed)/);
  assert.equal((await byTestId('conn-xmpp-msg').textContent()).trim(), 'Connection OK.');
  await waitForText('[data-testid="conn-xmpp-summary"]', new RegExp(`serves ${state.domain.replaceAll('.', '\\.')}; STARTTLS offered`));
  await state.page.locator('#conn-xmpp-card').screenshot({ path: path.join(artifacts, 'chat-00-admin-connection.png') });
  await byTestId('logout').click();
  await byTestId('login-form').waitFor();
});

step('a lab user signs in and the chat panel is online with their JID', async () => {
  await state.page.goto(`${state.server.url}/#me`);
  await byTestId('login-form').waitFor();
  await state.page.check('#login-kind-user');
  await state.page.fill('#login-username', state.me);
  await state.page.fill('#login-password', USER_PASSWORD);
  await state.page.click('#login-submit');
  await byTestId('me-page').waitFor();
  await byTestId('chat').waitFor();
  await waitForText('[data-testid="chat-state"]', /^online$/);
  assert.equal((await byTestId('chat-jid').textContent()).trim(), meJid());
  await shot('01-online');
});

step('the user adds the Jabber user, who approves and asks back; the user accepts', async () => {
  await byTestId('chat-add-jid').fill(peerJid());
  await byTestId('chat-add-name').fill('Jabber colleague');
  await byTestId('chat-add').click();
  await contactOf(peerJid()).waitFor();
  await until('the subscription request at the Jabber side', () => inbox.subscribes.includes(meJid()), 150);
  await state.jabber.send(xml('presence', { to: meJid(), type: 'subscribed' }));
  await state.jabber.send(xml('presence', { to: meJid(), type: 'subscribe' }));
  const request = state.page.locator(`[data-testid="chat-request"][data-jid="${peerJid()}"]`);
  await request.waitFor();
  await shot('02-request');
  await request.locator('[data-testid="chat-accept"]').click();
  await request.waitFor({ state: 'detached' });
  await waitForText(`[data-testid="chat-contact"][data-jid="${peerJid()}"]`, /Available/);
});

step('presence both ways: the Jabber user goes away, the user chooses do-not-disturb', async () => {
  await state.jabber.send(xml('presence', {}, xml('show', {}, 'away'), xml('status', {}, 'Out for lunch')));
  await waitForText(`[data-testid="chat-contact"][data-jid="${peerJid()}"]`, /Away.*Out for lunch/);
  await byTestId('chat-presence').selectOption('do_not_disturb');
  await byTestId('chat-status').fill('On a customer call');
  await byTestId('chat-presence-save').click();
  await until('the user\'s presence at the Jabber side', () => inbox.presences.some(
    (p) => p.from === meJid() && p.show === 'dnd' && p.status === 'On a customer call',
  ), 150);
  await shot('03-presence');
});

step('messages both ways, live', async () => {
  await state.jabber.send(xml('message', { to: meJid(), type: 'chat' }, xml('body', {}, 'Hi from Jabber <b>not bold</b>')));
  await contactOf(peerJid()).locator('.chat-open').click();
  await waitForText('[data-testid="chat-messages"]', /Hi from Jabber <b>not bold<\/b>/);
  assert.equal(await state.page.locator('[data-testid="chat-messages"] b').count(), 0, 'text stays text');
  await byTestId('chat-input').fill('Hello from the browser');
  await byTestId('chat-send').click();
  await until('the message at the Jabber side', () => inbox.messages.some(
    (m) => m.from === meJid() && m.body === 'Hello from the browser',
  ), 150);
  await state.jabber.send(xml('message', { to: meJid(), type: 'chat' }, xml('body', {}, 'Got it, thanks')));
  await waitForText('[data-testid="chat-messages"]', /Got it, thanks/);
  const shown = await state.page.locator('[data-testid="chat-message"]').count();
  assert.equal(shown, 3, 'each message once');
  await shot('04-conversation');
});

step('sign-out ends the chat session: the Jabber side sees the user go offline', async () => {
  const before = inbox.presences.length;
  await byTestId('logout').click();
  await byTestId('login-form').waitFor();
  await until('the user offline at the Jabber side', () => inbox.presences.slice(before).some(
    (p) => p.from === meJid() && p.type === 'unavailable',
  ), 150);
  assert.equal(await state.page.locator('[data-testid="chat"]').count(), 0, 'the chat panel is gone');
  await shot('05-signed-out');
});
