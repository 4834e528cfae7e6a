//! Wake-ups: a store tells the loops that claim work when claimable work arrived.
//!
//! Workers and dispatchers poll their queue, but a poll every second means a job or
//! an approved message waits up to that second. With wake-ups, a write that makes
//! work claimable (a job enqueued or put back, an outbox message enqueued, released
//! by an approval or put back) signals its [`WakeTopic`], and every
//! [`WakeSubscription`] of that topic returns from its wait at once; the loop claims
//! again. Polling stays the safety net: a subscription's wait always ends after its
//! poll interval, so a lost signal delays work by at most that interval, never more.
//!
//! A signal says only "something may be claimable": a woken loop that claims nothing
//! (another loop was faster, the work is not due yet, or it belongs to tenants the
//! loop does not serve) waits again. Signals are never queued per item: any number of
//! signals while a loop is busy make its next wait return once.
//!
//! [`Wakeups`] is the handle a store hands out through [`WakeSource::wakeups`]: the
//! memory store signals in-process after each write commits; the PostgreSQL store
//! sends `NOTIFY` in the writing transaction (a rolled-back write wakes nobody) and
//! one listener per store fans the notifications out, signalling every topic after
//! each (re)connect so nothing notified while it was disconnected waits for a poll.
//! [`Wakeups::polling`] never wakes anyone, for stores without signals.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::clock::{Clock, SystemClock};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Due times further ahead than this arm no timer: the loops' polls find that work.
pub const MAX_WAKE_TIMER: Duration = Duration::from_secs(3600);
/// At most this many due times wait for their timer per store; later ones are left
/// to the polls.
const MAX_TIMERS: usize = 4096;

/// What kind of work a signal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WakeTopic {
    /// A job became claimable (enqueued, retried, released or reaped).
    Jobs,
    /// An outbox message became claimable (enqueued, released by an approval,
    /// rescheduled, reaped).
    Outbox,
}

impl WakeTopic {
    /// Every topic.
    pub const ALL: [Self; 2] = [Self::Jobs, Self::Outbox];

    /// The topic's name (`"jobs"`, `"outbox"`), as backends name their channels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jobs => "jobs",
            Self::Outbox => "outbox",
        }
    }
}

/// A store that can tell claim loops when work arrives.
///
/// Part of [`Store`](super::Store), so an engine built over an `Arc<DynStore>` asks
/// its store for the handle and subscribes its worker and dispatcher.
pub trait WakeSource {
    /// The store's wake-up handle. Every write of the store that makes a job or an
    /// outbox message claimable MUST signal its topic on the handle after the write
    /// is durable (committed), and a write that does not take effect (refused, rolled
    /// back) SHOULD signal nothing. A store without signals returns
    /// [`Wakeups::polling`]; its loops then find work by their poll alone. Cheap to
    /// call; every call returns a handle to the same signals.
    fn wakeups(&self) -> Wakeups;
}

/// What keeps a backend's signals flowing, such as a database listener task.
///
/// [`Wakeups::subscribe`] calls [`ensure_running`](Self::ensure_running) every time,
/// so a feed started lazily (or stopped with the runtime that ran it) is started
/// again when a loop subscribes. Dropping the last handle of the [`Wakeups`] drops
/// the feed, which should stop whatever it started.
pub trait WakeFeed: Send + Sync + fmt::Debug + 'static {
    /// Starts the feed if it is not running; it signals through `wakeups` (which it
    /// must hold weakly, so the signals can be dropped). Must not block.
    fn ensure_running(&self, wakeups: WeakWakeups);
}

/// The signals of one store, one per [`WakeTopic`]. Cheap to clone; clones share
/// the signals.
#[derive(Clone)]
pub struct Wakeups {
    hub: Option<Arc<Hub>>,
}

struct Hub {
    jobs: watch::Sender<u64>,
    outbox: watch::Sender<u64>,
    feed: Option<Arc<dyn WakeFeed>>,
    timers: Arc<Timers>,
}

/// Due times waiting to signal their topic, and the task that sleeps until the first.
#[derive(Default)]
struct Timers {
    state: Mutex<TimerState>,
    /// Re-arms the task when an earlier due time arrives.
    changed: Notify,
}

#[derive(Default)]
struct TimerState {
    due: BTreeSet<(Instant, u64, WakeTopic)>,
    /// Tie-breaker, so equal instants of one topic are kept apart.
    seq: u64,
    task: Option<JoinHandle<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let mut state = self
            .timers
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = state.task.take() {
            task.abort();
        }
    }
}

impl Hub {
    fn sender(&self, topic: WakeTopic) -> &watch::Sender<u64> {
        match topic {
            WakeTopic::Jobs => &self.jobs,
            WakeTopic::Outbox => &self.outbox,
        }
    }
}

impl fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Wakeups");
        match &self.hub {
            None => s.field("live", &false),
            Some(hub) => s.field("live", &true).field("feed", &hub.feed),
        };
        s.finish()
    }
}

impl Default for Wakeups {
    /// Live in-process signals ([`Wakeups::new`]).
    fn default() -> Self {
        Self::new()
    }
}

impl Wakeups {
    /// Live in-process signals: [`wake`](Self::wake) wakes every subscription of the
    /// topic in this process.
    #[must_use]
    pub fn new() -> Self {
        Self::with_hub(None)
    }

    /// Live signals kept flowing by `feed` (for example a database listener), which
    /// is started when a loop subscribes.
    #[must_use]
    pub fn with_feed(feed: Arc<dyn WakeFeed>) -> Self {
        Self::with_hub(Some(feed))
    }

    fn with_hub(feed: Option<Arc<dyn WakeFeed>>) -> Self {
        Self {
            hub: Some(Arc::new(Hub {
                jobs: watch::Sender::new(0),
                outbox: watch::Sender::new(0),
                feed,
                timers: Arc::default(),
            })),
        }
    }

    /// No signals: subscriptions only ever time out (pure polling).
    #[must_use]
    pub fn polling() -> Self {
        Self { hub: None }
    }

    /// Whether signals can arrive (false for [`polling`](Self::polling)).
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.hub.is_some()
    }

    /// Wakes every subscription of `topic` (a waiting one at once, a busy one at its
    /// next wait).
    pub fn wake(&self, topic: WakeTopic) {
        if let Some(hub) = &self.hub {
            hub.sender(topic).send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every subscription of `topic` now and, when `due` is still ahead (by the
    /// system clock, at most [`MAX_WAKE_TIMER`]), again when it comes: for work
    /// written to start later (a retry, a scheduled message). The wake now costs a
    /// claim that may find nothing, and keeps hosts whose clock is not the system's
    /// (tests with a manual clock) from waiting for a timer. The timer runs on the
    /// current Tokio runtime; outside one, only the wake now happens.
    pub fn wake_at(&self, topic: WakeTopic, due: DateTime<Utc>) {
        self.wake(topic);
        let Some(hub) = &self.hub else {
            return;
        };
        // Timers run on the system's time, whatever clock the writer used.
        let Some(ahead) = (due - SystemClock.now())
            .to_std()
            .ok()
            .filter(|ahead| !ahead.is_zero() && *ahead <= MAX_WAKE_TIMER)
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A millisecond late rather than early: a loop woken before the due time
        // claims nothing and would wait for its poll.
        let at = Instant::now() + ahead + Duration::from_millis(1);
        let mut state = hub
            .timers
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.due.len() >= MAX_TIMERS {
            return;
        }
        let first = state.due.first().map(|(first, _, _)| *first);
        state.seq = state.seq.wrapping_add(1);
        let seq = state.seq;
        state.due.insert((at, seq, topic));
        if state.task.as_ref().is_none_or(JoinHandle::is_finished) {
            let (timers, weak) = (hub.timers.clone(), self.downgrade());
            state.task = Some(runtime.spawn(run_timers(timers, weak)));
        } else if first.is_none_or(|first| at < first) {
            hub.timers.changed.notify_one();
        }
    }

    /// Wakes every subscription of every topic (after a backend may have missed
    /// signals, for example when its listener reconnected).
    pub fn wake_all(&self) {
        for topic in WakeTopic::ALL {
            self.wake(topic);
        }
    }

    /// A subscription to `topic`. Signals sent before this call are not seen by it;
    /// every later one is. Starts the backend's feed if it is not running.
    #[must_use]
    pub fn subscribe(&self, topic: WakeTopic) -> WakeSubscription {
        let Some(hub) = &self.hub else {
            return WakeSubscription { rx: None };
        };
        let rx = hub.sender(topic).subscribe();
        if let Some(feed) = &hub.feed {
            feed.ensure_running(self.downgrade());
        }
        WakeSubscription { rx: Some(rx) }
    }

    /// A weak handle, which does not keep the signals (nor their feed) alive.
    #[must_use]
    pub fn downgrade(&self) -> WeakWakeups {
        WeakWakeups {
            hub: self.hub.as_ref().map(Arc::downgrade),
        }
    }
}

/// Sleeps until the first due time, signals every topic whose time came, and again;
/// ends when the signals are dropped.
async fn run_timers(timers: Arc<Timers>, wakeups: WeakWakeups) {
    loop {
        let first = {
            let state = timers.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.due.first().map(|(at, _, _)| *at)
        };
        let changed = timers.changed.notified();
        match first {
            None => changed.await,
            Some(at) => {
                let sleep = tokio::time::sleep_until(at);
                futures::pin_mut!(sleep, changed);
                let _ = futures::future::select(sleep, changed).await;
            }
        }
        let now = Instant::now();
        let mut fired = Vec::new();
        {
            let mut state = timers.state.lock().unwrap_or_else(PoisonError::into_inner);
            while let Some(&(at, seq, topic)) = state.due.first() {
                if at > now {
                    break;
                }
                state.due.remove(&(at, seq, topic));
                fired.push(topic);
            }
        }
        if fired.is_empty() {
            continue;
        }
        let Some(live) = wakeups.upgrade() else {
            return;
        };
        fired.dedup();
        for topic in fired {
            live.wake(topic);
        }
    }
}

/// A [`Wakeups`] handle that does not keep the signals alive; what a feed holds.
#[derive(Clone, Default)]
pub struct WeakWakeups {
    hub: Option<Weak<Hub>>,
}

impl fmt::Debug for WeakWakeups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakWakeups").finish_non_exhaustive()
    }
}

impl WeakWakeups {
    /// The signals, if any handle of them is still alive.
    #[must_use]
    pub fn upgrade(&self) -> Option<Wakeups> {
        let hub = self.hub.as_ref()?.upgrade()?;
        Some(Wakeups { hub: Some(hub) })
    }
}

/// How a [`WakeSubscription::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// A signal arrived (now or while the subscriber was busy).
    Signalled,
    /// The poll interval passed without a signal.
    TimedOut,
}

/// One loop's subscription to a [`WakeTopic`].
#[derive(Debug)]
pub struct WakeSubscription {
    rx: Option<watch::Receiver<u64>>,
}

impl WakeSubscription {
    /// A subscription that is never signalled.
    #[must_use]
    pub fn never() -> Self {
        Self { rx: None }
    }

    /// Waits until the topic is signalled or `poll` passes, whichever is first.
    /// Returns at once if a signal arrived since the last wait (or since the
    /// subscription was made), and marks it seen.
    pub async fn wait(&mut self, poll: Duration) -> Woke {
        let Some(rx) = self.rx.as_mut() else {
            tokio::time::sleep(poll).await;
            return Woke::TimedOut;
        };
        match tokio::time::timeout(poll, rx.changed()).await {
            Ok(Ok(())) => {
                rx.borrow_and_update();
                Woke::Signalled
            }
            Ok(Err(_)) => {
                // The signals are gone (the store was dropped): poll from now on.
                self.rx = None;
                tokio::time::sleep(poll).await;
                Woke::TimedOut
            }
            Err(_) => Woke::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_wakes_a_waiting_and_a_busy_subscriber_once() {
        let wakeups = Wakeups::new();
        let mut jobs = wakeups.subscribe(WakeTopic::Jobs);
        let mut outbox = wakeups.subscribe(WakeTopic::Outbox);
        // Signalled while "busy": the next wait returns at once, the one after waits.
        wakeups.wake(WakeTopic::Jobs);
        wakeups.wake(WakeTopic::Jobs);
        assert_eq!(jobs.wait(Duration::from_secs(30)).await, Woke::Signalled);
        assert_eq!(jobs.wait(Duration::from_millis(5)).await, Woke::TimedOut);
        // Another topic's signal does not wake it.
        assert_eq!(outbox.wait(Duration::from_millis(5)).await, Woke::TimedOut);
        let w = wakeups.clone();
        let waiter = tokio::spawn(async move { jobs.wait(Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let start = tokio::time::Instant::now();
        w.wake_all();
        assert_eq!(waiter.await.ok(), Some(Woke::Signalled));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn polling_and_dropped_signals_time_out_after_the_poll() {
        let mut never = Wakeups::polling().subscribe(WakeTopic::Jobs);
        let start = tokio::time::Instant::now();
        assert_eq!(never.wait(Duration::from_millis(20)).await, Woke::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(20));
        let wakeups = Wakeups::new();
        let weak = wakeups.downgrade();
        let mut sub = wakeups.subscribe(WakeTopic::Outbox);
        drop(wakeups);
        assert!(weak.upgrade().is_none());
        let start = tokio::time::Instant::now();
        assert_eq!(sub.wait(Duration::from_millis(20)).await, Woke::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
