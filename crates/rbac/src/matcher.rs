//! Label selector matching: globs (`*`) and `^...$` regular expressions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

use regex::Regex;
use resources::{Labels, WILDCARD};

use crate::RbacError;

/// One compiled selector value.
#[derive(Debug, Clone)]
pub(crate) enum ValuePattern {
    /// A value without `*`: compared exactly.
    Exact(String),
    /// A glob: the pieces between `*`s (at least two), plus the equivalent regex used
    /// when the target holds a newline (`*` does not cross lines, as in Go).
    Glob { parts: Vec<String>, re: Regex },
    /// A `^...$` regular expression.
    Regex(Regex),
    /// A value that failed to compile; matching it is an error.
    Invalid(RbacError),
}

impl ValuePattern {
    pub(crate) fn compile(value: &str) -> Self {
        if value.len() >= 2 && value.starts_with('^') && value.ends_with('$') {
            return match Regex::new(value) {
                Ok(re) => Self::Regex(re),
                Err(e) => Self::Invalid(RbacError::InvalidRegex {
                    pattern: value.to_string(),
                    reason: e.to_string(),
                }),
            };
        }
        if !value.contains('*') {
            return Self::Exact(value.to_string());
        }
        let parts: Vec<String> = value.split('*').map(str::to_string).collect();
        let pattern = format!(
            "^{}$",
            parts
                .iter()
                .map(|p| regex::escape(p))
                .collect::<Vec<_>>()
                .join("(.*)")
        );
        match Regex::new(&pattern) {
            Ok(re) => Self::Glob { parts, re },
            Err(e) => Self::Invalid(RbacError::InvalidRegex {
                pattern: value.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    pub(crate) fn matches(&self, target: &str) -> Result<bool, RbacError> {
        Ok(match self {
            Self::Exact(s) => s == target,
            Self::Glob { parts, re } => {
                if target.contains('\n') {
                    re.is_match(target)
                } else {
                    glob_match(parts, target)
                }
            }
            Self::Regex(re) => re.is_match(target),
            Self::Invalid(e) => return Err(e.clone()),
        })
    }
}

/// Matches `target` against `a*b*c` given as pieces `[a, b, c]` (at least two pieces).
fn glob_match(parts: &[String], target: &str) -> bool {
    let (Some((first, rest)), true) = (parts.split_first(), parts.len() >= 2) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return false;
    };
    let Some(mut t) = target.strip_prefix(first.as_str()) else {
        return false;
    };
    if t.len() < last.len() || !t.ends_with(last.as_str()) {
        return false;
    }
    t = &t[..t.len() - last.len()];
    for m in middle {
        match t.find(m.as_str()) {
            Some(i) => t = &t[i + m.len()..],
            None => return false,
        }
    }
    true
}

/// The accepted values of one selector key.
#[derive(Debug, Clone)]
pub(crate) enum ValueSet {
    /// The list contains `*`: any value.
    Any,
    /// Any of these (an empty list matches nothing).
    Patterns(Vec<ValuePattern>),
}

/// The distinct label keys used by a set of selectors. A decision looks each key up in the
/// resource's labels once ([`KeyTable::resolve`]), then every selector reads the resolved
/// values by index instead of searching the label map again.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    keys: Vec<String>,
    index: HashMap<String, usize>,
}

impl KeyTable {
    fn intern(&mut self, key: &str) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = self.keys.len();
        self.keys.push(key.to_string());
        self.index.insert(key.to_string(), i);
        i
    }

    /// The resource's value for every key of the table (`None` when absent).
    pub(crate) fn resolve<'a>(&self, labels: &'a BTreeMap<String, String>) -> Vec<Option<&'a str>> {
        let mut out = vec![None; self.keys.len()];
        if self.keys.len() <= labels.len() {
            for (slot, key) in out.iter_mut().zip(&self.keys) {
                *slot = labels.get(key).map(String::as_str);
            }
        } else {
            for (k, v) in labels {
                if let Some(&i) = self.index.get(k) {
                    out[i] = Some(v.as_str());
                }
            }
        }
        out
    }
}

/// A compiled label selector; its keys are indexes into a [`KeyTable`].
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// Absent or `{}`: matches nothing.
    Never,
    /// `'*': '*'`: matches everything, unlabeled resources too.
    All,
    /// Every key must be present with an accepted value.
    Keys(Vec<(usize, ValueSet)>),
}

impl Selector {
    pub(crate) fn compile(labels: Option<&Labels>, table: &mut KeyTable) -> Self {
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            return Self::Never;
        };
        if is_wildcard_selector(labels) {
            return Self::All;
        }
        Self::Keys(
            labels
                .iter()
                .map(|(k, values)| {
                    let set = if values.iter().any(|v| v == WILDCARD) {
                        ValueSet::Any
                    } else {
                        ValueSet::Patterns(
                            values.iter().map(|v| ValuePattern::compile(v)).collect(),
                        )
                    };
                    (table.intern(k), set)
                })
                .collect(),
        )
    }

    pub(crate) fn is_never(&self) -> bool {
        matches!(self, Self::Never)
    }

    pub(crate) fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }

    /// Matches against values resolved with the [`KeyTable`] this selector was compiled with.
    pub(crate) fn matches(&self, resolved: &[Option<&str>]) -> Result<bool, RbacError> {
        match self {
            Self::Never => Ok(false),
            Self::All => Ok(true),
            Self::Keys(keys) => {
                for (key, set) in keys {
                    let Some(value) = resolved.get(*key).copied().flatten() else {
                        return Ok(false);
                    };
                    if let ValueSet::Patterns(patterns) = set {
                        let mut hit = false;
                        for p in patterns {
                            if p.matches(value)? {
                                hit = true;
                                break;
                            }
                        }
                        if !hit {
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            }
        }
    }
}

/// Whether the selector's `*` key holds exactly `['*']`.
pub(crate) fn is_wildcard_selector(labels: &Labels) -> bool {
    labels
        .get(WILDCARD)
        .is_some_and(|v| v.len() == 1 && v[0] == WILDCARD)
}

const CACHE_LIMIT: usize = 4096;

static PATTERN_CACHE: LazyLock<RwLock<HashMap<String, Arc<ValuePattern>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// A compiled pattern from the process-wide cache (bounded: cleared when full).
fn cached_pattern(value: &str) -> Arc<ValuePattern> {
    if let Ok(cache) = PATTERN_CACHE.read() {
        if let Some(p) = cache.get(value) {
            return Arc::clone(p);
        }
    }
    let p = Arc::new(ValuePattern::compile(value));
    if let Ok(mut cache) = PATTERN_CACHE.write() {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(value.to_string(), Arc::clone(&p));
    }
    p
}

/// Whether `labels` satisfy `selector`, with Teleport's rules:
/// an empty selector matches nothing; `'*': '*'` matches everything (unlabeled resources
/// too); otherwise every selector key must exist on the resource (AND) with a value
/// accepted by one of the listed values (OR): `*` accepts any value, `^...$` is a regular
/// expression, anything else a glob where `*` matches any run of characters; `[]` accepts
/// nothing. An invalid regular expression is an error, not a denial.
///
/// Compiled patterns are cached process-wide; [`crate::AccessChecker`] precompiles instead.
pub fn match_labels(
    selector: &Labels,
    labels: &BTreeMap<String, String>,
) -> Result<bool, RbacError> {
    if selector.is_empty() {
        return Ok(false);
    }
    if is_wildcard_selector(selector) {
        return Ok(true);
    }
    for (key, values) in selector {
        let Some(value) = labels.get(key) else {
            return Ok(false);
        };
        if values.iter().any(|v| v == WILDCARD) {
            continue;
        }
        let mut hit = false;
        for v in values {
            if cached_pattern(v).matches(value)? {
                hit = true;
                break;
            }
        }
        if !hit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `value` is accepted by the `patterns` list (exact, glob or regex; `*` any).
pub fn match_value(patterns: &[String], value: &str) -> Result<bool, RbacError> {
    for p in patterns {
        if p == WILDCARD || cached_pattern(p).matches(value)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn g(p: &str, t: &str) -> bool {
        let parts: Vec<String> = p.split('*').map(str::to_string).collect();
        glob_match(&parts, t)
    }

    #[test]
    fn globs() {
        assert!(g("a*", "a"));
        assert!(g("a*", "abc"));
        assert!(!g("a*", "ba"));
        assert!(g("*c", "abc"));
        assert!(g("a*c", "ac"));
        assert!(!g("ab*bc", "abc"));
        assert!(g("ab*bc", "abbc"));
        assert!(g("a*b*c", "axxbyyc"));
        assert!(!g("a*b*c", "axxc"));
        assert!(g("*", ""));
        assert!(g("**", "x"));
        assert!(g("*-*-*", "a-b-c"));
        assert!(!g("*-*-*", "a-bc"));
    }
}
