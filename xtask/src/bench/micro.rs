//! Reads criterion's results (`<criterion home>/<group>/<allocator>/new/*.json`) back into
//! a table of medians. xtask is std-only, hence the small JSON reader below.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

/// One criterion benchmark: a case (group) under one allocator (function id).
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub group: String,
    pub allocator: String,
    /// Median time of one iteration, in nanoseconds.
    pub median_ns: f64,
    /// Elements processed per iteration, when the bench declared a throughput.
    pub elements: Option<f64>,
    modified: SystemTime,
}

/// Cases in the order they ran, each with its estimates by allocator.
pub struct MicroTable {
    pub groups: Vec<(String, BTreeMap<String, Estimate>)>,
}

impl MicroTable {
    pub fn get(&self, group: &str, allocator: &str) -> Option<&Estimate> {
        self.groups
            .iter()
            .find(|(g, _)| g == group)
            .and_then(|(_, m)| m.get(allocator))
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Collects every benchmark under `home` whose estimates were written at or after `since`
/// (so results of earlier runs, or of benches since renamed, do not creep in).
pub fn collect(home: &Path, since: SystemTime) -> MicroTable {
    let mut found = Vec::new();
    walk(home, &mut |dir| {
        if dir.file_name().is_some_and(|n| n == "new") {
            if let Some(e) = read_one(dir) {
                if e.modified >= since {
                    found.push(e);
                }
            }
        }
    });
    group_in_run_order(found)
}

fn group_in_run_order(mut found: Vec<Estimate>) -> MicroTable {
    // criterion writes each result as it finishes, so file times give the run order.
    found.sort_by_key(|e| e.modified);
    let mut groups: Vec<(String, BTreeMap<String, Estimate>)> = Vec::new();
    for e in found {
        match groups.iter_mut().find(|(g, _)| *g == e.group) {
            Some((_, m)) => {
                m.insert(e.allocator.clone(), e);
            }
            None => {
                let g = e.group.clone();
                groups.push((g, BTreeMap::from([(e.allocator.clone(), e)])));
            }
        }
    }
    MicroTable { groups }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    f(dir);
    if let Ok(rd) = fs::read_dir(dir) {
        let mut subdirs: Vec<_> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for d in subdirs {
            walk(&d, f);
        }
    }
}

fn read_one(new_dir: &Path) -> Option<Estimate> {
    let est_path = new_dir.join("estimates.json");
    let bench = Json::parse(&fs::read_to_string(new_dir.join("benchmark.json")).ok()?).ok()?;
    let est = Json::parse(&fs::read_to_string(&est_path).ok()?).ok()?;
    Some(Estimate {
        group: bench.get("group_id")?.as_str()?.to_string(),
        allocator: bench.get("function_id")?.as_str()?.to_string(),
        median_ns: est.get("median")?.get("point_estimate")?.as_f64()?,
        elements: bench
            .get("throughput")
            .and_then(|t| t.get("Elements"))
            .and_then(Json::as_f64),
        modified: fs::metadata(&est_path).ok()?.modified().ok()?,
    })
}

/// Just enough JSON for criterion's files.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at {}", p.i));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at {}", c as char, self.i))
        }
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("expected `,` or `]` at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    kv.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(kv));
                        }
                        _ => return Err(format!("expected `,` or `}}` at {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad number at {start}"))
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                            self.i += 4;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_files() {
        let b = Json::parse(
            r#"{"group_id":"malloc_free/16B","function_id":"mimalloc","value_str":null,
                "throughput":{"Elements":1},"full_id":"malloc_free/16B/mimalloc"}"#,
        )
        .unwrap();
        assert_eq!(b.get("group_id").unwrap().as_str(), Some("malloc_free/16B"));
        assert_eq!(b.get("value_str"), Some(&Json::Null));
        assert_eq!(
            b.get("throughput")
                .unwrap()
                .get("Elements")
                .unwrap()
                .as_f64(),
            Some(1.0)
        );
        let e = Json::parse(
            r#"{"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.5e1},
                "point_estimate":151.2022911098519,"standard_error":1.44}, "x": [1, -2.5, true, "a\"b\u00e9"]}"#,
        )
        .unwrap();
        let m = e.get("median").unwrap();
        assert_eq!(
            m.get("point_estimate").unwrap().as_f64(),
            Some(151.2022911098519)
        );
        assert_eq!(
            e.get("x"),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(-2.5),
                Json::Bool(true),
                Json::Str("a\"bé".into())
            ]))
        );
        assert!(Json::parse("{\"a\":1,}").is_err());
        assert!(Json::parse("[1 2]").is_err());
    }

    #[test]
    fn collects_a_criterion_tree_in_run_order() {
        let home = std::env::temp_dir().join(format!("xtask-bench-micro-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        let since = SystemTime::now() - std::time::Duration::from_secs(5);
        for (group, dir, alloc, ns) in [
            ("churn/x", "churn_x", "mimalloc", 100.0),
            ("churn/x", "churn_x", "glibc", 150.0),
            ("pair/16B", "pair_16B", "mimalloc", 5.0),
        ] {
            let d = home.join(dir).join(alloc).join("new");
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("benchmark.json"),
                format!(r#"{{"group_id":"{group}","function_id":"{alloc}","throughput":{{"Elements":1000}}}}"#),
            )
            .unwrap();
            fs::write(
                d.join("estimates.json"),
                format!(r#"{{"median":{{"point_estimate":{ns}}}}}"#),
            )
            .unwrap();
            // Distinct mtimes so the run order is observable.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let t = collect(&home, since);
        let names: Vec<_> = t.groups.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(names, ["churn/x", "pair/16B"]);
        let e = t.get("churn/x", "glibc").unwrap();
        assert_eq!((e.median_ns, e.elements), (150.0, Some(1000.0)));
        assert!(collect(
            &home,
            SystemTime::now() + std::time::Duration::from_secs(60)
        )
        .is_empty());
        fs::remove_dir_all(&home).unwrap();
    }
}
