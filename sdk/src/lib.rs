//! kiln-sdk: write Kiln tasks and pipelines in Rust.
//!
//! A task is a type implementing [`Task`], exported with [`export_task!`] from
//! a `cdylib` crate built with `cargo build --target wasm32-wasip2`. The host
//! calls [`Task::describe`] to learn the task's name, container definition
//! (CCP4i2 def.xml) and the capabilities it asks for, then [`Task::run`] with a
//! [`Job`] through which the task reads and writes its container, runs native
//! programs by registry name, makes sub-jobs, reports progress and logs.
//!
//! A complete small task, which runs `mtzdump` on `inputData.HKLIN` and stores
//! the cell it prints:
//!
//! ```no_run
//! use kiln_sdk::{Description, Job, Task, TaskError};
//!
//! struct CellReader;
//!
//! const DEF: &str = r#"<ccp4i2><ccp4i2_header><pluginName>cellreader</pluginName></ccp4i2_header>
//! <ccp4i2_body>
//!   <container id="inputData">
//!     <content id="HKLIN"><className>CMtzDataFile</className>
//!       <qualifiers><mustExist>True</mustExist></qualifiers></content>
//!   </container>
//!   <container id="outputData">
//!     <content id="CELL"><className>CCell</className></content>
//!   </container>
//! </ccp4i2_body></ccp4i2>"#;
//!
//! impl Task for CellReader {
//!     fn describe() -> Description {
//!         Description::new("cellreader", "0.1.0", "Read the cell of an MTZ file")
//!             .definition(DEF)
//!             .programs(["mtzdump"])
//!     }
//!
//!     fn run(job: &Job) -> Result<(), TaskError> {
//!         let hklin = job.file_path("inputData.HKLIN")?;
//!         let finished = job
//!             .program("mtzdump")
//!             .args(["HKLIN", hklin.as_str()])
//!             .stdin("HEADER\nEND\n")
//!             .run()?;
//!         finished.check()?;
//!         let log = finished.stdout_text();
//!         let cell = log
//!             .lines()
//!             .skip_while(|l| !l.contains("* Dataset ID"))
//!             .nth(5)
//!             .ok_or_else(|| TaskError::failed("no cell in the mtzdump log"))?;
//!         let numbers: Vec<f64> = cell
//!             .split_whitespace()
//!             .map(|w| w.parse().map_err(|_| TaskError::failed(format!("bad cell line: {cell}"))))
//!             .collect::<Result<_, _>>()?;
//!         for (name, value) in ["a", "b", "c", "alpha", "beta", "gamma"].iter().zip(numbers) {
//!             job.set(&format!("outputData.CELL.{name}"), value)?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! kiln_sdk::export_task!(CellReader);
//! ```

mod container;
mod error;
mod program;
mod subjob;
mod task;
pub mod template;

/// The raw bindings generated from Kiln's WIT package `kiln:plugin`. Most
/// tasks never need them; they are public for what the SDK does not wrap.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "kiln:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "kiln_sdk::bindings",
        generate_all,
    });
}

pub use bindings::kiln::plugin::container::{FileRef, Value};
pub use bindings::kiln::plugin::log::Level;
pub use bindings::kiln::plugin::process::Outcome;
pub use bindings::kiln::plugin::types::{ErrorKind, FinishStatus, HostError};
pub use container::ContainerLookup;
pub use error::TaskError;
pub use program::{Finished, Process, ProgramBuilder, wait_any_process};
pub use subjob::{FailurePolicy, RetryPolicy, Signal, SubJob, SubJobResult, wait_any};
pub use task::{Description, Job, Task};

#[doc(hidden)]
pub mod __private {
    pub use crate::task::{describe_task, run_task};
}
