//! The JSON documents sent: Alertmanager's webhook payload (webhook and
//! exec) and the alert list of its v2 API (alertmanager).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::{Alert, Group, Labels};

/// Alertmanager's `endsAt` of a firing alert in webhook payloads.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted
/// names and values, each followed by a 0xff byte, as 16 hex digits.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// RFC 3339 in UTC with milliseconds (`2024-05-01T12:00:00.000Z`); times
/// before 1970 are written as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// The labels every alert has with the same value.
fn common(alerts: &[Alert], pick: fn(&Alert) -> &Labels) -> Labels {
    let Some(first) = alerts.first() else {
        return Labels::new();
    };
    let mut out = pick(first).clone();
    for a in &alerts[1..] {
        out.retain(|k, v| pick(a).get(k) == Some(v));
    }
    out
}

/// Alertmanager's webhook payload (version 4) for `group`, sent by the
/// notifier `receiver`.
pub fn webhook(group: &Group, receiver: &str, external_url: &str) -> Value {
    let alerts: Vec<Value> = group
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": if a.is_firing() { "firing" } else { "resolved" },
                "labels": labels_json(&a.labels),
                "annotations": labels_json(&a.annotations),
                "startsAt": rfc3339(a.starts_at),
                "endsAt": a.ends_at.map(rfc3339).unwrap_or_else(|| ZERO_TIME.to_owned()),
                "generatorURL": external_url,
                "fingerprint": fingerprint(&a.labels),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group.key,
        "truncatedAlerts": 0,
        "status": group.status().as_str(),
        "receiver": receiver,
        "groupLabels": labels_json(&group.labels),
        "commonLabels": labels_json(&common(&group.alerts, |a| &a.labels)),
        "commonAnnotations": labels_json(&common(&group.alerts, |a| &a.annotations)),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// The body of `POST /api/v2/alerts`: firing alerts end at `firing_ends`
/// (Alertmanager resolves them then unless pushed again), resolved ones
/// at their own end.
pub fn alertmanager(alerts: &[Alert], firing_ends: SystemTime, generator: &str) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let mut o = Map::new();
                o.insert("labels".into(), labels_json(&a.labels));
                o.insert("annotations".into(), labels_json(&a.annotations));
                o.insert("startsAt".into(), json!(rfc3339(a.starts_at)));
                o.insert(
                    "endsAt".into(),
                    json!(rfc3339(a.ends_at.unwrap_or(firing_ends))),
                );
                if !generator.is_empty() {
                    o.insert("generatorURL".into(), json!(generator));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_868_800); // leap 2000
        assert_eq!(rfc3339(t), "2000-03-01T00:00:00.000Z");
    }

    #[test]
    fn fingerprint_is_alertmanagers() {
        // Alertmanager: model.LabelSet{"alertname":"TestAlert"}.Fingerprint()
        // hashes the same bytes; empty set is the FNV offset basis.
        assert_eq!(fingerprint(&Labels::new()), "cbf29ce484222325");
        let a: Labels = [("a".to_owned(), "b".to_owned())].into();
        let b: Labels = [("ab".to_owned(), "".to_owned())].into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
