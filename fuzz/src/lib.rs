//! Helpers shared by the fuzz targets.

/// Splits `data` at NUL bytes into at most `n` parts (the last one keeps any further NULs);
/// missing parts are empty. Lets one input carry several fields (a template and traits, a
/// header and claims) while every part stays a plain text libFuzzer can mutate.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    while out.len() < n {
        out.push(&[]);
    }
    out
}

/// [`parts`] as text (lossy, so every input is used).
pub fn text_parts(data: &[u8], n: usize) -> Vec<String> {
    parts(data, n)
        .into_iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}
