//! Server-Sent-Events framing shared by the stream parser and the usage-chunk filter: where a
//! line ends, how a line splits into field and value, and what the `data` of a complete event
//! is — per the WHATWG SSE spec (`\r\n`, `\n` and a lone `\r` all end a line; a blank line ends
//! an event; one space after the colon is dropped; `data` values join with `\n`).
//!
//! Not for: keeping state across chunks (each caller keeps its own: the parser per line, the
//! filter per event), or reading the JSON inside an event.

use std::borrow::Cow;

/// Where a line that starts at some offset ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineEnd {
    /// Offset of the terminator: the line's content ends here.
    pub(crate) content_end: usize,
    /// Offset where the next line starts (after `\n`, `\r` or `\r\n`).
    pub(crate) next_start: usize,
    /// The terminator is a `\r` that was the last byte: a `\n` at the start of the next chunk is
    /// the second half of this terminator, not an empty line.
    pub(crate) cr_at_end: bool,
}

/// The end of the line starting at `from`, or None when its terminator has not arrived yet.
pub(crate) fn next_line_end(bytes: &[u8], from: usize) -> Option<LineEnd> {
    let rest = bytes.get(from..)?;
    let offset = find_line_break(rest)?;
    let content_end = from + offset;
    let (next_start, cr_at_end) = match (rest[offset], rest.get(offset + 1)) {
        (b'\r', Some(b'\n')) => (content_end + 2, false),
        (b'\r', None) => (content_end + 1, true),
        _ => (content_end + 1, false),
    };
    Some(LineEnd {
        content_end,
        next_start,
        cr_at_end,
    })
}

/// The offset of the first `\n` or `\r`. Every byte of every answer goes through this, so it
/// tests eight bytes at a time (the classic "has a zero byte" word trick) before the last few
/// one by one.
fn find_line_break(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let mut checked = 0;
    for word in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let word = u64::from_ne_bytes(word);
        if has_zero_byte(word ^ LFS) || has_zero_byte(word ^ CRS) {
            break;
        }
        checked += 8;
    }
    bytes[checked..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|offset| checked + offset)
}

/// A line without its terminator, split into field name and value. A comment (`: ...`) has an
/// empty name; a line without a colon is a field with an empty value.
pub(crate) fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[]),
    }
}

/// The `data` of one complete event block (its lines up to and including the blank line): the
/// `data` values joined with `\n`, borrowed when there is only one. None when the block has no
/// `data` field, which the SSE spec says is not dispatched at all.
pub(crate) fn event_data(block: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut data: Option<Cow<'_, [u8]>> = None;
    let mut from = 0;
    loop {
        let (content_end, next_start) = match next_line_end(block, from) {
            Some(end) => (end.content_end, end.next_start),
            None if from < block.len() => (block.len(), block.len()),
            None => break,
        };
        let (name, value) = split_field(&block[from..content_end]);
        if name == b"data" {
            data = Some(match data {
                None => Cow::Borrowed(value),
                Some(joined) => {
                    let mut joined = joined.into_owned();
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                    Cow::Owned(joined)
                }
            });
        }
        from = next_start;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<(&[u8], bool)> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(end) = next_line_end(bytes, from) {
            out.push((&bytes[from..end.content_end], end.cr_at_end));
            from = end.next_start;
        }
        out
    }

    #[test]
    fn every_terminator_ends_a_line() {
        let got = lines(b"a\nb\r\nc\rd\r");
        let want: Vec<(&[u8], bool)> =
            vec![(b"a", false), (b"b", false), (b"c", false), (b"d", true)];
        assert_eq!(got, want);
        assert_eq!(next_line_end(b"no end yet", 0), None);
        assert_eq!(next_line_end(b"x\n", 5), None);
    }

    #[test]
    fn finds_the_first_break_at_any_offset() {
        for len in 0..40 {
            for at in 0..len {
                for brk in [b'\n', b'\r'] {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = brk;
                    if at + 1 < len {
                        bytes[len - 1] = b'\n';
                    }
                    assert_eq!(find_line_break(&bytes), Some(at), "len {len} at {at}");
                }
            }
            assert_eq!(find_line_break(&vec![0x8a; len]), None, "len {len}");
        }
    }

    #[test]
    fn fields_drop_exactly_one_space() {
        assert_eq!(split_field(b"data: x"), (&b"data"[..], &b"x"[..]));
        assert_eq!(split_field(b"data:  x"), (&b"data"[..], &b" x"[..]));
        assert_eq!(split_field(b"data:x:y"), (&b"data"[..], &b"x:y"[..]));
        assert_eq!(split_field(b"data"), (&b"data"[..], &b""[..]));
        assert_eq!(split_field(b": ping"), (&b""[..], &b"ping"[..]));
    }

    #[test]
    fn data_lines_join_with_newlines() {
        let block = b": c\nevent: e\r\ndata: {\"a\":\ndata: 1}\nid: 7\n\n";
        assert_eq!(event_data(block).as_deref(), Some(&b"{\"a\":\n1}"[..]));
        assert_eq!(event_data(b"data: x\n\n").as_deref(), Some(&b"x"[..]));
        assert_eq!(event_data(b"data: x"), Some(Cow::Borrowed(&b"x"[..])));
        assert_eq!(event_data(b"event: ping\n\n"), None);
        assert_eq!(event_data(b"\n"), None);
    }
}
