//! The `kiln` command line: run tasks and pipelines, describe them, and the
//! bundled demo. Exit status: 0 succeeded, 1 failed, 2 usage or input error,
//! 3 unsatisfactory, 4 interrupted.

mod commands;
mod warnings;

fn main() -> std::process::ExitCode {
    warnings::install();
    commands::main()
}
