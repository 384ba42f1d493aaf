//! The proxies PD knows of: each proxy reports itself every second to every PD member
//! (`POST /proxy/heartbeat`), and one not heard from for [`EXPIRY`] is forgotten. The list
//! is news, not metadata: each member keeps it in memory on its own (a proxy reports to all
//! of them), and a restarted member has it again within a second.
//!
//! Invariant: [`ProxyRegistry::live`] lists each proxy once, by id, sorted by id, as last
//! reported, and only those heard from within [`EXPIRY`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zankv_pd_api::ProxyInfo;

/// A proxy not heard from for this long is no longer listed.
pub const EXPIRY: Duration = Duration::from_secs(3);

/// The proxies heard from, by id.
#[derive(Debug, Default)]
pub struct ProxyRegistry {
    seen: Mutex<BTreeMap<String, (SocketAddr, Instant)>>,
}

impl ProxyRegistry {
    /// Records proxy `id` at `addr`, heard from at `now`; answers the live proxies.
    pub fn report(&self, id: String, addr: SocketAddr, now: Instant) -> Vec<ProxyInfo> {
        let mut seen = self.lock();
        seen.insert(id, (addr, now));
        live(&mut seen, now)
    }

    /// The proxies heard from within [`EXPIRY`] of `now`.
    pub fn live(&self, now: Instant) -> Vec<ProxyInfo> {
        live(&mut self.lock(), now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (SocketAddr, Instant)>> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn live(seen: &mut BTreeMap<String, (SocketAddr, Instant)>, now: Instant) -> Vec<ProxyInfo> {
    seen.retain(|_, (_, at)| now.saturating_duration_since(*at) < EXPIRY);
    seen.iter()
        .map(|(id, (addr, _))| ProxyInfo {
            id: id.clone(),
            addr: *addr,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_listed_until_they_go_quiet() {
        let registry = ProxyRegistry::default();
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        registry.report("b".repeat(40), b, t0);
        let listed = registry.report("a".repeat(40), a, t0 + Duration::from_secs(2));
        assert_eq!(
            listed.iter().map(|p| p.addr).collect::<Vec<_>>(),
            vec![a, b],
            "sorted by id"
        );
        // A proxy that reports again under a new address is listed once, at the new one.
        registry.report("a".repeat(40), b, t0 + Duration::from_secs(2));
        let later = registry.live(t0 + EXPIRY + Duration::from_millis(1));
        assert_eq!(later.len(), 1, "b went quiet: {later:?}");
        assert_eq!(later[0].addr, b);
    }
}
