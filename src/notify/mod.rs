//! Notification: the sinks (syslog, SNMP), their queues, and `Outputs`,
//! which hands every event to the store first and the sinks after.

pub mod legacy;
pub mod outputs;
pub mod queue;

pub mod snmp;
pub mod syslog;
pub mod usm;
pub mod view;
