//! The system floor: the only home of unsafe code and raw system calls
//! (pidfds, /proc reads, the process-events connector, spawning and
//! signalling, the trust walk over files). Everything above calls these
//! safe functions; the crate denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

pub mod connector;
pub mod fs;
pub mod math;
pub mod net;
pub mod pidfd;
pub mod proc;
pub mod process;
pub mod trust;
