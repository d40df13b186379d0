//! Billing: Stripe webhooks and the subscription state that sets each user's tier.

pub mod stripe_signature;
