//! The standard tasks, built for wasm32-wasip2 by the build script and
//! embedded in the binary so a fresh checkout runs them with no other files.

include!(concat!(env!("OUT_DIR"), "/standard_tasks.rs"));
