//! `Vec<f32>` fields that may hold NaN (a missing value), written as JSON `null`. JSON has no
//! NaN: `serde_json` writes one as `null` and then refuses to read that `null` back as a number,
//! so a detector saved mid-warm-up (whose buffered rows hold missing values) would not load.
//! Finite values are written as before, so existing files read the same.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
    let opt: Vec<Option<f32>> = values.iter().map(|v| v.is_finite().then_some(*v)).collect();
    opt.serialize(s)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let opt: Vec<Option<f32>> = Vec::deserialize(d)?;
    Ok(opt.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect())
}
