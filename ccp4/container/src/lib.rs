//! CCP4i2's job container (`CContainer`) for Kiln.
//!
//! Every job has a container: a typed tree of items built from its task's
//! definition (def.xml), holding the values the job runs with. The host
//! builds it from the definition text, sets values from the command line
//! (`--param HKLIN=/data/x.mtz`), lets the sandboxed plugin read and write
//! items by dotted path, copies subtrees between jobs, validates it before
//! the run and writes it as params.xml afterwards, in the format CCP4i2's
//! own tools read.
//!
//! ```
//! use kiln_container::{Container, ParamsHeader, Value};
//!
//! let def = r#"<ccp4i2><ccp4i2_header><pluginName>mtzdump</pluginName></ccp4i2_header>
//!   <ccp4i2_body id="mtzdump">
//!     <container id="inputData">
//!       <content id="HKLIN"><className>CMtzDataFile</className>
//!         <qualifiers><mustExist>True</mustExist><allowUndefined>False</allowUndefined></qualifiers>
//!       </content>
//!     </container>
//!     <container id="outputData">
//!       <content id="CELL"><className>CCell</className></content>
//!     </container>
//!   </ccp4i2_body></ccp4i2>"#;
//! let mut c = Container::from_def_xml(def)?;
//! assert_eq!(c.set_from_str("HKLIN", "/data/5e5z.mtz")?, "inputData.HKLIN");
//! c.set_from_str("CELL", "9.643 9.609 19.029 90 101.22 90")?;
//! c.set("outputData.CELL.a", Value::Float(9.65))?;
//! assert_eq!(c.get("outputData.CELL.beta")?, Some(Value::Float(101.22)));
//! assert!(c.validate().is_empty());
//! let xml = c.to_params_xml(&ParamsHeader::new("mtzdump"));
//! assert!(xml.contains("<baseName>5e5z.mtz</baseName>"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`model`] (values and qualifiers), [`def_xml`] (reading
//! definitions and their includes), [`params_xml`] (PARAMS files),
//! [`validate`] (qualifier checks and CCP4i2 error codes), [`form`] (the
//! items as a form's fields), [`classes`]
//! (which CCP4i2 classes are what), `container` (the [`Container`] API),
//! `json` (the JSON view), `path` (dotted paths) and `xml` (the XML tree
//! and writer underneath).

pub mod classes;
mod container;
pub mod def_xml;
mod error;
pub mod form;
mod json;
pub mod model;
pub mod params_xml;
mod path;
pub mod validate;
mod xml;

pub use classes::{FileClass, file_class};
pub use container::{Container, dir_resolver};
pub use def_xml::Resolver;
pub use error::{ContainerError, DefError, ParamsError};
pub use form::{FieldKind, FormField};
pub use model::{FileValue, Qualifiers, Value};
pub use params_xml::ParamsHeader;
pub use validate::{Report, Severity};
pub use xml::escape_text;
