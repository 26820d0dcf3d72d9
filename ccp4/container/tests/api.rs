//! The container API as the host uses it for the demo pipeline:
//! mtzdump reads a cell, pdbset writes it into a coordinate file.

mod common;

use common::{MTZDUMP_DEF, PDBSET_DEF};
use kiln_container::{Container, ContainerError, FileValue, ParamsHeader, Severity, Value};
use serde_json::json;

fn mtzdump() -> Container {
    Container::from_def_xml(MTZDUMP_DEF).unwrap()
}

fn pdbset() -> Container {
    Container::from_def_xml(PDBSET_DEF).unwrap()
}

#[test]
fn command_line_params() {
    let mut c = mtzdump();
    assert_eq!(c.name(), "mtzdump");
    assert_eq!(
        c.set_from_str("HKLIN", "/data/5e5z.mtz").unwrap(),
        "inputData.HKLIN"
    );
    assert_eq!(
        c.get("inputData.HKLIN").unwrap(),
        Some(Value::File(FileValue {
            path: "/data/5e5z.mtz".into(),
            file_type: "application/CCP4-mtz".into(),
            annotation: String::new(),
        }))
    );
    assert!(c.is_set("inputData.HKLIN").unwrap());
    assert!(c.is_set("inputData").unwrap());
    assert!(!c.is_set("outputData").unwrap());
    // Full paths, dotted tails and bare names all work.
    assert_eq!(
        c.set_from_str("controlParameters.NREF", "20").unwrap(),
        "controlParameters.NREF"
    );
    assert_eq!(
        c.set_from_str("CELL.a", "9.643").unwrap(),
        "outputData.CELL.a"
    );
    assert_eq!(
        c.set_from_str("CELL", "9.643 9.609 19.029 90 101.22 90")
            .unwrap(),
        "outputData.CELL"
    );
    assert_eq!(
        c.get("outputData.CELL.beta").unwrap(),
        Some(Value::Float(101.22))
    );
    let err = c.set_from_str("CELL", "1 2 3").unwrap_err();
    assert_eq!(
        err.to_string(),
        "outputData.CELL (CCell): expected six numbers: a b c alpha beta gamma, got \"1 2 3\""
    );
    let err = c.set_from_str("NREF", "lots").unwrap_err();
    assert_eq!(
        err.to_string(),
        "controlParameters.NREF (CInt): expected an integer, got \"lots\""
    );
    let err = c.set_from_str("HKLOUT", "x").unwrap_err();
    assert_eq!(
        err,
        ContainerError::UnknownName {
            name: "HKLOUT".into()
        }
    );
    assert_eq!(err.to_string(), "no item named \"HKLOUT\" in the container");
    // An empty file path unsets the file.
    c.set_from_str("HKLIN", "").unwrap();
    assert!(!c.is_set("inputData.HKLIN").unwrap());
}

#[test]
fn typed_set_and_get() {
    let mut c = mtzdump();
    // Default, not set.
    assert_eq!(
        c.get("controlParameters.NREF").unwrap(),
        Some(Value::Int(-1))
    );
    assert!(!c.is_set("controlParameters.NREF").unwrap());
    c.set("controlParameters.NREF", Value::Int(5)).unwrap();
    assert!(c.is_set("controlParameters.NREF").unwrap());
    // Text into CInt is parsed.
    c.set("controlParameters.NREF", Value::Text(" 7 ".into()))
        .unwrap();
    assert_eq!(
        c.get("controlParameters.NREF").unwrap(),
        Some(Value::Int(7))
    );
    // Int into CFloat is fine.
    c.set("outputData.CELL.a", Value::Int(64)).unwrap();
    assert_eq!(
        c.get("outputData.CELL.a").unwrap(),
        Some(Value::Float(64.0))
    );
    // Wrong types are errors naming path, class and value.
    let err = c
        .set("controlParameters.NREF", Value::Float(1.5))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "controlParameters.NREF (CInt): expected an integer, got number 1.5"
    );
    let err = c.set("inputData.HKLIN", Value::Int(3)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inputData.HKLIN (CMtzDataFile): expected a file path, got integer 3"
    );
    let err = c
        .set("outputData.SPACEGROUP", Value::Bool(true))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "outputData.SPACEGROUP (CSpaceGroup): expected text, got boolean true"
    );
    let err = c
        .set("outputData.CELL.a", Value::Float(f64::NAN))
        .unwrap_err();
    assert!(err.to_string().contains("not a finite number"), "{err}");
    let err = c.set("outputData.CELL", Value::Float(1.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "outputData.CELL is a CCell, which holds items rather than a value: address its children"
    );
    assert!(c.get("outputData").is_err());
    // File types must fit the class.
    let pdb = FileValue {
        path: "/data/x.pdb".into(),
        file_type: "chemical/x-pdb".into(),
        annotation: String::new(),
    };
    let err = c.set("inputData.HKLIN", Value::File(pdb)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inputData.HKLIN (CMtzDataFile): a file of type \"chemical/x-pdb\" does not fit \
         (\"application/CCP4-mtz\" expected)"
    );
    let mtz = FileValue {
        path: "/data/x.mtz".into(),
        file_type: "application/CCP4-mtz".into(),
        annotation: "Native data".into(),
    };
    c.set("inputData.HKLIN", Value::File(mtz.clone())).unwrap();
    assert_eq!(c.get("inputData.HKLIN").unwrap(), Some(Value::File(mtz)));
    // Text XML cannot carry is refused up front.
    let err = c
        .set("outputData.SPACEGROUP", Value::Text("P 1\u{0}".into()))
        .unwrap_err();
    assert!(err.to_string().contains("params.xml cannot hold"), "{err}");
}

#[test]
fn paths() {
    let c = mtzdump();
    assert_eq!(c.class_name("").unwrap(), "CContainer");
    assert_eq!(c.class_name("outputData.CELL").unwrap(), "CCell");
    assert_eq!(c.class_name("outputData.CELL.gamma").unwrap(), "CCellAngle");
    assert!(c.children("inputData.HKLIN").unwrap().is_empty());
    let err = c.get("inputData.HKLOUT").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no item \"inputData.HKLOUT\": inputData has no item \"HKLOUT\""
    );
    let err = c.get("nowhere.x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no item \"nowhere.x\": the root has no item \"nowhere\""
    );
    let err = c.get("inputData.HKLIN.path").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no item \"inputData.HKLIN.path\": inputData.HKLIN is a CMtzDataFile value and has no items"
    );
    let err = c.get("inputData..HKLIN").unwrap_err();
    assert!(matches!(err, ContainerError::InvalidPath { .. }), "{err:?}");
    assert_eq!(c.find("a"), ["outputData.CELL.a"]);
    assert_eq!(c.find("HKLIN"), ["inputData.HKLIN"]);
    assert!(c.find("nothing").is_empty());
    assert!(c.find("0").is_empty());
    assert!(c.find("").is_empty());
}

#[test]
fn validation() {
    let mut c = pdbset();
    let reports = c.validate();
    let summary: Vec<_> = reports
        .iter()
        .map(|r| (r.path.as_str(), r.class_name.as_str(), r.code, r.severity))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "inputData.XYZIN",
                "CPdbDataFile",
                100,
                Severity::UndefinedError
            ),
            ("inputData.CELL", "CCell", 100, Severity::UndefinedError),
        ]
    );
    assert!(reports.iter().all(|r| r.severity.is_error()));
    assert_eq!(reports[0].message, "required value not set");
    assert_eq!(
        reports[0].to_string(),
        "inputData.XYZIN: required value not set (code 100)"
    );
    c.set_from_str("XYZIN", "/data/rnase_frag.pdb").unwrap();
    // Once part of a cell is set, its lengths are required (CCellLength
    // has allowUndefined False) and must not be negative.
    c.set("inputData.CELL.a", Value::Float(-1.0)).unwrap();
    let codes: Vec<_> = c.validate().into_iter().map(|r| (r.path, r.code)).collect();
    assert_eq!(
        codes,
        [
            ("inputData.CELL.a".to_string(), 101),
            ("inputData.CELL.b".to_string(), 100),
            ("inputData.CELL.c".to_string(), 100),
        ]
    );
    c.set_from_str("CELL", "9.643 9.609 19.029 90 101.22 90")
        .unwrap();
    assert!(c.validate().is_empty());
    c.set("inputData.CELL.alpha", Value::Float(200.0)).unwrap();
    let r = c.validate();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].code, r[0].message.as_str()),
        (102, "value 200 is above the maximum 180")
    );
    c.set("inputData.CELL.alpha", Value::Float(90.0)).unwrap();
    // mustExist is checked only against what the caller says exists.
    let none_exist = c.validate_files(&|_| false);
    assert_eq!(none_exist.len(), 1);
    assert_eq!(none_exist[0].path, "inputData.XYZIN");
    assert_eq!(none_exist[0].code, 101);
    assert_eq!(
        none_exist[0].message,
        "file does not exist (mustExist): /data/rnase_frag.pdb"
    );
    assert!(
        c.validate_files(&|f| f.path == "/data/rnase_frag.pdb")
            .is_empty()
    );
}

#[test]
fn string_qualifiers() {
    let def = r#"<ccp4i2><ccp4i2_body>
      <container id="controlParameters">
        <content id="NAME"><className>CString</className>
          <qualifiers><minLength>2</minLength><maxLength>4</maxLength><allowedCharsCode>1</allowedCharsCode></qualifiers></content>
        <content id="WORD"><className>COneWord</className></content>
        <content id="LEVEL"><className>CInt</className>
          <qualifiers><enumerators>1,2,3</enumerators><onlyEnumerators>True</onlyEnumerators><default>2</default></qualifiers></content>
        <content id="HINT"><className>CString</className>
          <qualifiers><enumerators>a,b</enumerators><default>c</default></qualifiers></content>
        <content id="FLAG"><className>CBoolean</className>
          <qualifiers><allowUndefined>False</allowUndefined></qualifiers></content>
        <content id="CHAINS"><className>CList</className>
          <qualifiers><listMinLength>1</listMinLength><listMaxLength>2</listMaxLength></qualifiers>
          <subItem><className>CString</className><qualifiers><maxLength>1</maxLength></qualifiers></subItem></content>
      </container></ccp4i2_body></ccp4i2>"#;
    let mut c = Container::from_def_xml(def).unwrap();
    c.set("controlParameters.NAME", Value::Text("a b c d e".into()))
        .unwrap();
    c.set("controlParameters.WORD", Value::Text("two words".into()))
        .unwrap();
    c.set("controlParameters.LEVEL", Value::Int(4)).unwrap();
    let codes: Vec<_> = c.validate().into_iter().map(|r| (r.path, r.code)).collect();
    let s = |p: &str, code| (p.to_string(), code);
    assert_eq!(
        codes,
        [
            s("controlParameters.NAME", 102),
            s("controlParameters.NAME", 104),
            s("controlParameters.WORD", 104),
            s("controlParameters.LEVEL", 103),
            s("controlParameters.FLAG", 100),
            s("controlParameters.CHAINS", 101),
        ]
    );
    c.set("controlParameters.NAME", Value::Text("x".into()))
        .unwrap();
    c.set("controlParameters.WORD", Value::Text("one".into()))
        .unwrap();
    c.set("controlParameters.LEVEL", Value::Text("3".into()))
        .unwrap();
    c.set("controlParameters.FLAG", Value::Text("false".into()))
        .unwrap();
    for chain in ["A", "BB", "C"] {
        let p = c.push_item("controlParameters.CHAINS").unwrap();
        c.set(&p, Value::Text(chain.into())).unwrap();
    }
    let codes: Vec<_> = c.validate().into_iter().map(|r| (r.path, r.code)).collect();
    assert_eq!(
        codes,
        [
            s("controlParameters.NAME", 101),
            s("controlParameters.CHAINS", 102),
            s("controlParameters.CHAINS.1", 102),
        ]
    );
    assert_eq!(
        c.children("controlParameters.CHAINS").unwrap(),
        ["0", "1", "2"]
    );
    let err = c.push_item("controlParameters.NAME").unwrap_err();
    assert_eq!(
        err.to_string(),
        "controlParameters.NAME is a CString, not a CList"
    );
    c.unset("controlParameters.CHAINS").unwrap();
    assert!(c.children("controlParameters.CHAINS").unwrap().is_empty());
}

#[test]
fn pipeline_copies_the_cell() {
    let mut dump = mtzdump();
    dump.set_from_str("HKLIN", "/data/5e5z.mtz").unwrap();
    // What the mtzdump plugin reports.
    for (part, x) in [
        ("a", 9.643),
        ("b", 9.609),
        ("c", 19.029),
        ("alpha", 90.0),
        ("beta", 101.22),
        ("gamma", 90.0),
    ] {
        dump.set(&format!("outputData.CELL.{part}"), Value::Float(x))
            .unwrap();
    }
    dump.set("outputData.SPACEGROUP", Value::Text("P 21 21 21".into()))
        .unwrap();
    let mut set = pdbset();
    set.set_from_str("XYZIN", "/data/rnase_frag.pdb").unwrap();
    set.copy_subtree("inputData.CELL", &dump, "outputData.CELL")
        .unwrap();
    assert_eq!(
        set.get("inputData.CELL.beta").unwrap(),
        Some(Value::Float(101.22))
    );
    assert!(set.is_set("inputData.CELL.gamma").unwrap());
    assert!(set.validate().is_empty(), "{:?}", set.validate());
    // Files go between related classes only.
    let err = set
        .copy_subtree("inputData.XYZIN", &dump, "inputData.HKLIN")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot copy inputData.HKLIN (CMtzDataFile) into inputData.XYZIN (CPdbDataFile): \
         file type \"application/CCP4-mtz\" does not fit"
    );
    let err = set
        .copy_subtree("inputData.CELL", &dump, "inputData.HKLIN")
        .unwrap_err();
    assert!(
        err.to_string().ends_with("a composite cannot take a file"),
        "{err}"
    );
    let err = set
        .copy_subtree("inputData.CELL.a", &dump, "outputData.SPACEGROUP")
        .unwrap_err();
    assert!(err.to_string().contains("expected a number"), "{err}");
    // A failed copy leaves the destination alone.
    assert_eq!(
        set.get("inputData.CELL.a").unwrap(),
        Some(Value::Float(9.643))
    );
    // Copying an unset source unsets the destination.
    let fresh = mtzdump();
    set.copy_subtree("inputData.CELL", &fresh, "outputData.CELL")
        .unwrap();
    assert!(!set.is_set("inputData.CELL").unwrap());
    // Defaults are copied as values.
    set.copy_subtree("inputData.CELL.a", &fresh, "controlParameters.NREF")
        .unwrap();
    assert_eq!(
        set.get("inputData.CELL.a").unwrap(),
        Some(Value::Float(-1.0))
    );
    // Whole containers copy the items both have.
    let mut out = pdbset();
    out.set_from_str("XYZOUT", "/jobs/job_2/XYZOUT.pdb")
        .unwrap();
    let mut next = pdbset();
    next.copy_subtree("outputData", &out, "outputData").unwrap();
    assert_eq!(
        next.get("outputData.XYZOUT").unwrap(),
        out.get("outputData.XYZOUT").unwrap()
    );
}

#[test]
fn json_view() {
    let mut c = mtzdump();
    c.set_from_str("HKLIN", "/data/5e5z.mtz").unwrap();
    c.set_from_str("CELL", "9.643 9.609 19.029 90 101.22 90")
        .unwrap();
    assert_eq!(
        c.to_json(),
        json!({
            "inputData": {"HKLIN": {"path": "/data/5e5z.mtz", "file_type": "application/CCP4-mtz", "annotation": ""}},
            "outputData": {
                "CELL": {"a": 9.643, "b": 9.609, "c": 19.029, "alpha": 90.0, "beta": 101.22, "gamma": 90.0},
                "SPACEGROUP": null
            },
            "controlParameters": {"NREF": -1}
        })
    );
    assert_eq!(c.subtree_json("outputData.CELL.a").unwrap(), json!(9.643));
    assert_eq!(
        c.files(),
        [(
            "inputData.HKLIN".to_string(),
            FileValue {
                path: "/data/5e5z.mtz".into(),
                file_type: "application/CCP4-mtz".into(),
                annotation: String::new()
            }
        )]
    );
}

#[test]
fn params_xml_of_a_finished_job() {
    let mut c = pdbset();
    c.set_from_str("XYZIN", "/data/rnase_frag.pdb").unwrap();
    c.set_from_str("CELL", "9.643 9.609 19.029 90 101.22 90")
        .unwrap();
    c.set_from_str("XYZOUT", "XYZOUT.pdb").unwrap();
    let header = ParamsHeader {
        job_id: Some("12".into()),
        job_number: Some("12".into()),
        creation_time: Some(ParamsHeader::creation_time_utc(1_398_277_860)),
        ..ParamsHeader::new("pdbset")
    };
    let xml = c.to_params_xml(&header);
    assert_eq!(
        xml,
        r#"<?xml version='1.0' encoding='UTF-8'?>
<ccp4:ccp4i2 xmlns:ccp4="http://www.ccp4.ac.uk/ccp4ns">
  <ccp4i2_header>
    <function>PARAMS</function>
    <jobId>12</jobId>
    <pluginName>pdbset</pluginName>
    <creationTime>18:31 23/Apr/14</creationTime>
    <jobNumber>12</jobNumber>
  </ccp4i2_header>
  <ccp4i2_body>
    <inputData>
      <XYZIN>
        <project/>
        <baseName>rnase_frag.pdb</baseName>
        <relPath>/data</relPath>
      </XYZIN>
      <CELL>
        <a>9.643</a>
        <b>9.609</b>
        <c>19.029</c>
        <alpha>90.0</alpha>
        <beta>101.22</beta>
        <gamma>90.0</gamma>
      </CELL>
    </inputData>
    <outputData>
      <XYZOUT>
        <project/>
        <baseName>XYZOUT.pdb</baseName>
        <subType>1</subType>
      </XYZOUT>
    </outputData>
    <controlParameters/>
  </ccp4i2_body>
</ccp4:ccp4i2>
"#
    );
    let back = Container::from_params_xml(pdbset(), &xml).unwrap();
    assert_eq!(back, c);
    assert_eq!(ParamsHeader::from_params_xml(&xml).unwrap(), header);
}
