//! `ucbridge axl …`: talk to any CUCM (or the lab) over AXL. Lists are written page by
//! page as they arrive (see [`crate::output::ListWriter`]).

use anyhow::Result;
use clap::Subcommand;
use ucbridge_axl::{
    AxlClient, Key, ListOptions, PhoneSearch, PhoneTag, SqlQuery, UserSearch, UserTag,
};

use crate::output::{self, outln, ListWriter};

#[derive(Subcommand)]
pub enum AxlCommand {
    /// The CUCM release (getCCMVersion) and the AXL schema in use.
    Version,
    /// End users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Phones.
    Phones {
        #[command(subcommand)]
        command: PhonesCommand,
    },
    /// Run a read-only SQL query (executeSQLQuery).
    Sql {
        /// The SELECT statement (Informix SQL; page with SELECT SKIP n FIRST m).
        query: String,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List end users (listUser, paged).
    List {
        /// userid pattern, `%` is the wildcard.
        #[arg(long)]
        userid: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        department: Option<String>,
        /// Fields to return, comma-separated AXL names (default: a useful set).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Rows per AXL request.
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// Show one end user (getUser).
    Get { userid: String },
}

#[derive(Subcommand)]
pub enum PhonesCommand {
    /// List phones (listPhone, paged).
    List {
        /// Device name pattern, `%` is the wildcard.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        device_pool: Option<String>,
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// Show one phone (getPhone).
    Get { name: String },
}

pub const DEFAULT_USER_TAGS: &[UserTag] = &[
    UserTag::Userid,
    UserTag::FirstName,
    UserTag::LastName,
    UserTag::Mailid,
    UserTag::Department,
    UserTag::TelephoneNumber,
    UserTag::PrimaryExtension,
];

/// Every user matching `search`, written page by page; how many.
pub async fn list_users(
    client: &AxlClient,
    search: &UserSearch,
    tags: &[UserTag],
    page_size: u32,
    json: bool,
) -> Result<u64> {
    let progress = output::counter("users");
    let mut list = ListWriter::stdout(json, output::USER_HEADER);
    client
        .for_each_user_page(
            search,
            tags,
            ListOptions {
                page_size,
                ..ListOptions::default()
            },
            async |page| {
                progress.inc(page.len() as u64);
                for user in &page {
                    list.push(user, output::user_row)?;
                }
                list.flush()
            },
        )
        .await?;
    progress.finish_and_clear();
    list.finish()
}

pub async fn run(client: &AxlClient, command: AxlCommand, json: bool) -> Result<()> {
    match command {
        AxlCommand::Version => {
            let release = client.get_ccm_version().await?;
            if json {
                output::json(&serde_json::json!({
                    "release": release,
                    "schema": client.schema_version().to_string(),
                }))
            } else {
                outln!("CUCM release: {release}")?;
                outln!("AXL schema:   {}", client.schema_version())
            }
        }
        AxlCommand::Users { command } => match command {
            UsersCommand::List {
                userid,
                last_name,
                first_name,
                department,
                tags,
                page_size,
            } => {
                let tags: Vec<UserTag> = if tags.is_empty() {
                    DEFAULT_USER_TAGS.to_vec()
                } else {
                    tags.iter().map(|t| t.parse()).collect::<Result<_, _>>()?
                };
                let search = UserSearch {
                    first_name,
                    last_name,
                    userid,
                    department,
                };
                list_users(client, &search, &tags, page_size, json).await?;
                Ok(())
            }
            UsersCommand::Get { userid } => {
                let user = client.get_user(Key::Name(&userid)).await?;
                output::user_detail(&user, json)
            }
        },
        AxlCommand::Phones { command } => match command {
            PhonesCommand::List {
                name,
                device_pool,
                page_size,
            } => {
                let search = PhoneSearch {
                    name,
                    device_pool,
                    ..PhoneSearch::default()
                };
                let tags = [
                    PhoneTag::Name,
                    PhoneTag::Description,
                    PhoneTag::Product,
                    PhoneTag::Protocol,
                    PhoneTag::DevicePoolName,
                    PhoneTag::OwnerUserName,
                ];
                let progress = output::counter("phones");
                let mut list = ListWriter::stdout(json, output::PHONE_HEADER);
                client
                    .for_each_phone_page(
                        &search,
                        &tags,
                        ListOptions {
                            page_size,
                            ..ListOptions::default()
                        },
                        async |page| {
                            progress.inc(page.len() as u64);
                            for phone in &page {
                                list.push(phone, output::phone_row)?;
                            }
                            list.flush()
                        },
                    )
                    .await?;
                progress.finish_and_clear();
                list.finish()?;
                Ok(())
            }
            PhonesCommand::Get { name } => {
                let phone = client.get_phone(Key::Name(&name)).await?;
                output::phone_detail(&phone, json)
            }
        },
        AxlCommand::Sql { query } => {
            let rows = client.execute_sql_query(SqlQuery::raw(query)).await?;
            output::sql_rows(&rows, json)
        }
    }
}
