-- ucbridge-push.lua: tell ucbridge when a user changes mail on IMAP, so the voicemail
-- account is synced after ucbridge's debounce (seed 002: "IMAP changes automatically
-- schedule synchronization of the corresponding account (after five seconds)").
--
-- Driver: Dovecot's push-notification Lua driver (2.3+), with Dovecot's own HTTP client
-- (`dovecot.http`, added in 2.3.19). The built-in `ox` driver only reports MessageNew;
-- ucbridge needs flag changes and expunges.
--
-- Per mailbox transaction with at least one relevant event, one POST of a small JSON
-- document to `ucbridge_push_url`:
--   {"user":"jsmith","mailbox":"Voicemail","event":"FlagsSet","uidvalidity":1700000000}
-- with `Authorization: Bearer <ucbridge_push_token>`. ucbridge answers 204 (401 for a
-- wrong token). The mailbox name is informational: ucbridge recognises its folders by
-- UIDVALIDITY, which survives renames.
--
-- Plugin settings (example: 95-ucbridge-push.conf beside this file; docs/voicemail.md):
--   ucbridge_push_url          http(s)://ucbridge.example.com:8080/callbacks/imap
--   ucbridge_push_token        the shared secret (or `</path/to/file`)
--   ucbridge_push_skip_master  master user whose sessions are not reported (ucbridge's
--                              own changes need no sync); empty = report everything
--   ucbridge_push_timeout_msecs  per request, default 2000
--
-- The HTTP call is synchronous (dovecot.http submits and waits), so it is made once per
-- transaction, at its end, with a short timeout and a single attempt: a ucbridge that is
-- down costs a user's IMAP command at most the timeout, and ucbridge's HIGHESTMODSEQ poll
-- and periodic reconcile pick up whatever was not delivered.

local client = nil

-- JSON string literal (RFC 8259 §7): quote, backslash and control characters escaped;
-- Dovecot hands over UTF-8, which JSON carries as is.
local function json_string(s)
  s = tostring(s or "")
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

local function http_client(user)
  if client == nil then
    local timeout = tonumber(user:plugin_getenv("ucbridge_push_timeout_msecs") or "") or 2000
    client = dovecot.http.client({
      user_agent = "dovecot-ucbridge-push",
      request_timeout_msecs = timeout,
      request_absolute_timeout_msecs = timeout,
      connect_timeout_msecs = timeout,
      max_attempts = 1,
      max_connect_attempts = 1,
      max_redirects = 0,
      no_auto_retry = true,
    })
  end
  return client
end

function dovecot_lua_notify_begin_txn(user)
  local url = user:plugin_getenv("ucbridge_push_url") or ""
  local skip_master = user:plugin_getenv("ucbridge_push_skip_master") or ""
  local enabled = url ~= ""
  if enabled and skip_master ~= "" then
    -- %{auth_user} is the SASL authentication id: the master user's name when a
    -- master user logged in ("user*master" or an authzid), the user's own otherwise.
    -- (%{master_user} is not a mail user variable in 2.3: UNSUPPORTED_VARIABLE.)
    enabled = user:var_expand("%{auth_user}") ~= skip_master
  end
  return { user = user, url = url, enabled = enabled, event = nil }
end

-- Remember the first relevant event of the transaction (one transaction = one mailbox).
local function note(ctx, event)
  if ctx.enabled and ctx.event == nil then
    ctx.event = event.name
    ctx.mailbox = event.mailbox
    ctx.uidvalidity = event.uid_validity
  end
end

-- Flags ucbridge mirrors: \Seen (read status) and \Deleted (delete wins).
local function mirrored_flag(flags)
  for _, f in ipairs(flags or {}) do
    if f == "\\Seen" or f == "\\Deleted" then return true end
  end
  return false
end

function dovecot_lua_notify_event_flags_set(ctx, event)
  if mirrored_flag(event.flags) then note(ctx, event) end
end

function dovecot_lua_notify_event_flags_clear(ctx, event)
  if mirrored_flag(event.flags) then note(ctx, event) end
end

function dovecot_lua_notify_event_message_expunge(ctx, event)
  note(ctx, event)
end

-- A move into a voicemail folder (the destination half of MOVE, or COPY/APPEND).
function dovecot_lua_notify_event_message_append(ctx, event)
  note(ctx, event)
end

function dovecot_lua_notify_event_mailbox_rename(ctx, event)
  note(ctx, event)
end

function dovecot_lua_notify_event_mailbox_delete(ctx, event)
  note(ctx, event)
end

function dovecot_lua_notify_end_txn(ctx, success)
  if not success or ctx.event == nil then return end
  local body = "{\"user\":" .. json_string(ctx.user.username)
    .. ",\"mailbox\":" .. json_string(ctx.mailbox)
    .. ",\"event\":" .. json_string(ctx.event)
  if ctx.uidvalidity ~= nil then
    body = body .. ",\"uidvalidity\":" .. string.format("%d", ctx.uidvalidity)
  end
  body = body .. "}"
  -- Trimmed: `ucbridge_push_token = </file` keeps the file's final newline, and a CR or
  -- LF in a header value is not a Lua error but an assertion failure that kills the
  -- user's IMAP process (http-client-request.c, checked with Dovecot 2.3.19.1).
  local token = (ctx.user:plugin_getenv("ucbridge_push_token") or ""):match("^%s*(.-)%s*$")
  if token == "" or token:find("[%c ]") then
    dovecot.i_warning("ucbridge push: ucbridge_push_token is empty or has spaces or control characters; not sent")
    return
  end
  -- A failed call must never fail the user's IMAP command: errors are logged only.
  local ok, err = pcall(function()
    local request = http_client(ctx.user):request({ url = ctx.url, method = "POST" })
    request:add_header("Content-Type", "application/json")
    request:add_header("Authorization", "Bearer " .. token)
    request:set_payload(body)
    local response = request:submit()
    local status = response:status()
    if status < 200 or status > 299 then
      dovecot.i_warning("ucbridge push: HTTP " .. tostring(status) .. " from " .. ctx.url)
    end
  end)
  if not ok then
    dovecot.i_warning("ucbridge push failed: " .. tostring(err))
  end
end
