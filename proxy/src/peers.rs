//! The proxy's place among the live proxies: its id, the address it announces, and the
//! proxies PD last listed ([`follow`] reports this proxy to every PD member each second and
//! takes their lists). Two such lists are kept: the cluster addresses, for Redis Cluster
//! clients, and the addresses proxies reach each other at, for Pub/Sub ([`crate::mesh`]).
//!
//! From the list come the [`ClusterView`] CLUSTER SLOTS/SHARDS/NODES answer (the slots
//! shared evenly, in id order) and this proxy's [`Share`] of the partitions for the keyless
//! commands of cluster connections.
//!
//! Invariant: the list always holds this proxy, once, and is sorted by id, so every proxy
//! that sees the same list computes the same view and the same shares.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use zankv_commands::cluster::ClusterView;
use zankv_commands::partitioning::murmur3_32;
use zankv_pd_api::{ProxyInfo, Secret};

use crate::forward::Share;

/// How often the proxy reports itself to PD.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Deadline of one report.
const REPORT_TIMEOUT: Duration = Duration::from_millis(900);

/// The live proxies as this one knows them.
#[derive(Debug)]
pub struct Peers {
    me: ProxyInfo,
    live: RwLock<Vec<ProxyInfo>>,
}

/// A stable cluster node id for the proxy announced at `addr`: 40 hex digits, the same
/// across restarts at the same address.
pub fn proxy_id(addr: SocketAddr) -> String {
    let seed_text = format!("zankv-proxy {addr}");
    (0..5u32)
        .map(|seed| format!("{:08x}", murmur3_32(seed_text.as_bytes(), seed)))
        .collect()
}

impl Peers {
    /// This proxy, announced at `addr`, alone until PD lists the others.
    pub fn new(addr: SocketAddr) -> Peers {
        let me = ProxyInfo {
            id: proxy_id(addr),
            addr,
        };
        Peers {
            live: RwLock::new(vec![me.clone()]),
            me,
        }
    }

    /// This proxy.
    pub fn me(&self) -> &ProxyInfo {
        &self.me
    }

    /// Takes PD's list (plus this proxy, which PD may not have heard of yet); answers
    /// whether it changed.
    pub fn update(&self, mut listed: Vec<ProxyInfo>) -> bool {
        if !listed.iter().any(|p| p.id == self.me.id) {
            listed.push(self.me.clone());
        }
        listed.sort();
        listed.dedup_by(|a, b| a.id == b.id);
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        if *live == listed {
            return false;
        }
        *live = listed;
        true
    }

    /// The live proxies, by id.
    pub fn live(&self) -> Vec<ProxyInfo> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What CLUSTER shows: the live proxies sharing the slots, this one answering.
    pub fn view(&self) -> ClusterView {
        let live = self.live();
        let me = live
            .iter()
            .position(|p| p.id == self.me.id)
            .expect("the list holds this proxy");
        let nodes: Vec<(String, SocketAddr)> = live.into_iter().map(|p| (p.id, p.addr)).collect();
        ClusterView::spread(&nodes, me)
    }

    /// This proxy's share of the partitions for a cluster connection's keyless commands.
    pub fn share(&self) -> Share {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        Share {
            index: live
                .iter()
                .position(|p| p.id == self.me.id)
                .expect("the list holds this proxy"),
            of: live.len(),
        }
    }
}

/// Reports this proxy to every PD member each second at `route` (`/proxy/heartbeat` for
/// cluster addresses, `/proxy/peers/heartbeat` for the proxies' own links) and takes the
/// live proxies they list (the longest answer: a member that just started may not have heard of all yet),
/// until `shutdown` turns true. While no member answers, the last list stays.
pub async fn follow(
    peers: Arc<Peers>,
    members: Vec<SocketAddr>,
    token: Option<Secret>,
    route: &'static str,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = format!("{route}?id={}&addr={}", peers.me.id, peers.me.addr);
    let mut failing = false;
    loop {
        let reports = members.iter().map(|&member| {
            let path = path.clone();
            let token = token.clone();
            async move {
                let reply = zankv_pd_api::client::call(
                    member,
                    "POST",
                    &path,
                    None,
                    token.as_ref().map(Secret::expose),
                    REPORT_TIMEOUT,
                )
                .await?;
                if reply.status != 200 {
                    return Err(format!("{member}: {}", reply.message()));
                }
                #[derive(serde::Deserialize)]
                struct Listed {
                    proxies: Vec<ProxyInfo>,
                }
                reply.json::<Listed>().map(|l| l.proxies)
            }
        });
        let answers = futures_util::future::join_all(reports).await;
        let (lists, errors): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
        match lists.into_iter().flatten().max_by_key(Vec::len) {
            Some(list) => {
                if failing {
                    info!("PD answers the proxy's reports again");
                    failing = false;
                }
                if peers.update(list) {
                    let live = peers.live();
                    info!(proxies = live.len(), "the live proxies changed");
                    debug!(?live, "live proxies");
                }
            }
            None if !failing => {
                failing = true;
                let why: Vec<String> = errors.into_iter().filter_map(Result::err).collect();
                warn!(errors = ?why, "no PD member took the proxy's report; CLUSTER keeps the last list");
            }
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(REPORT_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: char, port: u16) -> ProxyInfo {
        ProxyInfo {
            id: id.to_string().repeat(40),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn the_list_always_holds_this_proxy_sorted_by_id() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000));
        let peers = Peers::new(addr);
        assert_eq!(peers.me().id, proxy_id(addr), "stable id");
        assert_eq!(peers.me().id.len(), 40);
        assert_eq!(peers.share(), Share { index: 0, of: 1 });
        let me = peers.me().clone();
        // PD has not heard of this proxy yet: it is added.
        assert!(peers.update(vec![info('f', 2), info('0', 1)]));
        let live = peers.live();
        assert_eq!(live.len(), 3);
        assert!(live.windows(2).all(|w| w[0].id < w[1].id));
        assert!(live.contains(&me));
        assert!(
            !peers.update(vec![info('0', 1), me.clone(), info('f', 2)]),
            "unchanged"
        );
        let view = peers.view();
        assert_eq!(view.nodes.len(), 3);
        assert_eq!(view.nodes[view.me].id, me.id);
        assert_eq!(peers.share().of, 3);
        assert_eq!(peers.share().index, view.me);
    }
}
