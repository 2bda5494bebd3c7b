//! Ocelli's agent: host collectors for Linux ([`collector`], one module per collector, from
//! /proc and /sys, with node_exporter's metric names) and three modes to hand the samples over,
//! switchable while running: push (remote_write to the server every interval, or with the
//! [`amqp`] output to RabbitMQ, with an on-disk [`buffer`] while the server or broker is away),
//! pull (`GET /metrics` for the server's scraper) and on-demand (`GET /collect/{collector}` and
//! the process view). With a server, the agent
//! heartbeats and takes the mode and interval the server answers ([`heartbeat`]).
//!
//! Entry points: [`Agent::start`] (used by `ocelli agent`, and by `ocelli server` for the agent
//! of its own host: build an [`AgentConfig`], start, keep the handle, `stop` at shutdown) and
//! [`run`]; [`install`] sets the agent up as a systemd service. The agent runs on the caller's tokio runtime; collection goes to the blocking pool.
//!
//! Architecture invariant: depends on `ocelli-model`, `ocelli-wire` and `ocelli-spool` only
//! among our crates; it knows the server only through the HTTP protocol (`docs/api.md`) and
//! RabbitMQ, never its code.

mod agent;
pub mod amqp;
pub use ocelli_spool as buffer;
pub mod cli;
pub mod client;
pub mod collector;
pub mod config;
pub mod credential;
mod error;
pub mod exposition;
pub mod filenames;
pub mod heartbeat;
mod http;
pub mod install;
pub mod process;
pub mod push;

pub use agent::{Agent, run, shutdown_signal, use_small_pages};
pub use config::{AgentConfig, Identity, Mode};
pub use error::{Error, Result};
pub use heartbeat::RunConfig;
