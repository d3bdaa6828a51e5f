//! Running the blocking client from wherever the caller is: a plain thread,
//! a worker of tokio's multi-thread runtime, or a current-thread runtime.
//!
//! `postgres::Client` owns a current-thread runtime and calls its `block_on`
//! for every statement, and dropping it drops that runtime: both panic on a
//! thread that is inside a tokio runtime ("Cannot start a runtime from within
//! a runtime"). Every blocking call of this crate goes through
//! [`run_blocking`], and every drop that may do IO checks [`can_block_here`].

use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};

use pgline_core::{DbError, ErrorKind};
use tokio::runtime::{Handle, RuntimeFlavor};

thread_local! {
    /// Set while this thread runs a closure given to [`run_blocking`] inside
    /// `block_in_place`, where blocking (and nested calls) are allowed.
    static MAY_BLOCK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, which blocks, so that it neither panics nor stalls a runtime:
///
/// - outside any runtime (plain threads, the usual case): directly;
/// - on tokio's multi-thread runtime: in `block_in_place`, which hands this
///   worker's other tasks to another worker while `f` blocks;
/// - on a current-thread runtime (where `block_in_place` panics): on a scoped
///   helper thread, joined at once. The runtime's only thread waits for the
///   statement, as it would for any blocking call, but nothing panics.
///
/// Fails only when the helper thread cannot be started.
pub(crate) fn run_blocking<R, F>(f: F) -> Result<R, DbError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    if MAY_BLOCK.get() {
        return Ok(f());
    }
    let Ok(handle) = Handle::try_current() else {
        return Ok(f());
    };
    match handle.runtime_flavor() {
        RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(|| allowed(f))),
        _ => on_scoped_thread(f),
    }
}

/// True when this thread may block and drop a `postgres::Client`: it is not
/// inside a runtime, or it runs a [`run_blocking`] closure. Conservative: a
/// thread that only has a runtime handle (a `spawn_blocking` thread) answers
/// false, and the caller moves the work to a thread of its own.
pub(crate) fn can_block_here() -> bool {
    MAY_BLOCK.get() || Handle::try_current().is_err()
}

/// Moves `value` to a new thread named `name` and runs `work` on it there.
/// When no thread can be started, gives `value` back instead of dropping it
/// here (dropping it here is what the caller wanted to avoid).
pub(crate) fn off_thread<T, W>(name: &str, value: T, work: W) -> Result<(), T>
where
    T: Send + 'static,
    W: FnOnce(T) + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Some(value)));
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let value = theirs.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(value) = value {
                work(value);
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(_) => match slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(value) => Err(value),
            None => Ok(()),
        },
    }
}

fn allowed<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            MAY_BLOCK.set(self.0);
        }
    }
    let _restore = Restore(MAY_BLOCK.replace(true));
    f()
}

fn on_scoped_thread<R, F>(f: F) -> Result<R, DbError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    std::thread::scope(|scope| {
        let joined = std::thread::Builder::new()
            .name("pgline-sync-call".to_owned())
            .spawn_scoped(scope, f)
            .map_err(|e| {
                DbError::other(ErrorKind::Rejected, e)
                    .with_context("could not start a thread for a blocking database call")
            })?
            .join();
        match joined {
            Ok(value) => Ok(value),
            // The caller's panic, where the caller would have had it.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_threads_run_directly_and_may_block() {
        assert!(can_block_here());
        let here = std::thread::current().id();
        let ran_on = run_blocking(|| std::thread::current().id()).unwrap();
        assert_eq!(ran_on, here);
    }

    #[test]
    fn a_current_thread_runtime_gets_a_helper_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(!can_block_here());
            let here = std::thread::current().id();
            let (ran_on, inside) =
                run_blocking(|| (std::thread::current().id(), can_block_here())).unwrap();
            assert_ne!(ran_on, here);
            assert!(inside);
        });
    }

    #[test]
    fn a_multi_thread_runtime_blocks_in_place_and_nests() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::spawn(async {
                assert!(!can_block_here());
                let nested = run_blocking(|| {
                    assert!(can_block_here());
                    run_blocking(|| 7).unwrap()
                })
                .unwrap();
                assert_eq!(nested, 7);
                assert!(!can_block_here(), "the flag is restored");
            })
            .await
            .unwrap();
        });
    }

    #[test]
    fn panics_come_back_to_the_caller() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                let _ = run_blocking(|| panic!("inside"));
            })
        }));
        assert!(caught.is_err());
    }

    #[test]
    fn off_thread_runs_the_work_elsewhere() {
        let (tx, rx) = std::sync::mpsc::channel();
        let here = std::thread::current().id();
        off_thread("pgline-test", 5, move |v| {
            let _ = tx.send((v, std::thread::current().id()));
        })
        .unwrap();
        let (v, there) = rx.recv().unwrap();
        assert_eq!(v, 5);
        assert_ne!(there, here);
    }
}
