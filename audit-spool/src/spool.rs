//! A bounded, ordered spool of audit events on local disk, between the action they record and
//! audit-svc.
//!
//! Written by hand: the disk queues on crates.io either hold items in memory until a batch
//! spills (losing them on `kill -9`) or fsync every item through SQLite (milliseconds per call).
//! Here each record is written through to the kernel before the action is answered, so a killed
//! process loses nothing it answered, and a background task fsyncs on an interval, which bounds
//! what a power loss can take.
//!
//! Layout: segment files named by the global byte offset of their first record
//! (`00000000000000000000.seg`), each a run of frames `len: u32 LE | crc32: u32 LE | payload`,
//! and a `cursor` file holding the offset of the first record audit-svc has not acknowledged
//! (20 digits and a newline, overwritten in place: one `pwrite` per acknowledged batch, where
//! a temporary file renamed over it cost a file creation and a directory update each time).
//! Positions are global byte offsets, so "how much is unacknowledged" is one subtraction.
//! A `lock` file, held with an exclusive lock while the spool is open, keeps two processes
//! (replicas given the same directory by mistake) from interleaving their frames.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prost::Message as _;
use proto::audit::v1::AuditEvent;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Bytes in a frame header: length and checksum.
const HEADER: u64 = 8;

/// Largest payload a frame may claim; anything larger is corruption, not an event.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;

/// How large a spool may grow and how it reaches the disk.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// Most unacknowledged bytes kept; an append beyond it is refused as [`SpoolError::Full`].
    pub max_bytes: u64,
    /// Size at which the current segment is closed and a new one started.
    pub segment_bytes: u64,
    /// How often written records are fsynced; zero fsyncs every record before it returns.
    pub sync_interval: Duration,
}

impl Default for SpoolLimits {
    /// Returns 256 MiB of backlog in 8 MiB segments, fsynced every 100 ms.
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            sync_interval: Duration::from_millis(100),
        }
    }
}

/// Why the spool could not take or give back a record.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The unacknowledged backlog reached its bound.
    #[error("the audit spool is full ({max_bytes} bytes unacknowledged)")]
    Full {
        /// The configured bound.
        max_bytes: u64,
    },
    /// A record is larger than any event can be.
    #[error("an audit record of {0} bytes is larger than the spool accepts")]
    TooLarge(usize),
    /// A frame failed its checksum or claims an impossible length.
    #[error("the audit spool is corrupt at offset {position}")]
    Corrupt {
        /// Where the bad frame starts.
        position: u64,
    },
    /// Another process holds the spool directory.
    #[error("the audit spool in {0} is in use by another process")]
    Locked(PathBuf),
    /// The disk refused.
    #[error("audit spool I/O in {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// Room promised to one admitted call; dropping it without writing gives the room back.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.inner.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One record read back, with the position just past it (what to acknowledge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// The record's payload.
    pub payload: Vec<u8>,
    /// The offset just past this record.
    pub next: u64,
}

/// The spool shared by every writer and its one reader.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    limits: SpoolLimits,
    writer: Mutex<Writer>,
    /// Offset just past the last record written completely (what a reader may read up to).
    end: AtomicU64,
    /// Offset of the first record not yet acknowledged.
    acked: AtomicU64,
    /// Room promised to admitted calls whose events are not written yet.
    reserved: AtomicU64,
    /// Wakes the reader when a record is written.
    written: Notify,
    /// Wakes whoever waits for the backlog to shrink ([`Spool::drained_to`]) on each
    /// acknowledgement.
    drained: Notify,
    /// Set while a delivery stream to audit-svc is open: a backlog then is a trail that is
    /// behind, which waiting helps, not one that is away, which it does not.
    delivering: AtomicBool,
    /// The `cursor` file, open for overwriting.
    cursor: File,
    /// Holds the directory's exclusive lock for as long as the spool is open.
    _lock: File,
}

#[derive(Debug)]
struct Writer {
    file: Arc<File>,
    base: u64,
    len: u64,
    /// The bases of the segment files on disk, oldest first: the spool's lock makes this
    /// process their only writer, so it need not list the directory for every batch.
    segments: Vec<u64>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, dropping a torn last frame left by a crash.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        let mut bases = segment_bases(dir)?;
        if bases.is_empty() {
            let start = read_cursor(dir)?.unwrap_or(0);
            File::create(segment_path(dir, start)).map_err(io_at(&segment_path(dir, start)))?;
            bases.push(start);
        }
        let first = bases[0];
        let base = bases[bases.len() - 1];
        let path = segment_path(dir, base);
        let valid = valid_prefix(&path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        file.set_len(valid).map_err(io_at(&path))?;
        let end = base + valid;
        let acked = read_cursor(dir)?.unwrap_or(first).clamp(first, end);
        let cursor = open_for_writing(&dir.join("cursor"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                limits,
                writer: Mutex::new(Writer {
                    file: Arc::new(file),
                    base,
                    len: valid,
                    segments: bases,
                }),
                end: AtomicU64::new(end),
                acked: AtomicU64::new(acked),
                reserved: AtomicU64::new(0),
                written: Notify::new(),
                drained: Notify::new(),
                delivering: AtomicBool::new(false),
                cursor,
                _lock: lock,
            }),
        })
    }

    /// Returns how many bytes are written but not acknowledged.
    pub fn backlog(&self) -> u64 {
        self.inner.end.load(Ordering::Acquire) - self.inner.acked.load(Ordering::Acquire)
    }

    /// Says whether the backlog and promised room have reached the bound.
    pub fn is_full(&self) -> bool {
        self.backlog() + self.inner.reserved.load(Ordering::Acquire) >= self.inner.limits.max_bytes
    }

    /// Promises `bytes` of room to one admitted call, so that its event can always be written.
    ///
    /// The promise is what makes fail-closed exact: a call is refused before it reaches a
    /// connector, never after it ran because its event did not fit.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, SpoolError> {
        let max_bytes = self.inner.limits.max_bytes;
        let mut current = self.inner.reserved.load(Ordering::Acquire);
        loop {
            if self.backlog() + current + bytes > max_bytes {
                return Err(SpoolError::Full { max_bytes });
            }
            match self.inner.reserved.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        inner: Arc::clone(&self.inner),
                        bytes,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Writes a record into room promised earlier; the bound was checked when it was promised.
    pub fn append_reserved(
        &self,
        payload: &[u8],
        reservation: Reservation,
    ) -> Result<u64, SpoolError> {
        let written = self.write(payload, false);
        drop(reservation);
        written
    }

    /// Returns the offset of the first unacknowledged record.
    pub fn acknowledged(&self) -> u64 {
        self.inner.acked.load(Ordering::Acquire)
    }

    /// Returns the offset just past the last complete record.
    pub fn end(&self) -> u64 {
        self.inner.end.load(Ordering::Acquire)
    }

    /// Writes one record through to the kernel (fsynced too when the interval is zero).
    ///
    /// The write is a short `write(2)` to the page cache under a mutex: cheaper than handing the
    /// record to another task and waiting for it.
    pub fn append(&self, payload: &[u8]) -> Result<u64, SpoolError> {
        self.write(payload, true)
    }

    fn write(&self, payload: &[u8], bounded: bool) -> Result<u64, SpoolError> {
        let length = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        if length > MAX_PAYLOAD {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let frame_len = HEADER + length;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let mut writer = self.lock();
        let end = writer.base + writer.len;
        let max_bytes = self.inner.limits.max_bytes;
        let promised = self.inner.reserved.load(Ordering::Acquire);
        if bounded
            && end - self.inner.acked.load(Ordering::Acquire) + promised + frame_len > max_bytes
        {
            return Err(SpoolError::Full { max_bytes });
        }
        if writer.len > 0 && writer.len + frame_len > self.inner.limits.segment_bytes {
            self.roll(&mut writer, end)?;
        }
        // The segment's path is spelled out only when a write fails, not on every record.
        let failed = |source| SpoolError::Io {
            path: segment_path(&self.inner.dir, writer.base),
            source,
        };
        if let Err(source) = (&*writer.file).write_all(&frame) {
            // Cut a partly written frame off so the next record does not land behind garbage.
            let _ = writer.file.set_len(writer.len);
            return Err(failed(source));
        }
        if self.inner.limits.sync_interval.is_zero() {
            writer.file.sync_data().map_err(failed)?;
        }
        writer.len += frame_len;
        let next = writer.base + writer.len;
        self.inner.end.store(next, Ordering::Release);
        drop(writer);
        self.inner.written.notify_one();
        Ok(next)
    }

    /// Writes one audit event (encoded) through to the kernel, within the bound.
    pub fn record(&self, event: &AuditEvent) -> Result<u64, SpoolError> {
        self.append(&event.encode_to_vec())
    }

    /// Reads up to `max_records` complete records starting at `from`.
    ///
    /// Returns an empty batch when nothing is written past `from` yet.
    pub fn read(&self, from: u64, max_records: usize) -> Result<Vec<SpooledRecord>, SpoolError> {
        let end = self.end();
        let mut records = Vec::new();
        let mut position = from;
        while position < end && records.len() < max_records {
            let Some((base, next_base)) = self.segment_holding(position) else {
                break;
            };
            // A position before the first kept segment was acknowledged and removed already.
            position = position.max(base);
            let limit = next_base.unwrap_or(end).min(end);
            let path = segment_path(&self.inner.dir, base);
            let mut file = File::open(&path).map_err(io_at(&path))?;
            file.seek(SeekFrom::Start(position - base))
                .map_err(io_at(&path))?;
            // Sized to what is there: a small batch under steady load must not pay for
            // allocating (and faulting in) a 256 KiB buffer each time.
            let room = usize::try_from(limit - position).unwrap_or(usize::MAX);
            let mut reader = io::BufReader::with_capacity(room.clamp(4096, 256 * 1024), file);
            while position < limit && records.len() < max_records {
                let payload = read_frame(&mut reader, position, limit - position)?;
                position += HEADER + payload.len() as u64;
                records.push(SpooledRecord {
                    payload,
                    next: position,
                });
            }
            if position >= limit
                && let Some(next_base) = next_base
            {
                position = next_base;
            }
        }
        Ok(records)
    }

    /// Returns the start of the segment after the one holding `position` (to skip corruption).
    pub fn next_segment(&self, position: u64) -> Option<u64> {
        self.segment_holding(position)
            .and_then(|(_, next_base)| next_base)
    }

    /// Records that everything before `position` is stored by audit-svc and frees its segments.
    pub fn acknowledge(&self, position: u64) -> Result<(), SpoolError> {
        let dir = &self.inner.dir;
        // Fixed width, so an overwrite leaves nothing of a longer value behind.
        self.inner
            .cursor
            .write_all_at(format!("{position:020}\n").as_bytes(), 0)
            .map_err(io_at(&dir.join("cursor")))?;
        self.inner.acked.fetch_max(position, Ordering::AcqRel);
        self.inner.drained.notify_waiters();
        let removable: Vec<u64> = {
            let writer = self.lock();
            writer
                .segments
                .windows(2)
                .take_while(|pair| pair[1] <= position && pair[0] < writer.base)
                .map(|pair| pair[0])
                .collect()
        };
        // Unlinked without the writer's lock, which every call's record takes; a segment leaves
        // the list only once its file is gone, so a failed removal is tried again next time.
        for base in removable {
            let path = segment_path(dir, base);
            fs::remove_file(&path).map_err(io_at(&path))?;
            self.lock().segments.remove(0);
        }
        Ok(())
    }

    /// Waits until a record is written after the last wake-up.
    pub async fn written(&self) {
        self.inner.written.notified().await;
    }

    /// Waits until the backlog is at most `mark` bytes, or until `patience` has passed; says
    /// whether the backlog got there. It wakes on acknowledgements, not on a timer.
    pub async fn drained_to(&self, mark: u64, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so an acknowledgement in between still wakes it.
            drained.as_mut().enable();
            if self.backlog() <= mark {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.backlog() <= mark;
            }
        }
    }

    /// Says whether a delivery stream to audit-svc is open.
    pub fn is_delivering(&self) -> bool {
        self.inner.delivering.load(Ordering::Acquire)
    }

    /// Marks a delivery stream open or closed (the forwarder's, as it connects and fails).
    pub(crate) fn set_delivering(&self, open: bool) {
        self.inner.delivering.store(open, Ordering::Release);
    }

    /// Fsyncs the current segment every `sync_interval` until `shutdown`, and once more then.
    pub fn spawn_sync(&self, shutdown: CancellationToken) {
        let interval = self.inner.limits.sync_interval;
        if interval.is_zero() {
            return;
        }
        let spool = self.clone();
        tokio::spawn(async move {
            let mut synced = spool.end();
            let mut ticks = tokio::time::interval(interval);
            loop {
                let stopping = tokio::select! {
                    _ = ticks.tick() => false,
                    () = shutdown.cancelled() => true,
                };
                let end = spool.end();
                if end != synced {
                    let file = Arc::clone(&spool.lock().file);
                    match tokio::task::spawn_blocking(move || file.sync_data()).await {
                        Ok(Ok(())) => synced = end,
                        Ok(Err(error)) => tracing::error!(%error, "cannot fsync the audit spool"),
                        Err(error) => tracing::error!(%error, "audit spool fsync task failed"),
                    }
                }
                if stopping {
                    return;
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves the writer consistent (length is updated last).
        self.inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the current segment (fsynced, so segment order survives a power loss) and opens one at `end`.
    fn roll(&self, writer: &mut Writer, end: u64) -> Result<(), SpoolError> {
        let old = segment_path(&self.inner.dir, writer.base);
        writer.file.sync_data().map_err(io_at(&old))?;
        let path = segment_path(&self.inner.dir, end);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        writer.file = Arc::new(file);
        writer.base = end;
        writer.len = 0;
        writer.segments.push(end);
        Ok(())
    }

    /// Finds the segment whose range holds `position`, and the base of the one after it.
    fn segment_holding(&self, position: u64) -> Option<(u64, Option<u64>)> {
        let writer = self.lock();
        let bases = &writer.segments;
        let index = bases.partition_point(|base| *base <= position);
        if index == 0 {
            // Everything before the first segment was acknowledged and removed.
            return bases.first().map(|first| (*first, bases.get(1).copied()));
        }
        Some((bases[index - 1], bases.get(index).copied()))
    }
}

fn read_frame(reader: &mut impl Read, position: u64, room: u64) -> Result<Vec<u8>, SpoolError> {
    let corrupt = || SpoolError::Corrupt { position };
    let mut header = [0_u8; 8];
    reader.read_exact(&mut header).map_err(|_| corrupt())?;
    let length = u64::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length > MAX_PAYLOAD || HEADER + length > room {
        return Err(corrupt());
    }
    let mut payload = vec![0_u8; usize::try_from(length).map_err(|_| corrupt())?];
    reader.read_exact(&mut payload).map_err(|_| corrupt())?;
    if crc32fast::hash(&payload) != checksum {
        return Err(corrupt());
    }
    Ok(payload)
}

/// Returns how many leading bytes of a segment are whole, valid frames.
fn valid_prefix(path: &Path) -> Result<u64, SpoolError> {
    let file = File::open(path).map_err(io_at(path))?;
    let size = file.metadata().map_err(io_at(path))?.len();
    let mut reader = io::BufReader::new(file);
    let mut valid = 0;
    while valid < size {
        match read_frame(&mut reader, valid, size - valid) {
            Ok(payload) => valid += HEADER + payload.len() as u64,
            Err(_) => {
                tracing::warn!(
                    path = %path.display(),
                    offset = valid,
                    dropped = size - valid,
                    "dropping a torn record at the end of the audit spool (written when the process died)"
                );
                break;
            }
        }
    }
    Ok(valid)
}

/// Opens `path` for writing in place, creating it empty when missing and keeping what it holds.
fn open_for_writing(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_at(path))
}

/// Takes the exclusive lock on `dir`; the OS releases it when the process dies, however.
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join("lock");
    let file = open_for_writing(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.to_owned())),
        Err(fs::TryLockError::Error(source)) => Err(SpoolError::Io { path, source }),
    }
}

fn segment_bases(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        if let Some(base) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".seg"))
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

fn read_cursor(dir: &Path) -> Result<Option<u64>, SpoolError> {
    let path = dir.join("cursor");
    match fs::read_to_string(&path) {
        // Created when the spool opens, written at the first acknowledgement.
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| SpoolError::Corrupt { position: 0 }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SpoolError::Io { path, source }),
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
