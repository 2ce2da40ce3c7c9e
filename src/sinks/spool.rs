//! A bounded, on-disk FIFO of line-protocol batches that survives restarts.
//!
//! Layout: a directory of segment files `<id>.seg` (ids grow) and a `cursor` file naming the first
//! record not yet delivered (`<segment> <offset>`), replaced atomically on every acknowledgement.
//! A record is `len: u32 LE | points: u32 LE | crc32(points ++ payload): u32 LE | payload`.
//! On open, a torn tail (a crash mid-append) is cut off and a record whose checksum fails is moved
//! aside to `corrupt-<segment>-<offset>.bin` with everything after it in that segment, so one bad
//! sector never blocks the queue and is never replayed as data.
//!
//! Must never lose an acknowledged position or reorder records; the only way a record leaves
//! without being delivered is the explicit spool-full policy, and that is counted.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tracing::{error, warn};

const HEADER: u64 = 12;
/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 16 << 20;
/// A fully delivered segment that is still being appended to is recycled beyond this size.
const RECYCLE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, Error>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What happens when a new batch does not fit (`influx.spool_full`).
pub use crate::config::SpoolFull as FullPolicy;

/// Where a record sits; acknowledging it moves the cursor to `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A spooled batch.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: Position,
    pub next: Position,
    pub points: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes written (valid records only).
    len: u64,
    /// Offset and point count of every record, for drops and accounting without re-reading.
    records: VecDeque<(u64, u32)>,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    policy: FullPolicy,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    cursor: Position,
    pending_bytes: u64,
    pending_points: u64,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn checksum(points: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&points.to_le_bytes());
    h.update(payload);
    h.finalize()
}

enum Scan {
    Record(u32, Vec<u8>),
    /// The file ends inside a header or payload: a torn append.
    Torn,
    Corrupt,
    End,
}

fn read_record(f: &mut File, offset: u64, file_len: u64) -> std::io::Result<Scan> {
    if offset == file_len {
        return Ok(Scan::End);
    }
    if offset + HEADER > file_len {
        return Ok(Scan::Torn);
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut h = [0u8; HEADER as usize];
    f.read_exact(&mut h)?;
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let (len, points, crc) = (u64::from(word(0)), word(4), word(8));
    if offset + HEADER + len > file_len {
        return Ok(Scan::Torn);
    }
    let mut payload = vec![0u8; usize::try_from(len).unwrap_or(0)];
    f.read_exact(&mut payload)?;
    if checksum(points, &payload) != crc {
        return Ok(Scan::Corrupt);
    }
    Ok(Scan::Record(points, payload))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, validating what a previous run left.
    pub fn open(dir: &Path, max_bytes: u64, policy: FullPolicy) -> Result<Spool> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // An entry that cannot be read is an error, not a segment skipped (its points would be lost).
        let mut ids: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let name = entry.map_err(io(dir))?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let cursor_path = dir.join("cursor");
        let cursor = match std::fs::read_to_string(&cursor_path) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(str::parse::<u64>);
                match (parts.next(), parts.next()) {
                    (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset },
                    _ => {
                        warn!(path = %cursor_path.display(), "unreadable spool cursor; replaying from the start");
                        Position {
                            segment: 0,
                            offset: 0,
                        }
                    }
                }
            }
            Err(_) => Position {
                segment: 0,
                offset: 0,
            },
        };
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            policy,
            segments: VecDeque::new(),
            writer: None,
            cursor,
            pending_bytes: 0,
            pending_points: 0,
        };
        for id in ids {
            let path = segment_path(dir, id);
            if id < cursor.segment {
                // Fully delivered before the last stop.
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let seg = spool.scan_segment(id)?;
            spool.segments.push_back(seg);
        }
        // Point the cursor at the first record still present.
        match spool.segments.front() {
            Some(first) if first.id != spool.cursor.segment => {
                spool.cursor = Position {
                    segment: first.id,
                    offset: 0,
                };
            }
            None => {
                spool.cursor = Position {
                    segment: spool.cursor.segment,
                    offset: 0,
                };
            }
            Some(_) => {}
        }
        let cursor = spool.cursor;
        if let Some(first) = spool.segments.front_mut() {
            first.records.retain(|(off, _)| *off >= cursor.offset);
        }
        spool.recount();
        Ok(spool)
    }

    fn scan_segment(&self, id: u64) -> Result<Segment> {
        let path = segment_path(&self.dir, id);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let file_len = f.metadata().map_err(io(&path))?.len();
        let mut seg = Segment {
            id,
            len: 0,
            records: VecDeque::new(),
        };
        let mut offset = 0;
        loop {
            match read_record(&mut f, offset, file_len).map_err(io(&path))? {
                Scan::Record(points, payload) => {
                    seg.records.push_back((offset, points));
                    offset += HEADER + payload.len() as u64;
                }
                Scan::End => break,
                Scan::Torn => {
                    warn!(
                        segment = id,
                        offset, "spool ends in a torn record; cutting it off"
                    );
                    f.set_len(offset).map_err(io(&path))?;
                    break;
                }
                Scan::Corrupt => {
                    let aside = self.dir.join(format!("corrupt-{id}-{offset}.bin"));
                    error!(segment = id, offset, aside = %aside.display(), "spool record fails its checksum; moving the rest of the segment aside");
                    let mut rest = Vec::new();
                    f.seek(SeekFrom::Start(offset)).map_err(io(&path))?;
                    f.read_to_end(&mut rest).map_err(io(&path))?;
                    std::fs::write(&aside, rest).map_err(io(&aside))?;
                    f.set_len(offset).map_err(io(&path))?;
                    break;
                }
            }
        }
        seg.len = offset;
        Ok(seg)
    }

    fn recount(&mut self) {
        let cursor = self.cursor;
        self.pending_points = 0;
        self.pending_bytes = 0;
        for seg in &self.segments {
            for (off, points) in &seg.records {
                if seg.id == cursor.segment && *off < cursor.offset {
                    continue;
                }
                self.pending_points += u64::from(*points);
            }
            let start = if seg.id == cursor.segment {
                cursor.offset
            } else {
                0
            };
            self.pending_bytes += seg.len.saturating_sub(start);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending_points == 0 && self.pending_bytes == 0
    }

    pub fn pending_points(&self) -> u64 {
        self.pending_points
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch; returns how many points the full-spool policy dropped (the new batch's
    /// own points under `DropNewest`, the oldest batches' under `DropOldest`).
    pub fn append(&mut self, payload: &[u8], points: u32) -> Result<u64> {
        let size = HEADER + payload.len() as u64;
        let mut dropped = 0;
        if size > self.max_bytes {
            warn!(
                bytes = size,
                "a batch larger than the whole spool was dropped"
            );
            return Ok(u64::from(points));
        }
        while self.pending_bytes + size > self.max_bytes {
            match self.policy {
                FullPolicy::DropNewest => return Ok(u64::from(points)),
                FullPolicy::DropOldest => match self.drop_front() {
                    Some(n) => dropped += u64::from(n),
                    None => break,
                },
            }
        }
        let head_full = self
            .segments
            .back()
            .is_none_or(|s| s.len + size > SEGMENT_BYTES && s.len > 0);
        if head_full || self.writer.is_none() {
            self.start_or_reopen_head(head_full)?;
        }
        let Some(seg) = self.segments.back_mut() else {
            return Ok(dropped);
        };
        let path = segment_path(&self.dir, seg.id);
        let Some(w) = self.writer.as_mut() else {
            return Ok(dropped);
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut buf = Vec::with_capacity(size as usize);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&points.to_le_bytes());
        buf.extend_from_slice(&checksum(points, payload).to_le_bytes());
        buf.extend_from_slice(payload);
        w.seek(SeekFrom::Start(seg.len)).map_err(io(&path))?;
        w.write_all(&buf).map_err(io(&path))?;
        seg.records.push_back((seg.len, points));
        seg.len += size;
        self.pending_bytes += size;
        self.pending_points += u64::from(points);
        Ok(dropped)
    }

    fn start_or_reopen_head(&mut self, new_segment: bool) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let _ = w.sync_data();
        }
        if new_segment || self.segments.is_empty() {
            let id = self
                .segments
                .back()
                .map_or(self.cursor.segment.max(1), |s| s.id + 1);
            self.segments.push_back(Segment {
                id,
                len: 0,
                records: VecDeque::new(),
            });
            if self.segments.len() == 1 {
                self.cursor = Position {
                    segment: id,
                    offset: 0,
                };
            }
        }
        let Some(seg) = self.segments.back() else {
            return Ok(());
        };
        let path = segment_path(&self.dir, seg.id);
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        self.writer = Some(f);
        Ok(())
    }

    /// Drops the oldest undelivered record; its point count, or `None` when empty.
    fn drop_front(&mut self) -> Option<u32> {
        let rec = self.front_position()?;
        let (points, next) = rec;
        self.advance_to(next);
        Some(points)
    }

    /// The point count and next position of the record at the cursor.
    fn front_position(&self) -> Option<(u32, Position)> {
        for seg in &self.segments {
            if seg.id < self.cursor.segment {
                continue;
            }
            let start = if seg.id == self.cursor.segment {
                self.cursor.offset
            } else {
                0
            };
            let mut it = seg.records.iter().skip_while(|(off, _)| *off < start);
            if let Some((_, points)) = it.next() {
                let next_off = it.next().map_or(seg.len, |(o, _)| *o);
                return Some((
                    *points,
                    Position {
                        segment: seg.id,
                        offset: next_off,
                    },
                ));
            }
        }
        None
    }

    /// The oldest undelivered batch, read back from disk.
    pub fn peek(&mut self) -> Result<Option<Record>> {
        loop {
            let Some(seg) = self.segments.iter().find(|s| {
                s.id >= self.cursor.segment
                    && s.records
                        .iter()
                        .any(|(off, _)| s.id > self.cursor.segment || *off >= self.cursor.offset)
            }) else {
                return Ok(None);
            };
            let id = seg.id;
            let start = if id == self.cursor.segment {
                self.cursor.offset
            } else {
                0
            };
            let Some(&(offset, _)) = seg.records.iter().find(|(off, _)| *off >= start) else {
                return Ok(None);
            };
            let path = segment_path(&self.dir, id);
            let mut f = File::open(&path).map_err(io(&path))?;
            let file_len = seg.len;
            match read_record(&mut f, offset, file_len).map_err(io(&path))? {
                Scan::Record(points, payload) => {
                    let at = Position {
                        segment: id,
                        offset,
                    };
                    let next = Position {
                        segment: id,
                        offset: offset + HEADER + payload.len() as u64,
                    };
                    return Ok(Some(Record {
                        at,
                        next,
                        points,
                        payload,
                    }));
                }
                Scan::Torn | Scan::Corrupt | Scan::End => {
                    // The disk changed under us since it was written: skip the record, loudly.
                    error!(
                        segment = id,
                        offset, "spooled record unreadable; skipping it"
                    );
                    match self.front_position() {
                        Some((_, next)) => self.advance_to(next),
                        None => return Ok(None),
                    }
                }
            }
        }
    }

    /// Marks `record` delivered. Ignored if the cursor has moved on (the full policy dropped it).
    pub fn ack(&mut self, record: &Record) -> Result<()> {
        let key = |p: Position| (p.segment, p.offset);
        if key(self.cursor) > key(record.at) {
            return Ok(());
        }
        self.advance_to(record.next);
        self.persist_cursor()
    }

    fn advance_to(&mut self, next: Position) {
        self.cursor = next;
        // Drop delivered record indexes and fully delivered segments.
        loop {
            let is_head = self.segments.len() == 1;
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            if front.id < self.cursor.segment {
                let path = segment_path(&self.dir, front.id);
                let _ = std::fs::remove_file(&path);
                self.segments.pop_front();
                continue;
            }
            let cursor = self.cursor;
            while front
                .records
                .front()
                .is_some_and(|(off, _)| *off < cursor.offset)
            {
                front.records.pop_front();
            }
            if front.records.is_empty()
                && front.len <= cursor.offset
                && (!is_head || front.len >= RECYCLE_BYTES)
            {
                let id = front.id;
                let path = segment_path(&self.dir, id);
                let _ = std::fs::remove_file(&path);
                self.segments.pop_front();
                if is_head {
                    self.writer = None;
                }
                self.cursor = Position {
                    segment: id + 1,
                    offset: 0,
                };
                continue;
            }
            break;
        }
        self.recount();
    }

    fn persist_cursor(&self) -> Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        let dst = self.dir.join("cursor");
        std::fs::write(
            &tmp,
            format!("{} {}\n", self.cursor.segment, self.cursor.offset),
        )
        .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &dst).map_err(io(&dst))
    }

    /// Forces appended records to disk (on shutdown and segment rotation).
    pub fn sync(&mut self) -> Result<()> {
        if let Some(w) = &self.writer {
            let path = self.dir.clone();
            w.sync_data().map_err(io(&path))?;
        }
        self.persist_cursor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = s.peek().expect("peek") {
            out.push(r.payload.clone());
            s.ack(&r).expect("ack");
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut s = Spool::open(dir.path(), 1 << 20, FullPolicy::DropOldest)?;
        for i in 0..10u32 {
            s.append(format!("m v={i} {i}\n").as_bytes(), 1)?;
        }
        assert_eq!(s.pending_points(), 10);
        let first = s.peek()?.expect("a record");
        assert_eq!(first.payload, b"m v=0 0\n");
        s.ack(&first)?;
        let second = s.peek()?.expect("a record");
        s.ack(&second)?;
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20, FullPolicy::DropOldest)?;
        assert_eq!(s.pending_points(), 8);
        let rest = drain(&mut s);
        let expected: Vec<Vec<u8>> = (2..10u32)
            .map(|i| format!("m v={i} {i}\n").into_bytes())
            .collect();
        assert_eq!(rest, expected);
        assert!(s.is_empty());
        // Appending after a full drain and a reopen starts cleanly.
        s.append(b"m v=10 10\n", 1)?;
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20, FullPolicy::DropOldest)?;
        assert_eq!(drain(&mut s), vec![b"m v=10 10\n".to_vec()]);
        Ok(())
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_corrupt_record_set_aside() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut s = Spool::open(dir.path(), 1 << 20, FullPolicy::DropOldest)?;
        s.append(b"a v=1 1\n", 1)?;
        s.append(b"b v=2 2\n", 1)?;
        s.append(b"c v=3 3\n", 1)?;
        s.sync()?;
        drop(s);
        let seg = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .expect("a segment");
        let mut bytes = std::fs::read(&seg)?;
        let rec = (HEADER + 8) as usize;
        // Flip a payload byte of the second record and tear the third.
        bytes[rec + HEADER as usize + 1] ^= 0xff;
        bytes.truncate(rec * 3 - 3);
        std::fs::write(&seg, &bytes)?;
        let mut s = Spool::open(dir.path(), 1 << 20, FullPolicy::DropOldest)?;
        assert_eq!(drain(&mut s), vec![b"a v=1 1\n".to_vec()]);
        let aside = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("corrupt-"));
        assert!(aside, "the corrupt record is kept for inspection");
        Ok(())
    }

    #[test]
    fn the_full_policy_is_explicit_and_counted() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let rec = HEADER + 8;
        let mut s = Spool::open(&dir.path().join("old"), rec * 3, FullPolicy::DropOldest)?;
        let mut dropped = 0;
        for i in 0..5u32 {
            dropped += s.append(format!("m v={i} {i}\n").as_bytes(), 2)?;
        }
        assert_eq!(dropped, 4);
        let kept = drain(&mut s);
        assert_eq!(kept[0], b"m v=2 2\n");
        assert_eq!(kept.len(), 3);

        let mut s = Spool::open(&dir.path().join("new"), rec * 3, FullPolicy::DropNewest)?;
        let mut dropped = 0;
        for i in 0..5u32 {
            dropped += s.append(format!("m v={i} {i}\n").as_bytes(), 2)?;
        }
        assert_eq!(dropped, 4);
        let kept = drain(&mut s);
        assert_eq!(kept[0], b"m v=0 0\n");
        assert_eq!(kept.len(), 3);
        Ok(())
    }

    #[test]
    fn segments_rotate_and_are_removed_once_delivered() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut s = Spool::open(dir.path(), 1 << 30, FullPolicy::DropOldest)?;
        let big = vec![b'x'; 4 << 20];
        for _ in 0..9 {
            s.append(&big, 1)?;
        }
        let segs = |d: &Path| {
            std::fs::read_dir(d)
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                        .count()
                })
                .unwrap_or(0)
        };
        assert!(segs(dir.path()) >= 3);
        assert_eq!(drain(&mut s).len(), 9);
        assert!(segs(dir.path()) <= 1);
        Ok(())
    }
}
