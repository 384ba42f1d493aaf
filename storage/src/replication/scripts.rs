//! The partitions held for a running script, owned by the store loop.
//!
//! While a partition's leader runs a script ([`crate::script`]), nothing else may be
//! proposed in that partition: the script reads the state at the last proposed entry and
//! its effects must be the very next entry. So from the moment the script is handed to
//! the worker until its outcome comes back, the group's client requests (batches, WATCH,
//! blocking pops) and the pops of its blocked clients wait here, in arrival order; then
//! the loop proposes the effects and handles what waited, in order (a request that starts
//! another script holds the group again, and the rest wait for that one).
//!
//! Background changes (expiry, reclamation) are not kept: the worker proposes them again
//! on a later tick.

use std::collections::{HashMap, VecDeque};

use super::blocking::WaiterId;
use super::log_store::GroupId;
use super::store_loop::StoreRequest;

/// A group held for a script.
pub struct Hold {
    /// The log index whose state the script reads (the last one proposed).
    pub base: u64,
    /// The leader's term then.
    pub term: u64,
    /// Client requests for the group that arrived meanwhile, in order.
    pub requests: VecDeque<StoreRequest>,
    /// Blocked clients whose pops were to be proposed meanwhile, in order.
    pub pops: Vec<WaiterId>,
}

/// The held groups.
#[derive(Default)]
pub struct ScriptHolds {
    held: HashMap<GroupId, Hold>,
}

impl ScriptHolds {
    /// Whether `group` is held.
    pub fn is_held(&self, group: GroupId) -> bool {
        self.held.contains_key(&group)
    }

    /// Holds `group` for a script reading the state at `base`, proposed by the leader of
    /// `term`.
    pub fn hold(&mut self, group: GroupId, base: u64, term: u64) {
        let previous = self.held.insert(
            group,
            Hold {
                base,
                term,
                requests: VecDeque::new(),
                pops: Vec::new(),
            },
        );
        debug_assert!(previous.is_none(), "group {group} held twice");
    }

    /// Keeps `request` for when `group` is let go; gives it back if the group is not held.
    pub fn defer(&mut self, group: GroupId, request: StoreRequest) -> Option<StoreRequest> {
        match self.held.get_mut(&group) {
            Some(hold) => {
                hold.requests.push_back(request);
                None
            }
            None => Some(request),
        }
    }

    /// Keeps a blocked client's pop for when `group` is let go; false if it is not held.
    pub fn defer_pop(&mut self, group: GroupId, id: WaiterId) -> bool {
        match self.held.get_mut(&group) {
            Some(hold) => {
                hold.pops.push(id);
                true
            }
            None => false,
        }
    }

    /// The hold of `group`, if held.
    pub fn get(&self, group: GroupId) -> Option<&Hold> {
        self.held.get(&group)
    }

    /// Every held group with the term it was held in.
    pub fn held(&self) -> Vec<(GroupId, u64)> {
        self.held.iter().map(|(g, h)| (*g, h.term)).collect()
    }

    /// Lets `group` go: what waited, to be handled in order.
    pub fn release(&mut self, group: GroupId) -> Option<Hold> {
        self.held.remove(&group)
    }

    /// Groups held now.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_wait_in_order_only_while_held() {
        let mut holds = ScriptHolds::default();
        let status = || {
            let (reply, _) = tokio::sync::oneshot::channel();
            StoreRequest::Status { reply }
        };
        assert!(holds.defer(7, status()).is_some(), "not held: handled now");
        assert!(!holds.defer_pop(7, 1));
        holds.hold(7, 41, 3);
        assert!(holds.is_held(7) && !holds.is_held(8));
        assert!(holds.defer(7, status()).is_none());
        assert!(holds.defer(7, status()).is_none());
        assert!(holds.defer_pop(7, 5));
        assert!(holds.defer(8, status()).is_some());
        let hold = holds.release(7).expect("held");
        assert_eq!((hold.base, hold.term), (41, 3));
        assert_eq!(hold.requests.len(), 2);
        assert_eq!(hold.pops, vec![5]);
        assert!(holds.is_empty());
    }
}
