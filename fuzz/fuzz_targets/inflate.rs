//! Any bytes, any format/window/chunking: inflate must return Ok or Err, never panic or hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_core::{window_len, Format, Inflater, Status};

fuzz_target!(|data: &[u8]| {
    let [fmt, wbits, chunk, out_len, rest @ ..] = data else { return };
    let format = Format::from_code(i32::from(fmt % 3 + 1)).unwrap();
    let wbits = 8 + wbits % 8;
    let chunk = usize::from(*chunk).max(1);
    let mut out = vec![0u8; usize::from(*out_len).max(1)];
    let mut window = vec![0u8; window_len(wbits)];
    let mut inf = Inflater::new();
    inf.init(format, wbits).unwrap();
    let mut pos = 0;
    // Output is bounded by 258 bytes per input bit; every call consumes or writes.
    for _ in 0..rest.len() * 3000 + 100 {
        let end = (pos + chunk).min(rest.len());
        if end == rest.len() {
            inf.finish_input();
        }
        match inf.inflate(&rest[pos..end], &mut window, &mut out) {
            Ok(p) => {
                pos += p.consumed;
                if p.status == Status::Done {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    panic!("no progress");
});
