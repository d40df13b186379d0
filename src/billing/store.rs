//! SQL for subscriptions, processed events and monthly counts. Blocking: the sidecar runs it in
//! `spawn_blocking`, the sync and quota workers on their own threads; never the request path.
//! Each write runs in a `write_transaction`: concurrent webhooks wait for the write lock (up to
//! the busy timeout) rather than answering 500 "database is locked".

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::events::{Change, StripeEvent};
use super::quota::Month;
use super::state_order::{self, StateAt};
use crate::ledger::connection::write_transaction;

/// What processing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The event changed subscription state.
    Applied,
    /// Loses to the state already known (older, or the same second and lower precedence: see
    /// `state_order`): recorded, state unchanged.
    Stale,
    /// A type ExoClaw does not act on: recorded, nothing changed.
    Ignored,
    /// Already processed: nothing changed.
    Duplicate,
}

/// Applies `event` and records its id, in one transaction that holds the write lock from its
/// start: two deliveries of one event never both see it as new.
pub fn apply_event(conn: &mut Connection, event: &StripeEvent) -> rusqlite::Result<Outcome> {
    let tx = write_transaction(conn)?;
    let seen: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM stripe_events WHERE event_id = ?1)",
        params![event.id],
        |r| r.get(0),
    )?;
    if seen {
        return Ok(Outcome::Duplicate);
    }
    let outcome = match &event.change {
        None => Outcome::Ignored,
        Some(change) => apply_change(&tx, change, event.created)?,
    };
    let label = match outcome {
        Outcome::Applied => "applied",
        Outcome::Stale => "stale",
        Outcome::Ignored | Outcome::Duplicate => "ignored",
    };
    tx.execute(
        "INSERT INTO stripe_events (event_id, type, created, outcome) VALUES (?1, ?2, ?3, ?4)",
        params![event.id, event.kind, event.created, label],
    )?;
    tx.commit()?;
    Ok(outcome)
}

fn apply_change(tx: &Transaction, change: &Change, created: i64) -> rusqlite::Result<Outcome> {
    let (subscription_id, status, tier, customer) = match change {
        Change::Checkout {
            user,
            subscription_id,
            customer_id,
            tier,
        } => {
            // Who bought it is a fact, whatever the order of delivery.
            tx.execute(
                "INSERT INTO stripe_subscriptions (subscription_id, user_id, status, state_created)
                 VALUES (?1, ?2, 'incomplete', -1)
                 ON CONFLICT(subscription_id) DO UPDATE SET user_id = excluded.user_id",
                params![subscription_id, user],
            )?;
            (
                subscription_id,
                "active",
                tier.as_deref(),
                customer_id.as_deref(),
            )
        }
        Change::Subscription {
            subscription_id,
            customer_id,
            status,
            tier,
        } => (
            subscription_id,
            status.as_str(),
            tier.as_deref(),
            customer_id.as_deref(),
        ),
        Change::PaymentFailed { subscription_id } => (subscription_id, "past_due", None, None),
        Change::PaymentSucceeded { subscription_id } => (subscription_id, "active", None, None),
    };
    let known: Option<(String, i64)> = tx
        .query_row(
            "SELECT status, state_created FROM stripe_subscriptions WHERE subscription_id = ?1",
            params![subscription_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let incoming = StateAt { status, created };
    if known.is_some_and(|(status, created)| {
        !state_order::replaces(
            incoming,
            StateAt {
                status: &status,
                created,
            },
        )
    }) {
        return Ok(Outcome::Stale);
    }
    tx.execute(
        "INSERT INTO stripe_subscriptions
           (subscription_id, customer_id, tier, status, state_created, past_due_since)
         VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?4 = 'past_due' THEN ?5 END)
         ON CONFLICT(subscription_id) DO UPDATE SET
           customer_id = COALESCE(excluded.customer_id, customer_id),
           tier = COALESCE(excluded.tier, tier),
           status = excluded.status,
           state_created = excluded.state_created,
           past_due_since = CASE WHEN excluded.status = 'past_due'
                                 THEN COALESCE(past_due_since, excluded.state_created) END,
           updated_at = datetime('now')",
        params![subscription_id, customer, tier, status, created],
    )?;
    Ok(Outcome::Applied)
}

/// A subscription as the request path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub user: String,
    pub tier: Option<String>,
    pub status: String,
    pub state_created: i64,
    pub past_due_since: Option<i64>,
}

/// Every subscription that belongs to a known user.
pub fn load_plans(conn: &Connection) -> rusqlite::Result<Vec<PlanRow>> {
    let mut stmt = conn.prepare(
        "SELECT user_id, tier, status, state_created, past_due_since
         FROM stripe_subscriptions WHERE user_id IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PlanRow {
            user: r.get(0)?,
            tier: r.get(1)?,
            status: r.get(2)?,
            state_created: r.get(3)?,
            past_due_since: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The persisted counts of `month`.
pub fn load_month(conn: &Connection, month: Month) -> rusqlite::Result<Vec<(String, Month, u64)>> {
    let mut stmt = conn.prepare("SELECT user_id, requests FROM monthly_usage WHERE month = ?1")?;
    let rows = stmt.query_map(params![month.label()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            month,
            r.get::<_, i64>(1)?.max(0) as u64,
        ))
    })?;
    rows.collect()
}

/// Writes counts (each the month's running total, never less than what is stored).
pub fn save_counts(conn: &mut Connection, rows: &[(String, Month, u64)]) -> rusqlite::Result<()> {
    let tx = write_transaction(conn)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO monthly_usage (user_id, month, requests) VALUES (?1, ?2, ?3)
             ON CONFLICT(user_id, month) DO UPDATE SET requests = MAX(requests, excluded.requests)",
        )?;
        for (user, month, count) in rows {
            stmt.execute(params![user, month.label(), *count as i64])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::ledger::migrations::apply(&mut conn).unwrap();
        conn
    }

    fn event(id: &str, created: i64, change: Change) -> StripeEvent {
        StripeEvent {
            id: id.into(),
            kind: "test".into(),
            created,
            change: Some(change),
        }
    }

    fn checkout(tier: &str) -> Change {
        Change::Checkout {
            user: "ana".into(),
            subscription_id: "sub_1".into(),
            customer_id: Some("cus_1".into()),
            tier: Some(tier.into()),
        }
    }

    fn status(s: &str) -> Change {
        Change::Subscription {
            subscription_id: "sub_1".into(),
            customer_id: None,
            status: s.into(),
            tier: None,
        }
    }

    #[test]
    fn duplicates_change_nothing() {
        let mut conn = db();
        assert_eq!(
            apply_event(&mut conn, &event("e1", 10, checkout("tier1"))).unwrap(),
            Outcome::Applied
        );
        assert_eq!(
            apply_event(&mut conn, &event("e2", 20, status("canceled"))).unwrap(),
            Outcome::Applied
        );
        assert_eq!(
            apply_event(&mut conn, &event("e1", 10, checkout("tier1"))).unwrap(),
            Outcome::Duplicate
        );
        assert_eq!(load_plans(&conn).unwrap()[0].status, "canceled");
    }

    #[test]
    fn an_older_event_never_overwrites_a_newer_state() {
        let mut conn = db();
        // The cancellation arrives before the checkout that preceded it.
        assert_eq!(
            apply_event(&mut conn, &event("e2", 20, status("canceled"))).unwrap(),
            Outcome::Applied
        );
        assert_eq!(
            apply_event(&mut conn, &event("e1", 10, checkout("tier2"))).unwrap(),
            Outcome::Stale
        );
        let plan = &load_plans(&conn).unwrap()[0];
        assert_eq!(
            (plan.user.as_str(), plan.status.as_str()),
            ("ana", "canceled")
        );
        assert_eq!(plan.tier, None);
    }

    #[test]
    fn at_the_same_second_a_cancellation_wins_in_either_order() {
        for order in [["canceled", "active"], ["active", "canceled"]] {
            let mut conn = db();
            apply_event(&mut conn, &event("e0", 10, checkout("tier2"))).unwrap();
            let outcomes: Vec<Outcome> = order
                .iter()
                .map(|s| apply_event(&mut conn, &event(s, 20, status(s))).unwrap())
                .collect();
            let plan = &load_plans(&conn).unwrap()[0];
            assert_eq!(
                (plan.status.as_str(), plan.state_created),
                ("canceled", 20),
                "{order:?}"
            );
            let expected = if order[0] == "canceled" {
                [Outcome::Applied, Outcome::Stale]
            } else {
                [Outcome::Applied, Outcome::Applied]
            };
            assert_eq!(outcomes, expected, "{order:?}");
        }
    }

    #[test]
    fn at_the_same_second_a_checkout_activates_an_incomplete_subscription() {
        let mut conn = db();
        apply_event(&mut conn, &event("e1", 10, status("incomplete"))).unwrap();
        apply_event(&mut conn, &event("e2", 10, checkout("tier2"))).unwrap();
        let plan = &load_plans(&conn).unwrap()[0];
        assert_eq!(
            (plan.status.as_str(), plan.tier.as_deref()),
            ("active", Some("tier2"))
        );
    }

    #[test]
    fn a_failed_payment_marks_past_due_since_its_time() {
        let mut conn = db();
        apply_event(&mut conn, &event("e1", 10, checkout("tier1"))).unwrap();
        let failed = Change::PaymentFailed {
            subscription_id: "sub_1".into(),
        };
        apply_event(&mut conn, &event("e2", 30, failed)).unwrap();
        let plan = &load_plans(&conn).unwrap()[0];
        assert_eq!(
            (plan.status.as_str(), plan.past_due_since),
            ("past_due", Some(30))
        );
        assert_eq!(plan.tier.as_deref(), Some("tier1"));
        let paid = Change::PaymentSucceeded {
            subscription_id: "sub_1".into(),
        };
        apply_event(&mut conn, &event("e3", 40, paid)).unwrap();
        let plan = &load_plans(&conn).unwrap()[0];
        assert_eq!(
            (plan.status.as_str(), plan.past_due_since),
            ("active", None)
        );
    }

    #[test]
    fn counts_round_trip_and_never_shrink() {
        let mut conn = db();
        let month = Month::parse("2026-11").unwrap();
        save_counts(&mut conn, &[("ana".into(), month, 5)]).unwrap();
        save_counts(&mut conn, &[("ana".into(), month, 3)]).unwrap();
        assert_eq!(
            load_month(&conn, month).unwrap(),
            vec![("ana".into(), month, 5)]
        );
    }
}
