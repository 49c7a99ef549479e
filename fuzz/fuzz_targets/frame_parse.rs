//! Arbitrary bytes into the frame parser: it must never panic, and whatever it
//! accepts must be exactly what the encoder would have written (so nothing
//! unvalidated can hide in an accepted frame).
#![no_main]

use fchm_codec::container::{Frame, FrameRef};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    match FrameRef::parse(data) {
        Ok(frame) => {
            let bytes = frame.encode().expect("a parsed frame must re-encode");
            assert_eq!(bytes, data, "re-encoding changed the bytes");
            let owned = frame.to_frame();
            assert_eq!(Frame::parse(data).as_ref(), Ok(&owned));
            assert_eq!(owned.encode().as_deref(), Ok(data));
        }
        Err(e) => {
            // Formatting is part of the error path the daemon runs on every
            // rejected payload, so it is fuzzed too.
            let _ = e.to_string();
            // Debug, not ==: a NaN carried in an error is not equal to itself.
            let again = Frame::parse(data).expect_err("owned parse accepted it");
            assert_eq!(format!("{again:?}"), format!("{e:?}"));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Mutations almost never carry a matching CRC, so on their own they would
    // reach the accept path only through the seeds. Checking a copy with the
    // CRC repaired lets the fuzzer explore accepted frames with arbitrary field
    // values as well.
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        let n = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
