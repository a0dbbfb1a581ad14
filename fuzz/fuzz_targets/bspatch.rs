//! Any patch bytes against a fixed old file and a fuzzed declared size: Ok or Err only.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_core::{Patcher, Status};

fuzz_target!(|data: &[u8]| {
    let [s0, s1, chunk, rest @ ..] = data else { return };
    let new_size = u64::from(u16::from_le_bytes([*s0, *s1]));
    let chunk = usize::from(*chunk).max(1);
    let old: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut old_reader: &[u8] = &old;
    let mut out = [0u8; 97];
    let mut p = Patcher::new(new_size);
    let mut pos = 0;
    for _ in 0..rest.len() + new_size as usize + 100 {
        let end = (pos + chunk).min(rest.len());
        if end == rest.len() {
            p.finish_input();
        }
        match p.patch(&rest[pos..end], &mut old_reader, &mut out) {
            Ok(r) => {
                pos += r.consumed;
                if r.status == Status::Done {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    panic!("no progress");
});
