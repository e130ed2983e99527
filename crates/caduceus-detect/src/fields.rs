//! How the parts of the engine read an event's fields by name.

use std::borrow::Cow;

/// A normalised event, read by field name (Sigma taxonomy names after
/// mapping). Correlation group-by and value_count read fields through it.
pub trait FieldLookup {
    /// The field's value as text (numbers and booleans as their JSON text);
    /// `None` when the event has no such field or it is null.
    fn field(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl FieldLookup for serde_json::Map<String, serde_json::Value> {
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.get(name)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
            other => Some(Cow::Owned(other.to_string())),
        }
    }
}
