//! A read-only view of the heap's layout, for pictures of fragmentation (`heapmap`).
//!
//! Views are taken without allocating and without stopping other threads: the walk follows
//! each heap's segment list while its owner may be changing it, so a snapshot of a running
//! multi-threaded program is a best-effort picture (take it at exit, or when the program is
//! quiet). Pages are read with volatile loads and every count is clamped to its page.

use core::ptr::{addr_of, read_volatile};

use crate::segment::{Segment, KIND_LARGE, KIND_MEDIUM, KIND_SMALL, MAX_SLOTS};

/// What one 64 KiB slot (512 KiB for medium segments) of a segment holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlotState {
    /// The segment header.
    #[default]
    Header,
    /// Free, memory still resident (waiting for the purge delay).
    FreeResident,
    /// Free and purged (or never touched).
    FreePurged,
    /// The first slot of a page.
    Page {
        /// Block size of the page's class.
        block_size: u32,
        /// Blocks handed out and not freed by the owner.
        used: u16,
        /// Blocks the page can hold.
        reserved: u16,
        /// Slots the page spans.
        slots: u8,
    },
    /// A further slot of a multi-slot page.
    Continued,
}

/// One segment.
#[derive(Clone, Copy, Debug)]
pub struct SegmentView {
    /// Address of the segment.
    pub addr: usize,
    /// Bytes per slot (64 KiB, or 512 KiB for medium pages).
    pub slot_bytes: usize,
    /// Slots in the segment, the header's included.
    pub slot_count: usize,
    /// Whether the segment is abandoned (its thread exited, nobody adopted it yet).
    pub abandoned: bool,
    /// Each slot.
    pub slots: [SlotState; MAX_SLOTS],
}

impl SegmentView {
    /// Read the segment at `seg`.
    ///
    /// # Safety
    ///
    /// `seg` is a live page segment of the allocator.
    pub(crate) unsafe fn read(seg: *const Segment, abandoned: bool) -> Option<SegmentView> {
        // SAFETY: the caller vouches for the header; volatile reads tolerate a concurrent
        // owner (values may be stale, never out of the struct).
        unsafe {
            let kind = read_volatile(addr_of!((*seg).header.kind));
            if kind != KIND_SMALL && kind != KIND_MEDIUM && kind != KIND_LARGE {
                return None;
            }
            let shift = read_volatile(addr_of!((*seg).header.page_shift)) as usize;
            let count = (read_volatile(addr_of!((*seg).page_count)) as usize).min(MAX_SLOTS);
            let free = read_volatile(addr_of!((*seg).free_slots));
            let dirty = read_volatile(addr_of!((*seg).dirty_slots));
            let mut view = SegmentView {
                addr: seg as usize,
                slot_bytes: 1 << shift,
                slot_count: count,
                abandoned,
                slots: [SlotState::Header; MAX_SLOTS],
            };
            let mut slot = 1;
            while slot < count {
                let bit = 1u64 << slot;
                if free & bit != 0 {
                    view.slots[slot] = if dirty & bit != 0 {
                        SlotState::FreeResident
                    } else {
                        SlotState::FreePurged
                    };
                    slot += 1;
                    continue;
                }
                let page = addr_of!((*seg).pages[slot]);
                let slots =
                    (read_volatile(addr_of!((*page).slots)) as usize).clamp(1, count - slot);
                let reserved = read_volatile(addr_of!((*page).reserved));
                view.slots[slot] = SlotState::Page {
                    block_size: read_volatile(addr_of!((*page).block_size)) as u32,
                    used: read_volatile(addr_of!((*page).used)).min(reserved),
                    reserved,
                    slots: slots as u8,
                };
                for s in slot + 1..slot + slots {
                    view.slots[s] = SlotState::Continued;
                }
                slot += slots;
            }
            Some(view)
        }
    }
}
