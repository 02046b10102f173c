//! Host bindings generated from the frozen WIT of each supported ABI version.
//!
//! One module per released contract version; `super::instance` dispatches on the version
//! a plugin was built for. Only 0.1 exists so far.

pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "pack",
        path: "../sdk/wit/v0.1.0",
    });
}
