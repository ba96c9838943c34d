//! The model floor: what every other floor speaks of, with no I/O. Message
//! IDs, the event, languages, processes and how they end, the states of a
//! target and their OCF codes, the SNMP numbering. Imports nothing of the
//! crate.

pub mod event;
pub mod exit;
pub mod lang;
pub mod oid;
pub mod proc;
pub mod state;

pub use exit::{signal_name, ExitKind, ExitStatus, Reason};
pub use lang::Lang;
pub use proc::{Ms, ProcRef, TargetId};
pub use state::{Halted, State};
