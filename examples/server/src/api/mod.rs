//! The JSON API: typed errors now; the routes come with API keys.

mod error;

pub use error::ApiError;

pub mod keys;
