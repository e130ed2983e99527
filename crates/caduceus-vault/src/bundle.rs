//! Batch and transaction bundles, NDJSON and bulk-import planning: the pure
//! half of FHIR R4 `POST [base]` processing (http.html#transaction). This
//! module parses and validates, orders entries, assigns identities and
//! rewrites references; it never stores, searches or authorises anything
//! (the service does, entry by entry, with the plan made here), and it
//! reads files only in [`import_plan`] and [`ImportUnit::open`].
//!
//! Decisions and their trade-offs:
//! - A structural error in any entry (bad method, bad URL, missing resource)
//!   refuses the whole bundle, batch or transaction, with the entry index in
//!   the message: it is a malformed request, not a processing failure.
//!   Processing failures (not found, conflict, forbidden) are the service's
//!   and go in per-entry responses of a batch.
//! - PATCH is refused (the vault has no patch engine); so are operations
//!   (`$everything`), `_history` without a version and absolute request URLs.
//!   Ids made only of dots (`.`, `..`) are valid FHIR ids but are refused, so
//!   that no path normalisation between a client and the vault can alter them.
//! - `POST` entries get a fresh server-assigned id (any id in the body is
//!   ignored, as FHIR says); `PUT Type/id` keeps the URL's id and the body must
//!   carry the same id. Each entry's `fullUrl` (`urn:uuid:`, `urn:oid:` or an
//!   absolute URL) maps to `Type/id`, and every `reference` string anywhere in
//!   every resource (contained resources included) equal to a mapped fullUrl
//!   is rewritten. Relative references (`Patient/123`) are left as written,
//!   even when the bundle holds that resource under another fullUrl;
//!   `urn:uuid:` in `Attachment.url` or narrative is not touched.
//! - A bundle-local reference (`urn:uuid:`, `urn:oid:`) that names no entry
//!   fails a transaction (FHIR: they must resolve within the bundle). In a
//!   batch it is kept as written and reported in [`IdMap::unresolved`]
//!   (Synthea's batch bundles do cross-reference entries, as HAPI allows).
//! - Conditional references (`Practitioner?identifier=sys|value`) are listed
//!   for the service to search; those it cannot resolve to exactly one
//!   resource stay as written, like a logical reference, and are counted.
//! - A `collection` bundle is accepted for import only (never at the REST
//!   endpoint) as a batch: an entry whose resource has a valid id becomes
//!   `PUT Type/id` (keeping ids keeps relative references between entries
//!   working), one without becomes `POST Type`.
//! - NDJSON (bulk data) resources keep their ids: each line is `PUT Type/id`,
//!   its entry index being the line number. A line without a valid id is an
//!   error.
//! - The import plan holds a summary per file, not its contents: bundles are
//!   parsed to be classified and parsed again by [`ImportUnit::open`], NDJSON
//!   is streamed line by line, so memory stays bounded by one file (one line
//!   for NDJSON). Files holding only organisation data (Organization,
//!   Location, Practitioner, PractitionerRole: Synthea's
//!   `hospitalInformation*.json` and `practitionerInformation*.json`) come
//!   first, so that the patient bundles' conditional references resolve;
//!   otherwise the given order is kept. A file that is neither a bundle nor
//!   NDJSON (a README) fails the plan; the caller chooses which files to pass.
//! - Errors name entries by index, lines by number and files by position in
//!   the list given (file names often carry patient names), never values.
//!
//! All JSON walks are iterative; resources are depth-checked by
//! [`resource::check`] and size-checked by a bounded serialisation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::resource::{self, MAX_BUNDLE_BYTES, MAX_RESOURCE_BYTES, ResourceError, SHARED_TYPES};

/// Most entries accepted in one bundle (Synthea's largest patient bundles
/// hold a few thousand).
pub const MAX_ENTRIES: usize = 20_000;
/// Longest request URL, `fullUrl` or `ifNoneExist` accepted.
pub const MAX_URL_LEN: usize = 4096;
/// Longest NDJSON line accepted by the import (one resource).
pub const MAX_NDJSON_LINE: usize = MAX_RESOURCE_BYTES;

/// What a bundle asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleKind {
    /// Independent entries, each with its own outcome.
    Batch,
    /// All entries succeed or none does.
    Transaction,
}

impl BundleKind {
    /// The `Bundle.type` of the response.
    pub fn response_type(self) -> &'static str {
        match self {
            Self::Batch => "batch-response",
            Self::Transaction => "transaction-response",
        }
    }
}

/// The HTTP method of an entry (PATCH and HEAD are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// One validated bundle entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the request bundle (for NDJSON: the line number).
    pub index: usize,
    /// `Bundle.entry.fullUrl`, as written.
    pub full_url: Option<String>,
    pub method: Method,
    /// The type in the request URL (equal to the resource's, when there is one).
    pub resource_type: String,
    /// The id in the URL; for POST (and conditional PUT), the one
    /// [`assign_ids`] gave.
    pub id: Option<String>,
    /// The version of a `GET Type/id/_history/v` (vread).
    pub version: Option<u64>,
    /// The query of `Type?query` (search, conditional update or delete),
    /// without the `?`.
    pub query: Option<String>,
    /// The version required by `ifMatch: W/"n"`.
    pub if_match: Option<u64>,
    /// The query of a conditional create, without the `?`.
    pub if_none_exist: Option<String>,
    /// The resource of a POST or PUT.
    pub resource: Option<Map<String, Value>>,
}

/// A validated batch or transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub kind: BundleKind,
    pub entries: Vec<Entry>,
}

/// What is wrong with one entry. Messages never carry values from the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the entry is not a JSON object")]
    NotAnObject,
    #[error("the entry has no request (method and url)")]
    MissingRequest,
    #[error("the request method is not GET, POST, PUT or DELETE")]
    BadMethod,
    #[error("PATCH is not supported: send the whole resource with PUT")]
    PatchUnsupported,
    #[error("operations (`$...`) are not supported in bundles")]
    OperationUnsupported,
    #[error("the request url is invalid: {0}")]
    BadUrl(&'static str),
    #[error("the request url is not allowed with this method: {0}")]
    UrlNotAllowed(&'static str),
    #[error("ifMatch is not a version ETag like W/\"3\"")]
    BadIfMatch,
    #[error("ifMatch is only allowed on PUT and DELETE")]
    IfMatchNotAllowed,
    #[error("ifNoneExist is not a valid search query")]
    BadIfNoneExist,
    #[error("ifNoneExist is only allowed on POST")]
    IfNoneExistNotAllowed,
    #[error("the fullUrl is not a string of at most {MAX_URL_LEN} characters")]
    BadFullUrl,
    #[error("the fullUrl is also used by another entry")]
    DuplicateFullUrl,
    #[error("a POST or PUT needs a resource")]
    MissingResource,
    #[error("a GET or DELETE must not carry a resource")]
    UnexpectedResource,
    #[error("the resource is larger than {MAX_RESOURCE_BYTES} bytes")]
    ResourceTooLarge,
    #[error("the resource type does not match the request url's")]
    TypeMismatch,
    #[error("the resource id is missing, invalid, or does not match the request url's")]
    IdMismatch,
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

/// What is wrong with one NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is longer than {0} bytes")]
    TooLong(usize),
    #[error("invalid JSON at column {0}")]
    InvalidJson(usize),
    #[error("the resource has no valid id (NDJSON resources keep their ids)")]
    MissingId,
    #[error(transparent)]
    Resource(#[from] ResourceError),
}

/// Why a bundle, an NDJSON stream or an import file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the body is not a FHIR Bundle")]
    NotABundle,
    #[error("bundle type `{0}` is not accepted here (batch or transaction)")]
    UnsupportedType(String),
    #[error("`Bundle.entry` is not an array")]
    EntriesNotAnArray,
    #[error("the bundle has more than {0} entries")]
    TooManyEntries(usize),
    #[error("entry {index}: {reason}")]
    Entry { index: usize, reason: EntryError },
    #[error("entry {index}: a bundle-local reference (urn:uuid, urn:oid) names no entry of the transaction")]
    UnresolvedReference { index: usize },
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: LineError },
    #[error("the file is neither a FHIR batch, transaction or collection bundle nor NDJSON")]
    NotFhir,
    #[error("the file is larger than {0} bytes")]
    FileTooLarge(usize),
    #[error("read failed: {0}")]
    Io(io::ErrorKind),
    #[error("file {file} of the import: {source}")]
    File { file: usize, source: Box<BundleError> },
}

impl From<io::Error> for BundleError {
    fn from(error: io::Error) -> Self {
        Self::Io(error.kind())
    }
}

fn entry_error(index: usize, reason: impl Into<EntryError>) -> BundleError {
    BundleError::Entry { index, reason: reason.into() }
}

// ---------------------------------------------------------------------------
// Parsing

/// Parse a batch or transaction bundle (the body of `POST [base]`).
pub fn parse_bundle(value: Value) -> Result<Bundle, BundleError> {
    parse(value, false)
}

/// Parse a bundle for import: a batch, a transaction, or a collection (taken
/// as a batch, see the module documentation).
pub fn parse_import_bundle(value: Value) -> Result<Bundle, BundleError> {
    parse(value, true)
}

fn parse(value: Value, allow_collection: bool) -> Result<Bundle, BundleError> {
    let Value::Object(mut map) = value else { return Err(BundleError::NotABundle) };
    if map.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(BundleError::NotABundle);
    }
    let bundle_type = map.get("type").and_then(Value::as_str).unwrap_or_default();
    let (kind, collection) = match bundle_type {
        "batch" => (BundleKind::Batch, false),
        "transaction" => (BundleKind::Transaction, false),
        "collection" if allow_collection => (BundleKind::Batch, true),
        other => return Err(BundleError::UnsupportedType(printable_code(other))),
    };
    let raw = match map.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(BundleError::EntriesNotAnArray),
    };
    if raw.len() > MAX_ENTRIES {
        return Err(BundleError::TooManyEntries(MAX_ENTRIES));
    }
    let mut full_urls = HashSet::new();
    let mut entries = Vec::with_capacity(raw.len());
    for (index, value) in raw.into_iter().enumerate() {
        let entry = parse_entry(index, value, collection).map_err(|reason| entry_error(index, reason))?;
        if let Some(url) = &entry.full_url
            && !full_urls.insert(url.clone())
        {
            return Err(entry_error(index, EntryError::DuplicateFullUrl));
        }
        entries.push(entry);
    }
    Ok(Bundle { kind, entries })
}

/// A bundle type code fit for a message: short, and only code characters.
fn printable_code(code: &str) -> String {
    if code.len() <= 32 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        code.to_owned()
    } else {
        "(invalid)".to_owned()
    }
}

fn parse_entry(index: usize, value: Value, collection: bool) -> Result<Entry, EntryError> {
    let Value::Object(mut map) = value else { return Err(EntryError::NotAnObject) };
    let full_url = match map.remove("fullUrl") {
        None => None,
        Some(Value::String(url)) if !url.is_empty() && url.len() <= MAX_URL_LEN => Some(url),
        Some(_) => return Err(EntryError::BadFullUrl),
    };
    let resource = map.remove("resource").map(checked_resource).transpose()?;
    if collection {
        return collection_entry(index, full_url, resource);
    }
    let Some(Value::Object(request)) = map.remove("request") else { return Err(EntryError::MissingRequest) };
    let method = parse_method(request.get("method"))?;
    let url = request.get("url").and_then(Value::as_str).ok_or(EntryError::MissingRequest)?;
    let target = parse_url(url)?;
    check_target(method, &target)?;
    let if_match = match request.get("ifMatch") {
        None => None,
        Some(_) if !matches!(method, Method::Put | Method::Delete) => return Err(EntryError::IfMatchNotAllowed),
        Some(tag) => Some(tag.as_str().and_then(parse_etag).ok_or(EntryError::BadIfMatch)?),
    };
    let if_none_exist = match request.get("ifNoneExist") {
        None => None,
        Some(_) if method != Method::Post => return Err(EntryError::IfNoneExistNotAllowed),
        Some(query) => Some(query.as_str().and_then(parse_if_none_exist).ok_or(EntryError::BadIfNoneExist)?),
    };
    check_resource(method, &target, resource.as_ref())?;
    Ok(Entry {
        index,
        full_url,
        method,
        resource_type: target.resource_type,
        id: target.id,
        version: target.version,
        query: target.query,
        if_match,
        if_none_exist,
        resource,
    })
}

/// A resource bounded in depth (by [`resource::check`]) and in serialised size.
fn checked_resource(value: Value) -> Result<Map<String, Value>, EntryError> {
    let map = resource::check(value)?;
    if !serialises_within(&map, MAX_RESOURCE_BYTES) {
        return Err(EntryError::ResourceTooLarge);
    }
    Ok(map)
}

/// Whether the JSON form of `map` fits in `limit` bytes, found without
/// building it: serialisation stops at the first byte over.
fn serialises_within(map: &Map<String, Value>, limit: usize) -> bool {
    struct Budget(usize);
    impl io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.checked_sub(buf.len()).ok_or_else(|| io::Error::other("over budget"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(limit), map).is_ok()
}

/// A collection entry as a batch entry: `PUT Type/id` when the resource has
/// a valid id, else `POST Type`.
fn collection_entry(
    index: usize,
    full_url: Option<String>,
    resource: Option<Map<String, Value>>,
) -> Result<Entry, EntryError> {
    let resource = resource.ok_or(EntryError::MissingResource)?;
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
    let id = match resource.get("id") {
        None => None,
        Some(Value::String(id)) if valid_id(id) => Some(id.clone()),
        Some(_) => return Err(EntryError::IdMismatch),
    };
    let method = if id.is_some() { Method::Put } else { Method::Post };
    Ok(Entry {
        index,
        full_url,
        method,
        resource_type,
        id,
        version: None,
        query: None,
        if_match: None,
        if_none_exist: None,
        resource: Some(resource),
    })
}

fn parse_method(method: Option<&Value>) -> Result<Method, EntryError> {
    match method.and_then(Value::as_str) {
        Some("GET") => Ok(Method::Get),
        Some("POST") => Ok(Method::Post),
        Some("PUT") => Ok(Method::Put),
        Some("DELETE") => Ok(Method::Delete),
        Some("PATCH") => Err(EntryError::PatchUnsupported),
        _ => Err(EntryError::BadMethod),
    }
}

/// What a request URL names.
struct Target {
    resource_type: String,
    id: Option<String>,
    version: Option<u64>,
    query: Option<String>,
}

/// Parse `Type`, `Type/id`, `Type/id/_history/v` or `Type?query`.
fn parse_url(url: &str) -> Result<Target, EntryError> {
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return Err(EntryError::BadUrl("empty or too long"));
    }
    if url.contains("://") {
        return Err(EntryError::BadUrl("absolute urls are not accepted; write it relative to the base"));
    }
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(parse_query(query).ok_or(EntryError::BadUrl("invalid query"))?)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.starts_with('$')) {
        return Err(EntryError::OperationUnsupported);
    }
    let (resource_type, id, version) = match segments.as_slice() {
        [t] => (*t, None, None),
        [t, id] => (*t, Some(*id), None),
        [t, id, "_history", v] => {
            (*t, Some(*id), Some(v.parse::<u64>().map_err(|_| EntryError::BadUrl("bad version"))?))
        }
        _ => return Err(EntryError::BadUrl("expected Type, Type/id, Type/id/_history/version or Type?query")),
    };
    if !resource::valid_type(resource_type) {
        return Err(EntryError::BadUrl("invalid resource type"));
    }
    if let Some(id) = id
        && !valid_id(id)
    {
        return Err(EntryError::BadUrl("invalid id"));
    }
    if query.is_some() && id.is_some() {
        return Err(EntryError::BadUrl("a query is only accepted on a type (Type?query)"));
    }
    Ok(Target { resource_type: resource_type.to_owned(), id: id.map(str::to_owned), version, query })
}

/// A FHIR id that is also safe as a path segment (not only dots).
fn valid_id(id: &str) -> bool {
    resource::valid_id(id) && !id.bytes().all(|b| b == b'.')
}

/// A search query: non-empty, bounded, printable, no fragment.
fn parse_query(query: &str) -> Option<String> {
    let ok = !query.is_empty()
        && query.len() <= MAX_URL_LEN
        && !query.contains('#')
        && query.chars().all(|c| !c.is_whitespace() && !c.is_control());
    ok.then(|| query.to_owned())
}

/// `ifNoneExist` is the part after `?`; a leading `?` is tolerated.
fn parse_if_none_exist(query: &str) -> Option<String> {
    parse_query(query.strip_prefix('?').unwrap_or(query))
}

/// Which URL forms each method accepts.
fn check_target(method: Method, target: &Target) -> Result<(), EntryError> {
    let has_id = target.id.is_some();
    let has_query = target.query.is_some();
    match method {
        _ if target.version.is_some() && method != Method::Get => {
            Err(EntryError::UrlNotAllowed("only GET may name a version"))
        }
        Method::Get => Ok(()),
        Method::Post if has_id || has_query => {
            Err(EntryError::UrlNotAllowed("POST takes the type only (use ifNoneExist for a conditional create)"))
        }
        Method::Put | Method::Delete if !has_id && !has_query => {
            Err(EntryError::UrlNotAllowed("PUT and DELETE need Type/id or Type?query"))
        }
        _ => Ok(()),
    }
}

/// Parse a version ETag: `W/"3"` (or the strong `"3"`).
pub fn parse_etag(tag: &str) -> Option<u64> {
    let tag = tag.trim();
    let quoted = tag.strip_prefix("W/").unwrap_or(tag);
    let digits = quoted.strip_prefix('"')?.strip_suffix('"')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The resource must be there for POST and PUT (of the URL's type, and for
/// `PUT Type/id` with that id), and absent for GET and DELETE.
fn check_resource(method: Method, target: &Target, resource: Option<&Map<String, Value>>) -> Result<(), EntryError> {
    match (method, resource) {
        (Method::Get | Method::Delete, Some(_)) => Err(EntryError::UnexpectedResource),
        (Method::Get | Method::Delete, None) => Ok(()),
        (Method::Post | Method::Put, None) => Err(EntryError::MissingResource),
        (Method::Post | Method::Put, Some(resource)) => {
            if resource.get("resourceType").and_then(Value::as_str) != Some(target.resource_type.as_str()) {
                return Err(EntryError::TypeMismatch);
            }
            let body_id = resource.get("id");
            let id_ok = match (method, &target.id, body_id) {
                // POST: the server assigns the id; the body's is ignored.
                (Method::Post, _, _) => true,
                (_, Some(url_id), Some(Value::String(id))) => id == url_id,
                (_, Some(_), _) => false,
                (_, None, None) => true,
                (_, None, Some(Value::String(id))) => valid_id(id),
                (_, None, Some(_)) => false,
            };
            if id_ok { Ok(()) } else { Err(EntryError::IdMismatch) }
        }
    }
}

// ---------------------------------------------------------------------------
// Processing order

/// The order in which a transaction's entries are processed (FHIR R4
/// http.html#trules): DELETE, then POST, then PUT, then GET; request order
/// within each group. Batches use the same order.
pub fn processing_order(bundle: &Bundle) -> Vec<usize> {
    let rank = |method: Method| match method {
        Method::Delete => 0,
        Method::Post => 1,
        Method::Put => 2,
        Method::Get => 3,
    };
    let mut order: Vec<usize> = (0..bundle.entries.len()).collect();
    order.sort_by_key(|&i| bundle.entries.get(i).map_or(4, |e| rank(e.method)));
    order
}

// ---------------------------------------------------------------------------
// Identities and references

/// The identities [`assign_ids`] gave and what it could not resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Each POST or PUT entry's fullUrl, mapped to its `Type/id`.
    pub by_full_url: HashMap<String, String>,
    /// Indexes of batch entries holding a bundle-local reference
    /// (`urn:uuid:`, `urn:oid:`) that names no entry; kept as written.
    pub unresolved: Vec<usize>,
}

/// Give POST entries a fresh id (and conditional PUTs one, when they create),
/// map each fullUrl to `Type/id`, and rewrite the references that name a
/// fullUrl. See [`assign_ids_with`] for conditional creates and updates that
/// matched an existing resource.
pub fn assign_ids(bundle: &mut Bundle, new_id: &mut dyn FnMut() -> String) -> Result<IdMap, BundleError> {
    assign_ids_with(bundle, &HashMap::new(), new_id)
}

/// As [`assign_ids`], with `existing` giving, by entry index, the id of the
/// resource a conditional create (`ifNoneExist`) or conditional update
/// (`PUT Type?query`) matched, found by the service's search beforehand:
/// references to such an entry then name that resource, as FHIR requires.
///
/// On error (a transaction's unresolved bundle-local reference) the bundle is
/// partly rewritten and must be discarded.
pub fn assign_ids_with(
    bundle: &mut Bundle,
    existing: &HashMap<usize, String>,
    new_id: &mut dyn FnMut() -> String,
) -> Result<IdMap, BundleError> {
    let mut map = IdMap::default();
    for entry in &mut bundle.entries {
        if !matches!(entry.method, Method::Post | Method::Put) {
            continue;
        }
        if entry.method == Method::Post || entry.id.is_none() {
            entry.id = Some(existing.get(&entry.index).cloned().unwrap_or_else(&mut *new_id));
        }
        let id = entry.id.clone().unwrap_or_default();
        if let Some(resource) = &mut entry.resource {
            resource.insert("id".to_owned(), Value::String(id.clone()));
        }
        if let Some(full_url) = &entry.full_url {
            map.by_full_url.insert(full_url.clone(), format!("{}/{id}", entry.resource_type));
        }
    }
    for entry in &mut bundle.entries {
        let Some(resource) = &mut entry.resource else { continue };
        let mut unresolved = false;
        for_each_reference(resource, |reference| {
            if let Some(target) = map.by_full_url.get(reference.as_str()) {
                target.clone_into(reference);
            } else if is_bundle_local(reference) {
                unresolved = true;
            }
        });
        if unresolved {
            if bundle.kind == BundleKind::Transaction {
                return Err(BundleError::UnresolvedReference { index: entry.index });
            }
            map.unresolved.push(entry.index);
        }
    }
    Ok(map)
}

fn is_bundle_local(reference: &str) -> bool {
    reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:")
}

/// Call `f` on every `reference` string anywhere in `resource`, walking the
/// JSON with an explicit stack (no recursion).
fn for_each_reference(resource: &mut Map<String, Value>, mut f: impl FnMut(&mut String)) {
    let mut stack: Vec<&mut Map<String, Value>> = vec![resource];
    let mut arrays: Vec<&mut Vec<Value>> = Vec::new();
    loop {
        if let Some(map) = stack.pop() {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(reference) if key == "reference" => f(reference),
                    Value::Object(inner) => stack.push(inner),
                    Value::Array(items) => arrays.push(items),
                    _ => {}
                }
            }
        } else if let Some(items) = arrays.pop() {
            for item in items.iter_mut() {
                match item {
                    Value::Object(inner) => stack.push(inner),
                    Value::Array(inner) => arrays.push(inner),
                    _ => {}
                }
            }
        } else {
            return;
        }
    }
}

/// Every `reference` string anywhere in `resource` (contained resources
/// included), in no particular order, found iteratively.
pub fn references(resource: &Map<String, Value>) -> Vec<&str> {
    let mut found = Vec::new();
    let mut maps = vec![resource];
    let mut values: Vec<&Value> = Vec::new();
    loop {
        if let Some(map) = maps.pop() {
            for (key, child) in map {
                match child {
                    Value::String(reference) if key == "reference" => found.push(reference.as_str()),
                    Value::Object(inner) => maps.push(inner),
                    Value::Array(items) => values.extend(items),
                    _ => {}
                }
            }
        } else if let Some(value) = values.pop() {
            match value {
                Value::Object(inner) => maps.push(inner),
                Value::Array(items) => values.extend(items),
                _ => {}
            }
        } else {
            return found;
        }
    }
}

/// A conditional reference found in a bundle: `Type?query`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConditionalRef {
    pub resource_type: String,
    /// The search, without the `?`.
    pub query: String,
}

impl ConditionalRef {
    /// The reference as written in the resource (the key of the map given to
    /// [`rewrite_conditional`]).
    pub fn reference(&self) -> String {
        format!("{}?{}", self.resource_type, self.query)
    }

    /// Read `Type?query`; anything else is not a conditional reference.
    pub fn parse(reference: &str) -> Option<Self> {
        let (resource_type, query) = reference.split_once('?')?;
        if !resource::valid_type(resource_type) {
            return None;
        }
        Some(Self { resource_type: resource_type.to_owned(), query: parse_query(query)? })
    }
}

/// The distinct conditional references of a bundle, in order of first use,
/// for the service to search.
pub fn conditional_references(bundle: &Bundle) -> Vec<ConditionalRef> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for resource in bundle.entries.iter().filter_map(|e| e.resource.as_ref()) {
        for conditional in references(resource).into_iter().filter_map(ConditionalRef::parse) {
            if seen.insert(conditional.clone()) {
                found.push(conditional);
            }
        }
    }
    found
}

/// How many conditional references [`rewrite_conditional`] rewrote and left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConditionalRewrite {
    pub rewritten: usize,
    /// Left as written (no single match): they read as logical references.
    pub unresolved: usize,
}

/// Replace each conditional reference found in `resolved` (keyed by the
/// reference as written, valued `Type/id`); count the others, which stay.
pub fn rewrite_conditional(bundle: &mut Bundle, resolved: &HashMap<String, String>) -> ConditionalRewrite {
    let mut counts = ConditionalRewrite::default();
    for resource in bundle.entries.iter_mut().filter_map(|e| e.resource.as_mut()) {
        for_each_reference(resource, |reference| {
            if let Some(target) = resolved.get(reference.as_str()) {
                target.clone_into(reference);
                counts.rewritten += 1;
            } else if ConditionalRef::parse(reference).is_some() {
                counts.unresolved += 1;
            }
        });
    }
    counts
}

// ---------------------------------------------------------------------------
// Responses

/// One `Bundle.entry` of a batch or transaction response.
pub fn response_entry(
    status: u16,
    location: Option<&str>,
    etag_version: Option<u64>,
    last_modified: &str,
    outcome: Option<Value>,
) -> Value {
    let mut response = Map::new();
    response.insert("status".to_owned(), Value::String(status_line(status)));
    if let Some(location) = location {
        response.insert("location".to_owned(), Value::String(location.to_owned()));
    }
    if let Some(version) = etag_version {
        response.insert("etag".to_owned(), Value::String(format!("W/\"{version}\"")));
    }
    if !last_modified.is_empty() {
        response.insert("lastModified".to_owned(), Value::String(last_modified.to_owned()));
    }
    if let Some(outcome) = outcome {
        response.insert("outcome".to_owned(), outcome);
    }
    json!({ "response": response })
}

/// `201 Created`: the code and, for the codes the vault returns, the reason.
fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        _ => return status.to_string(),
    };
    format!("{status} {reason}")
}

/// The response bundle; `entries` must be in the request's order (one per
/// request entry), whatever order they were processed in.
pub fn response_bundle(kind: BundleKind, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": kind.response_type(), "entry": entries })
}

// ---------------------------------------------------------------------------
// NDJSON

/// Reads NDJSON one bounded line at a time: blank lines are skipped, a line
/// over the cap is refused (and skipped without being held), every error
/// names its line. Stops after an I/O error.
#[derive(Debug)]
pub struct NdjsonReader<R> {
    reader: R,
    max_line: usize,
    line: usize,
    buf: Vec<u8>,
    done: bool,
}

/// Read NDJSON resources from `reader`, each line at most `max_line` bytes.
pub fn read_ndjson<R: BufRead>(reader: R, max_line: usize) -> NdjsonReader<R> {
    NdjsonReader { reader, max_line, line: 0, buf: Vec::new(), done: false }
}

impl<R: BufRead> NdjsonReader<R> {
    /// The number (from 1) of the last line read.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Read the next line into `buf` (without its end of line); `false` at
    /// the end. A line over the cap is drained and reported.
    fn next_line(&mut self) -> io::Result<Option<Result<(), LineError>>> {
        self.buf.clear();
        let cap = self.max_line.saturating_add(1) as u64;
        let read = (&mut self.reader).take(cap).read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > self.max_line {
            self.buf.clear();
            self.drain_line()?;
            return Ok(Some(Err(LineError::TooLong(self.max_line))));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
            self.buf.drain(..3);
        }
        Ok(Some(Ok(())))
    }

    /// Skip to the next line without keeping what is skipped.
    fn drain_line(&mut self) -> io::Result<()> {
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(());
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.reader.consume(end + 1);
                    return Ok(());
                }
                None => {
                    let len = available.len();
                    self.reader.consume(len);
                }
            }
        }
    }

    fn parse_line(&self) -> Result<Map<String, Value>, LineError> {
        let value: Value = serde_json::from_slice(&self.buf).map_err(|e| LineError::InvalidJson(e.column()))?;
        Ok(resource::check(value)?)
    }
}

impl<R: BufRead> Iterator for NdjsonReader<R> {
    type Item = Result<Map<String, Value>, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let result = match self.next_line() {
                Err(error) => {
                    self.done = true;
                    return Some(Err(error.into()));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(Err(reason))) => Err(reason),
                Ok(Some(Ok(()))) if self.buf.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Some(Ok(()))) => self.parse_line(),
            };
            return Some(result.map_err(|reason| BundleError::Line { line: self.line, reason }));
        }
        None
    }
}

/// An NDJSON resource as the entry that stores it: `PUT Type/id`, indexed
/// by its line.
pub fn ndjson_entry(line: usize, resource: Map<String, Value>) -> Result<Entry, BundleError> {
    let id = match resource.get("id") {
        Some(Value::String(id)) if valid_id(id) => id.clone(),
        _ => return Err(BundleError::Line { line, reason: LineError::MissingId }),
    };
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(Entry {
        index: line,
        full_url: None,
        method: Method::Put,
        resource_type,
        id: Some(id),
        version: None,
        query: None,
        if_match: None,
        if_none_exist: None,
        resource: Some(resource),
    })
}

/// The entries of an NDJSON file, one per resource line.
#[derive(Debug)]
pub struct NdjsonEntries<R> {
    lines: NdjsonReader<R>,
}

impl<R: BufRead> Iterator for NdjsonEntries<R> {
    type Item = Result<Entry, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        let resource = self.lines.next()?;
        Some(resource.and_then(|resource| ndjson_entry(self.lines.line(), resource)))
    }
}

/// The entries of an NDJSON stream, lines capped at [`MAX_NDJSON_LINE`].
pub fn ndjson_entries<R: BufRead>(reader: R) -> NdjsonEntries<R> {
    NdjsonEntries { lines: read_ndjson(reader, MAX_NDJSON_LINE) }
}

// ---------------------------------------------------------------------------
// Import planning

/// How an import file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// One JSON Bundle (batch, transaction, or collection taken as a batch).
    Bundle(BundleKind),
    /// One resource per line; ids are kept.
    Ndjson,
}

/// One file of an import, classified and validated, its contents not held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportUnit {
    pub path: PathBuf,
    pub format: ImportFormat,
    /// Holds only organisation data (Organization, Location, Practitioner,
    /// PractitionerRole); such units come first in the plan.
    pub shared_only: bool,
    /// Resources by type, as found when classifying.
    pub counts: BTreeMap<String, usize>,
}

/// The contents of an import unit, ready for the service.
#[derive(Debug)]
pub enum UnitContents {
    Bundle(Bundle),
    Ndjson(NdjsonEntries<BufReader<File>>),
}

impl ImportUnit {
    /// Read the file again: the whole bundle, or a stream of NDJSON entries.
    pub fn open(&self) -> Result<UnitContents, BundleError> {
        match self.format {
            ImportFormat::Bundle(_) => Ok(UnitContents::Bundle(read_bundle_file(&self.path)?)),
            ImportFormat::Ndjson => Ok(UnitContents::Ndjson(ndjson_entries(BufReader::new(File::open(&self.path)?)))),
        }
    }

    /// Total resources in the unit.
    pub fn resources(&self) -> usize {
        self.counts.values().sum()
    }
}

/// Classify and validate each file, then order them: organisation-only
/// units first, the others after, each group in the given order. The first
/// invalid file fails the plan, named by its position in `paths`.
pub fn import_plan(paths: &[PathBuf]) -> Result<Vec<ImportUnit>, BundleError> {
    let mut units = paths
        .iter()
        .enumerate()
        .map(|(file, path)| classify(path).map_err(|e| BundleError::File { file, source: Box::new(e) }))
        .collect::<Result<Vec<_>, _>>()?;
    units.sort_by_key(|unit| !unit.shared_only);
    Ok(units)
}

/// NDJSON when the first non-blank line is a resource other than a Bundle,
/// else a bundle file.
fn classify(path: &Path) -> Result<ImportUnit, BundleError> {
    let mut first = read_ndjson(BufReader::new(File::open(path)?), MAX_NDJSON_LINE);
    let ndjson = match first.next() {
        None => true,
        Some(Ok(resource)) => resource.get("resourceType").and_then(Value::as_str) != Some("Bundle"),
        Some(Err(BundleError::Io(kind))) => return Err(BundleError::Io(kind)),
        Some(Err(_)) => false,
    };
    let (format, counts) = if ndjson {
        (ImportFormat::Ndjson, count_ndjson(path)?)
    } else {
        let bundle = read_bundle_file(path)?;
        let counts = count_types(bundle.entries.iter().filter_map(|e| e.resource.as_ref().map(|_| &e.resource_type)));
        (ImportFormat::Bundle(bundle.kind), counts)
    };
    let shared_only = !counts.is_empty() && counts.keys().all(|t| SHARED_TYPES.contains(&t.as_str()));
    Ok(ImportUnit { path: path.to_owned(), format, shared_only, counts })
}

fn count_ndjson(path: &Path) -> Result<BTreeMap<String, usize>, BundleError> {
    let mut counts = BTreeMap::new();
    for entry in ndjson_entries(BufReader::new(File::open(path)?)) {
        *counts.entry(entry?.resource_type).or_insert(0) += 1;
    }
    Ok(counts)
}

fn count_types<'a>(types: impl Iterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for resource_type in types {
        *counts.entry(resource_type.clone()).or_insert(0) += 1;
    }
    counts
}

/// Read and parse a bundle file for import, at most [`MAX_BUNDLE_BYTES`].
pub fn read_bundle_file(path: &Path) -> Result<Bundle, BundleError> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::FileTooLarge(MAX_BUNDLE_BYTES));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| BundleError::NotFhir)?;
    drop(bytes);
    parse_import_bundle(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("3"), None);
        assert_eq!(parse_etag("W/\"\""), None);
        assert_eq!(parse_etag("W/\"-1\""), None);
        assert_eq!(parse_etag("W/\"99999999999999999999999\""), None);
    }

    #[test]
    fn size_budget() {
        let mut map = Map::new();
        map.insert("a".into(), Value::String("x".repeat(100)));
        assert!(serialises_within(&map, 200));
        assert!(!serialises_within(&map, 50));
    }

    #[test]
    fn urls() {
        assert!(parse_url("Patient/../x").is_err());
        assert!(parse_url("Patient/..").is_err());
        assert!(parse_url("Patient/1/_history/x").is_err());
        assert!(parse_url("Patient/1?x=1").is_err());
        assert!(parse_url("http://evil/Patient/1").is_err());
        assert!(matches!(parse_url("Patient/1/$everything"), Err(EntryError::OperationUnsupported)));
        let t = parse_url("Observation/o1/_history/7").unwrap();
        assert_eq!((t.id.as_deref(), t.version), (Some("o1"), Some(7)));
    }
}
