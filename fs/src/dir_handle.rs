//! The host's own opens in directories that plugins and their programs
//! write (job directories above all), through a directory handle it holds.
//!
//! A plugin writes its job directory through WASI, and its programs write
//! it natively; either may plant a symbolic link, a FIFO or a hard link
//! where the host later writes or reads, or swap a directory for a link
//! after the host created it. So the host never names a file in such a
//! directory by path: it holds the directory open from the moment it made
//! it ([`DirHandle`]) and opens everything relative to that descriptor,
//!
//! - refusing a symbolic link at every component (`openat2` with
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` where
//!   the kernel has it, else one `O_NOFOLLOW` open per component),
//! - requiring a regular file, opened `O_NONBLOCK` so that a FIFO planted
//!   in its place can never block the host, and for files it appends to,
//!   a single link (a hard link would make the host write another file),
//! - replacing whole files through a temporary file it creates itself
//!   (`O_EXCL`, never an existing one) and renames over the old name,
//!   which replaces a link there instead of following it.
//!
//! Where the host hands a held directory to something that takes a path
//! (the WASI preopen, a program's working directory, a Landlock rule), it
//! hands `/proc/<host pid>/fd/<n>` ([`DirHandle::fd_path`]), which names
//! exactly the directory held, whatever its path has become since.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A directory the host holds open, with the path it had when opened (for
/// messages and for people; never to open anything by).
#[derive(Debug)]
pub struct DirHandle {
    fd: OwnedFd,
    path: PathBuf,
}

/// How deep [`DirHandle::usage`] walks: a descriptor is held per level.
pub const MAX_WALK_DEPTH: usize = 256;

/// Set once `openat2` turned out to be missing (Linux before 5.6, or
/// refused by a seccomp profile): resolution walks component by component.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    )
}

/// What the kernel's refusal of a no-follow open means, in words.
fn explain(path: &Path, e: rustix::io::Errno) -> io::Error {
    match e {
        rustix::io::Errno::LOOP => refused(
            path,
            "is or passes through a symbolic link, which the host never follows here",
        ),
        rustix::io::Errno::XDEV => refused(path, "leads outside its directory"),
        rustix::io::Errno::NOTDIR => refused(path, "passes through something not a directory"),
        // A FIFO (or socket) without a reader, opened for writing.
        rustix::io::Errno::NXIO => refused(path, "is a FIFO or a socket, not a regular file"),
        e => {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    }
}

/// A relative path of plain names only: no `..`, no root, not empty.
fn plain(rel: &Path) -> io::Result<()> {
    let ok = !rel.as_os_str().is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok && !rel.as_os_str().as_bytes().contains(&0) {
        Ok(())
    } else {
        Err(refused(
            rel,
            "is not a relative path of plain names (no `..`, no leading `/`)",
        ))
    }
}

/// One name: a plain name without a `/`.
fn single(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(refused(Path::new(name), "is not a plain file name"));
    }
    Ok(())
}

/// Open `rel` below `dir` without following a link anywhere on the way.
fn open_beneath(
    dir: BorrowedFd<'_>,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, rustix::io::Errno> {
    // openat2 refuses with O_PATH any flag but these.
    let flags = if flags.contains(OFlags::PATH) {
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC
    } else {
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY
    };
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dir, rel, flags, mode, resolve) {
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            // EAGAIN: the lookup raced a rename elsewhere; the walk settles it.
            Err(rustix::io::Errno::AGAIN) => {}
            other => return other,
        }
    }
    // The walk: every directory opened without following a link.
    let mut names: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let last = names.pop().unwrap_or(std::ffi::OsStr::new("."));
    let mut held: Option<OwnedFd> = None;
    for name in names {
        let at = held.as_ref().map_or(dir, |f| f.as_fd());
        let next = rustix::fs::openat(
            at,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        held = Some(next);
    }
    let at = held.as_ref().map_or(dir, |f| f.as_fd());
    rustix::fs::openat(at, last, flags, mode)
}

/// Why a file opened for the host is not one it may use, if it is not.
fn check_regular(fd: BorrowedFd<'_>, single_link: bool) -> Result<(), &'static str> {
    let st = rustix::fs::fstat(fd).map_err(|_| "cannot be examined")?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err("is a directory, not a regular file"),
        FileType::Fifo => return Err("is a FIFO, not a regular file"),
        FileType::CharacterDevice | FileType::BlockDevice => {
            return Err("is a device, not a regular file");
        }
        _ => return Err("is not a regular file"),
    }
    if single_link && st.st_nlink > 1 {
        return Err("has other hard links, so writing it would write another file too");
    }
    Ok(())
}

impl DirHandle {
    /// Open a directory the host trusts by path (the jobs directory, a
    /// granted directory): links in the path itself are the operator's.
    pub fn open(path: &Path) -> io::Result<DirHandle> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| explain(path, e))?;
        Ok(DirHandle {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path the directory had when it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path naming exactly this directory for as long as the handle is
    /// held, in this process and in the programs it starts.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }

    /// Where `rel` below this directory is, for messages.
    pub fn display_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Make the directory `name` here (it must not exist) and hold it.
    pub fn create_dir(&self, name: &str) -> io::Result<DirHandle> {
        single(name)?;
        let path = self.path.join(name);
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755))
            .map_err(|e| explain(&path, e))?;
        self.open_dir(Path::new(name))
    }

    /// Hold the directory `rel` below this one.
    pub fn open_dir(&self, rel: &Path) -> io::Result<DirHandle> {
        plain(rel)?;
        let path = self.path.join(rel);
        let fd = open_beneath(
            self.fd.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| explain(&path, e))?;
        Ok(DirHandle { fd, path })
    }

    /// Open the regular file `rel` below this directory for reading.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        plain(rel)?;
        let path = self.path.join(rel);
        let fd = open_beneath(
            self.fd.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| explain(&path, e))?;
        check_regular(fd.as_fd(), false).map_err(|why| refused(&path, why))?;
        Ok(File::from(fd))
    }

    /// Open the file `name` here for appending, creating it if need be.
    pub fn append(&self, name: &str) -> io::Result<File> {
        single(name)?;
        let path = self.path.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NONBLOCK
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NOCTTY,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| explain(&path, e))?;
        check_regular(fd.as_fd(), true).map_err(|why| refused(&path, why))?;
        // Back to blocking writes (O_NONBLOCK only guarded the open).
        rustix::fs::fcntl_setfl(&fd, OFlags::APPEND)?;
        Ok(File::from(fd))
    }

    /// Replace the file `name` here whole: write a temporary file the host
    /// creates itself, then rename it over `name` (a link there is
    /// replaced, not followed), so a reader, or a host killed meanwhile,
    /// never sees half of it; `sync` also guards against the machine going
    /// down. Returns the file written, open for reading from its start.
    pub fn replace(&self, name: &str, contents: &[u8], sync: bool) -> io::Result<File> {
        single(name)?;
        let tmp = format!(".{name}.tmp");
        let shown = self.path.join(&tmp);
        let create = || {
            rustix::fs::openat(
                &self.fd,
                tmp.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
        };
        let fd = match create() {
            // Left by a host killed mid-write, or planted: whatever it is
            // (a link included), it goes; a directory there is refused.
            Err(rustix::io::Errno::EXIST) => {
                rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty())
                    .map_err(|e| explain(&shown, e))?;
                create().map_err(|e| explain(&shown, e))?
            }
            other => other.map_err(|e| explain(&shown, e))?,
        };
        let mut file = File::from(fd);
        let written = file
            .write_all(contents)
            .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
            .and_then(|()| {
                rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)
                    .map_err(|e| explain(&self.path.join(name), e))
            });
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        file.rewind()?;
        Ok(file)
    }

    /// Create the new file `name` here (it must not exist), for writing.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        single(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| explain(&self.path.join(name), e))?;
        Ok(File::from(fd))
    }

    /// Rename `from` here to `to` in `to_dir`; a link is moved, not
    /// followed.
    pub fn rename(&self, from: &str, to_dir: &DirHandle, to: &str) -> io::Result<()> {
        single(from)?;
        single(to)?;
        rustix::fs::renameat(&self.fd, from, &to_dir.fd, to)
            .map_err(|e| explain(&self.path.join(from), e))
    }

    /// Remove the file (or link) `name` here.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        single(name)?;
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())
            .map_err(|e| explain(&self.path.join(name), e))
    }

    /// The names in this directory (`.` and `..` left out).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let dir = rustix::fs::Dir::read_from(&self.fd)?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
            }
        }
        Ok(names)
    }

    /// Size in bytes (apparent) of everything below this directory, and
    /// the number of entries counted; links are counted, never followed.
    /// Depth first with one open directory per level, so a directory of
    /// thousands of sub-directories (a pipeline's `job_N`) costs one
    /// descriptor; nesting deeper than [`MAX_WALK_DEPTH`] is refused
    /// (`InvalidInput`) rather than left uncounted.
    pub fn usage(&self) -> io::Result<(u64, u64)> {
        let mut bytes = 0u64;
        let mut entries = 0u64;
        let mut stack = vec![rustix::fs::Dir::read_from(&self.fd)?];
        while let Some(dir) = stack.last_mut() {
            let Some(entry) = dir.read() else {
                stack.pop();
                continue;
            };
            let entry = entry?;
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            let at = dir.fd()?;
            let Ok(st) = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) else {
                // Gone since the listing.
                continue;
            };
            entries += 1;
            // Apparent size: a sparse file counts what it claims.
            bytes = bytes.saturating_add((st.st_size as u64).max(st.st_blocks as u64 * 512));
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                continue;
            }
            let Ok(sub) = rustix::fs::openat(
                at,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            if stack.len() >= MAX_WALK_DEPTH {
                return Err(refused(
                    &self.path,
                    &format!("nests directories more than {MAX_WALK_DEPTH} deep"),
                ));
            }
            stack.push(rustix::fs::Dir::new(sub)?);
        }
        Ok((bytes, entries))
    }

    /// The kind of what `rel` below this directory is (a link at its end
    /// is reported as a link); an error when it is missing or a link lies
    /// on the way to it.
    pub fn kind(&self, rel: &Path) -> io::Result<FileType> {
        plain(rel)?;
        let path = self.path.join(rel);
        let fd = open_beneath(self.fd.as_fd(), rel, OFlags::PATH, Mode::empty())
            .map_err(|e| explain(&path, e))?;
        let st = rustix::fs::fstat(&fd)?;
        Ok(FileType::from_raw_mode(st.st_mode))
    }

    /// A second handle on the same directory.
    pub fn try_clone(&self) -> io::Result<DirHandle> {
        Ok(DirHandle {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// `(device, inode)` of the directory held.
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(&self.fd)?;
        Ok((st.st_dev, st.st_ino))
    }
}

/// A job directory the host holds open while the job is in use (being
/// made, running) and otherwise reopens below its parent's directory when
/// it needs it, checking that it is still the directory it made (same
/// device and inode; never through a link). A pipeline may keep thousands
/// of sub-jobs made and not started, or finished: a descriptor held for
/// each would let a plugin run the host out of descriptors.
#[derive(Debug)]
pub struct ReleasableDir {
    path: PathBuf,
    below: Option<Below>,
    held: std::sync::Mutex<Option<Arc<DirHandle>>>,
}

/// Where a released directory is found again.
#[derive(Debug)]
struct Below {
    parent: Arc<ReleasableDir>,
    name: OsString,
    identity: (u64, u64),
}

impl ReleasableDir {
    /// A directory held for as long as this lives (a top-level job's, whose
    /// parent is the jobs directory): [`ReleasableDir::release`] keeps it.
    pub fn held(dir: Arc<DirHandle>) -> Arc<ReleasableDir> {
        Arc::new(ReleasableDir {
            path: dir.path().to_path_buf(),
            below: None,
            held: std::sync::Mutex::new(Some(dir)),
        })
    }

    /// `dir`, just made as an entry of `parent`, held until released.
    pub fn below(parent: Arc<ReleasableDir>, dir: DirHandle) -> Arc<ReleasableDir> {
        let (Some(name), Ok(identity)) = (dir.path().file_name(), dir.identity()) else {
            // Nothing to find it again by: it stays held.
            return ReleasableDir::held(Arc::new(dir));
        };
        Arc::new(ReleasableDir {
            path: dir.path().to_path_buf(),
            below: Some(Below {
                parent,
                name: name.to_os_string(),
                identity,
            }),
            held: std::sync::Mutex::new(Some(Arc::new(dir))),
        })
    }

    /// The path the directory had when it was made; for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn held_now(&self) -> std::sync::MutexGuard<'_, Option<Arc<DirHandle>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory open: the held handle, or (released) a new one that
    /// lives as long as the caller keeps it.
    pub fn get(&self) -> io::Result<Arc<DirHandle>> {
        if let Some(dir) = self.held_now().as_ref() {
            return Ok(dir.clone());
        }
        let Some(below) = &self.below else {
            return Err(refused(&self.path, "is no longer held by the host"));
        };
        let dir = below.parent.get()?.open_dir(Path::new(&below.name))?;
        if dir.identity()? != below.identity {
            return Err(refused(
                &self.path,
                "was replaced by another directory after the host made it",
            ));
        }
        Ok(Arc::new(dir))
    }

    /// Hold the directory open until [`ReleasableDir::release`].
    pub fn hold(&self) -> io::Result<()> {
        let dir = self.get()?;
        *self.held_now() = Some(dir);
        Ok(())
    }

    /// Stop holding the directory (a handle someone still uses stays open
    /// until they drop it); one made by [`ReleasableDir::held`] is kept.
    pub fn release(&self) {
        if self.below.is_some() {
            *self.held_now() = None;
        }
    }

    /// Whether the host holds the directory open now.
    pub fn is_held(&self) -> bool {
        self.held_now().is_some()
    }
}

impl AsFd for DirHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, DirHandle, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job");
        std::fs::create_dir(&dir).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        let handle = DirHandle::open(&dir).unwrap();
        (tmp, handle, outside)
    }

    #[test]
    fn appending_never_follows_a_link_nor_writes_a_hard_linked_file() {
        let (_tmp, dir, outside) = setup();
        symlink(&outside, dir.path().join("kiln.log")).unwrap();
        let e = dir.append("kiln.log").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::hard_link(&outside, dir.path().join("audit.jsonl")).unwrap();
        let e = dir.append("audit.jsonl").unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        let mut f = dir.append("log.txt").unwrap();
        f.write_all(b"one").unwrap();
        dir.append("log.txt").unwrap().write_all(b" two").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("log.txt")).unwrap(),
            b"one two"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_tmp, dir, _) = setup();
        let fifo = dir.path().join("input.mtz");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = dir
            .open_file(Path::new("input.mtz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FIFO"), "{e}");
        let e = dir.append("input.mtz").unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
    }

    #[test]
    fn replacing_replaces_a_planted_link_and_a_planted_temporary_file() {
        let (_tmp, dir, outside) = setup();
        symlink(&outside, dir.path().join("params.xml")).unwrap();
        symlink(&outside, dir.path().join(".params.xml.tmp")).unwrap();
        let mut f = dir.replace("params.xml", b"<ccp4i2/>", true).unwrap();
        let mut back = String::new();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "<ccp4i2/>");
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(dir.path().join("params.xml")).unwrap();
        assert!(meta.is_file());
        assert!(!dir.path().join(".params.xml.tmp").exists());
        // A directory in the way is an error, not a write elsewhere.
        std::fs::create_dir(dir.path().join("job.json")).unwrap();
        assert!(dir.replace("job.json", b"{}", false).is_err());
    }

    #[test]
    fn links_are_refused_at_every_component() {
        let (tmp, dir, _) = setup();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/in.pdb"), b"ATOM").unwrap();
        symlink(tmp.path(), dir.path().join("up")).unwrap();
        symlink("sub", dir.path().join("inner")).unwrap();
        assert!(dir.open_file(Path::new("sub/in.pdb")).is_ok());
        for bad in [
            "up/outside",
            "inner/in.pdb",
            "../outside",
            "/etc/passwd",
            "",
        ] {
            assert!(dir.open_file(Path::new(bad)).is_err(), "{bad}");
        }
        assert!(dir.open_dir(Path::new("up")).is_err());
        assert!(dir.open_dir(Path::new("sub")).is_ok());
    }

    #[test]
    fn the_walk_refuses_what_openat2_refuses() {
        let (tmp, dir, _) = setup();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/in.pdb"), b"ATOM").unwrap();
        symlink(tmp.path(), dir.path().join("up")).unwrap();
        let walk = |rel: &str| {
            open_beneath(
                dir.as_fd(),
                Path::new(rel),
                OFlags::RDONLY | OFlags::NONBLOCK,
                Mode::empty(),
            )
        };
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let (ok, link, through) = (walk("sub/in.pdb"), walk("up"), walk("up/outside"));
        NO_OPENAT2.store(false, Ordering::Relaxed);
        assert!(ok.is_ok());
        assert_eq!(link.unwrap_err(), rustix::io::Errno::LOOP);
        assert_eq!(through.unwrap_err(), rustix::io::Errno::NOTDIR);
    }

    #[test]
    fn a_held_directory_stays_itself_when_its_path_is_swapped_for_a_link() {
        let (tmp, parent, outside) = setup();
        let child = parent.create_dir("job_1").unwrap();
        let moved = tmp.path().join("moved");
        std::fs::rename(parent.path().join("job_1"), &moved).unwrap();
        symlink(tmp.path(), parent.path().join("job_1")).unwrap();
        child.replace("params.xml", b"x", false).unwrap();
        assert!(moved.join("params.xml").is_file());
        assert!(!tmp.path().join("params.xml").exists());
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        // Through /proc the held directory is named, not the link.
        let through = std::fs::canonicalize(child.fd_path()).unwrap();
        assert_eq!(through, std::fs::canonicalize(&moved).unwrap());
        assert!(
            parent.create_dir("job_1").is_err(),
            "the link is in the way"
        );
    }

    #[test]
    fn usage_refuses_a_tree_nested_deeper_than_it_walks() {
        let (_tmp, dir, _) = setup();
        let mut at = dir.try_clone().unwrap();
        for _ in 0..MAX_WALK_DEPTH - 1 {
            at = at.create_dir("d").unwrap();
        }
        std::fs::write(at.path().join("f"), b"12345").unwrap();
        let (bytes, entries) = dir.usage().unwrap();
        assert_eq!(entries, MAX_WALK_DEPTH as u64);
        assert!(bytes >= 5);
        at.create_dir("d").unwrap().create_dir("d").unwrap();
        let e = dir.usage().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("more than 256 deep"), "{e}");
    }

    #[test]
    fn usage_counts_apparent_sizes_and_never_follows_links() {
        let (tmp, dir, _) = setup();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![0u8; 1000]).unwrap();
        let sparse = File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        symlink(tmp.path(), dir.path().join("up")).unwrap();
        let (bytes, entries) = dir.usage().unwrap();
        assert!(bytes >= (1 << 30) + 1000, "{bytes}");
        assert!(
            bytes < (1 << 30) + (1 << 20),
            "{bytes}: the link's target was counted"
        );
        assert_eq!(entries, 4);
    }

    #[test]
    fn a_released_directory_is_found_again_only_if_it_is_the_same_one() {
        let (tmp, dir, outside) = setup();
        let parent = ReleasableDir::held(Arc::new(dir));
        let child = ReleasableDir::below(
            parent.clone(),
            parent.get().unwrap().create_dir("job_1").unwrap(),
        );
        child
            .get()
            .unwrap()
            .replace("params.xml", b"one", false)
            .unwrap();
        child.release();
        assert!(!child.is_held());
        parent.release();
        assert!(parent.is_held(), "a directory made held stays held");
        // Found again below its parent while released.
        let again = child.get().unwrap();
        assert_eq!(
            std::fs::read(again.path().join("params.xml")).unwrap(),
            b"one"
        );
        assert!(!child.is_held(), "a use while released does not hold it");
        child.hold().unwrap();
        assert!(child.is_held());
        child.release();
        // Swapped for another directory, or for a link to one, by whoever
        // writes the parent: refused, and nothing is written through it.
        let job_dir = tmp.path().join("job");
        std::fs::rename(job_dir.join("job_1"), job_dir.join("moved")).unwrap();
        std::fs::create_dir(job_dir.join("job_1")).unwrap();
        let e = child.get().unwrap_err().to_string();
        assert!(e.contains("replaced by another directory"), "{e}");
        std::fs::remove_dir(job_dir.join("job_1")).unwrap();
        symlink(job_dir.join("moved"), job_dir.join("job_1")).unwrap();
        // (The kernel says ENOTDIR for a link opened as a directory.)
        let e = child.get().unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") || e.contains("not a directory"),
            "{e}"
        );
        assert!(child.hold().is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        // Put back, it is the same directory again.
        std::fs::remove_file(job_dir.join("job_1")).unwrap();
        std::fs::rename(job_dir.join("moved"), job_dir.join("job_1")).unwrap();
        assert!(child.get().is_ok());
    }
}
