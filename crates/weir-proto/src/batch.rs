//! The events of one request, kept as byte ranges over one shared buffer.

use bytes::Bytes;

use crate::time::EventTime;

/// Where one event's record lies in its batch's buffer, and the event's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// The event time (already replaced by the receive time if the client sent 0).
    pub time: EventTime,
    /// Offset of the first byte of the record map.
    pub start: u32,
    /// Offset just after the record map.
    pub end: u32,
}

/// The events of one request without copying: one backing buffer (the request frame, or the
/// decompressed blob) and, per event, its time and the byte range of its record (one msgpack map).
#[derive(Clone, Debug, Default)]
pub struct EventBatch {
    buf: Bytes,
    entries: Vec<EntryRef>,
    byte_len: usize,
    chunk_form: bool,
}

impl EventBatch {
    /// Makes a batch over `buf`. Entries whose range does not lie inside `buf` yield empty
    /// records rather than panicking.
    pub fn new(buf: Bytes, entries: Vec<EntryRef>) -> Self {
        let byte_len = entries
            .iter()
            .map(|e| (e.end as usize).saturating_sub(e.start as usize))
            .sum();
        EventBatch {
            buf,
            entries,
            byte_len,
            chunk_form: false,
        }
    }

    /// Marks the batch as in chunk form when `yes` (see [`EventBatch::in_chunk_form`]); only
    /// the request parser, which has seen every entry's bytes, says so.
    pub(crate) fn in_chunk_form_if(mut self, yes: bool) -> Self {
        self.chunk_form = yes && !self.entries.is_empty();
        self
    }

    /// True when every entry is stored in the buffer exactly as weir's chunks store one, back
    /// to back: a fixarray of 2, the time as the EventTime ext (a fixext 8, the time as sent),
    /// then the record. The bytes from 11 before the first record to the end of the last one
    /// are then a PackedForward blob of exactly these events. False when unknown.
    pub fn in_chunk_form(&self) -> bool {
        self.chunk_form
    }

    /// A batch with no events.
    pub fn empty() -> Self {
        EventBatch::default()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no events.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn slice(&self, e: &EntryRef) -> &[u8] {
        self.buf
            .get(e.start as usize..e.end as usize)
            .unwrap_or(&[])
    }

    /// The events in order: time and record bytes (one msgpack map each).
    pub fn iter(&self) -> impl Iterator<Item = (EventTime, &[u8])> + '_ {
        self.entries.iter().map(move |e| (e.time, self.slice(e)))
    }

    /// The record of event `i` as a zero-copy slice of the backing buffer.
    pub fn record(&self, i: usize) -> Option<Bytes> {
        let e = self.entries.get(i)?;
        if (e.start as usize) <= (e.end as usize) && (e.end as usize) <= self.buf.len() {
            Some(self.buf.slice(e.start as usize..e.end as usize))
        } else {
            None
        }
    }

    /// The time of event `i`.
    pub fn time(&self, i: usize) -> Option<EventTime> {
        self.entries.get(i).map(|e| e.time)
    }

    /// The entry references.
    pub fn entries(&self) -> &[EntryRef] {
        &self.entries
    }

    /// The backing buffer.
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// Sum of the record bytes of all events.
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }
}
