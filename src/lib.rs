//! procward: keeps business processes alive and reports every failure.
//!
//! The floors, bottom to top (docs/architecture.md; tests/layers.rs keeps
//! the imports going down): model, sys, config, catalog, monitor (the
//! core), store, the edges (probe, action, notify, control, filters,
//! metrics), the wiring (daemon, offline, demo, cli, reaper, commands).
//! Public: what the binary, the tests and the bench use; everything else
//! is `pub(crate)` at most.
#![warn(unreachable_pub)]

pub mod action;
pub mod catalog;
pub(crate) mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub(crate) mod daemon;
pub(crate) mod demo;
pub mod filters;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod monitor;
pub mod notify;
pub(crate) mod offline;
pub mod probe;
pub(crate) mod reaper;
pub mod store;
pub mod sys;
