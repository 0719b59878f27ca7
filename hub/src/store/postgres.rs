//! The PostgreSQL store, for a cluster: several hub processes on one database.
//!
//! **Owns:** [`PgStore`], its connection pool and the small tokio runtime its
//! queries run on, the schema (the SQL migrations in `hub/migrations/`, run
//! with refinery at [`PgStore::connect`] under an advisory lock, so hubs
//! starting together migrate once), the monthly partitions of `samples`, and
//! [`SharedLogins`] (login challenges and sessions shared by the hubs).
//!
//! **Rules:** the same as [`RedbStore`](super::redb::RedbStore)'s, checked by
//! the same tests (`store/tests.rs` runs every rule test on both stores):
//! usernames are lowercased by [`Username`] and text keys sort bytewise
//! (`COLLATE "C"`); reads come in TimeUUID order; the same TimeUUID again is an
//! upsert; a write is all or nothing; a metric's kind is fixed by its first
//! write; [`HubStore::write_group`] is one transaction whose rules are checked
//! write by write before anything is written, so a refused write leaves the
//! others in, and returns after the commit.
//!
//! **Schema** (`hub/migrations/V1__initial.sql`): `users`, `agents`, `shares`,
//! `passwords`, `tokens`, `logins`, `metrics` (owner, uri, kind, supplies and
//! the per-metric count and first/last key the writes keep), and `samples`
//! (metric, t_us, k, content, value) partitioned by range of `t_us` (µs since
//! the Unix epoch, from the TimeUUID) into `samples_yYYYYmMM` tables made on
//! demand by the writer. `k` is the TimeUUID's sort key
//! ([`TimeUuid::sort_key`]), whose byte order is TimeUUID order, so the
//! primary key (metric, t_us, k) gives the upsert and both read orders.
//!
//! **Threads:** the trait's methods are synchronous; each submits its query to
//! the store's runtime (two worker threads) and waits on a std channel, so they
//! may be called from tokio's blocking pool or from plain threads (never from
//! an async task: that would block its worker).
//!
//! **Schema choice:** [`PgStore::connect`] takes the PostgreSQL schema as a
//! separate argument (`None`: the database's default `search_path`, normally
//! `public`); every pooled connection starts with `search_path` set to it.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use komlog_protocol::{Kind, MetricId, TimeUuid, Username};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::{
    AgentRecord, HubStore, MetricSummary, NewSample, Reduced, Share, StoreError, TokenRecord,
    UserRemoval, WriteOutcome,
};

mod logins;
mod samples;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connections kept open per store.
const POOL_SIZE: usize = 8;

/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a group commit waits for more writes ([`HubStore::group_linger`]):
/// a group costs PostgreSQL a transaction and four round trips whatever its
/// size, and a hub receiving a write every millisecond or two otherwise
/// commits them one by one.
const GROUP_LINGER: Duration = Duration::from_millis(1);

/// The PostgreSQL-backed [`HubStore`] and [`SharedLogins`].
pub struct PgStore {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
}

/// What the queries share: the pool, the target for messages, and the
/// partitions known to exist.
struct Shared {
    pool: Pool,
    /// The database as `postgres://user@host:port/db`, without a password.
    target: String,
    /// Months (year, month) whose `samples` partition exists.
    partitions: Mutex<HashSet<(i64, u32)>>,
}

/// A query's error as a [`StoreError::Postgres`].
fn pg_err(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Postgres {
        op,
        reason: describe(&e),
    }
}

/// The server's message (with its detail) for a database error, else the
/// driver's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(" ({detail})"));
            }
            s
        }
        None => {
            // The driver's text is short ("error connecting to server"): add
            // its causes ("Connection refused (os error 111)").
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            s
        }
    }
}

/// A value the database holds that this hub cannot read.
fn corrupt(op: &'static str, reason: String) -> StoreError {
    StoreError::Postgres {
        op,
        reason: format!("the database holds {reason}"),
    }
}

fn username(op: &'static str, name: &str) -> Result<Username, StoreError> {
    Username::parse(name).map_err(|e| corrupt(op, e.to_string()))
}

fn kind_of(op: &'static str, letter: &str) -> Result<Kind, StoreError> {
    Kind::from_letter(letter).ok_or_else(|| corrupt(op, format!("the unknown kind {letter:?}")))
}

fn digest_of(op: &'static str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| corrupt(op, "a digest that is not 32 bytes".into()))
}

fn now_us() -> i64 {
    komlog_protocol::timeuuid::now_micros()
}

/// `postgres://user@host:port/db` for messages: never the password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// A schema name this store accepts: a plain lowercase SQL identifier.
fn check_schema(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Postgres {
            op: "choosing the schema",
            reason: format!(
                "{name:?} is not a plain schema name (lowercase letters, digits and '_', \
                 not starting with a digit, at most 63)"
            ),
        })
    }
}

impl Shared {
    /// A pooled connection; a connection failure names the database and what
    /// to check.
    async fn client(&self, op: &'static str) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            let cause = match &e {
                deadpool_postgres::PoolError::Backend(e) => describe(e),
                other => other.to_string(),
            };
            StoreError::Postgres {
                op,
                reason: format!(
                    "cannot connect to {}: {cause}; check that PostgreSQL runs there and \
                     accepts this user and database (the url is \
                     postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)",
                    self.target
                ),
            }
        })
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`
    /// or libpq's `key=value` form), in `schema` when given (created when
    /// missing; `None` uses the database's default `search_path`), and bring
    /// the schema up to date with the migrations. Safe for several hubs
    /// starting at once.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Postgres {
                    op: "reading the database url",
                    reason: format!(
                        "{e} (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or \
                     host=… user=… dbname=…)"
                    ),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if let Some(schema) = schema {
            check_schema(schema)?;
            let options = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            config.options(&options);
        }
        let target = describe_target(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("komlog-hub-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres {
                op: "starting the store's runtime",
                reason: e.to_string(),
            })?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Postgres {
                op: "making the connection pool",
                reason: e.to_string(),
            })?;
        let store = PgStore {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            shared: Arc::new(Shared {
                pool,
                target,
                partitions: Mutex::new(HashSet::new()),
            }),
        };
        let schema = schema.map(str::to_owned);
        store.call(move |s| async move { s.prepare(schema).await })?;
        Ok(store)
    }

    /// The database, as `postgres://user@host:port/db` (no password).
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// Run `f`'s future on the store's runtime and wait for its result.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(Arc::clone(&self.shared));
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StoreError::Postgres {
                op: "running a query",
                reason: "the query's task ended without an answer (the store is shutting down?)"
                    .into(),
            })
        })
    }

    /// Create `name` unless it exists (copying a store: `komlog-hub migrate`).
    pub fn import_user(&self, name: &Username) -> Result<(), StoreError> {
        match self.add_user(name) {
            Ok(()) | Err(StoreError::UserExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Register an agent with its id as it is (copying a store); nothing when
    /// the same record is there, an error when the key or id is another's.
    pub fn import_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let a = agent.clone();
        self.call(move |s| async move {
            let op = "importing an agent";
            let c = s.client(op).await?;
            c.execute(
                "INSERT INTO agents (owner, public_line, id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&a.owner.as_str(), &a.public_line, &a.id],
            )
            .await
            .map_err(pg_err(op))?;
            let row = c
                .query_opt(
                    "SELECT owner, id FROM agents WHERE public_line = $1",
                    &[&a.public_line],
                )
                .await
                .map_err(pg_err(op))?;
            match row {
                Some(r) if r.get::<_, &str>(0) == a.owner.as_str() && r.get::<_, &str>(1) == a.id => {
                    Ok(())
                }
                _ => Err(StoreError::Postgres {
                    op,
                    reason: format!(
                        "agent {} of {}: its key or id is registered otherwise already",
                        a.id, a.owner
                    ),
                }),
            }
        })
    }

    /// Keep a token with its digest and creation time as they are (copying a
    /// store); an error when the digest or name is another token's.
    pub fn import_token(&self, digest: [u8; 32], token: &TokenRecord) -> Result<(), StoreError> {
        let t = token.clone();
        self.call(move |s| async move {
            let op = "importing a token";
            let c = s.client(op).await?;
            c.execute(
                "INSERT INTO tokens (digest, owner, name, created_us) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&&digest[..], &t.owner.as_str(), &t.name, &t.created_us],
            )
            .await
            .map_err(pg_err(op))?;
            let row = c
                .query_opt(
                    "SELECT owner, name FROM tokens WHERE digest = $1",
                    &[&&digest[..]],
                )
                .await
                .map_err(pg_err(op))?;
            match row {
                Some(r)
                    if r.get::<_, &str>(0) == t.owner.as_str() && r.get::<_, &str>(1) == t.name =>
                {
                    Ok(())
                }
                _ => Err(StoreError::Postgres {
                    op,
                    reason: format!(
                        "token {:?} of {}: another token holds its digest or name",
                        t.name, t.owner
                    ),
                }),
            }
        })
    }

    /// Create a metric of `kind` unless it exists (copying a store, for a
    /// metric without samples); an error when it exists with the other kind.
    pub fn import_metric(&self, id: &MetricId, kind: Kind) -> Result<(), StoreError> {
        let (owner, uri) = (id.owner.as_str().to_owned(), id.local.clone());
        self.call(move |s| async move {
            let op = "importing a metric";
            let c = s.client(op).await?;
            c.execute(
                "INSERT INTO metrics (owner, uri, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&owner, &uri, &kind.letter()],
            )
            .await
            .map_err(pg_err(op))?;
            Ok(())
        })?;
        match self.metric_kind(id)? {
            Some(k) if k == kind => Ok(()),
            Some(existing) => Err(StoreError::KindMismatch {
                uri: id.local.clone(),
                existing,
                written: kind,
            }),
            None => Err(StoreError::NoSuchUser(id.owner.clone())),
        }
    }

    /// Run a statement that needs only its parameters, returning rows affected.
    fn execute(
        &self,
        op: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<u64, StoreError> {
        self.call(move |s| async move {
            let c = s.client(op).await?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            c.execute(sql, &refs).await.map_err(pg_err(op))
        })
    }

    /// Run a query that needs only its parameters.
    fn query(
        &self,
        op: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Send + Sync>>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.call(move |s| async move {
            let c = s.client(op).await?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            // Prepared once per pooled connection: PostgreSQL parses and plans
            // each statement once, not at every call.
            let statement = c.prepare_cached(sql).await.map_err(pg_err(op))?;
            c.query(&statement, &refs).await.map_err(pg_err(op))
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio refuses inside an async context
        // (a hub stopping drops its store there): let it end in the background.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Shared {
    /// Create the schema when asked, run the migrations under an advisory lock,
    /// and learn the existing partitions.
    async fn prepare(self: Arc<Self>, schema: Option<String>) -> Result<(), StoreError> {
        let op = "preparing the schema";
        let mut c = self.client(op).await?;
        if let Some(schema) = &schema {
            // Another hub may create it at the same moment: then it exists.
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            if c.batch_execute(&sql).await.is_err() {
                c.batch_execute(&sql).await.map_err(pg_err(op))?;
            }
        }
        c.batch_execute(
            "SELECT pg_advisory_lock(hashtext('komlog-hub migrations ' || coalesce(current_schema(), '')))",
        )
        .await
        .map_err(pg_err(op))?;
        let report = embedded::migrations::runner()
            .run_async(&mut **c)
            .await
            .map_err(|e| StoreError::Postgres {
                op: "migrating the schema",
                reason: e.to_string(),
            });
        let unlocked = c
            .batch_execute("SELECT pg_advisory_unlock_all()")
            .await
            .map_err(pg_err(op));
        report?;
        unlocked?;
        let rows = c
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'samples'::regclass",
                &[],
            )
            .await
            .map_err(pg_err(op))?;
        let mut known = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            if let Some(month) = samples::parse_partition_name(row.get(0)) {
                known.insert(month);
            }
        }
        Ok(())
    }
}

/// Refuse with [`StoreError::NoSuchUser`] unless `name` is a user; locks the
/// user's row against removal until the transaction ends.
async fn require_user(
    c: &tokio_postgres::Transaction<'_>,
    op: &'static str,
    name: &Username,
) -> Result<(), StoreError> {
    let found = c
        .query_opt(
            "SELECT 1 FROM users WHERE name = $1 FOR KEY SHARE",
            &[&name.as_str()],
        )
        .await
        .map_err(pg_err(op))?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchUser(name.clone())),
    }
}

fn p<T: ToSql + Send + Sync + 'static>(v: T) -> Box<dyn ToSql + Send + Sync> {
    Box::new(v)
}

impl HubStore for PgStore {
    fn group_linger(&self) -> Duration {
        GROUP_LINGER
    }

    fn add_user(&self, name: &Username) -> Result<(), StoreError> {
        let n = self.execute(
            "adding a user",
            "INSERT INTO users (name, created_us) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            vec![p(name.as_str().to_owned()), p(now_us())],
        )?;
        if n == 0 {
            return Err(StoreError::UserExists(name.clone()));
        }
        Ok(())
    }

    fn user_exists(&self, name: &Username) -> Result<bool, StoreError> {
        let rows = self.query(
            "reading users",
            "SELECT 1 FROM users WHERE name = $1",
            vec![p(name.as_str().to_owned())],
        )?;
        Ok(!rows.is_empty())
    }

    fn users(&self) -> Result<Vec<Username>, StoreError> {
        let op = "listing users";
        let rows = self.query(op, "SELECT name FROM users ORDER BY name", vec![])?;
        rows.iter().map(|r| username(op, r.get(0))).collect()
    }

    fn add_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError> {
        let record = AgentRecord {
            id: super::redb::random_id(),
            owner: owner.clone(),
            public_line: public_line.to_owned(),
        };
        let r = record.clone();
        self.call(move |s| async move {
            let op = "registering an agent";
            let mut c = s.client(op).await?;
            let txn = c.transaction().await.map_err(pg_err(op))?;
            require_user(&txn, op, &r.owner).await?;
            let n = txn
                .execute(
                    "INSERT INTO agents (owner, public_line, id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&r.owner.as_str(), &r.public_line, &r.id],
                )
                .await
                .map_err(pg_err(op))?;
            if n == 0 {
                let holder = txn
                    .query_opt(
                        "SELECT owner, id FROM agents WHERE public_line = $1",
                        &[&r.public_line],
                    )
                    .await
                    .map_err(pg_err(op))?;
                return Err(match holder {
                    Some(row) => StoreError::KeyRegistered {
                        owner: username(op, row.get(0))?,
                        id: row.get(1),
                    },
                    None => StoreError::Postgres {
                        op,
                        reason: "the new agent id is taken; try again".into(),
                    },
                });
            }
            txn.commit().await.map_err(pg_err(op))
        })?;
        Ok(record)
    }

    fn find_agent(
        &self,
        owner: &Username,
        public_line: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let rows = self.query(
            "reading agents",
            "SELECT id FROM agents WHERE owner = $1 AND public_line = $2",
            vec![p(owner.as_str().to_owned()), p(public_line.to_owned())],
        )?;
        Ok(rows.first().map(|r| AgentRecord {
            id: r.get(0),
            owner: owner.clone(),
            public_line: public_line.to_owned(),
        }))
    }

    fn agents_of(&self, owner: &Username) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = self.query(
            "listing agents",
            "SELECT public_line, id FROM agents WHERE owner = $1 ORDER BY public_line",
            vec![p(owner.as_str().to_owned())],
        )?;
        Ok(rows
            .iter()
            .map(|r| AgentRecord {
                id: r.get(1),
                owner: owner.clone(),
                public_line: r.get(0),
            })
            .collect())
    }

    fn add_share(&self, share: &Share) -> Result<(), StoreError> {
        let sh = share.clone();
        self.call(move |s| async move {
            let op = "adding a share";
            let mut c = s.client(op).await?;
            let txn = c.transaction().await.map_err(pg_err(op))?;
            require_user(&txn, op, &sh.owner).await?;
            require_user(&txn, op, &sh.with).await?;
            txn.execute(
                "INSERT INTO shares (owner, prefix, with_user, granted_us) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (owner, prefix, with_user) DO UPDATE SET granted_us = EXCLUDED.granted_us",
                &[&sh.owner.as_str(), &sh.prefix, &sh.with.as_str(), &now_us()],
            )
            .await
            .map_err(pg_err(op))?;
            txn.commit().await.map_err(pg_err(op))
        })
    }

    fn shares_of(&self, owner: &Username) -> Result<Vec<Share>, StoreError> {
        let op = "reading shares";
        let rows = self.query(
            op,
            "SELECT prefix, with_user FROM shares WHERE owner = $1 ORDER BY prefix, with_user",
            vec![p(owner.as_str().to_owned())],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Share {
                    owner: owner.clone(),
                    prefix: r.get(0),
                    with: username(op, r.get(1))?,
                })
            })
            .collect()
    }

    fn all_shares(&self) -> Result<Vec<Share>, StoreError> {
        let op = "reading shares";
        let rows = self.query(
            op,
            "SELECT owner, prefix, with_user FROM shares ORDER BY owner, prefix, with_user",
            vec![],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Share {
                    owner: username(op, r.get(0))?,
                    prefix: r.get(1),
                    with: username(op, r.get(2))?,
                })
            })
            .collect()
    }

    fn remove_share(&self, share: &Share) -> Result<(), StoreError> {
        let n = self.execute(
            "removing a share",
            "DELETE FROM shares WHERE owner = $1 AND prefix = $2 AND with_user = $3",
            vec![
                p(share.owner.as_str().to_owned()),
                p(share.prefix.clone()),
                p(share.with.as_str().to_owned()),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchShare(share.clone()));
        }
        Ok(())
    }

    fn remove_agent(&self, owner: &Username, public_line: &str) -> Result<AgentRecord, StoreError> {
        let (o, line) = (owner.clone(), public_line.to_owned());
        let id = self.call(move |s| async move {
            let op = "removing an agent";
            let mut c = s.client(op).await?;
            let txn = c.transaction().await.map_err(pg_err(op))?;
            require_user(&txn, op, &o).await?;
            let row = txn
                .query_opt(
                    "DELETE FROM agents WHERE owner = $1 AND public_line = $2 RETURNING id",
                    &[&o.as_str(), &line],
                )
                .await
                .map_err(pg_err(op))?;
            let Some(row) = row else {
                return Err(StoreError::NoSuchAgent {
                    owner: o,
                    key: line,
                });
            };
            txn.commit().await.map_err(pg_err(op))?;
            Ok(row.get::<_, String>(0))
        })?;
        Ok(AgentRecord {
            id,
            owner: owner.clone(),
            public_line: public_line.to_owned(),
        })
    }

    fn remove_user(&self, name: &Username) -> Result<UserRemoval, StoreError> {
        let who = name.clone();
        self.call(move |s| async move {
            let op = "removing a user";
            let me = who.as_str();
            let mut c = s.client(op).await?;
            let txn = c.transaction().await.map_err(pg_err(op))?;
            let gone = txn
                .execute("DELETE FROM users WHERE name = $1", &[&me])
                .await
                .map_err(pg_err(op))?;
            if gone == 0 {
                return Err(StoreError::NoSuchUser(who));
            }
            let mut removed = UserRemoval::default();
            let agent_ids: Vec<String> = txn
                .query("DELETE FROM agents WHERE owner = $1 RETURNING id", &[&me])
                .await
                .map_err(pg_err(op))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            removed.agents = agent_ids.len();
            txn.execute("DELETE FROM passwords WHERE name = $1", &[&me])
                .await
                .map_err(pg_err(op))?;
            txn.execute("DELETE FROM tokens WHERE owner = $1", &[&me])
                .await
                .map_err(pg_err(op))?;
            txn.execute("DELETE FROM logins WHERE agent_id = ANY($1)", &[&agent_ids])
                .await
                .map_err(pg_err(op))?;
            removed.shares_given = txn
                .execute("DELETE FROM shares WHERE owner = $1", &[&me])
                .await
                .map_err(pg_err(op))? as usize;
            removed.shares_received = txn
                .execute("DELETE FROM shares WHERE with_user = $1", &[&me])
                .await
                .map_err(pg_err(op))? as usize;
            let ids: Vec<i64> = txn
                .query("DELETE FROM metrics WHERE owner = $1 RETURNING id", &[&me])
                .await
                .map_err(pg_err(op))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            removed.metrics = ids.len();
            removed.samples = txn
                .execute("DELETE FROM samples WHERE metric = ANY($1)", &[&ids])
                .await
                .map_err(pg_err(op))?;
            txn.commit().await.map_err(pg_err(op))?;
            Ok(removed)
        })
    }

    fn metric_kind(&self, id: &MetricId) -> Result<Option<Kind>, StoreError> {
        let op = "reading a metric";
        let rows = self.query(
            op,
            "SELECT kind FROM metrics WHERE owner = $1 AND uri = $2",
            vec![p(id.owner.as_str().to_owned()), p(id.local.clone())],
        )?;
        rows.first().map(|r| kind_of(op, r.get(0))).transpose()
    }

    fn metric_kinds(&self, ids: &[MetricId]) -> Result<Vec<Option<Kind>>, StoreError> {
        let op = "reading metrics";
        let owners: Vec<String> = ids.iter().map(|id| id.owner.as_str().to_owned()).collect();
        let uris: Vec<String> = ids.iter().map(|id| id.local.clone()).collect();
        // A scalar subquery per uri: an index lookup each, in the given order.
        let rows = self.query(
            op,
            "SELECT (SELECT kind FROM metrics m WHERE m.owner = w.o AND m.uri = w.u) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(o, u, i) ORDER BY w.i",
            vec![p(owners), p(uris)],
        )?;
        rows.iter()
            .map(|r| {
                r.get::<_, Option<&str>>(0)
                    .map(|k| kind_of(op, k))
                    .transpose()
            })
            .collect()
    }

    fn metrics_of(&self, owner: &Username) -> Result<Vec<(String, Kind)>, StoreError> {
        let op = "listing metrics";
        let rows = self.query(
            op,
            "SELECT uri, kind FROM metrics WHERE owner = $1 ORDER BY uri",
            vec![p(owner.as_str().to_owned())],
        )?;
        rows.iter()
            .map(|r| Ok((r.get(0), kind_of(op, r.get(1))?)))
            .collect()
    }

    fn write(&self, owner: &Username, samples: &[NewSample]) -> Result<WriteOutcome, StoreError> {
        let writes = [(owner.clone(), samples.to_vec())];
        self.write_group(&writes)?
            .pop()
            .unwrap_or_else(|| Ok(WriteOutcome::default()))
    }

    fn write_group(
        &self,
        writes: &[(Username, Vec<NewSample>)],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        let writes = writes.to_vec();
        self.call(move |s| async move { samples::write_group(&s, writes).await })
    }

    fn set_supplies(&self, id: &MetricId, supplies: &[String]) -> Result<(), StoreError> {
        self.execute(
            "writing supplies",
            "UPDATE metrics SET supplies = $3 WHERE owner = $1 AND uri = $2",
            vec![
                p(id.owner.as_str().to_owned()),
                p(id.local.clone()),
                p(supplies.to_vec()),
            ],
        )?;
        Ok(())
    }

    fn supplies(&self, id: &MetricId) -> Result<Option<Vec<String>>, StoreError> {
        let rows = self.query(
            "reading supplies",
            "SELECT supplies FROM metrics WHERE owner = $1 AND uri = $2",
            vec![p(id.owner.as_str().to_owned()), p(id.local.clone())],
        )?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    fn read_oldest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.read_rows(id, start, end, limit, false)
    }

    fn summaries_of(&self, owner: &Username) -> Result<Vec<MetricSummary>, StoreError> {
        let op = "summarising metrics";
        let rows = self.query(
            op,
            "SELECT uri, kind, count, first_k, last_k FROM metrics WHERE owner = $1 ORDER BY uri",
            vec![p(owner.as_str().to_owned())],
        )?;
        rows.iter()
            .map(|r| {
                let key = |i: usize| -> Result<Option<TimeUuid>, StoreError> {
                    r.get::<_, Option<&[u8]>>(i)
                        .map(|k| samples::time_of(op, k))
                        .transpose()
                };
                Ok(MetricSummary {
                    uri: r.get(0),
                    kind: kind_of(op, r.get(1))?,
                    count: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                    first: key(3)?,
                    last: key(4)?,
                })
            })
            .collect()
    }

    fn reduce(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        columns: u32,
    ) -> Result<Reduced, StoreError> {
        let id = id.clone();
        self.call(move |s| async move { samples::reduce(&s, id, start, end, columns).await })
    }

    fn set_password(&self, user: &Username, phc: Option<&str>) -> Result<(), StoreError> {
        let (u, phc) = (user.clone(), phc.map(str::to_owned));
        self.call(move |s| async move {
            let op = "setting a password";
            let mut c = s.client(op).await?;
            let txn = c.transaction().await.map_err(pg_err(op))?;
            require_user(&txn, op, &u).await?;
            match phc {
                Some(phc) => txn
                    .execute(
                        "INSERT INTO passwords (name, phc) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET phc = EXCLUDED.phc",
                        &[&u.as_str(), &phc],
                    )
                    .await
                    .map_err(pg_err(op))?,
                None => txn
                    .execute("DELETE FROM passwords WHERE name = $1", &[&u.as_str()])
                    .await
                    .map_err(pg_err(op))?,
            };
            txn.commit().await.map_err(pg_err(op))
        })
    }

    fn password(&self, user: &Username) -> Result<Option<String>, StoreError> {
        let rows = self.query(
            "reading a password",
            "SELECT phc FROM passwords WHERE name = $1",
            vec![p(user.as_str().to_owned())],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn add_token(
        &self,
        owner: &Username,
        name: &str,
        digest: [u8; 32],
    ) -> Result<TokenRecord, StoreError> {
        let record = TokenRecord {
            owner: owner.clone(),
            name: name.to_owned(),
            created_us: now_us(),
        };
        let t = record.clone();
        self.call(move |s| async move {
            let op = "adding a token";
            let exists = || StoreError::TokenExists {
                owner: t.owner.clone(),
                name: t.name.clone(),
            };
            let mut c = s.client(op).await?;
            let txn = c.transaction().await.map_err(pg_err(op))?;
            require_user(&txn, op, &t.owner).await?;
            let taken = txn
                .query_opt(
                    "SELECT 1 FROM tokens WHERE owner = $1 AND name = $2",
                    &[&t.owner.as_str(), &t.name],
                )
                .await
                .map_err(pg_err(op))?;
            if taken.is_some() {
                return Err(exists());
            }
            let inserted = txn
                .execute(
                    "INSERT INTO tokens (digest, owner, name, created_us) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (digest) DO UPDATE SET owner = EXCLUDED.owner, name = EXCLUDED.name, \
                     created_us = EXCLUDED.created_us",
                    &[&&digest[..], &t.owner.as_str(), &t.name, &t.created_us],
                )
                .await;
            match inserted {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(exists()),
                other => other.map_err(pg_err(op))?,
            };
            txn.commit().await.map_err(pg_err(op))
        })?;
        Ok(record)
    }

    fn find_token(&self, digest: [u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let op = "reading tokens";
        let rows = self.query(
            op,
            "SELECT owner, name, created_us FROM tokens WHERE digest = $1",
            vec![p(digest.to_vec())],
        )?;
        rows.first()
            .map(|r| {
                Ok(TokenRecord {
                    owner: username(op, r.get(0))?,
                    name: r.get(1),
                    created_us: r.get(2),
                })
            })
            .transpose()
    }

    fn tokens_of(&self, owner: &Username) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self
            .token_digests_of(owner)?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    fn token_digests_of(
        &self,
        owner: &Username,
    ) -> Result<Vec<([u8; 32], TokenRecord)>, StoreError> {
        let op = "listing tokens";
        let rows = self.query(
            op,
            "SELECT digest, name, created_us FROM tokens WHERE owner = $1 ORDER BY name",
            vec![p(owner.as_str().to_owned())],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    digest_of(op, r.get(0))?,
                    TokenRecord {
                        owner: owner.clone(),
                        name: r.get(1),
                        created_us: r.get(2),
                    },
                ))
            })
            .collect()
    }

    fn remove_token(&self, owner: &Username, name: &str) -> Result<bool, StoreError> {
        let n = self.execute(
            "removing a token",
            "DELETE FROM tokens WHERE owner = $1 AND name = $2",
            vec![p(owner.as_str().to_owned()), p(name.to_owned())],
        )?;
        Ok(n > 0)
    }

    fn note_login(&self, agent_id: &str, at_us: i64) -> Result<(), StoreError> {
        self.execute(
            "recording a login",
            "INSERT INTO logins (agent_id, at_us) VALUES ($1, $2) \
             ON CONFLICT (agent_id) DO UPDATE SET at_us = EXCLUDED.at_us",
            vec![p(agent_id.to_owned()), p(at_us.max(0))],
        )?;
        Ok(())
    }

    fn last_logins(&self, owner: &Username) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = self.query(
            "reading logins",
            "SELECT a.id, l.at_us FROM agents a JOIN logins l ON l.agent_id = a.id WHERE a.owner = $1",
            vec![p(owner.as_str().to_owned())],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn read_newest(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        self.read_rows(id, start, end, limit, true)
    }
}

impl PgStore {
    fn read_rows(
        &self,
        id: &MetricId,
        start: TimeUuid,
        end: TimeUuid,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(TimeUuid, String)>, StoreError> {
        if start > end || limit == 0 {
            return Ok(Vec::new());
        }
        let id = id.clone();
        self.call(move |s| async move {
            samples::read_rows(&s, id, start, end, limit, newest_first).await
        })
    }
}

/// Test support: a fresh schema per test in the local PostgreSQL, dropped
/// after it, and the skip rule of the other PostgreSQL tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The test database (the sink tests' too).
    pub(crate) const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// True when something listens at 127.0.0.1:5432; otherwise the test is
    /// skipped, or fails with `KOMLOGD_TESTS_NO_SKIP` set (as CI sets it).
    pub(crate) fn available() -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
        if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok() {
            return true;
        }
        assert!(
            std::env::var_os("KOMLOGD_TESTS_NO_SKIP").is_none(),
            "cannot run here, and KOMLOGD_TESTS_NO_SKIP is set: no PostgreSQL at 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: no PostgreSQL at 127.0.0.1:5432");
        false
    }

    /// A schema `hubtest_<pid>_<n>`, dropped with everything in it on drop.
    pub(crate) struct TestSchema {
        pub(crate) name: String,
    }

    impl TestSchema {
        pub(crate) fn new() -> TestSchema {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("hubtest_{}_{n}", std::process::id());
            let schema = TestSchema { name };
            schema.sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.name));
            schema
        }

        /// A store on this schema.
        pub(crate) fn connect(&self) -> super::PgStore {
            super::PgStore::connect(URL, Some(&self.name)).expect("connect to the test database")
        }

        fn sql(&self, sql: &str) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test database");
                tokio::spawn(conn);
                client.batch_execute(sql).await.expect(sql);
            });
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            self.sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}
