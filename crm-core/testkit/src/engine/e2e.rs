//! End-to-end scenarios: the [`Engine`](crm_core::engine::Engine) with real
//! crm-channels adapters against loopback fake providers.
