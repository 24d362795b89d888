//! What the node learns about the statements it runs, for its metrics.
//!
//! This crate knows nothing of Prometheus: the node hands an observer in
//! [`crate::SqlOptions`], and every statement is reported to it once, when
//! its answer stream ends, fails or is dropped by a client that went away,
//! so a statement's time is what its client waited, not just its planning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its answer was sent in full.
    Ok,
    /// It was refused, failed to plan, or failed while streaming.
    Error,
    /// The client stopped reading before the end.
    Cancelled,
}

impl Outcome {
    /// Every outcome, so an observer can create its series up front.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Error, Outcome::Cancelled];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Receives each statement's start and end.
pub trait StatementObserver: Send + Sync + std::fmt::Debug {
    /// A statement starts running (its DoGet).
    fn started(&self);
    /// A statement that started has ended.
    fn finished(&self, outcome: Outcome, elapsed: Duration);
    /// A statement did not plan when a client asked for its schema or
    /// prepared it (GetFlightInfo, CreatePreparedStatement), so it never
    /// ran: an error with no running time.
    fn refused(&self);
    /// A statement was planned in distributed stages (`crate::distributed`).
    fn distributed(&self) {}
    /// This node ran one stage task of a distributed statement as a worker:
    /// `scans` when the task reads Quiver endpoints, `local` when this node
    /// owns the slot of every endpoint it reads.
    fn task(&self, _scans: bool, _local: bool) {}
    /// Bytes of stage output this node received from workers, as a
    /// statement's coordinator or as a worker reading another stage.
    fn exchanged(&self, _role: Role, _bytes: u64) {}
}

/// Which side of a distributed statement received stage output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The node that planned the statement and answers its client.
    Coordinator,
    /// A node running a stage task that reads another stage's output.
    Worker,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Coordinator, Role::Worker];

    pub fn label(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
        }
    }
}

/// One statement, from the request that runs it until its outcome is
/// reported. Dropping it unreported reports it cancelled.
pub(crate) struct Watch {
    observer: Option<Arc<dyn StatementObserver>>,
    started: Instant,
}

impl Watch {
    pub(crate) fn start(observer: Option<Arc<dyn StatementObserver>>) -> Self {
        if let Some(o) = &observer {
            o.started();
        }
        Watch {
            observer,
            started: Instant::now(),
        }
    }

    /// Reports the outcome; only the first report of a statement counts.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(o) = self.observer.take() {
            o.finished(outcome, self.started.elapsed());
        }
    }

    /// `stream`, reporting the statement when it ends: ok at its end, an
    /// error at its first failed item, cancelled if it is dropped first.
    pub(crate) fn follow<T: Send + 'static, E: Send + 'static>(
        self,
        stream: BoxStream<'static, Result<T, E>>,
    ) -> BoxStream<'static, Result<T, E>> {
        futures::stream::unfold((stream, self), |(mut stream, mut watch)| async move {
            let item = stream.next().await;
            match &item {
                None => watch.finish(Outcome::Ok),
                Some(Err(_)) => watch.finish(Outcome::Error),
                Some(Ok(_)) => {}
            }
            item.map(|i| (i, (stream, watch)))
        })
        .boxed()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Seen(Mutex<(u32, Vec<Outcome>)>);

    impl StatementObserver for Seen {
        fn started(&self) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        }
        fn finished(&self, outcome: Outcome, _elapsed: Duration) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .push(outcome);
        }
        fn refused(&self) {}
    }

    fn seen(s: &Seen) -> (u32, Vec<Outcome>) {
        s.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn items(v: Vec<Result<u8, ()>>) -> BoxStream<'static, Result<u8, ()>> {
        futures::stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn each_statement_is_reported_once_with_how_it_ended() {
        let s = Arc::new(Seen::default());
        let observer = || Some(s.clone() as Arc<dyn StatementObserver>);

        let all: Vec<_> = Watch::start(observer())
            .follow(items(vec![Ok(1), Ok(2)]))
            .collect()
            .await;
        assert_eq!(all.len(), 2);
        assert_eq!(seen(&s), (1, vec![Outcome::Ok]));

        let _: Vec<_> = Watch::start(observer())
            .follow(items(vec![Ok(1), Err(()), Ok(3)]))
            .collect()
            .await;
        assert_eq!(seen(&s).1, vec![Outcome::Ok, Outcome::Error]);

        let mut partly = Watch::start(observer()).follow(items(vec![Ok(1), Ok(2)]));
        assert!(partly.next().await.is_some());
        drop(partly);
        assert_eq!(
            seen(&s).1,
            vec![Outcome::Ok, Outcome::Error, Outcome::Cancelled]
        );

        let mut refused = Watch::start(observer());
        refused.finish(Outcome::Error);
        drop(refused);
        assert_eq!(seen(&s).0, 4);
        assert_eq!(seen(&s).1.len(), 4);

        Watch::start(None).finish(Outcome::Ok);
    }
}
