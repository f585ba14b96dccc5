//! A heap in a file: data built with the core allocator over a `FileSource` survives closing
//! and reopening the file, a second mapping sees it at another address, freed space goes back
//! to the file system, and the source fails cleanly when the file is full.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use alloc_core::{Allocator, PageSource, SEGMENT_SIZE};
use backend_file::{FileSource, HEADER_SIZE};

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "pagebreak-backend-file-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A list node in the file: links are file offsets (0 ends the list).
#[repr(C)]
struct Node {
    next: u64,
    id: u64,
    /// Offset of a separate payload block of `len` bytes, each `id as u8 ^ index as u8`.
    payload: u64,
    len: u64,
}

fn payload_byte(id: u64, i: usize) -> u8 {
    (id as u8) ^ (i as u8)
}

fn payload_len(id: u64) -> usize {
    match id % 1000 {
        // A few huge blocks (over 1 MiB: spans of their own) among small and medium ones.
        999 => (3 << 20) + 17,
        n => 1 + (n as usize * 61) % 5000,
    }
}

/// Push `ids` onto the list at `source.root()` with a fresh allocator over `source`.
fn append(source: &FileSource, ids: std::ops::Range<u64>) {
    let alloc = Allocator::new(source);
    let heap = alloc.new_heap();
    assert!(!heap.is_null());
    let mut head = source.root();
    for id in ids {
        let len = payload_len(id);
        // SAFETY: `heap` is this thread's live heap of `alloc`; the blocks hold what is written.
        unsafe {
            let data = alloc.malloc(heap, len);
            let node = alloc.malloc(heap, size_of::<Node>()).cast::<Node>();
            assert!(!data.is_null() && !node.is_null());
            for i in 0..len {
                data.add(i).write(payload_byte(id, i));
            }
            node.write(Node {
                next: head,
                id,
                payload: source.offset_of(data).unwrap(),
                len: len as u64,
            });
            head = source.offset_of(node.cast()).unwrap();
        }
    }
    source.set_root(head);
}

/// Walk the list through `source`'s mapping, checking every payload; returns the ids seen.
fn walk(source: &FileSource) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut offset = source.root();
    while offset != 0 {
        let p = source.ptr_at(offset).expect("node inside the file");
        assert_eq!(p as usize % 16, 0);
        // SAFETY: written by `append` as a Node; the file stays mapped while `source` lives.
        let node = unsafe { &*p.cast::<Node>() };
        let data = source
            .ptr_at(node.payload)
            .expect("payload inside the file");
        assert_eq!(node.len as usize, payload_len(node.id));
        // SAFETY: the payload block of `len` bytes written by `append`.
        let bytes = unsafe { std::slice::from_raw_parts(data, node.len as usize) };
        for (i, &b) in bytes.iter().enumerate() {
            assert_eq!(b, payload_byte(node.id, i), "node {} byte {i}", node.id);
        }
        ids.push(node.id);
        offset = node.next;
    }
    ids
}

#[test]
fn a_linked_list_survives_closing_and_reopening() {
    let dir = TempDir::new("reopen");
    let path = dir.file("list.heap");
    let first_high_water;
    {
        let source = FileSource::create(&path, 256 << 20).unwrap();
        append(&source, 0..20_000);
        source.flush().unwrap();
        first_high_water = source.high_water();
        assert!(first_high_water > (60 << 20), "{first_high_water}"); // ~50 MB of payloads
    }

    // Reopen: every byte is back, found through offsets.
    {
        let source = FileSource::open(&path).unwrap();
        assert_eq!(source.high_water(), first_high_water);
        let ids = walk(&source);
        assert_eq!(ids, (0..20_000).rev().collect::<Vec<_>>());

        // A second session appends above the old data and never overwrites it.
        let old_root = source.root();
        append(&source, 20_000..25_000);
        assert!(source.root() >= first_high_water);
        assert_ne!(source.root(), old_root);
    }

    // Both sessions' data are there.
    let source = FileSource::open(&path).unwrap();
    assert_eq!(walk(&source), (0..25_000).rev().collect::<Vec<_>>());
}

#[test]
fn a_second_mapping_sees_the_data_at_another_address() {
    let dir = TempDir::new("share");
    let path = dir.file("shared.heap");
    let writer = FileSource::create(&path, 64 << 20).unwrap();
    append(&writer, 0..2000);
    // No flush: a shared mapping of the same file sees the same page cache, as another
    // process mapping the file would.
    let reader = FileSource::open(&path).unwrap();
    assert_ne!(reader.as_ptr(), writer.as_ptr());
    assert_eq!(reader.root(), writer.root());
    assert_eq!(walk(&reader), (0..2000).rev().collect::<Vec<_>>());
    // A root set through one mapping is read through the other.
    writer.set_root(0);
    assert!(walk(&reader).is_empty());
}

#[test]
fn open_rejects_a_file_that_is_not_a_heap() {
    let dir = TempDir::new("reject");
    let path = dir.file("plain");
    std::fs::write(&path, vec![7u8; 3 * HEADER_SIZE]).unwrap();
    let err = FileSource::open(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    std::fs::write(&path, b"short").unwrap();
    let err = FileSource::open(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(FileSource::open(dir.file("missing")).is_err());
}

fn disk_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn spans_are_aligned_disjoint_and_the_file_is_sparse() {
    let dir = TempDir::new("spans");
    let path = dir.file("spans.heap");
    // 16 GiB of address space and file length, next to nothing on disk.
    let source = FileSource::create(&path, 16 << 30).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 << 30);
    let mut spans = Vec::new();
    for (size, align) in [
        (PAGE, PAGE),
        (SEGMENT_SIZE, SEGMENT_SIZE),
        (3 * SEGMENT_SIZE, SEGMENT_SIZE),
        (64 << 10, PAGE),
        (SEGMENT_SIZE, 4 * SEGMENT_SIZE),
    ] {
        // SAFETY: page-multiple size, power-of-two alignment of at least a page.
        let span = unsafe { source.alloc(size, align) }.unwrap();
        assert_eq!(span.size, size);
        assert_eq!(span.ptr as usize % align, 0);
        let offset = source.offset_of(span.ptr).unwrap() as usize;
        assert!(offset >= HEADER_SIZE && offset + size <= source.capacity());
        assert!(span.zeroed, "fresh file space reads as zero");
        // SAFETY: the span is ours, `size` bytes.
        assert!(unsafe { std::slice::from_raw_parts(span.ptr, size) }
            .iter()
            .all(|&b| b == 0));
        spans.push((offset, size));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "overlapping spans {w:?}");
    }
    assert!(
        disk_bytes(&path) < 1 << 20,
        "{} bytes on disk",
        disk_bytes(&path)
    );
}

const PAGE: usize = alloc_core::PAGE_SIZE;

#[test]
fn purge_punches_a_hole_that_reads_as_zero() {
    let dir = TempDir::new("purge");
    let path = dir.file("purge.heap");
    let source = FileSource::create(&path, 64 << 20).unwrap();
    // SAFETY: valid size and alignment.
    let span = unsafe { source.alloc(SEGMENT_SIZE, SEGMENT_SIZE) }.unwrap();
    // SAFETY: the span is ours.
    unsafe { span.ptr.write_bytes(0xff, SEGMENT_SIZE) };
    source.flush().unwrap();
    let before = disk_bytes(&path);
    assert!(before >= SEGMENT_SIZE as u64);
    // SAFETY: a page-aligned range inside the live span, unused.
    let zeroed = unsafe { source.purge(span.ptr.add(PAGE), SEGMENT_SIZE / 2) };
    // SAFETY: the span is still mapped and ours.
    let bytes = unsafe { std::slice::from_raw_parts(span.ptr, SEGMENT_SIZE) };
    assert_eq!(bytes[0], 0xff);
    assert!(bytes[PAGE + SEGMENT_SIZE / 2..].iter().all(|&b| b == 0xff));
    let purged = &bytes[PAGE..PAGE + SEGMENT_SIZE / 2];
    if zeroed {
        assert!(purged.iter().all(|&b| b == 0), "purge said zero");
        let after = disk_bytes(&path);
        assert!(
            after + (SEGMENT_SIZE / 2) as u64 <= before,
            "disk use {before} -> {after}"
        );
    } else {
        // No hole punching on this file system: MADV_DONTNEED on a shared file mapping
        // keeps the data, as documented.
        eprintln!("note: this file system cannot punch holes");
        assert!(purged.iter().all(|&b| b == 0xff));
    }
    // The purged range stays usable.
    // SAFETY: still ours.
    unsafe { span.ptr.add(PAGE).write_bytes(1, 100) };
    assert_eq!(bytes[PAGE + 99], 1);
}

#[test]
fn zeroed_allocation_after_space_is_given_back_and_reused() {
    let dir = TempDir::new("zero");
    let path = dir.file("zero.heap");
    let source = FileSource::create(&path, 64 << 20).unwrap();
    let alloc = Allocator::new(&source);
    let heap = alloc.new_heap();
    let n = 3 << 20;
    let mut high_water = 0;
    // SAFETY: `heap` is this thread's live heap of `alloc`.
    unsafe {
        for round in 0..4 {
            if round == 1 {
                high_water = source.high_water();
            } else if round > 1 {
                // The same file space again: given back by `trim`, dirty before.
                assert_eq!(source.high_water(), high_water);
            }
            let p = alloc.zalloc(heap, n);
            assert!(!p.is_null());
            let bytes = std::slice::from_raw_parts(p, n);
            assert!(bytes.iter().all(|&b| b == 0), "round {round}: not zeroed");
            p.write_bytes(0xee, n);
            alloc.free(heap, p);
            // Hand the span back to the source; the next zalloc gets recycled file space.
            alloc.trim(heap);
        }
        alloc.retire_heap(heap);
    }
}

#[test]
fn a_full_file_fails_cleanly_and_recovers() {
    let dir = TempDir::new("full");
    let path = dir.file("full.heap");
    let source = FileSource::create(&path, 24 << 20).unwrap();
    let alloc = Allocator::new(&source);
    let heap = alloc.new_heap();
    let mut blocks = Vec::new();
    // SAFETY: `heap` is this thread's live heap of `alloc`; blocks are freed once.
    unsafe {
        loop {
            let p = alloc.malloc(heap, 2 << 20);
            if p.is_null() {
                break;
            }
            p.write_bytes(3, 2 << 20);
            blocks.push(p);
            assert!(blocks.len() < 100, "a 24 MiB file held 200 MiB");
        }
        assert!(
            blocks.len() >= 4,
            "only {} blocks of 2 MiB fit",
            blocks.len()
        );
        for &p in &blocks {
            assert_eq!(*p.add((2 << 20) - 1), 3);
            alloc.free(heap, p);
        }
        let p = alloc.malloc(heap, 2 << 20);
        assert!(!p.is_null(), "freed space is not reused");
        alloc.free(heap, p);
        alloc.retire_heap(heap);
    }
}

#[test]
fn threads_share_one_file_heap() {
    let dir = TempDir::new("threads");
    let path = dir.file("threads.heap");
    let source = FileSource::create(&path, 512 << 20).unwrap();
    let alloc = Allocator::new(&source);
    let offsets: Vec<Vec<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let (alloc, source) = (&alloc, &source);
                s.spawn(move || {
                    let heap = alloc.new_heap();
                    assert!(!heap.is_null());
                    let mut kept = Vec::new();
                    for i in 0..20_000u64 {
                        let size = 8 + (i as usize * 7) % 3000;
                        // SAFETY: `heap` is this thread's live heap.
                        let p = unsafe { alloc.malloc(heap, size) };
                        assert!(!p.is_null());
                        // SAFETY: `size` >= 8 writable bytes, 16-byte aligned.
                        unsafe { p.cast::<u64>().write(t << 32 | i) };
                        if i % 4 == 0 {
                            kept.push(source.offset_of(p).unwrap());
                        } else {
                            // SAFETY: live, freed once.
                            unsafe { alloc.free(heap, p) };
                        }
                    }
                    // SAFETY: this thread's heap, not used again; its blocks stay valid.
                    unsafe { alloc.retire_heap(heap) };
                    kept
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (t, kept) in offsets.iter().enumerate() {
        for (k, &offset) in kept.iter().enumerate() {
            let p = source.ptr_at(offset).unwrap();
            // SAFETY: a live block written above.
            assert_eq!(
                unsafe { p.cast::<u64>().read() },
                (t as u64) << 32 | (4 * k) as u64
            );
        }
    }
}
