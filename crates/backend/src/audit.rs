//! The audit event store, on top of any [`Backend`].
//!
//! Events are JSON objects in Teleport's shape (`event`, `code`, `time`, `uid`, `user`,
//! `success` ...). Each is stored at `audit/events/<time>/<uid>`, where `<time>` is the event time
//! in UTC with a fixed width (`2026-11-23T10:00:00.000000000Z`), so a range read returns events in
//! time order.

use std::sync::Arc;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::{Backend, BackendError, Item};

/// Key prefix of all audit events.
pub const PREFIX: &str = "audit/events/";

/// How many items a search reads from the backend at a time.
const PAGE: usize = 500;

#[derive(Clone)]
pub struct AuditLog {
    backend: Arc<dyn Backend>,
}

/// The fixed-width, lexically sortable form of `t` used in keys.
fn sortable(t: OffsetDateTime) -> Result<String, BackendError> {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    t.to_offset(UtcOffset::UTC)
        .format(&fmt)
        .map_err(|e| BackendError::BadParameter(format!("cannot format event time: {e}")))
}

/// The key of the first possible event at `t`.
fn time_prefix(t: OffsetDateTime) -> Result<String, BackendError> {
    Ok(format!("{PREFIX}{}/", sortable(t)?))
}

impl AuditLog {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        AuditLog { backend }
    }

    /// Stores one event, adding `uid` (a random UUID) and `time` (now, RFC 3339 in UTC with
    /// nanoseconds) if missing. The event must be a JSON object; an existing `time` must be an
    /// RFC 3339 string.
    pub async fn emit(&self, event: Value) -> Result<(), BackendError> {
        self.backend.put(Self::item(event)?).await.map(|_| ())
    }

    /// Stores several events (as [`AuditLog::emit`]) in one backend write.
    pub async fn emit_many(&self, events: Vec<Value>) -> Result<(), BackendError> {
        let items = events
            .into_iter()
            .map(Self::item)
            .collect::<Result<Vec<_>, _>>()?;
        self.backend.put_many(items).await
    }

    fn item(event: Value) -> Result<Item, BackendError> {
        let Value::Object(mut fields) = event else {
            return Err(BackendError::BadParameter(
                "an audit event must be a JSON object".into(),
            ));
        };
        let time = match fields.get("time") {
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
                BackendError::BadParameter(format!("audit event time {s:?} is not RFC 3339: {e}"))
            })?,
            Some(other) => {
                return Err(BackendError::BadParameter(format!(
                    "audit event time {other} is not an RFC 3339 string"
                )))
            }
            None => {
                let now = OffsetDateTime::now_utc();
                let text = now.format(&Rfc3339).map_err(|e| {
                    BackendError::Storage(format!("cannot format the current time: {e}"))
                })?;
                fields.insert("time".into(), Value::String(text));
                now
            }
        };
        let uid = match fields.get("uid") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                let uid = crate::new_uuid();
                fields.insert("uid".into(), Value::String(uid.clone()));
                uid
            }
        };
        // The uid ends the key: keep it to one path segment.
        let uid_key: String = uid.replace('/', "_");
        let key = format!("{}{uid_key}", time_prefix(time)?);
        let value = serde_json::to_vec(&Value::Object(fields))
            .map_err(|e| BackendError::BadParameter(format!("cannot encode audit event: {e}")))?;
        Ok(Item::new(key, value))
    }

    /// Events with `from <= time <= to`, oldest first, whose `event` is one of `event_types`
    /// (all events if empty), at most `limit` of them (0: no limit). Stored entries that are not
    /// JSON objects are skipped with a warning.
    pub async fn search(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        event_types: &[String],
        limit: usize,
    ) -> Result<Vec<Value>, BackendError> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        let mut start = time_prefix(from)?;
        let end = crate::prefix_end(&time_prefix(to)?);
        loop {
            let page = self.backend.get_range(&start, &end, PAGE).await?;
            let full = page.len() == PAGE;
            for item in page {
                let event: Value = match serde_json::from_slice(&item.value) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        tracing::warn!(key = %item.key, "audit: skipping an undecodable event");
                        continue;
                    }
                };
                let wanted = event_types.is_empty()
                    || event
                        .get("event")
                        .and_then(Value::as_str)
                        .is_some_and(|t| event_types.iter().any(|w| w == t));
                if wanted {
                    for event in expand(event) {
                        out.push(event);
                        if limit != 0 && out.len() >= limit {
                            return Ok(out);
                        }
                    }
                }
                // The smallest key after this one.
                start = item.key;
                start.push('\0');
            }
            if !full {
                return Ok(out);
            }
        }
    }
}

/// The field of a stored event that stands for several events: the same
/// event once per element, with the element as `db_query` (a database
/// session's commands, stored together to keep per-command audit cheap).
pub const GROUPED_QUERIES: &str = "db_queries";

/// One stored event, or the events a grouped one stands for (see
/// [`GROUPED_QUERIES`]); each gets `db_query` and a `uid` of its own.
fn expand(mut event: Value) -> Vec<Value> {
    let Some(Value::Array(queries)) = event
        .as_object_mut()
        .and_then(|o| o.remove(GROUPED_QUERIES))
    else {
        return vec![event];
    };
    let uid = event
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    queries
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let mut one = event.clone();
            if let Some(o) = one.as_object_mut() {
                o.insert("db_query".into(), q);
                o.insert("uid".into(), Value::String(format!("{uid}-{i}")));
            }
            one
        })
        .collect()
}
