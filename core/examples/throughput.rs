//! Host throughput of the core (quick figures, not a test): `cargo run --release -p ota_core --example throughput`.
use ota_core::*;
use std::time::Instant;

fn rate(label: &str, bytes: usize, reps: usize, mut f: impl FnMut()) {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let s = t.elapsed().as_secs_f64();
    println!("{label:<40} {:8.1} MB/s", (bytes * reps) as f64 / s / 1e6);
}

fn main() {
    let mut x = 1u32;
    let text: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b"etaoin shrdlu\n"[(x >> 24) as usize % 14]
        })
        .collect();
    rate("blob SHA1 (1 MiB)", text.len(), 50, || {
        std::hint::black_box(blob_sha1(&text));
    });
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&text, 9);
    let mut out = vec![0u8; text.len()];
    let mut window = vec![0u8; 1 << 15];
    rate("inflate zlib w15 (output bytes)", text.len(), 30, || {
        let n = inflate_all(Format::Zlib, 15, &z, &mut window, &mut out).unwrap();
        assert_eq!(n, text.len());
    });
    let mut o = vec![0u8; 4096];
    rate("inflate zlib w15 via 4 KiB out (push)", text.len(), 30, || {
        let mut inf = Inflater::new();
        inf.init(Format::Zlib, 15).unwrap();
        inf.finish_input();
        let mut pos = 0;
        loop {
            let p = inf.inflate(&z[pos..], &mut window, &mut o).unwrap();
            pos += p.consumed;
            if p.status == Status::Done {
                break;
            }
        }
    });
    let mut new = text.clone();
    for i in (0..new.len()).step_by(1000) {
        new[i] ^= 0x20;
    }
    let mut patch = Vec::new();
    bsdiff::diff(&text, &new, &mut patch).unwrap();
    rate("bspatch (output bytes)", new.len(), 30, || {
        apply_patch(&text, &patch, &mut out).unwrap();
    });
    let zp = miniz_oxide::deflate::compress_to_vec(&patch, 9);
    rate("delta pipeline raw w15 (output bytes)", new.len(), 30, || {
        let mut pipe = DeltaPipeline::new();
        pipe.init(new.len() as u64, Format::Raw, 15).unwrap();
        pipe.finish_input();
        let mut old: &[u8] = &text;
        let mut w = vec![0u8; 1 << 15];
        let mut o = vec![0u8; 4096];
        let mut pos = 0;
        loop {
            let p = pipe.feed(&zp[pos..], &mut w, &mut old, &mut o).unwrap();
            pos += p.consumed;
            if p.status == Status::Done {
                break;
            }
        }
        assert_eq!(pipe.digest().unwrap(), blob_sha1(&new));
    });
    println!("sizes: Inflater {} B, Patcher {} B, DeltaPipeline {} B, InflateReader {} B, PatchReader {} B, DeltaReader {} B, BlobHasher {} B",
        core::mem::size_of::<Inflater>(), core::mem::size_of::<Patcher>(), core::mem::size_of::<DeltaPipeline>(),
        core::mem::size_of::<InflateReader>(), core::mem::size_of::<PatchReader>(), core::mem::size_of::<DeltaReader>(),
        core::mem::size_of::<BlobHasher>());
}
