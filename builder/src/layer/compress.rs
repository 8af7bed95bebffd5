//! Layer compression: gzip (flate2 on zlib-rs), zstd, or none, behind one `Write`.
//!
//! Gzip compresses fixed 1 MiB blocks independently and in parallel (each ends with a sync flush, so the
//! concatenation is one valid deflate stream, as pigz does), inside one gzip member. The block size is fixed, so
//! the bytes out depend only on the bytes in and the level, never on the thread count. Zstd always runs its
//! multi-threaded mode (at least one worker), whose output does not depend on the number of workers.

use std::io::{self, Write};

use flate2::{Compress, Compression as Level, FlushCompress, Status};
use std::collections::VecDeque;
use std::sync::mpsc::Receiver;

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

    /// The form [`Compression::parse`] reads back: `gzip:6`, `zstd:3`, `uncompressed`.
    pub fn spec(self) -> String {
        match self {
            Compression::None => "uncompressed".into(),
            Compression::Gzip { level } => format!("gzip:{level}"),
            Compression::Zstd { level } => format!("zstd:{level}"),
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

/// Gzip with independently compressed fixed-size blocks. Full blocks are compressed on the thread pool while the
/// writer goes on filling the next ones (so reading, tar and hashing overlap with compression); at most
/// `2 × threads` blocks are in flight, and their results are written in order.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    /// The block being filled.
    filling: Vec<u8>,
    /// Blocks being compressed, oldest first.
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
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
            filling: Vec::with_capacity(GZIP_BLOCK),
            in_flight: VecDeque::new(),
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

    /// Hand the full block to the pool; write finished blocks while too many are in flight.
    fn submit_full_block(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.filling, Vec::with_capacity(GZIP_BLOCK));
        let level = self.level;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if rayon::current_thread_index().is_some() {
            // Already on the pool: waiting there for the pool could starve it, so compress here.
            let _ = tx.send(deflate_block(&block, level, false));
        } else {
            rayon::spawn(move || {
                let _ = tx.send(deflate_block(&block, level, false));
            });
        }
        self.in_flight.push_back(rx);
        while self.in_flight.len() > self.threads * 2 {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.in_flight.pop_front() else { return Ok(()) };
        let compressed = rx.recv().map_err(|_| io::Error::other("a compression worker stopped"))??;
        self.write_header()?;
        self.inner.write_all(&compressed)
    }

    pub fn finish(mut self) -> io::Result<W> {
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.write_header()?;
        let last = std::mem::take(&mut self.filling);
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
            let take = (GZIP_BLOCK - self.filling.len()).min(rest.len());
            self.filling.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.filling.len() == GZIP_BLOCK {
                self.submit_full_block()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw deflate of one block: a sync flush at the end (byte-aligned, more blocks may follow), or the final block.
/// Parts of the block that look incompressible (random or already compressed data) are written as stored deflate
/// blocks instead of being run through the compressor, which would spend most of its time on them for nothing.
fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let runs = if level == 0 { vec![(0..data.len(), false)] } else { classify_runs(data) };
    let mut compressor: Option<Compress> = None;
    for (i, (range, stored)) in runs.iter().enumerate() {
        let final_run = last && i + 1 == runs.len();
        if *stored {
            write_stored(&mut out, &data[range.clone()], final_run);
            compressor = None;
            continue;
        }
        let c = match &mut compressor {
            Some(c) => c,
            None => {
                let mut c = Compress::new(Level::new(level), false);
                // The decompressor's window holds what came before in this block: let matches reach into it
                // (unless all of it is the incompressible run just stored, where no match would be found).
                let stored_before = if i > 0 { runs[i - 1].0.len() } else { 0 };
                if range.start > 0 && stored_before < WINDOW {
                    c.set_dictionary(&data[range.start.saturating_sub(WINDOW)..range.start])
                        .map_err(io::Error::other)?;
                }
                compressor.insert(c)
            }
        };
        deflate_run(c, &data[range.clone()], final_run, &mut out)?;
    }
    if runs.is_empty() && last {
        deflate_run(&mut Compress::new(Level::new(level), false), &[], true, &mut out)?;
    }
    Ok(out)
}

/// Deflate's window: how far back a match may reach.
const WINDOW: usize = 32 * 1024;
/// The unit whose compressibility is judged.
const PROBE: usize = 16 * 1024;
/// Bits of entropy per byte above which a probe is stored as it is: random data measures 7.99 over 16 KiB, text
/// 4 to 5, machine code about 6. Data this dense gains nothing from deflate but costs the most time in it.
const STORE_ENTROPY: f64 = 7.95;

/// Split a block into runs of compressible and incompressible (`true`) probes, adjacent runs of the same kind
/// merged. Only full probes are judged incompressible.
fn classify_runs(data: &[u8]) -> Vec<(std::ops::Range<usize>, bool)> {
    let mut runs: Vec<(std::ops::Range<usize>, bool)> = Vec::new();
    for (i, probe) in data.chunks(PROBE).enumerate() {
        let stored = probe.len() == PROBE && byte_entropy(probe) > STORE_ENTROPY;
        let start = i * PROBE;
        match runs.last_mut() {
            Some((range, kind)) if *kind == stored => range.end = start + probe.len(),
            _ => runs.push((start..start + probe.len(), stored)),
        }
    }
    runs
}

/// Shannon entropy of the byte distribution, in bits per byte.
fn byte_entropy(data: &[u8]) -> f64 {
    // Four tables, so that runs of one byte value do not wait on each other's increments (text has long runs).
    let mut tables = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        tables[0][q[0] as usize] += 1;
        tables[1][q[1] as usize] += 1;
        tables[2][q[2] as usize] += 1;
        tables[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        tables[0][b as usize] += 1;
    }
    let n = data.len() as f64;
    (0..256)
        .map(|i| tables[0][i] + tables[1][i] + tables[2][i] + tables[3][i])
        .filter(|&c| c > 0)
        .map(|c| f64::from(c) / n)
        .map(|p| -p * p.log2())
        .sum()
}

/// Stored deflate blocks (at most 65,535 bytes each) holding `data`; the stream is byte-aligned before and after.
fn write_stored(out: &mut Vec<u8>, data: &[u8], final_run: bool) {
    let pieces: Vec<&[u8]> = data.chunks(u16::MAX as usize).collect();
    for (i, piece) in pieces.iter().enumerate() {
        // BFINAL and BTYPE=00 in the low bits of one byte; the rest of the byte is padding.
        out.push(u8::from(final_run && i + 1 == pieces.len()));
        let len = piece.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// Feed one run to a compressor, ending with a sync flush (byte-aligned) or, for the last, the final block.
fn deflate_run(c: &mut Compress, data: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(64 * 1024);
        }
        let before = c.total_in();
        let status = c.compress_vec(input, out, flush).map_err(io::Error::other)?;
        input = &input[(c.total_in() - before) as usize..];
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is consumed and there was room left for output.
            Status::Ok | Status::BufError if input.is_empty() && !last && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(())
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
    fn incompressible_parts_are_stored_and_the_stream_round_trips() {
        // Random probes between text, at and across block boundaries, and a random tail as the final block.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let text = |n: usize| -> Vec<u8> { b"compressible text 0123456789 ".iter().copied().cycle().take(n).collect() };
        let mut data = Vec::new();
        for part in [text(40_000), random(100_000), text(70_000), random(GZIP_BLOCK), text(5), random(3 * PROBE)] {
            data.extend(part);
        }
        let mut c = Compressor::new(Compression::Gzip { level: 6 }, 2, Vec::new()).unwrap();
        c.write_all(&data).unwrap();
        let out = c.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // The random parts cost their size plus block headers; the text almost nothing.
        let random_len = 100_000 + GZIP_BLOCK + 3 * PROBE;
        assert!(out.len() < random_len + random_len / 100 + 2_000, "{} bytes for {random_len} random", out.len());
        assert!(classify_runs(&random(PROBE * 4)).iter().all(|(_, stored)| *stored));
        assert!(classify_runs(&text(PROBE * 4)).iter().all(|(_, stored)| !*stored));
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
