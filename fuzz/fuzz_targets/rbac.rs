//! Role templates and label matchers with the values users and resources bring (traits from a
//! login, labels from agents' heartbeats, roles from `tctl create`). Parts split at NUL bytes:
//! a template value; traits (`name=v1,v2` per line); patterns (one per line); a value; a role.
//!
//! Globs are checked against the regular expression they stand for.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rbac::{AccessChecker, Traits};

fuzz_target!(|data: &[u8]| {
    let p = teleport_fuzz::text_parts(data, 5);
    let mut traits = Traits::new();
    let mut labels = BTreeMap::new();
    for line in p[1].lines() {
        let (name, values) = line.split_once('=').unwrap_or((line, ""));
        let values: Vec<String> = values.split(',').map(str::to_string).collect();
        labels.insert(
            name.to_string(),
            values.first().cloned().unwrap_or_default(),
        );
        traits.insert(name.to_string(), values);
    }

    // Templates.
    if let Ok(t) = rbac::parse_template(&p[0]) {
        if let Ok(out) = t.interpolate(&traits) {
            assert!(!out.is_empty());
        }
        if !t.is_template() {
            assert_eq!(
                rbac::interpolate(&p[0], &traits).ok(),
                Some(vec![p[0].clone()])
            );
        }
    }

    // Matchers, and globs against their regular expression.
    let patterns: Vec<String> = p[2].lines().map(str::to_string).collect();
    let value = &p[3];
    let _ = rbac::match_value(&patterns, value);
    let selector: resources::Labels = patterns
        .iter()
        .map(|pat| (pat.clone(), vec![value.clone()]))
        .collect();
    let _ = rbac::match_labels(&selector, &labels);
    for pat in &patterns {
        let is_regex = pat.len() >= 2 && pat.starts_with('^') && pat.ends_with('$');
        if is_regex || !pat.contains('*') || value.contains('\n') {
            continue;
        }
        let re = format!(
            "^{}$",
            pat.split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*")
        );
        if let Ok(re) = regex::Regex::new(&re) {
            let got = rbac::match_value(std::slice::from_ref(pat), value);
            assert_eq!(
                got.ok(),
                Some(re.is_match(value)),
                "glob {pat:?} on {value:?}"
            );
        }
    }

    // A role: validated, expanded with the traits, compiled and asked.
    if let Ok(resources::Resource::Role(role)) = resources::parse_resource(&p[4]) {
        let _ = rbac::validate_role(&role);
        let _ = rbac::apply_traits(&role, &traits);
        if let Ok(checker) = AccessChecker::new(vec![role], &traits) {
            let _ = checker.check_access_to_app(&labels);
            let _ = checker.check_access_to_db(&labels, Some(value), Some(value));
            let _ = checker.check_azure_identities(Duration::from_secs(3600));
            let _ = checker.check_azure_identity(value);
        }
    }
});
