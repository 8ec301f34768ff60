//! `ucbridge serve`: one process that runs ucbridge's jobs and serves its REST API and
//! admin page.
//!
//! - [`jobs`]: the scheduler. Every job has a lease in the database; the node holding it
//!   runs the job (continuous jobs such as the snapshot keeper for as long as it holds it,
//!   scheduled jobs once per claimed slot). Several nodes on one PostgreSQL share the work
//!   that way, and a node that dies loses its leases after their TTL.
//! - [`auth`]: admin accounts (argon2id), cookie sessions with a CSRF token, API tokens
//!   (`Authorization: Bearer`), roles `admin` and `read_only`; end users' sessions (role
//!   `user`, the user page) reach only `/api/v1/me` and the session routes.
//! - [`connections`]: CUCM, CUC, IdS, IMAP and LDAP connections edited on the admin page,
//!   their passwords sealed with [`ucbridge_auth::SecretBox`] and never returned.
//! - [`chat`]: end users' chat and presence through Cisco IM and Presence (XMPP), one
//!   session per signed-in user on the node they signed in on.
//! - [`api`]: the REST API (`/api/v1/...`, OpenAPI at `/openapi.json`), health and
//!   Prometheus metrics.

pub mod api;
pub mod auth;
pub mod chat;
pub mod config;
pub mod connections;
mod end_user;
mod error;
pub mod jobs;
mod listen;
mod log_safe;
mod login_limit;
pub mod metrics;
mod server;
mod signin_cucm;
mod state;
mod web;

pub use config::{HttpLimits, JobDefaults, ServerConfig, ServerFileConfig, TlsFiles};
pub use error::ServerError;
pub use server::{RunningServer, Server};
pub use state::AppState;
