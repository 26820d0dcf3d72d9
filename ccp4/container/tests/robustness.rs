//! Bad input gives errors, never panics.

mod common;

use common::{MTZDUMP_DEF, PDBSET_DEF, stub_resolver, testdata};
use kiln_container::{Container, DefError, ParamsHeader, Value};

#[test]
fn malformed_definitions() {
    let cases: &[(&str, &str)] = &[
        ("", "not well-formed"),
        ("<ccp4i2>", "not well-formed"),
        ("not xml at all", "not well-formed"),
        ("<ccp4i2><ccp4i2_body></ccp4i2>", "not well-formed"),
        ("<other/>", "root element is <other>, expected <ccp4i2>"),
        ("<ccp4i2><ccp4i2_header/></ccp4i2>", "has no <ccp4i2_body>"),
        (
            "<ccp4i2><ccp4i2_body><container id=\"in put\"/></ccp4i2_body></ccp4i2>",
            "in put: <container> id \"in put\" is not a name",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"a.b\"/></ccp4i2_body></ccp4i2>",
            "is not a name",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"N\"><className>CInt</className>\
             <qualifiers><min>low</min></qualifiers></content></container></ccp4i2_body></ccp4i2>",
            "x.N: qualifier <min>: expected a number, got \"low\"",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"N\"><className>CInt</className>\
             <qualifiers><default>1.5</default></qualifiers></content></container></ccp4i2_body></ccp4i2>",
            "x.N: qualifier <default>: expected an integer, got \"1.5\"",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"B\"><className>CBoolean</className>\
             <qualifiers><default>maybe</default></qualifiers></content></container></ccp4i2_body></ccp4i2>",
            "x.B: qualifier <default>: expected a boolean (True/False), got \"maybe\"",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"L\"><className>CList</className>\
             <qualifiers><listMinLength>-1</listMinLength></qualifiers></content></container></ccp4i2_body></ccp4i2>",
            "x.L: qualifier <listMinLength>: expected a non-negative integer, got \"-1\"",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"F\"><className>CFloat</className>\
             <qualifiers><max>inf</max></qualifiers></content></container></ccp4i2_body></ccp4i2>",
            "expected a number, got \"inf\"",
        ),
        (
            "<ccp4i2><ccp4i2_body><container id=\"x\"><content id=\"F\"><className>C&lt;x&gt;</className>\
             </content></container></ccp4i2_body></ccp4i2>",
            "x.F: className \"C<x>\" is not a class name",
        ),
        (
            "<!DOCTYPE ccp4i2 [<!ENTITY x \"y\">]><ccp4i2><ccp4i2_body/></ccp4i2>",
            "not well-formed",
        ),
    ];
    for (text, want) in cases {
        let err = Container::from_def_xml(text).unwrap_err();
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
}

#[test]
fn deep_nesting() {
    let n = 50_000;
    let def = format!(
        "<ccp4i2><ccp4i2_body>{}{}</ccp4i2_body></ccp4i2>",
        "<container id=\"c\">".repeat(n),
        "</container>".repeat(n)
    );
    assert_eq!(
        Container::from_def_xml(&def).unwrap_err(),
        DefError::TooDeep { limit: 128 }
    );
    // Within the limit, deep containers work.
    let n = 100;
    let def = format!(
        "<ccp4i2><ccp4i2_body>{}<content id=\"X\"><className>CInt</className></content>{}</ccp4i2_body></ccp4i2>",
        "<container id=\"c\">".repeat(n),
        "</container>".repeat(n)
    );
    let mut c = Container::from_def_xml(&def).unwrap();
    let path = format!("{}X", "c.".repeat(n));
    assert_eq!(c.set_from_str("X", "3").unwrap(), path);
    let xml = c.to_params_xml(&ParamsHeader::new("deep"));
    let back = Container::from_params_xml(Container::from_def_xml(&def).unwrap(), &xml).unwrap();
    assert_eq!(back, c);
    let params = format!(
        "<ccp4i2><ccp4i2_body>{}{}</ccp4i2_body></ccp4i2>",
        "<c>".repeat(50_000),
        "</c>".repeat(50_000)
    );
    assert!(
        Container::from_params_xml(Container::from_def_xml(MTZDUMP_DEF).unwrap(), &params).is_err()
    );
}

#[test]
fn lenient_where_ccp4i2_is() {
    let def = r#"<ccp4i2><ccp4i2_body>
      <container><content id="LOST"><className>CInt</className></content></container>
      <container id="x">
        <content id="NOCLASS"><qualifiers/></content>
        <content id="N"><className>CInt</className><qualifiers><min>None</min><default>None</default></qualifiers></content>
        <content id="N"><className>CInt</className><qualifiers><max>5</max></qualifiers></content>
        <content id="S"><className>CString</className><subItem><className>CInt</className></subItem></content>
        <content id="C"><className>CCell</className><qualifiers><default><a>10</a><zeta>1</zeta></default></qualifiers></content>
        <content id="SGC"><className>CSpaceGroupCell</className><qualifiers><default><spaceGroup>P 1</spaceGroup><cell><b>20</b></cell></default></qualifiers></content>
      </container></ccp4i2_body></ccp4i2>"#;
    let c = Container::from_def_xml(def).unwrap();
    assert_eq!(c.children("x").unwrap(), ["N", "S", "C", "SGC"]);
    // The second N overrides the first one's qualifiers.
    assert_eq!(c.qualifiers("x.N").unwrap().max, Some(5.0));
    assert_eq!(c.get("x.C.a").unwrap(), Some(Value::Float(10.0)));
    assert_eq!(
        c.get("x.SGC.spaceGroup").unwrap(),
        Some(Value::Text("P 1".into()))
    );
    assert_eq!(c.get("x.SGC.cell.b").unwrap(), Some(Value::Float(20.0)));
    let w = c.warnings().join("\n");
    for want in [
        "a <container> without id in the body was ignored",
        "x.NOCLASS: no <className>",
        "x.S: <subItem> on a CString",
        "x.C: default names \"zeta\"",
    ] {
        assert!(w.contains(want), "{want} not in\n{w}");
    }
}

/// A tiny deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[test]
fn mangled_definitions_do_not_panic() {
    let sources = [
        testdata("prosmart_refmac.def.xml"),
        testdata("molrep_pipe.def.xml"),
        testdata("mtzheader.def.xml"),
        MTZDUMP_DEF.to_string(),
    ];
    let mut rng = Lcg(7);
    let pieces: &[&str] = &[
        "<",
        ">",
        "</content>",
        "<content id=\"Q\">",
        "<default>",
        "</default>",
        "x",
        "&amp;",
        "<subItem>",
        "<className>CList</className>",
        "<className>CCell</className>",
        "\"",
        "<container id=\"inputData\">",
        "</container>",
        "<file>",
        "<min>",
        "1e999",
        "-",
    ];
    let mut parsed = 0;
    for src in &sources {
        for _ in 0..300 {
            let mut text = src.clone();
            for _ in 0..(1 + rng.next() % 3) {
                let at = (rng.next() as usize) % text.len();
                let at = (0..=at)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                match rng.next() % 3 {
                    0 => text.truncate(at),
                    1 => text.insert_str(at, pieces[(rng.next() as usize) % pieces.len()]),
                    _ => {
                        let end = (at + (rng.next() as usize) % 40).min(text.len());
                        let end = (end..=text.len())
                            .find(|&i| text.is_char_boundary(i))
                            .unwrap_or(text.len());
                        text.replace_range(at..end, "");
                    }
                }
            }
            if let Ok(mut c) = Container::from_def_xml_with_includes(&text, &stub_resolver) {
                parsed += 1;
                exercise(&mut c);
            }
        }
    }
    assert!(parsed > 50, "only {parsed} mangled definitions parsed");
}

/// Run every operation over every item of `c`, checking only that nothing
/// panics and that params.xml reads back.
fn exercise(c: &mut Container) {
    let _ = c.validate();
    let _ = c.to_json();
    let mut paths = vec![String::new()];
    let mut i = 0;
    while i < paths.len() && paths.len() < 2000 {
        let p = paths[i].clone();
        i += 1;
        if let Ok(kids) = c.children(&p) {
            for k in kids {
                paths.push(if p.is_empty() { k } else { format!("{p}.{k}") });
            }
        }
        let _ = c.get(&p);
        let _ = c.class_name(&p);
        let _ = c.set_from_str(&p, "1");
        let _ = c.set(&p, Value::Text("2.5".into()));
        let _ = c.push_item(&p);
    }
    let xml = c.to_params_xml(&ParamsHeader::new("x"));
    let mut fresh = c.clone();
    fresh.unset("").unwrap();
    let back = Container::from_params_xml(fresh, &xml).unwrap();
    assert_eq!(&back, c, "{xml}");
}

#[test]
fn mangled_params_do_not_panic() {
    let def = Container::from_def_xml(PDBSET_DEF).unwrap();
    let mut good = def.clone();
    good.set_from_str("XYZIN", "/data/in.pdb").unwrap();
    good.set_from_str("CELL", "1 2 3 90 90 90").unwrap();
    let src = good.to_params_xml(&ParamsHeader::new("pdbset"));
    let mut rng = Lcg(11);
    for _ in 0..2000 {
        let mut text = src.clone();
        let at = (rng.next() as usize) % text.len();
        match rng.next() % 4 {
            0 => text.truncate(at),
            1 => text.insert_str(at, "<x>"),
            2 => text.insert(at, 'q'),
            _ => text.insert_str(at, "</inputData>"),
        }
        let _ = Container::from_params_xml(def.clone(), &text);
        let _ = ParamsHeader::from_params_xml(&text);
    }
}

#[test]
fn odd_paths_do_not_panic() {
    let mut c = Container::from_def_xml(PDBSET_DEF).unwrap();
    for p in [
        "",
        ".",
        "..",
        "[",
        "]",
        "[0]",
        "a[0",
        "inputData[0]",
        "inputData.CELL[1]",
        "inputData.CELL.a.b",
        "inputData.XYZIN.0",
        "0",
        "18446744073709551616",
        "inputData.CELL.a[99999999999999999999]",
        "é",
        "inputData.\u{0}",
    ] {
        let _ = c.get(p);
        let _ = c.set(p, Value::Int(1));
        let _ = c.set_from_str(p, "1");
        let _ = c.children(p);
        let _ = c.is_set(p);
        let _ = c.find(p);
        let _ = c.resolve(p);
        let _ = c.unset(p);
        let _ = c.push_item(p);
        let _ = c.subtree_json(p);
        let other = c.clone();
        let _ = c.copy_subtree(p, &other, p);
        let _ = c.copy_subtree("", &other, p);
        let _ = c.copy_subtree(p, &other, "");
    }
}
