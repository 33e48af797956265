//! Pure: clamd.conf text, Rampart's managed block inside it, and the
//! translation between catalog settings and clamd directives (both ways).
//!
//! ClamAV's option parser keeps the **first** occurrence of a single-valued
//! directive (checked with `clamconf` 1.4: `MaxFileSize 25M` then
//! `MaxFileSize 50M` gives 25M), so the managed block always goes at the
//! top of the file: its values win over any line a person wrote below it,
//! and nothing else in the file is touched. Multi-valued directives
//! (`ExcludePath`, `OnAccessIncludePath`, …) add up across the file.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::providers::Values;

pub const BEGIN: &str = "# BEGIN rampart managed";
pub const END: &str = "# END rampart managed";
const HEADER: &str = "# Written by rampart-agent from its policy; edits inside this block are overwritten. It stays first: ClamAV uses the first occurrence of a directive.";

/// Settings that clamd itself applies (as opposed to clamonacc), so that a
/// change of theirs is in force only once clamd has been restarted.
pub const CLAMD_SETTINGS: [&str; 6] = [
    "scan_archives",
    "pua_protection",
    "max_file_size_mb",
    "max_scan_size_mb",
    "excluded_paths",
    "excluded_extensions",
];

/// A clamd.conf split around the managed block.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfFile {
    /// Every line outside the block, in order.
    outside: Vec<String>,
    /// The block's lines, markers excluded; `None` when there is no block.
    block: Option<Vec<String>>,
    /// Where the block started (line index), to tell what precedes it.
    block_at: usize,
    trailing_newline: bool,
}

impl ConfFile {
    /// Splits `text`; a block with a begin marker and no end marker, or two
    /// blocks, is refused (someone broke it by hand, and guessing where it
    /// ends could eat their configuration).
    pub fn parse(text: &str) -> Result<ConfFile, String> {
        let mut outside = Vec::new();
        let mut block: Option<Vec<String>> = None;
        let mut block_at = 0;
        let mut inside = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with(BEGIN) {
                if inside || block.is_some() {
                    return Err(format!(
                        "line {}: a second \"{BEGIN}\" marker; keep one managed block",
                        n + 1
                    ));
                }
                inside = true;
                block_at = outside.len();
                block = Some(Vec::new());
            } else if t.starts_with(END) {
                if !inside {
                    return Err(format!(
                        "line {}: \"{END}\" without \"{BEGIN}\" before it",
                        n + 1
                    ));
                }
                inside = false;
            } else if inside {
                if let Some(b) = block.as_mut() {
                    b.push(line.to_string());
                }
            } else {
                outside.push(line.to_string());
            }
        }
        if inside {
            return Err(format!(
                "\"{BEGIN}\" has no \"{END}\" after it; fix or remove the managed block"
            ));
        }
        Ok(ConfFile {
            outside,
            block,
            block_at,
            trailing_newline: text.is_empty() || text.ends_with('\n'),
        })
    }

    pub fn block(&self) -> &[String] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// The file with `block` (directive lines) as its managed block, at the
    /// top; an empty block removes the markers too.
    pub fn with_block(&self, block: &[String]) -> String {
        let mut lines: Vec<String> = Vec::new();
        if !block.is_empty() {
            lines.push(BEGIN.to_string());
            lines.push(HEADER.to_string());
            lines.extend(block.iter().cloned());
            lines.push(END.to_string());
        }
        lines.extend(self.outside.iter().cloned());
        let mut text = lines.join("\n");
        if self.trailing_newline || !block.is_empty() {
            text.push('\n');
        }
        text
    }

    /// The first value of `name` outside the block (e.g. clamd's `User`).
    pub fn outside_value(&self, name: &str) -> Option<String> {
        self.outside
            .iter()
            .filter_map(|l| directive(l))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Directives of the block's that a line *above* the block sets again:
    /// ClamAV reads those first, so they win over the block.
    pub fn shadowed(&self) -> Vec<(String, String)> {
        let managed: BTreeSet<String> = self
            .block()
            .iter()
            .filter_map(|l| directive(l))
            .map(|(k, _)| k.to_ascii_lowercase())
            .filter(|k| SINGLE_VALUED.contains(&k.as_str()))
            .collect();
        self.outside[..self.block_at.min(self.outside.len())]
            .iter()
            .filter_map(|l| directive(l))
            .filter(|(k, _)| managed.contains(&k.to_ascii_lowercase()))
            .collect()
    }
}

const SINGLE_VALUED: [&str; 5] = [
    "scanarchive",
    "detectpua",
    "maxfilesize",
    "maxscansize",
    "onaccessprevention",
];

/// `Name value` of a config line; `None` for comments and blank lines.
pub fn directive(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let (name, value) = match t.split_once(char::is_whitespace) {
        Some((n, v)) => (n, v.trim()),
        None => (t, ""),
    };
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((name.to_string(), value.to_string()))
}

/// What rendering needs besides the values.
pub struct RenderContext<'a> {
    /// `on_access_include_paths` of `[providers.clamav]`.
    pub include_paths: &'a [PathBuf],
    /// clamd's own user, left out of on-access scanning so that clamd's
    /// reads never wait on themselves (clamonacc insists on one).
    pub clamd_user: Option<String>,
    /// Whether a path is an existing directory on the device.
    pub is_dir: &'a dyn Fn(&str) -> bool,
}

/// The block's directive lines for `values` (setting → value), in a fixed
/// order. Values ClamAV cannot carry (PUA `audit`, process exclusions) and
/// real-time protection without include paths are left out; the provider
/// reports those.
pub fn render(values: &Values, ctx: &RenderContext<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    if let Some(b) = values.get("scan_archives").and_then(Value::as_bool) {
        out.push(format!("ScanArchive {}", yes_no(b)));
    }
    match values.get("pua_protection").and_then(Value::as_str) {
        Some("block") => out.push("DetectPUA yes".into()),
        Some("off") => out.push("DetectPUA no".into()),
        _ => {}
    }
    if let Some(n) = values.get("max_file_size_mb").and_then(Value::as_i64) {
        out.push(format!("MaxFileSize {n}M"));
    }
    if let Some(n) = values.get("max_scan_size_mb").and_then(Value::as_i64) {
        out.push(format!("MaxScanSize {n}M"));
    }
    let mut folders = Vec::new();
    for path in strings(values.get("excluded_paths")) {
        if !is_safe(&path) {
            continue;
        }
        if path.ends_with('/') || (ctx.is_dir)(&path) {
            let dir = path.trim_end_matches('/');
            out.push(format!("ExcludePath ^{}/", escape(dir)));
            folders.push(if dir.is_empty() {
                "/".to_string()
            } else {
                dir.to_string()
            });
        } else {
            out.push(format!("ExcludePath ^{}$", escape(&path)));
        }
    }
    for ext in strings(values.get("excluded_extensions")) {
        let ext = ext.trim_start_matches('.');
        if is_safe(ext) && !ext.is_empty() {
            out.push(format!("ExcludePath \\.{}$", escape(ext)));
        }
    }
    // clamonacc excludes folders only; an excluded file is still scanned on
    // access (the catalog says so).
    for dir in &folders {
        out.push(format!("OnAccessExcludePath {dir}"));
    }
    match values.get("real_time_protection").and_then(Value::as_bool) {
        Some(true) if !ctx.include_paths.is_empty() => {
            out.push("OnAccessPrevention yes".into());
            for p in ctx.include_paths {
                out.push(format!("OnAccessIncludePath {}", p.display()));
            }
            if let Some(user) = &ctx.clamd_user {
                out.push(format!("OnAccessExcludeUname {user}"));
            }
        }
        Some(false) => out.push("OnAccessPrevention no".into()),
        _ => {}
    }
    out
}

/// The settings a block's lines carry, read back from its directives.
/// `real_time_protection` here is what the block asks for; whether
/// clamonacc runs is the provider's business. A directive that does not
/// read back as a catalog value comes back as its raw text, so that it
/// shows as a mismatch.
pub fn parse(block: &[String]) -> Values {
    let mut values = Values::new();
    let mut paths = Vec::new();
    let mut extensions = Vec::new();
    for (name, value) in block.iter().filter_map(|l| directive(l)) {
        let raw = || Value::String(format!("{name} {value}"));
        match name.to_ascii_lowercase().as_str() {
            "scanarchive" => {
                let v = parse_bool(&value).map_or_else(raw, Value::Bool);
                values.entry("scan_archives".into()).or_insert(v);
            }
            "detectpua" => {
                let v = match parse_bool(&value) {
                    Some(true) => json!("block"),
                    Some(false) => json!("off"),
                    None => raw(),
                };
                values.entry("pua_protection".into()).or_insert(v);
            }
            "maxfilesize" => {
                let v = parse_mb(&value).map_or_else(raw, |n| json!(n));
                values.entry("max_file_size_mb".into()).or_insert(v);
            }
            "maxscansize" => {
                let v = parse_mb(&value).map_or_else(raw, |n| json!(n));
                values.entry("max_scan_size_mb".into()).or_insert(v);
            }
            "excludepath" => {
                if let Some(ext) = value.strip_prefix("\\.").and_then(|v| v.strip_suffix('$')) {
                    extensions.push(unescape(ext));
                } else if let Some(path) = value.strip_prefix('^') {
                    match path.strip_suffix('$') {
                        Some(file) => paths.push(unescape(file)),
                        None => paths.push(unescape(path)),
                    }
                } else {
                    paths.push(value.clone());
                }
            }
            "onaccessprevention" => {
                let v = parse_bool(&value).map_or_else(raw, Value::Bool);
                values.entry("real_time_protection".into()).or_insert(v);
            }
            _ => {}
        }
    }
    if !paths.is_empty() {
        values.insert("excluded_paths".into(), json!(paths));
    }
    if !extensions.is_empty() {
        values.insert("excluded_extensions".into(), json!(extensions));
    }
    values
}

pub use crate::providers::compare::same;

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A value that can go on one clamd.conf line.
pub fn is_safe(s: &str) -> bool {
    !s.contains(['\n', '\r', '\0'])
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// A clamd size (`100M`, `102400K`, `104857600`) in whole megabytes.
fn parse_mb(v: &str) -> Option<i64> {
    let v = v.trim();
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let n: i64 = digits.parse().ok()?;
    let bytes = match unit {
        'b' => n,
        'k' => n.checked_mul(1024)?,
        'm' => n.checked_mul(1024 * 1024)?,
        _ => return None,
    };
    (bytes % (1024 * 1024) == 0).then_some(bytes / (1024 * 1024))
}

const SPECIAL: &[char] = &[
    '\\', '.', '^', '$', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|',
];

/// `s` as a POSIX extended regex matching itself.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, Value)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    fn ctx<'a>(include: &'a [PathBuf], is_dir: &'a dyn Fn(&str) -> bool) -> RenderContext<'a> {
        RenderContext {
            include_paths: include,
            clamd_user: Some("clamav".into()),
            is_dir,
        }
    }

    #[test]
    fn renders_every_directive_in_a_fixed_order() {
        let include = [PathBuf::from("/home"), PathBuf::from("/srv/up load")];
        let is_dir = |p: &str| p == "/var/lib/db";
        let v = values(&[
            ("real_time_protection", json!(true)),
            ("scan_archives", json!(false)),
            ("pua_protection", json!("block")),
            ("max_file_size_mb", json!(200)),
            ("max_scan_size_mb", json!(800)),
            (
                "excluded_paths",
                json!(["/var/lib/db", "/srv/cache/", "/opt/a+b/file.bin"]),
            ),
            ("excluded_extensions", json!([".log", "o"])),
        ]);
        assert_eq!(
            render(&v, &ctx(&include, &is_dir)),
            [
                "ScanArchive no",
                "DetectPUA yes",
                "MaxFileSize 200M",
                "MaxScanSize 800M",
                "ExcludePath ^/var/lib/db/",
                "ExcludePath ^/srv/cache/",
                "ExcludePath ^/opt/a\\+b/file\\.bin$",
                "ExcludePath \\.log$",
                "ExcludePath \\.o$",
                "OnAccessExcludePath /var/lib/db",
                "OnAccessExcludePath /srv/cache",
                "OnAccessPrevention yes",
                "OnAccessIncludePath /home",
                "OnAccessIncludePath /srv/up load",
                "OnAccessExcludeUname clamav",
            ]
        );
    }

    #[test]
    fn what_clamav_cannot_carry_is_left_out() {
        let no_dir = |_: &str| false;
        let v = values(&[
            ("pua_protection", json!("audit")),
            ("excluded_processes", json!(["/usr/bin/app"])),
            ("real_time_protection", json!(true)),
            ("excluded_paths", json!(["/bad\npath"])),
        ]);
        // No include paths: real-time protection cannot be rendered.
        assert!(render(&v, &ctx(&[], &no_dir)).is_empty());
        let off = values(&[("real_time_protection", json!(false))]);
        assert_eq!(render(&off, &ctx(&[], &no_dir)), ["OnAccessPrevention no"]);
    }

    #[test]
    fn parse_reads_back_what_render_wrote() {
        let include = [PathBuf::from("/home")];
        let is_dir = |p: &str| p == "/var/lib/db";
        let v = values(&[
            ("real_time_protection", json!(true)),
            ("scan_archives", json!(true)),
            ("pua_protection", json!("off")),
            ("max_file_size_mb", json!(25)),
            ("max_scan_size_mb", json!(100)),
            ("excluded_paths", json!(["/var/lib/db", "/x/f[1].txt"])),
            ("excluded_extensions", json!(["log"])),
        ]);
        let back = parse(&render(&v, &ctx(&include, &is_dir)));
        assert_eq!(
            back["excluded_paths"],
            json!(["/var/lib/db/", "/x/f[1].txt"])
        );
        for (k, want) in &v {
            assert!(same(want, back.get(k)), "{k}: {want} vs {:?}", back.get(k));
        }
        assert_eq!(back.len(), v.len());
    }

    #[test]
    fn parse_accepts_what_people_write_and_flags_the_rest() {
        let block: Vec<String> = [
            "ScanArchive True",
            "MaxFileSize 104857600",
            "MaxScanSize 409600K",
            "DetectPUA maybe",
            "ExcludePath /no/anchor",
            "# a comment",
            "ScanArchive no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let v = parse(&block);
        assert_eq!(v["scan_archives"], json!(true), "the first occurrence wins");
        assert_eq!(v["max_file_size_mb"], json!(100));
        assert_eq!(v["max_scan_size_mb"], json!(400));
        assert_eq!(v["pua_protection"], json!("DetectPUA maybe"));
        assert_eq!(v["excluded_paths"], json!(["/no/anchor"]));
        assert_eq!(parse_mb("1000000"), None);
        assert_eq!(parse_mb("12Q"), None);
    }

    #[test]
    fn the_block_goes_first_and_the_rest_is_untouched() {
        let text =
            "# clamd.conf\nLocalSocket /run/clamd.ctl\nScanArchive yes\nExcludePath ^/home/me/\n";
        let f = ConfFile::parse(text).unwrap();
        assert!(f.block().is_empty());
        let out = f.with_block(&["ScanArchive no".to_string()]);
        assert_eq!(
            out,
            format!("{BEGIN}\n{HEADER}\nScanArchive no\n{END}\n# clamd.conf\nLocalSocket /run/clamd.ctl\nScanArchive yes\nExcludePath ^/home/me/\n")
        );
        let again = ConfFile::parse(&out).unwrap();
        assert_eq!(
            again.block(),
            [HEADER.to_string(), "ScanArchive no".to_string()]
        );
        assert!(again.shadowed().is_empty());
        // Removing every managed value removes the markers: the file is as
        // it was.
        assert_eq!(again.with_block(&[]), text);
        assert_eq!(
            again.outside_value("localsocket").as_deref(),
            Some("/run/clamd.ctl")
        );
    }

    #[test]
    fn a_block_moved_below_a_directive_is_shadowed_and_moved_back() {
        let text = format!("ScanArchive yes\n{BEGIN}\nScanArchive no\n{END}\nUser clamav\n");
        let f = ConfFile::parse(&text).unwrap();
        assert_eq!(
            f.shadowed(),
            [("ScanArchive".to_string(), "yes".to_string())]
        );
        let out = f.with_block(&["ScanArchive no".to_string()]);
        assert!(out.starts_with(BEGIN), "{out}");
        assert!(ConfFile::parse(&out).unwrap().shadowed().is_empty());
    }

    #[test]
    fn broken_blocks_are_refused() {
        assert!(ConfFile::parse(&format!("{BEGIN}\nScanArchive no\n")).is_err());
        assert!(ConfFile::parse(&format!("{END}\n")).is_err());
        assert!(ConfFile::parse(&format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n")).is_err());
    }

    #[test]
    fn escaping_round_trips() {
        let s = "/srv/a.b+c(d)[e]{f}|g^h$i*j?k\\l";
        assert_eq!(unescape(&escape(s)), s);
        assert_eq!(escape("/tmp/x.y"), "/tmp/x\\.y");
    }
}
