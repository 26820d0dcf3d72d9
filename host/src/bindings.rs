//! Host-side bindings generated from the WIT package `kiln:plugin`.
//!
//! Every import is async (a guest blocked in `wait` suspends only its own
//! fiber) and trappable (a host bug or an exhausted limit ends the instance).
//! Resources map to the host types that back them.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "kiln:plugin/plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "kiln:plugin/process.child": crate::handles::ChildHandle,
        "kiln:plugin/jobs.sub-job": crate::handles::SubJobHandle,
        "kiln:plugin/axes.motion": crate::handles::MotionHandle,
    },
});

pub use kiln::plugin::{axes, container, jobs, log, process, signals, types};
