//! The Telegram tables of migration 9: every SQL statement about the bot's inbox, pairings,
//! pairing codes and outbox, and nothing else.
//!
//! **Inbox: at least once, in order per chat.** `enqueue` commits an update before the webhook
//! answers 200; a redelivered `update_id` is ignored. `claim` hands a worker the oldest update
//! of a chat none of whose updates is being processed under a live lease, so a chat's updates
//! go one at a time in `update_id` order while other chats go in parallel. The worker ends a
//! claim with `complete` or `retry_later`; a claim it never ends (a crash) lapses with its lease
//! and the update is claimed again. After `MAX_INBOX_ATTEMPTS` claims an update is `dead`, so
//! one poisonous update cannot stop its chat for good. Each claim's attempt number fences it: a
//! worker whose lease lapsed cannot complete the update another worker now holds.
//!
//! **Outbox: each part at most once, with one exception.** `plan_reply` writes a reply's parts
//! before any is sent; the sender marks each part sent after Telegram accepted it. A retried run
//! or a restarted worker finds the parts already planned (the first answer's, even if the retry
//! produced another) and sends only those not marked. A crash between Telegram's acceptance and
//! `mark_sent` sends that one part again: at most one duplicate message per crash, which no
//! design can avoid, because `sendMessage` takes no idempotency key.
//!
//! Callers run these on a blocking thread with their own connection (`ledger::connection`);
//! several statements that must commit together go through `write_transaction`.
//!
//! Not for: making codes or deciding who may pair (`pairing`), or when to claim (the worker).

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::pairing::{CodeHash, Pairing, Redeemer, CODE_TTL, MAX_PENDING_PER_TENANT};
use crate::ledger::connection::write_transaction;

/// Claims of one update before it is set aside as `dead`.
pub const MAX_INBOX_ATTEMPTS: u32 = 5;
/// How long a used or expired code is kept (to answer "already used" or "expired") before it is
/// deleted.
const CODE_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

// ---- inbox ----

/// Stores an update the webhook accepted; false when its `update_id` is already there (a
/// redelivery), in which case nothing changes.
pub fn enqueue(
    conn: &Connection,
    update_id: i64,
    chat_id: i64,
    body: &str,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO telegram_inbox
           (update_id, chat_id, body, received_ms, available_ms)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![update_id, chat_id, body, now_ms as i64],
    )?;
    Ok(inserted == 1)
}

/// An update a worker holds until its lease lapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedUpdate {
    pub update_id: i64,
    pub chat_id: i64,
    /// The update's JSON, as received.
    pub body: String,
    /// This claim's number, 1 for the first: pass it back to `complete` and `retry_later`.
    pub attempt: u32,
}

/// Claims the next update to process, if any: the oldest head of a chat that is waiting, or
/// whose worker's lease lapsed. A head claimed `MAX_INBOX_ATTEMPTS` times already is set `dead`
/// instead, and the chat's next update becomes its head.
pub fn claim(
    conn: &mut Connection,
    now_ms: u64,
    lease: Duration,
) -> rusqlite::Result<Option<ClaimedUpdate>> {
    let now = now_ms as i64;
    let tx = write_transaction(conn)?;
    loop {
        let head = tx
            .query_row(
                "SELECT i.update_id, i.chat_id, i.body, i.attempts FROM telegram_inbox i
                 WHERE i.state IN ('pending', 'processing')
                   AND i.update_id = (SELECT MIN(j.update_id) FROM telegram_inbox j
                                      WHERE j.chat_id = i.chat_id
                                        AND j.state IN ('pending', 'processing'))
                   AND ((i.state = 'pending' AND i.available_ms <= ?1)
                        OR (i.state = 'processing' AND i.lease_expires_ms <= ?1))
                 ORDER BY i.update_id LIMIT 1",
                params![now],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((update_id, chat_id, body, attempts)) = head else {
            tx.commit()?;
            return Ok(None);
        };
        if attempts >= MAX_INBOX_ATTEMPTS {
            tx.execute(
                "UPDATE telegram_inbox SET state = 'dead', finished_ms = ?2,
                   lease_expires_ms = NULL,
                   error = COALESCE(error, 'its worker never finished')
                 WHERE update_id = ?1",
                params![update_id, now],
            )?;
            continue;
        }
        let attempt = attempts + 1;
        tx.execute(
            "UPDATE telegram_inbox SET state = 'processing', attempts = ?2,
               lease_expires_ms = ?3
             WHERE update_id = ?1",
            params![update_id, attempt, now + lease.as_millis() as i64],
        )?;
        tx.commit()?;
        return Ok(Some(ClaimedUpdate {
            update_id,
            chat_id,
            body,
            attempt,
        }));
    }
}

/// The update is processed; false when the claim is no longer this worker's (its lease lapsed
/// and another worker claimed it), in which case nothing changes.
pub fn complete(
    conn: &Connection,
    update_id: i64,
    attempt: u32,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE telegram_inbox SET state = 'done', finished_ms = ?3, lease_expires_ms = NULL
         WHERE update_id = ?1 AND attempts = ?2 AND state = 'processing'",
        params![update_id, attempt, now_ms as i64],
    )?;
    Ok(changed == 1)
}

/// The update failed this time: it waits until `available_ms`, still its chat's head, then is
/// claimed again (or set `dead` if that was its last attempt). False as for `complete`.
pub fn retry_later(
    conn: &Connection,
    update_id: i64,
    attempt: u32,
    available_ms: u64,
    error: &str,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE telegram_inbox SET state = 'pending', available_ms = ?3, error = ?4,
           lease_expires_ms = NULL
         WHERE update_id = ?1 AND attempts = ?2 AND state = 'processing'",
        params![update_id, attempt, available_ms as i64, error],
    )?;
    Ok(changed == 1)
}

/// Extends a live claim to `lease_expires_ms`; false as for `complete`.
pub fn renew(
    conn: &Connection,
    update_id: i64,
    attempt: u32,
    lease_expires_ms: u64,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE telegram_inbox SET lease_expires_ms = ?3
         WHERE update_id = ?1 AND attempts = ?2 AND state = 'processing'",
        params![update_id, attempt, lease_expires_ms as i64],
    )?;
    Ok(changed == 1)
}

/// Updates not finished yet (for a metric, and for tests).
pub fn open_updates(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM telegram_inbox WHERE state IN ('pending', 'processing')",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

// ---- pairing codes and pairings ----

/// What `create_code` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCreated {
    /// Stored; it can be redeemed until `expires_ms`.
    Created { expires_ms: u64 },
    /// Nothing stored: the tenant already has `MAX_PENDING_PER_TENANT` codes pending.
    TooManyPending { pending: u64 },
}

/// Stores a new code's hash for `tenant_id` unless the tenant already has as many pending as
/// allowed, in one transaction so two requests at once cannot both pass the limit. Codes used
/// or expired more than a day ago are deleted on the way.
pub fn create_code(
    conn: &mut Connection,
    hash: &CodeHash,
    tenant_id: &str,
    owner: &str,
    now_ms: u64,
) -> rusqlite::Result<CodeCreated> {
    let now = now_ms as i64;
    let tx = write_transaction(conn)?;
    tx.execute(
        "DELETE FROM telegram_pairing_codes WHERE expires_ms < ?1",
        params![now - CODE_RETENTION_MS as i64],
    )?;
    let pending = pending_codes(&tx, tenant_id, now_ms)?;
    if pending >= MAX_PENDING_PER_TENANT {
        return Ok(CodeCreated::TooManyPending { pending });
    }
    let expires_ms = now_ms + CODE_TTL.as_millis() as u64;
    tx.execute(
        "INSERT INTO telegram_pairing_codes (code_hash, tenant_id, owner, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash.0, tenant_id, owner, now, expires_ms as i64],
    )?;
    tx.commit()?;
    Ok(CodeCreated::Created { expires_ms })
}

/// The tenant's codes neither used nor expired.
pub fn pending_codes(conn: &Connection, tenant_id: &str, now_ms: u64) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COUNT(*) FROM telegram_pairing_codes
         WHERE tenant_id = ?1 AND used_ms IS NULL AND expires_ms > ?2",
        params![tenant_id, now_ms as i64],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// What `redeem_code` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The user is paired; `replaced` is the tenant they were paired with before, if any.
    Paired {
        pairing: Pairing,
        replaced: Option<String>,
    },
    /// No such code (or one deleted long ago): a failed attempt.
    Unknown,
    /// The code expired unused: a failed attempt, with a clearer answer.
    Expired,
    /// The code was redeemed already, by someone else or for a pairing since undone: a failed
    /// attempt. (Redeemed again by the user it paired, who is still paired by it: `Paired`.)
    AlreadyUsed,
}

/// Redeems a code for `who`: in one transaction, marks it used and pairs the user with its
/// tenant, replacing any pairing they had.
pub fn redeem_code(
    conn: &mut Connection,
    hash: &CodeHash,
    who: &Redeemer<'_>,
    now_ms: u64,
) -> rusqlite::Result<Redeemed> {
    let now = now_ms as i64;
    let tx = write_transaction(conn)?;
    let code = tx
        .query_row(
            "SELECT tenant_id, owner, expires_ms, used_ms, used_by FROM telegram_pairing_codes
             WHERE code_hash = ?1",
            params![hash.0],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((tenant_id, owner, expires_ms, used_ms, used_by)) = code else {
        return Ok(Redeemed::Unknown);
    };
    if used_ms.is_some() {
        // The same message processed again (a crash after the pairing): the same answer.
        let again = pairing_of_user(&tx, who.telegram_user_id)?
            .filter(|p| used_by == Some(who.telegram_user_id) && p.tenant_id == tenant_id);
        return Ok(match again {
            Some(pairing) => Redeemed::Paired {
                pairing,
                replaced: None,
            },
            None => Redeemed::AlreadyUsed,
        });
    }
    if expires_ms <= now {
        return Ok(Redeemed::Expired);
    }
    tx.execute(
        "UPDATE telegram_pairing_codes SET used_ms = ?2, used_by = ?3 WHERE code_hash = ?1",
        params![hash.0, now, who.telegram_user_id],
    )?;
    let replaced: Option<String> = tx
        .query_row(
            "DELETE FROM telegram_pairings WHERE telegram_user_id = ?1 RETURNING tenant_id",
            params![who.telegram_user_id],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute(
        "INSERT INTO telegram_pairings
           (telegram_user_id, tenant_id, owner, chat_id, username, first_name, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            who.telegram_user_id,
            tenant_id,
            owner,
            who.chat_id,
            who.username,
            who.first_name,
            now
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Redeemed::Paired {
        pairing: Pairing {
            id,
            telegram_user_id: who.telegram_user_id,
            tenant_id,
            owner,
            chat_id: who.chat_id,
            username: who.username.map(str::to_owned),
            first_name: who.first_name.to_owned(),
            created_ms: now_ms,
        },
        replaced,
    })
}

const PAIRING_COLUMNS: &str =
    "id, telegram_user_id, tenant_id, owner, chat_id, username, first_name, created_ms";

fn pairing(row: &Row<'_>) -> rusqlite::Result<Pairing> {
    Ok(Pairing {
        id: row.get(0)?,
        telegram_user_id: row.get(1)?,
        tenant_id: row.get(2)?,
        owner: row.get(3)?,
        chat_id: row.get(4)?,
        username: row.get(5)?,
        first_name: row.get(6)?,
        created_ms: row.get::<_, i64>(7)? as u64,
    })
}

/// The tenant a Telegram user is paired with, if any.
pub fn pairing_of_user(
    conn: &Connection,
    telegram_user_id: i64,
) -> rusqlite::Result<Option<Pairing>> {
    conn.query_row(
        &format!("SELECT {PAIRING_COLUMNS} FROM telegram_pairings WHERE telegram_user_id = ?1"),
        params![telegram_user_id],
        pairing,
    )
    .optional()
}

/// Pairing `id`, whoever's it is: the owner's `DELETE …/pairings/{id}` finds its tenant with
/// this, and checks the tenant is the caller's before it deletes anything.
pub fn pairing_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Pairing>> {
    conn.query_row(
        &format!("SELECT {PAIRING_COLUMNS} FROM telegram_pairings WHERE id = ?1"),
        params![id],
        pairing,
    )
    .optional()
}

/// The tenant's pairings, oldest first.
pub fn pairings_of_tenant(conn: &Connection, tenant_id: &str) -> rusqlite::Result<Vec<Pairing>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PAIRING_COLUMNS} FROM telegram_pairings WHERE tenant_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![tenant_id], pairing)?;
    rows.collect()
}

/// The user's `/unpair`: removes their pairing and returns it (None: they had none).
pub fn unpair_user(conn: &Connection, telegram_user_id: i64) -> rusqlite::Result<Option<Pairing>> {
    conn.query_row(
        &format!(
            "DELETE FROM telegram_pairings WHERE telegram_user_id = ?1
             RETURNING {PAIRING_COLUMNS}"
        ),
        params![telegram_user_id],
        pairing,
    )
    .optional()
}

/// The owner's `DELETE …/pairings/{id}`: removes pairing `id` if it belongs to `tenant_id`
/// (the caller checked the tenant is the owner's); false when it does not.
pub fn delete_pairing(conn: &Connection, id: i64, tenant_id: &str) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "DELETE FROM telegram_pairings WHERE id = ?1 AND tenant_id = ?2",
        params![id, tenant_id],
    )?;
    Ok(changed == 1)
}

/// A tenant is deleted: its pairings and pending codes go with it; returns the pairings removed.
/// Run it in the transaction that deletes the tenant, so neither happens without the other.
pub fn forget_tenant(conn: &Connection, tenant_id: &str) -> rusqlite::Result<usize> {
    let removed = conn.execute(
        "DELETE FROM telegram_pairings WHERE tenant_id = ?1",
        params![tenant_id],
    )?;
    conn.execute(
        "DELETE FROM telegram_pairing_codes WHERE tenant_id = ?1",
        params![tenant_id],
    )?;
    Ok(removed)
}

// ---- runs started from a chat ----

/// A run a chat waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitedRun {
    pub run_id: String,
    pub update_id: i64,
    pub chat_id: i64,
    pub created_ms: u64,
}

/// Remembers that `chat_id` waits for `run_id`, started by update `update_id`; false when it was
/// remembered already (the update was processed again after a crash).
pub fn await_run(
    conn: &Connection,
    run: &AwaitedRun,
    telegram_user_id: i64,
) -> rusqlite::Result<bool> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO telegram_runs
           (run_id, update_id, chat_id, telegram_user_id, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            run.run_id,
            run.update_id,
            run.chat_id,
            telegram_user_id,
            run.created_ms as i64
        ],
    )?;
    Ok(inserted == 1)
}

/// The runs chats still wait for, oldest first.
pub fn awaited_runs(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<AwaitedRun>> {
    let mut stmt = conn.prepare_cached(
        "SELECT run_id, update_id, chat_id, created_ms FROM telegram_runs
         WHERE answered_ms IS NULL ORDER BY created_ms, run_id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok(AwaitedRun {
            run_id: r.get(0)?,
            update_id: r.get(1)?,
            chat_id: r.get(2)?,
            created_ms: r.get::<_, i64>(3)? as u64,
        })
    })?;
    rows.collect()
}

/// The run ended: its answer's parts go into the outbox (reply id: the run id) and the chat
/// stops waiting, in one transaction. Returns the parts not yet sent.
pub fn answer_run(
    conn: &mut Connection,
    run: &AwaitedRun,
    parts: &[String],
    now_ms: u64,
) -> rusqlite::Result<Vec<OutboxPart>> {
    let tx = write_transaction(conn)?;
    let unsent = plan_in(&tx, &run.run_id, run.chat_id, parts, now_ms)?;
    tx.execute(
        "UPDATE telegram_runs SET answered_ms = ?2 WHERE run_id = ?1 AND answered_ms IS NULL",
        params![run.run_id, now_ms as i64],
    )?;
    tx.commit()?;
    Ok(unsent)
}

/// Deletes what is finished and older than `before_ms`: processed updates, answered runs, and
/// replies whose every part was sent or dropped. Returns how many rows went. Keep them longer
/// than Telegram redelivers an update (a day), or a late redelivery would be processed again.
pub fn prune(conn: &mut Connection, before_ms: u64) -> rusqlite::Result<usize> {
    let before = before_ms as i64;
    let tx = write_transaction(conn)?;
    let mut removed = tx.execute(
        "DELETE FROM telegram_inbox WHERE finished_ms IS NOT NULL AND finished_ms < ?1",
        params![before],
    )?;
    removed += tx.execute(
        "DELETE FROM telegram_runs WHERE answered_ms IS NOT NULL AND answered_ms < ?1",
        params![before],
    )?;
    removed += tx.execute(
        "DELETE FROM telegram_outbox WHERE created_ms < ?1 AND reply_id NOT IN
           (SELECT reply_id FROM telegram_outbox WHERE sent_ms IS NULL AND dropped_ms IS NULL)",
        params![before],
    )?;
    tx.commit()?;
    Ok(removed)
}

// ---- outbox ----

/// One message of a reply, to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPart {
    pub reply_id: String,
    pub part: u32,
    pub chat_id: i64,
    pub text: String,
}

/// Writes a reply's parts before any is sent, unless the reply was planned before (a retried
/// run): then what was planned first stands. Returns the parts not yet sent, in order.
pub fn plan_reply(
    conn: &mut Connection,
    reply_id: &str,
    chat_id: i64,
    parts: &[String],
    now_ms: u64,
) -> rusqlite::Result<Vec<OutboxPart>> {
    let tx = write_transaction(conn)?;
    let unsent = plan_in(&tx, reply_id, chat_id, parts, now_ms)?;
    tx.commit()?;
    Ok(unsent)
}

fn plan_in(
    tx: &Connection,
    reply_id: &str,
    chat_id: i64,
    parts: &[String],
    now_ms: u64,
) -> rusqlite::Result<Vec<OutboxPart>> {
    let planned: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM telegram_outbox WHERE reply_id = ?1)",
        params![reply_id],
        |r| r.get(0),
    )?;
    if !planned {
        let mut insert = tx.prepare_cached(
            "INSERT INTO telegram_outbox (reply_id, part, chat_id, text, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (part, text) in parts.iter().enumerate() {
            insert.execute(params![reply_id, part as i64, chat_id, text, now_ms as i64])?;
        }
    }
    unsent_parts(tx, reply_id)
}

/// The reply's parts not yet sent nor dropped, in order.
pub fn unsent_parts(conn: &Connection, reply_id: &str) -> rusqlite::Result<Vec<OutboxPart>> {
    let mut stmt = conn.prepare_cached(
        "SELECT reply_id, part, chat_id, text FROM telegram_outbox
         WHERE reply_id = ?1 AND sent_ms IS NULL AND dropped_ms IS NULL ORDER BY part",
    )?;
    let rows = stmt.query_map(params![reply_id], |r| {
        Ok(OutboxPart {
            reply_id: r.get(0)?,
            part: r.get(1)?,
            chat_id: r.get(2)?,
            text: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Replies with parts still to send, oldest first: what a restarted sender resumes.
pub fn replies_with_unsent(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT reply_id FROM telegram_outbox WHERE sent_ms IS NULL AND dropped_ms IS NULL
         GROUP BY reply_id ORDER BY MIN(created_ms), reply_id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64], |r| r.get(0))?;
    rows.collect()
}

/// Telegram accepted the part as message `message_id`; false when it was marked already.
pub fn mark_sent(
    conn: &Connection,
    reply_id: &str,
    part: u32,
    message_id: i64,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE telegram_outbox SET sent_ms = ?3, message_id = ?4
         WHERE reply_id = ?1 AND part = ?2 AND sent_ms IS NULL",
        params![reply_id, part, now_ms as i64, message_id],
    )?;
    Ok(changed == 1)
}

/// Telegram refused the part for good (the user blocked the bot, the chat is gone): it is not
/// tried again.
pub fn drop_part(
    conn: &Connection,
    reply_id: &str,
    part: u32,
    error: &str,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE telegram_outbox SET dropped_ms = ?3, error = ?4
         WHERE reply_id = ?1 AND part = ?2 AND sent_ms IS NULL AND dropped_ms IS NULL",
        params![reply_id, part, now_ms as i64, error],
    )?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ledger::connection::connect;
    use crate::telegram::pairing::PairingCode;

    const LEASE: Duration = Duration::from_secs(30);

    fn database(dir: &Path) -> Connection {
        let path = dir.join("ledger.db");
        crate::ledger::open(&path).unwrap();
        connect(&path).unwrap()
    }

    fn ada(user: i64) -> Redeemer<'static> {
        Redeemer {
            telegram_user_id: user,
            chat_id: user,
            username: Some("ada"),
            first_name: "Ada",
        }
    }

    fn hash(code: &str) -> CodeHash {
        PairingCode::parse(code).unwrap().hash()
    }

    #[test]
    fn a_redelivered_update_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path());
        assert!(enqueue(&conn, 10, 1, "{\"first\":1}", 1_000).unwrap());
        assert!(!enqueue(&conn, 10, 1, "{\"second\":1}", 2_000).unwrap());
        assert_eq!(open_updates(&conn).unwrap(), 1);
        let mut conn = conn;
        let claimed = claim(&mut conn, 3_000, LEASE).unwrap().unwrap();
        assert_eq!(claimed.body, "{\"first\":1}");
        assert!(complete(&conn, 10, claimed.attempt, 3_500).unwrap());
        assert!(
            !enqueue(&conn, 10, 1, "{}", 4_000).unwrap(),
            "done is still a duplicate"
        );
        assert_eq!(claim(&mut conn, 5_000, LEASE).unwrap(), None);
    }

    #[test]
    fn a_chats_updates_go_one_at_a_time_in_order_and_chats_in_parallel() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        // Chat 1 gets updates 3 and 1 (out of order), chat 2 gets update 2.
        for (update_id, chat_id) in [(3, 1), (2, 2), (1, 1)] {
            enqueue(&conn, update_id, chat_id, "{}", 0).unwrap();
        }
        let first = claim(&mut conn, 10, LEASE).unwrap().unwrap();
        assert_eq!((first.update_id, first.chat_id, first.attempt), (1, 1, 1));
        let second = claim(&mut conn, 10, LEASE).unwrap().unwrap();
        assert_eq!(second.update_id, 2, "chat 2 is not behind chat 1");
        assert_eq!(
            claim(&mut conn, 10, LEASE).unwrap(),
            None,
            "update 3 waits for 1"
        );
        assert!(complete(&conn, 1, 1, 20).unwrap());
        let third = claim(&mut conn, 20, LEASE).unwrap().unwrap();
        assert_eq!(third.update_id, 3);
    }

    #[test]
    fn a_crashed_workers_claim_lapses_and_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        crate::ledger::open(&path).unwrap();
        {
            let mut worker = connect(&path).unwrap();
            enqueue(&worker, 7, 1, "{}", 0).unwrap();
            enqueue(&worker, 8, 1, "{}", 0).unwrap();
            let claimed = claim(&mut worker, 0, LEASE).unwrap().unwrap();
            assert_eq!(claimed.update_id, 7);
            // The worker dies here, its connection with it.
        }
        let mut restarted = connect(&path).unwrap();
        let lease_ms = LEASE.as_millis() as u64;
        assert_eq!(claim(&mut restarted, lease_ms - 1, LEASE).unwrap(), None);
        let again = claim(&mut restarted, lease_ms, LEASE).unwrap().unwrap();
        assert_eq!((again.update_id, again.attempt), (7, 2));
        assert!(
            !complete(&restarted, 7, 1, lease_ms).unwrap(),
            "the old claim is fenced"
        );
        assert!(!retry_later(&restarted, 7, 1, 0, "late").unwrap());
        assert!(renew(&restarted, 7, 2, lease_ms * 3).unwrap());
        assert_eq!(claim(&mut restarted, lease_ms * 2, LEASE).unwrap(), None);
        assert!(complete(&restarted, 7, 2, lease_ms * 2).unwrap());
        assert_eq!(
            claim(&mut restarted, lease_ms * 2, LEASE)
                .unwrap()
                .unwrap()
                .update_id,
            8
        );
    }

    #[test]
    fn a_failed_update_waits_then_dies_after_its_last_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        enqueue(&conn, 1, 1, "{}", 0).unwrap();
        enqueue(&conn, 2, 1, "{}", 0).unwrap();
        let mut now = 0;
        for attempt in 1..=MAX_INBOX_ATTEMPTS {
            let claimed = claim(&mut conn, now, LEASE).unwrap().unwrap();
            assert_eq!((claimed.update_id, claimed.attempt), (1, attempt));
            assert!(retry_later(&conn, 1, attempt, now + 1_000, "node down").unwrap());
            assert_eq!(
                claim(&mut conn, now + 999, LEASE).unwrap(),
                None,
                "backing off"
            );
            now += 1_000;
        }
        let next = claim(&mut conn, now, LEASE).unwrap().unwrap();
        assert_eq!(
            next.update_id, 2,
            "update 1 is dead and no longer blocks its chat"
        );
        let (state, error): (String, String) = conn
            .query_row(
                "SELECT state, error FROM telegram_inbox WHERE update_id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((state.as_str(), error.as_str()), ("dead", "node down"));
    }

    #[test]
    fn finished_updates_are_pruned_and_open_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        enqueue(&conn, 1, 1, "{}", 0).unwrap();
        enqueue(&conn, 2, 2, "{}", 0).unwrap();
        let claimed = claim(&mut conn, 0, LEASE).unwrap().unwrap();
        complete(&conn, claimed.update_id, claimed.attempt, 100).unwrap();
        assert_eq!(prune(&mut conn, 100).unwrap(), 0);
        assert_eq!(prune(&mut conn, 101).unwrap(), 1);
        assert_eq!(open_updates(&conn).unwrap(), 1);
    }

    #[test]
    fn pairing_with_a_code_happens_once_and_replaces_an_earlier_pairing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        let created = create_code(&mut conn, &hash("ABCD2345"), "ten_a", "alice", 1_000).unwrap();
        let ttl = CODE_TTL.as_millis() as u64;
        assert_eq!(
            created,
            CodeCreated::Created {
                expires_ms: 1_000 + ttl
            }
        );
        let Redeemed::Paired { pairing, replaced } =
            redeem_code(&mut conn, &hash("ABCD2345"), &ada(42), 2_000).unwrap()
        else {
            panic!("not paired");
        };
        assert_eq!(replaced, None);
        assert_eq!(
            (
                pairing.tenant_id.as_str(),
                pairing.owner.as_str(),
                pairing.chat_id
            ),
            ("ten_a", "alice", 42)
        );
        assert_eq!(pairing_of_user(&conn, 42).unwrap(), Some(pairing.clone()));
        assert_eq!(pending_codes(&conn, "ten_a", 2_000).unwrap(), 0);
        assert_eq!(
            redeem_code(&mut conn, &hash("ABCD2345"), &ada(43), 2_500).unwrap(),
            Redeemed::AlreadyUsed
        );
        // The same user's message processed again after a crash gets the same pairing.
        assert_eq!(
            redeem_code(&mut conn, &hash("ABCD2345"), &ada(42), 2_600).unwrap(),
            Redeemed::Paired {
                pairing: pairing.clone(),
                replaced: None
            }
        );
        // A code of another tenant moves the user there.
        create_code(&mut conn, &hash("WXYZ6789"), "ten_b", "bob", 3_000).unwrap();
        let Redeemed::Paired {
            pairing: moved,
            replaced,
        } = redeem_code(&mut conn, &hash("WXYZ6789"), &ada(42), 3_000).unwrap()
        else {
            panic!("not paired");
        };
        assert_eq!(replaced.as_deref(), Some("ten_a"));
        assert_ne!(moved.id, pairing.id, "ids are never reused");
        assert!(pairings_of_tenant(&conn, "ten_a").unwrap().is_empty());
        assert_eq!(pairings_of_tenant(&conn, "ten_b").unwrap(), vec![moved]);
    }

    #[test]
    fn a_wrong_or_expired_code_pairs_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        create_code(&mut conn, &hash("ABCD2345"), "ten_a", "alice", 0).unwrap();
        assert_eq!(
            redeem_code(&mut conn, &hash("ABCD2346"), &ada(1), 10).unwrap(),
            Redeemed::Unknown
        );
        let ttl = CODE_TTL.as_millis() as u64;
        assert_eq!(
            redeem_code(&mut conn, &hash("ABCD2345"), &ada(1), ttl).unwrap(),
            Redeemed::Expired
        );
        assert_eq!(pairing_of_user(&conn, 1).unwrap(), None);
        assert!(pairings_of_tenant(&conn, "ten_a").unwrap().is_empty());
    }

    #[test]
    fn a_tenant_has_at_most_three_codes_pending() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        for code in ["AAAA2222", "AAAA3333", "AAAA4444"] {
            let created = create_code(&mut conn, &hash(code), "ten_a", "alice", 0).unwrap();
            assert!(matches!(created, CodeCreated::Created { .. }));
        }
        assert_eq!(
            create_code(&mut conn, &hash("AAAA5555"), "ten_a", "alice", 0).unwrap(),
            CodeCreated::TooManyPending { pending: 3 }
        );
        assert!(matches!(
            create_code(&mut conn, &hash("AAAA5555"), "ten_b", "bob", 0).unwrap(),
            CodeCreated::Created { .. }
        ));
        // Using one frees a slot; so does expiry.
        redeem_code(&mut conn, &hash("AAAA2222"), &ada(1), 10).unwrap();
        assert!(matches!(
            create_code(&mut conn, &hash("AAAA6666"), "ten_a", "alice", 10).unwrap(),
            CodeCreated::Created { .. }
        ));
        let ttl = CODE_TTL.as_millis() as u64;
        assert_eq!(pending_codes(&conn, "ten_a", ttl).unwrap(), 1);
        // Codes a day past their expiry are deleted on the next creation.
        let later = 10 + ttl + CODE_RETENTION_MS + 1;
        create_code(&mut conn, &hash("AAAA7777"), "ten_c", "carol", later).unwrap();
        assert_eq!(
            redeem_code(&mut conn, &hash("AAAA3333"), &ada(2), later).unwrap(),
            Redeemed::Unknown
        );
    }

    #[test]
    fn users_unpair_and_owners_delete_pairings_of_their_tenant_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        for (code, user) in [("AAAA2222", 1), ("AAAA3333", 2), ("AAAA4444", 3)] {
            create_code(&mut conn, &hash(code), "ten_a", "alice", 0).unwrap();
            redeem_code(&mut conn, &hash(code), &ada(user), 0).unwrap();
        }
        let removed = unpair_user(&conn, 1).unwrap().unwrap();
        assert_eq!(removed.telegram_user_id, 1);
        assert_eq!(unpair_user(&conn, 1).unwrap(), None);
        let second = pairing_of_user(&conn, 2).unwrap().unwrap();
        assert!(!delete_pairing(&conn, second.id, "ten_other").unwrap());
        assert!(delete_pairing(&conn, second.id, "ten_a").unwrap());
        assert_eq!(pairing_of_user(&conn, 2).unwrap(), None);
        create_code(&mut conn, &hash("AAAA5555"), "ten_a", "alice", 0).unwrap();
        assert_eq!(forget_tenant(&conn, "ten_a").unwrap(), 1);
        assert_eq!(pairing_of_user(&conn, 3).unwrap(), None);
        assert_eq!(pending_codes(&conn, "ten_a", 0).unwrap(), 0);
    }

    #[test]
    fn a_pairing_is_found_by_its_id_until_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        create_code(&mut conn, &hash("AAAA2222"), "ten_a", "alice", 0).unwrap();
        let Redeemed::Paired {
            pairing: paired, ..
        } = redeem_code(&mut conn, &hash("AAAA2222"), &ada(7), 5).unwrap()
        else {
            panic!("not paired");
        };
        assert_eq!(
            pairing_by_id(&conn, paired.id).unwrap(),
            Some(paired.clone())
        );
        assert_eq!(pairing_by_id(&conn, paired.id + 1).unwrap(), None);
        assert!(delete_pairing(&conn, paired.id, "ten_a").unwrap());
        assert_eq!(pairing_by_id(&conn, paired.id).unwrap(), None);
    }

    #[test]
    fn a_retried_reply_sends_only_parts_not_yet_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        let parts = vec!["one".to_owned(), "two".to_owned(), "three".to_owned()];
        let planned = plan_reply(&mut conn, "run_1", 42, &parts, 0).unwrap();
        assert_eq!(planned.len(), 3);
        assert_eq!(
            planned[1],
            OutboxPart {
                reply_id: "run_1".into(),
                part: 1,
                chat_id: 42,
                text: "two".into()
            }
        );
        assert!(mark_sent(&conn, "run_1", 0, 900, 1).unwrap());
        assert!(
            !mark_sent(&conn, "run_1", 0, 901, 2).unwrap(),
            "marked once"
        );
        // The run is retried and answers differently: the first plan stands.
        let retried = vec!["uno".to_owned(), "dos".to_owned()];
        let left = plan_reply(&mut conn, "run_1", 42, &retried, 5).unwrap();
        let texts: Vec<&str> = left.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["two", "three"]);
        assert_eq!(replies_with_unsent(&conn, 10).unwrap(), vec!["run_1"]);
        mark_sent(&conn, "run_1", 1, 902, 6).unwrap();
        assert!(drop_part(&conn, "run_1", 2, "Forbidden: bot was blocked", 7).unwrap());
        assert!(unsent_parts(&conn, "run_1").unwrap().is_empty());
        assert!(replies_with_unsent(&conn, 10).unwrap().is_empty());
    }

    #[test]
    fn a_restarted_sender_resumes_the_oldest_replies_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        crate::ledger::open(&path).unwrap();
        {
            let mut conn = connect(&path).unwrap();
            plan_reply(&mut conn, "run_b", 1, &["b".to_owned()], 20).unwrap();
            plan_reply(&mut conn, "update:7", 2, &["a".to_owned()], 10).unwrap();
            plan_reply(&mut conn, "run_c", 3, &["c".to_owned()], 30).unwrap();
            mark_sent(&conn, "run_c", 0, 1, 31).unwrap();
        }
        let conn = connect(&path).unwrap();
        assert_eq!(
            replies_with_unsent(&conn, 10).unwrap(),
            vec!["update:7", "run_b"]
        );
        assert_eq!(replies_with_unsent(&conn, 1).unwrap(), vec!["update:7"]);
    }

    #[test]
    fn a_run_is_answered_once_and_pruned_with_its_sent_reply() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = database(dir.path());
        let run = AwaitedRun {
            run_id: "run_1".into(),
            update_id: 7,
            chat_id: 42,
            created_ms: 1_000,
        };
        assert!(await_run(&conn, &run, 4242).unwrap());
        assert!(
            !await_run(&conn, &run, 4242).unwrap(),
            "a second processing"
        );
        assert_eq!(awaited_runs(&conn, 10).unwrap(), vec![run.clone()]);
        let parts = vec!["one".to_owned(), "two".to_owned()];
        let unsent = answer_run(&mut conn, &run, &parts, 2_000).unwrap();
        assert_eq!(unsent.len(), 2);
        assert!(awaited_runs(&conn, 10).unwrap().is_empty());
        // Answered again after a crash: the first plan stands.
        let again = answer_run(&mut conn, &run, &["other".to_owned()], 2_500).unwrap();
        assert_eq!(again, unsent);
        mark_sent(&conn, "run_1", 0, 100, 3_000).unwrap();
        assert_eq!(
            prune(&mut conn, 10_000).unwrap(),
            1,
            "the answered run only"
        );
        mark_sent(&conn, "run_1", 1, 101, 3_000).unwrap();
        assert_eq!(
            prune(&mut conn, 10_000).unwrap(),
            2,
            "both parts, once all were sent"
        );
    }
}
