//! A heap living in a file: build a linked list of records with pagebreak's core over a
//! `FileSource`, keep the head's offset in the file's header, close everything, map the file
//! again (somewhere else in the address space) and walk the list.
//!
//! ```text
//! cargo run -p pagebreak-backend-file --example file_heap [-- RECORDS [PATH]]
//! ```
//!
//! With a PATH the file is kept, and a second run over the same PATH appends to it.

use std::path::PathBuf;

use alloc_core::Allocator;
use backend_file::FileSource;

/// A record as it lies in the file. `next` is a file offset (0 ends the list): the file is
/// mapped at a different address each time, so pointers would not survive.
#[repr(C)]
struct Record {
    next: u64,
    id: u64,
    len: u64,
    // followed by `len` bytes of text
}

fn text(id: u64) -> String {
    format!("record {id}: {}", "pagebreak ".repeat((id % 13) as usize))
}

/// Walk the list from the root; returns (records, bytes of text), checking every record.
fn walk(source: &FileSource) -> (u64, u64) {
    let (mut count, mut bytes) = (0, 0);
    let mut offset = source.root();
    while offset != 0 {
        let p = source.ptr_at(offset).expect("offset outside the file");
        // SAFETY: every offset in the list was written by `push` below: a Record followed by
        // its text, inside the file, which stays mapped while `source` lives.
        let (record, body) = unsafe {
            let record = &*p.cast::<Record>();
            let body = std::slice::from_raw_parts(p.add(size_of::<Record>()), record.len as usize);
            (record, body)
        };
        assert_eq!(
            body,
            text(record.id).as_bytes(),
            "record {} damaged",
            record.id
        );
        count += 1;
        bytes += record.len;
        offset = record.next;
    }
    (count, bytes)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map_or(100_000, |s| s.parse().expect("RECORDS"));
    let keep = args.next().map(PathBuf::from);
    let path = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("pagebreak-file-heap-{}.heap", std::process::id()))
    });

    // 1. Create the file (or append to a kept one) and fill it.
    let source = match &keep {
        Some(p) if p.exists() => FileSource::open(p)?,
        _ => FileSource::create(&path, 1 << 30)?,
    };
    let already = walk(&source).0;
    {
        // The allocator borrows the source: it cannot outlive the mapping.
        let alloc = Allocator::new(&source);
        let heap = alloc.new_heap();
        assert!(!heap.is_null());
        let mut head = source.root();
        for id in already..already + records {
            let t = text(id);
            // SAFETY: `heap` is this thread's live heap of `alloc`.
            let p = unsafe { alloc.malloc(heap, size_of::<Record>() + t.len()) };
            assert!(!p.is_null(), "the file is full");
            // SAFETY: `p` holds a Record and the text; blocks are 16-byte aligned.
            unsafe {
                p.cast::<Record>().write(Record {
                    next: head,
                    id,
                    len: t.len() as u64,
                });
                p.add(size_of::<Record>())
                    .copy_from_nonoverlapping(t.as_ptr(), t.len());
            }
            head = source.offset_of(p).expect("a block of the file");
        }
        source.set_root(head);
        let stats = alloc.stats();
        println!(
            "wrote {records} records into {}: {} KiB in blocks, {} KiB of the file in use",
            path.display(),
            stats.allocated >> 10,
            stats.reserved >> 10,
        );
        // The allocator's own state (heaps, free lists) stays behind in the file, unused.
    }
    source.flush()?;
    let first_base = source.as_ptr();
    drop(source);

    // 2. Map it again: a fresh mapping, most likely at another address.
    let source = FileSource::open(&path)?;
    let (count, bytes) = walk(&source);
    println!(
        "reopened at {:p} (was {first_base:p}): {count} records, {bytes} bytes of text, all intact",
        source.as_ptr()
    );
    assert_eq!(count, already + records);
    let on_disk = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&path)?.blocks() * 512
    };
    println!(
        "file: {} MiB long, {} KiB on disk (sparse)",
        source.capacity() >> 20,
        on_disk >> 10
    );
    drop(source);
    if keep.is_none() {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}
