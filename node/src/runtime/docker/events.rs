//! `changes()`: Docker's event stream for one node's containers, reduced to
//! nudges. The stream outlives engine restarts: when it breaks it waits for
//! the engine with back-off, then nudges once, since whatever happened while
//! it was away was missed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::runtime::labels;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Container events that change what `list` reports. Exec events (one per
/// probe) and attach/resize events do not, so they are not asked for.
const STATE_EVENTS: [&str; 7] = ["create", "start", "die", "oom", "destroy", "pause", "unpause"];

/// Each event also drops its container from `inspected` (the runtime's
/// inspect cache), so the list the nudge leads to inspects it afresh.
pub(super) fn changes(docker: Docker, node: &str, inspected: super::InspectCache) -> BoxStream<'static, ()> {
    let filters: HashMap<&str, Vec<String>> = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("label", vec![format!("{}={node}", labels::NODE)]),
        ("event", STATE_EVENTS.map(String::from).to_vec()),
    ]);
    let options = EventsOptionsBuilder::default().filters(&filters).build();
    let watch = Watch { docker, options, events: None, broken: false, backoff: MIN_BACKOFF, inspected };
    futures::stream::unfold(watch, |mut watch| async move {
        watch.next_change().await;
        Some(((), watch))
    })
    .boxed()
}

struct Watch {
    docker: Docker,
    options: bollard::query_parameters::EventsOptions,
    events: Option<BoxStream<'static, Result<EventMessage, DockerError>>>,
    /// The last subscription ended: the next successful one nudges at once.
    broken: bool,
    backoff: Duration,
    inspected: super::InspectCache,
}

impl Watch {
    async fn next_change(&mut self) {
        loop {
            if self.events.is_none() {
                if self.broken {
                    if let Err(e) = self.docker.ping().await {
                        tracing::debug!(error = %e, backoff = ?self.backoff, "container engine still unreachable");
                        self.back_off().await;
                        continue;
                    }
                    tracing::info!("container engine reachable again; resubscribed to its events");
                    // The back-off is kept until an event arrives: an engine
                    // that answers pings but refuses the subscription gets a
                    // nudge every few seconds, not a storm.
                    self.broken = false;
                    self.inspected.lock().expect("inspect cache").clear();
                    self.events = Some(self.docker.events(Some(self.options.clone())).boxed());
                    return;
                }
                self.events = Some(self.docker.events(Some(self.options.clone())).boxed());
            }
            let next = self.events.as_mut().expect("subscribed above").next().await;
            match next {
                Some(Ok(event)) => {
                    if let Some(id) = event.actor.and_then(|a| a.id) {
                        self.inspected.lock().expect("inspect cache").remove(&id);
                    }
                    self.backoff = MIN_BACKOFF;
                    return;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "container event stream broke"),
                None => tracing::warn!("container event stream ended"),
            }
            self.events = None;
            self.broken = true;
            self.back_off().await;
        }
    }

    async fn back_off(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
