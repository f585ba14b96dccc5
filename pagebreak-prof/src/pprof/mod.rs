//! The gzipped pprof profile: the sample types of Go's and jeprof's heap profiles
//! (`alloc_objects`/count, `alloc_space`/bytes, `inuse_objects`/count, `inuse_space`/bytes),
//! locations with their (inlined) lines, functions and the mappings they came from, already
//! symbolised so viewers need no binaries.

pub mod proto;

use crate::profile::{Profile, View, UNKNOWN_STACK};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;
use std::collections::HashMap;
use std::io::{self, Read, Write};

/// The sample types, in the order of each sample's values.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Interns strings; index 0 is "" as profile.proto requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Builds the pprof message. `view` picks the default sample type viewers open with.
pub fn build(profile: &Profile, view: View) -> proto::Profile {
    let mut strings = Strings::new();
    let sample_type = SAMPLE_TYPES
        .iter()
        .map(|(t, u)| proto::ValueType {
            r#type: strings.get(t),
            unit: strings.get(u),
        })
        .collect();

    // Mappings in the order first used, the main program's first (pprof takes the first
    // mapping for the main binary).
    let mut map_order: Vec<usize> = Vec::new();
    if let Some(exe) = &profile.exe {
        if let Some(i) = profile
            .maps
            .iter()
            .position(|m| m.file() == Some(exe.as_str()) && m.is_executable())
        {
            map_order.push(i);
        }
    }
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<(String, Option<String>), u64> = HashMap::new();
    let mut locations: Vec<proto::Location> = Vec::new();
    let mut location_ids: HashMap<(u64, usize), u64> = HashMap::new();
    let mut mapping_symbolized: HashMap<usize, bool> = HashMap::new();
    let mut samples = Vec::new();
    let mut unknown_location: Option<u64> = None;

    for stack in &profile.stacks {
        let v = &stack.values;
        let value: Vec<i64> = [
            v.alloc_objects,
            v.alloc_space,
            v.inuse_objects,
            v.inuse_space,
        ]
        .iter()
        .map(|x| x.round() as i64)
        .collect();
        if value.iter().all(|&x| x == 0) {
            continue;
        }
        let mut location_id = Vec::with_capacity(stack.addresses.len().max(1));
        if stack.addresses.is_empty() {
            // No addresses: one location of its own, named like the flame graph's frame.
            let id = *unknown_location.get_or_insert_with(|| {
                let function_id = functions.len() as u64 + 1;
                let name = strings.get(UNKNOWN_STACK);
                functions.push(proto::Function {
                    id: function_id,
                    name,
                    system_name: name,
                    filename: 0,
                    start_line: 0,
                });
                let id = locations.len() as u64 + 1;
                locations.push(proto::Location {
                    id,
                    mapping_id: 0,
                    address: 0,
                    line: vec![proto::Line {
                        function_id,
                        line: 0,
                        column: 0,
                    }],
                    is_folded: false,
                });
                id
            });
            location_id.push(id);
        }
        for (depth, &address) in stack.addresses.iter().enumerate() {
            // The leaf may hide inlined allocator frames: a location of its own then.
            let skip = if depth == 0 {
                stack.leaf_inlined_skip
            } else {
                0
            };
            let next_id = locations.len() as u64 + 1;
            let id = *location_ids.entry((address, skip)).or_insert(next_id);
            if id == next_id {
                let r = &profile.resolved[&address];
                let mapping_id = match r.mapping {
                    Some(i) => {
                        *mapping_symbolized.entry(i).or_default() |= r.symbolized;
                        let pos = map_order.iter().position(|&m| m == i).unwrap_or_else(|| {
                            map_order.push(i);
                            map_order.len() - 1
                        });
                        pos as u64 + 1
                    }
                    None => 0,
                };
                let line = r.frames[skip..]
                    .iter()
                    .map(|f| {
                        let key = (f.function.clone(), f.file.clone());
                        let next = functions.len() as u64 + 1;
                        let function_id = *function_ids.entry(key).or_insert(next);
                        if function_id == next {
                            let name = strings.get(&f.function);
                            functions.push(proto::Function {
                                id: function_id,
                                name,
                                system_name: name,
                                filename: f.file.as_deref().map_or(0, |p| strings.get(p)),
                                start_line: 0,
                            });
                        }
                        proto::Line {
                            function_id,
                            line: f.line.map_or(0, i64::from),
                            column: 0,
                        }
                    })
                    .collect();
                locations.push(proto::Location {
                    id,
                    mapping_id,
                    address,
                    line,
                    is_folded: false,
                });
            }
            location_id.push(id);
        }
        samples.push(proto::Sample {
            location_id,
            value,
            label: Vec::new(),
        });
    }

    let mapping = map_order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let m = &profile.maps[i];
            let symbolized = mapping_symbolized.get(&i).copied().unwrap_or(false);
            let file = m.file().unwrap_or(&m.path);
            proto::Mapping {
                id: k as u64 + 1,
                memory_start: m.start,
                memory_limit: m.end,
                file_offset: m.offset,
                filename: strings.get(file),
                build_id: profile.build_ids.get(file).map_or(0, |b| strings.get(b)),
                has_functions: symbolized,
                has_filenames: symbolized,
                has_line_numbers: symbolized,
                has_inline_frames: symbolized,
            }
        })
        .collect();

    let comment = vec![strings.get(&format!(
        "pagebreak heap profile, sampling interval {} bytes{}",
        profile.interval,
        profile.pid.map_or(String::new(), |p| format!(", pid {p}"))
    ))];
    let period_type = Some(proto::ValueType {
        r#type: strings.get("space"),
        unit: strings.get("bytes"),
    });
    let default_sample_type = strings.get(view.name());
    proto::Profile {
        sample_type,
        sample: samples,
        mapping,
        location: locations,
        function: functions,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: profile
            .time
            .map_or(0, |t| (t as i64).saturating_mul(1_000_000_000)),
        duration_nanos: 0,
        period_type,
        period: profile.interval as i64,
        comment,
        default_sample_type,
        string_table: strings.table,
    }
}

/// Writes `profile` as a gzipped protobuf, the form `go tool pprof` reads.
pub fn write_gz(profile: &proto::Profile, out: impl Write) -> io::Result<()> {
    let mut gz = GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())?;
    gz.finish()?.flush()
}

/// Reads a profile back from gzipped (or plain) protobuf bytes.
pub fn read(bytes: &[u8]) -> io::Result<proto::Profile> {
    let plain;
    let data = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut v = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut v)?;
        plain = v;
        &plain[..]
    } else {
        bytes
    };
    proto::Profile::decode(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
