//! The CPU a guest is charged and when it yields its thread, both counted
//! in epoch ticks.
//!
//! Wasmtime checks a store's epoch deadline only while the guest runs, so
//! the first check after any tick boundary fires it, whether the guest ran
//! across that boundary or slept through it in a host call. Charged and
//! yielded on every such check, a plugin that waits on programs most of
//! the time is billed CPU at the rate of wall time (a pipeline of many
//! short programs hits its CPU limit for work the programs did), and it
//! gives up its thread right after it was woken, which sends it to another
//! worker for nothing.
//!
//! So a store tells the two apart. A call hook notes the tick at which the
//! guest came back from a host call that outlasted a tick boundary (a
//! wait); a deadline reached within that same tick is renewed without a
//! charge or a yield. Every other deadline means the guest (or host calls
//! too short to cross a boundary) ran across the boundary: it is charged
//! one tick and yields, and at its budget it is interrupted. Host calls
//! made in a loop therefore still count: only a call during which a tick
//! boundary passed resets the guest's start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::{CallHook, UpdateDeadline};

/// The number of epoch ticks an engine has made; advanced together with
/// the engine's epoch, just before it.
#[derive(Clone, Default)]
pub struct EpochClock(Arc<AtomicU64>);

impl EpochClock {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Called by the ticker before `Engine::increment_epoch`, so a deadline
    /// that fires always sees the tick that fired it.
    pub(crate) fn advance(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// One store's CPU account.
pub(crate) struct CpuMeter {
    clock: EpochClock,
    /// Ticks charged so far.
    charged: u64,
    /// Ticks the guest may be charged before it is interrupted.
    budget: u64,
    /// The tick at which the current host call began.
    host_call_began: u64,
    /// The tick at which the guest last resumed after a wait, or was
    /// entered.
    resumed: u64,
}

/// What to do at a deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AtDeadline {
    /// The guest slept through the boundary: renew the deadline.
    Renew,
    /// It ran across it: charged, and it yields its thread.
    Yield,
    /// It has used its budget.
    Interrupt,
}

impl CpuMeter {
    pub fn new(clock: EpochClock, budget_ticks: u64) -> CpuMeter {
        let now = clock.now();
        CpuMeter {
            clock,
            charged: 0,
            budget: budget_ticks,
            host_call_began: now,
            resumed: now,
        }
    }

    /// No budget and no clock of an engine: for a state before it is armed.
    pub fn unlimited() -> CpuMeter {
        CpuMeter::new(EpochClock::default(), u64::MAX)
    }

    pub fn budget_ticks(&self) -> u64 {
        self.budget
    }

    pub fn on_call_hook(&mut self, hook: CallHook) {
        match hook {
            CallHook::CallingHost => self.host_call_began = self.clock.now(),
            CallHook::ReturningFromHost => {
                let now = self.clock.now();
                if now != self.host_call_began {
                    self.resumed = now;
                }
            }
            CallHook::CallingWasm => self.resumed = self.clock.now(),
            CallHook::ReturningFromWasm => {}
        }
    }

    pub fn on_deadline(&mut self) -> AtDeadline {
        if self.resumed == self.clock.now() {
            return AtDeadline::Renew;
        }
        self.charged += 1;
        if self.charged > self.budget {
            AtDeadline::Interrupt
        } else {
            AtDeadline::Yield
        }
    }
}

impl AtDeadline {
    /// The next deadline is always the next tick.
    pub fn update(self) -> UpdateDeadline {
        match self {
            AtDeadline::Renew => UpdateDeadline::Continue(1),
            AtDeadline::Yield => UpdateDeadline::Yield(1),
            AtDeadline::Interrupt => UpdateDeadline::Interrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(budget: u64) -> (EpochClock, CpuMeter) {
        let clock = EpochClock::default();
        let m = CpuMeter::new(clock.clone(), budget);
        (clock, m)
    }

    #[test]
    fn a_guest_woken_after_a_wait_is_neither_charged_nor_made_to_yield() {
        let (clock, mut m) = meter(1);
        m.on_call_hook(CallHook::CallingWasm);
        for _ in 0..100 {
            m.on_call_hook(CallHook::CallingHost);
            clock.advance();
            m.on_call_hook(CallHook::ReturningFromHost);
            assert_eq!(m.on_deadline(), AtDeadline::Renew);
        }
        assert_eq!(m.charged, 0);
    }

    #[test]
    fn running_across_a_boundary_is_charged_and_yields_until_the_budget_is_spent() {
        let (clock, mut m) = meter(2);
        m.on_call_hook(CallHook::CallingWasm);
        clock.advance();
        assert_eq!(m.on_deadline(), AtDeadline::Yield);
        clock.advance();
        assert_eq!(m.on_deadline(), AtDeadline::Yield);
        clock.advance();
        assert_eq!(m.on_deadline(), AtDeadline::Interrupt);
    }

    #[test]
    fn short_host_calls_in_a_loop_do_not_hide_the_running() {
        let (clock, mut m) = meter(3);
        m.on_call_hook(CallHook::CallingWasm);
        for _ in 0..3 {
            // Many quick calls within the tick, none spanning a boundary.
            for _ in 0..10 {
                m.on_call_hook(CallHook::CallingHost);
                m.on_call_hook(CallHook::ReturningFromHost);
            }
            clock.advance();
            assert_eq!(m.on_deadline(), AtDeadline::Yield);
        }
        clock.advance();
        assert_eq!(m.on_deadline(), AtDeadline::Interrupt);
    }

    #[test]
    fn a_guest_that_ran_on_after_a_wait_is_charged_at_the_next_boundary() {
        let (clock, mut m) = meter(5);
        m.on_call_hook(CallHook::CallingWasm);
        m.on_call_hook(CallHook::CallingHost);
        clock.advance();
        m.on_call_hook(CallHook::ReturningFromHost);
        assert_eq!(m.on_deadline(), AtDeadline::Renew);
        clock.advance();
        assert_eq!(m.on_deadline(), AtDeadline::Yield);
        assert_eq!(m.charged, 1);
    }
}
