//! remote_write v1's protobuf messages, encoded by hand.
//!
//! `WriteRequest { repeated TimeSeries timeseries = 1; }`,
//! `TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; }`,
//! `Label { string name = 1; string value = 2; }`,
//! `Sample { double value = 1; int64 timestamp = 2; }` (milliseconds).
//! Four small messages: writing them directly avoids protoc at build time
//! and a code generator for ~100 lines. [`decode`] reads them back, for
//! tests and the benchmark; it never panics on hostile input.

/// One series: labels (with `__name__`, sorted by name) and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeries {
    /// Label pairs, sorted by name, `__name__` among them.
    pub labels: Vec<(String, String)>,
    /// `(value, timestamp in milliseconds)`.
    pub samples: Vec<(f64, i64)>,
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string_field_len(s: &str) -> usize {
    1 + varint_len(s.len() as u64) + s.len()
}

fn label_len(name: &str, value: &str) -> usize {
    string_field_len(name) + string_field_len(value)
}

fn sample_len(ts: i64) -> usize {
    1 + 8 + 1 + varint_len(ts as u64)
}

fn series_len(s: &TimeSeries) -> usize {
    let labels: usize = s
        .labels
        .iter()
        .map(|(k, v)| {
            let l = label_len(k, v);
            1 + varint_len(l as u64) + l
        })
        .sum();
    let samples: usize = s
        .samples
        .iter()
        .map(|(_, ts)| {
            let l = sample_len(*ts);
            1 + varint_len(l as u64) + l
        })
        .sum();
    labels + samples
}

/// Append a `WriteRequest` holding `series` to `out` (uncompressed).
pub fn encode(series: &[TimeSeries], out: &mut Vec<u8>) {
    for s in series {
        out.push(0x0a); // timeseries, field 1, length-delimited
        put_varint(out, series_len(s) as u64);
        for (k, v) in &s.labels {
            out.push(0x0a); // labels, field 1
            put_varint(out, label_len(k, v) as u64);
            out.push(0x0a); // name
            put_varint(out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
            out.push(0x12); // value
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v.as_bytes());
        }
        for (value, ts) in &s.samples {
            out.push(0x12); // samples, field 2
            put_varint(out, sample_len(*ts) as u64);
            out.push(0x09); // value, field 1, 64-bit
            out.extend_from_slice(&value.to_le_bytes());
            out.push(0x10); // timestamp, field 2, varint
            put_varint(out, *ts as u64);
        }
    }
}

/// A `WriteRequest` that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed remote_write protobuf: {0}")]
pub struct DecodeError(&'static str);

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError("field longer than the message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field: number and, for length-delimited ones, the payload;
    /// fixed and varint payloads as a u64 in `Value::Int`.
    fn field(&mut self) -> Result<(u64, Value<'a>), DecodeError> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Int(self.varint()?),
            1 => {
                let b = self.bytes(8)?;
                Value::Int(u64::from_le_bytes(
                    b.try_into().map_err(|_| DecodeError("fixed64"))?,
                ))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| DecodeError("length"))?;
                Value::Bytes(self.bytes(n)?)
            }
            5 => {
                let b = self.bytes(4)?;
                Value::Int(u64::from(u32::from_le_bytes(
                    b.try_into().map_err(|_| DecodeError("fixed32"))?,
                )))
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok((key >> 3, value))
    }
}

enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError("a string is not UTF-8"))
}

/// Decode an uncompressed `WriteRequest`; unknown fields are skipped.
pub fn decode(buf: &[u8]) -> Result<Vec<TimeSeries>, DecodeError> {
    let mut out = Vec::new();
    let mut r = Reader { buf };
    while !r.buf.is_empty() {
        let (1, Value::Bytes(ts)) = r.field()? else {
            continue;
        };
        let mut series = TimeSeries {
            labels: Vec::new(),
            samples: Vec::new(),
        };
        let mut r = Reader { buf: ts };
        while !r.buf.is_empty() {
            match r.field()? {
                (1, Value::Bytes(label)) => {
                    let (mut name, mut value) = (String::new(), String::new());
                    let mut r = Reader { buf: label };
                    while !r.buf.is_empty() {
                        match r.field()? {
                            (1, Value::Bytes(b)) => name = utf8(b)?,
                            (2, Value::Bytes(b)) => value = utf8(b)?,
                            _ => {}
                        }
                    }
                    series.labels.push((name, value));
                }
                (2, Value::Bytes(sample)) => {
                    let (mut value, mut ts) = (0.0, 0);
                    let mut r = Reader { buf: sample };
                    while !r.buf.is_empty() {
                        match r.field()? {
                            (1, Value::Int(v)) => value = f64::from_bits(v),
                            (2, Value::Int(v)) => ts = v as i64,
                            _ => {}
                        }
                    }
                    series.samples.push((value, ts));
                }
                _ => {}
            }
        }
        out.push(series);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<TimeSeries> {
        vec![
            TimeSeries {
                labels: vec![
                    ("__name__".into(), "onion_service_reachable".into()),
                    ("name".into(), "ünïcode \"quoted\"".into()),
                ],
                samples: vec![(1.0, 1_764_650_000_123), (f64::INFINITY, -5)],
            },
            TimeSeries {
                labels: vec![("__name__".into(), "x".repeat(300))],
                samples: vec![(-0.25, 0)],
            },
        ]
    }

    #[test]
    fn a_known_message_is_byte_exact() {
        // timeseries { labels { name: "a" value: "b" } samples { value: 1 timestamp: 2 } },
        // worked out by hand from the protobuf encoding rules.
        let mut out = Vec::new();
        encode(
            &[TimeSeries {
                labels: vec![("a".into(), "b".into())],
                samples: vec![(1.0, 2)],
            }],
            &mut out,
        );
        let want = [
            0x0a, 0x15, // timeseries, 21 bytes
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', // label
            0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x02, // sample
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn encoding_round_trips() {
        let mut out = Vec::new();
        encode(&series(), &mut out);
        assert_eq!(decode(&out).unwrap(), series());
    }

    #[test]
    fn hostile_input_errors_without_panicking() {
        let mut good = Vec::new();
        encode(&series(), &mut good);
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        assert!(decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode(&[0xff; 11]).is_err());
        assert!(decode(&[0x0b]).is_err(), "wire type 3");
        let mut x = 0x1234_5678_u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = good.clone();
            let i = (x as usize) % b.len();
            b[i] = (x >> 32) as u8;
            let _ = decode(&b);
        }
    }
}
