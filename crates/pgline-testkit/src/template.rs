//! The cached, never-started `initdb` output that every server copies.
//!
//! `initdb` takes a second or two; copying its output takes a tenth of that. The
//! template lives in `<base dir>/pgline-testkit-template-<major>-v1` (with `-u<uid>`
//! appended for non-root users) and is created at most once per machine: under an
//! exclusive `flock` on a sibling `.lock` file, `initdb` writes into a temporary name
//! that is then renamed into place, so a crash never leaves a half-made template behind
//! and racing processes (nextest runs one per test) wait for the first one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use crate::TestkitError;
use crate::bins::Binaries;
use crate::procs::RunAs;

/// Bump when the initdb options or the layout change, so old templates are ignored.
const LAYOUT_VERSION: &str = "v1";

/// Environment variable naming the folder for templates and server folders.
pub const TMPDIR_ENV: &str = "PGLINE_TESTKIT_TMPDIR";

/// Below this much free space, `/dev/shm` is not used (Docker gives it 64 MiB).
const SHM_MIN_FREE: u64 = 2 << 30;

/// Where templates and server folders go: `$PGLINE_TESTKIT_TMPDIR` if set; else
/// `/dev/shm` when it is a writable tmpfs with at least 2 GiB free (copying a data
/// folder there takes a fifth of the time it takes on a disk, and durability is off
/// anyway); else the system temporary folder.
pub(crate) fn base_dir() -> PathBuf {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(dir) = std::env::var_os(TMPDIR_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        #[allow(clippy::useless_conversion)] // the field types differ between platforms
        let roomy = nix::sys::statvfs::statvfs(shm).is_ok_and(|st| {
            u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()))
                >= SHM_MIN_FREE
        });
        let writable = nix::unistd::access(
            shm,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok();
        if shm.is_dir() && roomy && writable {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

fn template_name(bins: &Binaries) -> String {
    let euid = nix::unistd::geteuid();
    let user = if euid.is_root() {
        String::new()
    } else {
        format!("-u{euid}")
    };
    format!(
        "pgline-testkit-template-{}-{LAYOUT_VERSION}{user}",
        bins.major
    )
}

/// Returns the template's data folder, creating the template first if needed.
pub(crate) fn ensure(bins: &Binaries, run_as: Option<RunAs>) -> Result<PathBuf, TestkitError> {
    let base = base_dir();
    let name = template_name(bins);
    let final_dir = base.join(&name);
    let data = final_dir.join("data");
    if is_complete(&data) {
        return Ok(data);
    }

    let lock_path = base.join(format!("{name}.lock"));
    let lock_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .or_else(|_| std::fs::File::open(&lock_path))
        .map_err(|e| TestkitError::io(format!("opening {}", lock_path.display()), e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| {
        TestkitError::io(
            format!("locking {}", lock_path.display()),
            std::io::Error::from(errno),
        )
    })?;
    if is_complete(&data) {
        return Ok(data);
    }

    // Leftovers of a crashed creator: an incomplete final folder, or temporary folders.
    if final_dir.exists() {
        let trash = base.join(format!("{name}.trash-{}", unique_suffix()));
        if std::fs::rename(&final_dir, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        }
    }
    if let Ok(entries) = std::fs::read_dir(&base) {
        let prefixes = [format!("{name}.tmp-"), format!("{name}.trash-")];
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if prefixes.iter().any(|p| file_name.starts_with(p.as_str())) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    let tmp = base.join(format!("{name}.tmp-{}", unique_suffix()));
    std::fs::create_dir(&tmp)
        .map_err(|e| TestkitError::io(format!("creating {}", tmp.display()), e))?;
    let made = run_initdb(bins, run_as, &tmp).and_then(|()| {
        std::fs::rename(&tmp, &final_dir).map_err(|e| {
            TestkitError::io(
                format!("renaming {} to {}", tmp.display(), final_dir.display()),
                e,
            )
        })
    });
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        if is_complete(&data) {
            return Ok(data); // someone without the lock won the race; theirs is as good
        }
        return Err(e);
    }
    Ok(data)
}

fn is_complete(data: &Path) -> bool {
    data.join("PG_VERSION").is_file() && data.join("global").join("pg_control").is_file()
}

fn run_initdb(bins: &Binaries, run_as: Option<RunAs>, tmp: &Path) -> Result<(), TestkitError> {
    use std::os::unix::process::CommandExt;

    if let Some(who) = run_as {
        who.chown(tmp)?;
    }
    let data = tmp.join("data");
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(&data)
        .args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            // 1 MiB WAL segments instead of 16: every server copies pg_wal.
            "--wal-segsize=1",
        ])
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .current_dir(tmp);
    if let Some(who) = run_as {
        cmd.uid(who.uid).gid(who.gid);
    }
    let out = cmd
        .output()
        .map_err(|e| TestkitError::io(format!("running {}", bins.initdb.display()), e))?;
    if !out.status.success() {
        return Err(TestkitError::Command {
            program: format!("{} -D {}", bins.initdb.display(), data.display()),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )
            .trim()
            .to_owned(),
        });
    }
    Ok(())
}

/// Copies the template's data folder to `dest` (which must not exist), keeping modes
/// and owners, and makes sure `run_as` owns the copy.
pub(crate) fn copy_to(
    template_data: &Path,
    dest: &Path,
    run_as: Option<RunAs>,
) -> Result<(), TestkitError> {
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(template_data)
        .arg(dest)
        .output()
        .map_err(|e| TestkitError::io("running cp", e))?;
    if !out.status.success() {
        return Err(TestkitError::Command {
            program: format!("cp -a {} {}", template_data.display(), dest.display()),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    if let Some(who) = run_as
        && !who.owns(dest)
    {
        who.chown_tree(dest)?;
    }
    Ok(())
}
