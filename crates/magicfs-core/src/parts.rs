//! A read's bytes as a list of shared pieces (cached chunks, stored chunk
//! bytes, dirty pages and zeros), so the FUSE layer can hand them to the
//! kernel in one vectored write instead of first joining them in a buffer.

use crate::node::Page;
use magicfs_store::SharedBytes;
use std::io::IoSlice;
use std::sync::Arc;

/// Zeros for holes; a longer hole is sent as several slices of these.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Where a piece's bytes live. Each variant keeps its bytes alive and
/// unchanged while held: chunks are immutable and pages copy-on-write.
#[derive(Clone)]
pub(crate) enum Source {
    /// A decoded chunk from the chunk cache.
    Cached(Arc<Vec<u8>>),
    /// A raw chunk's bytes in the store (a pack mapping or a memory chunk).
    Stored(SharedBytes),
    /// A dirty page not yet committed.
    Page(Arc<Page>),
}

impl Source {
    /// All bytes of the source.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Source::Cached(b) => b,
            Source::Stored(b) => b,
            Source::Page(p) => &p.data,
        }
    }
}

/// `len` bytes of a read: from `src` at `from`, or zeros when `src` is `None`.
struct Piece {
    src: Option<Source>,
    from: usize,
    len: usize,
}

/// The bytes a read returns, in order, as shared pieces.
#[derive(Default)]
pub struct ReadParts {
    pieces: Vec<Piece>,
    len: usize,
}

impl ReadParts {
    /// Appends `len` bytes of `src` starting at `from` (the caller checked
    /// that they exist).
    pub(crate) fn push(&mut self, src: Source, from: usize, len: usize) {
        if len > 0 {
            self.pieces.push(Piece { src: Some(src), from, len });
            self.len += len;
        }
    }

    /// Appends `len` zero bytes.
    pub(crate) fn push_zeros(&mut self, len: usize) {
        if len > 0 {
            self.pieces.push(Piece { src: None, from: 0, len });
            self.len += len;
        }
    }

    /// Number of bytes in the read.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the read returns no bytes (at or past the end of the file).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with each contiguous slice of the read, in order.
    pub fn for_each_slice<'a>(&'a self, mut f: impl FnMut(&'a [u8])) {
        for p in &self.pieces {
            match &p.src {
                Some(s) => f(&s.bytes()[p.from..p.from + p.len]),
                None => {
                    let mut left = p.len;
                    while left > 0 {
                        let n = left.min(ZEROS.len());
                        f(&ZEROS[..n]);
                        left -= n;
                    }
                }
            }
        }
    }

    /// The read as I/O slices for one vectored write.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut v = Vec::with_capacity(self.pieces.len() + 1);
        self.for_each_slice(|s| v.push(IoSlice::new(s)));
        v
    }

    /// Copies the read into `dst`, which must be `len()` bytes long.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let mut at = 0;
        self.for_each_slice(|s| {
            dst[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_zeros_join_in_order() {
        let mut p = ReadParts::default();
        p.push(Source::Cached(Arc::new(b"hello world".to_vec())), 6, 5);
        p.push_zeros(ZEROS.len() + 3);
        p.push(Source::Page(Arc::new(Page { data: b"abc".to_vec() })), 1, 2);
        p.push_zeros(0);
        assert_eq!(p.len(), 5 + ZEROS.len() + 3 + 2);
        assert_eq!(p.io_slices().len(), 4);
        let mut out = vec![1u8; p.len()];
        p.copy_to(&mut out);
        assert_eq!(&out[..5], b"world");
        assert!(out[5..5 + ZEROS.len() + 3].iter().all(|b| *b == 0));
        assert_eq!(&out[out.len() - 2..], b"bc");
    }
}
