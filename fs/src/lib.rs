//! Kiln's filesystem layer: directories the host holds open and reaches
//! only through their descriptors ([`dir_handle`]), and the roots a job may
//! name files below ([`roots`]). Everything in a job directory may have
//! been written by an attacker; every other crate opens files there
//! through this one.

pub mod dir_handle;
pub mod process_identity;
pub mod roots;

pub use dir_handle::{DirHandle, ReleasableDir};
pub use roots::{Access, PathError, Roots};
