//! Cross-module tests: CPython vectors, bsdiff-crate patches, bad and hostile inputs.
use crate::bspatch::ReadAt;
use crate::testdata::{plain, prng_bytes, GZIP_ALL_FLAGS, STREAMS};
use crate::*;
use std::vec;
use std::vec::Vec;

const FORMATS: [Format; 3] = [Format::Raw, Format::Zlib, Format::Gzip];

/// Push-inflate `stream` in `in_chunk`-byte pieces into `out_chunk`-byte buffers.
fn inflate_chunked(format: Format, wbits: u8, stream: &[u8], in_chunk: usize, out_chunk: usize) -> Result<Vec<u8>, Error> {
    let mut inf = Inflater::new();
    inf.init(format, wbits)?;
    let mut window = vec![0u8; window_len(wbits)];
    let mut out = vec![0u8; out_chunk];
    let mut result = Vec::new();
    let mut pos = 0usize;
    // Bounded: every useful call consumes input or writes output.
    for _ in 0..(stream.len() + 4) * 64 + 1_000_000 {
        let end = pos.saturating_add(in_chunk).min(stream.len());
        if end == stream.len() {
            inf.finish_input();
        }
        let p = inf.inflate(&stream[pos..end], &mut window, &mut out)?;
        assert!(p.consumed <= end - pos && p.written <= out.len());
        pos += p.consumed;
        result.extend_from_slice(&out[..p.written]);
        if p.status == Status::Done {
            return Ok(result);
        }
    }
    panic!("inflate did not finish (hang)");
}

fn stream_of(format: Format, s: &crate::testdata::Vector) -> &'static [u8] {
    match format {
        Format::Raw => s.1,
        Format::Zlib => s.2,
        Format::Gzip => s.3,
    }
}

#[test]
fn cpython_streams_at_every_window_decode_with_exactly_that_window() {
    for s in &STREAMS {
        let want = plain(s.0);
        for f in FORMATS {
            for (ic, oc) in [(usize::MAX, 1 << 16), (1, 1), (3, 7), (64, 300), (511, 4096)] {
                let got = inflate_chunked(f, s.0, stream_of(f, s), ic, oc).unwrap();
                assert!(got == want, "w{} {:?} chunks {}/{}", s.0, f, ic, oc);
            }
            // A larger window works too.
            assert!(inflate_chunked(f, 15, stream_of(f, s), 100, 1000).unwrap() == want);
        }
    }
}

#[test]
fn cpython_streams_every_input_chunk_size_1_to_64() {
    let s = &STREAMS[1]; // w10
    let want = plain(s.0);
    for f in FORMATS {
        for ic in 1..=64 {
            assert!(inflate_chunked(f, s.0, stream_of(f, s), ic, 37).unwrap() == want, "{f:?} {ic}");
        }
    }
}

#[test]
fn smaller_window_is_window_too_small_for_zlib_and_an_error_for_raw_gzip() {
    for s in &STREAMS {
        for f in FORMATS {
            let r = inflate_chunked(f, s.0 - 1, stream_of(f, s), 200, 1000);
            match f {
                Format::Zlib => assert_eq!(r, Err(Error::WindowTooSmall), "w{}", s.0),
                // w9 streams never use distances > 250 (zlib's limit): they decode in 256 bytes.
                _ if s.0 == 9 => assert_eq!(r.unwrap(), plain(9)),
                _ => assert_eq!(r, Err(Error::InflateCorrupt), "w{} {f:?}", s.0),
            }
        }
    }
}

#[test]
fn gzip_header_with_all_optional_fields() {
    for ic in [1, 2, 5, 1000] {
        assert!(inflate_chunked(Format::Gzip, 15, GZIP_ALL_FLAGS, ic, 99).unwrap() == plain(10));
    }
    // Corrupt the header CRC (the two bytes before the deflate body).
    let hdr_len = 10 + 2 + 6 + 9 + 10 + 2;
    let mut bad = GZIP_ALL_FLAGS.to_vec();
    bad[hdr_len - 1] ^= 1;
    assert_eq!(inflate_chunked(Format::Gzip, 15, &bad, 3, 99), Err(Error::GzipHeader));
}

#[test]
fn truncated_streams_are_truncated_errors_at_every_length() {
    let s = &STREAMS[0];
    for f in FORMATS {
        let full = stream_of(f, s);
        for cut in 0..full.len() {
            let r = inflate_chunked(f, s.0, &full[..cut], 7, 64);
            assert!(matches!(r, Err(Error::InflateTruncated)), "{f:?} cut {cut}: {r:?}");
        }
    }
}

#[test]
fn bit_flips_never_pass_silently_for_checked_formats() {
    let s = &STREAMS[2];
    for f in [Format::Zlib, Format::Gzip] {
        let full = stream_of(f, s);
        let want = plain(s.0);
        for i in 0..full.len() {
            for bit in [0, 3, 7] {
                let mut bad = full.to_vec();
                bad[i] ^= 1 << bit;
                // Gzip MTIME/XFL/OS bytes are not covered by any check.
                if f == Format::Gzip && (4..10).contains(&i) {
                    continue;
                }
                // Either an error or (a flip in the final padding bits) the right output.
                if let Ok(v) = inflate_chunked(f, s.0, &bad, 64, 512) {
                    assert!(v == want, "{f:?} flip {i}.{bit} gave wrong data without error");
                }
            }
        }
    }
}

#[test]
fn bad_arguments() {
    let mut inf = Inflater::new();
    assert_eq!(inf.init(Format::Raw, 7), Err(Error::BadWindow));
    assert_eq!(inf.inflate(&[1], &mut [0; 128], &mut [0; 4]), Err(Error::BadWindow));
    assert_eq!(inf.init(Format::Raw, 16), Err(Error::BadWindow));
    inf.init(Format::Raw, 8).unwrap();
    // Window of the wrong size.
    assert_eq!(inf.inflate(&[1], &mut [0; 512], &mut [0; 4]), Err(Error::BadWindow));
    assert_eq!(Format::from_code(0), None);
    assert_eq!(Format::from_code(3), Some(Format::Gzip));
    // Uninitialised inflater.
    let mut fresh = Inflater::new();
    assert_eq!(fresh.inflate(&[1], &mut [0; 256], &mut [0; 4]), Err(Error::BadFormat));
}

#[test]
fn trailing_bytes_after_stream_are_not_consumed() {
    let s = &STREAMS[0];
    for f in FORMATS {
        let mut data = stream_of(f, s).to_vec();
        let n = data.len();
        data.extend_from_slice(b"TRAILER");
        let mut inf = Inflater::new();
        inf.init(f, 9).unwrap();
        let mut w = [0u8; 512];
        let mut out = vec![0u8; 1000];
        let p = inf.inflate(&data, &mut w, &mut out).unwrap();
        assert_eq!((p.status, p.consumed, &out[..p.written]), (Status::Done, n, &plain(9)[..]));
        let p = inf.inflate(b"more", &mut w, &mut out).unwrap();
        assert_eq!((p.status, p.consumed, p.written), (Status::Done, 0, 0));
    }
}

#[test]
fn errors_latch_inflate() {
    let mut inf = Inflater::new();
    inf.init(Format::Zlib, 15).unwrap();
    let mut w = vec![0u8; 1 << 15];
    assert_eq!(inf.inflate(&[0x78, 0x00], &mut w, &mut [0; 4]), Err(Error::GzipHeader));
    assert_eq!(inf.inflate(STREAMS[6].2, &mut w, &mut [0; 4]), Err(Error::GzipHeader));
    assert_eq!(inf.error(), Some(Error::GzipHeader));
    inf.init(Format::Zlib, 15).unwrap();
    assert!(inf.error().is_none());
}

#[test]
fn checksums_match_reference_values() {
    assert_eq!(inflate::adler32(1, b"Wikipedia"), 0x11E6_0398);
    assert_eq!(inflate::crc32(0, b"123456789"), 0xCBF4_3926);
    let big = prng_bytes(1, 20000);
    let mut a = 1;
    for c in big.chunks(777) {
        a = inflate::adler32(a, c);
    }
    assert_eq!(a, inflate::adler32(1, &big));
    // The unrolled, division-free adler32 equals the textbook one, including
    // all-0xff data (largest sums) across NMAX boundaries and odd chunk sizes.
    fn naive(adler: u32, data: &[u8]) -> u32 {
        let (mut a, mut b) = (adler & 0xffff, adler >> 16);
        for &x in data {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
    let ff = std::vec![0xffu8; 40000];
    for data in [&big[..], &ff[..]] {
        for chunk in [1usize, 15, 16, 17, 5551, 5552, 5553, 40000] {
            let (mut a, mut want) = (1u32, 1u32);
            for c in data.chunks(chunk) {
                a = inflate::adler32(a, c);
                want = naive(want, c);
            }
            assert_eq!(a, want, "chunk {chunk}");
        }
    }
    assert_eq!(inflate::adler32(0xfff0_fff0, &ff), naive(0xfff0_fff0, &ff));
}

#[test]
fn miniz_oxide_streams_round_trip() {
    for len in [0usize, 1, 100, 5000, 70000] {
        let data = prng_bytes(len as u32 + 1, len).iter().map(|b| b % 7).collect::<Vec<u8>>();
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        assert!(inflate_chunked(Format::Zlib, 15, &z, 333, 1000).unwrap() == data);
        let r = miniz_oxide::deflate::compress_to_vec(&data, 6);
        assert!(inflate_chunked(Format::Raw, 15, &r, 1, 4096).unwrap() == data);
    }
}

// ---------------------------------------------------------------- bspatch

fn make_patch(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    bsdiff::diff(old, new, &mut p).unwrap();
    p
}

/// Old file reader that hides its size (like the Python bindings) and counts reads.
struct Opaque<'a>(&'a [u8], usize);
impl ReadAt for Opaque<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.1 += 1;
        let mut s: &[u8] = self.0;
        s.read_at(offset, buf)
    }
}

fn patch_chunked(old: &[u8], patch: &[u8], new_size: u64, in_chunk: usize, out_chunk: usize, hide_size: bool) -> Result<Vec<u8>, Error> {
    let mut p = Patcher::new(new_size);
    let mut out = vec![0u8; out_chunk];
    let mut result = Vec::new();
    let mut pos = 0usize;
    let mut known: &[u8] = old;
    let mut opaque = Opaque(old, 0);
    for _ in 0..(patch.len() + 4) * 64 + 100_000 {
        let end = pos.saturating_add(in_chunk).min(patch.len());
        if end == patch.len() {
            p.finish_input();
        }
        let r = if hide_size {
            p.patch(&patch[pos..end], &mut opaque, &mut out)?
        } else {
            p.patch(&patch[pos..end], &mut known, &mut out)?
        };
        pos += r.consumed;
        result.extend_from_slice(&out[..r.written]);
        if r.status == Status::Done {
            return Ok(result);
        }
    }
    panic!("bspatch did not finish (hang)");
}

fn varied_pairs() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    let base = prng_bytes(99, 20000).iter().map(|b| b % 16 + b'a').collect::<Vec<u8>>();
    let mut edited = base.clone();
    for i in (0..edited.len()).step_by(997) {
        edited[i] = edited[i].wrapping_add(3);
    }
    edited.splice(5000..5000, b"INSERTED TEXT".iter().copied());
    edited.drain(12000..12500);
    v.push((base.clone(), edited));
    v.push((Vec::new(), b"brand new file".to_vec()));
    v.push((b"old file".to_vec(), Vec::new()));
    v.push((Vec::new(), Vec::new()));
    v.push((base.clone(), base.clone()));
    v.push((prng_bytes(5, 3000), prng_bytes(6, 4000)));
    let mut rev = base.clone();
    rev.reverse();
    v.push((base, rev));
    v
}

#[test]
fn bsdiff_crate_patches_apply_at_any_chunking() {
    for (old, new) in varied_pairs() {
        let patch = make_patch(&old, &new);
        // Differential: the bsdiff crate's own apply agrees.
        let mut reference = Vec::new();
        bsdiff::patch(&old, &mut patch.as_slice(), &mut reference).unwrap();
        assert!(reference == new);
        for (ic, oc, hide) in [(usize::MAX, 1 << 20, false), (1, 1, true), (7, 13, false), (100, 4096, true), (24, 24, false)] {
            let got = patch_chunked(&old, &patch, new.len() as u64, ic, oc, hide).unwrap();
            assert!(got == new, "chunks {ic}/{oc}");
        }
        let mut out = vec![0u8; new.len()];
        apply_patch(&old, &patch, &mut out).unwrap();
        assert!(out == new);
    }
}

#[test]
fn old_file_reads_are_cached_not_per_byte() {
    let (old, new) = varied_pairs().remove(0);
    let patch = make_patch(&old, &new);
    let mut p = Patcher::new(new.len() as u64);
    let mut o = Opaque(&old, 0);
    let mut out = vec![0u8; new.len()];
    for c in patch.chunks(1) {
        let mut done = 0;
        while done < c.len() {
            let r = p.patch(&c[done..], &mut o, &mut out).unwrap();
            done += r.consumed;
        }
    }
    assert!(o.1 <= new.len() / bspatch::SCRATCH + 200, "{} reads", o.1);
}

#[test]
fn wrong_declared_size() {
    let (old, new) = varied_pairs().remove(0);
    let patch = make_patch(&old, &new);
    let n = new.len() as u64;
    assert_eq!(patch_chunked(&old, &patch, n - 1, 50, 100, false), Err(Error::PatchTooLong));
    assert_eq!(patch_chunked(&old, &patch, n + 1, 50, 100, false), Err(Error::PatchTooShort));
    assert_eq!(patch_chunked(&old, &patch, 0, 50, 100, true), Err(Error::PatchTooLong));
}

#[test]
fn truncated_patch_at_every_length() {
    let old = b"the quick brown fox jumps over the lazy dog".to_vec();
    let new = b"the quick red fox jumped over the lazy dogs!".to_vec();
    let patch = make_patch(&old, &new);
    for cut in 0..patch.len() {
        let r = patch_chunked(&old, &patch[..cut], new.len() as u64, 5, 8, cut % 2 == 0);
        assert!(matches!(r, Err(Error::PatchTruncated) | Err(Error::PatchTooShort)), "cut {cut}: {r:?}");
    }
}

fn ctrl(mix: u64, copy: u64, seek: i64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&mix.to_le_bytes());
    v.extend_from_slice(&copy.to_le_bytes());
    let sm = if seek < 0 { (seek.unsigned_abs()) | 1 << 63 } else { seek as u64 };
    v.extend_from_slice(&sm.to_le_bytes());
    v
}

#[test]
fn hostile_control_values() {
    let old = [7u8; 100];
    let cases: Vec<(Vec<u8>, u64, Error, Error)> = vec![
        // (patch, new_size, error with old size known, error with old size hidden)
        (ctrl(u64::MAX, 0, 0), 1000, Error::PatchTooLong, Error::PatchTooLong),
        (ctrl(0, u64::MAX, 0), 1000, Error::PatchTooLong, Error::PatchTooLong),
        (ctrl(500, 600, 0), 1000, Error::PatchTooLong, Error::PatchTooLong),
        (ctrl(0, 0, -1), 10, Error::PatchOldRange, Error::PatchOldRange),
        (ctrl(0, 0, i64::MIN + 1), 10, Error::PatchOldRange, Error::PatchOldRange),
        (ctrl(0, 0, 101), 10, Error::PatchOldRange, Error::PatchTooShort),
        ([ctrl(0, 0, i64::MAX), ctrl(0, 0, i64::MAX)].concat(), 10, Error::PatchOldRange, Error::PatchControl),
        ([ctrl(0, 0, 50), ctrl(51, 0, 0)].concat(), 1000, Error::PatchOldRange, Error::OldRead),
        (ctrl(101, 0, 0), 1000, Error::PatchOldRange, Error::OldRead),
        (ctrl(10, 0, -11), 1000, Error::PatchOldRange, Error::PatchOldRange),
    ];
    for (i, (patch, size, known, hidden)) in cases.iter().enumerate() {
        let mut patch = patch.clone();
        // Enough data bytes for whatever the control asks for.
        patch.extend(std::iter::repeat_n(0, 24 * 46));
        for (hide, want) in [(false, known), (true, hidden)] {
            let r = patch_chunked(&old, &patch, *size, 1000, 64, hide);
            assert_eq!(r, Err(*want), "case {i} hide {hide}");
        }
    }
}

#[test]
fn negative_zero_seek_is_zero() {
    let mut patch = ctrl(0, 0, 0);
    patch[23] = 0x80;
    patch.extend_from_slice(&ctrl(2, 0, 0));
    patch.extend_from_slice(&[1, 1]);
    assert_eq!(patch_chunked(b"ab", &patch, 2, 5, 5, true).unwrap(), b"bc");
}

#[test]
fn seek_to_exact_end_of_old_is_allowed() {
    let old = b"0123456789";
    let mut patch = ctrl(10, 2, 0);
    patch.extend_from_slice(&[1; 10]);
    patch.extend_from_slice(b"!!");
    let got = patch_chunked(old, &patch, 12, 3, 5, false).unwrap();
    assert_eq!(got, b"123456789:!!");
}

#[test]
fn errors_latch_patch() {
    let mut p = Patcher::new(5);
    let mut old: &[u8] = b"abc";
    assert_eq!(p.patch(&ctrl(0, 0, -1), &mut old, &mut [0; 8]), Err(Error::PatchOldRange));
    assert_eq!(p.patch(&ctrl(0, 5, 0), &mut old, &mut [0; 8]), Err(Error::PatchOldRange));
    assert_eq!(p.state(), bspatch::State::Failed);
}

#[test]
fn old_reader_failure_is_passed_through() {
    struct Failing;
    impl ReadAt for Failing {
        fn read_at(&mut self, _: u64, _: &mut [u8]) -> Result<usize, Error> {
            Err(Error::Source)
        }
    }
    let mut p = Patcher::new(5);
    let mut patch = ctrl(5, 0, 0);
    patch.extend_from_slice(&[0; 5]);
    assert_eq!(p.patch(&patch, &mut Failing, &mut [0; 8]), Err(Error::Source));
}

// ---------------------------------------------------------------- pipeline and readers

fn compress(format: Format, data: &[u8]) -> Vec<u8> {
    let raw = miniz_oxide::deflate::compress_to_vec(data, 9);
    match format {
        Format::Raw => raw,
        Format::Zlib => miniz_oxide::deflate::compress_to_vec_zlib(data, 9),
        Format::Gzip => {
            let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
            v.extend_from_slice(&raw);
            v.extend_from_slice(&inflate::crc32(0, data).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v
        }
    }
}

fn delta_chunked(old: &[u8], z: &[u8], new_size: u64, f: Format, wbits: u8, ic: usize, oc: usize) -> Result<(Vec<u8>, [u8; 20]), Error> {
    let mut pipe = DeltaPipeline::new();
    pipe.init(new_size, f, wbits)?;
    let mut window = vec![0u8; window_len(wbits)];
    let mut out = vec![0u8; oc];
    let mut result = Vec::new();
    let mut pos = 0usize;
    let mut o: &[u8] = old;
    for _ in 0..(z.len() + 4) * 64 + 1_000_000 {
        let end = pos.saturating_add(ic).min(z.len());
        if end == z.len() {
            pipe.finish_input();
        }
        let r = pipe.feed(&z[pos..end], &mut window, &mut o, &mut out)?;
        pos += r.consumed;
        result.extend_from_slice(&out[..r.written]);
        if r.status == Status::Done {
            return Ok((result, pipe.digest()?));
        }
        assert_eq!(pipe.digest(), Err(Error::Incomplete));
    }
    panic!("pipeline did not finish (hang)");
}

#[test]
fn pipeline_matches_bsdiff_and_git() {
    for (old, new) in varied_pairs() {
        let patch = make_patch(&old, &new);
        for f in FORMATS {
            let z = compress(f, &patch);
            for (ic, oc) in [(usize::MAX, 1 << 20), (1, 1), (13, 100), (512, 4096)] {
                let (got, digest) = delta_chunked(&old, &z, new.len() as u64, f, 15, ic, oc).unwrap();
                assert!(got == new);
                assert_eq!(digest, blob_sha1(&new));
            }
        }
    }
}

#[test]
fn pipeline_errors() {
    let (old, new) = varied_pairs().remove(0);
    let patch = make_patch(&old, &new);
    let z = compress(Format::Raw, &patch);
    let n = new.len() as u64;
    assert_eq!(delta_chunked(&old, &z, n + 1, Format::Raw, 15, 100, 100).unwrap_err(), Error::PatchTooShort);
    assert_eq!(delta_chunked(&old, &z, n - 1, Format::Raw, 15, 100, 100).unwrap_err(), Error::PatchTooLong);
    assert_eq!(delta_chunked(&old, &z[..z.len() - 3], n, Format::Raw, 15, 100, 100).unwrap_err(), Error::InflateTruncated);
    assert_eq!(delta_chunked(&old, &z, n, Format::Raw, 16, 100, 100).unwrap_err(), Error::BadWindow);
    // The old file differs: bspatch cannot tell, the SHA1 must.
    let mut other = old.clone();
    other[100] ^= 1;
    let (got, digest) = delta_chunked(&other, &z, n, Format::Raw, 15, 100, 100).unwrap();
    assert!(got != new && digest != blob_sha1(&new));
}

/// Source handing out at most `max` bytes per read.
struct Trickle<'a>(&'a [u8], usize);
impl Source for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.0.len().min(buf.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn drain(mut f: impl FnMut(&mut [u8]) -> Result<usize, Error>, oc: usize) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; oc];
    let mut v = Vec::new();
    for _ in 0..10_000_000 {
        let n = f(&mut out)?;
        if n == 0 {
            // 0 is final: it stays 0.
            assert_eq!(f(&mut out)?, 0);
            return Ok(v);
        }
        v.extend_from_slice(&out[..n]);
    }
    panic!("reader did not finish");
}

#[test]
fn readers_match_push_results() {
    let (old, new) = varied_pairs().remove(0);
    let patch = make_patch(&old, &new);
    for (trickle, oc) in [(1usize, 1usize), (100, 7), (4096, 4096)] {
        for s in &STREAMS[..3] {
            for f in FORMATS {
                let mut r = InflateReader::new();
                r.init(f, s.0).unwrap();
                let mut src = Trickle(stream_of(f, s), trickle);
                let mut w = vec![0u8; window_len(s.0)];
                assert!(drain(|o| r.read_into(&mut src, &mut w, o), oc).unwrap() == plain(s.0));
            }
        }
        let mut pr = PatchReader::new(new.len() as u64);
        let mut src = Trickle(&patch, trickle);
        let mut o = Opaque(&old, 0);
        assert!(drain(|out| pr.read_into(&mut src, &mut o, out), oc).unwrap() == new);

        let z = compress(Format::Raw, &patch);
        let mut dr = DeltaReader::new();
        dr.init(new.len() as u64, Format::Raw, 15).unwrap();
        let mut src = Trickle(&z, trickle);
        let mut w = vec![0u8; 1 << 15];
        let mut o = Opaque(&old, 0);
        assert_eq!(dr.digest(), Err(Error::Incomplete));
        assert!(drain(|out| dr.read_into(&mut src, &mut o, &mut w, out), oc).unwrap() == new);
        assert_eq!(dr.digest().unwrap(), blob_sha1(&new));
    }
}

#[test]
fn readers_report_truncation_and_latch_source_errors() {
    let s = &STREAMS[3];
    let full = s.2;
    let mut r = InflateReader::new();
    r.init(Format::Zlib, s.0).unwrap();
    let mut src = Trickle(&full[..full.len() - 1], 50);
    let mut w = vec![0u8; window_len(s.0)];
    assert_eq!(drain(|o| r.read_into(&mut src, &mut w, o), 100), Err(Error::InflateTruncated));
    assert_eq!(r.read_into(&mut src, &mut w, &mut [0; 10]), Err(Error::InflateTruncated));

    struct Broken;
    impl Source for Broken {
        fn read(&mut self, _: &mut [u8]) -> Result<usize, Error> {
            Err(Error::Source)
        }
    }
    r.init(Format::Zlib, s.0).unwrap();
    assert_eq!(r.read_into(&mut Broken, &mut w, &mut [0; 10]), Err(Error::Source));
    assert_eq!(r.read_into(&mut Trickle(full, 9), &mut w, &mut [0; 10]), Err(Error::Source));

    struct Liar;
    impl Source for Liar {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
            Ok(buf.len() + 1)
        }
    }
    r.init(Format::Zlib, s.0).unwrap();
    assert_eq!(r.read_into(&mut Liar, &mut w, &mut [0; 10]), Err(Error::BadArgument));
}

// ---------------------------------------------------------------- hostile generator

/// Mutate a valid input: truncate, flip bits, overwrite with random bytes, splice, or fully random.
fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    match rng.u8(0..6) {
        0 => v.truncate(rng.usize(0..=v.len())),
        1 => {
            for _ in 0..rng.usize(1..8) {
                if !v.is_empty() {
                    let i = rng.usize(0..v.len());
                    v[i] ^= 1 << rng.u8(0..8);
                }
            }
        }
        2 => {
            if !v.is_empty() {
                let i = rng.usize(0..v.len());
                let n = rng.usize(1..32).min(v.len() - i);
                for b in &mut v[i..i + n] {
                    *b = rng.u8(..);
                }
            }
        }
        3 => {
            let i = rng.usize(0..=v.len());
            let extra: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
            v.splice(i..i, extra);
        }
        4 => {
            // Hostile control-like words: extreme u64 values at a random 8-aligned spot.
            if v.len() >= 8 {
                let i = rng.usize(0..v.len() / 8) * 8;
                let w = [0u64, 1, u64::MAX, 1 << 63, (1 << 63) | 1, i64::MAX as u64, rng.u64(..)][rng.usize(0..7)];
                v[i..i + 8].copy_from_slice(&w.to_le_bytes());
            }
        }
        _ => v = (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect(),
    }
    v
}

#[test]
fn hostile_generator_10k_cases_only_errors_never_panic_or_hang() {
    let mut rng = fastrand::Rng::with_seed(0x07A_2024);
    let (old, new) = varied_pairs().remove(5);
    let patch = make_patch(&old, &new);
    let zpatch = [compress(Format::Raw, &patch), compress(Format::Zlib, &patch), compress(Format::Gzip, &patch)];
    let streams: Vec<(Format, u8, &[u8])> = STREAMS[..4]
        .iter()
        .flat_map(|s| FORMATS.iter().map(move |&f| (f, s.0, stream_of(f, s))))
        .collect();
    let (mut ok, mut err) = (0, 0);
    for case in 0..12_000 {
        let ic = [1usize, 3, 64, 100_000][rng.usize(0..4)];
        let oc = [1usize, 17, 4096][rng.usize(0..3)];
        let r = match case % 3 {
            0 => {
                let (f, w, s) = streams[rng.usize(0..streams.len())];
                let w = if rng.u8(0..8) == 0 { rng.u8(8..=15) } else { w };
                inflate_chunked(f, w, &mutate(&mut rng, s), ic, oc).map(|_| ())
            }
            1 => {
                let size = if rng.bool() { new.len() as u64 } else { rng.u64(0..10_000) };
                patch_chunked(&old, &mutate(&mut rng, &patch), size, ic, oc, rng.bool()).map(|_| ())
            }
            _ => {
                let fi = rng.usize(0..3);
                let z = mutate(&mut rng, &zpatch[fi]);
                delta_chunked(&old, &z, new.len() as u64, FORMATS[fi], rng.u8(8..=15), ic, oc).map(|_| ())
            }
        };
        match r {
            Ok(()) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(err > 9_000, "ok {ok} err {err}");
}

// ---------------------------------------------------------------- regressions

#[test]
fn regression_zero_length_out_still_finishes_trailer() {
    // All output delivered, then only the trailer remains: an empty `out` must reach Done.
    let s = &STREAMS[0];
    let mut inf = Inflater::new();
    inf.init(Format::Gzip, 9).unwrap();
    let mut w = [0u8; 512];
    let mut out = vec![0u8; 600];
    let body_end = s.3.len() - 8;
    let p = inf.inflate(&s.3[..body_end], &mut w, &mut out).unwrap();
    assert_eq!(p.written, 600);
    inf.finish_input();
    let p = inf.inflate(&s.3[p.consumed..], &mut w, &mut []).unwrap();
    assert_eq!(p.status, Status::Done);
}
