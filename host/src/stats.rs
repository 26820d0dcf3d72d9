//! What the runtime holds and has done, for a metrics endpoint: plugin
//! instances live (in the pool and outside it), instantiations the pool
//! could not take, and the compiled-component cache's hits. Counters are
//! since the host started; only `instances_*` go down.

use crate::Host;
use serde::Serialize;

/// A snapshot of [`Host::runtime_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeStats {
    /// Plugin instances alive now: running jobs' and tasks describing
    /// themselves.
    pub instances_live: u64,
    /// Of those, the ones in a pool slot.
    pub instances_pooled: u64,
    /// Slots in the pool (`HostConfig::instance_pool`); 0 without one.
    pub pool_slots: u32,
    /// Instantiations that found every slot (or another share of the pool)
    /// taken and were allocated on demand instead.
    pub pooled_exhausted_fallbacks: u64,
    /// Instantiations allocated on demand because the component, or the
    /// job's memory limit, is larger than a slot.
    pub pool_misfits: u64,
    /// Instances made, and the time spent making them (store, instance,
    /// fallback included), in nanoseconds.
    pub instantiations: u64,
    pub instantiate_nanos: u64,
    /// Component loads served without compiling (already in memory, or in
    /// the on-disk cache), and loads that compiled.
    pub compiled_cache_hits: u64,
    pub compiled_cache_misses: u64,
}

impl Host {
    /// The runtime's counters, cheap enough to read on every scrape.
    pub fn runtime_stats(&self) -> RuntimeStats {
        self.catalog().engine().stats()
    }
}
