//! Probes: /proc discovery and stat reads (procfs.rs), and the pidfd exit
//! watch.

pub mod exit;
pub mod procfs;
pub mod resource;
pub mod stall;
pub mod watch;
