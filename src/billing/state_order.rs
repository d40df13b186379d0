//! Which of two subscription states wins: the rule that makes out-of-order and same-second
//! Stripe deliveries converge on one state, whatever order they arrive in. Pure; `store` applies
//! it inside the webhook's transaction.
//!
//! Stripe delivers out of order, so a subscription remembers the `created` time (Unix seconds)
//! of the event that set its state, and an event replaces that state when:
//!
//! 1. it is newer (`created` later): it wins, whatever the statuses;
//! 2. it is older: it loses (`stale`);
//! 3. it has the same `created` second: the status further along a subscription's life wins,
//!    in this order of precedence, lowest first:
//!    `incomplete` < `trialing` < `active` < `past_due` < `unpaid` < `paused` < any status
//!    ExoClaw does not know < `incomplete_expired` < `canceled`.
//!    Unknown statuses rank among themselves by name. At the same second and the same status,
//!    the event applies (it can only fill in or change the tier and customer).
//!
//! So an equal-time event never undoes a terminal state (`canceled`, which is also what
//! `customer.subscription.deleted` sets, and `incomplete_expired`), never restores the tier of an
//! unpaid or paused subscription, and a checkout's `active` still replaces the `incomplete` that
//! Stripe sends in the same second. Only a strictly newer event revives a canceled subscription.

use std::cmp::Ordering;

/// A subscription state as the store knows it: the status and the `created` second of the event
/// that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateAt<'a> {
    pub status: &'a str,
    pub created: i64,
}

/// Whether `incoming` replaces `known` (see the module docs for the rule).
pub fn replaces(incoming: StateAt, known: StateAt) -> bool {
    match incoming.created.cmp(&known.created) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => precedence(incoming.status) >= precedence(known.status),
    }
}

/// Where `status` stands at equal time: higher wins. Unknown statuses sort by name among
/// themselves, so two different statuses never tie.
fn precedence(status: &str) -> (u8, &str) {
    let rank = match status {
        "incomplete" => 0,
        "trialing" => 1,
        "active" => 2,
        "past_due" => 3,
        "unpaid" => 4,
        "paused" => 5,
        "incomplete_expired" => 7,
        "canceled" => 8,
        _ => 6,
    };
    (rank, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: &str, created: i64) -> StateAt<'_> {
        StateAt { status, created }
    }

    /// Lowest precedence first, with an unknown status where it ranks.
    const ORDER: [&str; 9] = [
        "incomplete",
        "trialing",
        "active",
        "past_due",
        "unpaid",
        "paused",
        "some_future_status",
        "incomplete_expired",
        "canceled",
    ];

    #[test]
    fn time_decides_before_status() {
        assert!(
            replaces(at("active", 11), at("canceled", 10)),
            "newer revives"
        );
        assert!(
            !replaces(at("canceled", 9), at("active", 10)),
            "older is stale"
        );
    }

    #[test]
    fn at_equal_time_a_cancellation_is_never_undone() {
        for status in ORDER.iter().filter(|s| **s != "canceled") {
            assert!(!replaces(at(status, 10), at("canceled", 10)), "{status}");
            assert!(replaces(at("canceled", 10), at(status, 10)), "{status}");
        }
    }

    #[test]
    fn at_equal_time_exactly_one_of_two_different_statuses_wins_whatever_the_order() {
        for (i, lower) in ORDER.iter().enumerate() {
            for higher in &ORDER[i + 1..] {
                assert!(
                    replaces(at(higher, 10), at(lower, 10)),
                    "{higher} over {lower}"
                );
                assert!(
                    !replaces(at(lower, 10), at(higher, 10)),
                    "{lower} under {higher}"
                );
            }
        }
        assert!(
            replaces(at("zz_new", 10), at("aa_new", 10)),
            "unknowns by name"
        );
        assert!(!replaces(at("aa_new", 10), at("zz_new", 10)));
    }

    #[test]
    fn at_equal_time_the_same_status_applies() {
        assert!(replaces(at("active", 10), at("active", 10)));
    }
}
