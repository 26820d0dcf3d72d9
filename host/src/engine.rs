//! The wasmtime engine Kiln runs every plugin on: configuration, the epoch
//! ticker that drives CPU deadlines (see `guest_cpu`), and loading components through an
//! on-disk cache of compiled code keyed by content hash.

use crate::bindings::PluginPre;
use crate::guest_cpu::EpochClock;
use crate::interfaces::PluginState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// How often the epoch advances; CPU deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to compile {origin}: not a valid WebAssembly component: {source:#}")]
    Invalid {
        origin: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error(
        "failed to load {origin}: it does not target Kiln's world kiln:plugin/plugin@0.1.0: {source:#}"
    )]
    WrongWorld {
        origin: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error("failed to set up the wasmtime engine: {0}")]
    Engine(String),
}

/// A component compiled and checked against the plugin world, ready to
/// instantiate any number of times.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// sha256 of the component bytes, hex.
    pub hash: String,
    pub pre: PluginPre<PluginState>,
}

/// The engine, its linker and the compiled-component caches.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<PluginState>,
    clock: EpochClock,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
}

impl PluginEngine {
    /// `cache_dir`: where compiled components are kept between runs; `None`
    /// compiles in memory only.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Self>, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Guests get a stack of their own; a deep recursion traps rather than
        // taking the host's stack with it.
        config.max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        crate::interfaces::add_to_linker(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let clock = EpochClock::default();
        start_epoch_ticker(&engine, clock.clone())
            .map_err(|e| LoadError::Engine(format!("failed to start the epoch thread: {e}")))?;
        Ok(Arc::new(PluginEngine {
            engine,
            linker,
            clock,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The ticks of this engine's epoch.
    pub fn clock(&self) -> &EpochClock {
        &self.clock
    }

    /// Compile (or fetch from cache) and check a component. `origin` names
    /// it in errors: a task name or a file path.
    pub fn load(&self, bytes: &[u8], origin: &str) -> Result<LoadedPlugin, LoadError> {
        let hash = hex::encode(Sha256::digest(bytes));
        if let Some(hit) = lock(&self.loaded).get(&hash) {
            return Ok(hit.clone());
        }
        let component = self.compile_cached(bytes, &hash, origin)?;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|source| LoadError::WrongWorld {
                    origin: origin.to_string(),
                    source,
                })?;
        let pre = PluginPre::new(instance_pre).map_err(|source| LoadError::WrongWorld {
            origin: origin.to_string(),
            source,
        })?;
        let loaded = LoadedPlugin {
            hash: hash.clone(),
            pre,
        };
        lock(&self.loaded).insert(hash, loaded.clone());
        Ok(loaded)
    }

    fn compile_cached(
        &self,
        bytes: &[u8],
        hash: &str,
        origin: &str,
    ) -> Result<Component, LoadError> {
        let invalid = |source: wasmtime::Error| LoadError::Invalid {
            origin: origin.to_string(),
            source,
        };
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(invalid);
        };
        let path = dir.join(format!("{hash}-{}.cwasm", self.compatibility_tag()));
        if path.is_file() {
            // SAFETY: the cache directory is the user's own and only ever holds
            // what `precompile_component` wrote below (atomically, under a name
            // that includes the engine's compatibility hash). A file that fails
            // to load is recompiled and replaced.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, &path) } {
                return Ok(component);
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(invalid)?;
        // A cache that cannot be written only costs a recompile next time.
        let _ = write_atomically(dir, &path, &compiled);
        // SAFETY: `compiled` was produced by this engine a moment ago.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(invalid)
    }

    fn compatibility_tag(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("component"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Advance the engine's epoch every tick for as long as the engine lives.
fn start_epoch_ticker(engine: &Engine, clock: EpochClock) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("kiln-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                clock.advance();
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, not
    // a broken invariant; carry on rather than cascade the panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
