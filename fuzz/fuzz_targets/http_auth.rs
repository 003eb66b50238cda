//! libFuzzer entry for the `http_auth` target; the body and its invariants are in `hs2_fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hs2_fuzz::front::http_auth(data));
