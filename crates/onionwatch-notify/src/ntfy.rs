//! The ntfy notifier: a short text POSTed to a topic URL, with `Title`,
//! `Priority` and `Tags` headers.

use http::{HeaderName, HeaderValue};

use crate::config::NotifierConfig;
use crate::http::HttpTarget;
use crate::{text, Group, Status};

pub(crate) struct Ntfy {
    pub target: HttpTarget,
    priority: HeaderValue,
}

const PRIORITIES: [&str; 10] = [
    "min", "low", "default", "high", "urgent", "1", "2", "3", "4", "5",
];

impl Ntfy {
    pub(crate) fn new(c: &NotifierConfig, url: &str) -> Result<Ntfy, String> {
        let priority = c.priority.as_deref().unwrap_or("high");
        if !PRIORITIES.contains(&priority) {
            return Err(format!(
                "priority: {priority:?} is not one of min, low, default, high, urgent, 1-5"
            ));
        }
        Ok(Ntfy {
            target: HttpTarget::new(c, url, "")?,
            priority: HeaderValue::from_str(priority).expect("checked above"),
        })
    }

    pub(crate) async fn send(&self, group: &Group) -> Result<(), String> {
        let (priority, tags) = match group.status() {
            Status::Firing => (self.priority.clone(), "rotating_light"),
            Status::Resolved => (HeaderValue::from_static("default"), "white_check_mark"),
        };
        // Header values are ASCII here: ntfy reads them as such.
        let title: String = text::subject(group)
            .chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect();
        let headers = [
            (
                HeaderName::from_static("title"),
                HeaderValue::try_from(title).map_err(|e| format!("title: {e}"))?,
            ),
            (HeaderName::from_static("priority"), priority),
            (
                HeaderName::from_static("tags"),
                HeaderValue::from_static(tags),
            ),
        ];
        self.target
            .post(
                "text/plain; charset=utf-8",
                &headers,
                text::body(group, "").into_bytes(),
            )
            .await
    }
}
