//! The service's domain metrics (names in docs/CONTRACTS.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use service_kit::metrics::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub channel: String,
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabel {
    pub r#type: String,
}

/// Seconds from the event to the relay's acceptance: seconds to minutes, not microseconds.
const DELIVERY_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0,
];

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

#[derive(Clone)]
pub struct NotificationMetrics {
    /// `notifications_sent_total{channel,type}`: mails the relay accepted.
    pub sent: Family<DeliveryLabels, Counter>,
    /// `notifications_failed_total{channel,type}`: failed send attempts.
    pub failed: Family<DeliveryLabels, Counter>,
    /// `notification_delivery_seconds{channel}`: event time → relay accepted.
    pub delivery: Family<ChannelLabel, Histogram, fn() -> Histogram>,
    /// `events_consumed_total{type}`: events handled and acknowledged.
    pub consumed: Family<EventTypeLabel, Counter>,
    /// `consumer_redeliveries_total`: deliveries after the first.
    pub redeliveries: Counter,
    /// `consumer_dead_letters_total`: events parked in `dead_letters`.
    pub dead_letters: Counter,
    /// `consumer_pending`: messages the stream holds that the consumer has not yet received.
    pub pending: Gauge,
}

impl NotificationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            sent: Family::default(),
            failed: Family::default(),
            delivery: Family::new_with_constructor(delivery_histogram as fn() -> Histogram),
            consumed: Family::default(),
            redeliveries: Counter::default(),
            dead_letters: Counter::default(),
            pending: Gauge::default(),
        };
        registry.register(
            "notifications_sent",
            "Notifications delivered, by channel and type",
            metrics.sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Failed delivery attempts, by channel and type",
            metrics.failed.clone(),
        );
        registry.register(
            "notification_delivery_seconds",
            "Time from the event to the mail relay accepting the notification",
            metrics.delivery.clone(),
        );
        registry.register(
            "events_consumed",
            "Events handled and acknowledged, by CloudEvents type",
            metrics.consumed.clone(),
        );
        registry.register(
            "consumer_redeliveries",
            "Event deliveries after the first",
            metrics.redeliveries.clone(),
        );
        registry.register(
            "consumer_dead_letters",
            "Events parked in dead_letters after exhausting their deliveries",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "consumer_pending",
            "Messages in the stream not yet delivered to the consumer",
            metrics.pending.clone(),
        );
        // Every series exists from the start at 0, so rates and ratios have data before the
        // first failure and dashboards can tell "none" from "not exported".
        for kind in KNOWN_KINDS.iter().chain([&CUSTOM_KIND]) {
            let _ = metrics
                .sent
                .get_or_create(&labels(crate::mail::CHANNEL, kind));
            let _ = metrics
                .failed
                .get_or_create(&labels(crate::mail::CHANNEL, kind));
        }
        metrics
    }

    pub fn sent(&self, channel: &str, kind: &str) {
        self.sent.get_or_create(&labels(channel, kind)).inc();
    }

    pub fn failed(&self, channel: &str, kind: &str) {
        self.failed.get_or_create(&labels(channel, kind)).inc();
    }
}

const KNOWN_KINDS: [&str; 5] = [
    crate::domain::kind::WELCOME,
    crate::domain::kind::PROFILE_UPDATED,
    crate::domain::kind::ACCOUNT_DELETED,
    crate::domain::kind::ORDER_CREATED,
    crate::domain::kind::ORDER_STATUS,
];
/// Admins name the type of the notifications they create; those free-form names all count
/// under one label value so they cannot blow up the number of series.
const CUSTOM_KIND: &str = "custom";

fn labels(channel: &str, kind: &str) -> DeliveryLabels {
    let kind = if KNOWN_KINDS.contains(&kind) {
        kind
    } else {
        CUSTOM_KIND
    };
    DeliveryLabels {
        channel: channel.into(),
        r#type: kind.into(),
    }
}
