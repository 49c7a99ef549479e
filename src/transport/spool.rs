//! Crash-safe, bounded on-disk FIFO of frames waiting for the broker.
//!
//! While the MQTT broker is unreachable the daemon [`Spool::push`]es encoded
//! frames (opaque byte records) here. Once the broker is back it
//! [`Spool::peek`]s the oldest ones, publishes them, and [`Spool::consume`]s
//! those the broker acknowledged.
//!
//! # On-disk layout
//!
//! The spool owns one directory:
//!
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: segment files. Their numbers only ever grow,
//!   and the 20 zero-padded digits make names sort like numbers. Records go to
//!   the end of the highest-numbered segment. A new segment starts when the
//!   next record would take the current one past
//!   [`SpoolConfig::segment_bytes`], so a record larger than that gets a
//!   segment to itself. A segment starts with a 24-byte header: magic
//!   `FCHMSEG\0`, format version (u32 LE), its own number (u64 LE), and the
//!   CRC-32 of those fields. Records follow back to back, each framed as
//!   `"REC1" | payload length (u32 LE) | CRC-32 of length and payload | payload`,
//!   which is [`RECORD_OVERHEAD`] bytes of framing.
//! - `head`: 32 bytes (magic `FCHMHEAD`, version, segment number, byte offset,
//!   CRC-32) giving the position of the oldest record not yet consumed.
//!   Everything before it is consumed: earlier segments and the start of the
//!   segment it names. It is replaced atomically: written to `head.tmp`,
//!   fsynced, renamed over `head`, then the directory is fsynced.
//!
//! Segments whose records are all consumed are deleted. The exception is the
//! newest segment, which stays as the append target until it fills up. Other
//! files in the directory are left alone, with a warning at open. A
//! directory must be used by only one [`Spool`] at a time. Nothing locks it.
//!
//! # Byte accounting and the bound
//!
//! Every byte count in this API ([`Spool::bytes`], [`SpoolConfig::max_bytes`],
//! [`Evicted::bytes`], [`Recovery::bytes`]) is a count of *framed* bytes:
//! payload plus [`RECORD_OVERHEAD`] per record, which is exactly what the
//! queued records take on disk. [`Spool::push`] first drops the oldest records
//! until the new one fits under `max_bytes`, then appends it, and reports what
//! it dropped. A record must therefore fit on its own: its payload can be at
//! most `max_bytes - RECORD_OVERHEAD` bytes (and never more than
//! [`MAX_RECORD_BYTES`]). On top of the bound, the directory holds the
//! consumed records at the front of the oldest segment (less than one
//! segment: at most `segment_bytes`, or one oversized record), a 24-byte
//! header per segment, and the 32-byte `head` file. Keep `segment_bytes`
//! well below `max_bytes`, for example 1/16 of it.
//!
//! If the spool already holds more than `max_bytes` at open (for example,
//! because the bound was lowered), `open` keeps everything. The next `push`
//! evicts down to the bound and reports the drop, so nothing goes uncounted.
//!
//! # Durability contract
//!
//! Records are written straight to the kernel with no buffering in user
//! space. The head file is rewritten on every head move, except under
//! [`SyncPolicy::Interval`], which rewrites it when the interval runs out.
//! Killing the process (`kill -9`) therefore loses nothing that a call had
//! returned for (under `Interval`, a kill can re-deliver records consumed
//! since the last sync). Power loss is where the policies differ:
//!
//! - [`SyncPolicy::EveryRecord`]: when `push` returns `Ok`, the record is on
//!   stable storage: the segment is fdatasynced, and a new segment's file and
//!   directory entry are fsynced before any record goes into it. When
//!   `consume` (or an evicting `push`) returns `Ok`, the removal is durable.
//! - [`SyncPolicy::Interval`]: data is fdatasynced, and the head file written
//!   durably, on the first `push` or `consume` after the interval has passed,
//!   on [`Spool::sync`] and when the spool is dropped. Power loss loses at most
//!   the records pushed since the last sync and re-delivers the ones consumed
//!   since then. Nothing syncs while no calls are made, so call `sync` on
//!   shutdown.
//! - [`SyncPolicy::Never`]: only [`Spool::sync`] fsyncs. Power loss may tear
//!   or lose anything written since.
//!
//! Under the syncing policies, a segment's data is durable before the next
//! segment is created. This is why recovery may trust later segments that
//! follow a torn one (see below).
//!
//! After a failed `push`, the record is not in the spool. Any partial bytes
//! are truncated away. If even that fails, the next record starts a fresh
//! segment, so no record is ever appended behind garbage. If the fsync after
//! a write fails, the record stays queued, but a power failure may still lose
//! it. The next push starts a fresh segment.
//!
//! # Delivery semantics: at least once
//!
//! The caller consumes records only after the broker acknowledged them. A
//! crash between the acknowledgement and a durable `consume` re-sends those
//! records after restart (as does a lost or damaged `head` file, which makes
//! every record still on disk pending again). The receiver de-duplicates by
//! the frame sequence number that each record carries inside it.
//!
//! Eviction removes records from the front of the queue, and these may be
//! records the caller has already peeked and is sending. When `push` returns
//! `Evicted { records: k, .. }`, the front moved by `k`. A caller that tracks
//! "n records peeked and in flight" must subtract `k` (saturating) before it
//! calls `consume`, or it would consume records that were never sent. A
//! `push` that fails after it already evicted (for example, the disk is full)
//! carries its eviction counts over into the next successful `push`.
//!
//! # Recovery
//!
//! [`Spool::open`] scans every segment in order and checks every record's
//! framing and CRC. What counts as damage:
//!
//! - An incomplete record (header or payload running past the end of the
//!   file, or an all-zero header such as an unwritten tail after power loss)
//!   is *torn*.
//! - A complete record whose magic, length limit or CRC fails is *corrupt*.
//!
//! Either one ends its segment. The file is truncated just before the bad
//! record. [`Recovery::torn_bytes`] counts every byte cut off this way, and
//! [`Recovery::corrupt_records`] counts the corrupt records that caused a cut
//! (at most one per segment). A segment with an unreadable header is deleted
//! whole, and its length counts as torn bytes. Only a valid header that
//! announces another format version makes `open` fail
//! ([`SpoolError::UnsupportedVersion`]), so that a downgrade cannot destroy
//! data that a newer build wrote.
//!
//! Recovery then goes on with the later segments. A torn tail can only end
//! the segment that was being written when the process or the write failed
//! (a record that rots on the medium later is cut the same way). A
//! later segment was created after that (the append path moves to a fresh
//! segment after a failed write, and the syncing policies make earlier data
//! durable before they create a segment), so its records are intact and
//! newer. Keeping them preserves FIFO order and loses only what was damaged.
//! Under [`SyncPolicy::Never`], power loss may leave gaps. Records that are
//! recovered are still whole and in order.
//!
//! Recovery never panics on anything found in the directory, and a second
//! `open` finds nothing more to repair.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Framing bytes stored with every record. They count toward
/// [`SpoolConfig::max_bytes`].
pub const RECORD_OVERHEAD: u64 = 12;

/// Largest payload of one record, whatever `max_bytes` allows. Recovery also
/// treats a larger length field as corruption instead of trusting it.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

const FORMAT_VERSION: u32 = 1;
const SEGMENT_MAGIC: [u8; 8] = *b"FCHMSEG\0";
const SEGMENT_HEADER_BYTES: u64 = 24;
const RECORD_MAGIC: [u8; 4] = *b"REC1";
const HEAD_MAGIC: [u8; 8] = *b"FCHMHEAD";
const HEAD_BYTES: usize = 32;
const HEAD_FILE: &str = "head";
const HEAD_TMP_FILE: &str = "head.tmp";
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;

/// Where and how the spool keeps its records.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory owned by the spool. It is created if missing.
    pub dir: PathBuf,
    /// Bound on the framed bytes of queued records. The oldest are evicted
    /// past it.
    pub max_bytes: u64,
    /// Size at which the spool starts a new segment file.
    pub segment_bytes: u64,
    /// When data reaches stable storage (see the module's durability contract).
    pub sync: SyncPolicy,
}

/// When the spool fsyncs. See the module's durability contract.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SyncPolicy {
    /// fdatasync after every record and every head move.
    EveryRecord,
    /// fsync on the first push or consume once this much time has passed
    /// since the last sync, and on drop.
    Interval(Duration),
    /// Only on an explicit [`Spool::sync`]. This is for tests and benchmarks.
    Never,
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Records queued after recovery.
    pub records: u64,
    /// Their framed bytes.
    pub bytes: u64,
    /// Bytes cut off segments (torn or corrupt tails, unreadable headers).
    pub torn_bytes: u64,
    /// Complete records that failed their checks and ended a segment.
    pub corrupt_records: u64,
}

/// Oldest records that [`Spool::push`] dropped to stay within the byte bound.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Evicted {
    pub records: u64,
    /// Framed bytes of those records.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool: cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(
        "spool: a record of {len} bytes exceeds the {limit}-byte limit per record \
         (max_bytes minus {RECORD_OVERHEAD} bytes of framing, at most MAX_RECORD_BYTES)"
    )]
    RecordTooLarge { len: usize, limit: u64 },
    #[error("spool: cannot consume {requested} records, only {available} are queued")]
    ConsumeBeyondEnd { requested: usize, available: u64 },
    #[error(
        "spool: {} has format version {found}, this build reads version {FORMAT_VERSION}",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    /// A record that was valid at open or push no longer reads back. `index`
    /// is its position from the front (0 = oldest). `consume` can drop it.
    #[error(
        "spool: record {index} from the front ({} at byte {offset}) changed on disk: {reason}",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        index: u64,
        reason: &'static str,
    },
    #[error("spool: segment numbers exhausted in {}", dir.display())]
    SegmentIdsExhausted { dir: PathBuf },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The queued records of one segment file.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Offset of the first queued record. Bytes before it hold the header
    /// and consumed records.
    start: u64,
    /// Length of the file: where the next record would go.
    end: u64,
    /// Payload lengths of the queued records, oldest first. With them,
    /// eviction and consumption never need to read the disk.
    lens: VecDeque<u32>,
}

impl Segment {
    fn empty(id: u64) -> Segment {
        Segment {
            id,
            start: SEGMENT_HEADER_BYTES,
            end: SEGMENT_HEADER_BYTES,
            lens: VecDeque::new(),
        }
    }

    /// Drops the oldest queued record and returns its framed size.
    fn pop_front(&mut self) -> Option<u64> {
        let framed = framed_len(self.lens.pop_front()?);
        self.start += framed;
        Some(framed)
    }
}

/// How far the `head` file is behind the in-memory front of the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
enum HeadState {
    Durable,
    Written,
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct HeadPos {
    segment: u64,
    offset: u64,
}

/// Bounded FIFO of byte records kept in segment files (see the module docs).
pub struct Spool {
    cfg: SpoolConfig,
    /// Older segments. Each holds at least one queued record.
    sealed: VecDeque<Segment>,
    /// The segment being appended to. It may hold no queued records.
    tail: Segment,
    writer: File,
    /// Read handle kept open across `peek`s of the same segment.
    reader: Option<(u64, File)>,
    /// Consumed segments whose files are still to be deleted.
    doomed: Vec<u64>,
    /// Number for the next segment: above every number ever seen in the
    /// directory. `None` once the numbers have run out.
    next_id: Option<u64>,
    len: u64,
    bytes: u64,
    /// Evictions that no successful `push` has reported yet.
    unreported: Evicted,
    /// The tail may end in garbage, or its durability is in doubt. Do not
    /// append to it again.
    roll_next: bool,
    data_unsynced: bool,
    head_state: HeadState,
    last_sync: Instant,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.cfg.dir)
            .field("len", &self.len)
            .field("bytes", &self.bytes)
            .field("segments", &(self.sealed.len() + 1))
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`. Repairs what a crash left
    /// behind and reports it.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        validate(&cfg)?;
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let durable = cfg.sync != SyncPolicy::Never;
        let listing = list_dir(&dir)?;
        let head = read_head(&dir)?;

        let mut recovery = Recovery::default();
        let mut dir_changed = false;
        let mut kept: Vec<Segment> = Vec::new();
        for &id in &listing.segments {
            let path = segment_path(&dir, id);
            if head.is_some_and(|h| id < h.segment) {
                // Consumed before the crash. Only its deletion was lost.
                remove_file(&path)?;
                dir_changed = true;
                continue;
            }
            match recover_segment(&path, id, head, durable, &mut recovery)? {
                Some(seg) => kept.push(seg),
                None => dir_changed = true,
            }
        }

        // Only the newest segment may be left without queued records: it is
        // the append target. Older empty ones have nothing left to give.
        let newest = kept.pop();
        let mut sealed = VecDeque::new();
        for seg in kept {
            if seg.lens.is_empty() {
                remove_file(&segment_path(&dir, seg.id))?;
                dir_changed = true;
            } else {
                sealed.push_back(seg);
            }
        }
        // Numbers are never reused. A stale `head` that names a deleted segment
        // would otherwise skip into a new file with that number.
        let floor = listing.max_id.max(head.map(|h| h.segment));
        let mut next_id = match floor {
            None => Some(0),
            Some(n) => n.checked_add(1),
        };
        let (writer, tail) = match newest {
            Some(seg) => {
                let path = segment_path(&dir, seg.id);
                let writer = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io_error("open segment", &path))?;
                (writer, seg)
            }
            None => {
                let id =
                    next_id.ok_or_else(|| SpoolError::SegmentIdsExhausted { dir: dir.clone() })?;
                next_id = id.checked_add(1);
                create_segment(&dir, id, durable)?
            }
        };

        let len = sealed
            .iter()
            .chain([&tail])
            .map(|s| s.lens.len() as u64)
            .sum();
        let bytes = sealed
            .iter()
            .chain([&tail])
            .flat_map(|s| s.lens.iter())
            .map(|&l| framed_len(l))
            .sum();
        recovery.records = len;
        recovery.bytes = bytes;

        let mut spool = Spool {
            cfg,
            sealed,
            tail,
            writer,
            reader: None,
            doomed: Vec::new(),
            next_id,
            len,
            bytes,
            unreported: Evicted::default(),
            roll_next: false,
            data_unsynced: false,
            head_state: HeadState::Durable,
            last_sync: Instant::now(),
        };
        if head != Some(spool.head_pos()) {
            spool.write_head(durable)?;
        } else if dir_changed && durable {
            sync_dir(&dir)?;
        }
        Ok((spool, recovery))
    }

    /// Appends `record`. First evicts the oldest records as needed to keep
    /// [`Spool::bytes`] within `max_bytes`, and returns what was evicted.
    pub fn push(&mut self, record: &[u8]) -> Result<Evicted, SpoolError> {
        let limit = self.record_limit();
        let len = u32::try_from(record.len())
            .ok()
            .filter(|&l| u64::from(l) <= limit)
            .ok_or(SpoolError::RecordTooLarge {
                len: record.len(),
                limit,
            })?;
        let framed = framed_len(len);
        if self.evict_to_fit(framed) {
            self.persist_head_move()?;
        }
        if self.must_roll(framed) {
            self.roll()?;
        }
        self.append(record, len)?;
        match self.cfg.sync {
            SyncPolicy::EveryRecord => self.sync_data()?,
            SyncPolicy::Interval(every) => self.sync_if_due(every)?,
            SyncPolicy::Never => {}
        }
        Ok(std::mem::take(&mut self.unreported))
    }

    /// Returns copies of the oldest `n` records (fewer if fewer are queued)
    /// without removing them.
    pub fn peek(&mut self, n: usize) -> Result<Vec<Vec<u8>>, SpoolError> {
        let Spool {
            cfg,
            sealed,
            tail,
            reader,
            ..
        } = self;
        record_positions(sealed, tail)
            .take(n)
            .enumerate()
            .map(|(i, (seg, offset, len))| {
                read_record(reader, &cfg.dir, seg, offset, len, i as u64)
            })
            .collect()
    }

    /// The record at `index` from the front (0 = oldest), or `None` past the
    /// end. Reads only that record, so walking a backlog costs one read per
    /// record rather than [`Spool::peek`]'s re-read of everything before it.
    pub fn nth(&mut self, index: usize) -> Result<Option<Vec<u8>>, SpoolError> {
        let Spool {
            cfg,
            sealed,
            tail,
            reader,
            ..
        } = self;
        record_positions(sealed, tail)
            .nth(index)
            .map(|(seg, offset, len)| read_record(reader, &cfg.dir, seg, offset, len, index as u64))
            .transpose()
    }

    /// Removes the oldest `n` records, durably under [`SyncPolicy::EveryRecord`].
    /// Call it only once they were acknowledged. Asking for more than
    /// [`Spool::len`] is a caller bug: it fails with
    /// [`SpoolError::ConsumeBeyondEnd`] and consumes nothing.
    ///
    /// If the head file cannot be written, the records are already gone from
    /// this `Spool`. The file is retried at the next head move or `sync`. At
    /// worst, a restart re-sends the records.
    pub fn consume(&mut self, n: usize) -> Result<(), SpoolError> {
        if u64::try_from(n).map_or(true, |n| n > self.len) {
            return Err(SpoolError::ConsumeBeyondEnd {
                requested: n,
                available: self.len,
            });
        }
        if n == 0 {
            return Ok(());
        }
        for _ in 0..n {
            self.pop_front();
        }
        self.persist_head_move()?;
        if let SyncPolicy::Interval(every) = self.cfg.sync {
            self.sync_if_due(every)?;
        }
        Ok(())
    }

    /// Number of queued records.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Framed bytes of the queued records (see the module docs). Always at
    /// most `max_bytes` after a successful `push`.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes everything durable now, whatever the policy: the data of the
    /// current segment and the consumption position.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.data_unsynced {
            self.sync_data()?;
        }
        if self.head_state != HeadState::Durable {
            self.write_head(true)?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn record_limit(&self) -> u64 {
        (self.cfg.max_bytes - RECORD_OVERHEAD).min(MAX_RECORD_BYTES as u64)
    }

    fn head_pos(&self) -> HeadPos {
        let front = self.sealed.front().unwrap_or(&self.tail);
        HeadPos {
            segment: front.id,
            offset: front.start,
        }
    }

    /// Drops the oldest records until `framed` more bytes fit. Returns whether
    /// any were dropped.
    fn evict_to_fit(&mut self, framed: u64) -> bool {
        let mut any = false;
        while self.bytes + framed > self.cfg.max_bytes {
            let Some(dropped) = self.pop_front() else {
                break;
            };
            self.unreported.records += 1;
            self.unreported.bytes += dropped;
            any = true;
        }
        any
    }

    /// Removes the oldest record from memory and returns its framed size. A
    /// sealed segment that runs empty is queued for deletion.
    fn pop_front(&mut self) -> Option<u64> {
        let framed = match self.sealed.front_mut() {
            Some(seg) => {
                let framed = seg.pop_front()?;
                if seg.lens.is_empty() {
                    let id = seg.id;
                    self.sealed.pop_front();
                    self.doomed.push(id);
                }
                framed
            }
            None => self.tail.pop_front()?,
        };
        self.len -= 1;
        self.bytes -= framed;
        Some(framed)
    }

    /// Brings the disk in line with a front that moved: deletes emptied
    /// segments, then records the new head as the policy asks. Deleting first
    /// is safe. A stale head that names a deleted segment makes recovery start
    /// at the next segment, and the same directory fsync covers both changes.
    fn persist_head_move(&mut self) -> Result<(), SpoolError> {
        self.delete_doomed();
        match self.cfg.sync {
            SyncPolicy::EveryRecord => self.write_head(true),
            SyncPolicy::Never => self.write_head(false),
            SyncPolicy::Interval(_) => {
                self.head_state = HeadState::Stale;
                Ok(())
            }
        }
    }

    fn delete_doomed(&mut self) {
        for id in std::mem::take(&mut self.doomed) {
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            let path = segment_path(&self.cfg.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Not fatal: the head already lies beyond this segment, so the
                // next open deletes it.
                Err(e) => log::warn!(
                    "spool: cannot delete consumed segment {}: {e}",
                    path.display()
                ),
            }
        }
    }

    fn write_head(&mut self, durable: bool) -> Result<(), SpoolError> {
        let dir = &self.cfg.dir;
        let written = replace_file(
            dir,
            &dir.join(HEAD_TMP_FILE),
            &dir.join(HEAD_FILE),
            &encode_head(self.head_pos()),
            durable,
        );
        self.head_state = match (&written, durable) {
            (Err(_), _) => HeadState::Stale,
            (Ok(()), true) => HeadState::Durable,
            (Ok(()), false) => HeadState::Written,
        };
        written
    }

    fn must_roll(&self, framed: u64) -> bool {
        self.roll_next
            || (self.tail.end > SEGMENT_HEADER_BYTES
                && self.tail.end.saturating_add(framed) > self.cfg.segment_bytes)
    }

    /// Starts a new segment after the tail.
    fn roll(&mut self) -> Result<(), SpoolError> {
        let durable = self.cfg.sync != SyncPolicy::Never;
        // Older records must be durable before a newer segment can exist on
        // disk. Recovery relies on this when it keeps segments that follow a
        // torn one.
        if durable && self.data_unsynced {
            self.sync_data()?;
        }
        let id = self
            .next_id
            .ok_or_else(|| SpoolError::SegmentIdsExhausted {
                dir: self.cfg.dir.clone(),
            })?;
        let (writer, segment) = create_segment(&self.cfg.dir, id, durable)?;
        self.next_id = id.checked_add(1);
        let old = std::mem::replace(&mut self.tail, segment);
        self.writer = writer;
        self.roll_next = false;
        self.data_unsynced = false;
        if old.lens.is_empty() {
            // Fully consumed, and nothing will be appended to it again.
            self.doomed.push(old.id);
            self.persist_head_move()?;
        } else {
            self.sealed.push_back(old);
        }
        Ok(())
    }

    fn append(&mut self, record: &[u8], len: u32) -> Result<(), SpoolError> {
        let header = record_header(len, record);
        let written = self
            .writer
            .write_all(&header)
            .and_then(|()| self.writer.write_all(record));
        if let Err(e) = written {
            // Cut off whatever part of the record got written, so that later
            // records never sit behind garbage in this segment. If even the cut
            // fails, the next record goes to a fresh segment.
            if self.writer.set_len(self.tail.end).is_err() {
                self.roll_next = true;
            }
            return Err(io_error(
                "append to",
                &segment_path(&self.cfg.dir, self.tail.id),
            )(e));
        }
        let framed = framed_len(len);
        self.tail.end += framed;
        self.tail.lens.push_back(len);
        self.len += 1;
        self.bytes += framed;
        self.data_unsynced = true;
        Ok(())
    }

    fn sync_data(&mut self) -> Result<(), SpoolError> {
        match self.writer.sync_data() {
            Ok(()) => {
                self.data_unsynced = false;
                Ok(())
            }
            Err(e) => {
                // After a failed fsync, Linux may already have dropped the
                // dirty pages. Appending more to this file would hide that
                // the file may have a hole.
                self.roll_next = true;
                Err(io_error(
                    "fsync",
                    &segment_path(&self.cfg.dir, self.tail.id),
                )(e))
            }
        }
    }

    fn sync_if_due(&mut self, every: Duration) -> Result<(), SpoolError> {
        if self.last_sync.elapsed() >= every {
            self.sync()
        } else {
            Ok(())
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // `Interval` defers fsyncs and head updates. A clean shutdown should
        // neither lose nor re-send what the interval had not covered yet.
        let behind = self.data_unsynced || self.head_state != HeadState::Durable;
        if matches!(self.cfg.sync, SyncPolicy::Interval(_)) && behind {
            if let Err(e) = self.sync() {
                log::warn!("spool: final sync failed: {e}");
            }
        }
    }
}

fn validate(cfg: &SpoolConfig) -> Result<(), SpoolError> {
    if cfg.max_bytes <= RECORD_OVERHEAD {
        return Err(SpoolError::InvalidConfig {
            field: "max_bytes",
            reason: format!(
                "must exceed the {RECORD_OVERHEAD}-byte framing of one record (got {})",
                cfg.max_bytes
            ),
        });
    }
    if cfg.segment_bytes == 0 {
        return Err(SpoolError::InvalidConfig {
            field: "segment_bytes",
            reason: "must be positive".to_string(),
        });
    }
    Ok(())
}

// ---- framing ---------------------------------------------------------------

/// (segment id, file offset, payload length) of every queued record, oldest first.
fn record_positions<'a>(
    sealed: &'a VecDeque<Segment>,
    tail: &'a Segment,
) -> impl Iterator<Item = (u64, u64, u32)> + 'a {
    sealed.iter().chain([tail]).flat_map(|seg| {
        seg.lens.iter().scan(seg.start, move |offset, &len| {
            let at = *offset;
            *offset += framed_len(len);
            Some((seg.id, at, len))
        })
    })
}

fn framed_len(len: u32) -> u64 {
    RECORD_OVERHEAD + u64::from(len)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from(le_u32(b, at)) | (u64::from(le_u32(b, at + 4)) << 32)
}

/// The CRC covers the length too, so that a damaged length cannot make a
/// shorter or longer payload look valid.
fn record_crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn record_header(len: u32, payload: &[u8]) -> [u8; RECORD_OVERHEAD as usize] {
    let mut h = [0u8; RECORD_OVERHEAD as usize];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..].copy_from_slice(&record_crc(len, payload).to_le_bytes());
    h
}

fn encode_segment_header(id: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Returns the format version and segment number from a segment header.
fn decode_segment_header(
    h: &[u8; SEGMENT_HEADER_BYTES as usize],
) -> Result<(u32, u64), &'static str> {
    if crc32fast::hash(&h[..20]) != le_u32(h, 20) {
        return Err("header checksum mismatch");
    }
    if h[..8] != SEGMENT_MAGIC {
        return Err("not a spool segment");
    }
    Ok((le_u32(h, 8), le_u64(h, 12)))
}

fn encode_head(pos: HeadPos) -> [u8; HEAD_BYTES] {
    let mut h = [0u8; HEAD_BYTES];
    h[..8].copy_from_slice(&HEAD_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&pos.segment.to_le_bytes());
    h[20..28].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Returns the format version and position from the `head` file's bytes.
fn decode_head(bytes: &[u8]) -> Result<(u32, HeadPos), &'static str> {
    let h: &[u8; HEAD_BYTES] = bytes.try_into().map_err(|_| "wrong size")?;
    if crc32fast::hash(&h[..28]) != le_u32(h, 28) {
        return Err("checksum mismatch");
    }
    if h[..8] != HEAD_MAGIC {
        return Err("not a spool head file");
    }
    let pos = HeadPos {
        segment: le_u64(h, 12),
        offset: le_u64(h, 20),
    };
    Ok((le_u32(h, 8), pos))
}

// ---- directory and files ---------------------------------------------------

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!(
        "{id:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_DIGITS
    ))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

struct Listing {
    /// Numbers of the segment files, ascending.
    segments: Vec<u64>,
    /// Highest number among all segment-like names, regular files or not.
    /// New segments go above it.
    max_id: Option<u64>,
}

fn list_dir(dir: &Path) -> Result<Listing, SpoolError> {
    let mut segments = Vec::new();
    let mut max_id = None;
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            log::warn!("spool: ignoring unexpected file {}", path.display());
            continue;
        };
        if name == HEAD_FILE {
            continue;
        }
        if name == HEAD_TMP_FILE {
            // Left over from an interrupted head update. The rename never
            // happened, so `head` still holds the previous valid position.
            remove_file(&path)?;
            continue;
        }
        let Some(id) = parse_segment_name(name) else {
            log::warn!("spool: ignoring unexpected file {}", path.display());
            continue;
        };
        max_id = max_id.max(Some(id));
        if entry
            .file_type()
            .map_err(io_error("stat", &path))?
            .is_file()
        {
            segments.push(id);
        } else {
            log::warn!("spool: ignoring {}: not a regular file", path.display());
        }
    }
    segments.sort_unstable();
    Ok(Listing { segments, max_id })
}

fn read_head(dir: &Path) -> Result<Option<HeadPos>, SpoolError> {
    let path = dir.join(HEAD_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open", &path)(e)),
    };
    // Reading one byte more than a valid head file tells a too-long file
    // apart without reading all of it.
    let mut bytes = Vec::with_capacity(HEAD_BYTES + 1);
    file.take(HEAD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("read", &path))?;
    match decode_head(&bytes) {
        Ok((version, _)) if version != FORMAT_VERSION => Err(SpoolError::UnsupportedVersion {
            path,
            found: version,
        }),
        Ok((_, pos)) => Ok(Some(pos)),
        Err(reason) => {
            log::warn!(
                "spool: ignoring {} ({reason}); every record still on disk will be delivered again",
                path.display()
            );
            Ok(None)
        }
    }
}

fn remove_file(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("delete", path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
}

fn truncate_file(path: &Path, len: u64, durable: bool) -> Result<(), SpoolError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open for truncation", path))?;
    file.set_len(len).map_err(io_error("truncate", path))?;
    if durable {
        file.sync_all().map_err(io_error("fsync", path))?;
    }
    Ok(())
}

/// Atomically replaces `dst` with `bytes` by way of `tmp`.
fn replace_file(
    dir: &Path,
    tmp: &Path,
    dst: &Path,
    bytes: &[u8],
    durable: bool,
) -> Result<(), SpoolError> {
    let mut file = File::create(tmp).map_err(io_error("create", tmp))?;
    file.write_all(bytes).map_err(io_error("write", tmp))?;
    if durable {
        file.sync_all().map_err(io_error("fsync", tmp))?;
    }
    drop(file);
    fs::rename(tmp, dst).map_err(io_error("rename onto", dst))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Creates segment `id` with its header. Returns an append handle on it.
fn create_segment(dir: &Path, id: u64, durable: bool) -> Result<(File, Segment), SpoolError> {
    let path = segment_path(dir, id);
    // `create_new`: an existing file with this number would mean the
    // numbering went backwards, and appending to it would splice two
    // histories together.
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error("create segment", &path))?;
    let written = file.write_all(&encode_segment_header(id)).and_then(|()| {
        if durable {
            file.sync_data()
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        // Best effort. A short file left behind is discarded at the next open.
        let _ = fs::remove_file(&path);
        return Err(io_error("write header of", &path)(e));
    }
    if durable {
        sync_dir(dir)?;
    }
    Ok((file, Segment::empty(id)))
}

// ---- recovery scan ---------------------------------------------------------

/// Why a segment's valid records end before its file does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Torn(&'static str),
    Corrupt(&'static str),
}

impl Stop {
    fn reason(self) -> &'static str {
        match self {
            Stop::Torn(r) => r,
            Stop::Corrupt(r) => r,
        }
    }
}

enum Scan {
    /// Nothing in the file can be trusted.
    BadHeader { file_len: u64, reason: &'static str },
    Records {
        /// (offset, payload length) of every valid record, in order.
        records: Vec<(u64, u32)>,
        /// End of the last valid record.
        valid_end: u64,
        file_len: u64,
        stop: Option<Stop>,
    },
}

/// Fills `buf` from `r`. Returns false if the file ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<bool, SpoolError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn scan_segment(path: &Path, id: u64) -> Result<Scan, SpoolError> {
    let file = File::open(path).map_err(io_error("open segment", path))?;
    let file_len = file.metadata().map_err(io_error("stat", path))?.len();
    let mut r = io::BufReader::with_capacity(1 << 16, file);

    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    if !read_full(&mut r, &mut header, path)? {
        return Ok(Scan::BadHeader {
            file_len,
            reason: "shorter than a segment header",
        });
    }
    match decode_segment_header(&header) {
        Err(reason) => return Ok(Scan::BadHeader { file_len, reason }),
        Ok((version, _)) if version != FORMAT_VERSION => {
            return Err(SpoolError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
            })
        }
        Ok((_, named)) if named != id => {
            return Ok(Scan::BadHeader {
                file_len,
                reason: "header names another segment number",
            })
        }
        Ok(_) => {}
    }

    let mut records = Vec::new();
    let mut payload = Vec::new();
    let mut off = SEGMENT_HEADER_BYTES;
    let stop = loop {
        let remaining = file_len.saturating_sub(off);
        if remaining == 0 {
            break None;
        }
        if remaining < RECORD_OVERHEAD {
            break Some(Stop::Torn("partial record header"));
        }
        let mut h = [0u8; RECORD_OVERHEAD as usize];
        if !read_full(&mut r, &mut h, path)? {
            break Some(Stop::Torn("file shrank while reading"));
        }
        if h.iter().all(|&b| b == 0) {
            break Some(Stop::Torn("zero-filled tail"));
        }
        if h[..4] != RECORD_MAGIC {
            break Some(Stop::Corrupt("bad record magic"));
        }
        let len = le_u32(&h, 4);
        if len as usize > MAX_RECORD_BYTES {
            break Some(Stop::Corrupt("record length above MAX_RECORD_BYTES"));
        }
        // Checked before reading, so that a damaged length never makes us
        // allocate more than the file holds.
        if u64::from(len) > remaining - RECORD_OVERHEAD {
            break Some(Stop::Torn("record runs past the end of the file"));
        }
        payload.resize(len as usize, 0);
        if !read_full(&mut r, &mut payload, path)? {
            break Some(Stop::Torn("file shrank while reading"));
        }
        if record_crc(len, &payload) != le_u32(&h, 8) {
            break Some(Stop::Corrupt("CRC mismatch"));
        }
        records.push((off, len));
        off += framed_len(len);
    };
    Ok(Scan::Records {
        records,
        valid_end: off,
        file_len,
        stop,
    })
}

/// Scans one segment, repairs it on disk, and returns its queued records
/// (those at or after `head`). Returns `None` if the segment was unreadable
/// and has been deleted.
fn recover_segment(
    path: &Path,
    id: u64,
    head: Option<HeadPos>,
    durable: bool,
    recovery: &mut Recovery,
) -> Result<Option<Segment>, SpoolError> {
    let (records, valid_end, file_len, stop) = match scan_segment(path, id)? {
        Scan::BadHeader { file_len, reason } => {
            log::warn!(
                "spool: discarding {} ({file_len} bytes): {reason}",
                path.display()
            );
            recovery.torn_bytes += file_len;
            remove_file(path)?;
            return Ok(None);
        }
        Scan::Records {
            records,
            valid_end,
            file_len,
            stop,
        } => (records, valid_end, file_len, stop),
    };
    if let Some(stop) = stop {
        let cut = file_len - valid_end;
        log::warn!(
            "spool: cutting {cut} bytes off {} at byte {valid_end}: {}",
            path.display(),
            stop.reason()
        );
        recovery.torn_bytes += cut;
        if matches!(stop, Stop::Corrupt(_)) {
            recovery.corrupt_records += 1;
        }
        truncate_file(path, valid_end, durable)?;
    }
    let from = match head {
        Some(h) if h.segment == id => {
            let aligned = h.offset == valid_end || records.iter().any(|&(off, _)| off == h.offset);
            if !aligned {
                log::warn!(
                    "spool: head offset {} is not a record boundary of {} (valid up to \
                     {valid_end}); records starting before it count as consumed",
                    h.offset,
                    path.display()
                );
            }
            h.offset
        }
        // The head lies in an earlier segment, or is unknown: all is queued.
        _ => 0,
    };
    let mut seg = Segment {
        id,
        start: valid_end,
        end: valid_end,
        lens: VecDeque::new(),
    };
    for (off, len) in records.into_iter().filter(|&(off, _)| off >= from) {
        if seg.lens.is_empty() {
            seg.start = off;
        }
        seg.lens.push_back(len);
    }
    Ok(Some(seg))
}

/// Reads and re-checks one queued record. Uses the cached handle when it is
/// on the same segment.
fn read_record(
    reader: &mut Option<(u64, File)>,
    dir: &Path,
    id: u64,
    offset: u64,
    len: u32,
    index: u64,
) -> Result<Vec<u8>, SpoolError> {
    let path = segment_path(dir, id);
    let file = match reader {
        Some((rid, file)) if *rid == id => file,
        slot => {
            let file = File::open(&path).map_err(io_error("open segment", &path))?;
            &mut slot.insert((id, file)).1
        }
    };
    let corrupt = |reason| SpoolError::Corrupt {
        path: path.clone(),
        offset,
        index,
        reason,
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(io_error("seek in", &path))?;
    let mut h = [0u8; RECORD_OVERHEAD as usize];
    let mut payload = vec![0u8; len as usize];
    if !read_full(file, &mut h, &path)? || !read_full(file, &mut payload, &path)? {
        return Err(corrupt("segment is shorter than its records"));
    }
    if h[..4] != RECORD_MAGIC || le_u32(&h, 4) != len {
        return Err(corrupt("record header changed"));
    }
    if record_crc(len, &payload) != le_u32(&h, 8) {
        return Err(corrupt("CRC mismatch"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            sync: SyncPolicy::Never,
        }
    }

    /// A record whose bytes depend on both its number and its length.
    fn rec(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7 + 1) as u8).collect()
    }

    fn framed(len: usize) -> u64 {
        RECORD_OVERHEAD + len as u64
    }

    fn peek_all(spool: &mut Spool) -> Vec<Vec<u8>> {
        spool.peek(usize::MAX).unwrap()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        files.sort();
        files
    }

    /// Writes `lens.len()` records into a single segment, then returns the
    /// records, the segment's bytes and each record's start offset.
    fn single_segment(dir: &Path, lens: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u64>) {
        let (mut spool, _) = Spool::open(config(dir, 1 << 20, 1 << 20)).unwrap();
        let records: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
        for r in &records {
            spool.push(r).unwrap();
        }
        drop(spool);
        let files = segment_files(dir);
        assert_eq!(files.len(), 1);
        let bytes = fs::read(&files[0]).unwrap();
        let mut starts = Vec::new();
        let mut off = SEGMENT_HEADER_BYTES;
        for &l in lens {
            starts.push(off);
            off += framed(l);
        }
        assert_eq!(off, bytes.len() as u64);
        (records, bytes, starts)
    }

    /// A fresh directory holding only segment 0 with the given bytes.
    fn dir_with_segment(bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 0), bytes).unwrap();
        dir
    }

    #[test]
    fn nth_reads_the_record_peek_would_return_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        // Small segments so the records span several files.
        let (mut spool, _) = Spool::open(config(dir.path(), 1 << 20, 256)).unwrap();
        let records: Vec<Vec<u8>> = (0..12).map(|i| rec(i, 40 + i)).collect();
        for r in &records {
            spool.push(r).unwrap();
        }
        assert!(segment_files(dir.path()).len() > 1);
        spool.consume(3).unwrap();
        for (i, want) in records[3..].iter().enumerate() {
            assert_eq!(spool.nth(i).unwrap().as_ref(), Some(want), "record {i}");
        }
        assert_eq!(spool.nth(records.len() - 3).unwrap(), None);
    }

    #[test]
    fn push_peek_consume_keep_fifo_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, recovery) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
        assert_eq!(recovery, Recovery::default());
        assert!(spool.is_empty());
        let records: Vec<Vec<u8>> = (0..5).map(|i| rec(i, 10 + i)).collect();
        for r in &records {
            assert_eq!(spool.push(r).unwrap(), Evicted::default());
        }
        assert_eq!(spool.len(), 5);
        assert_eq!(
            spool.bytes(),
            records.iter().map(|r| framed(r.len())).sum::<u64>()
        );
        assert_eq!(spool.peek(2).unwrap(), records[..2]);
        assert_eq!(spool.peek(0).unwrap(), Vec::<Vec<u8>>::new());
        // Peeking does not remove.
        assert_eq!(peek_all(&mut spool), records);
        spool.consume(2).unwrap();
        assert_eq!(spool.len(), 3);
        assert_eq!(peek_all(&mut spool), records[2..]);
        spool.push(&rec(9, 3)).unwrap();
        spool.consume(3).unwrap();
        assert_eq!(peek_all(&mut spool), vec![rec(9, 3)]);
        spool.consume(1).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert!(peek_all(&mut spool).is_empty());
    }

    #[test]
    fn contents_and_consumption_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1 << 20, 100);
        cfg.sync = SyncPolicy::EveryRecord;
        let records: Vec<Vec<u8>> = (0..12).map(|i| rec(i, 20 + i)).collect();
        {
            let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
            for r in &records {
                spool.push(r).unwrap();
            }
            spool.consume(4).unwrap();
        }
        let (mut spool, recovery) = Spool::open(cfg.clone()).unwrap();
        let live = &records[4..];
        assert_eq!(
            recovery,
            Recovery {
                records: live.len() as u64,
                bytes: live.iter().map(|r| framed(r.len())).sum(),
                torn_bytes: 0,
                corrupt_records: 0,
            }
        );
        assert_eq!(peek_all(&mut spool), live);
        // Appending after a reopen continues the same queue.
        spool.push(b"tail").unwrap();
        spool.consume(1).unwrap();
        drop(spool);
        let (mut spool, _) = Spool::open(cfg).unwrap();
        let mut expected = records[5..].to_vec();
        expected.push(b"tail".to_vec());
        assert_eq!(peek_all(&mut spool), expected);
    }

    #[test]
    fn eviction_drops_oldest_and_counts_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let max = 3 * framed(10);
        let (mut spool, _) = Spool::open(config(dir.path(), max, 50)).unwrap();
        for i in 0..3 {
            assert_eq!(spool.push(&rec(i, 10)).unwrap(), Evicted::default());
        }
        assert_eq!(spool.bytes(), max);
        assert_eq!(
            spool.push(&rec(3, 10)).unwrap(),
            Evicted {
                records: 1,
                bytes: framed(10)
            }
        );
        assert_eq!(
            peek_all(&mut spool),
            vec![rec(1, 10), rec(2, 10), rec(3, 10)]
        );
        // 20 payload bytes need 32 framed: 66 + 32 - 66 = 32 bytes must go,
        // which takes two 22-byte records.
        assert_eq!(
            spool.push(&rec(4, 20)).unwrap(),
            Evicted {
                records: 2,
                bytes: 2 * framed(10)
            }
        );
        assert_eq!(peek_all(&mut spool), vec![rec(3, 10), rec(4, 20)]);
        assert_eq!(spool.bytes(), framed(10) + framed(20));
        // A record of exactly the limit evicts everything else.
        let limit = max - RECORD_OVERHEAD;
        assert_eq!(
            spool.push(&rec(5, limit as usize)).unwrap(),
            Evicted {
                records: 2,
                bytes: framed(10) + framed(20)
            }
        );
        assert_eq!(spool.len(), 1);
        assert_eq!(spool.bytes(), max);
        // Evicted records stay gone after a reopen.
        drop(spool);
        let (mut spool, recovery) = Spool::open(config(dir.path(), max, 50)).unwrap();
        assert_eq!(recovery.records, 1);
        assert_eq!(peek_all(&mut spool), vec![rec(5, limit as usize)]);
    }

    #[test]
    fn record_larger_than_the_bound_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let max = 100;
        let (mut spool, _) = Spool::open(config(dir.path(), max, 1000)).unwrap();
        spool.push(b"keep").unwrap();
        let too_big = vec![7u8; (max - RECORD_OVERHEAD + 1) as usize];
        match spool.push(&too_big) {
            Err(SpoolError::RecordTooLarge { len, limit }) => {
                assert_eq!(len, too_big.len());
                assert_eq!(limit, max - RECORD_OVERHEAD);
            }
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        assert_eq!(peek_all(&mut spool), vec![b"keep".to_vec()]);
        // The format's own cap applies even with a huge bound.
        let (mut big, _) = Spool::open(config(&dir.path().join("big"), u64::MAX, 1 << 30)).unwrap();
        let err = big.push(&vec![0u8; MAX_RECORD_BYTES + 1]).unwrap_err();
        assert!(
            matches!(err, SpoolError::RecordTooLarge { limit, .. } if limit == MAX_RECORD_BYTES as u64)
        );
    }

    #[test]
    fn consume_beyond_len_is_an_error_and_consumes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(config(dir.path(), 1000, 1000)).unwrap();
        spool.push(b"a").unwrap();
        spool.push(b"b").unwrap();
        match spool.consume(3) {
            Err(SpoolError::ConsumeBeyondEnd {
                requested: 3,
                available: 2,
            }) => {}
            other => panic!("expected ConsumeBeyondEnd, got {other:?}"),
        }
        assert_eq!(spool.len(), 2);
        spool.consume(0).unwrap();
        spool.consume(2).unwrap();
        assert!(spool.consume(1).is_err());
    }

    #[test]
    fn segments_roll_and_consumed_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        // Header (24) + 3 records of 12 + 20 = 120: three records per segment.
        let (mut spool, _) = Spool::open(config(dir.path(), 1 << 20, 120)).unwrap();
        for i in 0..10 {
            spool.push(&rec(i, 20)).unwrap();
        }
        assert_eq!(segment_files(dir.path()).len(), 4);
        spool.consume(3).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 3);
        spool.consume(7).unwrap();
        // The newest segment stays as the append target, and it still has room.
        assert_eq!(segment_files(dir.path()), [segment_path(dir.path(), 3)]);
        spool.push(&rec(10, 20)).unwrap();
        spool.push(&rec(11, 20)).unwrap();
        assert_eq!(segment_files(dir.path()), [segment_path(dir.path(), 3)]);
        spool.consume(2).unwrap();
        // Full and fully consumed: the old tail gives way to a new segment.
        spool.push(&rec(12, 100)).unwrap();
        assert_eq!(segment_files(dir.path()), [segment_path(dir.path(), 4)]);
        // A record larger than segment_bytes gets a segment to itself.
        spool.push(&rec(13, 500)).unwrap();
        spool.push(&rec(14, 1)).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 3);
        drop(spool);
        let (mut spool, _) = Spool::open(config(dir.path(), 1 << 20, 120)).unwrap();
        assert_eq!(
            peek_all(&mut spool),
            vec![rec(12, 100), rec(13, 500), rec(14, 1)]
        );
    }

    #[test]
    fn interval_policy_syncs_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1 << 20, 1 << 20);
        cfg.sync = SyncPolicy::Interval(Duration::from_secs(3600));
        {
            let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
            for i in 0..4 {
                spool.push(&rec(i, 8)).unwrap();
            }
            spool.consume(3).unwrap();
            // The interval has not passed, so the head file still has the old position.
            assert_eq!(spool.head_state, HeadState::Stale);
        }
        let (mut spool, recovery) = Spool::open(cfg).unwrap();
        assert_eq!(recovery.records, 1);
        assert_eq!(peek_all(&mut spool), vec![rec(3, 8)]);
    }

    #[test]
    fn explicit_sync_makes_head_durable_under_every_policy() {
        for sync in [
            SyncPolicy::Never,
            SyncPolicy::Interval(Duration::from_secs(3600)),
            SyncPolicy::EveryRecord,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path(), 1 << 20, 1 << 20);
            cfg.sync = sync;
            let (mut spool, _) = Spool::open(cfg).unwrap();
            spool.push(b"x").unwrap();
            spool.push(b"y").unwrap();
            spool.consume(1).unwrap();
            spool.sync().unwrap();
            assert_eq!(spool.head_state, HeadState::Durable, "{sync:?}");
            assert!(!spool.data_unsynced, "{sync:?}");
            let head = fs::read(dir.path().join(HEAD_FILE)).unwrap();
            assert_eq!(decode_head(&head).unwrap().1, spool.head_pos(), "{sync:?}");
        }
    }

    #[test]
    fn truncation_at_every_offset_of_the_last_record_recovers_the_prefix() {
        let src = tempfile::tempdir().unwrap();
        let (records, bytes, starts) = single_segment(src.path(), &[10, 0, 33, 7, 100]);
        let last_start = *starts.last().unwrap() as usize;
        for cut in last_start..=bytes.len() {
            let dir = dir_with_segment(&bytes[..cut]);
            let (mut spool, recovery) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
            let whole = cut == bytes.len();
            let kept = if whole {
                records.len()
            } else {
                records.len() - 1
            };
            let torn = if whole { 0 } else { (cut - last_start) as u64 };
            assert_eq!(recovery.records, kept as u64, "cut at {cut}");
            assert_eq!(recovery.torn_bytes, torn, "cut at {cut}");
            assert_eq!(recovery.corrupt_records, 0, "cut at {cut}");
            assert_eq!(peek_all(&mut spool), records[..kept], "cut at {cut}");
            let seg_len = fs::metadata(segment_path(dir.path(), 0)).unwrap().len();
            assert_eq!(seg_len, if whole { cut } else { last_start } as u64);
            // New records go after the intact prefix, and the repair is final.
            spool.push(b"after").unwrap();
            drop(spool);
            let (mut spool, again) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
            assert_eq!((again.torn_bytes, again.corrupt_records), (0, 0));
            let mut expected = records[..kept].to_vec();
            expected.push(b"after".to_vec());
            assert_eq!(peek_all(&mut spool), expected);
        }
    }

    #[test]
    fn zero_filled_tail_counts_as_torn_not_corrupt() {
        let src = tempfile::tempdir().unwrap();
        let (records, mut bytes, _) = single_segment(src.path(), &[5, 6]);
        let good = bytes.len() as u64;
        // What a filesystem may show after power loss: the size grew, the data did not.
        bytes.extend_from_slice(&[0u8; 4096]);
        let dir = dir_with_segment(&bytes);
        let (mut spool, recovery) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(recovery.torn_bytes, 4096);
        assert_eq!(recovery.corrupt_records, 0);
        assert_eq!(peek_all(&mut spool), records);
        assert_eq!(
            fs::metadata(segment_path(dir.path(), 0)).unwrap().len(),
            good
        );
    }

    #[test]
    fn damaged_earlier_segment_keeps_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        // Three records per segment (see segments_roll_and_consumed_ones_are_deleted).
        let cfg = config(dir.path(), 1 << 20, 120);
        let records: Vec<Vec<u8>> = (0..9).map(|i| rec(i, 20)).collect();
        {
            let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
            for r in &records {
                spool.push(r).unwrap();
            }
        }
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 3);
        // Flip a payload byte of the middle segment's second record.
        let mut middle = fs::read(&files[1]).unwrap();
        let second = (SEGMENT_HEADER_BYTES + framed(20)) as usize;
        middle[second + RECORD_OVERHEAD as usize + 3] ^= 0x40;
        fs::write(&files[1], &middle).unwrap();
        let (mut spool, recovery) = Spool::open(cfg.clone()).unwrap();
        assert_eq!(recovery.corrupt_records, 1);
        assert_eq!(recovery.torn_bytes, 2 * framed(20));
        let mut expected = records[..4].to_vec();
        expected.extend_from_slice(&records[6..]);
        assert_eq!(recovery.records, expected.len() as u64);
        assert_eq!(peek_all(&mut spool), expected);
        // Consuming through the shortened segment works and persists.
        spool.consume(5).unwrap();
        drop(spool);
        let (mut spool, _) = Spool::open(cfg).unwrap();
        assert_eq!(peek_all(&mut spool), records[7..]);
    }

    #[test]
    fn empty_or_headerless_segments_are_discarded() {
        let src = tempfile::tempdir().unwrap();
        let (records, bytes, _) = single_segment(src.path(), &[3, 4]);
        let dir = dir_with_segment(&bytes);
        // A crash right after creating the next segment, before its header.
        fs::write(segment_path(dir.path(), 1), b"").unwrap();
        fs::write(segment_path(dir.path(), 2), &encode_segment_header(2)[..10]).unwrap();
        // A small segment_bytes makes the next push start a new segment.
        let (mut spool, recovery) = Spool::open(config(dir.path(), 1 << 20, 50)).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(recovery.torn_bytes, 10);
        assert_eq!(peek_all(&mut spool), records);
        // New segments never reuse a number that was seen.
        spool.push(b"next").unwrap();
        let names = segment_files(dir.path());
        assert_eq!(names.len(), 2);
        assert!(names[1].ends_with(format!("{:020}.seg", 3)));
    }

    #[test]
    fn foreign_files_are_ignored_and_head_tmp_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20, 1 << 20);
        {
            let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
            spool.push(b"one").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
        fs::write(dir.path().join("123.seg"), b"short name").unwrap();
        fs::create_dir(dir.path().join(format!("{:020}.seg", 7))).unwrap();
        fs::write(dir.path().join(HEAD_TMP_FILE), b"half a head").unwrap();
        // A small segment_bytes makes the next push start a new segment.
        let (mut spool, recovery) = Spool::open(config(dir.path(), 1 << 20, 30)).unwrap();
        assert_eq!(recovery.records, 1);
        assert_eq!((recovery.torn_bytes, recovery.corrupt_records), (0, 0));
        assert_eq!(peek_all(&mut spool), vec![b"one".to_vec()]);
        assert!(dir.path().join("notes.txt").exists());
        assert!(dir.path().join("123.seg").exists());
        assert!(!dir.path().join(HEAD_TMP_FILE).exists());
        // The directory that looks like segment 7 still pushes new numbers past it.
        spool.push(b"two").unwrap();
        assert!(segment_path(dir.path(), 8).exists());
    }

    #[test]
    fn damaged_head_file_redelivers_instead_of_losing() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20, 1 << 20);
        let records: Vec<Vec<u8>> = (0..5).map(|i| rec(i, 9)).collect();
        {
            let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
            for r in &records {
                spool.push(r).unwrap();
            }
            spool.consume(2).unwrap();
        }
        let head = dir.path().join(HEAD_FILE);
        let mut bytes = fs::read(&head).unwrap();
        bytes[21] ^= 1;
        fs::write(&head, &bytes).unwrap();
        let (mut spool, recovery) = Spool::open(cfg.clone()).unwrap();
        assert_eq!(recovery.records, 5);
        assert_eq!(peek_all(&mut spool), records);
        // The head file was rewritten and is valid again.
        spool.consume(1).unwrap();
        drop(spool);
        let (mut spool, _) = Spool::open(cfg).unwrap();
        assert_eq!(peek_all(&mut spool), records[1..]);
    }

    #[test]
    fn head_past_a_lost_segment_skips_to_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20, 120);
        {
            let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
            for i in 0..6 {
                spool.push(&rec(i, 20)).unwrap();
            }
        }
        // A head that names deleted segment 0 at some offset: segment 1 is untouched.
        fs::remove_file(segment_path(dir.path(), 0)).unwrap();
        let stale = HeadPos {
            segment: 0,
            offset: 60,
        };
        fs::write(dir.path().join(HEAD_FILE), encode_head(stale)).unwrap();
        let (mut spool, recovery) = Spool::open(cfg).unwrap();
        assert_eq!(recovery.records, 3);
        assert_eq!(
            peek_all(&mut spool),
            (3..6).map(|i| rec(i, 20)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn newer_format_version_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
        header[..8].copy_from_slice(&SEGMENT_MAGIC);
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&header[..20]);
        header[20..].copy_from_slice(&crc.to_le_bytes());
        let mut file = header.to_vec();
        file.extend_from_slice(b"records of a future format");
        let path = segment_path(dir.path(), 0);
        fs::write(&path, &file).unwrap();
        let err = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap_err();
        assert!(
            matches!(err, SpoolError::UnsupportedVersion { found: 2, .. }),
            "{err:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), file);
    }

    #[test]
    fn invalid_config_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = Spool::open(config(dir.path(), RECORD_OVERHEAD, 100)).unwrap_err();
        assert!(matches!(
            err,
            SpoolError::InvalidConfig {
                field: "max_bytes",
                ..
            }
        ));
        let err = Spool::open(config(dir.path(), 100, 0)).unwrap_err();
        assert!(matches!(
            err,
            SpoolError::InvalidConfig {
                field: "segment_bytes",
                ..
            }
        ));
    }

    #[test]
    fn peek_reports_records_that_rot_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
        for i in 0..3 {
            spool.push(&rec(i, 16)).unwrap();
        }
        let path = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&path).unwrap();
        let second_payload = (SEGMENT_HEADER_BYTES + framed(16) + RECORD_OVERHEAD) as usize;
        bytes[second_payload] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        spool.reader = None;
        match spool.peek(3) {
            Err(SpoolError::Corrupt { index: 1, .. }) => {}
            other => panic!("expected Corrupt at index 1, got {other:?}"),
        }
        assert_eq!(spool.peek(1).unwrap(), vec![rec(0, 16)]);
        // The documented way past it: consume the good one and the bad one.
        spool.consume(2).unwrap();
        assert_eq!(peek_all(&mut spool), vec![rec(2, 16)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize, u8),
        Peek(usize),
        Consume(usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..260, any::<u8>()).prop_map(|(len, seed)| Op::Push(len, seed)),
            2 => (0usize..10).prop_map(Op::Peek),
            3 => (0usize..8).prop_map(Op::Consume),
            1 => Just(Op::Reopen),
        ]
    }

    /// Mostly `Never`: the syncing policies take the same paths plus
    /// fsyncs, which are slow on shared CI disks.
    fn policy() -> impl Strategy<Value = SyncPolicy> {
        prop_oneof![
            10 => Just(SyncPolicy::Never),
            1 => Just(SyncPolicy::EveryRecord),
            1 => Just(SyncPolicy::Interval(Duration::ZERO)),
            2 => Just(SyncPolicy::Interval(Duration::from_secs(3600))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn behaves_like_a_bounded_deque(
            max_bytes in 40u64..1500,
            segment_bytes in 1u64..700,
            sync in policy(),
            ops in prop::collection::vec(op(), 1..80),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = SpoolConfig { dir: dir.path().to_path_buf(), max_bytes, segment_bytes, sync };
            let (mut spool, recovery) = Spool::open(cfg.clone()).unwrap();
            prop_assert_eq!(recovery, Recovery::default());
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let mut model_bytes = 0u64;
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push(len, seed) => {
                        let record: Vec<u8> =
                            (0..len).map(|j| seed.wrapping_add((i * 7 + j) as u8)).collect();
                        let size = framed(len);
                        if size > max_bytes {
                            let refused = matches!(spool.push(&record), Err(SpoolError::RecordTooLarge { .. }));
                            prop_assert!(refused);
                        } else {
                            let mut expected = Evicted::default();
                            while model_bytes + size > max_bytes {
                                let old = model.pop_front().unwrap();
                                model_bytes -= framed(old.len());
                                expected.records += 1;
                                expected.bytes += framed(old.len());
                            }
                            model.push_back(record.clone());
                            model_bytes += size;
                            prop_assert_eq!(spool.push(&record).unwrap(), expected);
                        }
                    }
                    Op::Peek(n) => {
                        let expected: Vec<Vec<u8>> = model.iter().take(n).cloned().collect();
                        prop_assert_eq!(spool.peek(n).unwrap(), expected);
                    }
                    Op::Consume(n) => {
                        if n > model.len() {
                            let refused = matches!(spool.consume(n), Err(SpoolError::ConsumeBeyondEnd { .. }));
                            prop_assert!(refused);
                        } else {
                            spool.consume(n).unwrap();
                            for old in model.drain(..n) {
                                model_bytes -= framed(old.len());
                            }
                        }
                    }
                    Op::Reopen => {
                        drop(spool);
                        let (reopened, recovery) = Spool::open(cfg.clone()).unwrap();
                        prop_assert_eq!(recovery, Recovery {
                            records: model.len() as u64,
                            bytes: model_bytes,
                            torn_bytes: 0,
                            corrupt_records: 0,
                        });
                        spool = reopened;
                    }
                }
                prop_assert_eq!(spool.len(), model.len() as u64);
                prop_assert_eq!(spool.is_empty(), model.is_empty());
                prop_assert_eq!(spool.bytes(), model_bytes);
                prop_assert!(spool.bytes() <= max_bytes);
                // No leaked segment files: only those the spool still needs.
                prop_assert_eq!(segment_files(dir.path()).len(), spool.sealed.len() + 1);
            }
            let expected: Vec<Vec<u8>> = model.into_iter().collect();
            prop_assert_eq!(peek_all(&mut spool), expected);
        }

        #[test]
        fn a_flipped_byte_keeps_exactly_the_records_before_it(
            at in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let src = tempfile::tempdir().unwrap();
            let (records, mut bytes, starts) = single_segment(src.path(), &[5, 0, 40, 13, 200, 1]);
            let file_len = bytes.len() as u64;
            let pos = at.index(bytes.len());
            bytes[pos] ^= mask;
            let dir = dir_with_segment(&bytes);
            let (mut spool, recovery) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
            if (pos as u64) < SEGMENT_HEADER_BYTES {
                prop_assert_eq!(recovery, Recovery { torn_bytes: file_len, ..Recovery::default() });
                prop_assert!(!segment_path(dir.path(), 0).exists());
            } else {
                let k = starts.iter().rposition(|&s| s <= pos as u64).unwrap();
                let within = pos as u64 - starts[k];
                prop_assert_eq!(recovery.records, k as u64);
                prop_assert_eq!(recovery.torn_bytes, file_len - starts[k]);
                // A damaged length may instead run past the end of the file (torn).
                let in_length_field = (4..8).contains(&within);
                if in_length_field {
                    prop_assert!(recovery.corrupt_records <= 1);
                } else {
                    prop_assert_eq!(recovery.corrupt_records, 1);
                }
                prop_assert_eq!(peek_all(&mut spool), records[..k].to_vec());
            }
            drop(spool);
            let (mut spool, again) = Spool::open(config(dir.path(), 1 << 20, 1 << 20)).unwrap();
            prop_assert_eq!((again.torn_bytes, again.corrupt_records), (0, 0));
            prop_assert_eq!(again.records, spool.len());
            prop_assert_eq!(peek_all(&mut spool).len() as u64, again.records);
        }

        #[test]
        fn garbage_in_the_directory_never_panics(
            valid_header in any::<bool>(),
            body in prop::collection::vec(any::<u8>(), 0..400),
            head in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            stray in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut segment = Vec::new();
            if valid_header {
                segment.extend_from_slice(&encode_segment_header(0));
            }
            segment.extend_from_slice(&body);
            fs::write(segment_path(dir.path(), 0), &segment).unwrap();
            if let Some(head) = &head {
                fs::write(dir.path().join(HEAD_FILE), head).unwrap();
            }
            fs::write(dir.path().join("stray.bin"), &stray).unwrap();
            let cfg = config(dir.path(), 1 << 20, 1 << 20);
            let (mut spool, recovery) = Spool::open(cfg.clone()).unwrap();
            prop_assert!(recovery.torn_bytes <= segment.len() as u64);
            prop_assert_eq!(recovery.records, spool.len());
            prop_assert_eq!(peek_all(&mut spool).len() as u64, spool.len());
            spool.push(b"fresh").unwrap();
            let before = peek_all(&mut spool);
            prop_assert_eq!(before.last().unwrap(), &b"fresh".to_vec());
            drop(spool);
            let (mut spool, again) = Spool::open(cfg).unwrap();
            prop_assert_eq!((again.torn_bytes, again.corrupt_records), (0, 0));
            prop_assert_eq!(peek_all(&mut spool), before);
        }
    }
}
