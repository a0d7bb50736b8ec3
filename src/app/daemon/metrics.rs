//! Prometheus metrics. Counters and the latency histogram live in the daemon and count from
//! its start (as Prometheus expects); gauges (instances by state, queue depth, restarts,
//! container resources) are read from the store and the live samples at each scrape, so
//! they are never stale.

use std::collections::BTreeMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::live::LiveSnapshot;
use crate::app::status::STATES;
use crate::domain::instance::state::InstanceState;
use crate::infra::store::activity::Activity;
use crate::infra::store::instances::InstanceRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub instance: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabel {
    pub instance: String,
    /// `prompt` or `completion`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceStateLabel {
    instance: String,
    state: String,
}

fn instance(name: &str) -> InstanceLabel {
    InstanceLabel {
        instance: name.to_string(),
    }
}

/// The daemon's counters; cheap to clone (every part shares its value).
#[derive(Clone)]
pub struct Metrics {
    messages_in: Family<InstanceLabel, Counter>,
    messages_out: Family<InstanceLabel, Counter>,
    latency: Family<InstanceLabel, Histogram>,
    tokens: Family<TokenLabel, Counter>,
    model_requests: Family<StatusLabel, Counter>,
    web_requests: Family<WebLabel, Counter>,
    channel_in: Family<ChannelLabel, Counter>,
    deliveries: Family<DeliveryLabel, Counter>,
    delivery_latency: Family<ChannelLabel, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub instance: String,
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    pub instance: String,
    pub channel: String,
    /// `sent` or `failed` (a try that failed; the delivery is tried again).
    pub result: String,
}

fn channel(instance: &str, channel: &str) -> ChannelLabel {
    ChannelLabel {
        instance: instance.to_string(),
        channel: channel.to_string(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebLabel {
    pub instance: String,
    /// `ok`, `refused` or `failed`.
    pub result: String,
    /// Why, for `refused` and `failed` (`not_listed`, `address`, `rate`, `binary`, …).
    pub reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages_in: Family::default(),
            messages_out: Family::default(),
            // 5 ms to about 5 min.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 16))
            }),
            tokens: Family::default(),
            model_requests: Family::default(),
            web_requests: Family::default(),
            channel_in: Family::default(),
            deliveries: Family::default(),
            delivery_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 16))
            }),
        }
    }
}

impl Metrics {
    /// Messages delivered to an instance in a turn.
    pub fn messages_in(&self, name: &str, n: u64) {
        self.messages_in.get_or_create(&instance(name)).inc_by(n);
    }

    /// A turn's final answer, `seconds` after its first message arrived.
    pub fn answered(&self, name: &str, seconds: f64) {
        self.messages_out.get_or_create(&instance(name)).inc();
        self.latency.get_or_create(&instance(name)).observe(seconds);
    }

    /// A model request and its outcome (`ok`, `error`, `refused`).
    pub fn model_request(&self, name: &str, status: &str, prompt: u64, completion: u64) {
        self.model_requests
            .get_or_create(&StatusLabel {
                instance: name.to_string(),
                status: status.to_string(),
            })
            .inc();
        for (kind, n) in [("prompt", prompt), ("completion", completion)] {
            self.tokens
                .get_or_create(&TokenLabel {
                    instance: name.to_string(),
                    kind: kind.to_string(),
                })
                .inc_by(n);
        }
    }

    /// A web request through the host and how it ended.
    pub fn web_request(&self, name: &str, result: &str, reason: Option<&str>) {
        self.web_requests
            .get_or_create(&WebLabel {
                instance: name.to_string(),
                result: result.to_string(),
                reason: reason.unwrap_or("").to_string(),
            })
            .inc();
    }

    /// A message taken in through a channel.
    pub fn channel_message_in(&self, instance: &str, name: &str) {
        self.channel_in
            .get_or_create(&channel(instance, name))
            .inc();
    }

    /// A try at sending an answer into a channel; when it was taken, `seconds` after the
    /// answer was recorded.
    pub fn delivery(&self, instance: &str, name: &str, sent_after: Option<f64>) {
        let result = if sent_after.is_some() {
            "sent"
        } else {
            "failed"
        };
        self.deliveries
            .get_or_create(&DeliveryLabel {
                instance: instance.to_string(),
                channel: name.to_string(),
                result: result.to_string(),
            })
            .inc();
        if let Some(seconds) = sent_after {
            self.delivery_latency
                .get_or_create(&channel(instance, name))
                .observe(seconds);
        }
    }

    /// The Prometheus text exposition of everything: the counters, and gauges computed from
    /// the store's `records` and `activity` and the daemon's `live` view.
    pub fn render(
        &self,
        records: &[InstanceRecord],
        activity: &std::collections::HashMap<String, Activity>,
        live: &LiveSnapshot,
    ) -> String {
        let mut reg = Registry::with_prefix("supervisor");
        reg.register(
            "messages_received",
            "Messages delivered to instances in turns",
            self.messages_in.clone(),
        );
        reg.register(
            "messages_answered",
            "Turns answered (final answers recorded)",
            self.messages_out.clone(),
        );
        reg.register(
            "message_latency_seconds",
            "From a turn's first message to its final answer",
            self.latency.clone(),
        );
        reg.register(
            "model_tokens",
            "Model tokens used, by kind",
            self.tokens.clone(),
        );
        reg.register(
            "model_requests",
            "Model requests by outcome (ok, error, refused)",
            self.model_requests.clone(),
        );
        reg.register(
            "web_requests",
            "Web requests through the host by outcome (ok, refused, failed) and reason",
            self.web_requests.clone(),
        );
        reg.register(
            "channel_messages_received",
            "Messages taken in through a channel",
            self.channel_in.clone(),
        );
        reg.register(
            "channel_deliveries",
            "Tries at sending answers into channels, by result (sent, failed)",
            self.deliveries.clone(),
        );
        reg.register(
            "channel_delivery_latency_seconds",
            "From an answer recorded to the channel taking it",
            self.delivery_latency.clone(),
        );

        let up = Gauge::<i64>::default();
        up.set(1);
        reg.register("up", "The daemon is running", up);
        let docker_up = Gauge::<i64>::default();
        docker_up.set(i64::from(live.docker_reachable));
        reg.register("docker_up", "The Docker engine answers", docker_up);

        // Every state is present, 0 when empty: a series that vanishes is not a zero to
        // Prometheus, and alerts on `state="error"` would never resolve.
        let by_state: Family<StateLabel, Gauge> = Family::default();
        let mut counts: BTreeMap<&str, i64> = STATES.iter().map(|s| (s.as_str(), 0)).collect();
        for r in records {
            *counts.entry(r.state.as_str()).or_default() += 1;
        }
        for (state, n) in counts {
            by_state
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(n);
        }
        reg.register("instances", "Instances by state", by_state);

        // One series per instance and state, 1 for the state it is in: the usual shape of an
        // enumeration, so a change of state never leaves a stale series behind.
        let instance_state: Family<InstanceStateLabel, Gauge> = Family::default();
        for r in records {
            let mut states: Vec<InstanceState> = STATES.to_vec();
            if !states.contains(&r.state) {
                states.push(r.state);
            }
            for state in states {
                instance_state
                    .get_or_create(&InstanceStateLabel {
                        instance: r.name.clone(),
                        state: state.to_string(),
                    })
                    .set(i64::from(state == r.state));
            }
        }
        reg.register(
            "instance_state",
            "1 for the state each instance is in, 0 for the others",
            instance_state,
        );

        let restarts: Family<InstanceLabel, Gauge> = Family::default();
        let queued: Family<InstanceLabel, Gauge> = Family::default();
        for r in records {
            restarts
                .get_or_create(&instance(&r.name))
                .set(r.restart_count);
            let depth = activity.get(&r.name).map_or(0, |a| a.queued);
            queued.get_or_create(&instance(&r.name)).set(depth);
        }
        reg.register(
            "instance_restarts",
            "Restarts after failures, as recorded in the store",
            restarts,
        );
        reg.register("queue_depth", "Inbound messages not answered yet", queued);

        let cpu: Family<InstanceLabel, Gauge<f64, std::sync::atomic::AtomicU64>> =
            Family::default();
        let memory: Family<InstanceLabel, Gauge> = Family::default();
        let limit: Family<InstanceLabel, Gauge> = Family::default();
        for (name, s) in &live.samples {
            if let Some(c) = s.cpu_percent {
                cpu.get_or_create(&instance(name)).set(c);
            }
            memory
                .get_or_create(&instance(name))
                .set(s.memory_bytes as i64);
            limit
                .get_or_create(&instance(name))
                .set(s.memory_limit_bytes as i64);
        }
        reg.register(
            "container_cpu_percent",
            "Container CPU use, percent of one CPU",
            cpu,
        );
        reg.register("container_memory_bytes", "Container memory in use", memory);
        reg.register(
            "container_memory_limit_bytes",
            "Container memory limit",
            limit,
        );

        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::instance::state::DesiredState;

    #[test]
    fn text_exposition_has_counters_and_gauges() {
        let m = Metrics::default();
        m.messages_in("alice", 2);
        m.answered("alice", 0.02);
        m.model_request("alice", "ok", 30, 12);
        m.model_request("alice", "error", 0, 0);
        m.web_request("alice", "ok", None);
        m.web_request("alice", "refused", Some("not_listed"));
        m.web_request("alice", "refused", Some("not_listed"));
        let record = InstanceRecord {
            id: 1,
            name: "alice".into(),
            soul: "s".into(),
            created_at: 0,
            desired_state: DesiredState::Running,
            state: InstanceState::Running,
            state_detail: None,
            state_changed_at: None,
            container_id: None,
            runtime_id: None,
            restart_count: 3,
            last_exit_code: None,
            last_activity_at: None,
            restart_pending: false,
            uid: 16_777_217,
            group: None,
        };
        let live = LiveSnapshot {
            docker_reachable: true,
            ..Default::default()
        };
        let text = m.render(&[record], &Default::default(), &live);
        for line in [
            "supervisor_messages_received_total{instance=\"alice\"} 2",
            "supervisor_messages_answered_total{instance=\"alice\"} 1",
            "supervisor_model_tokens_total{instance=\"alice\",kind=\"prompt\"} 30",
            "supervisor_model_requests_total{instance=\"alice\",status=\"error\"} 1",
            "supervisor_instances{state=\"running\"} 1",
            "supervisor_instances{state=\"error\"} 0",
            "supervisor_instances{state=\"crash-loop\"} 0",
            "supervisor_instance_state{instance=\"alice\",state=\"running\"} 1",
            "supervisor_instance_state{instance=\"alice\",state=\"stopped\"} 0",
            "supervisor_instance_restarts{instance=\"alice\"} 3",
            "supervisor_queue_depth{instance=\"alice\"} 0",
            "supervisor_docker_up 1",
            "supervisor_web_requests_total{instance=\"alice\",result=\"ok\",reason=\"\"} 1",
            "supervisor_web_requests_total{instance=\"alice\",result=\"refused\",reason=\"not_listed\"} 2",
            "supervisor_message_latency_seconds_count{instance=\"alice\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
