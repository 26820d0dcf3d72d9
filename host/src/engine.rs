//! The wasmtime engines Kiln runs every plugin on: configuration, the epoch
//! ticker that drives CPU deadlines (see `guest_cpu`), loading components
//! through an on-disk cache of compiled code keyed by content hash, and
//! instantiating them.
//!
//! Instances come from a pooling allocator sized by [`InstancePool`]: its
//! slots are reserved once, so a job's instantiation maps no fresh memory.
//! An instance the pool cannot take (every slot taken, a component or a
//! job's memory limit larger than a slot) is made by a second engine that
//! allocates on demand, from the same compiled code, so no job fails for
//! lack of a slot; [`RuntimeStats`](crate::stats::RuntimeStats) counts
//! both.

use crate::bindings::{Plugin, PluginPre};
use crate::guest_cpu::EpochClock;
use crate::interfaces::PluginState;
use crate::stats::RuntimeStats;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    AsContext, AsContextMut, Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, StoreContext, StoreContextMut,
};

/// How often the epoch advances; CPU deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest a pool slot's memory can be: wasmtime's default memory
/// reservation on 64-bit hosts, which lets compiled code skip bounds checks.
const MAX_SLOT_MEMORY: u64 = 4 << 30;

/// The pooling allocator's size: how many plugin instances it holds at
/// once, and what one instance may use. Every slot's address space is
/// reserved when the host starts (about 4 GiB of it per memory, none of it
/// resident), so the count is what a host sizes to its load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePool {
    /// Plugin instances the pool holds at once; more are allocated on
    /// demand. 0 turns the pool off.
    pub max_instances: u32,
    /// The most linear memory an instance in the pool may grow to (at most
    /// 4 GiB). A job whose `limits.memory_mib` is larger is instantiated on
    /// demand, so a slot never refuses memory its limit allows.
    pub max_memory_bytes_per_instance: u64,
    /// What one plugin instance is expected to hold: the pool has this many
    /// times `max_instances` memories, tables and core instances. A Rust
    /// plugin built for wasm32-wasip2 has one memory, two tables and three
    /// core instances; a larger component takes more of the pool's shares.
    pub memories_per_instance: u32,
    pub tables_per_instance: u32,
    pub core_instances_per_instance: u32,
}

impl Default for InstancePool {
    /// 1000 instances: enough for a workstation's pipelines, about 4 TiB of
    /// address space (untouched).
    fn default() -> Self {
        InstancePool::with_instances(1000)
    }
}

impl InstancePool {
    /// A pool of `n` instances, each as large as a job may ask.
    pub fn with_instances(n: u32) -> InstancePool {
        InstancePool {
            max_instances: n,
            max_memory_bytes_per_instance: MAX_SLOT_MEMORY,
            memories_per_instance: 1,
            tables_per_instance: 2,
            core_instances_per_instance: 4,
        }
    }

    /// No pool: every instance is allocated on demand.
    pub fn disabled() -> InstancePool {
        InstancePool::with_instances(0)
    }

    fn allocation_config(&self) -> PoolingAllocationConfig {
        let n = self.max_instances;
        let mut p = PoolingAllocationConfig::new();
        p.total_component_instances(n)
            .total_core_instances(n.saturating_mul(self.core_instances_per_instance.max(1)))
            .total_memories(n.saturating_mul(self.memories_per_instance.max(1)))
            .total_tables(n.saturating_mul(self.tables_per_instance.max(1)))
            // A store keeps one fiber stack, taken at instantiation.
            .total_stacks(n)
            .max_memory_size(usize::try_from(self.max_memory_bytes()).unwrap_or(usize::MAX))
            // The per-module counts only size each instance's metadata; a
            // module with more is not worth sending to the slower path.
            .max_memories_per_module(self.memories_per_instance.max(4))
            .max_tables_per_module(self.tables_per_instance.max(4));
        p
    }

    fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes_per_instance.min(MAX_SLOT_MEMORY)
    }
}

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
    /// In the pool's engine; `None` without a pool or when the component
    /// does not fit a slot.
    pooled: Option<PluginPre<PluginState>>,
    /// In the on-demand engine: made the first time the pool cannot take an
    /// instance, since most hosts never need it.
    on_demand: Arc<OnceLock<Result<PluginPre<PluginState>, String>>>,
}

/// One engine with the linker of every import.
struct Tier {
    engine: Engine,
    linker: Linker<PluginState>,
}

impl Tier {
    fn new(config: &Config) -> Result<Tier, String> {
        let engine = Engine::new(config).map_err(|e| format!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
        crate::interfaces::add_to_linker(&mut linker).map_err(|e| format!("{e:#}"))?;
        Ok(Tier { engine, linker })
    }

    fn pre(&self, component: &Component) -> wasmtime::Result<PluginPre<PluginState>> {
        PluginPre::new(self.linker.instantiate_pre(component)?)
    }
}

/// What the runtime counts for [`RuntimeStats`].
#[derive(Default)]
struct Counters {
    live_pooled: AtomicU64,
    live_on_demand: AtomicU64,
    instantiations: AtomicU64,
    instantiate_nanos: AtomicU64,
    pool_exhausted: AtomicU64,
    pool_misfits: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Take a place in the pool, if it has one free.
    fn reserve_pooled(self: &Arc<Self>, slots: u32) -> Option<Live> {
        let before = self.live_pooled.fetch_add(1, Ordering::AcqRel);
        let live = Live {
            counters: self.clone(),
            pooled: true,
        };
        (before < u64::from(slots)).then_some(live)
    }

    fn on_demand(self: &Arc<Self>) -> Live {
        self.live_on_demand.fetch_add(1, Ordering::AcqRel);
        Live {
            counters: self.clone(),
            pooled: false,
        }
    }
}

/// One live instance, counted until dropped.
struct Live {
    counters: Arc<Counters>,
    pooled: bool,
}

impl Drop for Live {
    fn drop(&mut self) {
        let counter = if self.pooled {
            &self.counters.live_pooled
        } else {
            &self.counters.live_on_demand
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A store with a plugin instantiated in it (or whose instantiation
/// failed), counted as a live instance until it is dropped.
pub(crate) struct LiveStore {
    store: Store<PluginState>,
    // Declared after the store: the store's drop returns the pool slot,
    // and only then may a new instantiation count on it.
    _live: Live,
}

impl std::ops::Deref for LiveStore {
    type Target = Store<PluginState>;
    fn deref(&self) -> &Store<PluginState> {
        &self.store
    }
}

impl std::ops::DerefMut for LiveStore {
    fn deref_mut(&mut self) -> &mut Store<PluginState> {
        &mut self.store
    }
}

impl AsContext for LiveStore {
    type Data = PluginState;
    fn as_context(&self) -> StoreContext<'_, PluginState> {
        self.store.as_context()
    }
}

impl AsContextMut for LiveStore {
    fn as_context_mut(&mut self) -> StoreContextMut<'_, PluginState> {
        self.store.as_context_mut()
    }
}

/// The engines, their linkers and the compiled-component caches.
pub struct PluginEngine {
    /// `None` when the pool is off, or could not be reserved.
    pooled: Option<Tier>,
    on_demand: Tier,
    pool: InstancePool,
    clock: EpochClock,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
    counters: Arc<Counters>,
}

/// Where compiled code is loaded from.
#[derive(Clone, Copy)]
enum Artifact<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl PluginEngine {
    /// `cache_dir`: where compiled components are kept between runs; `None`
    /// compiles in memory only. `pool`: how many instances the pooling
    /// allocator holds.
    pub fn new(cache_dir: Option<PathBuf>, pool: &InstancePool) -> Result<Arc<Self>, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Guests get a stack of their own; a deep recursion traps rather than
        // taking the host's stack with it.
        config.max_wasm_stack(1 << 20);
        // The two engines differ in the allocator only, which compiled code
        // does not depend on: one compilation serves both.
        let on_demand = Tier::new(&config).map_err(LoadError::Engine)?;
        let mut pool = pool.clone();
        let pooled = if pool.max_instances == 0 {
            None
        } else {
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(
                pool.allocation_config(),
            ));
            match Tier::new(&config) {
                Ok(tier) => Some(tier),
                Err(e) => {
                    // Reserving the address space fails under a low
                    // `ulimit -v`. The host still runs; each instance then
                    // reserves as much of its own, so the limit still
                    // bounds how many run at once.
                    tracing::warn!(
                        "cannot reserve a pool of {} plugin instances ({e}); instances are allocated on demand",
                        pool.max_instances
                    );
                    None
                }
            }
        };
        if pooled.is_none() {
            pool.max_instances = 0;
        }
        let clock = EpochClock::default();
        let engines: Vec<&Engine> = pooled
            .iter()
            .map(|t| &t.engine)
            .chain([&on_demand.engine])
            .collect();
        start_epoch_ticker(&engines, clock.clone())
            .map_err(|e| LoadError::Engine(format!("failed to start the epoch thread: {e}")))?;
        Ok(Arc::new(PluginEngine {
            pooled,
            on_demand,
            pool,
            clock,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            counters: Arc::default(),
        }))
    }

    /// The engine instances are made in first: the pool's, if there is one.
    pub fn engine(&self) -> &Engine {
        self.pooled
            .as_ref()
            .map_or(&self.on_demand.engine, |t| &t.engine)
    }

    /// The pool as it was set up: `max_instances` is 0 when there is none.
    pub fn pool(&self) -> &InstancePool {
        &self.pool
    }

    /// The ticks of this engine's epoch.
    pub fn clock(&self) -> &EpochClock {
        &self.clock
    }

    /// What the runtime holds and has done so far.
    pub fn stats(&self) -> RuntimeStats {
        let c = &*self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let pooled = get(&c.live_pooled).min(u64::from(self.pool.max_instances));
        RuntimeStats {
            instances_live: pooled + get(&c.live_on_demand),
            instances_pooled: pooled,
            pool_slots: self.pool.max_instances,
            pooled_exhausted_fallbacks: get(&c.pool_exhausted),
            pool_misfits: get(&c.pool_misfits),
            instantiations: get(&c.instantiations),
            instantiate_nanos: get(&c.instantiate_nanos),
            compiled_cache_hits: get(&c.cache_hits),
            compiled_cache_misses: get(&c.cache_misses),
        }
    }

    /// Compile (or fetch from cache) and check a component. `origin` names
    /// it in errors: a task name or a file path.
    pub fn load(&self, bytes: &[u8], origin: &str) -> Result<LoadedPlugin, LoadError> {
        let hash = hex::encode(Sha256::digest(bytes));
        if let Some(hit) = lock(&self.loaded).get(&hash) {
            Counters::bump(&self.counters.cache_hits);
            return Ok(hit.clone());
        }
        let wrong_world = |source| LoadError::WrongWorld {
            origin: origin.to_string(),
            source,
        };
        let on_demand = Arc::new(OnceLock::new());
        let pooled = match self.compile_cached(bytes, &hash, origin)? {
            (component, true) => Some(
                self.pooled
                    .as_ref()
                    .expect("placed in the pool's engine")
                    .pre(&component)
                    .map_err(wrong_world)?,
            ),
            (component, false) => {
                let pre = self.on_demand.pre(&component).map_err(wrong_world)?;
                let _ = on_demand.set(Ok(pre));
                None
            }
        };
        let loaded = LoadedPlugin {
            hash: hash.clone(),
            pooled,
            on_demand,
        };
        lock(&self.loaded).insert(hash, loaded.clone());
        Ok(loaded)
    }

    /// The component, and whether it is in the pool's engine (else in the
    /// on-demand one).
    fn compile_cached(
        &self,
        bytes: &[u8],
        hash: &str,
        origin: &str,
    ) -> Result<(Component, bool), LoadError> {
        let invalid = |source: wasmtime::Error| LoadError::Invalid {
            origin: origin.to_string(),
            source,
        };
        let path = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{hash}-{}.cwasm", self.compatibility_tag())));
        if let Some(path) = path.as_ref().filter(|p| p.is_file()) {
            // A file that fails to load is recompiled and replaced.
            if let Ok(placed) = self.place(Artifact::File(path), origin) {
                Counters::bump(&self.counters.cache_hits);
                return Ok(placed);
            }
        }
        Counters::bump(&self.counters.cache_misses);
        let compiled = self
            .on_demand
            .engine
            .precompile_component(bytes)
            .map_err(invalid)?;
        if let (Some(dir), Some(path)) = (&self.cache_dir, &path) {
            // A cache that cannot be written only costs a recompile next time.
            let _ = write_atomically(dir, path, &compiled);
        }
        self.place(Artifact::Bytes(&compiled), origin)
            .map_err(invalid)
    }

    /// Load compiled code into the pool's engine, or where the pool refuses
    /// it (a memory or table larger than a slot's), into the on-demand one.
    fn place(&self, artifact: Artifact<'_>, origin: &str) -> wasmtime::Result<(Component, bool)> {
        if let Some(tier) = &self.pooled {
            match deserialize(&tier.engine, artifact) {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    let component = deserialize(&self.on_demand.engine, artifact)?;
                    tracing::info!(
                        "{origin} does not fit a slot of the instance pool ({e:#}); its instances are allocated on demand"
                    );
                    return Ok((component, false));
                }
            }
        }
        Ok((deserialize(&self.on_demand.engine, artifact)?, false))
    }

    fn compatibility_tag(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.on_demand
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Instantiate `plugin` in a new store holding `state`, armed with a
    /// CPU budget of `cpu`: in a pool slot when one is free and fits,
    /// else on demand. The store comes back either way, for the error's
    /// reason.
    pub(crate) async fn instantiate(
        &self,
        plugin: &LoadedPlugin,
        state: PluginState,
        cpu: Duration,
    ) -> (LiveStore, wasmtime::Result<Plugin>) {
        let started = Instant::now();
        let state = match self.in_pool(plugin, state, cpu, started).await {
            Ok(done) => return done,
            Err(state) => state,
        };
        let live = self.counters.on_demand();
        let mut store = Store::new(&self.on_demand.engine, state);
        PluginState::arm(&mut store, cpu, &self.clock);
        let result = match self.on_demand_pre(plugin) {
            Ok(pre) => pre.instantiate_async(&mut store).await,
            Err(why) => Err(wasmtime::Error::msg(why)),
        };
        self.count_instantiation(&result, started);
        (LiveStore { store, _live: live }, result)
    }

    /// Instantiate in a pool slot; the state back when the pool cannot
    /// take the instance.
    async fn in_pool(
        &self,
        plugin: &LoadedPlugin,
        state: PluginState,
        cpu: Duration,
        started: Instant,
    ) -> Result<(LiveStore, wasmtime::Result<Plugin>), PluginState> {
        let (Some(tier), Some(pre)) = (&self.pooled, &plugin.pooled) else {
            if self.pooled.is_some() {
                Counters::bump(&self.counters.pool_misfits);
            }
            return Err(state);
        };
        if state.memory_limit as u64 > self.pool.max_memory_bytes() {
            Counters::bump(&self.counters.pool_misfits);
            return Err(state);
        }
        let Some(live) = self.counters.reserve_pooled(self.pool.max_instances) else {
            Counters::bump(&self.counters.pool_exhausted);
            return Err(state);
        };
        let mut store = Store::new(&tier.engine, state);
        PluginState::arm(&mut store, cpu, &self.clock);
        match pre.instantiate_async(&mut store).await {
            // Another share of the pool (memories, tables, stacks) ran out
            // first: components larger than `InstancePool` expects.
            Err(e) if e.is::<PoolConcurrencyLimitError>() => {
                let state = store.into_data();
                drop(live);
                Counters::bump(&self.counters.pool_exhausted);
                Err(state)
            }
            result => {
                self.count_instantiation(&result, started);
                Ok((LiveStore { store, _live: live }, result))
            }
        }
    }

    fn count_instantiation<T>(&self, result: &wasmtime::Result<T>, started: Instant) {
        if result.is_ok() {
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            Counters::bump(&self.counters.instantiations);
            self.counters
                .instantiate_nanos
                .fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// The plugin in the on-demand engine, from the pool engine's compiled
    /// code (a copy of it: the two engines cannot share one).
    fn on_demand_pre<'a>(
        &self,
        plugin: &'a LoadedPlugin,
    ) -> Result<&'a PluginPre<PluginState>, String> {
        plugin
            .on_demand
            .get_or_init(|| {
                let pooled = plugin.pooled.as_ref().ok_or("the plugin was not loaded")?;
                let bytes = pooled
                    .instance_pre()
                    .component()
                    .serialize()
                    .map_err(|e| format!("{e:#}"))?;
                let component = deserialize(&self.on_demand.engine, Artifact::Bytes(&bytes))
                    .map_err(|e| format!("{e:#}"))?;
                self.on_demand.pre(&component).map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|why| format!("cannot instantiate the plugin outside the pool: {why}"))
    }
}

fn deserialize(engine: &Engine, artifact: Artifact<'_>) -> wasmtime::Result<Component> {
    // SAFETY: the code is what `precompile_component` produced: a moment
    // ago, serialized from one of this host's engines, or in the cache
    // directory, which is the user's own and only ever holds what
    // `compile_cached` wrote (atomically, under a name that includes the
    // engines' compatibility hash).
    unsafe {
        match artifact {
            Artifact::File(path) => Component::deserialize_file(engine, path),
            Artifact::Bytes(bytes) => Component::deserialize(engine, bytes),
        }
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

/// Advance the engines' epoch every tick for as long as one of them lives.
fn start_epoch_ticker(engines: &[&Engine], clock: EpochClock) -> std::io::Result<()> {
    let weak: Vec<_> = engines.iter().map(|e| e.weak()).collect();
    std::thread::Builder::new()
        .name("kiln-epoch".into())
        .spawn(move || {
            loop {
                let live: Vec<Engine> = weak.iter().filter_map(|w| w.upgrade()).collect();
                if live.is_empty() {
                    return;
                }
                clock.advance();
                for engine in &live {
                    engine.increment_epoch();
                }
                drop(live);
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
