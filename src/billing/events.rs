//! Stripe event payloads → the subscription changes ExoClaw cares about. Pure parsing.
//!
//! Handled: `checkout.session.completed` (the user is `client_reference_id`; remember
//! `customer` and `subscription`), `customer.subscription.created/updated/deleted`,
//! `invoice.payment_failed` (→ `past_due`) and `invoice.paid` / `invoice.payment_succeeded`
//! (→ `active`). Every other type is acknowledged and ignored. A tier comes from the object's
//! `metadata.tier`, else from the configured price or payment-link maps.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::Stripe;

/// A verified event, reduced to what changes subscription state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    /// Unix seconds; orders deliveries (Stripe may deliver out of order).
    pub created: i64,
    pub change: Option<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A checkout finished: `user` subscribed (or paid) for `tier`.
    Checkout {
        user: String,
        subscription_id: String,
        customer_id: Option<String>,
        tier: Option<String>,
    },
    /// A subscription's status or plan changed (`deleted` arrives as status `canceled`).
    Subscription {
        subscription_id: String,
        customer_id: Option<String>,
        status: String,
        tier: Option<String>,
    },
    /// A renewal payment failed: the subscription is `past_due`.
    PaymentFailed { subscription_id: String },
    /// A payment went through: the subscription is `active` again.
    PaymentSucceeded { subscription_id: String },
}

/// Parses an event body; `Err` names what is missing (answered 400).
pub fn parse(body: &[u8], stripe: &Stripe, signed_at: i64) -> Result<StripeEvent, String> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let id = event["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or("the event has no id")?
        .to_owned();
    let kind = event["type"].as_str().unwrap_or("").to_owned();
    let created = event["created"].as_i64().unwrap_or(signed_at);
    let object = &event["data"]["object"];
    let change = match kind.as_str() {
        "checkout.session.completed" => checkout(object, stripe)?,
        "customer.subscription.created" | "customer.subscription.updated" => {
            subscription(object, stripe, None)?
        }
        "customer.subscription.deleted" => subscription(object, stripe, Some("canceled"))?,
        "invoice.payment_failed" => invoice_subscription(object)
            .map(|subscription_id| Change::PaymentFailed { subscription_id }),
        "invoice.paid" | "invoice.payment_succeeded" => invoice_subscription(object)
            .map(|subscription_id| Change::PaymentSucceeded { subscription_id }),
        _ => None,
    };
    Ok(StripeEvent {
        id,
        kind,
        created,
        change,
    })
}

fn checkout(session: &Value, stripe: &Stripe) -> Result<Option<Change>, String> {
    let user = session["client_reference_id"]
        .as_str()
        .filter(|u| crate::headers::is_well_formed_id(u.as_bytes()))
        .ok_or("checkout.session.completed needs client_reference_id set to the user id")?
        .to_owned();
    let session_id = text(&session["id"]).ok_or("the checkout session has no id")?;
    let tier = metadata_tier(session)
        .or_else(|| mapped(&session["payment_link"], &stripe.payment_link_tiers))
        .or_else(|| {
            session["line_items"]["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|item| mapped(&item["price"]["id"], &stripe.price_tiers))
        });
    Ok(Some(Change::Checkout {
        user,
        subscription_id: text(&session["subscription"]).unwrap_or(session_id),
        customer_id: text(&session["customer"]),
        tier,
    }))
}

fn subscription(
    sub: &Value,
    stripe: &Stripe,
    forced_status: Option<&str>,
) -> Result<Option<Change>, String> {
    let subscription_id = text(&sub["id"]).ok_or("the subscription has no id")?;
    let status = forced_status
        .map(str::to_owned)
        .or_else(|| text(&sub["status"]))
        .ok_or("the subscription has no status")?;
    let tier = metadata_tier(sub).or_else(|| {
        sub["items"]["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|item| mapped(&item["price"]["id"], &stripe.price_tiers))
    });
    Ok(Some(Change::Subscription {
        subscription_id,
        customer_id: text(&sub["customer"]),
        status,
        tier,
    }))
}

/// An invoice's subscription id (older API versions put it at the top, newer under `parent`).
fn invoice_subscription(invoice: &Value) -> Option<String> {
    text(&invoice["subscription"])
        .or_else(|| text(&invoice["parent"]["subscription_details"]["subscription"]))
}

fn metadata_tier(object: &Value) -> Option<String> {
    text(&object["metadata"]["tier"])
}

fn mapped(id: &Value, map: &BTreeMap<String, String>) -> Option<String> {
    id.as_str().and_then(|id| map.get(id)).cloned()
}

/// A non-empty string field (Stripe sends expanded objects as `{ "id": … }`; both are read).
fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value["id"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn stripe() -> Stripe {
        Stripe {
            webhook_secret_env: "S".into(),
            tolerance: Duration::from_secs(300),
            past_due_grace: Duration::from_secs(0),
            price_tiers: [("price_t2".to_owned(), "tier2".to_owned())].into(),
            payment_link_tiers: [("plink_t1".to_owned(), "tier1".to_owned())].into(),
            upgrade_url: None,
        }
    }

    fn event(kind: &str, object: Value) -> Vec<u8> {
        json!({ "id": "evt_1", "type": kind, "created": 100, "data": { "object": object } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn checkout_takes_tier_from_metadata_then_payment_link() {
        let body = event(
            "checkout.session.completed",
            json!({ "id": "cs_1", "client_reference_id": "ana", "customer": "cus_1",
                    "subscription": "sub_1", "metadata": { "tier": "tier3" } }),
        );
        let e = parse(&body, &stripe(), 0).unwrap();
        assert_eq!(e.created, 100);
        assert_eq!(
            e.change,
            Some(Change::Checkout {
                user: "ana".into(),
                subscription_id: "sub_1".into(),
                customer_id: Some("cus_1".into()),
                tier: Some("tier3".into()),
            })
        );
        let body = event(
            "checkout.session.completed",
            json!({ "id": "cs_2", "client_reference_id": "bob", "payment_link": "plink_t1" }),
        );
        match parse(&body, &stripe(), 0).unwrap().change {
            Some(Change::Checkout {
                tier,
                subscription_id,
                ..
            }) => {
                assert_eq!(tier.as_deref(), Some("tier1"));
                assert_eq!(
                    subscription_id, "cs_2",
                    "a one-off payment keys on the session"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscription_events_map_prices_and_deletion() {
        let body = event(
            "customer.subscription.updated",
            json!({ "id": "sub_1", "status": "past_due",
                    "items": { "data": [ { "price": { "id": "price_t2" } } ] } }),
        );
        assert_eq!(
            parse(&body, &stripe(), 0).unwrap().change,
            Some(Change::Subscription {
                subscription_id: "sub_1".into(),
                customer_id: None,
                status: "past_due".into(),
                tier: Some("tier2".into()),
            })
        );
        let body = event(
            "customer.subscription.deleted",
            json!({ "id": "sub_1", "status": "active" }),
        );
        match parse(&body, &stripe(), 0).unwrap().change {
            Some(Change::Subscription { status, .. }) => assert_eq!(status, "canceled"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invoices_and_unknown_types() {
        let body = event("invoice.payment_failed", json!({ "subscription": "sub_9" }));
        assert_eq!(
            parse(&body, &stripe(), 0).unwrap().change,
            Some(Change::PaymentFailed {
                subscription_id: "sub_9".into()
            })
        );
        let body = event("charge.refunded", json!({}));
        assert_eq!(parse(&body, &stripe(), 0).unwrap().change, None);
        assert!(parse(b"{}", &stripe(), 0).is_err());
        assert!(parse(b"not json", &stripe(), 0).is_err());
        let missing_user = event("checkout.session.completed", json!({ "id": "cs_1" }));
        assert!(parse(&missing_user, &stripe(), 0)
            .unwrap_err()
            .contains("client_reference_id"));
    }
}
