//! The task catalog: which components exist under which task names, and what
//! each one says about itself (its `describe`), loaded once per component.
//!
//! Tasks come from the components embedded in the `kiln` binary (the
//! standard tasks) and from component files added by path.

use crate::engine::{LoadError, LoadedPlugin, PluginEngine};
use crate::interfaces::PluginState;
use crate::lock;
use kiln_container::Container;
use kiln_jobs::Task;
use kiln_jobs::grants::Grants;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a user names a task: by name in the catalog, or by component path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    Name(String),
    Path(PathBuf),
}

impl TaskRef {
    /// A word is a task name; anything with a `/` or ending in `.wasm` is a
    /// path.
    pub fn parse(s: &str) -> TaskRef {
        if s.contains('/') || s.ends_with(".wasm") {
            TaskRef::Path(PathBuf::from(s))
        } else {
            TaskRef::Name(s.to_string())
        }
    }
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskRef::Name(n) => f.write_str(n),
            TaskRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A loaded, described task: what the job model knows of it, and the
/// compiled component that runs it.
pub struct TaskInfo {
    pub task: Arc<Task>,
    pub(crate) plugin: LoadedPlugin,
}

impl std::ops::Deref for TaskInfo {
    type Target = Task;
    fn deref(&self) -> &Task {
        &self.task
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown task `{name}`; known tasks: {known}")]
    UnknownTask { name: String, known: String },
    #[error("failed to read component {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("failed to describe {origin}: {detail}")]
    Describe { origin: String, detail: String },
    #[error("task {origin}: {detail}")]
    BadDescription { origin: String, detail: String },
}

#[derive(Clone)]
enum Source {
    Embedded(&'static [u8]),
    File(PathBuf),
}

/// The largest component file read.
const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// `describe` runs without grants and must return at once.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Catalog {
    engine: Arc<PluginEngine>,
    sources: Mutex<BTreeMap<String, Source>>,
    /// Tasks already loaded by name: a pipeline making thousands of
    /// sub-jobs must not read and hash the component each time.
    by_name: Mutex<HashMap<String, Arc<TaskInfo>>>,
    described: tokio::sync::Mutex<HashMap<String, Arc<TaskInfo>>>,
}

impl Catalog {
    pub fn new(engine: Arc<PluginEngine>) -> Catalog {
        Catalog {
            engine,
            sources: Mutex::new(BTreeMap::new()),
            by_name: Mutex::new(HashMap::new()),
            described: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The engine the catalog loads components into.
    pub(crate) fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Register a component under a task name without loading it yet.
    pub fn add_embedded(&self, name: &str, bytes: &'static [u8]) {
        lock(&self.sources).insert(name.to_string(), Source::Embedded(bytes));
        lock(&self.by_name).remove(name);
    }

    /// Load a component file and register it under the name it describes.
    pub async fn add_file(&self, path: &Path) -> Result<Arc<TaskInfo>, CatalogError> {
        let info = self
            .load(
                &Source::File(path.to_path_buf()),
                &path.display().to_string(),
            )
            .await?;
        lock(&self.sources).insert(info.name.clone(), Source::File(path.to_path_buf()));
        lock(&self.by_name).insert(info.name.clone(), info.clone());
        Ok(info)
    }

    /// Task names known by name.
    pub fn names(&self) -> Vec<String> {
        lock(&self.sources).keys().cloned().collect()
    }

    pub async fn resolve(&self, task: &TaskRef) -> Result<Arc<TaskInfo>, CatalogError> {
        match task {
            TaskRef::Name(name) => self.get(name).await,
            TaskRef::Path(path) => self.add_file(path).await,
        }
    }

    pub async fn get(&self, name: &str) -> Result<Arc<TaskInfo>, CatalogError> {
        if let Some(info) = lock(&self.by_name).get(name) {
            return Ok(info.clone());
        }
        let source = lock(&self.sources).get(name).cloned();
        let Some(source) = source else {
            return Err(CatalogError::UnknownTask {
                name: name.to_string(),
                known: self.names().join(", "),
            });
        };
        let info = self.load(&source, name).await?;
        if info.name != name {
            return Err(CatalogError::BadDescription {
                origin: name.to_string(),
                detail: format!("the component describes itself as `{}`", info.name),
            });
        }
        lock(&self.by_name).insert(name.to_string(), info.clone());
        Ok(info)
    }

    /// What a task asks for together with everything its sub-tasks ask for,
    /// recursively: the grants a run of it needs.
    pub async fn requests_closure(&self, root: &TaskInfo) -> Result<Grants, CatalogError> {
        let mut total = root.requests.clone();
        let mut seen = BTreeSet::from([root.name.clone()]);
        let mut todo: Vec<String> = root.requests.tasks.iter().cloned().collect();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let info = self.get(&name).await?;
            total.extend(&info.requests);
            todo.extend(info.requests.tasks.iter().cloned());
        }
        Ok(total)
    }

    async fn load(&self, source: &Source, origin: &str) -> Result<Arc<TaskInfo>, CatalogError> {
        let bytes: std::borrow::Cow<'static, [u8]> = match source {
            Source::Embedded(b) => (*b).into(),
            Source::File(path) => read_component(path)?.into(),
        };
        let plugin = self.engine.load(&bytes, origin)?;
        // One description per component; the lock also keeps two jobs from
        // describing the same component at once.
        let mut described = self.described.lock().await;
        if let Some(info) = described.get(&plugin.hash) {
            return Ok(info.clone());
        }
        let info = Arc::new(describe(&self.engine, plugin.clone(), origin).await?);
        described.insert(plugin.hash.clone(), info.clone());
        Ok(info)
    }
}

fn read_component(path: &Path) -> Result<Vec<u8>, CatalogError> {
    let err = |source: std::io::Error| CatalogError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_COMPONENT_BYTES {
        return Err(err(std::io::Error::other(format!(
            "larger than {MAX_COMPONENT_BYTES} bytes"
        ))));
    }
    std::fs::read(path).map_err(err)
}

fn is_task_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn describe(
    engine: &PluginEngine,
    plugin: LoadedPlugin,
    origin: &str,
) -> Result<TaskInfo, CatalogError> {
    let describe_err = |detail: String| CatalogError::Describe {
        origin: origin.to_string(),
        detail,
    };
    // Through the engine, which takes an instance outside the pool when
    // the pool is full of running jobs.
    let (mut store, instance) = engine
        .instantiate(
            &plugin,
            PluginState::for_describe(),
            Duration::from_secs(10),
        )
        .await;
    let call = async { instance?.call_describe(&mut store).await };
    let desc = match tokio::time::timeout(DESCRIBE_TIMEOUT, call).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Err(describe_err(crate::interfaces::trap_reason(
                &e,
                store.data(),
            )));
        }
        Err(_) => return Err(describe_err("describe did not return within 30 s".into())),
    };
    let bad = |detail: String| CatalogError::BadDescription {
        origin: origin.to_string(),
        detail,
    };
    if !is_task_name(&desc.name) {
        return Err(bad(format!(
            "task name `{}` must be 1-64 letters, digits, `_` or `-`",
            desc.name
        )));
    }
    let container = Container::from_def_xml(&desc.definition).map_err(|e| {
        bad(format!(
            "its container definition (def.xml) is invalid: {e}"
        ))
    })?;
    let r = desc.requests;
    let requests = Grants {
        programs: r.programs.into_iter().collect(),
        tasks: r.tasks.into_iter().collect(),
        axes: r.axes.into_iter().collect(),
        env: r.env.into_iter().collect(),
        read_dirs: r.read_dirs.into_iter().collect(),
        write_dirs: r.write_dirs.into_iter().collect(),
        network: r.network,
        limits: Default::default(),
        axis_limits: Default::default(),
        require_confinement: false,
    };
    for warning in container.warnings() {
        tracing::warn!(task = %desc.name, "{origin}: {warning}");
    }
    Ok(TaskInfo {
        task: Arc::new(Task {
            name: desc.name,
            version: desc.version,
            title: desc.title,
            definition: desc.definition,
            requests,
            retryable: desc.retryable,
            origin: origin.to_string(),
            container,
        }),
        plugin,
    })
}
