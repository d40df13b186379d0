//! Live run events: status changes and the output as it streams from the node, for anyone
//! watching a run (`GET /api/runs/{id}/events`).
//!
//! In memory only, per process: the durable truth is the run's row. A watcher first reads the
//! row, then follows events; it also re-reads the row now and then, so a change made by another
//! process (an operator's `exoclaw runs cancel`, a lease that expired after a crash) still
//! reaches it. A channel is made when someone publishes or watches, and dropped when its run
//! reaches a final state; a slow watcher that falls behind skips events (it is told so) rather
//! than holding memory.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// Events a watcher may fall behind by before it skips some.
const CHANNEL_CAPACITY: usize = 1024;
/// Most output text kept for a watcher who joins a run midway (older text is cut).
const MAX_KEPT_OUTPUT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run's status changed.
    Status {
        status: String,
        attempt: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<EventError>,
        at_ms: u64,
    },
    /// More output text from the node, in this attempt.
    Output { delta: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventError {
    pub code: String,
    pub message: String,
}

struct Channel {
    sender: broadcast::Sender<RunEvent>,
    /// The current attempt's output so far.
    output: String,
}

#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, Channel>>,
}

impl EventHub {
    pub fn new() -> EventHub {
        EventHub::default()
    }

    fn with<T>(&self, run_id: &str, f: impl FnOnce(&mut Channel) -> T) -> T {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = channels
            .entry(run_id.to_owned())
            .or_insert_with(|| Channel {
                sender: broadcast::channel(CHANNEL_CAPACITY).0,
                output: String::new(),
            });
        f(channel)
    }

    /// Publishes a status change; a final one closes the run's channel after it is sent.
    pub fn status(&self, run_id: &str, event: RunEvent, terminal: bool) {
        self.with(run_id, |channel| {
            if matches!(&event, RunEvent::Status { status, .. } if status == "running") {
                channel.output.clear();
            }
            let _ = channel.sender.send(event);
        });
        if terminal {
            self.channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(run_id);
        }
    }

    /// Publishes output text.
    pub fn output(&self, run_id: &str, delta: String) {
        self.with(run_id, |channel| {
            if channel.output.len() + delta.len() <= MAX_KEPT_OUTPUT {
                channel.output.push_str(&delta);
            }
            let _ = channel.sender.send(RunEvent::Output { delta });
        });
    }

    /// Starts watching: the output so far and the events from now on.
    pub fn watch(&self, run_id: &str) -> (String, broadcast::Receiver<RunEvent>) {
        self.with(run_id, |channel| {
            (channel.output.clone(), channel.sender.subscribe())
        })
    }

    /// Forgets a channel nobody publishes to any more (a watcher of a run that ended elsewhere).
    pub fn forget_if_unwatched(&self, run_id: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels
            .get(run_id)
            .is_some_and(|c| c.sender.receiver_count() == 0)
        {
            channels.remove(run_id);
        }
    }

    /// Channels open now (a gauge for tests and metrics).
    pub fn open_channels(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: &str) -> RunEvent {
        RunEvent::Status {
            status: s.to_owned(),
            attempt: 1,
            error: None,
            at_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_late_watcher_gets_the_output_so_far_then_the_rest() {
        let hub = EventHub::new();
        hub.status("run_a", status("running"), false);
        hub.output("run_a", "Hel".into());
        let (so_far, mut events) = hub.watch("run_a");
        assert_eq!(so_far, "Hel");
        hub.output("run_a", "lo".into());
        hub.status("run_a", status("succeeded"), true);
        assert_eq!(
            events.recv().await.unwrap(),
            RunEvent::Output { delta: "lo".into() }
        );
        assert_eq!(events.recv().await.unwrap(), status("succeeded"));
        assert!(
            events.recv().await.is_err(),
            "closed after the final status"
        );
        assert_eq!(hub.open_channels(), 0);
    }

    #[test]
    fn a_new_attempt_starts_with_empty_output() {
        let hub = EventHub::new();
        hub.status("run_a", status("running"), false);
        hub.output("run_a", "partial".into());
        hub.status("run_a", status("queued"), false);
        hub.status("run_a", status("running"), false);
        assert_eq!(hub.watch("run_a").0, "");
    }

    #[test]
    fn unwatched_channels_are_forgotten() {
        let hub = EventHub::new();
        let (_, events) = hub.watch("run_a");
        hub.forget_if_unwatched("run_a");
        assert_eq!(hub.open_channels(), 1, "still watched");
        drop(events);
        hub.forget_if_unwatched("run_a");
        assert_eq!(hub.open_channels(), 0);
    }
}
