//! Every interleaving loom allows (within its preemption bound) of the cross-thread
//! protocols: remote frees against the owner collecting, the page going full, the owner
//! exiting, and another heap adopting the page. Each test ends with every freed block
//! found exactly once, and no block stranded where no one will look.

use alloc_core::protocol::thread_free::{DELAY_NEVER, DELAY_NO, DELAY_USE};
use loom::sync::Arc;
use loom::thread;
use loom_models::{assert_each_once, check, Model};

/// Remote threads free `blocks[t]` each while heap 1 owns the page; the owner collects
/// `collects` times meanwhile, then once more after they are done.
fn frees_while_owner_collects(blocks: &'static [&'static [usize]], collects: usize) {
    check(move || {
        let m = Arc::new(Model::new(1, DELAY_NO));
        let freers: Vec<_> = blocks
            .iter()
            .map(|&mine| {
                let m = m.clone();
                thread::spawn(move || mine.iter().for_each(|&i| m.remote_free(i)))
            })
            .collect();
        let mut got = Vec::new();
        for _ in 0..collects {
            m.collect(&mut got);
        }
        freers.into_iter().for_each(|t| t.join().unwrap());
        m.collect(&mut got);
        assert_each_once(got, &blocks.concat());
        assert_eq!(m.state(), DELAY_NO);
    });
}

#[test]
fn two_threads_free_two_blocks_each_while_owner_collects() {
    frees_while_owner_collects(&[&[0, 1], &[2, 3]], 2);
}

#[test]
fn three_threads_free_into_one_page_while_owner_collects() {
    frees_while_owner_collects(&[&[0], &[1], &[2]], 1);
}

/// The owner finds the page exhausted and moves it to the full queue while two threads
/// free into it. However the frees fall, the owner learns of them: after its next slow path
/// (the delayed list), a page still in the full queue has no block waiting on its stack.
#[test]
fn free_races_page_going_full() {
    check(|| {
        let m = Arc::new(Model::new(1, DELAY_NO));
        let freers: Vec<_> = [0, 1]
            .map(|i| {
                let m = m.clone();
                thread::spawn(move || m.remote_free(i))
            })
            .into_iter()
            .collect();
        let mut got = Vec::new();
        let mut in_full = false;
        m.enter_full(&mut in_full);
        m.process_delayed(1, &mut got, &mut in_full);
        freers.into_iter().for_each(|t| t.join().unwrap());
        // The owner's next slow path.
        m.process_delayed(1, &mut got, &mut in_full);
        if in_full {
            assert!(
                !m.has_blocks(),
                "a block waits on a full page nobody will look at"
            );
            assert_eq!(m.state(), DELAY_USE);
        } else {
            assert_eq!(m.state(), DELAY_NO);
            m.collect(&mut got);
        }
        assert_each_once(got, &[0, 1]);
    });
}

/// The owner's thread exits while two threads free into its full page (one of them may be
/// notifying the owner at that very moment). No free may reach the retired heap, and every
/// block ends up either taken by the exiting owner or on the page's stack for the adopter.
#[test]
fn owner_retires_while_remote_frees_arrive() {
    check(|| {
        let m = Arc::new(Model::new(1, DELAY_USE));
        let freers: Vec<_> = [0, 1]
            .map(|i| {
                let m = m.clone();
                thread::spawn(move || m.remote_free(i))
            })
            .into_iter()
            .collect();
        let mut got = Vec::new();
        m.abandon(1, &mut got);
        freers.into_iter().for_each(|t| t.join().unwrap());
        assert!(
            !m.delayed_pending(1),
            "a block sits on the retired heap's delayed list"
        );
        assert_eq!(m.state(), DELAY_NEVER);
        // Whoever adopts the page later finds the rest.
        m.adopt(2, &mut got);
        assert_each_once(got, &[0, 1]);
    });
}

/// Heap 2 adopts an abandoned page (one block already on its stack) while two threads free
/// into it, then finds it exhausted and moves it to its full queue: notifications must
/// reach heap 2, never the heap that exited.
#[test]
fn adoption_races_remote_frees() {
    check(|| {
        let m = Arc::new(Model::new(0, DELAY_NEVER));
        // SAFETY-free setup: heap 1 has exited.
        m.remote_free(3);
        m.heaps[0].live.with_mut(|p| unsafe { *p = false });
        let freers: Vec<_> = [0, 1]
            .map(|i| {
                let m = m.clone();
                thread::spawn(move || m.remote_free(i))
            })
            .into_iter()
            .collect();
        let mut got = Vec::new();
        let mut in_full = false;
        m.adopt(2, &mut got);
        m.enter_full(&mut in_full);
        m.process_delayed(2, &mut got, &mut in_full);
        freers.into_iter().for_each(|t| t.join().unwrap());
        m.process_delayed(2, &mut got, &mut in_full);
        if in_full {
            assert!(
                !m.has_blocks(),
                "a block waits on a full page nobody will look at"
            );
        } else {
            m.collect(&mut got);
        }
        assert!(!m.delayed_pending(1));
        assert_each_once(got, &[0, 1, 3]);
    });
}
