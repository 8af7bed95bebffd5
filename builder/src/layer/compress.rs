//! Layer compression: gzip (flate2 on zlib-rs), zstd, or none, behind one `Write`.
//!
//! Gzip compresses fixed 1 MiB blocks independently and in parallel (each ends with a sync flush, so the
//! concatenation is one valid deflate stream, as pigz does), inside one gzip member. The block size is fixed, so
//! the bytes out depend only on the bytes in and the level, never on the thread count. Zstd always runs its
//! multi-threaded mode (at least one worker), whose output does not depend on the number of workers.

use std::io::{self, Write};

use flate2::{Compress, Compression as Level, FlushCompress, Status};
use rayon::prelude::*;

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// Parse `gzip`, `gzip:1`, `zstd`, `zstd:19`, `uncompressed`.
    pub fn parse(s: &str) -> Option<Compression> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        match name {
            "gzip" => {
                let level = level.map_or(Some(6), |l| l.parse().ok().filter(|l| *l <= 9))?;
                Some(Compression::Gzip { level })
            }
            "zstd" => {
                let level = level.map_or(Some(3), |l| l.parse().ok().filter(|l| (1..=22).contains(l)))?;
                Some(Compression::Zstd { level })
            }
            "uncompressed" | "none" if level.is_none() => Some(Compression::None),
            _ => None,
        }
    }

    /// The OCI layer media type.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The Docker schema2 layer media type (zstd has none; its OCI type is used).
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
            Compression::Gzip { .. } => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// The fixed block size of parallel gzip.
pub const GZIP_BLOCK: usize = 1 << 20;

/// A compressing writer; `finish` flushes everything and returns the inner writer.
pub enum Compressor<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> std::fmt::Debug for Compressor<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compressor::None(_) => "Compressor::None",
            Compressor::Gzip(_) => "Compressor::Gzip",
            Compressor::Zstd(_) => "Compressor::Zstd",
        })
    }
}

impl<W: Write> Compressor<W> {
    /// `threads`: how many blocks gzip compresses at once, and zstd's worker count (at least 1 either way).
    pub fn new(c: Compression, threads: usize, inner: W) -> io::Result<Self> {
        let threads = threads.max(1);
        Ok(match c {
            Compression::None => Compressor::None(inner),
            Compression::Gzip { level } => Compressor::Gzip(ParallelGzip::new(inner, level, threads)),
            Compression::Zstd { level } => {
                let mut e = zstd::stream::write::Encoder::new(inner, level)?;
                e.multithread(u32::try_from(threads).unwrap_or(1))?;
                e.include_checksum(false)?;
                Compressor::Zstd(e)
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(_) => Ok(()),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

impl<W: Write> std::fmt::Debug for ParallelGzip<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGzip").field("level", &self.level).field("threads", &self.threads).finish()
    }
}

/// Gzip with independently compressed fixed-size blocks, compressed `threads` at a time.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    /// Full blocks waiting to be compressed, and the block being filled (always last).
    pending: Vec<Vec<u8>>,
    crc: crc32fast::Hasher,
    total: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        ParallelGzip {
            inner,
            level,
            threads,
            pending: vec![Vec::with_capacity(GZIP_BLOCK)],
            crc: crc32fast::Hasher::new(),
            total: 0,
            header_written: false,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // Magic, deflate, no flags, mtime 0, no extra flags, OS unknown: no name, no time.
            self.inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Compress every full block (all but the last, which is still filling) and write them in order.
    fn flush_full_blocks(&mut self) -> io::Result<()> {
        if self.pending.len() <= 1 {
            return Ok(());
        }
        self.write_header()?;
        let filling = self.pending.pop().unwrap_or_default();
        let level = self.level;
        let compressed: Vec<io::Result<Vec<u8>>> =
            self.pending.par_iter().map(|b| deflate_block(b, level, false)).collect();
        for c in compressed {
            self.inner.write_all(&c?)?;
        }
        self.pending.clear();
        self.pending.push(filling);
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.flush_full_blocks()?;
        self.write_header()?;
        let last = self.pending.pop().unwrap_or_default();
        self.inner.write_all(&deflate_block(&last, self.level, true)?)?;
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&(self.total as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.total += buf.len() as u64;
        let mut rest = buf;
        while !rest.is_empty() {
            let cur = self.pending.last_mut().ok_or_else(|| io::Error::other("gzip writer finished"))?;
            let take = (GZIP_BLOCK - cur.len()).min(rest.len());
            cur.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if cur.len() == GZIP_BLOCK {
                self.pending.push(Vec::with_capacity(GZIP_BLOCK));
                if self.pending.len() > self.threads * 2 {
                    self.flush_full_blocks()?;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw deflate of one block: a sync flush at the end (byte-aligned, more blocks may follow), or the final block.
fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Level::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(64 * 1024);
        }
        let before = c.total_in();
        let status = c.compress_vec(input, &mut out, flush).map_err(io::Error::other)?;
        input = &input[(c.total_in() - before) as usize..];
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is consumed and there was room left for output.
            Status::Ok | Status::BufError if input.is_empty() && !last && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    #[test]
    fn gzip_round_trips_and_ignores_thread_count() {
        for n in [0, 10, GZIP_BLOCK, GZIP_BLOCK + 1, 3 * GZIP_BLOCK + 12345] {
            let data = sample(n);
            let mut outs = Vec::new();
            for threads in [1, 2, 8] {
                let mut c = Compressor::new(Compression::Gzip { level: 6 }, threads, Vec::new()).unwrap();
                c.write_all(&data).unwrap();
                outs.push(c.finish().unwrap());
            }
            assert!(outs.windows(2).all(|w| w[0] == w[1]), "output differs by thread count for {n} bytes");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&outs[0][..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn zstd_round_trips_and_ignores_thread_count() {
        let data = sample(5 * GZIP_BLOCK);
        let mut outs = Vec::new();
        for threads in [1, 3] {
            let mut c = Compressor::new(Compression::Zstd { level: 3 }, threads, Vec::new()).unwrap();
            c.write_all(&data).unwrap();
            outs.push(c.finish().unwrap());
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(zstd::decode_all(&outs[0][..]).unwrap(), data);
    }

    #[test]
    fn parses_names() {
        assert_eq!(Compression::parse("gzip:1"), Some(Compression::Gzip { level: 1 }));
        assert_eq!(Compression::parse("zstd"), Some(Compression::Zstd { level: 3 }));
        assert_eq!(Compression::parse("uncompressed"), Some(Compression::None));
        assert_eq!(Compression::parse("gzip:12"), None);
        assert_eq!(Compression::parse("lz4"), None);
    }
}
