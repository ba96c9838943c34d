//! Notification: the sinks (syslog, SNMP), their queues, and `Outputs`,
//! which hands every event to the store first and the sinks after.

pub mod legacy;
mod link;
pub mod outputs;
pub mod queue;
mod relp;
mod rfc5425;
pub mod snmp;
pub mod syslog;
mod tls;
pub mod usm;
pub mod view;
