//! The small (`no_std`) wasm build's runtime: a size-class allocator and an aborting panic handler.
//!
//! wasm32 in the browser is single-threaded, so plain cells are enough. Every block is a power of two
//! (8 B up); freed blocks go on their class's free list and are reused as-is (no coalescing), new ones
//! are cut from pages taken with `memory.grow`. That is a few hundred bytes of wasm instead of
//! dlmalloc's ~7 KB, at the price of up to 2x slack per block, which a bounded queue can afford.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::{Cell, UnsafeCell};
use core::ptr::null_mut;

const PAGE: usize = 65536;
/// Blocks are aligned to their size up to this; larger alignments are refused.
const MAX_ALIGN: usize = 16;

struct Alloc {
    free: UnsafeCell<[*mut u8; 32]>,
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: wasm32-unknown-unknown without the atomics feature has exactly one thread.
unsafe impl Sync for Alloc {}

#[global_allocator]
static ALLOC: Alloc = Alloc {
    free: UnsafeCell::new([null_mut(); 32]),
    next: Cell::new(0),
    end: Cell::new(0),
};

/// The size class (log2 of the block size) of a layout.
fn class(l: &Layout) -> usize {
    let n = l.size().max(l.align()).max(8);
    (usize::BITS - (n - 1).leading_zeros()) as usize
}

unsafe impl GlobalAlloc for Alloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.align() > MAX_ALIGN {
            wasm32::unreachable();
        }
        let k = class(&l);
        // SAFETY: single-threaded (see above); no reference to `free` outlives this call.
        let Some(head) = (unsafe { &mut *self.free.get() }).get_mut(k) else {
            wasm32::unreachable()
        };
        if !head.is_null() {
            let p = *head;
            // SAFETY: a freed block of class k holds the next free block's address.
            *head = unsafe { *p.cast::<*mut u8>() };
            return p;
        }
        let size = 1usize << k;
        let align = size.min(MAX_ALIGN);
        loop {
            let start = (self.next.get() + align - 1) & !(align - 1);
            if start != 0 && start + size <= self.end.get() {
                self.next.set(start + size);
                return start as *mut u8;
            }
            let pages = size.div_ceil(PAGE) + 1;
            let old = wasm32::memory_grow(0, pages);
            if old == usize::MAX {
                // Out of memory: trap here rather than return null, so that no caller keeps the
                // alloc-error path (its message formatting would pull `core::fmt` in).
                wasm32::unreachable();
            }
            if old * PAGE != self.end.get() {
                self.next.set(old * PAGE);
            }
            self.end.set((old + pages) * PAGE);
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: single-threaded; `p` is a block of class k we handed out, big enough for a pointer.
        if let Some(head) = (unsafe { &mut *self.free.get() }).get_mut(class(&l)) {
            unsafe { *p.cast::<*mut u8>() = *head };
            *head = p;
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout for `new_size`.
        let nl = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if class(&nl) == class(&l) {
            return p;
        }
        // SAFETY: as GlobalAlloc::realloc's default: copy the smaller size, free the old block.
        unsafe {
            let q = self.alloc(nl);
            if !q.is_null() {
                core::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
            q
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    wasm32::unreachable()
}
