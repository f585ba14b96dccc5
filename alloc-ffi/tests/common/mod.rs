//! Shared helpers of the stress tests.
#![allow(dead_code)]

use std::alloc::Layout;

pub struct Block {
    pub ptr: usize,
    pub layout: Layout,
    pub seed: u8,
}

pub fn fill(p: *mut u8, len: usize, seed: u8) {
    // Pattern the first and last 256 bytes and a stride between: cheap but catches overlap.
    for i in (0..len.min(256))
        .chain((256..len).step_by(97))
        .chain(len.saturating_sub(256)..len)
    {
        // SAFETY: i < len, within the block.
        unsafe { p.add(i).write(seed ^ (i as u8)) };
    }
}

pub fn verify(p: *mut u8, len: usize, seed: u8) {
    for i in (0..len.min(256))
        .chain((256..len).step_by(97))
        .chain(len.saturating_sub(256)..len)
    {
        // SAFETY: i < len, within the block.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            seed ^ (i as u8),
            "block {p:p} byte {i} of {len} damaged"
        );
    }
}

pub fn size_for(x: u64) -> usize {
    match x % 100 {
        0..=69 => (x >> 8) as usize % 512 + 1,
        70..=94 => (x >> 8) as usize % (64 << 10) + 1,
        _ => (x >> 8) as usize % (1 << 20) + 1,
    }
}

pub fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
