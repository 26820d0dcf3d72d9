//! Test plugin `hostile`: does, in the mode named by
//! `controlParameters.MODE`, what a plugin author out to turn the host
//! against its machine would, and writes what happened to
//! `outputData.RESULT`. The conformance suite checks that the host stayed
//! inside its bounds and trusted nothing of it.
//!
//! Modes:
//! - `links-wasi FILE DIR`: plant, through WASI, links to FILE in place of
//!   every file the host writes in the job directory, and `up` -> DIR;
//!   then make the host write them (a log line, a program with a script
//!   on stdin, a working directory through `up`) and end.
//! - `links-program FILE DIR`: the same, the links made by a program.
//! - `tamper`: run an `mtzdump` sub-job on HKLIN, then rewrite its
//!   params.xml (every cell length 111.1) and job.json.
//! - `swap zero|fifo`: give a sub-job an input file, then swap it for a
//!   link to /dev/zero or a FIFO before the sub-job starts.
//! - `env NAME VALUE`: run `fake print-env` with NAME=VALUE.
//! - `connect PATH`: run `fake connect-unix PATH`.
//! - `keep N BYTES`: run N programs that each write BYTES to stdout,
//!   keeping every handle (and so its captured output).
//! - `nest WIDE DEEP`: run WIDE `hostile` sub-jobs at once, each nesting
//!   WIDE more, DEEP levels down.
//! - `fill-wasi BYTES`, `fill-program BYTES`: write BYTES into the job
//!   directory, through WASI or by a program.

use kiln_sdk::{Description, Job, Outcome, Task, TaskError};
use std::ffi::CString;
use std::io::Write;

const DEF_XML: &str = include_str!("../hostile.def.xml");

/// Every file the host writes in a job directory, by name.
const HOST_FILES: &[&str] = &[
    "kiln.log",
    "audit.jsonl",
    "job.json",
    ".job.json.tmp",
    "params.xml",
    ".params.xml.tmp",
    "input_params.xml",
    ".input_params.xml.tmp",
    "diagnostic.xml",
    ".diagnostic.xml.tmp",
    "com.txt",
    ".com.txt.tmp",
    "log.txt",
    "log_err.txt",
];

struct Hostile;

impl Task for Hostile {
    fn describe() -> Description {
        Description::new("hostile", "0.1.0", "Conformance test plugin: a hostile one")
            .definition(DEF_XML)
            .programs(["fake"])
            .tasks(["hostile", "mtzdump", "probe"])
            .env([
                "BASH_ENV",
                "PYTHONSTARTUP",
                "KILN_CONFINE_POLICY",
                "CCP4_SCR",
            ])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let mode = job.text("controlParameters.MODE")?;
        let words: Vec<&str> = mode.split_whitespace().collect();
        let result = match words.as_slice() {
            ["links-wasi", file, dir] => {
                for name in HOST_FILES {
                    symlink(file, &format!("/job/{name}"))?;
                }
                symlink(dir, "/job/up")?;
                make_the_host_write(job)
            }
            ["links-program", file, dir] => {
                for name in HOST_FILES.iter().chain(&["up"]) {
                    let target = if *name == "up" { dir } else { file };
                    // The host refuses `..` in a program's arguments: the
                    // program is told how many levels to climb instead.
                    let rest = target.trim_start_matches("../");
                    let up = ((target.len() - rest.len()) / 3).to_string();
                    job.program("fake")
                        .args(["symlink", &up, rest, name])
                        .run()?
                        .check()?;
                }
                make_the_host_write(job)
            }
            ["tamper"] => tamper(job)?,
            ["swap", kind] => swap(job, kind)?,
            ["env", name, value] => {
                let finished = job
                    .program("fake")
                    .arg("print-env")
                    .env(name, value)
                    .run()?;
                finished.check()?;
                finished.stdout_text()
            }
            ["connect", path] => {
                let finished = job.program("fake").args(["connect-unix", path]).run()?;
                format!(
                    "{}: {}",
                    outcome(finished.outcome()),
                    finished.stderr_text().trim()
                )
            }
            ["keep", n, bytes] => {
                let n: usize = n.parse().map_err(|_| TaskError::failed("bad count"))?;
                let mut kept = Vec::with_capacity(n);
                let mut captured = 0;
                for _ in 0..n {
                    let finished = job.program("fake").args(["print-x", bytes]).run()?;
                    // What the host holds for it, less the truncation marker.
                    let text = finished.stdout_text();
                    captured += text.bytes().filter(|b| *b == b'x').count();
                    kept.push(finished);
                }
                format!("kept {} handles holding {captured} bytes", kept.len())
            }
            ["nest", wide, deep] => nest(job, wide, deep)?,
            ["fill-wasi", bytes] => {
                let bytes: u64 = bytes.parse().map_err(|_| TaskError::failed("bad size"))?;
                let mut file = std::fs::File::create("/job/filler")
                    .map_err(|e| TaskError::failed(format!("create /job/filler: {e}")))?;
                let chunk = vec![b'x'; 1 << 20];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    file.write_all(&chunk[..n])
                        .map_err(|e| TaskError::failed(format!("write /job/filler: {e}")))?;
                    left -= n as u64;
                }
                format!("wrote {bytes} bytes")
            }
            ["fill-program", bytes] => {
                let finished = job.program("fake").args(["fill", "filler", bytes]).run()?;
                finished.check()?;
                format!("wrote {bytes} bytes")
            }
            _ => return Err(TaskError::failed(format!("unknown mode `{mode}`"))),
        };
        job.set("outputData.RESULT", result)?;
        Ok(())
    }
}

fn symlink(target: &str, link: &str) -> Result<(), TaskError> {
    let _ = std::fs::remove_file(link);
    let (t, l) = (cstring(target)?, cstring(link)?);
    // SAFETY: two valid C strings.
    if unsafe { libc::symlink(t.as_ptr(), l.as_ptr()) } != 0 {
        return Err(TaskError::failed(format!(
            "symlink {link} -> {target}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn cstring(s: &str) -> Result<CString, TaskError> {
    CString::new(s).map_err(|_| TaskError::failed("NUL in a path"))
}

fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Exited(c) => format!("exited {c}"),
        Outcome::Signaled(s) => format!("signaled {s}"),
        Outcome::TimedOut => "timed-out".into(),
        Outcome::Cancelled => "cancelled".into(),
        Outcome::SpawnFailed(why) => format!("spawn-failed {why}"),
    }
}

/// Make the host write each of its files in the job directory; what each
/// attempt came to, `; `-separated.
fn make_the_host_write(job: &Job) -> String {
    job.info("a line for kiln.log");
    let program = match job
        .program("fake")
        .args(["spew", "100", "both"])
        .stdin("# the first line\nwhatever the plugin wants\n")
        .run()
    {
        Ok(f) => outcome(f.outcome()),
        Err(e) => format!("refused: {}", e.reason),
    };
    let workdir = match job
        .program("fake")
        .args(["write-file", "through-up", "escaped"])
        .working_dir("up")
        .run()
    {
        Ok(f) => outcome(f.outcome()),
        Err(e) => format!("refused: {}", e.reason),
    };
    format!("program: {program}; workdir: {workdir}")
}

/// Run `mtzdump` on HKLIN, then rewrite what it left.
fn tamper(job: &Job) -> Result<String, TaskError> {
    let sub = job.sub_job("mtzdump")?;
    sub.copy_from_parent("inputData.HKLIN", "inputData.HKLIN")?;
    sub.run()?;
    let dir = format!("/job/{}", sub.directory());
    let params = format!("{dir}/params.xml");
    let text = std::fs::read_to_string(&params)
        .map_err(|e| TaskError::failed(format!("read {params}: {e}")))?;
    let mut forged = String::new();
    let mut rest = text.as_str();
    for tag in ["a", "b", "c"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        if let (Some(i), Some(j)) = (rest.find(&open), rest.find(&close)) {
            forged.push_str(&rest[..i + open.len()]);
            forged.push_str("111.1");
            rest = &rest[j..];
        }
    }
    forged.push_str(rest);
    if forged == text {
        return Err(TaskError::failed(format!("no cell found in {params}")));
    }
    std::fs::write(&params, &forged)
        .map_err(|e| TaskError::failed(format!("write {params}: {e}")))?;
    let record = format!("{dir}/job.json");
    if let Ok(text) = std::fs::read_to_string(&record) {
        let _ = std::fs::write(&record, text.replace("mtzdump", "forged"));
    }
    Ok(format!("tampered with {}", sub.directory()))
}

/// Give a `probe` sub-job an input, then swap it before it starts.
fn swap(job: &Job, kind: &str) -> Result<String, TaskError> {
    let sub = job.sub_job("probe")?;
    sub.set("controlParameters.MODE", "ok")?;
    // A relative file value is taken in the sub-job's own directory.
    let dir = sub.directory();
    let input = format!("/job/{dir}/in.pdb");
    std::fs::write(&input, "ATOM\n")
        .map_err(|e| TaskError::failed(format!("write {input}: {e}")))?;
    sub.set(
        "inputData.XYZIN",
        kiln_sdk::FileRef {
            path: "in.pdb".into(),
            file_type: String::new(),
            annotation: String::new(),
        },
    )?;
    match kind {
        // WASI refuses an absolute target, not one that climbs to `/`.
        "zero" => symlink(&format!("{}dev/zero", "../".repeat(32)), &input)?,
        "fifo" => job
            .program("fake")
            .args(["mkfifo", &format!("{dir}/in.pdb")])
            .run()?
            .check()?,
        _ => return Err(TaskError::failed(format!("unknown swap `{kind}`"))),
    }
    sub.start()?;
    let r = sub.wait()?;
    Ok(format!("{:?}: {}", r.status, r.reason.unwrap_or_default()))
}

fn nest(job: &Job, wide: &str, deep: &str) -> Result<String, TaskError> {
    let w: usize = wide.parse().map_err(|_| TaskError::failed("bad width"))?;
    let d: usize = deep.parse().map_err(|_| TaskError::failed("bad depth"))?;
    if d == 0 {
        return Ok("leaf".into());
    }
    let mut subs = Vec::new();
    for _ in 0..w {
        let sub = job.sub_job("hostile")?;
        sub.set("controlParameters.MODE", format!("nest {w} {}", d - 1))?;
        sub.start()?;
        subs.push(sub);
    }
    for sub in &subs {
        let r = sub.wait()?;
        if let Some(why) = r.reason {
            return Err(TaskError::failed(why));
        }
    }
    Ok(format!("{w} nested"))
}

kiln_sdk::export_task!(Hostile);
