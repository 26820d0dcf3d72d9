//! The `kiln` command line: run tasks and pipelines, describe them, and the
//! bundled demo. Exit status: 0 succeeded, 1 failed, 2 usage or input error,
//! 3 unsatisfactory, 4 interrupted.
//!
//! It drives the runtime only through `kiln_host::Host`'s embedder API
//! (see ARCHITECTURE.md), and decides what a person sees: the libraries
//! print nothing.

mod commands;
mod warnings;

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        warnings::install_for_service();
    } else {
        warnings::install();
    }
    commands::main()
}
