//! The one SIGINT/SIGTERM listener: `gpuconform run` and `gpuconform local up` both watch it.
//!
//! The handlers are installed when [`listen`] is called, not when a future is first polled, so a
//! signal that arrives while the caller is still doing synchronous setup is not lost (and does
//! not kill the process with its default action). The listener counts signals because the runner
//! gives the first and the second different meanings (stop the step; abort teardown).

use tokio::sync::watch;

/// What the listener has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Signals received.
    pub count: u32,
    /// The last one's name (`SIGINT`, `SIGTERM`); empty before the first.
    pub last: &'static str,
}

/// A receiver of the signal count.
pub type Interrupts = watch::Receiver<Seen>;

/// Installs the handlers and returns the count's receiver. Without handlers (no signal support)
/// the count stays 0 forever: a closed channel must not look like a signal.
pub fn listen() -> Interrupts {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(Seen::default());
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            std::future::pending::<()>().await;
            drop(tx);
            return;
        };
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tx.send_modify(|s| {
                s.count += 1;
                s.last = name;
            });
        }
    });
    rx
}

/// Resolves once more than `already` signals were received, with the last one's name.
pub async fn beyond(rx: &mut Interrupts, already: u32) -> &'static str {
    loop {
        let seen = *rx.borrow_and_update();
        if seen.count > already {
            return seen.last;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Resolves on the first signal after this call (SIGINT or SIGTERM), with its name.
pub fn first() -> impl std::future::Future<Output = &'static str> {
    let mut rx = listen();
    async move { beyond(&mut rx, 0).await }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_waits_for_a_count_over_the_one_seen() {
        let (tx, mut rx) = watch::channel(Seen::default());
        tx.send_modify(|s| {
            s.count = 1;
            s.last = "SIGINT";
        });
        assert_eq!(beyond(&mut rx, 0).await, "SIGINT");
        let more = tokio::spawn(async move { beyond(&mut rx, 1).await });
        tokio::task::yield_now().await;
        assert!(!more.is_finished(), "one signal is not more than one");
        tx.send_modify(|s| {
            s.count = 2;
            s.last = "SIGTERM";
        });
        assert_eq!(more.await.expect("task"), "SIGTERM");
    }
}
