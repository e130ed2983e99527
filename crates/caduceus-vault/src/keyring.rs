//! The keys the vault holds while it runs: the key-encryption key (from its
//! file), the blind-index key and the unwrapped data keys of compartments in
//! use, cached so that a read costs one AES-GCM decryption, not an unwrap.
//!
//! Every data key is stored only wrapped by the KEK. The blind-index key is
//! a random data key kept in the same table under the name `index`, so
//! rotating the KEK re-wraps it like the others and no search term changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use caduceus_core::Timestamp;
use caduceus_store::Store;
use caduceus_store::vault::KeyRow;

use crate::blind::BlindIndexer;
use crate::keys::{DataKey, Kek, KeyError, WrappedKey};

/// The name under which the blind-index key is stored.
pub const INDEX_KEY: &str = "index";
/// Most unwrapped data keys held in memory; past it the cache is cleared
/// (unwrapping again costs one AES-GCM decryption).
const MAX_CACHED_KEYS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("storage: {0}")]
    Store(#[from] caduceus_store::StoreError),
    /// The compartment's key was destroyed: its data is gone for good.
    #[error("the data key of this record was destroyed (erased)")]
    Shredded,
    #[error("the data key is wrapped by key-encryption key {found}, but the key directory holds {loaded}")]
    WrongKek { found: String, loaded: String },
    #[error("the key directory holds no key-encryption key")]
    NoKek,
    #[error("key directory: {0}")]
    Io(String),
}

pub struct Keyring {
    store: Arc<dyn Store>,
    dir: KekDir,
    /// Every KEK in the key directory, newest (the one that wraps) first.
    keks: RwLock<Vec<Arc<Kek>>>,
    indexer: BlindIndexer,
    cache: Mutex<HashMap<String, Arc<DataKey>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// Open the keyring over a store and a key directory (creating the
    /// first KEK and the blind-index key on first use).
    pub async fn open(store: Arc<dyn Store>, dir: KekDir, now: Timestamp) -> Result<Self, KeyringError> {
        let keks = dir.load_all(Some(now))?;
        let index = load_or_create(&*store, &keks, INDEX_KEY, now).await?;
        Ok(Self {
            store,
            dir,
            indexer: index.blind_indexer(),
            keks: RwLock::new(keks),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn indexer(&self) -> &BlindIndexer {
        &self.indexer
    }

    /// The id of the KEK that wraps new keys.
    pub fn kek_id(&self) -> String {
        self.keks().first().map(|k| k.id().to_string()).unwrap_or_default()
    }

    fn keks(&self) -> Vec<Arc<Kek>> {
        match self.keks.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-read the key directory (a rotation by another process added a KEK).
    fn reload(&self) -> Result<Vec<Arc<Kek>>, KeyringError> {
        let keks = self.dir.load_all(None)?;
        match self.keks.write() {
            Ok(mut k) => *k = keks.clone(),
            Err(poisoned) => *poisoned.into_inner() = keks.clone(),
        }
        Ok(keks)
    }

    /// The data key of a compartment, created if it has none yet.
    pub async fn data_key(&self, compartment: &str, now: Timestamp) -> Result<Arc<DataKey>, KeyringError> {
        if let Some(key) = self.cached(compartment) {
            return Ok(key);
        }
        let key = match load_or_create(&*self.store, &self.keks(), compartment, now).await {
            Err(KeyringError::WrongKek { .. }) => {
                load_or_create(&*self.store, &self.reload()?, compartment, now).await?
            }
            other => other?,
        };
        let key = Arc::new(key);
        self.remember(compartment, key.clone());
        Ok(key)
    }

    /// The data key of a compartment that must already have one (reads).
    pub async fn existing_key(&self, compartment: &str) -> Result<Arc<DataKey>, KeyringError> {
        if let Some(key) = self.cached(compartment) {
            return Ok(key);
        }
        let row = self.store.key(compartment).await?.ok_or(KeyringError::Shredded)?;
        let key = match unwrap_row(&self.keks(), &row) {
            Err(KeyringError::WrongKek { .. }) => unwrap_row(&self.reload()?, &row)?,
            other => other?,
        };
        let key = Arc::new(key);
        self.remember(compartment, key.clone());
        Ok(key)
    }

    /// Forget a compartment's key (after erasure).
    pub fn forget(&self, compartment: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(compartment);
        }
    }

    fn cached(&self, compartment: &str) -> Option<Arc<DataKey>> {
        self.cache.lock().ok()?.get(compartment).cloned()
    }

    fn remember(&self, compartment: &str, key: Arc<DataKey>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED_KEYS {
                cache.clear();
            }
            cache.insert(compartment.to_owned(), key);
        }
    }

    /// Rotate the KEK without downtime: write a new KEK file (which then
    /// wraps every new key, here and in any server that re-reads the
    /// directory), then re-wrap every data key wrapped by an older KEK, each
    /// by compare-and-set so it can run beside live traffic. Older KEK files
    /// stay until `retire_old` removes them once nothing needs them: until
    /// then, backups taken before the rotation stay readable with them.
    /// Returns (new KEK id, keys re-wrapped).
    pub async fn rotate(&self, retire_old: bool, now: Timestamp) -> Result<(String, u64), KeyringError> {
        self.dir.create_next(now)?;
        let keks = self.reload()?;
        let newest = keks.first().cloned().ok_or(KeyringError::NoKek)?;
        let newest_id = newest.id().to_string();
        let mut rewrapped = 0;
        let mut after = String::new();
        loop {
            let page = self.store.keys_after(&after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.compartment.clone();
            for row in &page {
                let Some(wrapped) = &row.wrapped else { continue };
                if row.kek_id == newest_id {
                    continue;
                }
                let wrapped = WrappedKey::from_bytes(wrapped)?;
                let old = keks.iter().find(|k| k.id() == wrapped.kek_id()).ok_or_else(|| KeyringError::WrongKek {
                    found: wrapped.kek_id().to_string(),
                    loaded: newest_id.clone(),
                })?;
                let rewrap = old.rewrap(&newest, &wrapped)?;
                if self.store.rewrap_key(&row.compartment, &row.kek_id, &rewrap.to_bytes(), &newest_id).await? {
                    rewrapped += 1;
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        if retire_old {
            self.dir.retire_all_but(&newest_id)?;
            self.reload()?;
        }
        Ok((newest_id, rewrapped))
    }
}

async fn load_or_create(
    store: &dyn Store,
    keks: &[Arc<Kek>],
    compartment: &str,
    now: Timestamp,
) -> Result<DataKey, KeyringError> {
    if let Some(row) = store.key(compartment).await? {
        return unwrap_row(keks, &row);
    }
    let kek = keks.first().ok_or(KeyringError::NoKek)?;
    let key = DataKey::generate()?;
    let row = KeyRow {
        compartment: compartment.to_owned(),
        wrapped: Some(kek.wrap(&key)?.to_bytes()),
        kek_id: kek.id().to_string(),
        created: now,
        shredded: None,
        legal_hold: None,
    };
    if store.insert_key(&row).await? {
        return Ok(key);
    }
    // Another writer created it first: use theirs.
    let row = store.key(compartment).await?.ok_or(KeyringError::Shredded)?;
    unwrap_row(keks, &row)
}

fn unwrap_row(keks: &[Arc<Kek>], row: &KeyRow) -> Result<DataKey, KeyringError> {
    let wrapped = row.wrapped.as_deref().ok_or(KeyringError::Shredded)?;
    let wrapped = WrappedKey::from_bytes(wrapped)?;
    let kek = keks.iter().find(|k| k.id() == wrapped.kek_id()).ok_or_else(|| KeyringError::WrongKek {
        found: wrapped.kek_id().to_string(),
        loaded: keks.iter().map(|k| k.id().to_string()).collect::<Vec<_>>().join(","),
    })?;
    Ok(kek.unwrap(&wrapped)?)
}

/// The directory of KEK files: `kek-<UTC time>.key`, each a KEK file (see
/// [`Kek::load`]); the newest name wraps new keys. The directory is kept
/// outside the database (by default beside it in the data directory; put it
/// on other storage, or swap this type for a KMS, to keep keys and
/// ciphertext apart).
#[derive(Debug, Clone)]
pub struct KekDir {
    path: PathBuf,
}

impl KekDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn files(&self) -> Result<Vec<PathBuf>, KeyringError> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(KeyringError::Io(format!("{}: {e}", self.path.display()))),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("kek-") && n.ends_with(".key"))
            })
            .collect();
        files.sort();
        files.reverse();
        Ok(files)
    }

    /// Every KEK, newest first; with `create_at`, the first one is made
    /// (named after that time) if there is none.
    pub fn load_all(&self, create_at: Option<Timestamp>) -> Result<Vec<Arc<Kek>>, KeyringError> {
        let files = self.files()?;
        if let (true, Some(now)) = (files.is_empty(), create_at) {
            self.create_next(now)?;
            return self.load_all(None);
        }
        if files.is_empty() {
            return Err(KeyringError::NoKek);
        }
        files.iter().map(|f| Ok(Arc::new(Kek::load(f)?))).collect()
    }

    /// Write a new KEK file named after `now` (and later than any existing).
    pub fn create_next(&self, now: Timestamp) -> Result<PathBuf, KeyringError> {
        create_private_dir(&self.path)?;
        let stamp = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now.as_millis()) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut name = format!(
            "kek-{:04}{:02}{:02}T{:02}{:02}{:02}{:09}.key",
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            stamp.nanosecond()
        );
        if let Some(newest) = self.files()?.first().and_then(|p| p.file_name()).and_then(|n| n.to_str())
            && name.as_str() <= newest
        {
            name = format!("{}-1.key", newest.trim_end_matches(".key"));
        }
        let path = self.path.join(name);
        Kek::load_or_create(&path)?;
        Ok(path)
    }

    /// Remove every KEK file but the one with `keep_id`.
    fn retire_all_but(&self, keep_id: &str) -> Result<(), KeyringError> {
        for file in self.files()? {
            let kek = Kek::load(&file)?;
            if kek.id().to_string() != keep_id {
                std::fs::remove_file(&file).map_err(|e| KeyringError::Io(format!("{}: {e}", file.display())))?;
            }
        }
        Ok(())
    }
}

fn create_private_dir(path: &Path) -> Result<(), KeyringError> {
    let io = |e: std::io::Error| KeyringError::Io(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}
