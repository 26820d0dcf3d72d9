//! Definitions shared by the integration tests: the two tasks of the
//! demo pipeline as the host defines them, and stand-ins for the parent
//! definitions the CCP4i2 test files include.

#![allow(dead_code)]

use std::path::PathBuf;

/// Text of a file in `testdata/`.
pub fn testdata(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// mtzdump: reads an MTZ file's header and reports its cell.
pub const MTZDUMP_DEF: &str = r#"<?xml version='1.0' encoding='UTF-8'?>
<ccp4:ccp4i2 xmlns:ccp4="http://www.ccp4.ac.uk/ccp4ns">
  <ccp4i2_header>
    <function>DEF</function>
    <pluginName>mtzdump</pluginName>
  </ccp4i2_header>
  <ccp4i2_body id="mtzdump">
    <container id="inputData">
      <content id="HKLIN">
        <className>CMtzDataFile</className>
        <qualifiers>
          <mustExist>True</mustExist>
          <allowUndefined>False</allowUndefined>
          <guiLabel>Reflection data</guiLabel>
        </qualifiers>
      </content>
    </container>
    <container id="outputData">
      <content id="CELL">
        <className>CCell</className>
      </content>
      <content id="SPACEGROUP">
        <className>CSpaceGroup</className>
      </content>
    </container>
    <container id="controlParameters">
      <content id="NREF">
        <className>CInt</className>
        <qualifiers>
          <default>-1</default>
          <min>-1</min>
          <toolTip>Number of reflections to list (-1: none)</toolTip>
        </qualifiers>
      </content>
    </container>
  </ccp4i2_body>
</ccp4:ccp4i2>
"#;

/// pdbset: writes a cell into a coordinate file's CRYST1 record.
pub const PDBSET_DEF: &str = r#"<?xml version='1.0' encoding='UTF-8'?>
<ccp4i2>
  <ccp4i2_header>
    <function>DEF</function>
    <pluginName>pdbset</pluginName>
  </ccp4i2_header>
  <ccp4i2_body id="pdbset">
    <container id="inputData">
      <content id="XYZIN">
        <className>CPdbDataFile</className>
        <qualifiers>
          <mustExist>True</mustExist>
          <allowUndefined>False</allowUndefined>
        </qualifiers>
      </content>
      <content id="CELL">
        <className>CCell</className>
        <qualifiers>
          <allowUndefined>False</allowUndefined>
        </qualifiers>
      </content>
    </container>
    <container id="outputData">
      <content id="XYZOUT">
        <className>CPdbDataFile</className>
        <qualifiers>
          <default>
            <subType>1</subType>
          </default>
        </qualifiers>
      </content>
    </container>
    <container id="controlParameters">
      <content id="EXTRA_KEYWORDS">
        <className>CString</className>
        <qualifiers>
          <default>END</default>
        </qualifiers>
      </content>
    </container>
  </ccp4i2_body>
</ccp4i2>
"#;

/// Stand-in for CCP4i2's wrappers/refmac/script/refmac.def.xml: enough of
/// it to see the include merge.
pub const REFMAC_STUB: &str = r#"<?xml version='1.0' encoding='ASCII'?>
<ccp4i2>
  <ccp4i2_header><function>DEF</function><pluginName>refmac</pluginName></ccp4i2_header>
  <ccp4i2_body id="refmac">
    <container id="inputData">
      <content id="XYZIN">
        <className>CPdbDataFile</className>
        <qualifiers><mustExist>True</mustExist><allowUndefined>False</allowUndefined></qualifiers>
      </content>
      <content id="F_SIGF">
        <className>CObsDataFile</className>
        <qualifiers><mustExist>True</mustExist></qualifiers>
      </content>
    </container>
    <container id="prosmartProtein">
      <content id="MODE">
        <className>CString</className>
        <qualifiers><default>UNSELECTED</default><guiLabel>from refmac</guiLabel></qualifiers>
      </content>
    </container>
    <container id="controlParameters">
      <content id="NCYCLES">
        <className>CInt</className>
        <qualifiers><default>10</default><min>0</min></qualifiers>
      </content>
    </container>
  </ccp4i2_body>
</ccp4i2>
"#;

/// Stand-in for CCP4i2's wrappers/molrep_mr/script/molrep_mr.def.xml.
pub const MOLREP_STUB: &str = r#"<?xml version='1.0' encoding='ASCII'?>
<ccp4i2>
  <ccp4i2_header><function>DEF</function><pluginName>molrep_mr</pluginName></ccp4i2_header>
  <ccp4i2_body id="molrep_mr">
    <container id="inputData">
      <content id="F_SIGF">
        <className>CObsDataFile</className>
        <qualifiers><mustExist>True</mustExist><allowUndefined>False</allowUndefined></qualifiers>
      </content>
      <content id="FREERFLAG">
        <className>CFreeRDataFile</className>
        <qualifiers><allowUndefined>False</allowUndefined></qualifiers>
      </content>
      <content id="XYZIN">
        <className>CPdbDataFile</className>
      </content>
    </container>
    <container id="outputData">
      <content id="XYZOUT">
        <className>CPdbDataFile</className>
      </content>
    </container>
  </ccp4i2_body>
</ccp4i2>
"#;

/// Resolves the two includes of the CCP4i2 test definitions to the stubs.
pub fn stub_resolver(path: &str) -> Result<String, String> {
    match path {
        "wrappers/refmac/script/refmac.def.xml" => Ok(REFMAC_STUB.to_string()),
        "wrappers/molrep_mr/script/molrep_mr.def.xml" => Ok(MOLREP_STUB.to_string()),
        other => Err(format!("no such file: {other}")),
    }
}
