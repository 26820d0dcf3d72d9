//! params.xml: writing, reading back, and reading what CCP4i2 wrote.

mod common;

use common::{PDBSET_DEF, stub_resolver, testdata};
use kiln_container::{Container, ContainerError, FileValue, ParamsError, ParamsHeader, Value};

fn prosmart() -> Container {
    Container::from_def_xml_with_includes(&testdata("prosmart_refmac.def.xml"), &stub_resolver)
        .unwrap()
}

#[test]
fn round_trip_gives_an_equal_container() {
    let mut c = prosmart();
    let nasty = "a < b && c > d \"quoted\" 'single'\r\nsecond line\n\ttabbed  é ∑ 🦀 ]]> ";
    c.set("inputData.XYZIN", Value::Text("/data/model one.pdb".into()))
        .unwrap();
    c.set(
        "inputData.F_SIGF",
        Value::File(FileValue {
            path: "relative/dir/obs.mtz".into(),
            file_type: String::new(),
            annotation: nasty.into(),
        }),
    )
    .unwrap();
    c.set("inputData.ASUIN", Value::Text("/asu.xml".into()))
        .unwrap();
    c.set("prosmartProtein.KEYWORDS", Value::Text(nasty.into()))
        .unwrap();
    c.set("prosmartProtein.CHAINLIST_1", Value::Text("   ".into()))
        .unwrap();
    c.set("prosmartProtein.SEQID", Value::Float(1e-7)).unwrap();
    c.set("prosmartProtein.RMAX", Value::Float(1e20)).unwrap();
    c.set("prosmartProtein.BFAC", Value::Float(-0.0)).unwrap();
    c.set("prosmartProtein.OCCUPANCY", Value::Float(0.1 + 0.2))
        .unwrap();
    c.set("controlParameters.NCYCLES", Value::Int(i64::MIN))
        .unwrap();
    c.set("prosmartProtein.TOGGLE", Value::Bool(true)).unwrap();
    c.set("prosmartProtein.ADVANCED", Value::Bool(false))
        .unwrap();
    for p in ["/ref/a.pdb", "/ref/b.pdb"] {
        let item = c.push_item("prosmartProtein.REFERENCE_MODELS").unwrap();
        c.set(&item, Value::Text(p.into())).unwrap();
    }
    // An item added but left empty is still part of the list.
    c.push_item("prosmartNucleicAcid.REFERENCE_MODELS").unwrap();
    for chain in ["A", "B"] {
        let item = c.push_item("inputData.AMINOACID_CHAINS").unwrap();
        c.set(&item, Value::Text(chain.into())).unwrap();
    }
    let header = ParamsHeader {
        comment: Some(nasty.into()),
        project_name: Some(String::new()),
        ..ParamsHeader::new("prosmart_refmac")
    };
    let xml = c.to_params_xml(&header);
    let back = Container::from_params_xml(prosmart(), &xml).unwrap();
    assert_eq!(back, c, "{xml}");
    assert_eq!(back.to_params_xml(&header), xml);
    assert_eq!(ParamsHeader::from_params_xml(&xml).unwrap(), header);
    // List items are tagged with their class, as CCP4i2 writes them.
    assert!(xml.contains("<CPdbDataFile>"), "{xml}");
    assert!(xml.contains("<CString>A</CString>"), "{xml}");
    assert!(xml.contains("<CPdbDataFile/>"), "{xml}");
    assert!(xml.contains("&#13;"), "{xml}");
    assert!(
        xml.contains("<NCYCLES>-9223372036854775808</NCYCLES>"),
        "{xml}"
    );
    assert!(xml.contains("<SEQID>1e-7</SEQID>"), "{xml}");
    assert!(xml.contains("<TOGGLE>True</TOGGLE>"), "{xml}");
    // Defaults are not written.
    assert!(!xml.contains("RMIN"), "{xml}");
}

#[test]
fn only_explicit_values_are_written() {
    let c = Container::from_def_xml(PDBSET_DEF).unwrap();
    let xml = c.to_params_xml(&ParamsHeader::new("pdbset"));
    assert!(xml.contains("<inputData/>"), "{xml}");
    assert!(xml.contains("<outputData/>"), "{xml}");
    assert!(xml.contains("<controlParameters/>"), "{xml}");
    assert!(!xml.contains("EXTRA_KEYWORDS"), "{xml}");
    let back =
        Container::from_params_xml(Container::from_def_xml(PDBSET_DEF).unwrap(), &xml).unwrap();
    assert_eq!(back, c);
}

/// CCP4i2's coot_rebuild task, as far as the test file uses it.
const COOT_REBUILD_DEF: &str = r#"<ccp4i2><ccp4i2_header><pluginName>coot_rebuild</pluginName></ccp4i2_header>
<ccp4i2_body id="coot_rebuild">
  <container id="inputData">
    <content id="XYZIN"><className>CPdbDataFile</className></content>
    <content id="FPHIIN"><className>CMapCoeffsDataFile</className></content>
  </container>
  <container id="outputData">
    <content id="XYZOUT"><className>CPdbDataFile</className></content>
  </container>
  <container id="guiAdmin">
    <content id="followFrom"><className>CFollowFromJob</className></content>
    <content id="jobTitle"><className>CString</className></content>
    <content id="patchSelection"><className>CPatchSelection</className></content>
  </container>
</ccp4i2_body></ccp4i2>"#;

#[test]
fn reads_a_params_file_written_by_ccp4i2() {
    let text = testdata("ccp4mg_general.test1.params.xml");
    let header = ParamsHeader::from_params_xml(&text).unwrap();
    assert_eq!(header.plugin_name, "coot_rebuild");
    assert_eq!(header.job_number.as_deref(), Some("53"));
    assert_eq!(header.job_id.as_deref(), Some(""));
    assert_eq!(header.project_name.as_deref(), Some("demo8"));
    assert_eq!(header.creation_time.as_deref(), Some("18:31 23/Apr/14"));
    assert_eq!(header.comment.as_deref(), Some(""));

    let def = Container::from_def_xml(COOT_REBUILD_DEF).unwrap();
    let mut c = def.clone();
    let ignored = c.read_params_xml(&text).unwrap();
    assert!(ignored.is_empty(), "{ignored:?}");
    // Paths in a CCP4i2 project are relative to it (CCP4I2_TOP here).
    assert_eq!(
        c.get("inputData.XYZIN").unwrap(),
        Some(Value::File(FileValue {
            path: "wrappers/coot_rebuild/test_data/XYZOUT.pdb".into(),
            file_type: "chemical/x-pdb".into(),
            annotation: "Model refined by Prosmart/Refmac".into(),
        }))
    );
    assert_eq!(
        c.get("inputData.FPHIIN").unwrap(),
        Some(Value::File(FileValue {
            path: "wrappers/coot_rebuild/test_data/FPHIOUT.mtz".into(),
            file_type: "application/CCP4-mtz-map".into(),
            annotation: "Weighted map from refinement".into(),
        }))
    );
    assert_eq!(
        c.get("guiAdmin.jobTitle").unwrap(),
        Some(Value::Text("Rebuild model with Coot".into()))
    );
    assert!(!c.is_set("guiAdmin.followFrom").unwrap());
    assert!(!c.is_set("outputData").unwrap());
    // An unknown class's structure is kept and shown.
    assert!(c.is_set("guiAdmin.patchSelection").unwrap());
    assert_eq!(c.get("guiAdmin.patchSelection").unwrap(), None);
    assert_eq!(
        c.subtree_json("guiAdmin.patchSelection").unwrap(),
        serde_json::json!({"taskName": "coot_rebuild"})
    );
    // Written again, the project, subType and contentFlag survive, and it
    // reads back the same.
    let xml = c.to_params_xml(&header);
    assert!(xml.contains("<project>CCP4I2_TOP</project>"), "{xml}");
    assert!(
        xml.contains("<relPath>wrappers/coot_rebuild/test_data</relPath>"),
        "{xml}"
    );
    assert!(xml.contains("<contentFlag>1</contentFlag>"), "{xml}");
    assert!(xml.contains("<taskName>coot_rebuild</taskName>"), "{xml}");
    let back = Container::from_params_xml(def, &xml).unwrap();
    assert_eq!(back, c);
}

#[test]
fn unknown_elements_are_skipped_and_listed() {
    let mut c = Container::from_def_xml(PDBSET_DEF).unwrap();
    let text = r#"<ccp4i2><ccp4i2_body>
        <inputData><XYZIN><baseName>x.pdb</baseName></XYZIN><GONE>1</GONE>
          <CELL><a>10</a><delta>3</delta></CELL></inputData>
        <extraContainer><Y>2</Y></extraContainer>
      </ccp4i2_body></ccp4i2>"#;
    let ignored = c.read_params_xml(text).unwrap();
    assert_eq!(
        ignored,
        ["inputData.GONE", "inputData.CELL.delta", "extraContainer"]
    );
    assert_eq!(c.get("inputData.CELL.a").unwrap(), Some(Value::Float(10.0)));
    assert_eq!(
        c.get("inputData.XYZIN").unwrap(),
        Some(Value::File(FileValue {
            path: "x.pdb".into(),
            file_type: "chemical/x-pdb".into(),
            annotation: String::new()
        }))
    );
}

#[test]
fn bad_values_name_their_path() {
    let def = Container::from_def_xml(PDBSET_DEF).unwrap();
    let text = "<ccp4i2><ccp4i2_body><inputData><CELL><a>wide</a></CELL></inputData>\
                </ccp4i2_body></ccp4i2>";
    let err = Container::from_params_xml(def.clone(), text).unwrap_err();
    assert_eq!(
        err,
        ParamsError::Value(ContainerError::BadText {
            path: "inputData.CELL.a".into(),
            class: "CCellLength".into(),
            expected: "a number".into(),
            text: "wide".into()
        })
    );
    assert_eq!(
        err.to_string(),
        "params.xml: inputData.CELL.a (CCellLength): expected a number, got \"wide\""
    );
    let text = "<ccp4i2><ccp4i2_body><controlParameters><EXTRA_KEYWORDS><x/></EXTRA_KEYWORDS>\
                </controlParameters></ccp4i2_body></ccp4i2>";
    let err = Container::from_params_xml(def.clone(), text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "params.xml: controlParameters.EXTRA_KEYWORDS (CString): expected text, found element <x>"
    );
    // A failed read leaves the container as it was.
    let mut c = def.clone();
    c.set("inputData.CELL.b", Value::Float(5.0)).unwrap();
    let before = c.clone();
    let text = "<ccp4i2><ccp4i2_body><inputData><CELL><b>7</b><a>nan</a></CELL></inputData>\
                </ccp4i2_body></ccp4i2>";
    assert!(c.read_params_xml(text).is_err());
    assert_eq!(c, before);
    let err =
        Container::from_params_xml(def.clone(), "<ccp4i2><ccp4i2_header/></ccp4i2>").unwrap_err();
    assert_eq!(err, ParamsError::NoBody);
    let err = Container::from_params_xml(def, "<ccp4i2><ccp4i2_body>").unwrap_err();
    assert!(matches!(err, ParamsError::Xml(_)), "{err:?}");
}

#[test]
fn older_layouts_are_read() {
    let def = Container::from_def_xml(PDBSET_DEF).unwrap();
    // A body wrapped in <container>, a file given as bare text, an
    // absolute baseName, booleans and numbers with surrounding space.
    let text = r#"<ccp4:ccp4i2 xmlns:ccp4="http://www.ccp4.ac.uk/ccp4ns"><ccp4i2_body><container>
        <inputData><XYZIN> /abs/in.pdb </XYZIN><CELL><a> 1.5 </a></CELL></inputData>
        <outputData><XYZOUT><baseName>/abs/out.pdb</baseName><relPath>/stale</relPath></XYZOUT></outputData>
      </container></ccp4i2_body></ccp4:ccp4i2>"#;
    let c = Container::from_params_xml(def, text).unwrap();
    let path = |p: &str| match c.get(p).unwrap() {
        Some(Value::File(f)) => f.path,
        other => panic!("{other:?}"),
    };
    assert_eq!(path("inputData.XYZIN"), "/abs/in.pdb");
    assert_eq!(path("outputData.XYZOUT"), "/abs/out.pdb");
    assert_eq!(c.get("inputData.CELL.a").unwrap(), Some(Value::Float(1.5)));
}
