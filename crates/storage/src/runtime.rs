//! The process's tokio runtime and the object-store clients on it, made anew in a forked
//! child (whose parent's runtime threads and connection pools are not its own).

use std::sync::{Arc, Mutex};

use object_store::ObjectStore;

use crate::Result;

static RUNTIME: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);

/// For a fork hook (`os.register_at_fork(after_in_child=…)`): forgets the parent's runtime at
/// once, so the child's first storage call makes its own. Calls check the process id anyway
/// (a child forked by other means is covered); this only makes it eager.
pub fn after_fork_in_child() {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_some_and(|(owner, _)| owner != std::process::id()) {
        *slot = None;
    }
}

/// The process's tokio runtime, made on first use — and anew in a child process: a `fork()`ed
/// child (PyTorch's `DataLoader` workers) inherits the parent's runtime without its threads,
/// and would wait on it for ever. The parent's copy is left alone in the child (dropping it
/// would wait for threads that are not there).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    match *slot {
        Some((owner, runtime)) if owner == pid => runtime,
        _ => {
            let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("shardfeed-storage")
                    .enable_all()
                    .build()
                    .expect("a tokio runtime starts"),
            ));
            *slot = Some((pid, runtime));
            runtime
        }
    }
}

/// An `object_store` client, rebuilt on first use in a process other than the one that made
/// it: its connection pool belongs to the parent's runtime, whose threads a forked child
/// does not have.
pub(crate) struct Client {
    pub(crate) made: Mutex<(u32, Arc<dyn ObjectStore>)>,
    pub(crate) make: Box<dyn Fn() -> Result<Arc<dyn ObjectStore>> + Send + Sync>,
}

impl Client {
    pub(crate) fn get(&self) -> Arc<dyn ObjectStore> {
        let pid = std::process::id();
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if made.0 != pid {
            // The same settings built it once already; if they no longer build (the
            // environment changed in the child), the parent's client is the best there is.
            if let Ok(store) = (self.make)() {
                // Forgotten, not dropped: its pool's connections are the parent's.
                std::mem::forget(std::mem::replace(&mut made.1, store));
            }
            made.0 = pid;
        }
        made.1.clone()
    }
}
