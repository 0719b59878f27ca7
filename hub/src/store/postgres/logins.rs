//! [`SharedLogins`] in the PostgreSQL store: the `challenges` and `sessions`
//! tables the hubs of a cluster share.
//!
//! **Owns:** challenge issue, check and single use, timed by the database's
//! clock (`now()`), so hubs with skewed clocks agree; and the session records
//! keyed by their cookie token's SHA-256. Challenges older than an hour are
//! deleted whenever one is issued (a check of one of those says NotFound).

use std::time::Duration;

use komlog_protocol::Username;

use super::{PgStore, pg_err, username};
use crate::auth::ChallengeRefusal;
use crate::store::{SessionRecord, SharedLogins, StoreError};

impl SharedLogins for PgStore {
    fn issue_challenge(&self, hash: [u8; 32], agent_id: &str) -> Result<(), StoreError> {
        let agent_id = agent_id.to_owned();
        self.call(move |s| async move {
            let op = "issuing a login challenge";
            let c = s.client(op).await?;
            c.execute(
                "DELETE FROM challenges WHERE issued < now() - interval '1 hour'",
                &[],
            )
            .await
            .map_err(pg_err(op))?;
            c.execute(
                "INSERT INTO challenges (hash, agent_id) VALUES ($1, $2) \
                 ON CONFLICT (hash) DO UPDATE SET agent_id = EXCLUDED.agent_id, \
                 issued = now(), used = false",
                &[&&hash[..], &agent_id],
            )
            .await
            .map_err(pg_err(op))?;
            Ok(())
        })
    }

    fn check_challenge(
        &self,
        hash: [u8; 32],
        agent_id: &str,
        validity: Duration,
    ) -> Result<Result<(), ChallengeRefusal>, StoreError> {
        let agent_id = agent_id.to_owned();
        let validity_us = i64::try_from(validity.as_micros()).unwrap_or(i64::MAX);
        self.call(move |s| async move {
            let op = "checking a login challenge";
            let c = s.client(op).await?;
            let row = c
                .query_opt(
                    "SELECT agent_id, used, \
                     (extract(epoch FROM (now() - issued)) * 1000000)::bigint \
                     FROM challenges WHERE hash = $1",
                    &[&&hash[..]],
                )
                .await
                .map_err(pg_err(op))?;
            let Some(row) = row.filter(|r| r.get::<_, &str>(0) == agent_id) else {
                return Ok(Err(ChallengeRefusal::NotFound));
            };
            if row.get::<_, bool>(1) {
                return Ok(Err(ChallengeRefusal::Used));
            }
            if row.get::<_, i64>(2) > validity_us {
                return Ok(Err(ChallengeRefusal::Expired));
            }
            Ok(Ok(()))
        })
    }

    fn use_challenge(&self, hash: [u8; 32]) -> Result<bool, StoreError> {
        self.call(move |s| async move {
            let op = "using a login challenge";
            let c = s.client(op).await?;
            let n = c
                .execute(
                    "UPDATE challenges SET used = true WHERE hash = $1 AND NOT used",
                    &[&&hash[..]],
                )
                .await
                .map_err(pg_err(op))?;
            Ok(n == 1)
        })
    }

    fn add_session(
        &self,
        token_digest: [u8; 32],
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let r = record.clone();
        self.call(move |s| async move {
            let op = "recording a session";
            let c = s.client(op).await?;
            // Sessions are kept a day: a cookie opens a websocket at any hub
            // for that long (an agent whose cookie is refused logs in again).
            c.execute(
                "DELETE FROM sessions WHERE created < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(pg_err(op))?;
            c.execute(
                "INSERT INTO sessions (token_digest, sid, username, agent_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (token_digest) DO UPDATE SET sid = EXCLUDED.sid, \
                 username = EXCLUDED.username, agent_id = EXCLUDED.agent_id",
                &[&&token_digest[..], &r.sid, &r.user.as_str(), &r.agent_id],
            )
            .await
            .map_err(pg_err(op))?;
            Ok(())
        })
    }

    fn find_session(&self, token_digest: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.call(move |s| async move {
            let op = "looking up a session";
            let c = s.client(op).await?;
            let row = c
                .query_opt(
                    "SELECT sid, username, agent_id FROM sessions WHERE token_digest = $1 \
                     AND created > now() - interval '1 day'",
                    &[&&token_digest[..]],
                )
                .await
                .map_err(pg_err(op))?;
            row.map(|r| {
                Ok(SessionRecord {
                    sid: r.get(0),
                    user: username(op, r.get(1))?,
                    agent_id: r.get(2),
                })
            })
            .transpose()
        })
    }

    fn remove_sessions(
        &self,
        user: &Username,
        sid: Option<&str>,
        agent_id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let (user, sid, agent_id) = (
            user.as_str().to_owned(),
            sid.map(str::to_owned),
            agent_id.map(str::to_owned),
        );
        self.call(move |s| async move {
            let op = "removing sessions";
            let c = s.client(op).await?;
            let rows = c
                .query(
                    "DELETE FROM sessions WHERE username = $1 \
                     AND ($2::text IS NULL OR sid = $2) AND ($3::text IS NULL OR agent_id = $3) \
                     RETURNING sid",
                    &[&user, &sid, &agent_id],
                )
                .await
                .map_err(pg_err(op))?;
            let mut sids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            sids.sort();
            Ok(sids)
        })
    }
}
