//! A bounded hand-off between threads that drops the oldest item when full,
//! so a slow consumer never blocks the producer (the camera).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

#[derive(Debug)]
pub struct DropOldest<T> {
    cap: usize,
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> DropOldest<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queue `item`; `Ok` with the item dropped to make room, if any, or
    /// `Err(item)` once the queue is closed.
    pub fn push(&self, item: T) -> Result<Option<T>, T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.closed {
            return Err(item);
        }
        let dropped = if s.items.len() >= self.cap {
            s.items.pop_front()
        } else {
            None
        };
        s.items.push_back(item);
        drop(s);
        self.ready.notify_one();
        Ok(dropped)
    }

    /// The oldest item, waiting for one; `None` once closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// No more items will come; `pop` drains what is queued, then returns `None`.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .items
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drops_the_oldest_when_full() {
        let q = DropOldest::new(2);
        assert_eq!(q.push(1), Ok(None));
        assert_eq!(q.push(2), Ok(None));
        assert_eq!(q.push(3), Ok(Some(1)));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(3));
        q.close();
        assert_eq!(q.push(4), Err(4));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn close_wakes_a_waiting_consumer_after_draining() {
        let q = Arc::new(DropOldest::new(4));
        q.push(7).unwrap();
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(x) = q.pop() {
                    got.push(x);
                }
                got
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.close();
        assert_eq!(consumer.join().unwrap(), vec![7]);
    }
}
