//! Test plugin `probe`: does the one thing named by `controlParameters.MODE`
//! (words separated by spaces) and writes what happened to
//! `outputData.RESULT`. The conformance suite drives it to check the host's
//! behaviour, hostile cases included.
//!
//! Modes:
//! - `ok`: succeed at once.
//! - `spin`: loop forever (the CPU deadline must stop it).
//! - `panic`: panic with the message `probe panicked on purpose`.
//! - `memory`: allocate without end (the memory limit must stop it).
//! - `stack`: recurse without end (the guest stack must overflow).
//! - `outcome PROGRAM ARGS...`: run a registry program, report its outcome;
//!   `TIMEOUT_MS` sets its timeout.
//! - `wait-any SLOW FAST`: start two programs (`fake sleep SLOW`,
//!   `fake sleep FAST`), report the index wait-any returns.
//! - `axis ID TARGET SPEED STOP_AFTER_MS`: move an axis; when STOP_AFTER_MS
//!   is above 0, stop it after that long. Reports how the motion ended and
//!   where.
//! - `subjob MODE...`: run a `probe` sub-job in the given mode, fail with its
//!   reason if it fails.
//! - `signal NAME`: emit a custom signal with payload `{"n": 1}`.
//! - `set-file ITEM PATH`: set a file item of its own container.
//! - `make TASK`: make a sub-job of TASK (without starting it).
//! - `read-dir PATH`: list a directory through WASI.
//! - `env`: count the environment variables the plugin can see.
//! - `spawn-env NAME VALUE`: run `fake print-env` with one extra variable.
//! - `big-arg BYTES`: run `fake exit 0` with one argument of BYTES bytes.
//! - `many-args N`: run `fake exit 0` with N one-byte arguments.
//! - `handles N`: make N `probe` sub-jobs, keeping every handle.
//! - `spawn-many N C PROGRAM ARGS...`: run PROGRAM N times, keeping C
//!   running at once (wait-any), and fail unless every run exited 0.
//! - `forged-handle N`: use sub-job handle N, which this instance was never
//!   given (another job's, or none at all).
//! - `fail MESSAGE...`: end failed with MESSAGE.
//! - `unsatisfactory`: end unsatisfactory.
//! - `flaky N`: fail unless at least N earlier attempts were archived in the
//!   job directory (`attempt_K`), i.e. succeed on attempt N+1.
//! - `step POLICY MODE...`: run one `probe` sub-job in MODE under POLICY
//!   (`fail`, `continue`, `unsatisfactory` or `retry:N:MS`), report
//!   `<status> <attempts>` and return successfully (the host applies the
//!   policy to this pipeline's outcome).
//! - `fail-fast`: start a slow step (`continue`) and a failing one (default
//!   policy), then report how the slow one ended and why a third could not
//!   start.
//! - `signals N`: emit N progress signals, then the custom signal `hello`.
//! - `ticks N MS`: emit N progress signals MS ms apart.
//! - `read-signals N`: run a `signals N` sub-job and report every signal it
//!   delivered, in order, then what a read after `finished` returns.
//! - `wait-signal NAME`: run a `signals 3` sub-job and report the payload
//!   of signal NAME (`none` if it finished without it).
//! - `cap K N SECS`: allow K sub-jobs at once, run N sub-jobs of
//!   `outcome fake sleep SECS`.
//! - `set-cap N`: ask for a cap of N on running sub-jobs, report the error.
//! - `retry-task TASK`: ask to retry a sub-job of TASK, report the error.
//! - `sleep MS`: emit progress (phase `sleeping`), then sleep MS ms in a
//!   host call (WASI's poll) and succeed; a cancel ends it once the host's
//!   grace for the guest has passed.

use kiln_sdk::bindings::kiln::plugin::axes;
use kiln_sdk::{
    Description, FailurePolicy, Job, Outcome, RetryPolicy, Signal, SubJob, Task, TaskError,
    wait_any_process,
};
use std::time::Duration;

const DEF_XML: &str = include_str!("../probe.def.xml");

struct Probe;

impl Task for Probe {
    fn describe() -> Description {
        Description::new("probe", "0.1.0", "Conformance test plugin")
            .definition(DEF_XML)
            .programs([
                "fake",
                // kiln-bench's programs that each write one line.
                "fake-line",
                "missing",
                "not-executable",
                "sneaky-read",
                "sneaky-write",
            ])
            .tasks(["probe", "mtzdump"])
            .axes(["x", "phi"])
            .env(["CCP4_SCR"])
            .network()
            .retryable()
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let mode = job.text("controlParameters.MODE")?;
        let words: Vec<&str> = mode.split_whitespace().collect();
        let result = match words.as_slice() {
            ["ok"] => "ok".to_string(),
            ["spin"] => spin(),
            ["panic"] => panic!("probe panicked on purpose"),
            ["memory"] => memory_bomb(),
            ["stack"] => format!("{}", recurse(1)),
            ["outcome", program, args @ ..] => outcome(job, program, args)?,
            ["wait-any", slow, fast] => wait_any(job, slow, fast)?,
            ["axis", id, target, speed, stop_after] => axis(id, target, speed, stop_after)?,
            ["subjob", rest @ ..] => {
                let sub = job.sub_job("probe")?;
                sub.set("controlParameters.MODE", rest.join(" "))?;
                sub.run()?;
                format!("sub-job {} succeeded", sub.id())
            }
            ["signal", name] => {
                job.signal(name, "{\"n\": 1}")?;
                "sent".to_string()
            }
            ["set-file", item, path] => {
                job.set_file(item, path)?;
                job.file_path(item)?
            }
            ["make", task] => job.sub_job(task)?.id(),
            ["read-dir", path] => match std::fs::read_dir(path) {
                Ok(entries) => format!("{} entries", entries.count()),
                Err(e) => return Err(TaskError::failed(format!("read-dir {path}: {e}"))),
            },
            ["env"] => std::env::vars().count().to_string(),
            ["spawn-env", name, value] => {
                let finished = job
                    .program("fake")
                    .arg("print-env")
                    .env(name, value)
                    .run()?;
                finished.check()?;
                finished.stdout_text()
            }
            ["big-arg", bytes] => {
                let n: usize = bytes.parse().map_err(|_| TaskError::failed("bad size"))?;
                job.program("fake")
                    .args(["exit", "0"])
                    .arg("x".repeat(n))
                    .run()?;
                "spawned".to_string()
            }
            ["many-args", n] => {
                let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                job.program("fake")
                    .args(["exit", "0"])
                    .args(std::iter::repeat_n("x", n))
                    .run()?;
                "spawned".to_string()
            }
            ["handles", n] => {
                let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                let mut kept = Vec::with_capacity(n);
                for _ in 0..n {
                    kept.push(job.sub_job("probe")?);
                }
                kept.len().to_string()
            }
            ["run-kept", n] => {
                // One after another, every handle kept to the end.
                let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                let mut kept = Vec::with_capacity(n);
                for _ in 0..n {
                    let sub = job.sub_job("probe")?;
                    sub.set("controlParameters.MODE", "ok")?;
                    sub.run()?;
                    kept.push(sub);
                }
                format!("{} ran", kept.len())
            }
            ["spawn-many", n, c, program, args @ ..] => spawn_many(job, n, c, program, args)?,
            ["forged-handle", n] => {
                let n: u32 = n.parse().map_err(|_| TaskError::failed("bad handle"))?;
                // SAFETY: deliberately unsound: the host must refuse it.
                let forged =
                    unsafe { kiln_sdk::bindings::kiln::plugin::jobs::SubJob::from_handle(n) };
                forged.id()
            }
            ["fail", message @ ..] => return Err(TaskError::failed(message.join(" "))),
            ["unsatisfactory"] => return Err(TaskError::unsatisfactory("not good enough")),
            ["flaky", n] => {
                let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                let earlier = std::fs::read_dir("/job")
                    .map_err(|e| TaskError::failed(format!("read /job: {e}")))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("attempt_"))
                    .count();
                if earlier < n {
                    return Err(TaskError::failed(format!("flaky: attempt {}", earlier + 1)));
                }
                format!("succeeded on attempt {}", earlier + 1)
            }
            ["step", policy, rest @ ..] => {
                let step = sub_probe(job, &rest.join(" "))?;
                step.on_failure(parse_policy(policy)?)?;
                step.start()?;
                let r = step.wait()?;
                format!("{} {}", status_name(r.status), r.attempts)
            }
            ["fail-fast"] => {
                let slow = sub_probe(job, "outcome fake sleep 30")?;
                slow.on_failure(FailurePolicy::Continue)?;
                slow.start()?;
                let failing = sub_probe(job, "fail boom")?;
                failing.start()?;
                failing.wait()?;
                let slow_end = slow.wait()?;
                let third = sub_probe(job, "ok")?;
                let refused = match third.start() {
                    Ok(()) => "started".to_string(),
                    Err(e) => e.reason,
                };
                format!("slow {}; third: {refused}", status_name(slow_end.status))
            }
            ["signals", n] => {
                let n: u32 = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                for i in 0..n {
                    job.progress(Some(i as f32 / n as f32), "p", &i.to_string())?;
                }
                job.signal("hello", &format!("{{\"n\": {n}}}"))?;
                "sent".to_string()
            }
            ["ticks", n, ms] => {
                let n: u32 = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                let ms: u64 = ms.parse().map_err(|_| TaskError::failed("bad interval"))?;
                for i in 0..n {
                    job.progress(Some(i as f32 / n as f32), "tick", &i.to_string())?;
                    std::thread::sleep(Duration::from_millis(ms));
                }
                "ticked".to_string()
            }
            ["read-signals", n] => {
                let step = sub_probe(job, &format!("signals {n}"))?;
                step.start()?;
                let mut seen = Vec::new();
                loop {
                    match step.next_signal()? {
                        Signal::Progress(p) => seen.push(format!("P{}", p.message)),
                        Signal::Custom(c) => seen.push(format!("C:{}:{}", c.name, c.payload_json)),
                        Signal::Finished(r) => {
                            seen.push(format!("F:{}", status_name(r.status)));
                            break;
                        }
                    }
                }
                let after = match step.next_signal() {
                    Ok(_) => "another signal".to_string(),
                    Err(e) => e.reason,
                };
                format!("{} | then: {after}", seen.join(" "))
            }
            ["wait-signal", name] => {
                let step = sub_probe(job, "signals 3")?;
                step.start()?;
                step.wait_signal(name)?
                    .unwrap_or_else(|| "none".to_string())
            }
            ["cap", k, n, secs] => {
                let k: u32 = k.parse().map_err(|_| TaskError::failed("bad cap"))?;
                let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                job.max_running_sub_jobs(k)?;
                let mut steps = Vec::with_capacity(n);
                for _ in 0..n {
                    let step = sub_probe(job, &format!("outcome fake sleep {secs}"))?;
                    step.start()?;
                    steps.push(step);
                }
                for step in &steps {
                    step.wait()?;
                }
                "ok".to_string()
            }
            ["set-cap", n] => {
                let n: u32 = n.parse().map_err(|_| TaskError::failed("bad cap"))?;
                match job.max_running_sub_jobs(n) {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => e.reason,
                }
            }
            ["retry-task", task] => {
                let step = job.sub_job(task)?;
                match step.on_failure(FailurePolicy::Retry(RetryPolicy {
                    retries: 1,
                    backoff_ms: 1,
                })) {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => e.reason,
                }
            }
            ["sleep", ms] => {
                let ms: u64 = ms.parse().map_err(|_| TaskError::failed("bad duration"))?;
                // First, so whoever waits for the job knows it is in the
                // host call from here on.
                job.progress(None, "sleeping", "")?;
                std::thread::sleep(Duration::from_millis(ms));
                "slept".to_string()
            }
            _ => return Err(TaskError::failed(format!("unknown probe mode `{mode}`"))),
        };
        job.set("outputData.RESULT", result)?;
        Ok(())
    }
}

fn status_name(s: kiln_sdk::FinishStatus) -> &'static str {
    match s {
        kiln_sdk::FinishStatus::Succeeded => "Succeeded",
        kiln_sdk::FinishStatus::Failed => "Failed",
        kiln_sdk::FinishStatus::Interrupted => "Interrupted",
        kiln_sdk::FinishStatus::Unsatisfactory => "Unsatisfactory",
    }
}

fn sub_probe(job: &Job, mode: &str) -> Result<SubJob, TaskError> {
    let step = job.sub_job("probe")?;
    step.set("controlParameters.MODE", mode)?;
    Ok(step)
}

fn parse_policy(text: &str) -> Result<FailurePolicy, TaskError> {
    Ok(match text.split(':').collect::<Vec<_>>().as_slice() {
        ["fail"] => FailurePolicy::FailPipeline,
        ["continue"] => FailurePolicy::Continue,
        ["unsatisfactory"] => FailurePolicy::MarkUnsatisfactory,
        ["retry", n, ms] => FailurePolicy::Retry(RetryPolicy {
            retries: n.parse().map_err(|_| TaskError::failed("bad retries"))?,
            backoff_ms: ms.parse().map_err(|_| TaskError::failed("bad backoff"))?,
        }),
        _ => return Err(TaskError::failed(format!("unknown policy `{text}`"))),
    })
}

fn spin() -> String {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn memory_bomb() -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&hoard);
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + pad[0]
}

fn outcome(job: &Job, program: &str, args: &[&str]) -> Result<String, TaskError> {
    let mut builder = job.program(program).args(args.iter().copied());
    if let Some(kiln_sdk::Value::Int(ms)) = job.get("controlParameters.TIMEOUT_MS")? {
        builder = builder.timeout_ms(ms as u64);
    }
    let finished = builder.run()?;
    Ok(match finished.outcome() {
        Outcome::Exited(c) => format!("exited {c}"),
        Outcome::Signaled(s) => format!("signaled {s}"),
        Outcome::TimedOut => "timed-out".to_string(),
        Outcome::Cancelled => "cancelled".to_string(),
        Outcome::SpawnFailed(why) => format!("spawn-failed {why}"),
    })
}

fn spawn_many(
    job: &Job,
    n: &str,
    c: &str,
    program: &str,
    args: &[&str],
) -> Result<String, TaskError> {
    let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
    let c: usize = c
        .parse()
        .map_err(|_| TaskError::failed("bad concurrency"))?;
    let mut running: Vec<kiln_sdk::Process> = Vec::with_capacity(c);
    let mut started = 0;
    let mut done = 0;
    while done < n {
        while running.len() < c.max(1) && started < n {
            running.push(job.program(program).args(args.iter().copied()).spawn()?);
            started += 1;
        }
        let refs: Vec<&kiln_sdk::Process> = running.iter().collect();
        let i = wait_any_process(&refs)?;
        let finished = running.swap_remove(i).wait();
        finished.check()?;
        done += 1;
    }
    Ok(done.to_string())
}

fn wait_any(job: &Job, slow: &str, fast: &str) -> Result<String, TaskError> {
    let slow = job.program("fake").args(["sleep", slow]).spawn()?;
    let fast = job.program("fake").args(["sleep", fast]).spawn()?;
    let first = wait_any_process(&[&slow, &fast])?;
    slow.kill();
    Ok(first.to_string())
}

fn axis(id: &str, target: &str, speed: &str, stop_after: &str) -> Result<String, TaskError> {
    let parse = |s: &str| {
        s.parse::<f64>()
            .map_err(|_| TaskError::failed(format!("not a number: {s}")))
    };
    let motion = axes::move_absolute(id, parse(target)?, Some(parse(speed)?))?;
    let stop_after = parse(stop_after)?;
    if stop_after > 0.0 {
        std::thread::sleep(Duration::from_millis(stop_after as u64));
        motion.stop();
    }
    let (end, position) = motion.wait()?;
    let end = match end {
        axes::MotionEnd::Reached => "reached",
        axes::MotionEnd::Stopped => "stopped",
    };
    Ok(format!("{end} {position:.3}"))
}

kiln_sdk::export_task!(Probe);
