//! The PostgreSQL sink (`type: postgres`): samples upserted into a table,
//! created if missing with a TimescaleDB-friendly layout:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS komlog_samples (
//!     uri text NOT NULL, ts timestamptz NOT NULL, kind text NOT NULL,
//!     value double precision, text text, PRIMARY KEY (uri, ts))
//! ```
//!
//! **Owns:** the table and the write. A batch goes in with one binary `COPY … FROM
//! STDIN`, PostgreSQL's bulk path. When a row of it is there already (a resend after
//! a restart, or a sample overwritten in the store), the `COPY` fails whole on the
//! primary key and the batch is written again with one `INSERT … SELECT FROM
//! unnest(…) ON CONFLICT (uri, ts) DO UPDATE`, which leaves one row with the latest
//! value; the next [`UPSERTS_AFTER_A_CONFLICT`] batches then go straight to that
//! upsert. A datapoint fills `value`, a datasource `text`. Connection errors and
//! most server errors are retried (the connection is made again, and the table
//! checked again); data errors (SQLSTATE classes 22 and 23) refuse the batch for
//! good.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{BoxFuture, Sink, SinkError};
use crate::model::{Sample, Value};

/// How many batches after one whose `COPY` met a row already there are upserted
/// without trying `COPY` first: where samples are often overwritten, each batch
/// would otherwise be sent twice.
pub const UPSERTS_AFTER_A_CONFLICT: u32 = 64;

/// Writes batches to a PostgreSQL table.
pub struct PostgresSink {
    url: String,
    /// The table, quoted for SQL.
    table: String,
    client: Option<Client>,
    /// Batches still to upsert without trying `COPY`.
    upserts_left: u32,
}

/// One batch as columns, one row per (uri, ts).
struct Rows<'a> {
    uris: Vec<&'a str>,
    times: Vec<SystemTime>,
    kinds: Vec<&'static str>,
    values: Vec<Option<f64>>,
    texts: Vec<Option<&'a str>>,
}

impl PostgresSink {
    /// A sink writing `table` (`name` or `schema.name`) of the database at `url`.
    pub fn new(url: &str, table: &str) -> PostgresSink {
        let quoted = table
            .split('.')
            .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".");
        PostgresSink {
            url: url.to_owned(),
            table: quoted,
            client: None,
            upserts_left: 0,
        }
    }

    async fn client(&mut self) -> Result<&Client, SinkError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(|e| classify(&e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("postgres sink connection ended: {e}");
                }
            });
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} (uri text NOT NULL, ts timestamptz NOT NULL, \
                     kind text NOT NULL, value double precision, text text, PRIMARY KEY (uri, ts))",
                    self.table
                ))
                .await
                .map_err(|e| classify(&e))?;
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| SinkError::Retryable("not connected".into()))
    }

    async fn write(&mut self, batch: &[Sample]) -> Result<(), SinkError> {
        let rows = rows(batch);
        let table = self.table.clone();
        let copy_first = self.upserts_left == 0;
        self.upserts_left = self.upserts_left.saturating_sub(1);
        let client = self.client().await?;
        let mut result = Ok(());
        let mut conflict = false;
        if copy_first {
            result = copy(client, &table, &rows).await;
            conflict = result
                .as_ref()
                .err()
                .is_some_and(|e| e.code() == Some(&SqlState::UNIQUE_VIOLATION));
        }
        if !copy_first || conflict {
            result = upsert(client, &table, &rows).await;
        }
        if conflict {
            tracing::debug!(
                table = table.as_str(),
                "a row of the batch was in the table already: upserted it, and the next {UPSERTS_AFTER_A_CONFLICT} batches"
            );
            self.upserts_left = UPSERTS_AFTER_A_CONFLICT;
        }
        if let Err(e) = result {
            let err = classify(&e);
            if matches!(err, SinkError::Retryable(_)) {
                self.client = None;
            }
            return Err(err);
        }
        Ok(())
    }
}

/// `batch` as columns, one row per (uri, ts): the last of the batch wins, as in
/// the store.
fn rows(batch: &[Sample]) -> Rows<'_> {
    let mut last: HashMap<(&str, i64), usize> = HashMap::with_capacity(batch.len());
    for (i, s) in batch.iter().enumerate() {
        last.insert((s.uri.as_str(), s.ts), i);
    }
    let mut idx: Vec<usize> = last.into_values().collect();
    idx.sort_unstable();
    let n = idx.len();
    let mut rows = Rows {
        uris: Vec::with_capacity(n),
        times: Vec::with_capacity(n),
        kinds: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
        texts: Vec::with_capacity(n),
    };
    for i in idx {
        let s = &batch[i];
        rows.uris.push(s.uri.as_str());
        rows.times.push(system_time(s.ts));
        match &s.value {
            Value::Datapoint(v) => {
                rows.kinds.push("datapoint");
                rows.values.push(Some(*v));
                rows.texts.push(None);
            }
            Value::Datasource(t) => {
                rows.kinds.push("datasource");
                rows.values.push(None);
                rows.texts.push(Some(t.as_str()));
            }
        }
    }
    rows
}

/// Write `rows` into `table` with one binary `COPY`: all of them, or none.
async fn copy(client: &Client, table: &str, rows: &Rows<'_>) -> Result<(), tokio_postgres::Error> {
    let sink = client
        .copy_in(&format!(
            "COPY {table} (uri, ts, kind, value, text) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let types = [
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::FLOAT8,
        Type::TEXT,
    ];
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for i in 0..rows.uris.len() {
        let row: [&(dyn ToSql + Sync); 5] = [
            &rows.uris[i],
            &rows.times[i],
            &rows.kinds[i],
            &rows.values[i],
            &rows.texts[i],
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await.map(|_| ())
}

/// Write `rows` into `table`, a row already there (same uri and time) taking the
/// new kind and value.
async fn upsert(
    client: &Client,
    table: &str,
    rows: &Rows<'_>,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {table} (uri, ts, kind, value, text) \
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::float8[], $5::text[]) \
         ON CONFLICT (uri, ts) DO UPDATE SET kind = EXCLUDED.kind, value = EXCLUDED.value, text = EXCLUDED.text"
    );
    client
        .execute(
            &sql,
            &[
                &rows.uris,
                &rows.times,
                &rows.kinds,
                &rows.values,
                &rows.texts,
            ],
        )
        .await
        .map(|_| ())
}

/// µs since the Unix epoch as a [`SystemTime`].
fn system_time(ts: i64) -> SystemTime {
    let d = Duration::from_micros(ts.unsigned_abs());
    if ts >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// Data errors (SQLSTATE classes 22 and 23) are permanent; the rest retryable.
fn classify(e: &tokio_postgres::Error) -> SinkError {
    let text = match e.as_db_error() {
        Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
        None => format!("postgres: {e}"),
    };
    match e.code().map(|c| c.code()) {
        Some(code) if code.starts_with("22") || code.starts_with("23") => {
            SinkError::Permanent(text)
        }
        _ => SinkError::Retryable(text),
    }
}

/// The connection string without its password.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Sink for PostgresSink {
    fn check(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { self.client().await.map(|_| ()) })
    }

    fn send<'a>(&'a mut self, batch: &'a [Sample]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.write(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
    }
}
