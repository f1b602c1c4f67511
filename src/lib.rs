pub mod cli;
pub mod config;
pub mod core;
pub mod protocol;
pub mod service;
pub mod tools;
