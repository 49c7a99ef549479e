//! A user-space link emulator: a TCP proxy whose upstream direction is a
//! bottleneck with a scheduled bandwidth, a bounded buffer and added delay.
//!
//! This kernel has no netem, so the tests and `fchm bench rate` put this
//! between the daemon and the broker. Upstream bytes are serialised at the
//! current rate (a drop-tail router queue of `buffer_bytes`; when it is full
//! the proxy stops reading and TCP pushes back on the sender), then held for
//! the one-way delay; downstream bytes (PUBACKs) are only delayed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One step of the schedule: `kbps` for `secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub kbps: f64,
    pub secs: f64,
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub steps: Vec<Step>,
    /// One-way delay added in each direction.
    pub delay: Duration,
    /// Router queue in front of the bottleneck.
    pub buffer_bytes: usize,
}

impl LinkConfig {
    /// Capacity at `t` after the start; the last step holds forever.
    pub fn kbps_at(&self, t: Duration) -> f64 {
        let mut end = 0.0;
        for s in &self.steps {
            end += s.secs;
            if t.as_secs_f64() < end {
                return s.kbps;
            }
        }
        self.steps.last().map_or(f64::INFINITY, |s| s.kbps)
    }
}

/// Bytes that crossed the bottleneck, in 100 ms bins from the start.
#[derive(Debug, Default)]
pub struct Meter {
    bins: Mutex<Vec<u64>>,
}

pub const BIN: Duration = Duration::from_millis(100);

impl Meter {
    fn add(&self, t: Duration, bytes: usize) {
        let i = (t.as_millis() / BIN.as_millis()) as usize;
        let mut b = self.bins.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() <= i {
            b.resize(i + 1, 0);
        }
        b[i] += bytes as u64;
    }

    /// Bytes per [`BIN`] from the start.
    pub fn bins(&self) -> Vec<u64> {
        self.bins.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Mean kbit/s delivered over [from, to).
    pub fn kbps(&self, from: Duration, to: Duration) -> f64 {
        let b = self.bins.lock().unwrap_or_else(|p| p.into_inner());
        let (i, j) = (
            (from.as_millis() / BIN.as_millis()) as usize,
            (to.as_millis() / BIN.as_millis()) as usize,
        );
        let bytes: u64 = b.iter().skip(i).take(j.saturating_sub(i)).sum();
        let secs = (j.saturating_sub(i)) as f64 * BIN.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            bytes as f64 * 8.0 / 1e3 / secs
        }
    }
}

/// A running emulator; the schedule's clock starts at `start`.
#[derive(Debug, Clone)]
pub struct Link {
    pub addr: SocketAddr,
    start: Arc<Mutex<Instant>>,
    pub meter: Arc<Meter>,
    pub config: Arc<LinkConfig>,
}

impl Link {
    /// Start the schedule (and the meter's bins) again from `at`.
    pub fn restart_clock(&self, at: Instant) {
        *self.start.lock().unwrap_or_else(|p| p.into_inner()) = at;
        self.meter
            .bins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn elapsed_at(&self, t: Instant) -> Duration {
        t.saturating_duration_since(*self.start.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Listen on `listen` and forward every connection to `upstream`.
pub async fn spawn(
    listen: SocketAddr,
    upstream: SocketAddr,
    config: LinkConfig,
) -> std::io::Result<Link> {
    let listener = TcpListener::bind(listen).await?;
    let link = Link {
        addr: listener.local_addr()?,
        start: Arc::new(Mutex::new(Instant::now())),
        meter: Arc::default(),
        config: Arc::new(config),
    };
    let l = link.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let l = l.clone();
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pipe(cr, sw, l.clone(), true));
                    tokio::spawn(pipe(sr, cw, l, false));
                }
            });
        }
    });
    Ok(link)
}

const CHUNK: usize = 4096;

/// One direction: reader → (bottleneck if `shaped`) → delay → writer.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    shaped: bool,
) {
    let slots = (link.config.buffer_bytes / CHUNK).max(1);
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(slots);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // A full queue blocks here: the router's buffer is full.
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (dtx, mut drx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let delay = link.config.delay;
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = drx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if w.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    // Serialisation at the scheduled rate, on the bottleneck's own clock: a
    // chunk starts when it arrived or when the one before it has left,
    // whichever is later. Not when this task wakes up: the timer fires up to
    // a millisecond late, and counting from the wake-up would add that to
    // every chunk (a 4 KiB chunk takes 8 ms at 4 Mbit/s: the link would
    // carry 11 % less than its rate, 1 % less at 400 kbit/s).
    let mut free_at = Instant::now();
    while let Some((arrived, bytes)) = rx.recv().await {
        let left = if shaped {
            let start = free_at.max(arrived);
            let kbps = link.config.kbps_at(link.elapsed_at(start));
            free_at = start + Duration::from_secs_f64(bytes.len() as f64 * 8.0 / (kbps * 1e3));
            tokio::time::sleep_until(free_at.into()).await;
            link.meter.add(link.elapsed_at(free_at), bytes.len());
            free_at
        } else {
            arrived
        };
        if dtx.send((left + delay, bytes)).is_err() {
            break;
        }
    }
    reader.abort();
    drop(dtx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_steps_and_holds_the_last_rate() {
        let c = LinkConfig {
            steps: vec![
                Step {
                    kbps: 2000.0,
                    secs: 1.0,
                },
                Step {
                    kbps: 400.0,
                    secs: 2.0,
                },
            ],
            delay: Duration::ZERO,
            buffer_bytes: 65536,
        };
        assert_eq!(c.kbps_at(Duration::from_millis(500)), 2000.0);
        assert_eq!(c.kbps_at(Duration::from_millis(1500)), 400.0);
        assert_eq!(c.kbps_at(Duration::from_secs(10)), 400.0);
    }

    /// Push `bytes` through a link of `kbps`; what arrived and how long it took.
    async fn carry(kbps: f64, bytes: usize) -> (usize, f64) {
        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = sink.local_addr().unwrap();
        let counter = tokio::spawn(async move {
            let (mut s, _) = sink.accept().await.unwrap();
            let mut total = 0usize;
            let mut buf = vec![0u8; 65536];
            let t = Instant::now();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            (total, t.elapsed().as_secs_f64())
        });
        let link = spawn(
            "127.0.0.1:0".parse().unwrap(),
            upstream,
            LinkConfig {
                steps: vec![Step { kbps, secs: 60.0 }],
                delay: Duration::from_millis(20),
                buffer_bytes: 32 * 1024,
            },
        )
        .await
        .unwrap();
        let mut c = TcpStream::connect(link.addr).await.unwrap();
        c.write_all(&vec![7u8; bytes]).await.unwrap();
        c.shutdown().await.unwrap();
        drop(c);
        counter.await.unwrap()
    }

    #[tokio::test]
    async fn the_bottleneck_delivers_at_its_rate() {
        // 100 kB at 800 kbit/s takes 1 s.
        let (total, secs) = carry(800.0, 100_000).await;
        assert_eq!(total, 100_000);
        assert!(
            (0.9..1.5).contains(&secs),
            "100 kB at 800 kbit/s took {secs:.2} s"
        );
    }

    #[tokio::test]
    async fn a_fast_bottleneck_is_not_slowed_by_the_timer() {
        // 2 MB at 16 Mbit/s takes 1 s: 2 ms a chunk, where the timer's
        // lateness, if it added up, would cost up to half of the rate.
        let (total, secs) = carry(16_000.0, 2_000_000).await;
        assert_eq!(total, 2_000_000);
        assert!(
            (0.9..1.25).contains(&secs),
            "2 MB at 16 Mbit/s took {secs:.2} s"
        );
    }
}
