//! The flags of `ucbridge-bench` (those `ucbridge bench` had, plus the MP3 scenario's).

use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Users seeded in the lab and listed.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Rows per listUser request; directory-sync: end users per SQL page of the refresh.
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Lab response-size cap; lower it to exercise page shrinking.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// What to measure (default: listing users).
    #[arg(long, value_enum, default_value_t = Scenario::List)]
    pub scenario: Scenario,
    /// api-load: concurrent connections of the load generator.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// voicemail: mailboxes synced (each with --messages messages).
    #[arg(long, default_value_t = 1000)]
    pub mailboxes: usize,
    /// voicemail: messages per mailbox (inbox + one sent + one deleted); mp3: recordings
    /// transcoded per format.
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// mp3: length of each recording, in seconds.
    #[arg(long, default_value_t = 60)]
    pub audio_seconds: u32,
    /// xmpp: concurrent IM sessions.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// directory-sync: `refresh` runs only the full snapshot refresh (a 200k first sync
    /// is slow); `all` also the syncs and the change latency.
    #[arg(long, value_enum, default_value_t = crate::directory_sync::Phases::All)]
    pub phases: crate::directory_sync::Phases,
    /// Database for the directory-sync, api-load and ldap-export scenarios (default: a
    /// temporary SQLite file).
    #[arg(long, env = "UCBRIDGE_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// listUser of every user of a lab in a child process, over HTTPS.
    List,
    /// Full snapshot refresh, first sync, no-op resyncs, CUCM change -> snapshot latency.
    DirectorySync,
    /// Load on the server's status endpoint while it refreshes and syncs the lab's users.
    ApiLoad,
    /// Voicemail sync: initial sync of many mailboxes into Dovecot, CUC -> IMAP latency.
    Voicemail,
    /// LDAP export of `--users` local users into a throwaway slapd.
    LdapExport,
    /// An LDAP directory source of `--users` entries: full refresh, change latency.
    LdapSource,
    /// User sync over two CUCM clusters (`--users / 2` each) and an LDAP source of
    /// `--users` entries: each refresh, first merged sync, no-op, full comparison.
    MergedSync,
    /// CUC recordings (G.711 µ-law 8 kHz, PCM16 16 kHz) transcoded to MP3.
    Mp3,
    /// Sign-in with CUCM credentials: cold and warm cache, CUCM requests of mail clients.
    Signin,
    /// XMPP: concurrent IM sessions against Prosody, memory per session, message latency.
    Xmpp,
}
