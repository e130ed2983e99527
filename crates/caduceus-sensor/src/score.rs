//! Turns observations (a write that changed a file's type, a rename to an
//! unknown extension, a canary touched, ...) into verdicts, per writing
//! process and over all processes together. Pure: time comes in as
//! milliseconds, so the windows are tested without a clock. Bounded: a
//! fixed number of actors, each with a capped history.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::report::{Counts, MAX_REPORTED_FILES, Verdict};

/// What one file event showed. An event may show several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// A file closed after writing.
    Write,
    Create,
    Rename,
    Delete,
    /// A write left unknown-type, high-entropy content (counted, not weighed).
    HighEntropyWrite,
    /// A known type became unknown, high-entropy content.
    EncryptedOverwrite,
    /// The type stayed but the content jumped from low/medium to high entropy.
    EntropyJump,
    /// A new file of unknown type and high entropy.
    NewEncryptedFile,
    /// An original deleted next to a new encrypted file of the same name.
    CopyDeletePair,
    /// A rename from a document extension to an unknown one.
    ExtensionChange,
    /// A document (not text or code) deleted.
    DocumentDelete,
    /// A canary file written, renamed or deleted.
    Canary,
}

const SIGNALS: usize = 12;

impl Signal {
    fn index(self) -> usize {
        self as usize
    }

    /// Weight in the score when it lasts the long (evidence) window.
    fn content_weight(self) -> f64 {
        match self {
            Self::EncryptedOverwrite => 3.0,
            Self::EntropyJump => 1.5,
            Self::NewEncryptedFile => 1.0,
            Self::CopyDeletePair => 2.0,
            Self::Canary => 100.0,
            _ => 0.0,
        }
    }

    /// Whether it lives in the short (burst) window.
    fn is_burst(self) -> bool {
        matches!(self, Self::ExtensionChange | Self::DocumentDelete | Self::Rename)
    }

    /// Whether it is evidence (counted once per file, names files in reports).
    fn is_evidence(self) -> bool {
        self.content_weight() > 0.0 || matches!(self, Self::ExtensionChange | Self::DocumentDelete)
    }
}

/// Thresholds and windows of the scorer.
#[derive(Clone, Debug)]
pub struct ScoreConfig {
    /// Window for bursts of renames and deletions.
    pub burst_window_ms: u64,
    /// Window for content evidence (type changes, entropy): long, so that
    /// slow encryption (a file every few seconds or minutes) adds up.
    pub evidence_window_ms: u64,
    /// Score for a ransomware verdict (which also needs content evidence).
    pub ransomware_score: f64,
    /// Score for a suspicious verdict.
    pub suspicious_score: f64,
    /// Least time between two reports of the same actor at the same verdict.
    pub realert_ms: u64,
    /// Processes tracked at once (the least recently active is dropped).
    pub max_actors: usize,
    /// History kept per actor.
    pub max_entries_per_actor: usize,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            burst_window_ms: 10_000,
            evidence_window_ms: 600_000,
            ransomware_score: 6.0,
            suspicious_score: 3.0,
            realert_ms: 2_000,
            max_actors: 256,
            max_entries_per_actor: 4_096,
        }
    }
}

/// Content evidence a ransomware verdict needs besides the score (so that
/// renames and deletions alone stay suspicious).
const MIN_CONTENT_FOR_RANSOMWARE: f64 = 2.0;
/// Weight of one extension change, of one document deletion, and the cap
/// on deletions.
const EXTENSION_CHANGE_WEIGHT: f64 = 2.0;
const DOCUMENT_DELETE_WEIGHT: f64 = 0.25;
const DOCUMENT_DELETE_CAP: f64 = 2.0;
/// Deletions and renames in the burst window that count as a burst.
const DELETION_BURST: u32 = 20;
const DELETION_BURST_WEIGHT: f64 = 2.0;
const RENAME_BURST: u32 = 10;
const RENAME_BURST_WEIGHT: f64 = 1.0;
/// Other pids named in a report.
const MAX_OTHER_PIDS: usize = 8;

/// One file event, as the scorer sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The writer, when fanotify (or attribution) named it.
    pub pid: Option<i32>,
    /// Index of the watched root.
    pub root: usize,
    /// Stable id of the file (inode or path hash) for counting files once.
    pub file_id: u64,
    /// The file's hashed token for reports.
    pub token: &'a str,
    pub signals: &'a [Signal],
}

/// A verdict the scorer reached, for the sensor to turn into a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub score: f64,
    pub reasons: Vec<String>,
    pub pid: Option<i32>,
    pub other_pids: Vec<i32>,
    pub counts: Counts,
    pub canary_touched: bool,
    pub root: Option<usize>,
    pub files: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    t: u64,
    signal: Signal,
    file_id: u64,
}

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Entry>,
    counts: [u32; SIGNALS],
}

impl Window {
    fn push(&mut self, e: Entry, cap: usize, seen: &mut HashSet<(Signal, u64)>) {
        if self.entries.len() >= cap {
            self.pop(seen);
        }
        if let Some(c) = self.counts.get_mut(e.signal.index()) {
            *c = c.saturating_add(1);
        }
        self.entries.push_back(e);
    }

    fn pop(&mut self, seen: &mut HashSet<(Signal, u64)>) {
        if let Some(old) = self.entries.pop_front() {
            if let Some(c) = self.counts.get_mut(old.signal.index()) {
                *c = c.saturating_sub(1);
            }
            if old.signal.is_evidence() {
                seen.remove(&(old.signal, old.file_id));
            }
        }
    }

    fn expire(&mut self, now: u64, window: u64, seen: &mut HashSet<(Signal, u64)>) {
        while self.entries.front().is_some_and(|e| e.t.saturating_add(window) < now) {
            self.pop(seen);
        }
    }

    fn count(&self, s: Signal) -> u32 {
        self.counts.get(s.index()).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Actor {
    /// Content evidence, over the evidence window (kept apart from plain
    /// activity so that a flood of ordinary writes cannot push it out).
    long: Window,
    /// Plain activity (writes, creations, deletions), over the evidence
    /// window, for the counts in reports.
    activity: Window,
    /// Burst signals, over the burst window.
    short: Window,
    seen: HashSet<(Signal, u64)>,
    files: VecDeque<String>,
    pids: VecDeque<i32>,
    root: Option<usize>,
    last_verdict: Option<Verdict>,
    last_emit_ms: u64,
    fresh_evidence: bool,
    last_seen_ms: u64,
}

impl Actor {
    fn observe(&mut self, now: u64, obs: &Observation<'_>, cfg: &ScoreConfig) {
        self.last_seen_ms = now;
        self.expire(now, cfg);
        let mut evidence = false;
        for &signal in obs.signals {
            if signal.is_evidence() && !self.seen.insert((signal, obs.file_id)) {
                continue;
            }
            let entry = Entry { t: now, signal, file_id: obs.file_id };
            let window = if signal.is_burst() {
                &mut self.short
            } else if signal.content_weight() > 0.0 {
                &mut self.long
            } else {
                &mut self.activity
            };
            window.push(entry, cfg.max_entries_per_actor, &mut self.seen);
            if signal.is_evidence() {
                evidence = true;
            }
        }
        if evidence {
            self.fresh_evidence = true;
            self.root = Some(obs.root);
            if !obs.token.is_empty() {
                self.files.retain(|f| f != obs.token);
                self.files.push_front(obs.token.to_owned());
                self.files.truncate(MAX_REPORTED_FILES);
            }
            if let Some(pid) = obs.pid {
                self.pids.retain(|&p| p != pid);
                self.pids.push_front(pid);
                self.pids.truncate(MAX_OTHER_PIDS + 1);
            }
        }
    }

    fn expire(&mut self, now: u64, cfg: &ScoreConfig) {
        self.long.expire(now, cfg.evidence_window_ms, &mut self.seen);
        self.activity.expire(now, cfg.evidence_window_ms, &mut self.seen);
        self.short.expire(now, cfg.burst_window_ms, &mut self.seen);
    }

    fn content(&self) -> f64 {
        [
            Signal::EncryptedOverwrite,
            Signal::EntropyJump,
            Signal::NewEncryptedFile,
            Signal::CopyDeletePair,
            Signal::Canary,
        ]
        .iter()
        .map(|&s| f64::from(self.long.count(s)) * s.content_weight())
        .sum()
    }

    fn burst(&self) -> f64 {
        let deletes = self.short.count(Signal::DocumentDelete);
        let mut b = f64::from(self.short.count(Signal::ExtensionChange)) * EXTENSION_CHANGE_WEIGHT
            + (f64::from(deletes) * DOCUMENT_DELETE_WEIGHT).min(DOCUMENT_DELETE_CAP);
        if deletes >= DELETION_BURST {
            b += DELETION_BURST_WEIGHT;
        }
        if self.short.count(Signal::Rename) >= RENAME_BURST {
            b += RENAME_BURST_WEIGHT;
        }
        b
    }

    fn verdict(&self, cfg: &ScoreConfig) -> (Option<Verdict>, f64) {
        let content = self.content();
        let score = content + self.burst();
        let v = if self.long.count(Signal::Canary) > 0
            || (score >= cfg.ransomware_score && content >= MIN_CONTENT_FOR_RANSOMWARE)
        {
            Some(Verdict::Ransomware)
        } else if score >= cfg.suspicious_score {
            Some(Verdict::Suspicious)
        } else {
            None
        };
        (v, score)
    }

    /// The verdict to report now, if any: a rise, or the same level again
    /// after `realert_ms` with new evidence.
    fn due(&mut self, now: u64, cfg: &ScoreConfig) -> Option<(Verdict, f64)> {
        let (v, score) = self.verdict(cfg);
        let Some(v) = v else {
            self.last_verdict = None;
            return None;
        };
        let rise = self.last_verdict.is_none_or(|last| v > last);
        let again = self.fresh_evidence && now.saturating_sub(self.last_emit_ms) >= cfg.realert_ms;
        if rise || again {
            self.mark_emitted(v, now);
            Some((v, score))
        } else {
            None
        }
    }

    fn mark_emitted(&mut self, v: Verdict, now: u64) {
        self.last_verdict = Some(self.last_verdict.map_or(v, |last| last.max(v)));
        self.last_emit_ms = now;
        self.fresh_evidence = false;
    }

    fn decision(&self, verdict: Verdict, score: f64, pid: Option<i32>) -> Decision {
        let l = &self.long;
        let a = &self.activity;
        let s = &self.short;
        let counts = Counts {
            files_modified: a.count(Signal::Write).into(),
            files_created: a.count(Signal::Create).into(),
            files_renamed: s.count(Signal::Rename).into(),
            files_deleted: a.count(Signal::Delete).into(),
            high_entropy_writes: a.count(Signal::HighEntropyWrite).into(),
            type_changes: l.count(Signal::EncryptedOverwrite).into(),
            entropy_jumps: l.count(Signal::EntropyJump).into(),
            extension_changes: s.count(Signal::ExtensionChange).into(),
            copy_delete_pairs: l.count(Signal::CopyDeletePair).into(),
            canary_touches: l.count(Signal::Canary).into(),
        };
        let mut reasons = Vec::new();
        let mut reason = |cond: bool, r: &str| {
            if cond {
                reasons.push(r.to_owned());
            }
        };
        reason(counts.canary_touches > 0, "canary_touched");
        reason(counts.type_changes > 0, "encrypted_overwrite");
        reason(counts.entropy_jumps > 0, "entropy_jump");
        reason(l.count(Signal::NewEncryptedFile) > 0, "new_encrypted_files");
        reason(counts.copy_delete_pairs > 0, "copy_then_delete");
        reason(counts.extension_changes > 0, "extension_change_to_unknown");
        reason(s.count(Signal::DocumentDelete) >= DELETION_BURST, "deletion_burst");
        reason(s.count(Signal::Rename) >= RENAME_BURST, "rename_burst");
        let other_pids: Vec<i32> = self.pids.iter().copied().filter(|&p| Some(p) != pid).take(MAX_OTHER_PIDS).collect();
        Decision {
            verdict,
            score,
            reasons,
            pid,
            other_pids,
            counts,
            canary_touched: counts.canary_touches > 0,
            root: self.root,
            files: self.files.iter().cloned().collect(),
        }
    }
}

/// The scorer: one actor per known pid plus one for all activity together
/// (which catches encryption spread over many short-lived processes, and is
/// the only actor when no pid is known).
#[derive(Debug)]
pub struct Scorer {
    cfg: ScoreConfig,
    actors: HashMap<i32, Actor>,
    all: Actor,
}

impl Scorer {
    pub fn new(cfg: ScoreConfig) -> Self {
        Self { cfg, actors: HashMap::new(), all: Actor::default() }
    }

    /// Record one observation at `now_ms` and return the verdict to report,
    /// if one is due.
    pub fn observe(&mut self, now_ms: u64, obs: &Observation<'_>) -> Option<Decision> {
        let mut decided = None;
        if let Some(pid) = obs.pid {
            if !self.actors.contains_key(&pid) && self.actors.len() >= self.cfg.max_actors.max(1) {
                self.evict_idle();
            }
            let actor = self.actors.entry(pid).or_default();
            actor.observe(now_ms, obs, &self.cfg);
            if let Some((v, score)) = actor.due(now_ms, &self.cfg) {
                decided = Some(actor.decision(v, score, Some(pid)));
            }
        }
        self.all.observe(now_ms, obs, &self.cfg);
        let combined = self.all.verdict(&self.cfg).0;
        if let Some(d) = &decided
            && combined.is_none_or(|v| v <= d.verdict)
        {
            // The process's own report covers the combined actor too.
            self.all.mark_emitted(d.verdict, now_ms);
            return decided;
        }
        if let Some((v, score)) = self.all.due(now_ms, &self.cfg) {
            // Name the most recent contributor; the rest go in other_pids.
            let pid = self.all.pids.front().copied();
            let mut d = self.all.decision(v, score, pid);
            if self.all.pids.len() > 1 {
                d.reasons.push("several_processes".into());
            }
            decided = Some(d);
        }
        decided
    }

    /// Forget actors with nothing left in their windows.
    pub fn prune(&mut self, now_ms: u64) {
        let cfg = &self.cfg;
        self.actors.retain(|_, a| {
            a.expire(now_ms, cfg);
            !(a.long.entries.is_empty() && a.short.entries.is_empty() && a.activity.entries.is_empty())
        });
        self.all.expire(now_ms, cfg);
    }

    /// Actors tracked (besides the combined one).
    pub fn actors(&self) -> usize {
        self.actors.len()
    }

    fn evict_idle(&mut self) {
        if let Some(pid) = self.actors.iter().min_by_key(|(_, a)| a.last_seen_ms).map(|(&p, _)| p) {
            self.actors.remove(&pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(pid: Option<i32>, file: u64, signals: &'a [Signal]) -> Observation<'a> {
        Observation { pid, root: 0, file_id: file, token: "abcd.pdf", signals }
    }

    #[test]
    fn two_encrypted_overwrites_make_ransomware_one_is_suspicious() {
        let mut s = Scorer::new(ScoreConfig::default());
        let sig = [Signal::Write, Signal::EncryptedOverwrite, Signal::HighEntropyWrite];
        let d = s.observe(1_000, &obs(Some(10), 1, &sig)).unwrap();
        assert_eq!(d.verdict, Verdict::Suspicious);
        assert_eq!(d.pid, Some(10));
        let d = s.observe(1_100, &obs(Some(10), 2, &sig)).unwrap();
        assert_eq!(d.verdict, Verdict::Ransomware);
        assert_eq!(d.counts.type_changes, 2);
        assert!(d.reasons.contains(&"encrypted_overwrite".to_owned()));
        // The same level again only after realert_ms and with new evidence.
        assert!(s.observe(1_200, &obs(Some(10), 3, &sig)).is_none());
        // The held-back evidence goes out with the next event after realert_ms.
        let d = s.observe(5_000, &obs(Some(10), 3, &[Signal::Write])).unwrap();
        assert_eq!((d.verdict, d.counts.type_changes), (Verdict::Ransomware, 3));
        assert!(s.observe(5_100, &obs(Some(10), 4, &sig)).is_none());
        // Activity without new evidence is not reported again.
        assert!(s.observe(9_000, &obs(Some(10), 4, &sig)).is_some());
        assert!(s.observe(20_000, &obs(Some(10), 5, &[Signal::Write])).is_none());
    }

    #[test]
    fn the_same_file_counts_once() {
        let mut s = Scorer::new(ScoreConfig::default());
        let sig = [Signal::EncryptedOverwrite];
        assert!(s.observe(0, &obs(None, 1, &sig)).is_some());
        for t in 1..50 {
            assert!(s.observe(t, &obs(None, 1, &sig)).is_none());
        }
    }

    #[test]
    fn a_canary_is_ransomware_at_once() {
        let mut s = Scorer::new(ScoreConfig::default());
        let d = s.observe(0, &obs(None, 9, &[Signal::Canary])).unwrap();
        assert_eq!(d.verdict, Verdict::Ransomware);
        assert!(d.canary_touched);
        assert_eq!(d.reasons, vec!["canary_touched".to_owned()]);
    }

    #[test]
    fn renames_and_deletions_alone_stay_below_ransomware() {
        let mut s = Scorer::new(ScoreConfig::default());
        let mut worst = None;
        for f in 0..200 {
            let signals = [Signal::Rename, Signal::ExtensionChange, Signal::Delete, Signal::DocumentDelete];
            if let Some(d) = s.observe(f, &obs(None, f, &signals)) {
                worst = worst.max(Some(d.verdict));
            }
        }
        assert_eq!(worst, Some(Verdict::Suspicious));
        // A few document deletions are not even suspicious.
        let mut s = Scorer::new(ScoreConfig::default());
        for f in 0..10 {
            assert!(s.observe(f, &obs(None, f, &[Signal::Delete, Signal::DocumentDelete])).is_none());
        }
    }

    #[test]
    fn slow_encryption_adds_up_over_the_evidence_window_and_expires() {
        let mut s = Scorer::new(ScoreConfig::default());
        let sig = [Signal::EncryptedOverwrite];
        assert_eq!(s.observe(0, &obs(Some(1), 1, &sig)).unwrap().verdict, Verdict::Suspicious);
        // 60 s later, still within the 10 min evidence window.
        assert_eq!(s.observe(60_000, &obs(Some(1), 2, &sig)).unwrap().verdict, Verdict::Ransomware);
        // An hour later the old evidence is gone: one file is only suspicious.
        let d = s.observe(3_600_000, &obs(Some(1), 3, &sig)).unwrap();
        assert_eq!(d.verdict, Verdict::Suspicious);
        s.prune(10_000_000);
        assert_eq!(s.actors(), 0);
    }

    #[test]
    fn copy_then_delete_needs_two_files() {
        let mut s = Scorer::new(ScoreConfig::default());
        let new = [Signal::Create, Signal::Write, Signal::HighEntropyWrite, Signal::NewEncryptedFile];
        let del = [Signal::Delete, Signal::DocumentDelete, Signal::CopyDeletePair];
        assert!(s.observe(0, &obs(None, 1, &new)).is_none());
        assert_eq!(s.observe(1, &obs(None, 2, &del)).unwrap().verdict, Verdict::Suspicious);
        assert!(s.observe(2, &obs(None, 3, &new)).is_none());
        let d = s.observe(3, &obs(None, 4, &del)).unwrap();
        assert_eq!(d.verdict, Verdict::Ransomware);
        assert!(d.reasons.contains(&"copy_then_delete".to_owned()));
    }

    #[test]
    fn encryption_spread_over_processes_is_caught_by_the_combined_actor() {
        let mut s = Scorer::new(ScoreConfig::default());
        let sig = [Signal::EncryptedOverwrite];
        let mut worst: Option<Decision> = None;
        for (i, pid) in (100..104).enumerate() {
            if let Some(d) = s.observe(i as u64, &obs(Some(pid), i as u64, &sig))
                && worst.as_ref().is_none_or(|w| d.verdict > w.verdict)
            {
                worst = Some(d);
            }
        }
        let d = worst.unwrap();
        assert_eq!(d.verdict, Verdict::Ransomware);
        assert_eq!(d.pid, Some(101));
        assert!(d.other_pids.contains(&100));
        assert!(d.reasons.contains(&"several_processes".to_owned()));
    }

    #[test]
    fn actors_and_history_are_bounded() {
        let cfg = ScoreConfig { max_actors: 4, max_entries_per_actor: 8, ..ScoreConfig::default() };
        let mut s = Scorer::new(cfg);
        for pid in 0..100 {
            for f in 0..50 {
                s.observe(
                    u64::try_from(pid * 50 + f).unwrap(),
                    &obs(Some(pid), f.try_into().unwrap(), &[Signal::Write]),
                );
            }
        }
        assert!(s.actors() <= 4);
        assert!(s.actors.values().all(|a| a.activity.entries.len() <= 8));
        assert!(s.all.activity.entries.len() <= 8);
    }

    #[test]
    fn a_flood_of_ordinary_writes_does_not_push_out_slow_evidence() {
        let cfg = ScoreConfig { max_entries_per_actor: 64, ..ScoreConfig::default() };
        let mut s = Scorer::new(cfg);
        assert!(s.observe(0, &obs(None, 1, &[Signal::EncryptedOverwrite])).is_some());
        for f in 0..10_000 {
            assert!(s.observe(1 + f / 100, &obs(None, 100 + f, &[Signal::Write])).is_none());
        }
        let d = s.observe(200_000, &obs(None, 2, &[Signal::EncryptedOverwrite])).unwrap();
        assert_eq!((d.verdict, d.counts.type_changes), (Verdict::Ransomware, 2));
        assert_eq!(d.counts.files_modified, 64);
    }
}
