//! CSAF provider ROLIE feeds: the Atom-in-JSON index listing a provider's documents with
//! their hash and signature files.

use serde::Deserialize;

use crate::{DevicesError, MAX_ADVISORY_BYTES, Result, check_size};

/// One document a feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub id: String,
    pub updated: Option<String>,
    /// Where the CSAF document is (`content.src`).
    pub url: String,
    /// `link` with `rel: "hash"` (the `.sha512` if several).
    pub hash_url: Option<String>,
    /// `link` with `rel: "signature"`.
    pub signature_url: Option<String>,
}

#[derive(Deserialize)]
struct Root {
    feed: Feed,
}

#[derive(Deserialize)]
struct Feed {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    link: Vec<Link>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    rel: Option<String>,
    /// CISA's feeds misspell `rel` as `ref` on hash and signature links.
    #[serde(default, rename = "ref")]
    misspelt_rel: Option<String>,
    href: String,
}

impl Link {
    fn rel(&self) -> &str {
        self.rel.as_deref().or(self.misspelt_rel.as_deref()).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Content {
    src: String,
}

/// Read a ROLIE feed (`{"feed": {"entry": [...]}}`). Entries without `content.src` fall
/// back to their `self` link; entries with neither are an error.
pub fn read_rolie_feed(bytes: &[u8]) -> Result<Vec<FeedEntry>> {
    check_size("ROLIE feed", bytes, 4 * MAX_ADVISORY_BYTES)?;
    let root: Root =
        serde_json::from_slice(bytes).map_err(|e| DevicesError::Parse { format: "rolie", reason: e.to_string() })?;
    let mut out = Vec::with_capacity(root.feed.entry.len());
    for (i, e) in root.feed.entry.into_iter().enumerate() {
        let link = |rel: &str| e.link.iter().find(|l| l.rel() == rel).map(|l| l.href.clone());
        let hashes: Vec<&Link> = e.link.iter().filter(|l| l.rel() == "hash").collect();
        let hash_url =
            hashes.iter().find(|l| l.href.ends_with(".sha512")).or_else(|| hashes.first()).map(|l| l.href.clone());
        let url = match e.content.map(|c| c.src).or_else(|| link("self")) {
            Some(u) => u,
            None => {
                return Err(DevicesError::Parse {
                    format: "rolie",
                    reason: format!("/feed/entry/{i}: no content.src and no self link"),
                });
            }
        };
        out.push(FeedEntry { id: e.id, updated: e.updated, url, hash_url, signature_url: link("signature") });
    }
    Ok(out)
}
