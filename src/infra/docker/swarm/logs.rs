//! A service's logs come from the manager as Docker's multiplexed stream, unframed: each
//! piece of output is preceded by an 8-byte header (stream, three zero bytes, length). The
//! frames are taken apart here, across however the bytes arrive.

use crate::infra::docker::container::LogChunk;

/// Takes frames apart as bytes arrive; keeps a partial frame for the next piece.
#[derive(Debug, Default)]
pub struct Demux {
    pending: Vec<u8>,
}

const HEADER: usize = 8;

impl Demux {
    /// The complete frames in what has arrived so far. Output that does not carry headers
    /// (a terminal's) is passed on as it is.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<LogChunk> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let p = &self.pending;
            if p.is_empty() {
                break;
            }
            let framed = p[0] <= 3 && p.get(1..4).is_none_or(|z| z.iter().all(|b| *b == 0));
            if !framed {
                out.push(LogChunk::Stdout(std::mem::take(&mut self.pending)));
                break;
            }
            if p.len() < HEADER {
                break;
            }
            let len = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
            if p.len() < HEADER + len {
                break;
            }
            let body = p[HEADER..HEADER + len].to_vec();
            out.push(match p[0] {
                // 3 is the engine's own error about the stream (a node that is gone).
                2 | 3 => LogChunk::Stderr(body),
                _ => LogChunk::Stdout(body),
            });
            self.pending.drain(..HEADER + len);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn frames_are_taken_apart_however_the_bytes_arrive() {
        let mut all = frame(1, b"hello\n");
        all.extend(frame(2, b"oops\n"));
        all.extend(frame(3, b"Error grabbing logs"));
        let mut d = Demux::default();
        let mut got = Vec::new();
        for piece in all.chunks(3) {
            got.extend(d.push(piece));
        }
        assert_eq!(
            got,
            [
                LogChunk::Stdout(b"hello\n".to_vec()),
                LogChunk::Stderr(b"oops\n".to_vec()),
                LogChunk::Stderr(b"Error grabbing logs".to_vec()),
            ]
        );
    }

    #[test]
    fn output_without_headers_passes_as_it_is() {
        let mut d = Demux::default();
        assert_eq!(
            d.push(b"plain text\n"),
            [LogChunk::Stdout(b"plain text\n".to_vec())]
        );
    }
}
