//! A real OpenID Connect provider for tests, and a user with a browser.
//!
//! [`OidcProvider::start`] runs `testing/oidc-provider/provider.mjs`
//! (`oidc-provider`, an OpenID Certified implementation) on a free port of
//! 127.0.0.1 and kills it on drop. [`browser_login`] plays the user: it
//! follows the redirects with its own cookie jar, fills in the login and
//! consent forms, and hands back the provider's final redirect to the relying
//! party (with `code` and `state`) without following it.
//!
//! Shared by several test crates through
//! `#[path = "<relative path>/support/oidc_provider.rs"] mod oidc_provider;`,
//! so it uses only reqwest, tokio, serde_json, url and std, and nothing from
//! the crate under test.
//!
//! Without node or the npm install (`npm ci` in `testing/oidc-provider`),
//! `start` prints a loud SKIPPED line and returns `None`; with
//! `TEST_REQUIRE_OIDC=1` (as `.ci/run` sets) it panics instead.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use url::Url;

/// How long node may take to load the provider (slow CI machines).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running provider with one confidential client.
pub struct OidcProvider {
    child: Child,
    issuer: String,
}

impl OidcProvider {
    /// Starts a provider for one client (`client_secret_basic`, PKCE S256
    /// required) and the accounts in `accounts_json`: a JSON array of
    /// objects with `login` and `password`, and the claims `sub` (default:
    /// the login), `email`, `email_verified`, `name`, `preferred_username`,
    /// `groups` (array of strings). Scopes `email`, `profile` and `groups`
    /// release them, in the ID token as well as from UserInfo.
    pub fn start(client_id: &str, client_secret: &str, redirect_uri: &str, accounts_json: &str) -> Option<Self> {
        Self::launch(client_id, client_secret, redirect_uri, accounts_json, true)
    }

    /// Like [`Self::start`], but the ID token carries only `sub` and the
    /// protocol claims; email, name and groups come from UserInfo alone (the
    /// spec's default for the code flow, and what some providers do).
    pub fn start_with_claims_from_userinfo_only(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        accounts_json: &str,
    ) -> Option<Self> {
        Self::launch(client_id, client_secret, redirect_uri, accounts_json, false)
    }

    /// The issuer exactly as the provider states it: `http://127.0.0.1:PORT`,
    /// without a trailing slash (which a `Url` would add, and which would
    /// make it another issuer).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn launch(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        accounts_json: &str,
        claims_in_id_token: bool,
    ) -> Option<Self> {
        let Some(dir) = provider_dir() else {
            return skip("testing/oidc-provider not found above CARGO_MANIFEST_DIR (set TEST_OIDC_PROVIDER_DIR)");
        };
        let node = std::env::var("TEST_NODE").unwrap_or_else(|_| "node".to_owned());
        match Command::new(&node).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(status) if status.success() => {}
            _ => return skip(&format!("`{node}` (Node.js) is not available")),
        }
        if !dir.join("node_modules/oidc-provider/package.json").is_file() {
            return skip(&format!("oidc-provider is not installed: run `npm ci` in {}", dir.display()));
        }

        let mut child = Command::new(&node)
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("OIDC_PORT", "0")
            .env("OIDC_CLIENT_ID", client_id)
            .env("OIDC_CLIENT_SECRET", client_secret)
            .env("OIDC_REDIRECT_URIS", redirect_uri)
            .env("OIDC_ACCOUNTS", accounts_json)
            .env("OIDC_CLAIMS_IN_ID_TOKEN", if claims_in_id_token { "1" } else { "0" })
            // The provider exits when this pipe closes: even a test process
            // that dies without running Drop leaves no node behind.
            .env("OIDC_EXIT_WITH_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {node} {}: {e}", dir.display()));

        // The first stdout line says where it listens. Everything else goes
        // through eprintln!, which the test harness captures (threads inherit
        // the capture) and shows when a test fails.
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("oidc-provider: {line}");
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = ready_tx.send(first);
            for line in lines.map_while(Result::ok) {
                eprintln!("oidc-provider: {line}");
            }
        });
        let line = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(line)) => line,
            outcome => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("oidc provider did not start ({outcome:?}, exit {status:?}); its stderr is above");
            }
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("oidc provider said {line:?}: {e}"));
        let issuer = ready["issuer"].as_str().unwrap_or_else(|| panic!("oidc provider said {line:?}"));
        Url::parse(issuer).unwrap_or_else(|e| panic!("oidc provider issuer {issuer:?}: {e}"));
        Some(Self { child, issuer: issuer.to_owned() })
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skip(reason: &str) -> Option<OidcProvider> {
    if std::env::var("TEST_REQUIRE_OIDC").is_ok_and(|v| v == "1") {
        panic!("TEST_REQUIRE_OIDC=1 but the oidc provider cannot run: {reason}");
    }
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: oidc provider test: {reason}. ***\n");
    None
}

/// `TEST_OIDC_PROVIDER_DIR`, or the first `testing/oidc-provider` above the
/// including crate (every crate sits under `crates/` in the workspace).
fn provider_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("TEST_OIDC_PROVIDER_DIR") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("testing/oidc-provider"))
        .find(|dir| dir.join("provider.mjs").is_file())
}

/// Logs in as a user in a browser would, from the relying party's
/// authorization URL to the provider's redirect back to the relying party
/// (its `redirect_uri`, with `code` and `state`), which is returned without
/// being followed. Panics if the provider does not get there.
pub async fn browser_login(authorization_url: &Url, login: &str, password: &str) -> Url {
    try_browser_login(authorization_url, login, password).await.unwrap_or_else(|e| panic!("browser login: {e}"))
}

/// [`browser_login`] that reports where the provider stopped instead of
/// panicking (a refused password, an error page).
pub async fn try_browser_login(authorization_url: &Url, login: &str, password: &str) -> Result<Url, String> {
    let redirect_uri = authorization_url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .and_then(|(_, v)| Url::parse(&v).ok())
        .ok_or("the authorization url has no redirect_uri")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut jar = CookieJar::default();
    let mut url = authorization_url.clone();
    let mut form: Option<Vec<(String, String)>> = None;

    for _ in 0..20 {
        let mut request = match form.take() {
            None => client.get(url.clone()),
            Some(fields) => {
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
                client.post(url.clone()).header("content-type", "application/x-www-form-urlencoded").body(body)
            }
        };
        if let Some(cookies) = jar.header_for(&url) {
            request = request.header("cookie", cookies);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        for value in response.headers().get_all("set-cookie") {
            if let Ok(value) = value.to_str() {
                jar.store(&url, value);
            }
        }
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("{status} without a location at {url}"))?;
            let next = url.join(location).map_err(|e| format!("bad location {location:?}: {e}"))?;
            if next.origin() == redirect_uri.origin() && next.path() == redirect_uri.path() {
                return Ok(next);
            }
            url = next;
            continue;
        }
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status} at {}: {}", url.path(), page_text(&body)));
        }
        let Some(page_form) = Form::parse(&body) else {
            return Err(format!("a page without a form at {}: {}", url.path(), page_text(&body)));
        };
        let mut fields = page_form.hidden;
        if let Some(name) = page_form.login_field {
            fields.push((name, login.to_owned()));
        }
        if let Some(name) = page_form.password_field {
            fields.push((name, password.to_owned()));
        }
        url = url.join(&page_form.action).map_err(|e| format!("bad form action {:?}: {e}", page_form.action))?;
        form = Some(fields);
    }
    Err(format!("no redirect to {redirect_uri} after 20 steps (last at {})", url.path()))
}

/// The one form on a provider page.
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
    login_field: Option<String>,
    password_field: Option<String>,
}

impl Form {
    /// Enough HTML for the provider's pages: the first `<form>`, its
    /// `action`, and its `<input>`s (hidden ones keep their value; a text
    /// input takes the login, a password input the password).
    fn parse(html: &str) -> Option<Form> {
        let start = html.find("<form")?;
        let end = html[start..].find("</form>").map_or(html.len(), |e| start + e);
        let form = &html[start..end];
        let tag_end = form.find('>')?;
        let action = attribute(&form[..tag_end], "action").unwrap_or_default();
        let mut parsed = Form { action, hidden: Vec::new(), login_field: None, password_field: None };
        let mut rest = form;
        while let Some(at) = rest.find("<input") {
            let tag = &rest[at..];
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            rest = &rest[at + tag.len()..];
            let Some(name) = attribute(tag, "name") else { continue };
            match attribute(tag, "type").unwrap_or_else(|| "text".to_owned()).to_ascii_lowercase().as_str() {
                "hidden" => parsed.hidden.push((name, attribute(tag, "value").unwrap_or_default())),
                "password" => parsed.password_field = Some(name),
                "text" | "email" => parsed.login_field = Some(name),
                _ => {}
            }
        }
        Some(parsed)
    }
}

/// The value of `name="…"` in one tag, with entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(decode_entities(&tag[start..end]))
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else { break };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()).and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The page's text without tags, shortened: for error messages.
fn page_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = decode_entities(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    text.chars().take(300).collect()
}

/// Cookies as a browser keeps them for one site: by name and path, sent
/// back to matching paths of the same origin, dropped when expired by the
/// server (`Max-Age=0` or an `Expires` in 1970, what koa sends).
#[derive(Default)]
struct CookieJar {
    cookies: Vec<Cookie>,
}

struct Cookie {
    origin: url::Origin,
    name: String,
    value: String,
    path: String,
}

impl CookieJar {
    fn store(&mut self, from: &Url, header: &str) {
        let mut parts = header.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else { return };
        let mut path = None;
        let mut expired = false;
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            match key.to_ascii_lowercase().as_str() {
                "path" if val.starts_with('/') => path = Some(val.to_owned()),
                "max-age" => expired |= val.parse::<i64>().is_ok_and(|age| age <= 0),
                "expires" => expired |= val.contains("1970"),
                _ => {}
            }
        }
        // RFC 6265 default-path: the request path up to its last slash.
        let path = path.unwrap_or_else(|| match from.path().rfind('/') {
            Some(0) | None => "/".to_owned(),
            Some(i) => from.path()[..i].to_owned(),
        });
        let origin = from.origin();
        self.cookies.retain(|c| !(c.origin == origin && c.name == name && c.path == path));
        if !expired {
            self.cookies.push(Cookie { origin, name: name.to_owned(), value: value.to_owned(), path });
        }
    }

    fn header_for(&self, url: &Url) -> Option<String> {
        let origin = url.origin();
        let request_path = url.path();
        let matching: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| c.origin == origin && path_matches(request_path, &c.path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    }
}

fn path_matches(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie) && (cookie.ends_with('/') || request[cookie.len()..].starts_with('/')))
}
