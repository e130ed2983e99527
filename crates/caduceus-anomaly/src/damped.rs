//! Kitsune-style damped incremental statistics ("AfterImage", Mirsky et al., NDSS 2018).
//!
//! Owns the per-key traffic summaries that turn a packet or flow stream into fixed-length feature
//! rows for the [`crate::OnlineDetector`]: for each decay rate λ, a statistic's weight, sums and
//! residual products fade by `2^(-λ Δt)`, so λ = 5 remembers the last fraction of a second and
//! λ = 0.01 the last minutes. Per key it tracks:
//!
//! - `H`: the source host's packet/flow sizes (weight, mean, std);
//! - `HH`: the host pair, sizes in the sending direction plus 2D stats over both directions
//!   (magnitude, radius, covariance, correlation);
//! - `HH_jit`: inter-arrival times in the sending direction of the host pair;
//! - `HpHp`: the socket pair (host and port on both sides), like `HH`.
//!
//! Memory is bounded: each of the three tables holds at most its configured number of keys and,
//! when full, evicts the key updated longest ago (exact LRU, O(1)). An evicted key that comes back
//! starts from zero, which is what its fully decayed statistics would be anyway once it has been
//! quiet for a few half-lives. Every update is O(number of λ). Time comes in with each update;
//! nothing here reads a clock. Host names are hashed once with a per-instance random key, so an
//! outside sender cannot aim hash collisions at another host's statistics.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

/// Tuning of [`DampedStats`]. With five λ a host costs about 0.2 KB and a host or socket pair
/// about 0.9 KB, so the default caps hold at most about 47 MB.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct DampedParams {
    /// Decay rates λ (per second); a statistic's half-life is `1 / λ` seconds. Kitsune's set.
    pub lambdas: Vec<f64>,
    /// Most source hosts tracked at once.
    pub max_hosts: usize,
    /// Most host pairs tracked at once.
    pub max_channels: usize,
    /// Most socket pairs tracked at once.
    pub max_sockets: usize,
}

impl Default for DampedParams {
    fn default() -> Self {
        Self { lambdas: vec![5.0, 3.0, 1.0, 0.1, 0.01], max_hosts: 8_192, max_channels: 16_384, max_sockets: 32_768 }
    }
}

/// Where one packet or flow comes from and goes to, hashed once (see [`DampedStats::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Hash of the sending host.
    pub src_host: u64,
    /// Sending port (0 when unknown).
    pub src_port: u16,
    /// Hash of the receiving host.
    pub dst_host: u64,
    /// Receiving port (0 when unknown).
    pub dst_port: u16,
}

/// Features per λ: H (3) + HH (7) + HH_jit (3) + HpHp (7).
const PER_LAMBDA: usize = 20;

/// Most decay rates used; further ones are ignored (Kitsune uses five).
pub const MAX_LAMBDAS: usize = 8;

/// One decayed 1D statistic: weight, linear sum, squared sum, time of the last decay.
#[derive(Clone, Copy, Debug, Default)]
struct Inc {
    w: f64,
    ls: f64,
    ss: f64,
    t: f64,
}

impl Inc {
    fn fresh(t: f64) -> Self {
        Self { w: 0.0, ls: 0.0, ss: 0.0, t }
    }

    /// Fades the sums to time `t`; time running backwards (out-of-order input) does not decay.
    fn decay(&mut self, lambda: f64, t: f64) {
        let dt = t - self.t;
        if dt > 0.0 {
            let f = (-lambda * dt).exp2();
            self.w *= f;
            self.ls *= f;
            self.ss *= f;
            self.t = t;
        }
    }

    fn insert(&mut self, lambda: f64, v: f64, t: f64) {
        self.decay(lambda, t);
        self.w += 1.0;
        self.ls += v;
        self.ss += v * v;
    }

    fn mean(&self) -> f64 {
        if self.w > 0.0 { self.ls / self.w } else { 0.0 }
    }

    fn var(&self) -> f64 {
        if self.w > 0.0 {
            let m = self.mean();
            (self.ss / self.w - m * m).abs()
        } else {
            0.0
        }
    }
}

/// Decayed co-movement of the two directions of a pair (Kitsune's `incStat_cov`).
#[derive(Clone, Copy, Debug, Default)]
struct Cov {
    /// Decayed sum of residual products `(a - mean_a)(b - mean_b)`.
    sr: f64,
    w: f64,
    t: f64,
    /// Each direction's last residual from its mean.
    last_res: [f64; 2],
}

/// Both directions of a host or socket pair at one λ.
#[derive(Clone, Copy, Debug, Default)]
struct PairLambda {
    dir: [Inc; 2],
    cov: Cov,
    jit: [Inc; 2],
}

#[derive(Clone, Debug)]
struct PairEntry {
    /// Host (or socket) hashes of the pair; direction 0 is sent by `first`, the smaller.
    first: u64,
    second: u64,
    /// Time of each direction's last packet, for the jitter; NaN before the first.
    last_seen: [f64; 2],
    per_lambda: Vec<PairLambda>,
}

/// Fixed-capacity map from a hashed key to a value, evicting the least recently used key.
struct Lru<T> {
    map: HashMap<u64, u32>,
    slots: Vec<Slot<T>>,
    /// Most recently used slot, or [`NIL`].
    head: u32,
    /// Least recently used slot, or [`NIL`].
    tail: u32,
    cap: usize,
}

const NIL: u32 = u32::MAX;

struct Slot<T> {
    key: u64,
    prev: u32,
    next: u32,
    val: T,
}

impl<T> Lru<T> {
    fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, NIL as usize - 1);
        Self { map: HashMap::new(), slots: Vec::new(), head: NIL, tail: NIL, cap }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn unlink(&mut self, i: u32) {
        let Some((prev, next)) = self.slots.get(i as usize).map(|s| (s.prev, s.next)) else {
            return;
        };
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.prev = NIL;
            s.next = old;
        }
        match self.slots.get_mut(old as usize) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    /// The value for `key`, made most recent; created with `init` (evicting the least recently
    /// used key when full) if absent.
    fn touch(&mut self, key: u64, init: impl FnOnce() -> T) -> Option<&mut T> {
        let i = match self.map.get(&key) {
            Some(&i) => {
                if i != self.head {
                    self.unlink(i);
                    self.push_front(i);
                }
                i
            }
            None => {
                let i = if self.map.len() >= self.cap && self.tail != NIL {
                    let victim = self.tail;
                    self.unlink(victim);
                    if let Some(s) = self.slots.get_mut(victim as usize) {
                        self.map.remove(&s.key);
                        s.key = key;
                        s.val = init();
                    }
                    victim
                } else {
                    self.slots.push(Slot { key, prev: NIL, next: NIL, val: init() });
                    (self.slots.len() - 1) as u32
                };
                self.map.insert(key, i);
                self.push_front(i);
                i
            }
        };
        self.slots.get_mut(i as usize).map(|s| &mut s.val)
    }
}

/// Damped per-host, per-channel and per-socket traffic statistics with bounded memory.
pub struct DampedStats {
    lambdas: Vec<f64>,
    hasher: RandomState,
    hosts: Lru<Vec<Inc>>,
    channels: Lru<PairEntry>,
    sockets: Lru<PairEntry>,
}

impl std::fmt::Debug for DampedStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DampedStats")
            .field("lambdas", &self.lambdas)
            .field("hosts", &self.hosts.len())
            .field("channels", &self.channels.len())
            .field("sockets", &self.sockets.len())
            .finish()
    }
}

impl DampedStats {
    /// Empty statistics. Only the first [`MAX_LAMBDAS`] positive λ are used; none falls back to
    /// Kitsune's five rates.
    pub fn new(params: DampedParams) -> Self {
        let lambdas: Vec<f64> =
            params.lambdas.into_iter().filter(|l| *l > 0.0 && l.is_finite()).take(MAX_LAMBDAS).collect();
        let lambdas = if lambdas.is_empty() { DampedParams::default().lambdas } else { lambdas };
        Self {
            lambdas,
            hasher: RandomState::new(),
            hosts: Lru::new(params.max_hosts),
            channels: Lru::new(params.max_channels),
            sockets: Lru::new(params.max_sockets),
        }
    }

    /// Names of the features [`Self::update`] returns, for the default λ set (Kitsune's naming:
    /// `{H,HH,HH_jit,HpHp}_L{λ}_{stat}`).
    pub fn feature_names() -> Vec<String> {
        names_for(&DampedParams::default().lambdas)
    }

    /// Names of this instance's features (differs from [`Self::feature_names`] only when custom λ
    /// were given).
    pub fn names(&self) -> Vec<String> {
        names_for(&self.lambdas)
    }

    /// Length of every feature vector: 20 per λ.
    pub fn width(&self) -> usize {
        self.lambdas.len() * PER_LAMBDA
    }

    /// Keys currently tracked (hosts, host pairs, socket pairs); each stays within its cap.
    pub fn tracked(&self) -> (usize, usize, usize) {
        (self.hosts.len(), self.channels.len(), self.sockets.len())
    }

    /// Hash of a host name or address, stable for this instance.
    pub fn key(&self, host: &str) -> u64 {
        self.hasher.hash_one(host)
    }

    /// A [`FlowKey`] from host names and ports.
    pub fn flow_key(&self, src: &str, src_port: u16, dst: &str, dst_port: u16) -> FlowKey {
        FlowKey { src_host: self.key(src), src_port, dst_host: self.key(dst), dst_port }
    }

    /// Records a packet (or flow) of `size` bytes from `src` to `dst` at `t_secs` and returns the
    /// feature vector after it. Without ports the socket statistics equal the host-pair ones; use
    /// [`Self::update_key`] when ports are known.
    pub fn update(&mut self, src: &str, dst: &str, size: f64, t_secs: f64) -> Vec<f32> {
        let key = self.flow_key(src, 0, dst, 0);
        self.update_key(&key, size, t_secs)
    }

    /// Like [`Self::update`] for an already-hashed key.
    pub fn update_key(&mut self, key: &FlowKey, size: f64, t_secs: f64) -> Vec<f32> {
        let mut out = vec![0.0; self.width()];
        self.update_into(key, size, t_secs, &mut out);
        out
    }

    /// Like [`Self::update_key`], writing into `out` (no allocation once the keys exist). `out`
    /// shorter than [`Self::width`] receives the leading features only. Non-finite sizes or
    /// times are ignored (`out` is left unchanged).
    pub fn update_into(&mut self, key: &FlowKey, size: f64, t: f64, out: &mut [f32]) {
        if !size.is_finite() || !t.is_finite() {
            return;
        }
        let n = self.lambdas.len();
        let lambdas = &self.lambdas;
        let mut chunks = out.chunks_mut(PER_LAMBDA);

        let host = self.hosts.touch(key.src_host, || vec![Inc::fresh(t); n]);
        let mut host_feats = [[0.0f32; 3]; MAX_LAMBDAS];
        if let Some(host) = host {
            for ((inc, lambda), hf) in host.iter_mut().zip(lambdas).zip(host_feats.iter_mut()) {
                inc.insert(*lambda, size, t);
                *hf = stats_1d(inc);
            }
        }
        let hh = pair_update(&mut self.channels, lambdas, key.src_host, key.dst_host, size, t);
        let socket_src = mix_socket(key.src_host, key.src_port);
        let socket_dst = mix_socket(key.dst_host, key.dst_port);
        let hphp = pair_update(&mut self.sockets, lambdas, socket_src, socket_dst, size, t);

        for i in 0..n {
            let Some(chunk) = chunks.next() else { break };
            let h = host_feats.get(i).copied().unwrap_or_default();
            let (c, j) = hh.get(i).copied().unwrap_or_default();
            let (s, _) = hphp.get(i).copied().unwrap_or_default();
            let row = h.iter().chain(&c).chain(&j).chain(&s);
            for (o, v) in chunk.iter_mut().zip(row) {
                *o = *v;
            }
        }
    }
}

type PairFeats = ([f32; 7], [f32; 3]);

/// Updates the pair `{src, dst}` with a packet sent by `src`; per λ returns the 7 pair features
/// (sending direction's weight, mean, std; magnitude, radius, covariance, correlation) and the
/// 3 jitter features of the sending direction.
fn pair_update(
    table: &mut Lru<PairEntry>,
    lambdas: &[f64],
    src: u64,
    dst: u64,
    size: f64,
    t: f64,
) -> [PairFeats; MAX_LAMBDAS] {
    let mut feats = [([0.0f32; 7], [0.0f32; 3]); MAX_LAMBDAS];
    let (first, second) = if src <= dst { (src, dst) } else { (dst, src) };
    let pair_key = crate::hst::mix(first ^ crate::hst::mix(second));
    let Some(entry) = table.touch(pair_key, || PairEntry {
        first,
        second,
        last_seen: [f64::NAN; 2],
        per_lambda: vec![
            PairLambda {
                dir: [Inc::fresh(t); 2],
                cov: Cov { t, ..Cov::default() },
                jit: [Inc::fresh(t); 2],
            };
            lambdas.len()
        ],
    }) else {
        return feats;
    };
    // A different pair hashed to the same slot key: restart it rather than mix two pairs.
    if entry.first != first || entry.second != second {
        entry.first = first;
        entry.second = second;
        entry.last_seen = [f64::NAN; 2];
        for pl in &mut entry.per_lambda {
            *pl = PairLambda { dir: [Inc::fresh(t); 2], cov: Cov { t, ..Cov::default() }, jit: [Inc::fresh(t); 2] };
        }
    }
    let d = usize::from(src != first);
    let o = 1 - d;
    let last = entry.last_seen.get(d).copied().unwrap_or(f64::NAN);
    let gap = if last.is_nan() { 0.0 } else { (t - last).max(0.0) };
    if let Some(ls) = entry.last_seen.get_mut(d) {
        *ls = t;
    }
    for ((pl, lambda), f) in entry.per_lambda.iter_mut().zip(lambdas).zip(feats.iter_mut()) {
        let lambda = *lambda;
        let [a, b] = &mut pl.dir;
        let (mine, other) = if d == 0 { (a, b) } else { (b, a) };
        mine.insert(lambda, size, t);
        other.decay(lambda, t);
        // Covariance of the two directions (Kitsune's incStat_cov.update_cov).
        let cov = &mut pl.cov;
        let dt = t - cov.t;
        if dt > 0.0 {
            let fac = (-lambda * dt).exp2();
            cov.sr *= fac;
            cov.w *= fac;
            cov.t = t;
        }
        let res = size - mine.mean();
        cov.sr += res * cov.last_res.get(o).copied().unwrap_or(0.0);
        cov.w += 1.0;
        if let Some(r) = cov.last_res.get_mut(d) {
            *r = res;
        }
        let (vm, vo) = (mine.var(), other.var());
        let (sm, so) = (vm.sqrt(), vo.sqrt());
        let covariance = if cov.w > 0.0 { cov.sr / cov.w } else { 0.0 };
        let pcc = if sm * so > 0.0 { covariance / (sm * so) } else { 0.0 };
        let (mm, mo) = (mine.mean(), other.mean());
        f.0 = [
            mine.w as f32,
            mm as f32,
            sm as f32,
            (mm * mm + mo * mo).sqrt() as f32,
            (vm * vm + vo * vo).sqrt() as f32,
            covariance as f32,
            pcc as f32,
        ];
        if let Some(jit) = pl.jit.get_mut(d) {
            jit.insert(lambda, gap, t);
            f.1 = stats_1d(jit);
        }
    }
    feats
}

fn stats_1d(inc: &Inc) -> [f32; 3] {
    [inc.w as f32, inc.mean() as f32, inc.var().sqrt() as f32]
}

fn mix_socket(host: u64, port: u16) -> u64 {
    crate::hst::mix(host ^ u64::from(port).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn names_for(lambdas: &[f64]) -> Vec<String> {
    let mut names = Vec::with_capacity(lambdas.len() * PER_LAMBDA);
    for l in lambdas {
        for s in ["weight", "mean", "std"] {
            names.push(format!("H_L{l}_{s}"));
        }
        for s in ["weight", "mean", "std", "magnitude", "radius", "covariance", "pcc"] {
            names.push(format!("HH_L{l}_{s}"));
        }
        for s in ["weight", "mean", "std"] {
            names.push(format!("HH_jit_L{l}_{s}"));
        }
        for s in ["weight", "mean", "std", "magnitude", "radius", "covariance", "pcc"] {
            names.push(format!("HpHp_L{l}_{s}"));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn one_lambda(lambda: f64) -> DampedStats {
        DampedStats::new(DampedParams { lambdas: vec![lambda], ..DampedParams::default() })
    }

    fn close(a: f32, b: f64) {
        assert!((f64::from(a) - b).abs() < 1e-3 * b.abs().max(1.0), "{a} != {b}");
    }

    #[test]
    fn decay_matches_hand_computation() {
        let mut s = one_lambda(1.0);
        s.update("10.0.0.1", "10.0.0.2", 10.0, 0.0);
        let f = s.update("10.0.0.1", "10.0.0.2", 20.0, 1.0);
        // One second at λ = 1 halves the old sums: w = 0.5 + 1, LS = 5 + 20, SS = 50 + 400.
        let (w, mean): (f64, f64) = (1.5, 25.0 / 1.5);
        let std = (450.0 / 1.5 - mean * mean).sqrt();
        for base in [0, 3, 13] {
            close(f[base], w);
            close(f[base + 1], mean);
            close(f[base + 2], std);
        }
        // The reverse direction is empty: magnitude is this side's mean, radius its variance.
        close(f[6], mean);
        close(f[7], std * std);
        close(f[8], 0.0);
        close(f[9], 0.0);
        // Jitter: gaps 0 then 1 second: w = 1.5, LS = 1, SS = 1.
        close(f[10], 1.5);
        close(f[11], 1.0 / 1.5);
        close(f[12], (1.0 / 1.5 - (1.0 / 1.5f64).powi(2)).sqrt());
    }

    #[test]
    fn two_directions_give_covariance_and_correlation() {
        let mut s = one_lambda(1.0);
        s.update("a", "b", 10.0, 0.0);
        s.update("b", "a", 20.0, 0.0);
        s.update("a", "b", 30.0, 0.0);
        let f = s.update("b", "a", 40.0, 0.0);
        // b→a: values 20, 40 → mean 30, variance 100; a→b: 10, 30 → mean 20, variance 100.
        // Residual products: only (40 - 30) * (30 - 20) = 100 is non-zero, over weight 4.
        close(f[3], 2.0);
        close(f[4], 30.0);
        close(f[5], 10.0);
        close(f[6], (30.0f64 * 30.0 + 20.0 * 20.0).sqrt());
        close(f[7], (100.0f64 * 100.0 + 100.0 * 100.0).sqrt());
        close(f[8], 25.0);
        close(f[9], 0.25);
        // The source host b only counts its own packets.
        close(f[0], 2.0);
        close(f[1], 30.0);
    }

    #[test]
    fn sockets_separate_ports() {
        let mut s = one_lambda(5.0);
        let k1 = s.flow_key("h1", 1000, "h2", 443);
        let k2 = s.flow_key("h1", 1001, "h2", 443);
        s.update_key(&k1, 100.0, 0.0);
        let f = s.update_key(&k2, 100.0, 0.0);
        close(f[3], 2.0); // host pair sees both
        close(f[13], 1.0); // the second socket is new
        assert_eq!(s.tracked(), (1, 1, 2));
    }

    #[test]
    fn time_running_backwards_does_not_decay_or_break() {
        let mut s = one_lambda(1.0);
        s.update("a", "b", 10.0, 5.0);
        let f = s.update("a", "b", 10.0, 4.0);
        close(f[0], 2.0);
        assert!(f.iter().all(|v| v.is_finite()));
        let g = s.update("a", "b", f64::NAN, 6.0);
        assert!(g.iter().all(|v| *v == 0.0), "non-finite input is ignored");
    }

    #[test]
    fn memory_is_capped_and_the_stalest_key_is_evicted() {
        let params = DampedParams { lambdas: vec![1.0], max_hosts: 2, max_channels: 3, max_sockets: 4 };
        let mut s = DampedStats::new(params);
        for i in 0..100 {
            s.update(&format!("10.0.0.{i}"), "10.0.1.1", 60.0, f64::from(i));
            let (h, c, k) = s.tracked();
            assert!(h <= 2 && c <= 3 && k <= 4);
        }
        let mut s = DampedStats::new(DampedParams { lambdas: vec![1.0], max_hosts: 2, ..DampedParams::default() });
        s.update("x", "y", 1.0, 0.0);
        s.update("z", "y", 1.0, 0.0);
        s.update("x", "y", 1.0, 0.0); // x is now the most recent, z the stalest
        s.update("w", "y", 1.0, 0.0); // evicts z
        close(s.update("x", "y", 1.0, 0.0)[0], 3.0);
        close(s.update("z", "y", 1.0, 0.0)[0], 1.0);
    }

    #[test]
    fn names_match_width() {
        let names = DampedStats::feature_names();
        assert_eq!(names.len(), 100);
        assert_eq!(names[0], "H_L5_weight");
        assert_eq!(names[99], "HpHp_L0.01_pcc");
        let s = DampedStats::new(DampedParams::default());
        assert_eq!(s.width(), names.len());
        assert_eq!(s.names(), names);
    }
}
