//! `teleport.yaml`: parsed and checked as `teleport start` does (no address resolution, which
//! would ask the system resolver).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = config::parse(text, "fuzz.yaml") {
        let _ = cfg.data_dir();
    }
});
