//! Rate control: from link signals to a target bitrate, and from a target to an IVN gain.
//!
//! Two loops, both pure functions of their inputs: every call takes the
//! current [`Instant`](std::time::Instant) from the caller and nothing reads a
//! clock, so the whole thing can be driven by a simulated link in tests
//! (`tests/rate_sim.rs`).
//!
//! # Link → target bitrate ([`Controller`])
//!
//! The controller follows Google Congestion Control (GCC), *"A Google
//! Congestion Control Algorithm for Real-Time Communication"*, Holmer, Lundin,
//! Carlucci, De Cicco, Mascolo, draft-ietf-rmcat-gcc-02: a delay-based
//! over-use detector driving an AIMD controller. GCC reads per-packet receive
//! times of RTP; the only feedback here is the MQTT QoS1 PUBACK, one per
//! frame, so the pieces are re-cast as follows.
//!
//! **Delay gradient.** The send time of a frame is when it was written to the
//! socket, its arrival time when its PUBACK came back; the ack path adds the
//! return delay, but a queue building on the uplink still widens the gap
//! between the two. Frames written within 5 ms of each other form one group (a
//! burst, e.g. a spool replay). For each new group, `d = (arrival gap) - (send
//! gap)` against the previous group is one sample: positive while a queue
//! grows, negative while it drains. The sample is taken at the group's first
//! ack rather than when the group closes, which at camera frame rates would
//! cost a whole frame interval.
//!
//! **Trendline.** The running sum of `d` (the queueing delay relative to the
//! first sample) is smoothed exponentially and a least-squares line is fitted
//! through the recent (arrival, smoothed delay) points. The slope — ms of
//! queue gained per ms — times the number of samples seen (at most 60) times 4
//! is GCC's "modified trend" `m`. GCC's constants are per group, and a group
//! arrives every few ms; ours arrive once per frame (33–250 ms). Used per
//! sample, its smoothing and 20-point window would span seconds and report a
//! queue long after it drained. So the smoothing keeps 0.9 per 33 ms of
//! arrival time (GCC's value at 30 samples a second) and the window holds at
//! most 20 points no older than one second (at least 5).
//!
//! **Frames are not packets.** Each PUBACK waits for its own frame's last bit,
//! so frames that grow (as during a ramp) delay their acks with no queue at
//! all; GCC's pacer keeps groups a similar size and never sees this. A second
//! trendline fits the delay that the size changes alone explain,
//! `Δbits / rate` with `rate = max(goodput, target)`, and its positive part is
//! taken off a positive `m`. Below the link's capacity that rate is too low,
//! so the correction over-explains (no false over-use); above it, it
//! under-explains (a real queue still shows). It never turns `m` negative.
//!
//! **Over-use detection.** `m` is compared with an adaptive threshold `γ`
//! (12.5 ms at first, kept within 6..600 ms). Over-use needs `m > γ` for at
//! least 10 ms of send time and two samples while `m` is not falling; under-use
//! is `m < -γ`; anything else is normal. `γ` then moves toward `|m|` — up with
//! GCC's `K_u`, down with its much smaller `K_d` — so a path with noisy but
//! steady delay does not trigger endless over-use, while trends more than
//! 15 ms above `γ` are outliers that do not move it. One sample per frame
//! would let `K_u` carry `γ` onto a steady over-use trend in one step and hide
//! it, so each step is capped at a tenth of the distance. Under-use while the
//! RTT sits at its floor (within 25 % or 10 ms of the 10 s minimum) is
//! treated as normal: no queue is draining, the frames are just crossing a
//! link that got faster.
//!
//! **Latency bound.** GCC has no hard bound; a camera uplink needs one. Three
//! more over-use signals: more bytes in flight than the target carries in
//! `latency_bound` (plus the frame just written), an unacked frame older than
//! `latency_bound`, or a smoothed *and* latest RTT beyond it. While bytes in
//! flight exceed the allowance, the reported target is lowered further by the
//! excess spread over one bound (down to `min_kbps`), so new frames are skipped
//! until the queue drains; the AIMD rate underneath is left alone, so sending
//! resumes at it afterwards.
//!
//! **AIMD.** Over-use sets the target to `min(target, 0.85 · goodput)`, the
//! goodput being the acked bits of about the last second, at most once per RTT
//! (100–500 ms). The delay verdict latches while its trendline still holds the
//! past; once answered, a verdict is not answered again until the detector
//! declares over-use anew — otherwise each cut would be measured against a
//! goodput that only reflects the previous cut, and the rate would spiral
//! down. Under-use holds. Normal increases, in one of three ways, depending on
//! a learnt link capacity (the average goodput at decreases, with its relative
//! deviation):
//!
//! * below the capacity (within three deviations): additive, 8 % of the
//!   capacity per second — GCC adds half a packet per response time, and a
//!   whole frame as the packet would be far too coarse;
//! * above it: GCC's multiplicative 8 %/s, but leading the goodput by at most
//!   20 %, so an unchanged link pushes back within a second;
//! * no capacity known, or the goodput has exceeded it by three deviations
//!   (the link got faster; the estimate is dropped): multiplicative from
//!   8 %/s, doubling every half second up to 100 %/s while nothing pushes
//!   back — and starting two doublings in when the goodput just showed a
//!   faster link. This takes the place of WebRTC's probing, which needs
//!   padding traffic the MQTT uplink does not have.
//!
//! **Proven speed.** Every bit of an acked frame crossed the bottleneck
//! between the frame's hand-over to the MQTT client and its PUBACK, so the
//! link carries at least its bits over that time, whatever the propagation
//! delay or queue. (The hand-over, not rumqttc's `Outgoing::Publish`, which
//! comes only once the whole packet is in the socket: on a slow link, after
//! much of it has crossed.) The largest such bound of the last two seconds
//! (frames handed over since the last decrease only) is a floor under the
//! link's capacity. While the rate may increase, the target is lifted to
//! 90 % of it at once, but no higher than twice the goodput: one frame
//! proves only what its burst got through, and a shaper with a large bucket
//! (LTE, cable) passes bursts far above the rate it sustains. This finds a
//! link that got much faster in a few frames: camera frames are bursts, so
//! each one measures the link the way a WebRTC probe cluster would. Once a
//! floor is known, the accelerating ramp leads it (or the goodput) by at
//! most 20 %: at a few frames per second the delay shows an overshoot a
//! second late.
//!
//! **Link rate.** A FIFO bottleneck of rate `C` behind a fixed delay `P`
//! acks a frame either `bits / C + P` after its hand-over, if it found the
//! link idle, or `bits / C` after the previous frame's PUBACK, if it queued
//! behind it. Both read `C` directly (`link_rate.rs`):
//!
//! * *busy rate*: a frame handed over more than `P` before the previous
//!   frame's PUBACK waited behind that frame, so the gap between the two
//!   PUBACKs is the time the link took to carry it, read the way a receiver
//!   reads back-to-back packets. Over the latest second of such gaps (none
//!   older than 10 s).
//! * *crossed speed*: a least-squares line through the latest idle
//!   crossings (frames handed over after the previous PUBACK; their sizes
//!   differ, in a ramp or by the scene's own variation) has `P` as its
//!   intercept. It counts only if every crossing lies on it (within 10 % of
//!   its serialisation time, +2 ms) and the sizes span a lever of at least
//!   10 ms of serialisation; older crossings off the line, from before a
//!   change of speed, are left out. The latest crossings' bits (up to
//!   250 ms of serialisation, at least 100 ms, none older than 2 s) over
//!   their times less `P` are the link's rate while no queue exists. A
//!   decrease forgets the crossings: a line through two links fits neither.
//!   Until a fit exists, the smallest RTT stands in for `P` as the busy
//!   margin. At the start of a stream that RTT is mostly the first frames'
//!   own serialisation (250 ms where `P` was 40 ms), and a queue went
//!   unseen until it had grown that long.
//!
//! The fresher of the two readings is the *link rate*. It holds the
//! target: a target above it only queues, and at a few frames per second
//! the delay shows that a second late, which let the probe overshoot by
//! 20 % after every rise and kept the rate out of band for seconds. A
//! proven speed above it means the link got faster since, and it no longer
//! holds. While the rate may increase, it lifts the target to 90 % of it
//! at once, as a proven speed does: the proven speed reads low by the
//! delay's share, and at 10 fps, with frames sized for the old link, stays
//! below it after a rise. A decrease cuts to 0.85 times the lower of the
//! goodput and the link rate: the goodput averages a second or more of
//! acks, some from before a link got slower.
//!
//! Increases, lifts included, never take the target past twice the goodput
//! (+10 kbit/s) once there is one; the target stays within
//! `min_kbps..=max_kbps`, and after a disconnect restarts from
//! `min(start_kbps, target / 2)` with all delay state forgotten.
//!
//! # Target → gain ([`Planner`], [`RateModel`])
//!
//! * The **rate model** maps bits per frame to gain with the bundle's rate
//!   table, interpolated linearly in log(gain)/log(bits). A scene rarely codes
//!   like the calibration set, so the model keeps a multiplicative correction
//!   (an average of log(actual / predicted)): a plain mean over the first
//!   frames, then an exponential average over about 20 frames; three frames in
//!   a row that miss it by more than 35 % in the same direction are a scene
//!   change and restart it from those three.
//! * The **planner** turns the target into a per-frame budget `target / fps`
//!   and picks the largest gain predicted to fit half the hysteresis below it
//!   (so the model's noise does not push it over on the next frame). The gain
//!   goes down at once when the current gain is predicted over budget or the
//!   ideal is lower by more than the hysteresis (10 %); it goes up only when
//!   the ideal has been higher by more than the hysteresis for 300 ms (at
//!   least one frame).
//! * A **token bucket** refilled at the target rate pays for every frame,
//!   reserved at its predicted size when planned and settled at its actual
//!   size when observed. Skipped frames bank their budget (up to two frames'
//!   worth, or 1.5 frames at `gain_min`), oversized frames are paid back, and
//!   the long run stays within the target. A frame the bucket cannot pay for
//!   at the current gain is coded at the largest gain it can pay for, or
//!   skipped if that is not even `gain_min`.
//! * A **second layer** (fchmd's aux frames) shares the budget without
//!   teaching the model: [`Planner::charge`] books its bits as a debt that
//!   each refill repays with at most the layer's share
//!   ([`Planner::set_aux_share`]), so the machine layer always gets at least
//!   `1 - share` of the target however large the aux frames. While the aux
//!   layer goes with every frame ([`Planner::set_aux_streaming`]) the machine
//!   gain is also steered to `(1 - share) × target`, so it fits beside it
//!   instead of being squeezed into skips.

mod aimd;
mod bucket;
pub mod controller;
mod link_rate;
mod meter;
pub mod model;
mod overuse;
pub mod planner;
mod trendline;

pub use controller::{Controller, ControllerConfig, Usage};
pub use model::RateModel;
pub use planner::{Decision, Mode, Planner, PlannerConfig, HYSTERESIS};

use thiserror::Error;

/// Why a rate table or a rate configuration was refused.
#[derive(Debug, Error, PartialEq)]
pub enum RateError {
    #[error("rate table is empty")]
    EmptyTable,
    #[error("rate table has {0} point(s); at least 2 are needed to tell how bits grow with gain")]
    TooFewPoints(usize),
    #[error("rate table point {index}: {field} = {value} is not a finite positive number")]
    BadPoint {
        index: usize,
        field: &'static str,
        value: f64,
    },
    #[error("rate table lists gain {gain} twice")]
    DuplicateGain { gain: f32 },
    #[error(
        "rate table is not monotone: gain {gain_hi} gives {bpp_hi} bpp, \
         not more than gain {gain_lo} with {bpp_lo} bpp"
    )]
    NonMonotone {
        gain_lo: f32,
        bpp_lo: f64,
        gain_hi: f32,
        bpp_hi: f64,
    },
    #[error("gain range {min}..{max} is invalid: need 0 < min < max, both finite")]
    GainRange { min: f32, max: f32 },
    #[error("pixels per frame {0} is not a finite positive number")]
    Pixels(f64),
    #[error("rate setting {field}: {problem}")]
    Config {
        field: &'static str,
        problem: String,
    },
}
