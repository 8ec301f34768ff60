//! `/api/v1/me/chat/...`: the signed-in end user's chat and presence through Cisco IM and
//! Presence (the node's [`crate::chat::ChatManager`]), and their live event stream
//! (server-sent events). End users only ([`EndUser`]); writes carry the CSRF header like
//! every other `/me` write.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::broadcast::{self, error::RecvError};
use ucbridge_im::{Availability, Direction, ImSession, OwnPresence};

use super::*;
use crate::auth::EndUser;
use crate::chat::{
    ChatError, ChatEvent, ChatView, ConversationView, MessageView, PresenceView, SentView,
    StreamGuard, UserChat,
};

/// Largest chat request body (a message of `MAX_MESSAGE_CHARS` characters, escaped).
const CHAT_BODY_LIMIT: usize = 64 * 1024;
/// Longest status text, in characters.
const MAX_STATUS_CHARS: usize = 500;
/// Longest contact name, in characters.
const MAX_NAME_CHARS: usize = 256;
/// Live streams one user may hold open on a node (tabs, devices).
const MAX_STREAMS: usize = 8;
/// Keep-alive comment interval of the live stream (proxies close silent connections).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            ChatError::NotConfigured => (StatusCode::CONFLICT, "chat_not_configured"),
            ChatError::NeedsPassword => (StatusCode::CONFLICT, "chat_needs_password"),
            ChatError::OnOtherNode => (StatusCode::CONFLICT, "chat_on_other_node"),
            ChatError::Invalid { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ChatError::Failed { code, .. } if *code == "chat_unavailable" => {
                (StatusCode::SERVICE_UNAVAILABLE, "chat_unavailable")
            }
            ChatError::Failed { .. } => (StatusCode::BAD_GATEWAY, "chat_failed"),
            ChatError::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "chat_config"),
            ChatError::TooManyStreams => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            ChatError::Full => (StatusCode::SERVICE_UNAVAILABLE, "chat_unavailable"),
        };
        ApiError::new(status, code, message)
    }
}

async fn chat_of(state: &AppState, me: &EndUser) -> Result<Arc<UserChat>, ApiError> {
    Ok(state
        .chat
        .for_user(me.identity.user_id, me.identity.method)
        .await?)
}

/// The user's chat and its open XMPP session (logging in first if needed).
async fn session_of(
    state: &AppState,
    me: &EndUser,
) -> Result<(Arc<UserChat>, ImSession), ApiError> {
    let chat = chat_of(state, me).await?;
    let session = chat.ensure_open(&state.chat).await?;
    Ok((chat, session))
}

/// A JID from the caller, normalised to a bare JID; 400 with the reason otherwise.
fn jid(text: &str) -> Result<String, ApiError> {
    ucbridge_im::validate_jid(text.trim())
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", shown(text))))
}

fn bounded(what: &str, text: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(text) = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "the {what} is longer than {max} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "the {what} holds control characters"
        )));
    }
    Ok(Some(text))
}

const CHAT_ERRORS: &str = "409: chat_not_configured (no xmpp connection), chat_needs_password (signed in with SSO), chat_on_other_node (the session lives on another node); 502 chat_failed / 503 chat_unavailable: IM and Presence refused or cannot be reached";

/// The user's chat: state, own presence, contacts with presence, pending requests. Logs in
/// to IM and Presence first when no session is open.
#[utoipa::path(get, path = "/api/v1/me/chat", responses((status = 200, body = ChatView),
    (status = 403, description = "Not an end-user session", body = ErrorBody),
    (status = 409, description = CHAT_ERRORS, body = ErrorBody),
    (status = 502, description = "IM and Presence refused the log-in (wrong domain, TLS, credentials)", body = ErrorBody),
    (status = 503, description = "IM and Presence cannot be reached", body = ErrorBody)))]
pub(super) async fn chat_get(State(state): State<AppState>, me: EndUser) -> ApiResult<ChatView> {
    let (chat, _) = session_of(&state, &me).await?;
    Ok(Json(chat.snapshot()))
}

/// The user's own presence.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceUpdate {
    /// `available`, `chat`, `away`, `extended_away` or `do_not_disturb`.
    #[schema(value_type = String, example = "away")]
    pub availability: Availability,
    /// Status text, at most 500 characters.
    #[serde(default)]
    pub status: Option<String>,
}

/// Set the user's own presence (what their contacts see).
#[utoipa::path(put, path = "/api/v1/me/chat/presence", request_body = PresenceUpdate,
    responses((status = 200, body = PresenceView), (status = 400, body = ErrorBody),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn chat_presence(
    State(state): State<AppState>,
    me: EndUser,
    ApiJson(update): ApiJson<PresenceUpdate>,
) -> ApiResult<PresenceView> {
    if update.availability == Availability::Unavailable {
        return Err(ApiError::bad_request(
            "unavailable is not a presence to choose: sign out to go offline",
        ));
    }
    let presence = OwnPresence {
        availability: update.availability,
        status: bounded("status", update.status, MAX_STATUS_CHARS)?,
    };
    let (chat, session) = session_of(&state, &me).await?;
    session
        .set_presence(presence.clone())
        .await
        .map_err(ChatError::from)?;
    chat.set_own(presence.clone());
    Ok(Json(presence.into()))
}

/// A contact to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactAdd {
    /// Bare JID, e.g. `bob@cup.example.com`.
    pub jid: String,
    /// Display name, at most 256 characters.
    #[serde(default)]
    pub name: Option<String>,
}

/// Add a contact and ask to see their presence (they must approve).
#[utoipa::path(post, path = "/api/v1/me/chat/contacts", request_body = ContactAdd,
    responses((status = 204), (status = 400, description = "Invalid JID or name", body = ErrorBody),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn chat_add_contact(
    State(state): State<AppState>,
    me: EndUser,
    ApiJson(add): ApiJson<ContactAdd>,
) -> Result<StatusCode, ApiError> {
    let contact = jid(&add.jid)?;
    let name = bounded("name", add.name, MAX_NAME_CHARS)?;
    let (_, session) = session_of(&state, &me).await?;
    if contact == session.bare_jid() {
        return Err(ApiError::bad_request("you cannot add yourself"));
    }
    session
        .add_contact(&contact, name.as_deref())
        .await
        .map_err(ChatError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a contact (both presence subscriptions end).
#[utoipa::path(delete, path = "/api/v1/me/chat/contacts/{jid}",
    params(("jid" = String, Path, description = "Bare JID of the contact")),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn chat_remove_contact(
    State(state): State<AppState>,
    me: EndUser,
    ApiPath(contact): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let contact = jid(&contact)?;
    let (_, session) = session_of(&state, &me).await?;
    session
        .remove_contact(&contact)
        .await
        .map_err(ChatError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to a subscription request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionAnswer {
    /// Let them see the user's presence (and ask to see theirs), or decline.
    pub accept: bool,
}

/// Answer someone's request to see the user's presence.
#[utoipa::path(post, path = "/api/v1/me/chat/subscriptions/{jid}", request_body = SubscriptionAnswer,
    params(("jid" = String, Path, description = "Bare JID of who asked")),
    responses((status = 204), (status = 400, body = ErrorBody),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn chat_answer(
    State(state): State<AppState>,
    me: EndUser,
    ApiPath(asker): ApiPath<String>,
    ApiJson(answer): ApiJson<SubscriptionAnswer>,
) -> Result<StatusCode, ApiError> {
    let asker = jid(&asker)?;
    let (chat, session) = session_of(&state, &me).await?;
    session
        .answer_subscription(&asker, answer.accept)
        .await
        .map_err(ChatError::from)?;
    chat.answered(&asker);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
pub struct ConversationQuery {
    /// Bare JID of the other party.
    pub with: String,
}

/// The recent messages with one contact that this node holds (the last 100, oldest
/// first), offline messages delivered at log-in included.
#[utoipa::path(get, path = "/api/v1/me/chat/messages", params(ConversationQuery),
    responses((status = 200, body = ConversationView), (status = 400, body = ErrorBody),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody)))]
pub(super) async fn chat_messages(
    State(state): State<AppState>,
    me: EndUser,
    ApiQuery(q): ApiQuery<ConversationQuery>,
) -> ApiResult<ConversationView> {
    let with = jid(&q.with)?;
    let chat = chat_of(&state, &me).await?;
    Ok(Json(ConversationView {
        messages: chat.history(&with),
        with,
    }))
}

/// A message to send.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSend {
    /// Bare JID of the recipient.
    pub to: String,
    /// At most `max_message_chars` (4096) characters.
    pub body: String,
}

/// Send a 1:1 message.
#[utoipa::path(post, path = "/api/v1/me/chat/messages", request_body = MessageSend,
    responses((status = 200, body = SentView),
        (status = 400, description = "Invalid JID, empty or oversized message", body = ErrorBody),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn chat_send(
    State(state): State<AppState>,
    me: EndUser,
    ApiJson(send): ApiJson<MessageSend>,
) -> ApiResult<SentView> {
    let to = jid(&send.to)?;
    if send.body.trim().is_empty() {
        return Err(ApiError::bad_request("the message is empty"));
    }
    let chars = send.body.chars().count();
    if chars > ucbridge_im::MAX_MESSAGE_CHARS {
        return Err(ApiError::bad_request(format!(
            "the message is {chars} characters long; at most {} are sent",
            ucbridge_im::MAX_MESSAGE_CHARS
        )));
    }
    let (chat, session) = session_of(&state, &me).await?;
    let id = session
        .send_message(&to, &send.body)
        .await
        .map_err(ChatError::from)?;
    chat.sent(MessageView {
        id: id.clone(),
        from: session.bare_jid(),
        to,
        body: send.body,
        at_ms: ucbridge_store::now_millis(),
        direction: Direction::Outgoing,
        delayed: false,
    });
    Ok(Json(SentView { id }))
}

/// The live stream: server-sent events whose `data` is a [`ChatEvent`] in JSON. The first
/// is a `snapshot` (a reconnecting page is consistent again); a stream that fell behind
/// gets a `resync`. A keep-alive comment every 15 s; the stream ends before the server's
/// request timeout and the browser's EventSource reconnects.
#[utoipa::path(get, path = "/api/v1/me/chat/events",
    responses((status = 200, description = "text/event-stream of chat events", content_type = "text/event-stream", body = ChatEvent),
        (status = 409, description = CHAT_ERRORS, body = ErrorBody),
        (status = 429, description = "Too many live streams open for this user", body = ErrorBody)))]
pub(super) async fn chat_events(
    State(state): State<AppState>,
    me: EndUser,
) -> Result<Response, ApiError> {
    let chat = chat_of(&state, &me).await?;
    let guard = chat
        .open_stream(MAX_STREAMS)
        .ok_or(ChatError::TooManyStreams)?;
    // Subscribe before the snapshot is taken: nothing falls between the two.
    let events = chat.subscribe();
    let first = ChatEvent::Snapshot {
        chat: chat.snapshot(),
    };
    let (opening, manager) = (chat.clone(), state.chat.clone());
    tokio::spawn(async move {
        // The outcome reaches the stream as a state event.
        let _ = opening.ensure_open(&manager).await;
    });
    let lifetime = state.config.http.request_timeout.mul_f64(0.9);
    let feed = Feed {
        chat,
        _guard: guard,
        events,
        first: Some(first),
        until: tokio::time::Instant::now() + lifetime,
    };
    let sse = Sse::new(futures::stream::unfold(feed, next_event))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    let mut response = sse.into_response();
    // Tell buffering proxies (nginx) to pass events on at once.
    response.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        header::HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// One live stream's state.
struct Feed {
    chat: Arc<UserChat>,
    _guard: StreamGuard,
    events: broadcast::Receiver<ChatEvent>,
    first: Option<ChatEvent>,
    until: tokio::time::Instant,
}

async fn next_event(mut feed: Feed) -> Option<(Result<Event, Infallible>, Feed)> {
    let event = match feed.first.take() {
        Some(first) => first,
        None => tokio::select! {
            _ = feed.chat.ended.cancelled() => return None,
            _ = tokio::time::sleep_until(feed.until) => return None,
            got = feed.events.recv() => match got {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => ChatEvent::Resync { chat: feed.chat.snapshot() },
                Err(RecvError::Closed) => return None,
            },
        },
    };
    let data = match serde_json::to_string(&event) {
        Ok(data) => data,
        // Plain data always serializes; should it not, the page resynchronizes.
        Err(_) => r#"{"type":"resync_needed"}"#.to_owned(),
    };
    Some((Ok(Event::default().data(data)), feed))
}

/// The `/api/v1/me/chat` routes (merged into [`super::routes`]).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/chat", get(chat_get))
        .route("/api/v1/me/chat/presence", put(chat_presence))
        .route("/api/v1/me/chat/contacts", post(chat_add_contact))
        .route(
            "/api/v1/me/chat/contacts/{jid}",
            axum::routing::delete(chat_remove_contact),
        )
        .route("/api/v1/me/chat/subscriptions/{jid}", post(chat_answer))
        .route(
            "/api/v1/me/chat/messages",
            get(chat_messages).post(chat_send),
        )
        .route("/api/v1/me/chat/events", get(chat_events))
        .layer(DefaultBodyLimit::max(CHAT_BODY_LIMIT))
}
