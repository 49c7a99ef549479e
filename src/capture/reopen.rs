//! [`Reopening`]: keeps a source that can stall or vanish (a USB camera) alive by reopening it.
//!
//! On any error from the inner source the wrapper drops it (releasing the device so the kernel
//! can re-enumerate it), waits, and opens it again, with capped exponential backoff between
//! attempts. The backoff only resets after a frame arrives, so a camera that opens fine but
//! never delivers does not spin. Stalls reach the wrapper as errors: the V4L2 source turns a
//! dequeue timeout into [`CaptureError::Stall`].

use std::time::Duration;

use image::RgbImage;

use super::{open, CaptureError, CaptureOptions, Source, SourceSpec};

/// Delays between reopen attempts: `initial`, doubling per failed attempt, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Wait before reopen attempt number `attempt` (0-based) since the last good frame.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How the wrapper waits; injectable so tests run without real delays.
pub trait Sleep: Send {
    fn sleep(&mut self, duration: Duration);
}

/// Waits with `std::thread::sleep`.
pub struct ThreadSleep;

impl Sleep for ThreadSleep {
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

type Opener = Box<dyn FnMut() -> Result<Box<dyn Source>, CaptureError> + Send>;

/// A source that reopens its inner source after errors; see the module documentation.
pub struct Reopening {
    opener: Opener,
    label: String,
    inner: Option<Box<dyn Source>>,
    backoff: Backoff,
    sleeper: Box<dyn Sleep>,
    /// Reopen attempts since the last good frame; indexes the backoff.
    attempts: u32,
    reopens: u64,
    fps: Option<f32>,
}

impl Reopening {
    /// Opens `spec` now and reopens it whenever it fails later. The first open is not retried:
    /// a wrong path should stop the daemon at start, where the error is visible.
    pub fn open(spec: SourceSpec, opts: CaptureOptions) -> Result<Self, CaptureError> {
        let label = spec.to_string();
        let opener = Box::new(move || open(&spec, &opts));
        Self::with_opener(label, opener, Backoff::default(), Box::new(ThreadSleep))
    }

    /// As [`Reopening::open`] with any opener, backoff and way of waiting.
    pub fn with_opener(
        label: String,
        mut opener: Opener,
        backoff: Backoff,
        sleeper: Box<dyn Sleep>,
    ) -> Result<Self, CaptureError> {
        let inner = opener()?;
        Ok(Reopening {
            fps: inner.native_fps(),
            inner: Some(inner),
            opener,
            label,
            backoff,
            sleeper,
            attempts: 0,
            reopens: 0,
        })
    }

    /// Successful reopens since the wrapper was created.
    pub fn reopens(&self) -> u64 {
        self.reopens
    }

    /// Waits out the backoff and tries once to open the source again.
    fn try_reopen(&mut self) {
        let delay = self.backoff.delay(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        self.sleeper.sleep(delay);
        match (self.opener)() {
            Ok(source) => {
                self.reopens += 1;
                self.fps = source.native_fps();
                log::warn!(
                    "capture {}: reopened as {} (reopen #{})",
                    self.label,
                    source.describe(),
                    self.reopens
                );
                self.inner = Some(source);
            }
            Err(e) => log::warn!(
                "capture {}: reopen failed: {e}; next try in {:?}",
                self.label,
                self.backoff.delay(self.attempts)
            ),
        }
    }
}

impl Source for Reopening {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        loop {
            let Some(inner) = self.inner.as_mut() else {
                self.try_reopen();
                continue;
            };
            match inner.next_frame() {
                Ok(Some(frame)) => {
                    self.attempts = 0;
                    return Ok(Some(frame));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    log::warn!(
                        "capture {}: {e}; reopening in {:?}",
                        self.label,
                        self.backoff.delay(self.attempts)
                    );
                    // Dropped before waiting, so the device is free while we wait.
                    self.inner = None;
                }
            }
        }
    }

    fn describe(&self) -> String {
        match &self.inner {
            Some(inner) => inner.describe(),
            None => format!("{} (reopening)", self.label),
        }
    }

    fn native_fps(&self) -> Option<f32> {
        self.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// One scripted step of a fake source.
    #[derive(Clone)]
    enum Step {
        Frame(u8),
        Fail,
        End,
    }

    struct Fake {
        script: VecDeque<Step>,
    }

    impl Source for Fake {
        fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
            match self.script.pop_front().unwrap_or(Step::Fail) {
                Step::Frame(v) => Ok(Some(RgbImage::from_pixel(1, 1, image::Rgb([v; 3])))),
                Step::Fail => Err(CaptureError::Stall {
                    device: "/dev/fake".into(),
                    timeout: Duration::from_secs(5),
                }),
                Step::End => Ok(None),
            }
        }
        fn describe(&self) -> String {
            "fake".into()
        }
        fn native_fps(&self) -> Option<f32> {
            Some(30.0)
        }
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Duration>>>);

    impl Sleep for Recorder {
        fn sleep(&mut self, d: Duration) {
            self.0.lock().unwrap().push(d);
        }
    }

    impl Recorder {
        fn take_ms(&self) -> Vec<u128> {
            self.0
                .lock()
                .unwrap()
                .drain(..)
                .map(|d| d.as_millis())
                .collect()
        }
    }

    /// Each open consumes one entry: `None` fails to open, `Some(script)` opens a fake.
    fn wrapper(opens: Vec<Option<Vec<Step>>>) -> (Reopening, Recorder) {
        let mut opens = VecDeque::from(opens);
        let opener = Box::new(move || match opens.pop_front().flatten() {
            Some(script) => Ok(Box::new(Fake {
                script: script.into(),
            }) as Box<dyn Source>),
            None => Err(CaptureError::NoImages {
                dir: "/gone".into(),
            }),
        });
        let rec = Recorder::default();
        let src = Reopening::with_opener(
            "fake".into(),
            opener,
            Backoff::default(),
            Box::new(rec.clone()),
        )
        .unwrap();
        (src, rec)
    }

    fn value(frame: Option<RgbImage>) -> u8 {
        frame.unwrap().get_pixel(0, 0).0[0]
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        let ms: Vec<u128> = (0..8).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn reopens_after_failures_with_growing_delays_and_resets_after_a_frame() {
        let (mut src, rec) = wrapper(vec![
            Some(vec![Step::Frame(1), Step::Fail]),
            None,
            None,
            None,
            Some(vec![Step::Frame(2), Step::Fail]),
            Some(vec![Step::Frame(3)]),
        ]);
        assert_eq!(value(src.next_frame().unwrap()), 1);
        assert_eq!(src.reopens(), 0);
        // Fail, three failed reopens, then a good one.
        assert_eq!(value(src.next_frame().unwrap()), 2);
        assert_eq!(rec.take_ms(), [250, 500, 1000, 2000]);
        assert_eq!(src.reopens(), 1);
        // The frame reset the backoff: the next failure waits the initial delay again.
        assert_eq!(value(src.next_frame().unwrap()), 3);
        assert_eq!(rec.take_ms(), [250]);
        assert_eq!(src.reopens(), 2);
        assert_eq!(src.native_fps(), Some(30.0));
        assert_eq!(src.describe(), "fake");
    }

    #[test]
    fn a_source_that_opens_but_never_delivers_still_backs_off() {
        let (mut src, rec) = wrapper(vec![
            Some(vec![Step::Fail]),
            Some(vec![Step::Fail]),
            Some(vec![Step::Fail]),
            Some(vec![Step::Frame(9)]),
        ]);
        assert_eq!(value(src.next_frame().unwrap()), 9);
        assert_eq!(rec.take_ms(), [250, 500, 1000]);
        assert_eq!(src.reopens(), 3);
    }

    #[test]
    fn an_ended_source_ends_the_wrapper_without_reopening() {
        let (mut src, rec) = wrapper(vec![Some(vec![Step::End])]);
        assert!(src.next_frame().unwrap().is_none());
        assert!(rec.take_ms().is_empty());
        assert_eq!(src.reopens(), 0);
    }

    #[test]
    fn the_first_open_is_not_retried() {
        let opener = Box::new(|| {
            Err(CaptureError::NoImages {
                dir: "/nowhere".into(),
            })
        });
        let res = Reopening::with_opener(
            "x".into(),
            opener,
            Backoff::default(),
            Box::new(Recorder::default()),
        );
        assert!(matches!(res, Err(CaptureError::NoImages { .. })));
    }

    #[test]
    fn the_wrapper_is_a_send_source() {
        fn assert_send<T: Send>() {}
        assert_send::<Reopening>();
        let mut src: Box<dyn Source> =
            Box::new(Reopening::open(SourceSpec::TestScene, CaptureOptions::default()).unwrap());
        assert_eq!(src.next_frame().unwrap().unwrap().dimensions(), (384, 288));
    }
}
