//! Assembling and starting a node: state, routes, scheduler.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use ucbridge_auth::SecretBox;
use ucbridge_store::Store;

use crate::config::default_node_id;
use crate::jobs::Scheduler;
use crate::state::{AppState, StateInner};
use crate::{api, metrics, web, ServerConfig, ServerError};

pub struct Server;

/// A started node. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    node: String,
    shutdown: CancellationToken,
    http: JoinHandle<()>,
    scheduler: Option<JoinHandle<()>>,
    /// Closed when the node stops, so users' contacts see them go offline.
    chat: crate::chat::ChatManager,
}

impl Server {
    /// Bind, register the jobs, start the scheduler (unless `run_jobs` is off) and serve.
    pub async fn start(
        store: Store,
        secrets: SecretBox,
        config: ServerConfig,
    ) -> Result<RunningServer, ServerError> {
        let (node, scheduler, state) = assemble(store, secrets, &config).await?;
        let app = router(state.clone());
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.bind,
            source,
        })?;
        let tls = match &config.tls {
            Some(files) => Some(tls_config(files)?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let scheduler_task = config.run_jobs.then(|| {
            state.jobs_started.store(true, Ordering::Relaxed);
            tokio::spawn(scheduler.run(shutdown.clone()))
        });
        tokio::spawn(crate::api::stats::sample_every_minute(
            state.metrics.clone(),
            shutdown.clone(),
        ));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let http = tokio::spawn(crate::listen::serve(
            listener,
            tls.map(tokio_rustls::TlsAcceptor::from),
            app,
            config.http.clone(),
            shutdown.clone(),
        ));
        tracing::info!(%addr, %node, "ucbridge server listening");
        Ok(RunningServer {
            addr,
            scheme,
            node,
            shutdown,
            http,
            scheduler: scheduler_task,
            chat: state.chat.clone(),
        })
    }

    /// The node's whole HTTP application (API, admin page, callbacks) for `store`,
    /// `secrets` and `config`, without binding a socket or starting the scheduler (the
    /// jobs are registered in the store, as [`Server::start`] does). For tests that drive
    /// requests with `tower::ServiceExt::oneshot`; the connection-level limits of the
    /// listener (header sizes, timeouts, the peer address) do not apply.
    #[doc(hidden)]
    pub async fn router(
        store: Store,
        secrets: SecretBox,
        config: ServerConfig,
    ) -> Result<Router, ServerError> {
        let (_, _, state) = assemble(store, secrets, &config).await?;
        Ok(router(state))
    }
}

/// The node id, the scheduler (jobs registered, not running) and the shared state.
async fn assemble(
    store: Store,
    secrets: SecretBox,
    config: &ServerConfig,
) -> Result<(String, Scheduler, AppState), ServerError> {
    let node = config.node_id.clone().unwrap_or_else(default_node_id);
    let engine: crate::jobs::EngineSlot = Default::default();
    crate::jobs::register_sources(&store, &config.sources)
        .await
        .map_err(ServerError::Config)?;
    let specs = crate::jobs::builtin_jobs(config, engine.clone());
    let scheduler = Scheduler::new(
        store.clone(),
        secrets.clone(),
        node.clone(),
        config.lease_ttl,
        config.tick,
        specs,
    );
    scheduler.register().await?;
    for origin in &config.cors_origins {
        HeaderValue::from_str(origin)
            .map_err(|_| ServerError::Config(format!("bad CORS origin {origin:?}")))?;
    }
    let (signin, passdb_token) = api::passdb::sign_in_service(&store, &secrets, config)?;
    let chat = crate::chat::ChatManager::new(store.clone(), secrets.clone());
    let state = AppState {
        inner: Arc::new(StateInner {
            store,
            secrets,
            config: config.clone(),
            scheduler: scheduler.clone(),
            voicemail: engine,
            metrics: metrics::handle(),
            jobs_started: AtomicBool::new(false),
            login_limiter: crate::login_limit::LoginLimiter::new(config.login_attempts_per_minute),
            signin,
            passdb_token,
            chat,
        }),
    };
    Ok((node, scheduler, state))
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop serving, stop the jobs and release the leases.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
        let _ = self.http.await;
        self.chat.close_all().await;
    }

    /// Wait until the server stops (after the shutdown token is cancelled).
    pub async fn wait(self) {
        let _ = self.http.await;
        self.chat.close_all().await;
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
    }
}

/// The rustls configuration for serving HTTPS from PEM files (ring, TLS 1.2 and 1.3,
/// HTTP/2 and HTTP/1.1).
fn tls_config(files: &crate::TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ServerError::Config(format!("TLS {what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", &files.cert_file, &e))?;
    if chain.is_empty() {
        return Err(bad(
            "certificate",
            &files.cert_file,
            &"no certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| bad("key", &files.key_file, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServerError::Config(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| bad("certificate and key", &files.cert_file, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn router(state: AppState) -> Router {
    let cors = (!state.config.cors_origins.is_empty()).then(|| {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        // No credentials: cross-origin callers use API tokens, never the session cookie.
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(crate::auth::CSRF_HEADER),
            ])
    });
    let voicemail = state.voicemail.clone();
    let mut app = api::routes()
        .route("/", get(web::index))
        .route("/assets/app.js", get(web::app_js))
        .route("/assets/user.js", get(web::user_js))
        .route("/assets/app.css", get(web::app_css))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn(api::api_response_rules))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .with_state(state);
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    // CUC's notification callbacks go to the voicemail engine running on this node; the
    // engine checks the Basic credentials it gave CUC when subscribing. The IMAP server's
    // push notifications likewise (bearer token of `[voicemail] imap_push_token_file`).
    for (path, router) in [
        (
            "/callbacks/cuc",
            ucbridge_voicemail::VoicemailEngine::callback_router
                as fn(&ucbridge_voicemail::VoicemailEngine) -> Router,
        ),
        (
            "/callbacks/imap",
            ucbridge_voicemail::VoicemailEngine::imap_push_router,
        ),
    ] {
        let slot = voicemail.clone();
        app = app.nest_service(
            path,
            tower::service_fn(move |request: axum::extract::Request| {
                let engine = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
                async move {
                    use tower::ServiceExt;
                    match engine {
                        Some(engine) => router(&engine).oneshot(request).await,
                        None => Ok(axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "voicemail sync does not run on this node",
                        ))),
                    }
                }
            }),
        );
    }
    app.layer(
        tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    )
}
