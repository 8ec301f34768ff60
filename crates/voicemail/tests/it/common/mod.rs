//! A world for voicemail tests: the CUC lab over HTTPS, a throwaway Dovecot, a SQLite
//! store with one local user per CUC user, and an IMAP client to look at mailboxes.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use tokio::net::TcpStream;
use ucbridge_auth::{Credentials, TlsOptions};
use ucbridge_cuc::{CucClient, CucConfig, UserQuery};
use ucbridge_lab::{CucLabConfig, LabConfig, RunningLab};
use ucbridge_store::{Store, UserRecord};
use ucbridge_testkit::dovecot::{Dovecot, LuaPush, MASTER_PASSWORD, MASTER_USER, USER_PASSWORD};
use ucbridge_voicemail::{ImapSettings, VoicemailEngine, VoicemailOptions, CUC_ID_HEADER};

pub struct World {
    pub lab: RunningLab,
    pub dovecot: Dovecot,
    pub store: Store,
    pub store_url: String,
    pub aliases: Vec<String>,
    /// What the lab was started with (for [`World::lab_without_delegate_role`]).
    lab_config: LabConfig,
    _dir: tempfile::TempDir,
}

pub fn cuc_client(lab: &RunningLab) -> CucClient {
    let mut config = CucConfig::new(
        lab.cuc_url(),
        Credentials::basic("administrator", "ucbridge-lab"),
    );
    config.tls = TlsOptions {
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..TlsOptions::default()
    };
    CucClient::new(config).expect("CUC client")
}

/// `None` = skipped (no Dovecot outside CI).
pub async fn world(users: usize, messages_per_user: usize) -> Option<World> {
    world_with(users, messages_per_user, WorldOptions::default()).await
}

/// What [`world_with`] changes from the defaults.
#[derive(Default)]
pub struct WorldOptions<'a> {
    /// Dovecot also speaks TLS with this certificate (STARTTLS and imaps).
    pub tls: Option<&'a ucbridge_testkit::tls::ServerCertificate>,
    /// The lab's CUNI keep-alive period.
    pub cuni_keep_alive_every: Option<Duration>,
    /// Dovecot loads the push-notification plugin with this Lua script and settings.
    pub lua_push: Option<LuaPush>,
}

pub async fn world_with(
    users: usize,
    messages_per_user: usize,
    options: WorldOptions<'_>,
) -> Option<World> {
    let defaults = CucLabConfig::default();
    let lab_config = LabConfig {
        users,
        seed: 11,
        cuc: CucLabConfig {
            messages_per_user,
            cuni_keep_alive_every: options
                .cuni_keep_alive_every
                .unwrap_or(defaults.cuni_keep_alive_every),
            ..defaults
        },
        ..LabConfig::default()
    };
    let lab = RunningLab::start(lab_config.clone())
        .await
        .expect("lab starts");
    let cuc = cuc_client(&lab);
    let aliases: Vec<String> = cuc
        .all_users(&UserQuery {
            rows_per_page: 1000,
            ..UserQuery::default()
        })
        .await
        .expect("CUC users")
        .into_iter()
        .map(|u| u.alias)
        .collect();
    let refs: Vec<&str> = aliases.iter().map(String::as_str).collect();
    let dovecot = Dovecot::builder(&refs)
        .tls(options.tls)
        .lua_push(options.lua_push)
        .start()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let store_url = format!("sqlite://{}", dir.path().join("vm.db").display());
    let store = Store::open(&store_url).await.expect("store");
    for alias in &aliases {
        store
            .create_local_user(&UserRecord {
                username: alias.clone(),
                email: Some(format!("{alias}@example.com")),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await
            .expect("local user");
    }
    Some(World {
        lab,
        dovecot,
        store,
        store_url,
        aliases,
        lab_config,
        _dir: dir,
    })
}

impl World {
    pub fn imap_settings(&self) -> ImapSettings {
        ImapSettings::plain_loopback(self.dovecot.port(), MASTER_USER, MASTER_PASSWORD)
    }

    pub fn engine(&self, options: VoicemailOptions) -> VoicemailEngine {
        VoicemailEngine::new(
            self.store.clone(),
            cuc_client(&self.lab),
            self.imap_settings(),
            options,
        )
    }

    pub async fn imap(&self, user: &str) -> TestImap {
        TestImap::login(self.dovecot.port(), user).await
    }

    /// A second lab with the same seed (same users, ids and messages) whose administrator
    /// lacks the "Mailbox Access Delegate Account" role: every mailbox looks empty.
    pub async fn lab_without_delegate_role(&self) -> RunningLab {
        let mut config = self.lab_config.clone();
        config.cuc.admin_is_mailbox_delegate = false;
        RunningLab::start(config).await.expect("second lab starts")
    }

    /// An engine on this world's store and Dovecot, talking to `lab`'s CUC.
    pub fn engine_on(&self, lab: &RunningLab, options: VoicemailOptions) -> VoicemailEngine {
        VoicemailEngine::new(
            self.store.clone(),
            cuc_client(lab),
            self.imap_settings(),
            options,
        )
    }
}

/// What the test reads from a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub uid: u32,
    pub seen: bool,
    pub cuc_id: Option<String>,
}

pub struct TestImap {
    session: async_imap::Session<TcpStream>,
}

impl TestImap {
    pub async fn login(port: u16, user: &str) -> TestImap {
        Self::login_with(port, &format!("{user}*{MASTER_USER}"), MASTER_PASSWORD).await
    }

    /// Logged in as the user, with the user's own password (not through the master user),
    /// as a mail client is.
    pub async fn login_as_user(port: u16, user: &str) -> TestImap {
        Self::login_with(port, user, USER_PASSWORD).await
    }

    async fn login_with(port: u16, login: &str, password: &str) -> TestImap {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut client = async_imap::Client::new(tcp);
        client
            .read_response()
            .await
            .expect("greeting")
            .expect("greeting");
        let session = client
            .login(login, password)
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        TestImap { session }
    }

    /// Folder names (selectable ones).
    pub async fn folders(&mut self) -> Vec<String> {
        let names: Vec<_> = self
            .session
            .list(Some(""), Some("*"))
            .await
            .expect("list")
            .try_collect()
            .await
            .expect("list");
        let mut v: Vec<String> = names
            .iter()
            .filter(|n| {
                !n.attributes().iter().any(|a| match a {
                    async_imap::types::NameAttribute::NoSelect => true,
                    async_imap::types::NameAttribute::Extension(x) => {
                        x.eq_ignore_ascii_case("\\NonExistent")
                    }
                    _ => false,
                })
            })
            .map(|n| n.name().to_owned())
            .collect();
        v.sort();
        v
    }

    pub async fn messages(&mut self, folder: &str) -> Vec<Seen> {
        let mailbox = self.session.select(folder).await.expect("select");
        if mailbox.exists == 0 {
            return Vec::new();
        }
        let fetches: Vec<_> = self
            .session
            .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER])")
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("fetch");
        let parser = mail_parser::MessageParser::default();
        fetches
            .iter()
            .map(|f| Seen {
                uid: f.uid.expect("uid"),
                seen: f.flags().any(|x| x == async_imap::types::Flag::Seen),
                cuc_id: f
                    .header()
                    .and_then(|h| parser.parse_headers(h))
                    .and_then(|m| m.header_raw(CUC_ID_HEADER).map(|v| v.trim().to_owned())),
            })
            .collect()
    }

    pub async fn full_message(&mut self, folder: &str, uid: u32) -> Vec<u8> {
        self.session.select(folder).await.expect("select");
        let fetches: Vec<_> = self
            .session
            .uid_fetch(uid.to_string(), "BODY.PEEK[]")
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("fetch");
        fetches[0].body().expect("body").to_vec()
    }

    pub async fn set_seen(&mut self, folder: &str, uid: u32, seen: bool) {
        self.session.select(folder).await.expect("select");
        let op = if seen {
            "+FLAGS (\\Seen)"
        } else {
            "-FLAGS (\\Seen)"
        };
        let _: Vec<_> = self
            .session
            .uid_store(uid.to_string(), op)
            .await
            .expect("store")
            .try_collect()
            .await
            .expect("store");
    }

    pub async fn expunge(&mut self, folder: &str, uid: u32) {
        self.session.select(folder).await.expect("select");
        let _: Vec<_> = self
            .session
            .uid_store(uid.to_string(), "+FLAGS (\\Deleted)")
            .await
            .expect("store")
            .try_collect()
            .await
            .expect("store");
        let _: Vec<_> = self
            .session
            .expunge()
            .await
            .expect("expunge")
            .try_collect()
            .await
            .expect("expunge");
    }

    /// Move a message to another folder (UID MOVE), as a mail client's delete-to-Trash
    /// or its undo does.
    pub async fn move_to(&mut self, folder: &str, uid: u32, dest: &str) {
        self.session.select(folder).await.expect("select");
        self.session
            .uid_mv(uid.to_string(), dest)
            .await
            .expect("move");
    }

    /// The user's subscription list (LSUB), sorted.
    pub async fn subscribed(&mut self) -> Vec<String> {
        let names: Vec<_> = self
            .session
            .lsub(Some(""), Some("*"))
            .await
            .expect("lsub")
            .try_collect()
            .await
            .expect("lsub");
        let mut v: Vec<String> = names.iter().map(|n| n.name().to_owned()).collect();
        v.sort();
        v
    }

    pub async fn create(&mut self, folder: &str) {
        self.session.create(folder).await.expect("create");
    }

    /// File a message as the user's mail client would (APPEND).
    pub async fn append(&mut self, folder: &str, raw: &[u8]) {
        self.session
            .append(folder, None, None, raw)
            .await
            .expect("append");
    }

    pub async fn rename(&mut self, from: &str, to: &str) {
        self.session.rename(from, to).await.expect("rename");
    }

    /// Wait until the message with CUC id `id` is in `folder`.
    pub async fn wait_for(&mut self, folder: &str, id: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.folders().await.iter().any(|f| f == folder)
                && self
                    .messages(folder)
                    .await
                    .iter()
                    .any(|m| m.cuc_id.as_deref() == Some(id))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn logout(mut self) {
        let _ = self.session.logout().await;
    }
}

/// Poll `check` until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
