//! The node's apply threads: a few OS threads, each running the workers of many partitions.
//!
//! A partition's worker ([`crate::worker`]) lives on one thread for its whole life, so its
//! messages are handled in the order they were sent. One thread serves many partitions, so
//! a store-loop iteration that commits entries in many partitions wakes a few threads, not
//! one per partition (thread switches, not RocksDB, were the cost of a thread per
//! partition). The price: a slow partition delays the others on its thread, never the
//! store loop, which only queues messages.
//!
//! RocksDB is called from these threads, never from an async task.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tracing::{error, info};

use crate::partition::Partition;
use crate::replication::log_store::GroupId;
use crate::worker::{PoolMsg, Worker, WorkerHandle, WorkerSettings, WorkerShared};

/// The apply threads.
pub struct ApplyPool {
    senders: Vec<mpsc::UnboundedSender<PoolMsg>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
}

impl ApplyPool {
    /// Starts `threads` apply threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<ApplyPool> {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("apply-{i}"))
                    .spawn(move || run(rx))?,
            );
            senders.push(tx);
        }
        Ok(ApplyPool {
            senders,
            threads: Mutex::new(handles),
            next: AtomicUsize::new(0),
        })
    }

    /// Starts serving `partition` of `group` on one of the threads (in turn).
    pub fn start(
        &self,
        group: GroupId,
        partition: Partition,
        settings: WorkerSettings,
    ) -> WorkerHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let tx = self.senders[i].clone();
        let shared = Arc::new(WorkerShared::default());
        let worker = Box::new(Worker::new(partition, settings, shared.clone()));
        // A stopped thread drops the worker, closing what waits on it.
        let _ = tx.send(PoolMsg::Add(group, worker));
        WorkerHandle::new(tx, group, shared)
    }

    /// Lets every thread finish what is queued, close its partitions and end; waits for
    /// them. Call once nothing sends to the workers any more (the store loop is gone).
    pub fn shutdown(&self) {
        for tx in &self.senders {
            let _ = tx.send(PoolMsg::Stop);
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("apply threads poisoned"));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn run(mut rx: mpsc::UnboundedReceiver<PoolMsg>) {
    let mut workers: HashMap<GroupId, Box<Worker>> = HashMap::new();
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            PoolMsg::Add(group, worker) => {
                workers.insert(group, worker);
            }
            PoolMsg::Worker(group, msg) => {
                // A message for a partition gone from this node is dropped, which closes
                // whatever reply it carried.
                if let Some(w) = workers.get_mut(&group) {
                    // Commands contain their own panics; one elsewhere in a worker stops
                    // that partition here, not the thread and its other partitions.
                    let handled = std::panic::catch_unwind(AssertUnwindSafe(|| w.handle(msg)));
                    match handled {
                        Ok(true) => {}
                        Ok(false) => {
                            workers.remove(&group);
                        }
                        Err(_) => {
                            error!(group, "a partition worker panicked; this replica stops serving until the node restarts");
                            workers.remove(&group);
                        }
                    }
                }
            }
            PoolMsg::Stop => break,
        }
    }
    for w in workers.values_mut() {
        w.stop();
    }
    info!(partitions = workers.len(), "apply thread stopped");
}
