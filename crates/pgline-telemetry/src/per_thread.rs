//! The one piece the span queue and the histogram buffers share: finding
//! the calling thread's buffer for an owner, or making and registering one.

use std::sync::{Arc, Mutex, PoisonError};

/// This thread's buffer for the owner `id` among `local` (the thread's
/// buffers, one per owner). When it has none, a new one is registered in
/// `all` (the owner's list of every thread's buffer) and kept in `local`,
/// and the thread first forgets the buffers of owners that are gone: those
/// only `local` still holds (an owner's list keeps the buffer of every
/// live thread).
pub(crate) fn buffer<'a, B: Default>(
    local: &'a mut Vec<(u64, Arc<B>)>,
    id: u64,
    all: &Mutex<Vec<Arc<B>>>,
) -> &'a Arc<B> {
    if let Some(at) = local.iter().position(|(owner, _)| *owner == id) {
        return &local[at].1;
    }
    let buffer = Arc::new(B::default());
    all.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&buffer));
    local.retain(|(_, b)| Arc::strong_count(b) > 1);
    local.push((id, buffer));
    &local[local.len() - 1].1
}
