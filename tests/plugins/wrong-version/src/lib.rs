//! A component for a `kiln:plugin@0.2.0` that does not exist: right names,
//! wrong package version and shapes. Loading it must fail with a message
//! naming the world the host expects.

wit_bindgen::generate!({
    inline: r#"
        package kiln:plugin@0.2.0;

        interface log {
            log: func(message: string);
        }

        world plugin {
            import log;
            export run: func() -> u32;
        }
    "#,
    world: "kiln:plugin/plugin@0.2.0",
});

struct WrongVersion;

impl Guest for WrongVersion {
    fn run() -> u32 {
        kiln::plugin::log::log("this component should never have been loaded");
        0
    }
}

export!(WrongVersion);
