//! A definition's items as a form's fields: kinds, limits, choices,
//! defaults, labels, and composites as their parts.

mod common;

use common::testdata;
use kiln_container::{Container, FieldKind};

const DEF: &str = r#"<ccp4i2><ccp4i2_header><pluginName>t</pluginName></ccp4i2_header>
  <ccp4i2_body id="t">
    <container id="inputData">
      <content id="HKLIN"><className>CMtzDataFile</className>
        <qualifiers><mustExist>True</mustExist><allowUndefined>False</allowUndefined>
          <guiLabel>Reflections</guiLabel></qualifiers></content>
      <content id="CELL"><className>CCell</className>
        <qualifiers><guiLabel>Unit cell</guiLabel></qualifiers></content>
    </container>
    <container id="controlParameters">
      <content id="NCYCLES"><className>CInt</className>
        <qualifiers><default>10</default><min>1</min><max>1000</max>
          <toolTip>Cycles of refinement</toolTip></qualifiers></content>
      <content id="MODE"><className>CString</className>
        <qualifiers><enumerators>fast,slow</enumerators><onlyEnumerators>True</onlyEnumerators>
          <default>fast</default></qualifiers></content>
      <content id="HYDROGENS"><className>CBoolean</className>
        <qualifiers><default>False</default></qualifiers></content>
      <content id="WEIGHT"><className>CFloat</className></content>
    </container>
  </ccp4i2_body></ccp4i2>"#;

#[test]
fn every_kind_of_item_is_a_field_with_its_qualifiers() {
    let form = Container::from_def_xml(DEF).unwrap().form();
    let paths: Vec<&str> = form.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "inputData.HKLIN",
            "inputData.CELL.a",
            "inputData.CELL.b",
            "inputData.CELL.c",
            "inputData.CELL.alpha",
            "inputData.CELL.beta",
            "inputData.CELL.gamma",
            "controlParameters.NCYCLES",
            "controlParameters.MODE",
            "controlParameters.HYDROGENS",
            "controlParameters.WEIGHT",
        ]
    );
    let field = |p: &str| form.iter().find(|f| f.path == p).unwrap();

    let hklin = field("inputData.HKLIN");
    assert_eq!(hklin.kind, FieldKind::File);
    assert!(hklin.required && hklin.must_exist);
    assert_eq!(hklin.label.as_deref(), Some("Reflections"));
    assert_eq!(hklin.mime_type.as_deref(), Some("application/CCP4-mtz"));
    assert_eq!(hklin.section, "inputData");

    let a = field("inputData.CELL.a");
    assert_eq!(a.kind, FieldKind::Float);
    assert_eq!(a.part_of.as_deref(), Some("inputData.CELL"));
    assert_eq!(a.part_of_label.as_deref(), Some("Unit cell"));

    let n = field("controlParameters.NCYCLES");
    assert_eq!(n.kind, FieldKind::Int);
    assert_eq!((n.min, n.max), (Some(1.0), Some(1000.0)));
    assert_eq!(n.default.as_deref(), Some("10"));
    assert_eq!(n.tooltip.as_deref(), Some("Cycles of refinement"));
    assert!(!n.required);

    let mode = field("controlParameters.MODE");
    assert_eq!(mode.choices, ["fast", "slow"]);
    assert!(mode.only_choices);
    assert_eq!(field("controlParameters.HYDROGENS").kind, FieldKind::Bool);
    assert_eq!(
        field("controlParameters.HYDROGENS").default.as_deref(),
        Some("False")
    );
    assert_eq!(field("controlParameters.WEIGHT").default, None);
}

#[test]
fn a_space_group_and_cell_is_given_as_its_parts_of_one_composite() {
    let c = Container::from_def_xml(&testdata("mtzheader.def.xml")).unwrap();
    let form = c.form();
    let parts: Vec<&str> = form
        .iter()
        .filter(|f| f.part_of.as_deref() == Some("outputData.SPACEGROUPCELL"))
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(parts.len(), 7, "{parts:?}");
    assert_eq!(parts[0], "outputData.SPACEGROUPCELL.spaceGroup");
    assert_eq!(parts[6], "outputData.SPACEGROUPCELL.cell.gamma");
}
