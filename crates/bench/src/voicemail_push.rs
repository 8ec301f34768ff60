//! IMAP push for `--scenario voicemail`: Dovecot runs `contrib/dovecot/ucbridge-push.lua`
//! against the engine's `POST /callbacks/imap`, and the IMAP change → CUC latency is
//! measured from a mail client's read change (a minimal IMAP client logged in as the user)
//! to the read state on the lab's CUC.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use ucbridge_lab::{CucFolder, RunningLab};
use ucbridge_testkit::dovecot::{LuaPush, MASTER_USER, USER_PASSWORD};
use ucbridge_voicemail::VoicemailEngine;

/// The bearer token Dovecot's script presents (a throwaway value on 127.0.0.1).
pub const PUSH_TOKEN: &str = "bench-push-token-0123456789";

/// The webhook listener (bound before Dovecot starts: its URL goes into Dovecot's config)
/// and the token file Dovecot reads.
pub struct PushSetup {
    listener: Option<tokio::net::TcpListener>,
    url: String,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl PushSetup {
    pub async fn new() -> Result<PushSetup> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/callbacks/imap", listener.local_addr()?);
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("ucbridge-push-token");
        std::fs::write(&token_file, format!("{PUSH_TOKEN}\n"))?;
        Ok(PushSetup {
            listener: Some(listener),
            url,
            token_file,
            _dir: dir,
        })
    }

    /// Dovecot's plugin settings; ucbridge's own (master user) sessions are not reported.
    pub fn lua_push(&self) -> LuaPush {
        let script = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contrib/dovecot/ucbridge-push.lua"
        ));
        let setting = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        LuaPush {
            script,
            settings: vec![
                setting("ucbridge_push_url", &self.url),
                setting(
                    "ucbridge_push_token",
                    &format!("<{}", self.token_file.display()),
                ),
                setting("ucbridge_push_skip_master", MASTER_USER),
            ],
        }
    }

    /// Serve `engine`'s push route on the listener (once).
    pub fn serve(&mut self, engine: &VoicemailEngine) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let app = axum::Router::new().nest("/callbacks/imap", engine.imap_push_router());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
}

/// A minimal IMAP session as the user itself (a mail client, so Dovecot reports it).
struct UserImap {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    tag: u32,
}

impl UserImap {
    async fn login(port: u16, user: &str) -> Result<UserImap> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let (read, writer) = tcp.into_split();
        let mut imap = UserImap {
            reader: BufReader::new(read),
            writer,
            tag: 0,
        };
        imap.line().await?;
        imap.command(&format!("LOGIN \"{user}\" \"{USER_PASSWORD}\""))
            .await?;
        Ok(imap)
    }

    async fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .context("IMAP server silent for 10 s")??;
        if n == 0 {
            bail!("IMAP connection closed");
        }
        Ok(line)
    }

    /// Send one command; the untagged lines before its OK.
    async fn command(&mut self, command: &str) -> Result<Vec<String>> {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let mut untagged = Vec::new();
        // Bounded: a few lines per command here.
        for _ in 0..1000 {
            let line = self.line().await?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                if !rest.starts_with("OK") {
                    bail!("IMAP {command:?}: {}", rest.trim());
                }
                return Ok(untagged);
            }
            untagged.push(line);
        }
        bail!("IMAP {command:?}: no tagged answer")
    }

    /// Flip the first voicemail's \Seen flag.
    async fn flip_first(&mut self) -> Result<()> {
        self.command("SELECT Voicemail").await?;
        let flags = self.command("FETCH 1 (FLAGS)").await?;
        let seen = flags.iter().any(|l| l.contains("\\Seen"));
        let op = if seen {
            "-FLAGS.SILENT"
        } else {
            "+FLAGS.SILENT"
        };
        self.command(&format!("STORE 1 {op} (\\Seen)")).await?;
        Ok(())
    }

    async fn logout(mut self) {
        let _ = self.command("LOGOUT").await;
    }
}

fn cuc_read_count(lab: &RunningLab, alias: &str) -> Result<usize> {
    Ok(lab
        .cuc()
        .messages(alias, CucFolder::Inbox)
        .map_err(|e| anyhow::anyhow!(e))?
        .iter()
        .filter(|m| m.read)
        .count())
}

/// IMAP change → CUC latency (ms) over `aliases` (one sample each, started 200 ms apart,
/// so several debounces overlap as in real use): from the mail client's STORE to the
/// read state changed on CUC.
pub async fn imap_to_cuc_latencies(
    lab: &RunningLab,
    port: u16,
    aliases: &[String],
) -> Result<Vec<f64>> {
    let baseline: Vec<usize> = aliases
        .iter()
        .map(|a| cuc_read_count(lab, a))
        .collect::<Result<_>>()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<Instant>)>();
    for (i, alias) in aliases.iter().enumerate() {
        let (tx, alias) = (tx.clone(), alias.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200 * i as u64)).await;
            let flipped = async {
                let mut imap = UserImap::login(port, &alias).await?;
                let t0 = Instant::now();
                imap.flip_first().await?;
                imap.logout().await;
                Ok(t0)
            }
            .await;
            let _ = tx.send((i, flipped));
        });
    }
    drop(tx);
    let mut started: Vec<Option<Instant>> = vec![None; aliases.len()];
    let mut latencies: Vec<Option<f64>> = vec![None; aliases.len()];
    let deadline = Instant::now() + Duration::from_secs(120 + aliases.len() as u64);
    while latencies.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            bail!("an IMAP change did not reach CUC in time");
        }
        while let Ok((i, t0)) = rx.try_recv() {
            started[i] = Some(t0?);
        }
        for (i, alias) in aliases.iter().enumerate() {
            if let (Some(t0), None) = (started[i], latencies[i]) {
                if cuc_read_count(lab, alias)? != baseline[i] {
                    latencies[i] = Some(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(latencies.into_iter().flatten().collect())
}
