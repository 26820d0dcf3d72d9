//! The CCP4i2 data classes the container understands.
//!
//! CCP4i2 has hundreds of classes; a job's container only needs to know how
//! each one stores its value. Every class name maps to a `Kind`: the
//! fundamental types and their simple subclasses, files (the table below,
//! plus any name ending in `DataFile`), the cell composites, lists and
//! containers. Anything else is kept as a generic item whose value is text,
//! so a definition using a class this crate has never heard of still loads.

use crate::model::Qualifiers;

/// How an item of some class stores its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Container,
    Int,
    Float,
    Text,
    Bool,
    File,
    Cell,
    SpaceGroupCell,
    List,
    Generic,
}

/// A CCP4i2 file class: what it holds and how its files are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileClass {
    /// Class name, e.g. `CMtzDataFile`.
    pub name: &'static str,
    /// The class it specialises (`CDataFile` at the top).
    pub parent: &'static str,
    /// CCP4i2's mime type name, e.g. `application/CCP4-mtz`; empty for the
    /// generic `CDataFile`.
    pub mime_type: &'static str,
    /// File name extensions without the dot.
    pub extensions: &'static [&'static str],
}

const fn fc(
    name: &'static str,
    parent: &'static str,
    mime_type: &'static str,
    extensions: &'static [&'static str],
) -> FileClass {
    FileClass {
        name,
        parent,
        mime_type,
        extensions,
    }
}

/// File classes of CCP4i2 3.0.1 (CCP4File, CCP4XtalData, CCP4ModelData).
#[rustfmt::skip]
static FILE_CLASSES: &[FileClass] = &[
    fc("CDataFile", "", "", &[]),
    fc("CPdbDataFile", "CDataFile", "chemical/x-pdb", &["pdb", "cif", "mmcif", "ent"]),
    fc("CEnsemblePdbDataFile", "CPdbDataFile", "chemical/x-pdb", &["pdb", "cif", "mmcif", "ent"]),
    fc("CMtzDataFile", "CDataFile", "application/CCP4-mtz", &["mtz"]),
    fc("CMiniMtzDataFile", "CMtzDataFile", "application/CCP4-mtz-mini", &["mtz", "cif", "ent"]),
    fc("CObsDataFile", "CMiniMtzDataFile", "application/CCP4-mtz-observed", &["mtz", "cif", "ent"]),
    fc("CPhsDataFile", "CMiniMtzDataFile", "application/CCP4-mtz-phases", &["mtz", "cif", "ent"]),
    fc("CMapCoeffsDataFile", "CMiniMtzDataFile", "application/CCP4-mtz-map", &["mtz", "cif", "ent"]),
    fc("CFreeRDataFile", "CMiniMtzDataFile", "application/CCP4-mtz-freerflag", &["mtz", "cif", "ent"]),
    fc("CUnmergedMtzDataFile", "CMtzDataFile", "application/CCP4-mtz-unmerged", &["mtz"]),
    fc("CUnmergedDataFile", "CDataFile", "application/CCP4-unmerged-experimental", &["mtz", "hkl", "HKL", "sca", "SCA", "ent", "cif"]),
    fc("CGenericReflDataFile", "CDataFile", "application/CCP4-generic-reflections", &["mtz", "hkl", "HKL", "sca", "SCA", "mmcif", "cif", "ent"]),
    fc("CMapDataFile", "CDataFile", "application/CCP4-map", &["map", "mrc"]),
    fc("CDictDataFile", "CDataFile", "application/refmac-dictionary", &["cif"]),
    fc("CMmcifDataFile", "CDataFile", "chemical/x-cif", &["cif", "ent"]),
    fc("CMmcifReflDataFile", "CMmcifDataFile", "chemical/x-cif", &["cif"]),
    fc("CSeqDataFile", "CDataFile", "application/CCP4-seq", &["seq", "pir", "fasta"]),
    fc("CSeqAlignDataFile", "CDataFile", "application/CCP4-seqalign", &["aln", "pir", "fasta", "msf", "phy"]),
    fc("CTLSDataFile", "CDataFile", "application/refmac-TLS", &["tls"]),
    fc("CRefmacRestraintsDataFile", "CDataFile", "application/refmac-external-restraints", &["txt"]),
    fc("CRefmacKeywordFile", "CDataFile", "application/refmac-keywords", &["txt"]),
    fc("CXmlDataFile", "CDataFile", "application/xml", &["xml"]),
    fc("CI2XmlDataFile", "CXmlDataFile", "application/xml", &["xml"]),
    fc("CAsuDataFile", "CI2XmlDataFile", "application/CCP4-asu-content", &["asu.xml"]),
    fc("CEBIValidationXMLDataFile", "CXmlDataFile", "application/EBI-validation-xml", &["xml"]),
    fc("CSceneDataFile", "CDataFile", "application/CCP4-scene", &["scene.xml"]),
    fc("CImosflmXmlDataFile", "CDataFile", "application/iMosflm-xml", &["imosflm.xml"]),
    fc("CTextDataFile", "CDataFile", "text/plain", &["txt", "log"]),
    fc("CYmlFile", "CDataFile", "text/plain", &["yml"]),
    fc("CPostscriptDataFile", "CDataFile", "application/postscript", &["ps"]),
    fc("CPDFDataFile", "CDataFile", "application/x-pdf", &["pdf"]),
    fc("CXmgrDataFile", "CDataFile", "application/grace", &["xmgr"]),
    fc("CCootHistoryDataFile", "CDataFile", "application/coot-script", &["scm", "py"]),
    fc("CMol2DataFile", "CDataFile", "chemical/x-mol2", &["mol2"]),
    fc("CMDLMolDataFile", "CDataFile", "chemical/x-mdl-molfile", &["mol", "sdf"]),
    fc("CHhpredDataFile", "CDataFile", "application/HHPred-alignments", &["hhr"]),
    fc("CBlastDataFile", "CDataFile", "application/Blast-alignments", &["bla", "blast", "xml"]),
    fc("CPhaserSolDataFile", "CDataFile", "application/phaser-sol", &["phaser_sol.pkl"]),
    fc("CPhaserRFileDataFile", "CDataFile", "application/phaser-rfile", &["phaser_rlist.pkl"]),
    fc("CPhaserTngDagFile", "CDataFile", "application/phasertng-dag", &["cards"]),
    fc("CShelxFADataFile", "CDataFile", "application/CCP4-shelx-FA", &["hkl"]),
    fc("CImageFile", "CDataFile", "application/CCP4-image", &["img", "cbf", "mccd", "mar1600", "h5", "nxs"]),
    fc("CDialsPickleFile", "CDataFile", "application/dials-pfile", &["pickle", "refl"]),
    fc("CDialsJsonFile", "CDataFile", "application/dials-jfile", &["json", "expt", "jsn"]),
];

/// What CCP4i2 knows about file class `name`, if it is one in the table.
/// Classes outside the table whose name ends in `DataFile` are still files,
/// with no known mime type.
pub fn file_class(name: &str) -> Option<&'static FileClass> {
    FILE_CLASSES.iter().find(|c| c.name == name)
}

/// Subclasses of CString that only add qualifiers or GUI behaviour.
const TEXT_CLASSES: &[&str] = &[
    "CString",
    "COneWord",
    "CSpaceGroup",
    "CFilePath",
    "CUUID",
    "CJobTitle",
    "CProjectName",
    "CProjectId",
    "CDatasetName",
    "CCrystalName",
    "CHostName",
    "CFollowFromJob",
];

/// Subclasses of CFloat that only add qualifiers.
const FLOAT_CLASSES: &[&str] = &["CFloat", "CCellLength", "CCellAngle", "CWavelength"];

/// The storage kind of class `name`.
pub(crate) fn kind_of(name: &str) -> Kind {
    match name {
        "CContainer" => Kind::Container,
        "CInt" => Kind::Int,
        "CBoolean" => Kind::Bool,
        "CList" => Kind::List,
        "CCell" => Kind::Cell,
        "CSpaceGroupCell" => Kind::SpaceGroupCell,
        n if FLOAT_CLASSES.contains(&n) => Kind::Float,
        n if TEXT_CLASSES.contains(&n) => Kind::Text,
        n if file_class(n).is_some() || n.ends_with("DataFile") => Kind::File,
        _ => Kind::Generic,
    }
}

/// The mime type files of class `name` carry ("" when unknown or generic).
pub(crate) fn mime_type_of(name: &str) -> &'static str {
    file_class(name).map_or("", |c| c.mime_type)
}

/// Whether file class `class` is `ancestor` or derives from it.
pub(crate) fn file_is_a(class: &str, ancestor: &str) -> bool {
    let mut cur = class;
    // The table is a tree of a few levels; the bound only guards against a
    // mistake in it turning into an endless loop.
    for _ in 0..16 {
        if cur == ancestor {
            return true;
        }
        match file_class(cur) {
            Some(c) if !c.parent.is_empty() => cur = c.parent,
            // Unknown `...DataFile` classes derive from CDataFile.
            None if cur != "CDataFile" => cur = "CDataFile",
            _ => return false,
        }
    }
    false
}

/// Whether a file typed `given` (a mime type) may be stored in an item of
/// file class `class`. An empty type says nothing and is accepted, as is
/// any type when the class has none. Otherwise the type must be the class's
/// own, or that of a class it derives from or that derives from it: an
/// observed-data MTZ is an MTZ, and an MTZ given for observed data is
/// presumed to be one.
pub(crate) fn file_type_fits(class: &str, given: &str) -> bool {
    let own = mime_type_of(class);
    if given.is_empty() || own.is_empty() || given == own {
        return true;
    }
    FILE_CLASSES
        .iter()
        .filter(|c| c.mime_type == given)
        .any(|c| file_is_a(class, c.name) || file_is_a(c.name, class))
}

/// Qualifier values a class has before its definition says anything, for
/// the few classes whose CCP4i2 metadata makes a difference to validation.
pub(crate) fn class_qualifiers(name: &str) -> Qualifiers {
    let mut q = Qualifiers::default();
    match name {
        "CCellLength" => {
            q.min = Some(0.0);
            q.allow_undefined = Some(false);
            q.tool_tip = Some("Cell length in A".to_string());
        }
        "CCellAngle" => {
            q.min = Some(0.0);
            q.max = Some(180.0);
            q.tool_tip = Some("Cell angle in degrees".to_string());
        }
        _ => {}
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind_of("CMtzDataFile"), Kind::File);
        assert_eq!(kind_of("CSomethingNewDataFile"), Kind::File);
        assert_eq!(kind_of("CDialsJsonFile"), Kind::File);
        assert_eq!(kind_of("CExportedFile"), Kind::Generic);
        assert_eq!(kind_of("CCellLength"), Kind::Float);
        assert_eq!(kind_of("CSpaceGroup"), Kind::Text);
        assert_eq!(kind_of("CRefinementPerformance"), Kind::Generic);
    }

    #[test]
    fn file_hierarchy() {
        assert!(file_is_a("CObsDataFile", "CMtzDataFile"));
        assert!(file_is_a("CObsDataFile", "CDataFile"));
        assert!(file_is_a("CNewDataFile", "CDataFile"));
        assert!(!file_is_a("CMtzDataFile", "CObsDataFile"));
        assert!(!file_is_a("CPdbDataFile", "CMtzDataFile"));
        assert!(file_type_fits("CObsDataFile", "application/CCP4-mtz"));
        assert!(file_type_fits(
            "CMtzDataFile",
            "application/CCP4-mtz-observed"
        ));
        assert!(file_type_fits("CMtzDataFile", ""));
        assert!(file_type_fits("CDataFile", "chemical/x-pdb"));
        assert!(!file_type_fits("CPdbDataFile", "application/CCP4-mtz"));
        assert!(!file_type_fits("CPdbDataFile", "image/png"));
    }

    #[test]
    fn table_is_consistent() {
        for c in FILE_CLASSES {
            assert_eq!(kind_of(c.name), Kind::File, "{}", c.name);
            if !c.parent.is_empty() {
                assert!(
                    file_class(c.parent).is_some(),
                    "{} parent {}",
                    c.name,
                    c.parent
                );
            }
        }
    }
}
