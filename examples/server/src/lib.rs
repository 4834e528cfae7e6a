#![doc = include_str!("../README.md")]

pub mod api;
pub mod app;
pub mod channels;
pub mod cli;
pub mod config;
pub mod health;
pub mod inbox_view;
pub mod metrics;
pub mod state;
pub mod tuning;
pub mod web;
pub mod webhooks;

pub use app::{Service, StartupError, router, shutdown_signal};
pub use config::{Config, ConfigError};
