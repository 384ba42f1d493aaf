//! Network front ends of the storage node. Only this module touches sockets.

pub mod http;
pub mod resp;
