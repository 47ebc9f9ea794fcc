//! Touchpoint's browser SDK: an analytics.js-shaped API compiled to WebAssembly.
//!
//! The pure parts (JSON writing, the persisted queue, batching, backoff, ids, cookies, utm campaign)
//! build and are tested on the host; the browser bindings in `web` exist only on `wasm32`.
//! `js/snippet.js` is the stub that queues calls until the wasm arrives. The `dev-validate` feature
//! adds tracking-plan validation with console warnings (the `touchpoint.dev.*` build).
//!
//! The small wasm build is `no_std` (+ `alloc`) with its own allocator and panic handler (`rt`):
//! std's panic machinery alone pulls `core::fmt` and dlmalloc in, which were most of its size.
#![cfg_attr(all(target_arch = "wasm32", not(feature = "dev-validate")), no_std)]

extern crate alloc;

pub mod context;
pub mod json;
pub mod queue;

#[cfg(all(target_arch = "wasm32", feature = "dev-validate"))]
mod dev;
#[cfg(all(target_arch = "wasm32", not(feature = "dev-validate")))]
mod rt;
#[cfg(target_arch = "wasm32")]
mod web;
