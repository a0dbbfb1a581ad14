//! Compressed "patch" bytes through inflate -> bspatch -> SHA1: Ok or Err only.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_core::{window_len, DeltaPipeline, Format, Status};

fuzz_target!(|data: &[u8]| {
    let [fmt, wbits, s0, s1, rest @ ..] = data else { return };
    let format = Format::from_code(i32::from(fmt % 3 + 1)).unwrap();
    let wbits = 8 + wbits % 8;
    let new_size = u64::from(u16::from_le_bytes([*s0, *s1]));
    let old: Vec<u8> = (0..1000u32).map(|i| (i * 13 % 253) as u8).collect();
    let mut old_reader: &[u8] = &old;
    let mut window = vec![0u8; window_len(wbits)];
    let mut out = [0u8; 211];
    let mut pipe = DeltaPipeline::new();
    pipe.init(new_size, format, wbits).unwrap();
    pipe.finish_input();
    let mut pos = 0;
    for _ in 0..rest.len() * 3000 + new_size as usize + 100 {
        match pipe.feed(&rest[pos..], &mut window, &mut old_reader, &mut out) {
            Ok(r) => {
                pos += r.consumed;
                if r.status == Status::Done {
                    assert!(pipe.digest().is_ok());
                    return;
                }
            }
            Err(_) => return,
        }
    }
    panic!("no progress");
});
