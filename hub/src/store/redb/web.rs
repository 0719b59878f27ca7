//! The web side's records in the embedded store: users' web passwords, API
//! tokens and agents' last logins.
//!
//! | table | key | value |
//! |---|---|---|
//! | `passwords` | username | PHC string (argon2id) |
//! | `tokens` | SHA-256 of the token | (owner, name, creation time µs) |
//! | `logins` | agent id | last login, µs |
//!
//! The tables were added after format version 1 and are created when missing
//! at open, so a store written by an older hub opens unchanged.

use std::collections::BTreeMap;

use komlog_protocol::Username;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{AGENTS, RedbStore, now_us};
use crate::store::{StoreError, TokenRecord};

const PASSWORDS: TableDefinition<&str, &str> = TableDefinition::new("passwords");
const TOKENS: TableDefinition<[u8; 32], (&str, &str, u64)> = TableDefinition::new("tokens");
const LOGINS: TableDefinition<&str, u64> = TableDefinition::new("logins");

impl RedbStore {
    /// Create the web tables when missing.
    pub(super) fn web_init(&self) -> Result<(), StoreError> {
        let err = self.err("creating the web tables");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.open_table(PASSWORDS).map_err(|e| err(e.into()))?;
        txn.open_table(TOKENS).map_err(|e| err(e.into()))?;
        txn.open_table(LOGINS).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))
    }

    /// Remove everything of the web tables that belongs to `name` or to one of
    /// `agent_ids`, inside the caller's transaction.
    pub(super) fn web_remove_user(
        &self,
        txn: &redb::WriteTransaction,
        name: &Username,
        agent_ids: &[String],
    ) -> Result<(), StoreError> {
        let err = self.err("removing a user's web records");
        let mut passwords = txn.open_table(PASSWORDS).map_err(|e| err(e.into()))?;
        passwords.remove(name.as_str()).map_err(|e| err(e.into()))?;
        let mut tokens = txn.open_table(TOKENS).map_err(|e| err(e.into()))?;
        for row in tokens
            .extract_if(|_, (owner, _, _)| owner == name.as_str())
            .map_err(|e| err(e.into()))?
        {
            row.map_err(|e| err(e.into()))?;
        }
        let mut logins = txn.open_table(LOGINS).map_err(|e| err(e.into()))?;
        for id in agent_ids {
            logins.remove(id.as_str()).map_err(|e| err(e.into()))?;
        }
        Ok(())
    }

    pub(super) fn web_set_password(
        &self,
        user: &Username,
        phc: Option<&str>,
    ) -> Result<(), StoreError> {
        let err = self.err("setting a password");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            self.require_user(&txn, user)?;
            let mut passwords = txn.open_table(PASSWORDS).map_err(|e| err(e.into()))?;
            match phc {
                Some(phc) => {
                    passwords
                        .insert(user.as_str(), phc)
                        .map_err(|e| err(e.into()))?;
                }
                None => {
                    passwords.remove(user.as_str()).map_err(|e| err(e.into()))?;
                }
            }
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    pub(super) fn web_password(&self, user: &Username) -> Result<Option<String>, StoreError> {
        let err = self.err("reading a password");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let passwords = rtxn.open_table(PASSWORDS).map_err(|e| err(e.into()))?;
        Ok(passwords
            .get(user.as_str())
            .map_err(|e| err(e.into()))?
            .map(|v| v.value().to_owned()))
    }

    pub(super) fn web_add_token(
        &self,
        owner: &Username,
        name: &str,
        digest: [u8; 32],
    ) -> Result<TokenRecord, StoreError> {
        let err = self.err("adding a token");
        let created = now_us();
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            self.require_user(&txn, owner)?;
            let mut tokens = txn.open_table(TOKENS).map_err(|e| err(e.into()))?;
            for row in tokens.iter().map_err(|e| err(e.into()))? {
                let (_, v) = row.map_err(|e| err(e.into()))?;
                let (o, n, _) = v.value();
                if o == owner.as_str() && n == name {
                    return Err(StoreError::TokenExists {
                        owner: owner.clone(),
                        name: name.to_owned(),
                    });
                }
            }
            tokens
                .insert(digest, (owner.as_str(), name, created))
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(TokenRecord {
            owner: owner.clone(),
            name: name.to_owned(),
            created_us: i64::try_from(created).unwrap_or(i64::MAX),
        })
    }

    fn token_record(
        &self,
        (owner, name, created): (&str, &str, u64),
    ) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            owner: self.username(owner)?,
            name: name.to_owned(),
            created_us: i64::try_from(created).unwrap_or(i64::MAX),
        })
    }

    pub(super) fn web_find_token(
        &self,
        digest: [u8; 32],
    ) -> Result<Option<TokenRecord>, StoreError> {
        let err = self.err("reading tokens");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let tokens = rtxn.open_table(TOKENS).map_err(|e| err(e.into()))?;
        match tokens.get(digest).map_err(|e| err(e.into()))? {
            Some(v) => self.token_record(v.value()).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn web_tokens_of(&self, owner: &Username) -> Result<Vec<TokenRecord>, StoreError> {
        let err = self.err("listing tokens");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let tokens = rtxn.open_table(TOKENS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in tokens.iter().map_err(|e| err(e.into()))? {
            let (_, v) = row.map_err(|e| err(e.into()))?;
            if v.value().0 == owner.as_str() {
                out.push(self.token_record(v.value())?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(super) fn web_token_digests_of(
        &self,
        owner: &Username,
    ) -> Result<Vec<([u8; 32], TokenRecord)>, StoreError> {
        let err = self.err("listing tokens");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let tokens = rtxn.open_table(TOKENS).map_err(|e| err(e.into()))?;
        let mut out = Vec::new();
        for row in tokens.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            if v.value().0 == owner.as_str() {
                out.push((k.value(), self.token_record(v.value())?));
            }
        }
        out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        Ok(out)
    }

    pub(super) fn web_remove_token(
        &self,
        owner: &Username,
        name: &str,
    ) -> Result<bool, StoreError> {
        let err = self.err("removing a token");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let mut removed = false;
        {
            let mut tokens = txn.open_table(TOKENS).map_err(|e| err(e.into()))?;
            for row in tokens
                .extract_if(|_, (o, n, _)| o == owner.as_str() && n == name)
                .map_err(|e| err(e.into()))?
            {
                row.map_err(|e| err(e.into()))?;
                removed = true;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(removed)
    }

    pub(super) fn web_note_login(&self, agent_id: &str, at_us: i64) -> Result<(), StoreError> {
        let err = self.err("recording a login");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut logins = txn.open_table(LOGINS).map_err(|e| err(e.into()))?;
            logins
                .insert(agent_id, u64::try_from(at_us).unwrap_or(0))
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }

    pub(super) fn web_last_logins(
        &self,
        owner: &Username,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let err = self.err("reading logins");
        let rtxn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let agents = rtxn.open_table(AGENTS).map_err(|e| err(e.into()))?;
        let logins = rtxn.open_table(LOGINS).map_err(|e| err(e.into()))?;
        let mut out = BTreeMap::new();
        for row in agents
            .range((owner.as_str(), "")..)
            .map_err(|e| err(e.into()))?
        {
            let (k, id) = row.map_err(|e| err(e.into()))?;
            if k.value().0 != owner.as_str() {
                break;
            }
            let id = id.value();
            if let Some(at) = logins.get(id).map_err(|e| err(e.into()))? {
                out.insert(id.to_owned(), i64::try_from(at.value()).unwrap_or(i64::MAX));
            }
        }
        Ok(out)
    }
}
