//! The ledger through the real binary: SIGKILL during sustained appends,
//! flipped bytes caught by `caduceus ledger verify`, a tiles-only client
//! following the log, offline proof bundles, and two instances witnessing
//! each other's logs — refusing a rewritten history.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use caduceus_ledger::merkle::{self, Hash};
use caduceus_ledger::note::{NoteVerifier, SignedNote};
use caduceus_ledger::seal::commitment;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::scan::walk;
use super::{Running, command, spawn, token_from};

/// Publish an event over the API; the response (202 once it is sealed).
async fn submit(client: &reqwest::Client, url: &str, token: &str, message: &str) -> reqwest::Response {
    let body = event(message);
    client.post(format!("{url}/api/v1/events")).bearer_auth(token).json(&body).send().await.unwrap()
}

/// An admin GET of `path` (after the server URL).
async fn get(client: &reqwest::Client, url: &str, token: &str, path: &str) -> reqwest::Response {
    client.get(format!("{url}{path}")).bearer_auth(token).send().await.unwrap()
}

fn event(message: &str) -> Value {
    json!({
        "severity_id": 1, "actor": {"kind": "system", "uid": "ledger-test"}, "message": message,
        "payload": {"type": "config_change", "key": "k", "detail": "d"}
    })
}

/// A data directory with a config (and extra TOML) and an admin token.
struct Site {
    dir: PathBuf,
    config: PathBuf,
    token: String,
}

impl Site {
    fn new(dir: &Path, listen: &str, extra: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("caduceus.toml");
        let data = dir.join("data");
        let text = format!(
            "version = 1\ndata_dir = \"{}\"\n[server]\nlisten = \"{listen}\"\nshutdown_grace_secs = 2\n{extra}",
            data.display()
        );
        std::fs::write(&config, text).unwrap();
        let output = command().args(["admin", "issue-token", "--config"]).arg(&config).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let token = token_from(&stdout.lines().map(str::to_owned).collect::<Vec<_>>());
        Self { dir: dir.to_owned(), config, token }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn rewrite_config(&self, listen: &str, extra: &str) {
        let text = format!(
            "version = 1\ndata_dir = \"{}\"\n[server]\nlisten = \"{listen}\"\nshutdown_grace_secs = 2\n{extra}",
            self.data().display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn serve(&self) -> Running {
        let mut cmd = command();
        cmd.args(["serve", "--config"]).arg(&self.config);
        spawn(cmd)
    }
}

fn line_value(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no `{label}` line in {lines:?}"))
}

fn kill(mut running: Running) {
    running.child.kill().unwrap();
    running.child.wait().unwrap();
}

fn verify_cli(data: &Path, key: &str) -> std::process::Output {
    command().args(["ledger", "verify", "--data-dir"]).arg(data).args(["--key", key]).output().unwrap()
}

async fn publish_checkpoint(client: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    client.post(format!("{url}/api/v1/ledger/checkpoints")).bearer_auth(token).send().await.unwrap()
}

fn b64_hash(value: &Value) -> Hash {
    Hash::try_from(B64.decode(value.as_str().unwrap()).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_to_sigkill_and_the_ledger_verifies_after_each_restart() {
    let rounds: usize = std::env::var("TEST_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "127.0.0.1:0", "");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261129);
    // (seq, digest) of every event the server acknowledged, over all rounds.
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut proven = 0;
    let mut key = String::new();
    for round in 0..rounds {
        let server = site.serve();
        key = line_value(&server.stdout, "ledger key:");
        let client = server.client(&site.data());

        // Everything acknowledged before the previous kill is sealed.
        let r = publish_checkpoint(&client, &server.url, &site.token).await;
        assert_eq!(r.status(), 201, "round {round}");
        // The events acknowledged before the last kill (earlier ones were
        // proven after earlier restarts, and `ledger verify` below checks
        // every stored event against its seal).
        for (seq, digest) in &acknowledged[proven..] {
            let path = format!("/api/v1/ledger/events/{seq}/inclusion");
            let proof: Value = get(&client, &server.url, &site.token, &path).await.json().await.unwrap();
            let index = proof["index"].as_u64().unwrap_or_else(|| panic!("event {seq} lost: {proof}"));
            let salt: [u8; 16] = B64.decode(proof["seal"]["salt"].as_str().unwrap()).unwrap().try_into().unwrap();
            let digest: [u8; 32] = hex_decode(digest);
            let leaf = merkle::leaf_hash(&commitment(&salt, &digest));
            assert_eq!(leaf, b64_hash(&proof["leaf_hash"]), "event {seq}");
            let hashes: Vec<Hash> = proof["proof"].as_array().unwrap().iter().map(b64_hash).collect();
            let size = proof["tree_size"].as_u64().unwrap();
            merkle::verify_inclusion(index, size, &leaf, &hashes, &b64_hash(&proof["root"])).unwrap();
        }
        proven = acknowledged.len();
        if round > 0 {
            // The restart recovered; a clean stop and an offline check.
            server.terminate();
            let output = verify_cli(&site.data(), &key);
            assert!(output.status.success(), "round {round}: {}", String::from_utf8_lossy(&output.stderr));
        } else {
            server.terminate();
        }

        // Sustained appends from 8 writers, then SIGKILL at a random moment.
        let server = site.serve();
        let client = server.client(&site.data());
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (client, url, token, stop) = (client.clone(), server.url.clone(), site.token.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = event(&format!("round {round} writer {w} event {n}"));
                    let sent = client.post(format!("{url}/api/v1/events")).bearer_auth(&token).json(&body).send().await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            if let Ok(receipt) = r.json::<Value>().await {
                                acked.push((
                                    receipt["seq"].as_u64().unwrap(),
                                    receipt["digest"].as_str().unwrap().to_owned(),
                                ));
                            }
                        }
                        // The server died under us: what was not answered was not acknowledged.
                        _ => break,
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
        kill(server);
        stop.store(true, Ordering::Relaxed);
        let before = acknowledged.len();
        for writer in writers {
            acknowledged.extend(writer.await.unwrap());
        }
        assert!(acknowledged.len() > before, "round {round}: nothing was acknowledged before the kill");
    }
    // The last kill, recovered and checked once more.
    let server = site.serve();
    let client = server.client(&site.data());
    assert_eq!(publish_checkpoint(&client, &server.url, &site.token).await.status(), 201);
    let status: Value = get(&client, &server.url, &site.token, "/api/v1/ledger").await.json().await.unwrap();
    let max_acked = acknowledged.iter().map(|(s, _)| *s).max().unwrap();
    assert!(status["last_sealed_seq"].as_u64().unwrap() >= max_acked, "{status}");
    server.terminate();
    let output = verify_cli(&site.data(), &key);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn hex_decode<const N: usize>(text: &str) -> [u8; N] {
    let bytes: Vec<u8> = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

/// Follow the log as a tiles client would, with only `/ledger/*`: check the
/// checkpoint's signature and recompute its root from the tiles.
async fn follow_with_tiles(client: &reqwest::Client, url: &str) -> u64 {
    let vkey = client.get(format!("{url}/ledger/key")).send().await.unwrap().text().await.unwrap();
    let verifier = NoteVerifier::parse(vkey.trim()).unwrap();
    let note = client.get(format!("{url}/ledger/checkpoint")).send().await.unwrap().bytes().await.unwrap();
    let note = SignedNote::parse(&note).unwrap();
    note.verify(&[verifier]).unwrap();
    let checkpoint = caduceus_ledger::checkpoint::Checkpoint::parse(&note.text).unwrap();
    let size = checkpoint.size;
    let mut leaves = Vec::new();
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256);
        let suffix = if width == 256 { String::new() } else { format!(".p/{width}") };
        let path = format!("{n:03}{suffix}");
        let tile = client.get(format!("{url}/ledger/tile/0/{path}")).send().await.unwrap();
        assert_eq!(tile.status(), 200, "tile/0/{path}");
        assert_eq!(tile.headers()["content-type"], "application/octet-stream");
        let tile = tile.bytes().await.unwrap();
        let bundle =
            client.get(format!("{url}/ledger/tile/entries/{path}")).send().await.unwrap().bytes().await.unwrap();
        // Each entry (u16 length, commitment) hashes to the tile's leaf hash.
        for (i, entry) in bundle.chunks(34).enumerate() {
            assert_eq!(&entry[..2], &[0, 32]);
            assert_eq!(&merkle::leaf_hash(&entry[2..])[..], &tile[i * 32..i * 32 + 32]);
        }
        leaves.extend(tile.chunks(32).map(|c| Hash::try_from(c).unwrap()));
    }
    assert_eq!(merkle::root(&leaves), checkpoint.root, "tiles recompute the signed root");
    size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_clients_follow_the_log_bundles_verify_offline_and_flipped_bytes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "127.0.0.1:0", "");
    let server = site.serve();
    let key = line_value(&server.stdout, "ledger key:");
    let client = server.client(&site.data());
    for i in 0..300 {
        assert_eq!(submit(&client, &server.url, &site.token, &format!("event {i}")).await.status(), 202);
    }
    assert_eq!(publish_checkpoint(&client, &server.url, &site.token).await.status(), 201);
    assert!(follow_with_tiles(&client, &server.url).await > 300);
    let busy = verify_cli(&site.data(), &key);
    assert!(!busy.status.success(), "verify must not run beside an appending server");
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by a running server"));
    // One entry named three ways gives one proof; a consistency proof works in either order.
    let ledger_json = |path: String| {
        let (client, url, token) = (client.clone(), server.url.clone(), site.token.clone());
        async move {
            let r = get(&client, &url, &token, &format!("/api/v1/ledger/{path}")).await;
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let by_index = ledger_json("entries/5/inclusion".into()).await;
    let leaf_hex: String = b64_hash(&by_index["leaf_hash"]).iter().map(|b| format!("{b:02x}")).collect();
    let by_leaf = ledger_json(format!("leaves/{leaf_hex}/inclusion")).await;
    let by_event = ledger_json(format!("events/{}/inclusion", by_index["seal"]["event_seq"])).await;
    assert_eq!(by_index, by_leaf);
    assert_eq!(by_index, by_event);
    let forward = ledger_json("consistency?first=7&second=200".into()).await;
    let backward = ledger_json("consistency?first=200&second=7".into()).await;
    assert_eq!(forward, backward);
    let proof: Vec<Hash> = forward["proof"].as_array().unwrap().iter().map(b64_hash).collect();
    merkle::verify_consistency(7, 200, &b64_hash(&forward["first_root"]), &b64_hash(&forward["second_root"]), &proof)
        .unwrap();
    let missing = get(&client, &server.url, &site.token, "/api/v1/ledger/entries/999999/inclusion").await;
    assert_eq!(missing.status(), 404);
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    for name in
        ["caduceus_ledger_entries", "caduceus_ledger_checkpoint_size", "caduceus_ledger_checkpoints_published_total"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // An offline bundle for one event, checked by the CLI with the event.
    let events: Value =
        get(&client, &server.url, &site.token, "/api/v1/events?after=99&limit=1").await.json().await.unwrap();
    let stored = &events["events"][0];
    let path = format!("/api/v1/ledger/events/{}/bundle", stored["seq"]);
    let bundle = get(&client, &server.url, &site.token, &path).await.text().await.unwrap();
    server.terminate();
    let bundle_path = dir.path().join("proof.txt");
    std::fs::write(&bundle_path, &bundle).unwrap();
    let event_path = dir.path().join("event.json");
    std::fs::write(&event_path, stored["event"].to_string()).unwrap();
    let check = |event: &Path| {
        command()
            .args(["ledger", "verify-proof", "--proof"])
            .arg(&bundle_path)
            .args(["--key", &key, "--event"])
            .arg(event)
            .output()
            .unwrap()
    };
    let output = check(&event_path);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("proof ok"));
    let mut altered = stored["event"].clone();
    altered["message"] = json!("event 99, rewritten");
    std::fs::write(&event_path, altered.to_string()).unwrap();
    let output = check(&event_path);
    assert!(!output.status.success(), "an altered event passed");
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not match"));

    // Flip random bytes in the stored ledger: each one is reported.
    let ledger = site.data().join("ledger");
    let output = verify_cli(&ledger, &key);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..24 {
        let copy = dir.path().join(format!("tampered-{round}"));
        copy_tree(&ledger, &copy);
        let name = ["records", "nodes", "tree-state", "checkpoints"][round % 4];
        let path = copy.join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        // Records: within the written entries (the preallocated rest is zeros).
        let span = if name == "records" {
            bytes.chunks(64).take_while(|c| c.iter().any(|b| *b != 0)).count() * 64
        } else {
            bytes.len()
        };
        let at = rng.random_range(0..span);
        bytes[at] ^= 1 << rng.random_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        let output = verify_cli(&copy, &key);
        assert!(!output.status.success(), "flip of byte {at} in {name} went unnoticed");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("ledger verification failed"), "{stderr}");
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

/// Rewrite the database the way an intruder covering their tracks would:
/// change an event (and its digest, so the store's own check passes), or
/// delete one.
fn tamper_with_database(db: &Path, sql_action: &str) {
    let script = format!(
        "import hashlib, sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         {sql_action}\n\
         db.commit()\n"
    );
    let output = std::process::Command::new("python3").arg("-c").arg(script).arg(db).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walk(from) {
        let target = to.join(entry.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_verify_catches_an_event_altered_or_deleted_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "127.0.0.1:0", "");
    let server = site.serve();
    let key = line_value(&server.stdout, "ledger key:");
    let client = server.client(&site.data());
    for i in 0..60 {
        assert_eq!(submit(&client, &server.url, &site.token, &format!("audit {i}")).await.status(), 202);
    }
    server.terminate();
    let output = verify_cli(&site.data(), &key);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("events ok:"), "{stdout}");

    let cases = [
        (
            "altered",
            "body = db.execute('SELECT body FROM events WHERE seq = 42').fetchone()[0]\n\
             body = body.replace('audit', 'AUDIT')\n\
             db.execute('UPDATE events SET body = ?, digest = ? WHERE seq = 42', (body, hashlib.sha256(body.encode()).digest()))",
            "event 42 does not match its seal",
        ),
        ("deleted", "db.execute('DELETE FROM events WHERE seq = 43')", "event 43 is sealed"),
    ];
    for (name, action, expected) in cases {
        let copy = dir.path().join(name);
        copy_tree(&site.data(), &copy);
        tamper_with_database(&copy.join("caduceus.db"), action);
        let output = verify_cli(&copy, &key);
        assert!(!output.status.success(), "{name}: went unnoticed");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_witness_each_other_and_refuse_a_rewritten_history() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let listen = |port: u16| format!("127.0.0.1:{port}");
    // First starts make each site's keys and certificate.
    let witness_on = "[witness]\nenabled = true\n";
    let a = Site::new(&dir.path().join("a"), &listen(port_a), witness_on);
    let b = Site::new(&dir.path().join("b"), &listen(port_b), witness_on);
    let (mut origin, mut log_key, mut witness_key) = (Vec::new(), Vec::new(), Vec::new());
    for site in [&a, &b] {
        let server = site.serve();
        origin.push(line_value(&server.stdout, "ledger origin:"));
        log_key.push(line_value(&server.stdout, "ledger key:"));
        witness_key.push(line_value(&server.stdout, "witness key:"));
        server.terminate();
    }
    // Each witnesses the other, and needs the other's cosignature to publish.
    let config = |other: usize, port: u16, site: &Site| {
        format!(
            "{witness_on}[[witness.logs]]\norigin = \"{}\"\nvkey = \"{}\"\n\
             [ledger]\nwitness_quorum = 1\ncheckpoint_interval_secs = 3600\n\
             [[ledger.witnesses]]\nvkey = \"{}\"\nurl = \"https://127.0.0.1:{port}/witness\"\nca_cert = \"{}\"\n",
            origin[other],
            log_key[other],
            witness_key[other],
            site.data().join("tls/cert.pem").display(),
        )
    };
    a.rewrite_config(&listen(port_a), &config(1, port_b, &b));
    b.rewrite_config(&listen(port_b), &config(0, port_a, &a));
    let server_a = a.serve();
    let server_b = b.serve();
    let client_a = server_a.client(&a.data());
    let client_b = server_b.client(&b.data());
    for (site, server, client) in [(&a, &server_a, &client_a), (&b, &server_b, &client_b)] {
        for i in 0..5 {
            assert_eq!(submit(client, &server.url, &site.token, &format!("e{i}")).await.status(), 202);
        }
    }
    // Twice each: the second request carries a consistency proof from the first.
    for _ in 0..2 {
        for (i, (site, server, client)) in
            [(&a, &server_a, &client_a), (&b, &server_b, &client_b)].into_iter().enumerate()
        {
            assert_eq!(submit(client, &server.url, &site.token, "more").await.status(), 202);
            let r = publish_checkpoint(client, &server.url, &site.token).await;
            let status = r.status();
            let view: Value = r.json().await.unwrap();
            assert_eq!(status, 201, "{view}");
            let witness_name = witness_key[1 - i].split('+').next().unwrap();
            assert_eq!(view["cosigned_by"], json!([witness_name]), "{view}");
            // The served checkpoint carries the cosignature too.
            let served =
                client.get(format!("{}/ledger/checkpoint", server.url)).send().await.unwrap().text().await.unwrap();
            assert!(served.contains(witness_name));
        }
    }
    let cosigned_size = {
        let status: Value = get(&client_a, &server_a.url, &a.token, "/api/v1/ledger").await.json().await.unwrap();
        status["checkpoint"]["size"].as_u64().unwrap()
    };
    server_a.terminate();

    // Site A's operator (or an intruder with its key) rewrites history: the
    // log is rebuilt from scratch under the same key and grows past what B
    // cosigned. B must refuse, so A cannot publish.
    let ledger_a = a.data().join("ledger");
    for name in ["records", "nodes", "tree-state", "checkpoints"] {
        std::fs::remove_file(ledger_a.join(name)).unwrap();
    }
    let server_a = a.serve();
    let client_a = server_a.client(&a.data());
    for i in 0..(cosigned_size + 5) {
        assert_eq!(submit(&client_a, &server_a.url, &a.token, &format!("forged {i}")).await.status(), 202);
    }
    let r = publish_checkpoint(&client_a, &server_a.url, &a.token).await;
    assert_eq!(r.status(), 503, "a rewritten history was cosigned");
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("witness"), "{message}");
    assert!(message.contains("422"), "B must refuse with 422 (inconsistent): {message}");
    let none = client_a.get(format!("{}/ledger/checkpoint", server_a.url)).send().await.unwrap();
    assert_eq!(none.status(), 404, "nothing was published");
    server_a.terminate();
    server_b.terminate();
}
