//! The SQLite queue against a real database file in a temp dir, migrated by `ledger::open`.
//! Time is the `now_ms` each call is given: no test sleeps.

use std::sync::{Arc, Barrier};

use super::*;
use crate::runs::queue::new_run_id;

const T0: u64 = 1_760_000_000_000;
const LEASE: Duration = Duration::from_secs(30);
const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(10),
    max: Duration::from_secs(600),
};

struct Fixture {
    _dir: tempfile::TempDir,
    queue: SqliteQueue,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let queue = open_queue(&dir);
        Fixture { _dir: dir, queue }
    }

    /// Enqueues a run that must be created.
    fn add(&self, run: NewRun) -> Run {
        match self.queue.enqueue(run, None, T0).unwrap() {
            Enqueued::Created(run) => run,
            other => panic!("not created: {other:?}"),
        }
    }

    /// Enqueues a run of `tenant` for `agent` (owner "owner-<tenant>").
    fn add_to(&self, tenant: &str, agent: &str) -> Run {
        self.add(new_run(tenant, agent))
    }

    /// Claims with every candidate admitted.
    fn claim(&self, now_ms: u64) -> Option<Claimed> {
        self.queue.claim(now_ms, LEASE, &mut |_| true).unwrap()
    }

    fn status(&self, id: &str) -> RunStatus {
        self.queue.get(id).unwrap().unwrap().status
    }

    fn finish(&self, lease: &Lease, outcome: Outcome, now_ms: u64) -> Option<Run> {
        self.queue.finish(lease, outcome, &BACKOFF, now_ms).unwrap()
    }
}

fn open_queue(dir: &tempfile::TempDir) -> SqliteQueue {
    let path = dir.path().join("exoclaw.db");
    drop(crate::ledger::open(&path).unwrap());
    SqliteQueue::open(&path).unwrap()
}

fn new_run(tenant: &str, agent: &str) -> NewRun {
    NewRun {
        id: new_run_id(),
        tenant_id: tenant.into(),
        owner: format!("owner-{tenant}"),
        template: "summarize".into(),
        agent: agent.into(),
        input: r#"{"url":"https://example.com"}"#.into(),
        prompt: "Summarize https://example.com".into(),
        idempotency_key: None,
        priority: 0,
        max_attempts: 3,
        timeout_ms: 60_000,
        byok: false,
        pool: None,
        tier: "tier1".into(),
        session: None,
    }
}

fn error(code: &str) -> RunError {
    RunError {
        code: code.into(),
        message: format!("{code} happened"),
    }
}

fn claimed_ids(claims: &[Claimed]) -> Vec<&str> {
    claims.iter().map(|c| c.run.id.as_str()).collect()
}

#[test]
fn a_run_goes_from_queued_to_running_to_succeeded() {
    let f = Fixture::new();
    let _callers_hold_a_trait_object: &dyn RunQueue = &f.queue;
    let run = f.add_to("t1", "main");
    assert_eq!(
        (run.status, run.attempts, run.available_ms),
        (RunStatus::Queued, 0, T0)
    );
    assert_eq!(f.queue.get(&run.id).unwrap(), Some(run.clone()));

    let claimed = f.claim(T0 + 5).unwrap();
    assert_eq!(claimed.run.id, run.id);
    assert_eq!(claimed.lease.run_id, run.id);
    assert_eq!(
        (claimed.run.status, claimed.run.attempts),
        (RunStatus::Running, 1)
    );
    assert_eq!(claimed.run.started_ms, Some(T0 + 5));
    assert_eq!(
        f.claim(T0 + 6),
        None,
        "its lane is busy, nothing else queued"
    );

    let renewal = f.queue.renew(&claimed.lease, T0 + 20_000, LEASE).unwrap();
    assert_eq!(renewal, Renewal::Held);
    // Renewed: not expired at the first lease's end, expired at the renewed one's.
    assert_eq!(f.queue.expire_leases(T0 + 35_000, &BACKOFF).unwrap(), []);

    let done = f.finish(&claimed.lease, Outcome::Succeeded, T0 + 40_000);
    let done = done.unwrap();
    assert_eq!(
        (done.status, done.finished_ms, done.last_error.clone()),
        (RunStatus::Succeeded, Some(T0 + 40_000), None)
    );
    assert_eq!(f.queue.get(&run.id).unwrap(), Some(done));
    assert_eq!(
        f.queue.renew(&claimed.lease, T0 + 41_000, LEASE).unwrap(),
        Renewal::Lost
    );
    assert_eq!(f.claim(T0 + 50_000), None);
    assert_eq!(f.queue.get("run_unknown").unwrap(), None);
}

#[test]
fn the_queue_keeps_synchronous_full_so_an_accepted_run_survives_a_power_cut() {
    let f = Fixture::new();
    let synchronous: i64 = f
        .queue
        .conn()
        .unwrap()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "FULL");
}

#[test]
fn open_fails_on_a_database_without_the_queue_schema() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteQueue::open(&dir.path().join("bare.db"))
        .err()
        .unwrap();
    assert!(
        err.contains("bare.db") && err.contains("run queue"),
        "{err}"
    );
}

#[test]
fn a_repeated_idempotency_key_answers_the_first_run_or_reports_reuse() {
    let f = Fixture::new();
    let keyed = |tenant: &str, input: &str| NewRun {
        idempotency_key: Some("order-42".into()),
        input: input.into(),
        ..new_run(tenant, "main")
    };
    let first = f.add(keyed("t1", "{}"));

    let again = f.queue.enqueue(keyed("t1", "{}"), None, T0 + 1).unwrap();
    assert_eq!(again, Enqueued::Existing(first.clone()));
    let other_input = f.queue.enqueue(keyed("t1", "{\"a\":1}"), None, T0 + 2);
    assert_eq!(other_input.unwrap(), Enqueued::KeyReused(first.clone()));
    let other_template = NewRun {
        template: "translate".into(),
        ..keyed("t1", "{}")
    };
    let reused = f.queue.enqueue(other_template, None, T0 + 3).unwrap();
    assert_eq!(reused, Enqueued::KeyReused(first.clone()));

    // Still answered once the run has finished; another tenant's key is its own.
    let claimed = f.claim(T0 + 4).unwrap();
    f.finish(&claimed.lease, Outcome::Succeeded, T0 + 5)
        .unwrap();
    let again = f.queue.enqueue(keyed("t1", "{}"), None, T0 + 6).unwrap();
    assert!(
        matches!(&again, Enqueued::Existing(run) if run.id == first.id && run.status == RunStatus::Succeeded),
        "{again:?}"
    );
    f.add(keyed("t2", "{}"));
    let counts = f.queue.counts_by_status().unwrap();
    assert_eq!(counts[0], (RunStatus::Queued, 1), "only t2's run was added");
}

#[test]
fn the_monthly_limit_counts_the_owners_runs_since_its_start() {
    let f = Fixture::new();
    let limit = MonthlyLimit {
        since_ms: T0,
        limit: 2,
    };
    let at = |tenant: &str, now_ms: u64| f.queue.enqueue(new_run(tenant, "a"), Some(limit), now_ms);
    // Before the month: not counted. Two tenants, one owner ("owner-t1" for both below).
    assert!(matches!(at("t1", T0 - 1).unwrap(), Enqueued::Created(_)));
    assert!(matches!(at("t1", T0).unwrap(), Enqueued::Created(_)));
    let other_tenant_same_owner = NewRun {
        owner: "owner-t1".into(),
        ..new_run("t9", "a")
    };
    let second = f
        .queue
        .enqueue(other_tenant_same_owner, Some(limit), T0 + 1);
    assert!(matches!(second.unwrap(), Enqueued::Created(_)));
    assert_eq!(
        at("t1", T0 + 2).unwrap(),
        Enqueued::OverMonthlyLimit { used: 2 }
    );
    assert!(matches!(at("t2", T0 + 3).unwrap(), Enqueued::Created(_)));
    assert!(matches!(
        f.queue.enqueue(new_run("t1", "a"), None, T0 + 4).unwrap(),
        Enqueued::Created(_)
    ));
    let total: u64 = f.queue.counts_by_status().unwrap()[0].1;
    assert_eq!(total, 5, "the refused run was not stored");
    // A lowered limit (a downgrade mid-month) still reports every run used.
    let lowered = MonthlyLimit {
        since_ms: T0,
        limit: 1,
    };
    let refused = f.queue.enqueue(new_run("t1", "a"), Some(lowered), T0 + 5);
    assert_eq!(refused.unwrap(), Enqueued::OverMonthlyLimit { used: 3 });
    // A new month counts from its own start: only the run created at T0 + 4 so far.
    let next_month = MonthlyLimit {
        since_ms: T0 + 3,
        limit: 2,
    };
    let in_next = |now_ms| {
        f.queue
            .enqueue(new_run("t1", "a"), Some(next_month), now_ms)
    };
    assert!(matches!(in_next(T0 + 6).unwrap(), Enqueued::Created(_)));
    assert_eq!(
        in_next(T0 + 7).unwrap(),
        Enqueued::OverMonthlyLimit { used: 2 }
    );
}

#[test]
fn concurrent_enqueues_cannot_both_pass_the_monthly_limit() {
    const THREADS: usize = 8;
    const LIMIT: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    drop(open_queue(&dir));
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            // Each thread its own connection, as separate processes would have.
            let queue = open_queue(&dir);
            let start = start.clone();
            std::thread::spawn(move || {
                let limit = MonthlyLimit {
                    since_ms: T0,
                    limit: LIMIT,
                };
                start.wait();
                (0..4)
                    .map(|_| queue.enqueue(new_run("t1", "a"), Some(limit), T0).unwrap())
                    .filter(|e| matches!(e, Enqueued::Created(_)))
                    .count()
            })
        })
        .collect();
    let created: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(created as u64, LIMIT);
}

#[test]
fn a_lane_runs_one_at_a_time_in_order_while_other_lanes_proceed() {
    let f = Fixture::new();
    let first = f.add_to("t1", "writer");
    let second = f.add_to("t1", "writer");
    let other_lane = f.add_to("t1", "reviewer");

    let a = f.claim(T0).unwrap();
    let b = f.claim(T0).unwrap();
    assert_eq!(claimed_ids(&[a.clone(), b]), [&first.id, &other_lane.id]);
    assert_eq!(f.claim(T0), None, "the second waits for the first");

    f.finish(&a.lease, Outcome::Succeeded, T0 + 1).unwrap();
    assert_eq!(f.claim(T0 + 2).unwrap().run.id, second.id);
}

#[test]
fn a_backing_off_head_blocks_its_lane() {
    let f = Fixture::new();
    let first = f.add_to("t1", "writer");
    let second = f.add_to("t1", "writer");
    let claimed = f.claim(T0).unwrap();
    let retried = f
        .finish(&claimed.lease, Outcome::Retry(error("node_down")), T0 + 100)
        .unwrap();
    assert_eq!(retried.status, RunStatus::Queued);
    assert_eq!(retried.last_error, Some(error("node_down")));
    // The first attempt's backoff: 10 s, jittered down to no less than 5 s.
    let wait = retried.available_ms - (T0 + 100);
    assert!((5_000..=10_000).contains(&wait), "{wait}");

    assert_eq!(f.claim(retried.available_ms - 1), None, "no overtaking");
    let again = f.claim(retried.available_ms).unwrap();
    assert_eq!(
        (again.run.id.as_str(), again.run.attempts),
        (first.id.as_str(), 2)
    );
    assert_eq!(again.run.started_ms, Some(T0), "the first claim");
    f.finish(&again.lease, Outcome::Succeeded, retried.available_ms + 1);
    assert_eq!(f.claim(retried.available_ms + 2).unwrap().run.id, second.id);
}

#[test]
fn a_tenant_with_one_run_is_served_before_a_busy_tenant_is_served_again() {
    let f = Fixture::new();
    for n in 0..100 {
        f.add_to("busy", &format!("agent-{}", n % 10));
    }
    let lone = f.add_to("lone", "main");
    let claims: Vec<_> = (0..3).map(|_| f.claim(T0).unwrap()).collect();
    assert!(
        claims.iter().any(|c| c.run.id == lone.id),
        "{:?}",
        claims.iter().map(|c| &c.run.tenant_id).collect::<Vec<_>>()
    );
}

#[test]
fn tenants_take_turns_least_recently_served_first() {
    let f = Fixture::new();
    for tenant in ["a", "b", "c"] {
        for agent in 0..5 {
            f.add_to(tenant, &agent.to_string());
        }
    }
    let order: Vec<String> = (0..9).map(|_| f.claim(T0).unwrap().run.tenant_id).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
}

#[test]
fn higher_priority_is_claimed_first() {
    let f = Fixture::new();
    let low = f.add_to("free", "main");
    let high = f.add(NewRun {
        priority: 5,
        ..new_run("pro", "main")
    });
    assert_eq!(f.claim(T0).unwrap().run.id, high.id);
    assert_eq!(f.claim(T0).unwrap().run.id, low.id);
}

#[test]
fn a_refused_candidate_is_skipped_and_the_next_one_tried() {
    let f = Fixture::new();
    let shared = |tenant: &str| NewRun {
        owner: "alice".into(),
        priority: 3,
        ..new_run(tenant, "main")
    };
    let first = f.add(shared("alice-1"));
    let second = f.add(shared("alice-2"));
    let bob = f.add_to("bob-1", "main");
    assert_eq!(f.claim(T0).unwrap().run.id, first.id);

    // At most one running run per owner.
    let mut seen = Vec::new();
    let mut one_each = |c: &Candidate<'_>| {
        seen.push((
            c.tenant_id.to_owned(),
            c.owner.to_owned(),
            c.running_for_owner,
            c.priority,
        ));
        c.running_for_owner < 1
    };
    let claimed = f.queue.claim(T0, LEASE, &mut one_each).unwrap().unwrap();
    assert_eq!(claimed.run.id, bob.id);
    assert_eq!(
        seen,
        [
            ("alice-2".into(), "alice".into(), 1, 3),
            ("bob-1".into(), "owner-bob-1".into(), 0, 0)
        ]
    );

    // Everything refused: nothing claimed, nothing changed.
    assert_eq!(f.queue.claim(T0, LEASE, &mut |_| false).unwrap(), None);
    assert_eq!(f.status(&second.id), RunStatus::Queued);
    assert_eq!(f.claim(T0).unwrap().run.id, second.id);
}

#[test]
fn a_stale_lease_changes_nothing() {
    let f = Fixture::new();
    let run = f.add_to("t1", "main");
    let stale = f.claim(T0).unwrap().lease;
    let expired = f.queue.expire_leases(T0 + 30_000, &BACKOFF).unwrap();
    let [Expired::Requeued(requeued)] = expired.as_slice() else {
        panic!("{expired:?}");
    };
    let current = f.claim(requeued.available_ms).unwrap();
    assert_eq!(current.run.id, run.id);
    assert_ne!(current.lease.token, stale.token, "a fresh token per claim");

    let now = requeued.available_ms + 1;
    assert_eq!(f.finish(&stale, Outcome::Succeeded, now), None);
    let failed = Outcome::Failed(error("late"));
    assert_eq!(f.finish(&stale, failed, now), None);
    assert_eq!(f.queue.renew(&stale, now, LEASE).unwrap(), Renewal::Lost);
    assert!(!f.queue.release(&stale, now).unwrap());
    let unchanged = f.queue.get(&run.id).unwrap().unwrap();
    assert_eq!(unchanged, current.run, "still the second claim's");

    let done = f.finish(&current.lease, Outcome::Succeeded, now).unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(f.finish(&current.lease, Outcome::Succeeded, now), None);
}

#[test]
fn an_expired_lease_requeues_with_backoff_then_the_run_dies_when_attempts_are_spent() {
    let f = Fixture::new();
    let run = f.add(NewRun {
        max_attempts: 2,
        ..new_run("t1", "main")
    });
    let next_in_lane = f.add_to("t1", "main");
    f.claim(T0).unwrap();
    assert_eq!(f.queue.expire_leases(T0 + 29_999, &BACKOFF).unwrap(), []);

    let expired = f.queue.expire_leases(T0 + 30_000, &BACKOFF).unwrap();
    let [Expired::Requeued(requeued)] = expired.as_slice() else {
        panic!("{expired:?}");
    };
    assert_eq!((requeued.status, requeued.attempts), (RunStatus::Queued, 1));
    assert_eq!(requeued.last_error.as_ref().unwrap().code, LEASE_EXPIRED);
    let wait = requeued.available_ms - (T0 + 30_000);
    assert!((5_000..=10_000).contains(&wait), "{wait}");
    assert_eq!(f.claim(requeued.available_ms - 1), None, "backing off");

    let second = f.claim(requeued.available_ms).unwrap();
    assert_eq!(
        (second.run.id.as_str(), second.run.attempts),
        (run.id.as_str(), 2)
    );
    let end = requeued.available_ms + 30_000;
    let expired = f.queue.expire_leases(end, &BACKOFF).unwrap();
    let [Expired::Dead(dead)] = expired.as_slice() else {
        panic!("{expired:?}");
    };
    assert_eq!(
        (dead.status, dead.finished_ms, dead.attempts),
        (RunStatus::Dead, Some(end), 2)
    );
    assert_eq!(dead.last_error.as_ref().unwrap().code, LEASE_EXPIRED);
    assert_eq!(
        f.claim(end).unwrap().run.id,
        next_in_lane.id,
        "the lane moves on"
    );
}

#[test]
fn retry_outcomes_die_after_max_attempts_with_their_error() {
    let f = Fixture::new();
    let run = f.add(NewRun {
        max_attempts: 1,
        ..new_run("t1", "main")
    });
    let claimed = f.claim(T0).unwrap();
    let dead = f.finish(&claimed.lease, Outcome::Retry(error("node_down")), T0 + 1);
    let dead = dead.unwrap();
    assert_eq!(dead.id, run.id);
    assert_eq!(
        (dead.status, dead.finished_ms, dead.last_error),
        (RunStatus::Dead, Some(T0 + 1), Some(error("node_down")))
    );
}

#[test]
fn release_requeues_the_run_at_once_without_counting_the_attempt() {
    let f = Fixture::new();
    let run = f.add_to("t1", "main");
    let claimed = f.claim(T0).unwrap();
    assert!(f.queue.release(&claimed.lease, T0 + 7).unwrap());
    let released = f.queue.get(&run.id).unwrap().unwrap();
    assert_eq!(
        (released.status, released.attempts, released.available_ms),
        (RunStatus::Queued, 0, T0 + 7)
    );
    assert_eq!(released.started_ms, Some(T0));
    assert_eq!(f.queue.expire_leases(T0 + 60_000, &BACKOFF).unwrap(), []);
    let again = f.claim(T0 + 7).unwrap();
    assert_eq!(
        (again.run.id.as_str(), again.run.attempts),
        (run.id.as_str(), 1)
    );
}

#[test]
fn cancel_stops_a_queued_run_at_once_and_asks_a_running_one() {
    let f = Fixture::new();
    let running = f.add_to("t1", "main");
    let queued = f.add_to("t1", "main");
    let claimed = f.claim(T0).unwrap();

    let CancelOutcome::Canceled(canceled) = f.queue.cancel(&queued.id, T0 + 1).unwrap() else {
        panic!("queued runs cancel at once");
    };
    assert_eq!(
        (canceled.status, canceled.finished_ms),
        (RunStatus::Canceled, Some(T0 + 1))
    );

    let CancelOutcome::Requested(asked) = f.queue.cancel(&running.id, T0 + 2).unwrap() else {
        panic!("running runs are asked");
    };
    assert_eq!(
        (asked.status, asked.cancel_requested),
        (RunStatus::Running, true)
    );
    assert_eq!(
        f.queue.renew(&claimed.lease, T0 + 3, LEASE).unwrap(),
        Renewal::CancelRequested
    );
    let stopped = f.finish(&claimed.lease, Outcome::Canceled, T0 + 4).unwrap();
    assert_eq!(
        (stopped.status, stopped.finished_ms),
        (RunStatus::Canceled, Some(T0 + 4))
    );

    let finished = f.queue.cancel(&running.id, T0 + 5).unwrap();
    assert_eq!(finished, CancelOutcome::AlreadyFinished(stopped));
    assert_eq!(
        f.queue.cancel("run_nope", T0).unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(f.claim(T0 + 6), None, "the canceled run is not claimed");
}

#[test]
fn a_run_whose_cancel_was_asked_is_canceled_rather_than_requeued() {
    let f = Fixture::new();
    let by_retry = f.add_to("t1", "a");
    let by_release = f.add_to("t1", "b");
    let by_expiry = f.add_to("t1", "c");
    let claims: Vec<_> = (0..3).map(|_| f.claim(T0).unwrap()).collect();
    for run in [&by_retry, &by_release, &by_expiry] {
        assert!(matches!(
            f.queue.cancel(&run.id, T0).unwrap(),
            CancelOutcome::Requested(_)
        ));
    }
    let lease = |id: &str| &claims.iter().find(|c| c.run.id == id).unwrap().lease;

    let retried = f.finish(lease(&by_retry.id), Outcome::Retry(error("x")), T0 + 1);
    assert_eq!(retried.unwrap().status, RunStatus::Canceled);
    assert!(f.queue.release(lease(&by_release.id), T0 + 1).unwrap());
    assert_eq!(f.status(&by_release.id), RunStatus::Canceled);
    let expired = f.queue.expire_leases(T0 + 60_000, &BACKOFF).unwrap();
    let [Expired::Canceled(canceled)] = expired.as_slice() else {
        panic!("{expired:?}");
    };
    assert_eq!(canceled.id, by_expiry.id);
    assert_eq!(f.claim(T0 + 60_000), None);
}

#[test]
fn cancel_tenant_cancels_its_queued_runs_and_asks_its_running_ones() {
    let f = Fixture::new();
    let running = f.add_to("t1", "a");
    let queued = [
        f.add_to("t1", "a"),
        f.add_to("t1", "a"),
        f.add_to("t1", "b"),
    ];
    let claimed = f.claim(T0).unwrap();
    assert_eq!(claimed.run.id, running.id);
    let other = f.add_to("t2", "a");

    assert_eq!(f.queue.cancel_tenant("t1", T0 + 1).unwrap(), 4);
    for run in &queued {
        assert_eq!(f.status(&run.id), RunStatus::Canceled);
    }
    let asked = f.queue.get(&running.id).unwrap().unwrap();
    assert_eq!(
        (asked.status, asked.cancel_requested),
        (RunStatus::Running, true)
    );
    assert_eq!(f.claim(T0 + 2).unwrap().run.id, other.id);
    assert_eq!(f.claim(T0 + 2), None);
    assert_eq!(
        f.queue.cancel_tenant("t1", T0 + 3).unwrap(),
        1,
        "still running"
    );
}

#[test]
fn an_operator_retry_requeues_a_finished_run_at_the_end_of_its_lane() {
    let f = Fixture::new();
    let failing = f.add_to("t1", "main");
    let behind = f.add_to("t1", "main");
    let claimed = f.claim(T0).unwrap();
    f.finish(&claimed.lease, Outcome::Failed(error("bad_input")), T0 + 1);

    let retried = f.queue.retry(&failing.id, T0 + 2).unwrap().unwrap();
    assert_eq!(
        (retried.status, retried.attempts, retried.available_ms),
        (RunStatus::Queued, 0, T0 + 2)
    );
    assert_eq!((retried.started_ms, retried.finished_ms), (None, None));
    assert_eq!(retried.last_error, Some(error("bad_input")), "kept");
    assert_eq!(retried.seq, failing.seq, "the list position stays");

    let next = f.claim(T0 + 3).unwrap();
    assert_eq!(next.run.id, behind.id, "the retried run went behind it");
    f.finish(&next.lease, Outcome::Succeeded, T0 + 4).unwrap();
    let again = f.claim(T0 + 5).unwrap();
    assert_eq!(
        (again.run.id.as_str(), again.run.attempts),
        (failing.id.as_str(), 1)
    );

    assert_eq!(f.queue.retry(&failing.id, T0).unwrap(), None, "running");
    f.finish(&again.lease, Outcome::Succeeded, T0 + 6).unwrap();
    assert_eq!(f.queue.retry(&failing.id, T0).unwrap(), None, "succeeded");
    assert_eq!(f.queue.retry("run_nope", T0).unwrap(), None);
    let queued = f.add_to("t1", "main");
    assert_eq!(f.queue.retry(&queued.id, T0).unwrap(), None, "queued");
}

#[test]
fn retry_clears_a_dead_runs_cancel_request_and_attempts() {
    let f = Fixture::new();
    let run = f.add_to("t1", "main");
    f.claim(T0).unwrap();
    f.queue.cancel(&run.id, T0).unwrap();
    f.queue.expire_leases(T0 + 60_000, &BACKOFF).unwrap();
    assert_eq!(f.status(&run.id), RunStatus::Canceled);
    let retried = f.queue.retry(&run.id, T0 + 60_001).unwrap().unwrap();
    assert_eq!((retried.cancel_requested, retried.attempts), (false, 0));
    assert_eq!(f.claim(T0 + 60_001).unwrap().run.id, run.id);
}

#[test]
fn fail_queued_fails_a_run_that_can_never_run_and_frees_its_lane() {
    let f = Fixture::new();
    let lost_key = f.add(NewRun {
        byok: true,
        ..new_run("t1", "main")
    });
    let behind = f.add_to("t1", "main");
    assert_eq!(f.queue.queued_byok().unwrap(), [lost_key.id.as_str()]);

    let failed = f
        .queue
        .fail_queued(&lost_key.id, error("byok_key_lost"), T0 + 1)
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status, failed.finished_ms, failed.last_error),
        (
            RunStatus::Failed,
            Some(T0 + 1),
            Some(error("byok_key_lost"))
        )
    );
    assert_eq!(f.queue.queued_byok().unwrap(), Vec::<String>::new());
    let claimed = f.claim(T0 + 2).unwrap();
    assert_eq!(claimed.run.id, behind.id);
    let not_queued = f.queue.fail_queued(&behind.id, error("x"), T0 + 3).unwrap();
    assert_eq!(not_queued, None);
    assert_eq!(f.status(&behind.id), RunStatus::Running);
}

#[test]
fn list_pages_newest_first_by_cursor_and_filters() {
    let f = Fixture::new();
    let mut t1: Vec<Run> = (0..5).map(|_| f.add_to("t1", "main")).collect();
    let t2 = f.add_to("t2", "main");
    let claimed = f.claim(T0).unwrap();
    assert_eq!(claimed.run.id, t1[0].id);
    t1.reverse();

    let filter = RunFilter {
        owner: None,
        tenant_id: Some("t1".into()),
        status: None,
        limit: 2,
        before_seq: None,
    };
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = f
            .queue
            .list(&RunFilter {
                before_seq: cursor,
                ..filter.clone()
            })
            .unwrap();
        pages.push(page.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let ids: Vec<_> = t1.iter().map(|r| r.id.clone()).collect();
    assert_eq!(pages, [&ids[0..2], &ids[2..4], &ids[4..5]]);

    let list = |filter: RunFilter| -> Vec<String> {
        let page = f.queue.list(&filter).unwrap();
        page.runs.into_iter().map(|r| r.id).collect()
    };
    let all = RunFilter {
        tenant_id: None,
        limit: 100,
        ..filter
    };
    assert_eq!(list(all.clone()).len(), 6);
    let by_owner = list(RunFilter {
        owner: Some("owner-t2".into()),
        ..all.clone()
    });
    assert_eq!(by_owner, [t2.id.as_str()]);
    let running = list(RunFilter {
        status: Some(RunStatus::Running),
        ..all.clone()
    });
    assert_eq!(running, [claimed.run.id.as_str()]);
    let queued_t1 = list(RunFilter {
        status: Some(RunStatus::Queued),
        tenant_id: Some("t1".into()),
        ..all.clone()
    });
    assert_eq!(queued_t1, &ids[0..4]);
    let clamped = f.queue.list(&RunFilter { limit: 0, ..all }).unwrap();
    assert_eq!(clamped.runs.len(), 1);
    assert_eq!(clamped.next_cursor, Some(t2.seq));
}

#[test]
fn counts_by_status_follow_every_transition() {
    let f = Fixture::new();
    let runs: Vec<_> = (0..5).map(|n| f.add_to(&format!("t{n}"), "a")).collect();
    let claims: Vec<_> = (0..4).map(|_| f.claim(T0).unwrap()).collect();
    f.finish(&claims[0].lease, Outcome::Succeeded, T0);
    f.finish(&claims[1].lease, Outcome::Failed(error("x")), T0);
    f.finish(&claims[2].lease, Outcome::Retry(error("x")), T0);
    f.queue.cancel(&runs[4].id, T0).unwrap();
    use RunStatus::*;
    let expected = [
        (Queued, 1),
        (Running, 1),
        (Succeeded, 1),
        (Failed, 1),
        (Canceled, 1),
        (Dead, 0),
    ];
    assert_eq!(f.queue.counts_by_status().unwrap(), expected);
    f.queue.retry(&runs[4].id, T0).unwrap().unwrap();
    let counts = f.queue.counts_by_status().unwrap();
    assert_eq!((counts[0], counts[4]), ((Queued, 2), (Canceled, 0)));
}

#[test]
fn finished_runs_are_offered_for_pruning_once() {
    let f = Fixture::new();
    let runs: Vec<_> = (0..3).map(|n| f.add_to(&format!("t{n}"), "a")).collect();
    for (n, run) in runs.iter().enumerate().take(2) {
        let claimed = f.claim(T0).unwrap();
        assert_eq!(claimed.run.id, run.id);
        f.finish(&claimed.lease, Outcome::Succeeded, T0 + 10 * (2 - n as u64));
    }
    // runs[1] finished at T0 + 10, runs[0] at T0 + 20, runs[2] is still queued.
    assert_eq!(
        f.queue.finished_before(T0 + 20, 10).unwrap(),
        [runs[1].id.clone()]
    );
    let both = f.queue.finished_before(T0 + 21, 10).unwrap();
    assert_eq!(both, [runs[1].id.clone(), runs[0].id.clone()]);
    assert_eq!(f.queue.finished_before(T0 + 21, 1).unwrap().len(), 1);

    f.queue.mark_pruned(&[runs[1].id.clone()]).unwrap();
    assert_eq!(
        f.queue.finished_before(T0 + 21, 10).unwrap(),
        [runs[0].id.clone()]
    );
}

/// The statements on the claim path and the hot bookkeeping read through indexes, never
/// by scanning `runs` or sorting: a claim stays fast however long the queue is.
#[test]
fn the_claim_path_reads_through_indexes() {
    let f = Fixture::new();
    f.add_to("t1", "a");
    let conn = f.queue.conn().unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let bind = |sql: &str| sql.replace("?1", "'x'").replace("?2", "1");
    let expect = [
        (
            READY_LANES,
            "SCAN run_lanes USING INDEX idx_run_lanes_ready",
        ),
        (
            LANE_HEAD,
            "SEARCH runs USING INDEX idx_runs_lane (tenant_id=? AND agent=?)",
        ),
        (
            RUNNING_FOR_OWNER,
            "SEARCH runs USING COVERING INDEX idx_runs_owner_running (owner=?)",
        ),
        (
            CREATED_SINCE,
            "SEARCH runs USING COVERING INDEX idx_runs_owner_created (owner=? AND created_ms>?)",
        ),
        (
            EXPIRED_LEASES,
            "SEARCH runs USING INDEX idx_runs_status (status=?)",
        ),
    ];
    for (sql, expected) in expect {
        assert_eq!(plan(&bind(sql)), expected, "{sql}");
    }
}
