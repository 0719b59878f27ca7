//! The PostgreSQL sink (`type: postgres`): samples upserted into a table,
//! created if missing with a TimescaleDB-friendly layout:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS komlog_samples (
//!     uri text NOT NULL, ts timestamptz NOT NULL, kind text NOT NULL,
//!     value double precision, text text, PRIMARY KEY (uri, ts))
//! ```
//!
//! **Owns:** the table and the write: one `INSERT … SELECT FROM unnest(…) ON CONFLICT
//! (uri, ts) DO UPDATE` a batch, so a resend (or a sample overwritten in the store)
//! leaves one row with the latest value. A datapoint fills `value`, a datasource
//! `text`. Connection errors and most server errors are retried (the connection is
//! made again, and the table checked again); data errors (SQLSTATE classes 22 and 23)
//! refuse the batch for good.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

use super::{BoxFuture, Sink, SinkError};
use crate::model::{Sample, Value};

/// Writes batches to a PostgreSQL table.
pub struct PostgresSink {
    url: String,
    /// The table, quoted for SQL.
    table: String,
    client: Option<Client>,
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
        // One row per (uri, ts): the last of the batch wins, as in the store.
        let mut last: HashMap<(&str, i64), usize> = HashMap::with_capacity(batch.len());
        for (i, s) in batch.iter().enumerate() {
            last.insert((s.uri.as_str(), s.ts), i);
        }
        let mut idx: Vec<usize> = last.into_values().collect();
        idx.sort_unstable();
        let (mut uris, mut times, mut kinds, mut values, mut texts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in idx {
            let s = &batch[i];
            uris.push(s.uri.as_str());
            times.push(system_time(s.ts));
            match &s.value {
                Value::Datapoint(v) => {
                    kinds.push("datapoint");
                    values.push(Some(*v));
                    texts.push(None);
                }
                Value::Datasource(t) => {
                    kinds.push("datasource");
                    values.push(None);
                    texts.push(Some(t.as_str()));
                }
            }
        }
        let sql = format!(
            "INSERT INTO {} (uri, ts, kind, value, text) \
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::float8[], $5::text[]) \
             ON CONFLICT (uri, ts) DO UPDATE SET kind = EXCLUDED.kind, value = EXCLUDED.value, text = EXCLUDED.text",
            self.table
        );
        let client = self.client().await?;
        let result = client
            .execute(&sql, &[&uris, &times, &kinds, &values, &texts])
            .await;
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
