//! Lender leases: how several daemons sharing one PostgreSQL store split the work.
//!
//! Owns: the `lender_leases` table of an environment's schema (one row per lender: holder,
//! fencing token, expiry), taking a lease (a free, released or expired one only), renewing,
//! releasing, and the fence every load's transaction takes.
//! Must not: touch files or decide what a pass does; `files` asks, per lender, whether it may
//! work on it.
//!
//! A lease is taken by one pass of one daemon for one lender (holder = host, process and a
//! fresh id), so a lender's files are handled by one pass at a time, in their dependency order,
//! while other lenders go on elsewhere. A daemon that dies stops renewing: its lease expires
//! (`[store] lease_seconds`) and another daemon takes the lender over, recovering what was
//! left in `work/` exactly as a restarted daemon would. Every load's transaction locks and
//! re-checks its lease row (`fence`), so a daemon that lost its lease (paused past the expiry)
//! cannot commit a load, and no one takes over a lender while one of its loads is being applied.

use super::PgStore;
use crate::store::StoreError;
use std::time::Duration;

/// The coordination table; not a versioned migration (SQLite has no counterpart).
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS lender_leases (
    lender      TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
)";

/// The emails running loads are checking (`LoadTx::email_in_use`): rows only while a load runs
/// (its own insert and delete commit together). Coordination too, not a versioned migration.
/// Unlogged (no WAL: a create file's claims were a WAL record each, written and deleted in one
/// transaction): a crash empties it, which is right, as no row is meant to outlive its load;
/// standbys do not see it, which is right too (a promoted standby has no running loads). A table
/// made before is switched once (it is empty but for running loads).
pub const EMAIL_CLAIMS_DDL: &str = "CREATE UNLOGGED TABLE IF NOT EXISTS email_claims (
    email_key  TEXT PRIMARY KEY,
    load_id    BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS email_claims_load ON email_claims (load_id);
DO $$ BEGIN
    IF (SELECT relpersistence FROM pg_class WHERE oid = 'email_claims'::regclass) = 'p' THEN
        ALTER TABLE email_claims SET UNLOGGED;
    END IF;
END $$";

/// A lease this store holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub lender: String,
    pub holder: String,
    pub token: i64,
    pub ttl: Duration,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1.0)
}

/// This process's name in `holder` (what an operator sees in `lender_leases`).
fn holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "{host}:{}:{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Takes the lease on `lender` when it is free, released or expired; `None` when another pass
/// holds it (or one of its loads is being applied).
pub fn take(store: &PgStore, lender: &str, ttl: Duration) -> Result<Option<Held>, StoreError> {
    store.exec(
        "INSERT INTO lender_leases (lender, holder, token, expires_at)
         VALUES ($1, '', 0, '-infinity') ON CONFLICT DO NOTHING",
        &[&lender],
    )?;
    let me = holder();
    // One statement: the row is skipped when a load of the lender holds it locked (`fence`).
    let row = store.query_opt(
        "UPDATE lender_leases l SET holder = $2, token = l.token + 1,
                expires_at = clock_timestamp() + make_interval(secs => $3)
         FROM (SELECT lender FROM lender_leases WHERE lender = $1
               AND (holder = '' OR expires_at < clock_timestamp())
               FOR UPDATE SKIP LOCKED) free
         WHERE l.lender = free.lender
         RETURNING l.token",
        &[&lender, &me, &secs(ttl)],
    )?;
    Ok(row.map(|r| Held {
        lender: lender.to_string(),
        holder: me,
        token: r.get(0),
        ttl,
    }))
}

/// Extends a held lease; false when it was lost (expired and taken over).
pub fn renew(store: &PgStore, held: &Held) -> Result<bool, StoreError> {
    Ok(store.exec(
        "UPDATE lender_leases SET expires_at = clock_timestamp() + make_interval(secs => $4)
         WHERE lender = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()",
        &[&held.lender, &held.holder, &held.token, &secs(held.ttl)],
    )? == 1)
}

/// At a load's commit (its row locked since `fence`, so still ours even if the load outlasted
/// the expiry): the lease runs from now, covering the result and the move that follow.
pub fn extend(store: &PgStore, held: &Held) -> Result<(), StoreError> {
    store.exec(
        "UPDATE lender_leases SET expires_at = clock_timestamp() + make_interval(secs => $4)
         WHERE lender = $1 AND holder = $2 AND token = $3",
        &[&held.lender, &held.holder, &held.token, &secs(held.ttl)],
    )?;
    Ok(())
}

/// Gives a lease back, so that any daemon may take the lender at once.
pub fn release(store: &PgStore, held: &Held) -> Result<(), StoreError> {
    store.exec(
        "UPDATE lender_leases SET holder = '', expires_at = '-infinity'
         WHERE lender = $1 AND holder = $2 AND token = $3",
        &[&held.lender, &held.holder, &held.token],
    )?;
    Ok(())
}

/// Inside a load's transaction: locks the lease row until the transaction ends and checks
/// that it is still ours. A lost lease refuses the load (rolled back; the new holder applies it).
pub fn fence(store: &PgStore, held: &Held, lender: &str) -> Result<(), StoreError> {
    if held.lender != lender {
        return Err(StoreError::Backend(format!(
            "lease held for lender {}, not {lender}",
            held.lender
        )));
    }
    if renew(store, held)? {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(lender.to_string()))
    }
}
