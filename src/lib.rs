//! procward: keeps business processes alive and reports every failure.

pub mod action;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;

pub mod filters;
pub mod metrics;
pub mod model;

pub mod monitor;
pub mod notify;
pub mod offline;
pub mod probe;
pub mod reaper;
pub mod store;

pub mod sys;
