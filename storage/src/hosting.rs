//! Hosting and deleting this node's replicas: what the admin API's `/partitions/{name}/replica`
//! calls do and what a PD catalog that drops a namespace does.
//!
//! Owns the rule that one hosting or deletion runs at a time (two would race for the same
//! partition directory). Hosting opens the database off the async threads, then hands the
//! replica to the store loop; deleting answers once the database is closed and its files
//! removed, so the same partition can be hosted again at once.

use std::sync::Arc;

use tokio::sync::{oneshot, Mutex};
use zankv_pd_api::node_of;

use crate::replicas::ReplicaFactory;
use crate::replication::log_store::GroupId;
use crate::replication::membership::{AdminError, AdminOutcome};
use crate::replication::store_loop::{HostAs, StoreHandle, StoreRequest, UnhostWhen};
use crate::routing::GroupLayout;

/// Starts and deletes replicas on this node.
pub struct Hosting {
    node_id: u64,
    factory: Arc<ReplicaFactory>,
    store: StoreHandle,
    one_at_a_time: Mutex<()>,
}

impl Hosting {
    /// Hosting through `factory` and the store loop behind `store`.
    pub fn new(node_id: u64, factory: Arc<ReplicaFactory>, store: StoreHandle) -> Self {
        Hosting {
            node_id,
            factory,
            store,
            one_at_a_time: Mutex::new(()),
        }
    }

    /// Hosts a new, empty replica of `layout`'s partition: as one of the new group's
    /// initial voters (this node must be one of `layout.replicas`), or as the joiner with
    /// the replica id the leader gave it when it added this node as a learner.
    pub async fn host(
        &self,
        layout: &GroupLayout,
        start: HostAs,
    ) -> Result<AdminOutcome, AdminError> {
        let wanted = match &start {
            HostAs::Bootstrap(_) if !layout.replicas.contains(&self.node_id) => {
                return Err(AdminError::Refused(format!(
                    "this node is not one of {}'s initial replicas {:?}; add it as a learner at the leader, then host the replica id that answers",
                    layout.name, layout.replicas
                )));
            }
            HostAs::Bootstrap(_) => self.node_id,
            HostAs::Joiner(r) if node_of(*r) != self.node_id || *r == self.node_id => {
                return Err(AdminError::Refused(format!(
                    "{r} is not a replica id the leader gave this node (node {}); add the node as a learner at the leader and use the replica id it answers",
                    self.node_id
                )));
            }
            HostAs::Joiner(r) => *r,
        };
        let _one = self.one_at_a_time.lock().await;
        if let Some(current) = self.hosted_replica(layout.id).await {
            return if current == wanted {
                Ok(AdminOutcome::Unchanged)
            } else {
                Err(AdminError::Refused(format!(
                    "this node hosts replica {current} of {}, not {wanted}; delete it first",
                    layout.name
                )))
            };
        }
        // A log here that nothing runs is a replica that did not start (its namespace was
        // unknown when the node started): starting a new one would wipe what it holds and
        // acknowledged.
        let has_log = self
            .store
            .ask(|reply| StoreRequest::HasLog {
                group: layout.id,
                reply,
            })
            .await
            .unwrap_or(true);
        if has_log {
            return Err(AdminError::Refused(format!(
                "this node holds a replica of {} that is not running (restart the node to run it, or delete it first)",
                layout.name
            )));
        }
        let bootstrap = matches!(start, HostAs::Bootstrap(_));
        let factory = self.factory.clone();
        let to_start = layout.clone();
        let worker = tokio::task::spawn_blocking(move || factory.start_empty(&to_start, bootstrap))
            .await
            .map_err(|_| AdminError::Failed("starting the replica failed".into()))?
            .map_err(AdminError::Failed)?;
        self.store
            .ask(|reply| StoreRequest::Host {
                group: layout.id,
                name: layout.name.clone(),
                worker,
                stale_reads: layout.stale_reads,
                start,
                reply,
            })
            .await
            .unwrap_or(Err(AdminError::Stopping))
    }

    /// Deletes this node's replica of `group` (its raft log, then its database), if `when`
    /// allows it now and (when `replica` is given) it is that replica. Answers once the
    /// database is closed and deleted.
    pub async fn unhost(
        &self,
        group: GroupId,
        when: UnhostWhen,
        replica: Option<u64>,
    ) -> Result<AdminOutcome, AdminError> {
        let _one = self.one_at_a_time.lock().await;
        let (deleted, gone) = oneshot::channel();
        let result = self
            .store
            .ask(|reply| StoreRequest::Unhost {
                group,
                when,
                replica,
                reply,
                deleted,
            })
            .await
            .unwrap_or(Err(AdminError::Stopping));
        let _ = gone.await;
        result
    }

    /// The replica id this node hosts of `group`, if it hosts one.
    pub async fn hosted_replica(&self, group: GroupId) -> Option<u64> {
        self.store
            .status()
            .await?
            .into_iter()
            .find(|g| g.group == group)
            .map(|g| g.replica)
    }

    /// The groups hosted here now.
    pub async fn hosted(&self) -> Vec<GroupId> {
        self.store
            .workers()
            .await
            .into_iter()
            .map(|(g, _, _)| g)
            .collect()
    }
}
