//! Resources as `tctl create` and the auth API read them (YAML or JSON, one or many): parsed,
//! validated, and written back; what is written reads back as the same resource.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = resources::parse_kind_ref(text);
    let Ok(all) = resources::parse_resources(text) else {
        return;
    };
    for r in &all {
        let _ = r.validate();
        let _ = (r.kind(), r.version(), r.name());
        if let Ok(yaml) = r.to_yaml() {
            match resources::parse_resource(&yaml) {
                Ok(again) => assert_eq!(&again, r, "changed through YAML:\n{yaml}"),
                Err(e) => panic!("written YAML does not read back: {e}\n{yaml}"),
            }
        }
        if let Ok(json) = r.to_json() {
            match resources::parse_resource(&json) {
                Ok(again) => assert_eq!(&again, r, "changed through JSON:\n{json}"),
                Err(e) => panic!("written JSON does not read back: {e}\n{json}"),
            }
        }
    }
    if let Ok(yaml) = resources::Resource::to_yaml_documents(&all) {
        let again = resources::parse_resources(&yaml);
        assert!(
            again.is_ok(),
            "documents do not read back: {again:?}\n{yaml}"
        );
    }
});
