//! `tsh ls --query`: Teleport's predicate language as a listing parses it. Any text gives an
//! expression or an error pointing inside the text; an expression evaluates without a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match client::query::Expr::parse(&text) {
        Ok(expr) => {
            let labels = BTreeMap::from([
                ("env".to_string(), "dev".to_string()),
                ("teleport.dev/origin".to_string(), "cloud".to_string()),
            ]);
            let resource = client::query::Resource {
                name: "my-azure-redis",
                description: "Azure Redis server in East US",
                labels: &labels,
            };
            let _ = expr.eval(&resource);
        }
        Err(e) => {
            // `at` counts characters; the end of the text is a valid place.
            assert!(e.at <= text.chars().count(), "{e:?} beyond {text:?}");
            let _ = e.to_string();
        }
    }
});
