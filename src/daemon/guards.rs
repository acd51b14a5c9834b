//! What a start makes, each in a guard whose `Drop` undoes it: the control socket file, the
//! bridges this start created, the engine and worker threads, the async tasks. A start that
//! fails half-way therefore undoes exactly what it made (and nothing it adopted) by returning
//! its error; a stop is the same drops in a stated order.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::warn;

use crate::netlink::Netlink;
use crate::plane::{ControlMsg, EngineMsg, Shared};

/// The control socket's file, removed on drop (a later start would otherwise find a stale
/// socket; it replaces those too, but a clean stop leaves none).
pub(super) struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bridges this start created (never the ones it adopted), removed on drop unless
/// [`NewBridges::keep`] was called: a node that started keeps its bridges across stops (live
/// restore), a start that failed leaves the host as it found it.
pub(super) struct NewBridges(Vec<String>);

impl NewBridges {
    /// Takes charge of `created`.
    pub fn new(created: Vec<String>) -> Self {
        Self(created)
    }

    /// The start succeeded: the bridges stay.
    pub fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for NewBridges {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let bridges = std::mem::take(&mut self.0);
        // Drop cannot await, and may run inside the runtime: remove them from a thread of our
        // own with its own small runtime and netlink socket.
        let removal = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match rt {
                Ok(rt) => rt.block_on(async {
                    match Netlink::new().await {
                        Ok(nl) => super::network::remove_created(&nl, &bridges).await,
                        Err(e) => warn!("cannot remove the bridges this start created: {e:#}"),
                    }
                }),
                Err(e) => warn!("cannot remove the bridges this start created: {e}"),
            }
        });
        let _ = removal.join();
    }
}

/// The engine thread and the data-plane workers. Dropping stops the workers first (so nothing
/// more reaches the engine), then the engine, and waits for all of them.
pub(super) struct Threads {
    pub shared: Arc<Shared>,
    pub engine_tx: SyncSender<EngineMsg>,
    pub engine: Option<JoinHandle<()>>,
    pub workers: Vec<JoinHandle<()>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(engine) = self.engine.take() {
            // The engine drains its queue continuously, so this waits at most for one batch.
            let _ = self.engine_tx.send(EngineMsg::Control(ControlMsg::Stop));
            let _ = engine.join();
        }
    }
}

/// Async tasks (control server, metrics, watchdog, service announcer), aborted on drop.
#[derive(Default)]
pub(super) struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    /// Takes charge of a spawned task.
    pub fn add<T>(&mut self, task: tokio::task::JoinHandle<T>) {
        self.0.push(task.abort_handle());
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
