//! order-service's domain metrics: `orders_created_total`, `order_amount` (currency units),
//! `order_status_transitions_total{from,to}`, `user_lookups_total{outcome}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use rust_decimal::prelude::ToPrimitive;
use service_kit::metrics::Registry;

use crate::domain::{Money, OrderStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub from: &'static str,
    pub to: &'static str,
}

/// Order totals in currency units, from a coffee to a pallet.
const AMOUNT_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 10_000.0, 100_000.0,
];

#[derive(Clone)]
pub struct OrderMetrics {
    created: Counter,
    amount: Histogram,
    transitions: Family<TransitionLabels, Counter>,
    pub user_lookups: Family<OutcomeLabel, Counter>,
}

impl OrderMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            created: Counter::default(),
            amount: Histogram::new(AMOUNT_BUCKETS),
            transitions: Family::default(),
            user_lookups: Family::default(),
        };
        registry.register("orders_created", "Orders created", metrics.created.clone());
        registry.register(
            "order_amount",
            "Total amount of created orders, in currency units",
            metrics.amount.clone(),
        );
        registry.register(
            "order_status_transitions",
            "Order status changes by from and to status",
            metrics.transitions.clone(),
        );
        registry.register(
            "user_lookups",
            "Checks against user-service by outcome (found, not_found, unavailable)",
            metrics.user_lookups.clone(),
        );
        metrics
    }

    pub fn order_created(&self, total: Money) {
        self.created.inc();
        // A histogram is approximate by nature; the float is only for the buckets.
        self.amount
            .observe(total.amount().to_f64().unwrap_or(f64::MAX));
    }

    pub fn status_changed(&self, from: OrderStatus, to: OrderStatus) {
        self.transitions
            .get_or_create(&TransitionLabels {
                from: from.as_str(),
                to: to.as_str(),
            })
            .inc();
    }
}
