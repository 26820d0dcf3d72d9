//! The CCP4i2 3.0.1 definitions in testdata/ load as CCP4i2 loads them.

mod common;

use common::{stub_resolver, testdata};
use kiln_container::{Container, DefError, Value};

#[test]
fn mtzheader() {
    let c = Container::from_def_xml(&testdata("mtzheader.def.xml")).unwrap();
    assert_eq!(c.name(), "mtzheader");
    assert_eq!(c.plugin_name(), Some("mtzheader"));
    assert_eq!(c.children("").unwrap(), ["inputData", "outputData"]);
    assert_eq!(
        c.children("outputData").unwrap(),
        [
            "MERGED",
            "SPACEGROUPCELL",
            "MAXRESOLUTION",
            "NO_REFLECTIONS"
        ]
    );
    assert_eq!(c.class_name("inputData.HKLIN").unwrap(), "CMtzDataFile");
    assert_eq!(
        c.qualifiers("inputData.HKLIN").unwrap().must_exist,
        Some(true)
    );
    assert_eq!(
        c.children("outputData.SPACEGROUPCELL").unwrap(),
        ["spaceGroup", "cell"]
    );
    assert_eq!(
        c.children("outputData.SPACEGROUPCELL.cell").unwrap(),
        ["a", "b", "c", "alpha", "beta", "gamma"]
    );
    assert_eq!(
        c.class_name("outputData.SPACEGROUPCELL.cell.alpha")
            .unwrap(),
        "CCellAngle"
    );
    assert_eq!(c.get("outputData.MAXRESOLUTION").unwrap(), None);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    // Nothing is required here, so a fresh container is valid.
    assert!(c.validate().is_empty(), "{:?}", c.validate());
}

#[test]
fn pdbset_ui() {
    let c = Container::from_def_xml(&testdata("pdbset_ui.def.xml")).unwrap();
    assert_eq!(
        c.children("").unwrap(),
        ["inputData", "outputData", "controlParameters"]
    );
    // The default spans lines in the file; it is trimmed.
    assert_eq!(
        c.get("controlParameters.EXTRA_PDBSET_KEYWORDS").unwrap(),
        Some(Value::Text("END".into()))
    );
    assert!(!c.is_set("controlParameters.EXTRA_PDBSET_KEYWORDS").unwrap());
    let q = c.qualifiers("inputData.XYZIN").unwrap();
    assert_eq!(q.allow_undefined, Some(false));
    assert_eq!(
        q.other.get("ifAtomSelection").map(String::as_str),
        Some("True")
    );
    assert_eq!(
        q.other.get("fromPreviousJob").map(String::as_str),
        Some("False")
    );
    let reports = c.validate();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].path, "inputData.XYZIN");
    assert_eq!(reports[0].code, 100);
}

#[test]
fn includes_without_resolver_fail_clearly() {
    for (file, include) in [
        (
            "molrep_pipe.def.xml",
            "wrappers/molrep_mr/script/molrep_mr.def.xml",
        ),
        (
            "prosmart_refmac.def.xml",
            "wrappers/refmac/script/refmac.def.xml",
        ),
    ] {
        let err = Container::from_def_xml(&testdata(file)).unwrap_err();
        assert!(
            matches!(&err, DefError::IncludeNotResolved { path, .. } if path == include),
            "{file}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("include not resolved: {include}")),
            "{msg}"
        );
    }
}

#[test]
fn include_resolver_errors_are_reported() {
    let failing = |p: &str| -> Result<String, String> { Err(format!("{p} is not installed")) };
    let err = Container::from_def_xml_with_includes(&testdata("molrep_pipe.def.xml"), &failing)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "include not resolved: wrappers/molrep_mr/script/molrep_mr.def.xml: \
         wrappers/molrep_mr/script/molrep_mr.def.xml is not installed"
    );
    let broken = |_: &str| -> Result<String, String> { Ok("<ccp4i2><oops".to_string()) };
    let err = Container::from_def_xml_with_includes(&testdata("molrep_pipe.def.xml"), &broken)
        .unwrap_err();
    assert!(matches!(err, DefError::InInclude { .. }), "{err:?}");
    assert!(err.to_string().contains("not well-formed"), "{err}");
}

#[test]
fn molrep_pipe_with_parent() {
    let c = Container::from_def_xml_with_includes(&testdata("molrep_pipe.def.xml"), &stub_resolver)
        .unwrap();
    assert_eq!(c.name(), "molrep_pipeline");
    // The parent's items come first; the pipeline's own are merged in.
    assert_eq!(
        c.children("inputData").unwrap(),
        [
            "F_SIGF",
            "FREERFLAG",
            "XYZIN",
            "RUNSHEETBEND",
            "REFMAC_NCYC"
        ]
    );
    // FREERFLAG's qualifiers were overridden, not replaced.
    let q = c.qualifiers("inputData.FREERFLAG").unwrap();
    assert_eq!(q.allow_undefined, Some(true));
    assert_eq!(q.must_exist, Some(true));
    assert_eq!(
        q.other.get("sameCrystalAs").map(String::as_str),
        Some("F_SIGF")
    );
    assert_eq!(
        c.get("inputData.RUNSHEETBEND").unwrap(),
        Some(Value::Bool(true))
    );
    assert_eq!(
        c.get("inputData.REFMAC_NCYC").unwrap(),
        Some(Value::Text("20".into()))
    );
    assert_eq!(
        c.qualifiers("inputData.REFMAC_NCYC").unwrap().enumerators,
        ["0", "5", "10", "20", "50", "100", "200"]
    );
    assert_eq!(
        c.children("outputData").unwrap(),
        [
            "XYZOUT",
            "F_SIGF",
            "FREERFLAG",
            "XYZOUT_SHEETBEND",
            "XYZOUT_MOLREP",
            "DIFFPHIOUT",
            "FPHIOUT",
            "PERFORMANCE"
        ]
    );
    // An unknown class is kept, as text, with a warning.
    assert_eq!(
        c.class_name("outputData.PERFORMANCE").unwrap(),
        "CRefinementPerformance"
    );
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("CRefinementPerformance")),
        "{:?}",
        c.warnings()
    );
    // The same bare name in two containers is ambiguous.
    assert_eq!(
        c.find("FREERFLAG"),
        ["inputData.FREERFLAG", "outputData.FREERFLAG"]
    );
    let mut c = c;
    let err = c.set_from_str("FREERFLAG", "/data/free.mtz").unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"FREERFLAG\" is ambiguous: it matches inputData.FREERFLAG, outputData.FREERFLAG; \
         give a dotted path"
    );
    assert_eq!(
        c.set_from_str("inputData.FREERFLAG", "/data/free.mtz")
            .unwrap(),
        "inputData.FREERFLAG"
    );
    // F_SIGF is required by the parent definition.
    let codes: Vec<_> = c.validate().into_iter().map(|r| (r.path, r.code)).collect();
    assert_eq!(codes, [("inputData.F_SIGF".to_string(), 100)]);
}

#[test]
fn molrep_structured_file_defaults() {
    let mut c =
        Container::from_def_xml_with_includes(&testdata("molrep_pipe.def.xml"), &stub_resolver)
            .unwrap();
    // A file default without a file name gives no value ...
    assert_eq!(c.get("outputData.DIFFPHIOUT").unwrap(), None);
    c.set_from_str("outputData.DIFFPHIOUT", "/jobs/job_3/DIFFPHIOUT.mtz")
        .unwrap();
    // ... but its subType and contentFlag go with the file once it is set.
    let xml = c.to_params_xml(&kiln_container::ParamsHeader::new("molrep_pipe"));
    let start = xml.find("<DIFFPHIOUT>").unwrap();
    let end = xml.find("</DIFFPHIOUT>").unwrap();
    let part = &xml[start..end];
    assert!(part.contains("<subType>2</subType>"), "{part}");
    assert!(part.contains("<contentFlag>1</contentFlag>"), "{part}");
    assert!(
        part.contains("<baseName>DIFFPHIOUT.mtz</baseName>"),
        "{part}"
    );
    assert!(part.contains("<relPath>/jobs/job_3</relPath>"), "{part}");
}

#[test]
fn prosmart_refmac_with_parent() {
    let c =
        Container::from_def_xml_with_includes(&testdata("prosmart_refmac.def.xml"), &stub_resolver)
            .unwrap();
    assert_eq!(c.name(), "prosmart_refmac");
    assert_eq!(
        c.children("").unwrap(),
        [
            "inputData",
            "prosmartProtein",
            "controlParameters",
            "prosmartNucleicAcid",
            "libg",
            "platonyzer"
        ]
    );
    assert_eq!(
        c.children("inputData").unwrap(),
        [
            "XYZIN",
            "F_SIGF",
            "ASUIN",
            "AMINOACID_CHAINS",
            "NUCLEOTIDE_CHAINS"
        ]
    );
    // The pipeline's MODE overrides the parent's default but keeps its label.
    assert_eq!(
        c.get("prosmartProtein.MODE").unwrap(),
        Some(Value::Text("DISABLED".into()))
    );
    assert_eq!(
        c.qualifiers("prosmartProtein.MODE")
            .unwrap()
            .gui_label
            .as_deref(),
        Some("from refmac")
    );
    assert_eq!(
        c.get("controlParameters.NCYCLES").unwrap(),
        Some(Value::Int(10))
    );
    assert_eq!(
        c.get("controlParameters.REFMAC_CLEANUP").unwrap(),
        Some(Value::Bool(true))
    );
    assert_eq!(
        c.get("prosmartProtein.SEQID").unwrap(),
        Some(Value::Float(75.0))
    );
    let q = c.qualifiers("prosmartProtein.SEQID").unwrap();
    assert_eq!((q.min, q.max), (Some(0.0), Some(100.0)));
    assert_eq!(q.other.get("charWidth").map(String::as_str), Some("4"));
    // Commented-out defaults are not defaults.
    assert_eq!(c.get("prosmartProtein.WEIGHT").unwrap(), None);
    assert_eq!(c.get("prosmartProtein.KEYWORDS").unwrap(), None);
    assert_eq!(
        c.get("libg.KEYWORDS").unwrap(),
        Some(Value::Text(
            "# Replace this with optional additional libg keywords".into()
        ))
    );
    // Lists: item class from <subItem>, empty to start with.
    assert_eq!(
        c.class_name("prosmartProtein.REFERENCE_MODELS").unwrap(),
        "CList"
    );
    assert!(
        c.children("prosmartProtein.REFERENCE_MODELS")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.find("REFERENCE_MODELS"),
        [
            "prosmartProtein.REFERENCE_MODELS",
            "prosmartNucleicAcid.REFERENCE_MODELS"
        ]
    );
    // A dotted tail is enough to tell them apart.
    assert_eq!(
        c.resolve("prosmartProtein.MODE").unwrap(),
        "prosmartProtein.MODE"
    );
    assert_eq!(
        c.find("MODE").len(),
        4,
        "MODE is in four containers: {:?}",
        c.find("MODE")
    );
    let mut c = c;
    let item = c.push_item("prosmartProtein.REFERENCE_MODELS").unwrap();
    assert_eq!(item, "prosmartProtein.REFERENCE_MODELS.0");
    assert_eq!(c.class_name(&item).unwrap(), "CPdbDataFile");
    assert_eq!(c.qualifiers(&item).unwrap().must_exist, Some(true));
    c.set(
        "prosmartProtein.REFERENCE_MODELS[0]",
        Value::Text("/ref/1abc.pdb".into()),
    )
    .unwrap();
    assert_eq!(
        c.find("REFERENCE_MODELS.0"),
        ["prosmartProtein.REFERENCE_MODELS.0"]
    );
    // The parent requires XYZIN; the enumerated defaults are all allowed.
    let reports = c.validate();
    let codes: Vec<_> = reports.iter().map(|r| (r.path.as_str(), r.code)).collect();
    assert_eq!(codes, [("inputData.XYZIN", 100)], "{reports:?}");
}

#[test]
fn prosmart_enumerators_are_enforced() {
    let mut c =
        Container::from_def_xml_with_includes(&testdata("prosmart_refmac.def.xml"), &stub_resolver)
            .unwrap();
    c.set("inputData.XYZIN", Value::Text("/x.pdb".into()))
        .unwrap();
    c.set("prosmartProtein.ALL_BEST", Value::Text("SOME".into()))
        .unwrap();
    c.set("prosmartProtein.OCCUPANCY", Value::Float(1.5))
        .unwrap();
    let reports = c.validate();
    let codes: Vec<_> = reports.iter().map(|r| (r.path.as_str(), r.code)).collect();
    assert_eq!(
        codes,
        [
            ("prosmartProtein.ALL_BEST", 103),
            ("prosmartProtein.OCCUPANCY", 102)
        ],
        "{reports:?}"
    );
    assert_eq!(
        reports[0].message,
        "value \"SOME\" is not one of the allowed values: ALL, BEST"
    );
    assert_eq!(reports[1].message, "value 1.5 is above the maximum 1");
}

#[test]
fn dir_resolver_reads_a_ccp4i2_tree() {
    let top = std::env::temp_dir().join(format!("kiln-container-top-{}", std::process::id()));
    let dir = top.join("wrappers/refmac/script");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("refmac.def.xml"), common::REFMAC_STUB).unwrap();
    let resolver = kiln_container::dir_resolver(&top);
    let c = Container::from_def_xml_with_includes(&testdata("prosmart_refmac.def.xml"), &resolver);
    let escape = resolver("../../etc/passwd");
    std::fs::remove_dir_all(&top).unwrap();
    let c = c.unwrap();
    assert_eq!(c.class_name("inputData.F_SIGF").unwrap(), "CObsDataFile");
    assert!(escape.unwrap_err().contains("not a plain relative path"));
    let err = Container::from_def_xml_with_includes(
        &testdata("molrep_pipe.def.xml"),
        &kiln_container::dir_resolver("/nonexistent-ccp4i2"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("include not resolved: wrappers/molrep_mr/script/molrep_mr.def.xml: "),
        "{err}"
    );
}

#[test]
fn include_cycles_and_depth() {
    let looping = |p: &str| -> Result<String, String> {
        let next = if p == "a/a.def.xml" { "b" } else { "a" };
        Ok(format!(
            "<ccp4i2><ccp4i2_body><file><CI2XmlDataFile><project>CCP4I2_TOP</project>\
             <relPath>{next}</relPath><baseName>{next}.def.xml</baseName></CI2XmlDataFile></file>\
             </ccp4i2_body></ccp4i2>"
        ))
    };
    let def = "<ccp4i2><ccp4i2_body><file><CI2XmlDataFile><relPath>a</relPath>\
               <baseName>a.def.xml</baseName></CI2XmlDataFile></file></ccp4i2_body></ccp4i2>";
    let err = Container::from_def_xml_with_includes(def, &looping).unwrap_err();
    assert_eq!(
        err.to_string(),
        "include cycle: a/a.def.xml -> b/b.def.xml -> a/a.def.xml"
    );
    let deeper = |p: &str| -> Result<String, String> {
        let n: u32 = p.trim_end_matches(".def.xml").parse().map_err(|_| "bad")?;
        Ok(format!(
            "<ccp4i2><ccp4i2_body><file><CI2XmlDataFile><baseName>{}.def.xml</baseName>\
             </CI2XmlDataFile></file></ccp4i2_body></ccp4i2>",
            n + 1
        ))
    };
    let def = "<ccp4i2><ccp4i2_body><file><CI2XmlDataFile><baseName>0.def.xml</baseName>\
               </CI2XmlDataFile></file></ccp4i2_body></ccp4i2>";
    let err = Container::from_def_xml_with_includes(def, &deeper).unwrap_err();
    assert!(
        err.to_string().contains("includes nest deeper than 16"),
        "{err}"
    );
    let other_project = "<ccp4i2><ccp4i2_body><file><CI2XmlDataFile><project>MYPROJ</project>\
               <baseName>x.def.xml</baseName></CI2XmlDataFile></file></ccp4i2_body></ccp4i2>";
    let err = Container::from_def_xml_with_includes(other_project, &deeper).unwrap_err();
    assert_eq!(
        err.to_string(),
        "include not resolved: x.def.xml: project \"MYPROJ\" is not supported, only CCP4I2_TOP"
    );
}

/// Numeric items as CCP4i2 3.0.1's xia2 wrappers define them (trimmed from
/// xia2_ssx_reduce.def.xml and xia2_multiplex.def.xml), where `Auto` lets
/// the program choose, next to numeric items with real defaults.
const AUTO_DEF: &str = r#"<?xml version='1.0' encoding='UTF-8'?>
<ccp4:ccp4i2 xmlns:ccp4="http://www.ccp4.ac.uk/ccp4ns">
  <ccp4i2_header><function>DEF</function><pluginName>xia2_auto</pluginName></ccp4i2_header>
  <ccp4i2_body id="xia2_auto">
    <container id="controlParameters">
      <content id="multiprocessing__nproc">
        <className>CInt</className>
        <qualifiers>
          <guiLabel>Number of parallel processes used</guiLabel>
          <guiDefinition><expertLevel>1</expertLevel></guiDefinition>
          <default>Auto</default>
        </qualifiers>
      </content>
      <content id="symmetry__cosym__d_min">
        <className>CFloat</className>
        <qualifiers>
          <guiLabel>d_min</guiLabel>
          <default>Auto</default>
          <min>0</min>
        </qualifiers>
      </content>
      <content id="WAVELENGTH">
        <className>CWavelength</className>
        <qualifiers><default>NONE</default></qualifiers>
      </content>
    </container>
  </ccp4i2_body>
</ccp4:ccp4i2>
"#;

/// Numeric items with real defaults (and CCP4i2's `None` for "no default").
const NUMERIC_DEF: &str = r#"<ccp4i2>
  <ccp4i2_body id="numbers">
    <container id="controlParameters">
      <content id="NCYCLES">
        <className>CInt</className>
        <qualifiers><default>10</default></qualifiers>
      </content>
      <content id="NCYCLES_F">
        <className>CInt</className>
        <qualifiers><default>20.0</default></qualifiers>
      </content>
      <content id="D_MIN">
        <className>CFloat</className>
        <qualifiers><default>1.85</default></qualifiers>
      </content>
      <content id="D_MAX">
        <className>CFloat</className>
        <qualifiers><default>None</default></qualifiers>
      </content>
    </container>
  </ccp4i2_body>
</ccp4i2>
"#;

#[test]
fn auto_numeric_defaults_load_unset_with_a_warning() {
    let c = Container::from_def_xml(AUTO_DEF).unwrap();
    for path in [
        "controlParameters.multiprocessing__nproc",
        "controlParameters.symmetry__cosym__d_min",
        "controlParameters.WAVELENGTH",
    ] {
        assert_eq!(c.get(path).unwrap(), None, "{path}");
        assert!(!c.is_set(path).unwrap(), "{path}");
        // The word is not passed on as if it were the item's default.
        assert_eq!(c.qualifiers(path).unwrap().default, None, "{path}");
    }
    // The other qualifiers of those items are still read.
    assert_eq!(
        c.qualifiers("controlParameters.symmetry__cosym__d_min")
            .unwrap()
            .min,
        Some(0.0)
    );
    assert_eq!(
        c.warnings(),
        [
            "controlParameters.multiprocessing__nproc: default \"Auto\" is not an integer (CInt); \
             the item was left unset, as CCP4i2 leaves it",
            "controlParameters.symmetry__cosym__d_min: default \"Auto\" is not a number (CFloat); \
             the item was left unset, as CCP4i2 leaves it",
            "controlParameters.WAVELENGTH: default \"NONE\" is not a number (CWavelength); \
             the item was left unset, as CCP4i2 leaves it",
        ]
    );
    // Unset is a legal state: the items are optional, so the job validates.
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    // A value given later fills the item as usual.
    let mut c = c;
    c.set_from_str("multiprocessing__nproc", "8").unwrap();
    assert_eq!(
        c.get("controlParameters.multiprocessing__nproc").unwrap(),
        Some(Value::Int(8))
    );
}

#[test]
fn real_numeric_defaults_still_load() {
    let c = Container::from_def_xml(NUMERIC_DEF).unwrap();
    for (path, want, text) in [
        ("controlParameters.NCYCLES", Value::Int(10), "10"),
        // CCP4i2 reads an integer default through a float.
        ("controlParameters.NCYCLES_F", Value::Int(20), "20.0"),
        ("controlParameters.D_MIN", Value::Float(1.85), "1.85"),
    ] {
        assert_eq!(c.get(path).unwrap(), Some(want), "{path}");
        assert!(!c.is_set(path).unwrap(), "{path}");
        assert_eq!(
            c.qualifiers(path).unwrap().default.as_deref(),
            Some(text),
            "{path}"
        );
    }
    // `None` is CCP4i2's own "no default": unset, and nothing to warn about.
    assert_eq!(c.get("controlParameters.D_MAX").unwrap(), None);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn malformed_numeric_defaults_are_still_errors() {
    // Text with digits in it is a number written wrongly, not a word
    // standing in for one; it is refused rather than silently dropped.
    for (class, text, expected) in [
        ("CInt", "2O", "an integer"),
        ("CInt", "1.5", "an integer"),
        ("CFloat", "1,5", "a number"),
        ("CFloat", "1e999", "a number"),
    ] {
        let def = format!(
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"N\"><className>{class}</className>\
             <qualifiers><default>{text}</default></qualifiers></content></container></ccp4i2_body></ccp4i2>"
        );
        let err = Container::from_def_xml(&def).unwrap_err();
        assert_eq!(
            err,
            DefError::BadQualifier {
                path: "x.N".into(),
                qualifier: "default".into(),
                reason: format!("expected {expected}, got {text:?}"),
            },
            "{class} {text}"
        );
    }
    // Only numbers take a word as "unset": a boolean's default must be one.
    let def = "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"B\"><className>CBoolean</className>\
               <qualifiers><default>Auto</default></qualifiers></content></container></ccp4i2_body></ccp4i2>";
    assert!(Container::from_def_xml(def).is_err());
}

#[test]
fn auto_in_params_xml_is_still_refused() {
    // The leniency is for definition defaults only: a params.xml value is
    // what a job runs with, and a word there is an error as before.
    let def = Container::from_def_xml(NUMERIC_DEF).unwrap();
    for (item, class, expected) in [
        ("NCYCLES", "CInt", "an integer"),
        ("D_MIN", "CFloat", "a number"),
    ] {
        let text = format!(
            "<ccp4i2><ccp4i2_body><controlParameters><{item}>Auto</{item}>\
             </controlParameters></ccp4i2_body></ccp4i2>"
        );
        let err = Container::from_params_xml(def.clone(), &text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "params.xml: controlParameters.{item} ({class}): expected {expected}, got \"Auto\""
            )
        );
        // Nor may a user set one to a word.
        let mut c = def.clone();
        assert!(c.set_from_str(item, "Auto").is_err(), "{item}");
    }
}
