//! Raw pointers that the tasks of one parallel pass share: each task writes its own disjoint
//! part of the buffer (or only reads it), and the buffer outlives the pass. Rust cannot see the
//! disjointness, so whoever creates one vouches for it at the `unsafe` use.

/// A buffer that several tasks write, each its own elements.
pub struct SharedMut<T>(pub *mut T);

impl<T> SharedMut<T> {
    /// The pointer. A method, not the field: closures then capture the whole `SharedMut` (which
    /// is `Sync`) rather than the bare pointer field (which is not).
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// A buffer that several tasks only read.
pub struct SharedConst<T>(pub *const T);

impl<T> SharedConst<T> {
    /// The pointer (a method for the same reason as [`SharedMut::get`]).
    #[inline(always)]
    pub fn get(self) -> *const T {
        self.0
    }
}

// Copy without requiring `T: Copy` (a derive would).
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
impl<T> Clone for SharedConst<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedConst<T> {}

// SAFETY: the tasks sharing one write disjoint elements (the creator's promise) and the buffer
// outlives them.
unsafe impl<T> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedMut<T> {}
// SAFETY: only read while shared.
unsafe impl<T> Send for SharedConst<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedConst<T> {}
